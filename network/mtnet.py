"""MTNet: 3D ResNets of multi-temporal convolutions (Stergiou & Poppe, IJCNN 2021).

Features travel as a pair (short, long): the short path keeps full resolution with a share
``rate`` (0.875) of the channels, the long path the rest at half T, H and W. Every MTConv convolves
both paths and adds a lateral branch from short to long (spatial pooling avg | max | soft, then
cossim temporal pooling, resize, 1×1×1 conv, norm). Every block recalibrates each path with a
2-layer GRU over time before the residual add (shared/reference/video.md B7).

Differences from the reference code (Part E bug 25): the lateral branch has its own norm instead
of sharing the long path's, it is resized only when its (T, H, W) differs from the long path's, and
``lateral_pool="soft"`` really applies SoftPool (network/softpool.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from network.layers import PooledLinearClassifier, init_resnet_weights
from network.registry import register_variant
from network.softpool import soft_pool3d
from network.srtg import SqueezeRecursion
from network.video_resnet import STEM_POOLS, STEMS

__all__ = ["MTBlock", "MTConv", "MTNet", "temporal_cossim_pool"]

Pair = tuple[torch.Tensor, torch.Tensor]

# lateral pooling name -> pool(x, kernel, stride)
LATERAL_POOLS: dict[str, Callable[..., torch.Tensor]] = {
    "avg": F.avg_pool3d,
    "max": F.max_pool3d,
    "soft": soft_pool3d,
}


def temporal_cossim_pool(x: torch.Tensor) -> torch.Tensor:
    """(N, C, T, H, W) → (N, C, T//2, H, W), keeping the frames most similar to their neighbours.

    g_t is the spatial mean of frame t, d_t = cos(g_t, g_{t+1})², m_t = (d_t + d_{t+1}) / 2; the
    T//2 largest m_t each select frame t+1, kept in temporal order. T ≤ 2 is returned unchanged.

    There is no Python branch on T: for T ≤ 2 the top-k is empty and every frame is appended
    instead, so a graph traced at one T (ONNX export) is right at every T ≥ 1.
    """
    n, c, t = x.shape[:3]
    pooled = x.mean(dim=(3, 4))
    similarity = F.cosine_similarity(pooled[..., :-1], pooled[..., 1:], dim=1, eps=1e-4).square()
    triplets = (similarity[:, :-1] + similarity[:, 1:]) / 2  # (N, max(T-2, 0))
    # t is an int, or a 0-dim tensor while tracing: the comparisons act as 0/1 factors
    keep = triplets.topk(t // 2 * (t > 2), dim=1).indices.sort(dim=1).values + 1
    every = torch.arange(t * (t <= 2), device=x.device).expand(n, -1)  # empty if T > 2
    frames = torch.cat([keep, every], dim=1)
    return x.gather(2, frames.view(n, 1, -1, 1, 1).expand(-1, c, -1, *x.shape[3:]))


def halve_spatially(x: torch.Tensor, pool: str = "avg") -> torch.Tensor:
    """(1,2,2) pooling with stride (1,2,2); sizes below 2 are left as they are.

    The size test is on H and W, which an ONNX export keeps fixed (only N and T are dynamic): the
    tracer freezes it, rightly, and warns.
    """
    if min(x.shape[3:]) < 2:
        return x
    return LATERAL_POOLS[pool](x, (1, 2, 2), (1, 2, 2))


def _resized(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``x`` resized (trilinear) to the (T, H, W) of ``like``, when they differ.

    While tracing it always resizes: the sizes are then symbolic, and a resize to the same size is
    an exact identity, so an exported graph follows T instead of a comparison frozen at the traced
    T. Eager code skips the needless copy.
    """
    if torch.jit.is_tracing() or x.shape[2:] != like.shape[2:]:
        return F.interpolate(x, size=like.shape[2:], mode="trilinear")
    return x


def _norm(channels: int, groups: int, grouped: bool) -> nn.Module:
    return nn.GroupNorm(groups, channels) if grouped else nn.BatchNorm3d(channels)


class MTConv(nn.Module):
    """Multi-temporal convolution on a pair (short (N,Cs,T,H,W), long (N,Cl,T',H',W')).

    Short path: conv + norm. Long path: conv + norm + lateral(short). No activation.
    """

    def __init__(
        self,
        in_planes: int,
        out_planes: int,
        kernel_size: int | tuple[int, int, int],
        *,
        stride: int = 1,
        padding: int | tuple[int, int, int] = 0,
        groups: int = 1,
        rate: float = 0.875,
        lateral: bool = True,
        lateral_pool: str = "avg",
    ) -> None:
        super().__init__()
        groups_short = max(1, math.floor(groups * rate))
        groups_long = max(1, groups - groups_short)
        in_short = int(in_planes * rate) // groups_short * groups_short
        out_short = int(out_planes * rate)
        self.out_planes = (out_short, out_planes - out_short)
        conv = {"kernel_size": kernel_size, "stride": stride, "padding": padding, "bias": False}
        self.conv_short = nn.Conv3d(in_short, out_short, groups=groups_short, **conv)
        self.conv_long = nn.Conv3d(
            in_planes - in_short, self.out_planes[1], groups=groups_long, **conv
        )
        self.norm_short = _norm(out_short, groups_short, groups > 1)
        self.norm_long = _norm(self.out_planes[1], groups_long, groups > 1)
        self.lateral_pool = lateral_pool
        self.lateral = lateral
        if lateral:
            self.conv_short2long = nn.Conv3d(out_short, self.out_planes[1], 1, bias=False)
            self.norm_short2long = _norm(self.out_planes[1], groups_long, groups > 1)

    def forward(self, x: Pair) -> Pair:
        short, long = self.conv_short(x[0]), self.conv_long(x[1])
        long_out = self.norm_long(long)
        if self.lateral:
            lateral = temporal_cossim_pool(halve_spatially(short, self.lateral_pool))
            long_out = long_out + self.norm_short2long(
                self.conv_short2long(_resized(lateral, long))
            )
        return self.norm_short(short), long_out


def _relu(pair: Pair) -> Pair:
    return F.relu(pair[0]), F.relu(pair[1])


class MTBlock(nn.Module):
    """MTConvs 1×1×1 → 1×1×1 → 3×3×3 (stride) → (1×1×1 | 1×3×3), per-path GRU recalibration,
    residual add and ReLU.

    The identity always has the block output's (T, H, W): the downsample (1×1×1, stride s) and
    conv2 (3×3×3, padding 1, stride s) both give ⌊(n − 1) / s⌋ + 1 frames or pixels.
    """

    def __init__(
        self,
        in_planes: int,
        planes: int,
        *,
        stride: int = 1,
        groups: int = 1,
        rate: float = 0.875,
        lateral_pool: str = "avg",
        recalibration: str = "paper",
    ) -> None:
        super().__init__()
        width = planes // groups
        mt = {"rate": rate, "lateral_pool": lateral_pool}
        downsamples = stride != 1 or in_planes != planes
        self.conv1_1 = MTConv(in_planes, width, 1, **mt)
        self.conv1_2 = MTConv(width, in_planes, 1, **mt)
        self.conv2 = MTConv(in_planes, width, 3, stride=stride, padding=1, groups=groups, **mt)
        last_kernel, last_padding = (1, 0) if downsamples else ((1, 3, 3), (0, 1, 1))
        self.conv3 = MTConv(width, planes, last_kernel, padding=last_padding, groups=groups, **mt)
        self.downsample = None
        if downsamples:
            self.downsample = MTConv(in_planes, planes, 1, stride=stride, lateral=False, rate=rate)
        short, long = self.conv3.out_planes
        sr = {"cell": "gru", "recalibration": recalibration}
        self.sr_short = SqueezeRecursion(short, **sr)
        self.sr_long = SqueezeRecursion(long, **sr)

    def forward(self, x: Pair) -> Pair:
        identity = x if self.downsample is None else self.downsample(x)
        out = _relu(self.conv2(_relu(self.conv1_2(_relu(self.conv1_1(x))))))
        short, long = self.conv3(out)
        short, long = self.sr_short(short), self.sr_long(long)
        return F.relu(short + identity[0]), F.relu(long + identity[1])


class MTNet(PooledLinearClassifier):
    """MTNet on clips (N, C, T, H, W) → logits (N, num_classes); any T ≥ 1 and H, W ≥ 8.

    No Python branch depends on T, so an ONNX graph exported with a dynamic T axis holds at every
    T ≥ 1 (tests/test_export_dynamic_time.py).
    """

    def __init__(
        self,
        *,
        depths: tuple[int, ...],
        widths: tuple[int, ...] = (64, 128, 256, 512),
        groups: int = 1,
        rate: float = 0.875,
        lateral_pool: str = "avg",
        num_classes: int = 400,
        in_channels: int = 3,
        dropout: float = 0.0,
        recalibration: str = "paper",
    ) -> None:
        super().__init__()
        if lateral_pool not in LATERAL_POOLS:
            raise ValueError(f"lateral_pool must be one of {sorted(LATERAL_POOLS)}")
        self.num_classes = num_classes
        self.stem = STEMS["r3d"](in_channels, widths[0])
        self.stem_pool = STEM_POOLS["max2d"]()
        short = int(widths[0] * rate)
        self.split = (short, widths[0] - short)
        block = {
            "groups": groups,
            "rate": rate,
            "lateral_pool": lateral_pool,
            "recalibration": recalibration,
        }
        in_planes = widths[0]
        for index, (width, depth) in enumerate(zip(widths, depths)):
            stride = 1 if index == 0 else 2
            blocks = [MTBlock(in_planes, width, stride=stride, **block)]
            blocks += [MTBlock(width, width, **block) for _ in range(depth - 1)]
            self.add_module(f"layer{index + 1}", nn.Sequential(*blocks))
            in_planes = width
        self.add_head(in_planes, num_classes, dropout)
        init_resnet_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, T, H, W) → pooled short and long features concatenated, (N, num_features)."""
        x = temporal_cossim_pool(self.stem_pool(self.stem(x)))
        short, long = torch.split(x, self.split, dim=1)
        long = temporal_cossim_pool(halve_spatially(long))
        short, long = self.layer4(self.layer3(self.layer2(self.layer1((short, long)))))
        return torch.cat([short.mean(dim=(2, 3, 4)), long.mean(dim=(2, 3, 4))], dim=1)


VARIANTS = {  # name suffix -> (blocks per stage, conv groups, stage widths)
    "xs": ((2, 2, 2, 2), 1, (64, 128, 256, 512)),
    "s": ((2, 2, 5, 3), 1, (64, 128, 256, 512)),
    "m": ((3, 4, 6, 3), 1, (64, 128, 256, 512)),
    "l": ((3, 4, 23, 3), 1, (64, 128, 256, 512)),
    "xl": ((3, 8, 36, 3), 1, (64, 128, 256, 512)),
    "xs_g8": ((2, 2, 2, 2), 8, (64, 128, 256, 512)),
    "s_g8": ((2, 2, 5, 3), 8, (64, 128, 256, 512)),
    "m_g8": ((3, 4, 6, 3), 8, (64, 128, 256, 512)),
    "l_g8": ((3, 4, 23, 3), 8, (64, 128, 256, 512)),
    "tiny": ((1, 1, 1, 1), 1, (16, 32, 64, 128)),  # tests and demos
}


for _variant, (_depths, _groups, _widths) in VARIANTS.items():
    register_variant(
        f"mtnet_{_variant}", MTNet, family="video", input_layout="NCTHW",
        doc=f"Build ``mtnet_{_variant}`` (see ``network.mtnet.VARIANTS``).",
        tags=("3d", "mtnet", "tiny") if _variant == "tiny" else ("3d", "mtnet"),
        fixed={"depths": _depths, "groups": _groups, "widths": _widths},
    )  # fmt: skip
