"""X3D (Feichtenhofer, CVPR 2020) equal to PySlowFast's ``X3D`` model.

    from network import build_model
    model = build_model("x3d_m", num_classes=400)  # clips (N, 3, 16, 224, 224)

The network, as PySlowFast's ``video_model_builder.X3D`` builds it (and MMAction2's port):

- stem: a (1,3,3) convolution striding 2 in H and W, a depthwise (5,1,1) temporal convolution,
  BN, ReLU; no pooling, no temporal striding anywhere;
- 4 stages of X3D blocks: 1×1×1 → BN → ReLU → channelwise (one group per channel) 3×3×3 with
  the spatial stride → BN → squeeze-excitation (every other block, the first of a stage
  included; ratio 1/16, ReLU inside) → Swish → 1×1×1 → BN; a projection shortcut (1×1×1, BN)
  in the first block of each stage; ReLU after the sum. Inner width = 2.25 × stage width;
- head: 1×1×1 ``conv5`` to the inner width of the last stage, BN, ReLU, global average pool,
  ``lin5`` to 2048 without bias, ReLU, dropout, the classifier ``fc``.

X3D-XS, -S and -M are one network (width factor 2, depth factor 2.2: 3.79 M parameters at 400
classes) trained on different clips (4×160², 13×160², 16×224²); X3D-L has depth factor 5.
PySlowFast pools the head with a fixed (T, ⌈S/32⌉, ⌈S/32⌉) window during training and averages
softmax scores over the windows at test time; ActRec pools globally and returns logits, which is
the same computation on the clip size the network was trained on (and MMAction2's head).

Parameter names follow MMAction2's backbone (``conv1_s``, ``conv1_t``, ``layerN.i.conv1/2/3``,
``se_module``, ``downsample``, ``conv5``); ``X3D_RENAMES`` maps PySlowFast's ``model_state``
names and MMAction2's ``cls_head.fc1/fc2`` to them for ``network.weights`` (which strips
MMAction2's ``backbone.`` itself).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import torch
from torch import nn

from network.layers import PooledLinearClassifier, reset_linear
from network.registry import InputConstraints, register_model

__all__ = ["PRESETS", "X3D", "X3D_RENAMES", "X3DBlock", "X3DPreset", "round_width"]


def round_width(width: float, multiplier: float, min_width: int = 1, divisor: int = 1) -> int:
    """PySlowFast's ``round_width``: ``width · multiplier`` rounded to a multiple of ``divisor``
    (at least ``min_width``), bumped one divisor up when rounding lost more than 10 %."""
    width *= multiplier
    min_width = min_width or divisor
    width_out = max(min_width, int(width + divisor / 2) // divisor * divisor)
    if width_out < 0.9 * width:
        width_out += divisor
    return int(width_out)


def round_repeats(repeats: int, multiplier: float) -> int:
    """Blocks per stage after the depth factor: ⌈multiplier · repeats⌉."""
    return math.ceil(multiplier * repeats)


class ConvBN(nn.Module):
    """Conv3d (no bias) → BN → optional ReLU; names ``conv``/``bn`` as MMAction2's ConvModule."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: tuple[int, int, int],
        *,
        stride: tuple[int, int, int] = (1, 1, 1),
        groups: int = 1,
        norm: bool = True,
        relu: bool = False,
    ) -> None:
        super().__init__()
        padding = tuple(k // 2 for k in kernel)
        self.conv = nn.Conv3d(
            in_channels, out_channels, kernel, stride, padding, groups=groups, bias=False
        )
        self.bn = nn.BatchNorm3d(out_channels) if norm else nn.Identity()
        self.relu = nn.ReLU(inplace=True) if relu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class Swish(nn.Module):
    """x · sigmoid(x), computed as PySlowFast's (pytorchvideo's) Swish does: ``nn.SiLU``'s fused
    kernel rounds differently, which training-mode BN amplified to 4e-5 in the logits."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


class SqueezeExcitation(nn.Module):
    """(N, C, T, H, W) → x · sigmoid(fc2(relu(fc1(mean over T, H, W)))); the squeeze width is
    ``round_width(C, ratio, min_width=8, divisor=8)`` (PySlowFast's SE)."""

    def __init__(self, channels: int, ratio: float) -> None:
        super().__init__()
        squeezed = round_width(channels, ratio, min_width=8, divisor=8)
        self.fc1 = nn.Conv3d(channels, squeezed, 1)
        self.relu = nn.ReLU()
        self.fc2 = nn.Conv3d(squeezed, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean(dim=(2, 3, 4), keepdim=True)
        return x * torch.sigmoid(self.fc2(self.relu(self.fc1(scale))))


class X3DBlock(nn.Module):
    """relu(conv3(swish(se(conv2(conv1(x))))) + shortcut(x)); output ``out_channels``."""

    def __init__(
        self,
        in_channels: int,
        inner: int,
        out_channels: int,
        *,
        stride: int,
        se_ratio: float | None,
    ) -> None:
        super().__init__()
        self.conv1 = ConvBN(in_channels, inner, (1, 1, 1), relu=True)
        self.conv2 = ConvBN(inner, inner, (3, 3, 3), stride=(1, stride, stride), groups=inner)
        self.se_module = SqueezeExcitation(inner, se_ratio) if se_ratio else nn.Identity()
        self.swish = Swish()
        self.conv3 = ConvBN(inner, out_channels, (1, 1, 1))
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.downsample = ConvBN(
                in_channels, out_channels, (1, 1, 1), stride=(1, stride, stride)
            )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv3(self.swish(self.se_module(self.conv2(self.conv1(x)))))
        return self.relu(out + self.downsample(x))


class X3D(PooledLinearClassifier):
    """X3D on clips (N, C, T, H, W) → logits (N, num_classes); any T, H, W (global pooling).

    ``stem_width``: channels of the stem; ``widths``/``depths``: per stage; the inner width of a
    block and of ``conv5`` is ``int(bottleneck_factor · width)``; ``head_width``: ``lin5``'s
    output (PySlowFast ``DIM_C5``). Squeeze-excitation on blocks 0, 2, 4, … of every stage.
    """

    def __init__(
        self,
        *,
        stem_width: int,
        widths: tuple[int, ...],
        depths: tuple[int, ...],
        bottleneck_factor: float = 2.25,
        head_width: int = 2048,
        se_ratio: float | None = 1 / 16,
        num_classes: int = 400,
        in_channels: int = 3,
        dropout: float = 0.5,
        zero_init_residual: bool = True,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.conv1_s = ConvBN(in_channels, stem_width, (1, 3, 3), stride=(1, 2, 2), norm=False)
        self.conv1_t = ConvBN(stem_width, stem_width, (5, 1, 1), groups=stem_width, relu=True)
        in_planes = stem_width
        for index, (width, depth) in enumerate(zip(widths, depths)):
            inner = int(bottleneck_factor * width)
            blocks = [
                X3DBlock(
                    in_planes if block == 0 else width,
                    inner,
                    width,
                    stride=2 if block == 0 else 1,
                    se_ratio=se_ratio if block % 2 == 0 else None,
                )
                for block in range(depth)
            ]
            self.add_module(f"layer{index + 1}", nn.Sequential(*blocks))
            in_planes = width
        conv5_width = int(bottleneck_factor * in_planes)
        self.conv5 = ConvBN(in_planes, conv5_width, (1, 1, 1), relu=True)
        self.lin5 = nn.Linear(conv5_width, head_width, bias=False)
        self.lin5_relu = nn.ReLU(inplace=True)
        self.num_features = head_width
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(head_width, num_classes)
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        """PySlowFast's ``init_weights``: MSRA (fan-out) convolutions and ``lin5`` (a 1×1×1
        convolution there), BN 1/0 (the last BN of every block 0 with ``zero_init_residual``,
        ``RESNET.ZERO_INIT_FINAL_BN``), classifier N(0, 0.01)."""
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm3d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.kaiming_normal_(self.lin5.weight, mode="fan_out", nonlinearity="relu")
        reset_linear(self.fc)
        if zero_init_residual:
            for module in self.modules():
                if isinstance(module, X3DBlock):
                    nn.init.zeros_(module.conv3.bn.weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, T, H, W) → pooled features (N, head_width) after ``lin5`` and its ReLU."""
        x = self.conv1_t(self.conv1_s(x))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.conv5(x).mean(dim=(2, 3, 4))
        return self.lin5_relu(self.lin5(x))


@dataclass(frozen=True)
class X3DPreset:
    """One registered variant: PySlowFast's X3D config factors, and the clip it was trained on."""

    width_factor: float  # X3D.WIDTH_FACTOR
    depth_factor: float  # X3D.DEPTH_FACTOR
    frames: int  # DATA.NUM_FRAMES
    size: int  # DATA.TRAIN_CROP_SIZE
    bottleneck_factor: float = 2.25  # X3D.BOTTLENECK_FACTOR
    stem_base: int = 12  # X3D.DIM_C1
    head_width: int = 2048  # X3D.DIM_C5
    tags: tuple[str, ...] = field(default=())

    def architecture(self) -> dict:
        """``X3D`` keywords: PySlowFast's width rounding (divisor 8 between stages) and depths."""
        base = [self.stem_base]  # res2 keeps DIM_C1 (X3D.SCALE_RES2 False), then ×2 per stage
        for _ in range(3):
            base.append(round_width(base[-1], 2.0, divisor=8))
        return {
            "stem_width": round_width(self.stem_base, self.width_factor),
            "widths": tuple(round_width(width, self.width_factor) for width in base),
            "depths": tuple(round_repeats(r, self.depth_factor) for r in (1, 2, 5, 3)),
            "bottleneck_factor": self.bottleneck_factor,
            "head_width": self.head_width,
        }


PRESETS: dict[str, X3DPreset] = {
    "x3d_xs": X3DPreset(2.0, 2.2, frames=4, size=160),  # configs/Kinetics/X3D_XS.yaml
    "x3d_s": X3DPreset(2.0, 2.2, frames=13, size=160),  # X3D_S.yaml: XS's network, 13 frames
    "x3d_m": X3DPreset(2.0, 2.2, frames=16, size=224),  # X3D_M.yaml: XS's network, 16×224²
    "x3d_l": X3DPreset(2.0, 5.0, frames=16, size=312),  # X3D_L.yaml: depth factor 5
    # tests and demos: stem 8, widths 8–64, one block per stage (⌈0.2·r⌉), lin5 64
    "x3d_tiny": X3DPreset(2.0, 0.2, frames=4, size=64, stem_base=4, head_width=64, tags=("tiny",)),
}


def _register(name: str, preset: X3DPreset) -> None:
    def build(
        *,
        num_classes: int = 400,
        in_channels: int = 3,
        dropout: float = 0.5,
        zero_init_residual: bool = True,
    ) -> X3D:
        return X3D(
            **preset.architecture(),
            num_classes=num_classes,
            in_channels=in_channels,
            dropout=dropout,
            zero_init_residual=zero_init_residual,
        )

    build.__name__ = build.__qualname__ = name
    build.__doc__ = (
        f"Build ``{name}`` (PySlowFast X3D, trained on {preset.frames}×{preset.size}² clips)."
    )
    register_model(
        name,
        family="video",
        input_layout="NCTHW",
        tags=("3d", "x3d", *preset.tags),
        constraints=InputConstraints(reference=(preset.frames, preset.size, preset.size)),
    )(build)


for _name, _preset in PRESETS.items():
    _register(_name, _preset)


# ----------------------------------------------------------------------------- reference names
# PySlowFast ``model_state`` (stage s2..s5 = layer1..4) and MMAction2 ``state_dict`` names →
# ActRec's, tried by ``network.weights`` like its ``RENAMES`` (a rename applies only where the
# model has the new name). PySlowFast's ``head.lin_5`` is a (2048, C, 1, 1, 1) convolution;
# the loader reshapes it into ``lin5`` (2048, C), as MMAction2's port did.
_PYSLOWFAST_BLOCK_PARTS = {
    "branch1": "downsample.conv",
    "branch1_bn": "downsample.bn",
    "branch2.a": "conv1.conv",
    "branch2.a_bn": "conv1.bn",
    "branch2.b": "conv2.conv",
    "branch2.b_bn": "conv2.bn",
    "branch2.se.fc1": "se_module.fc1",
    "branch2.se.fc2": "se_module.fc2",
    "branch2.c": "conv3.conv",
    "branch2.c_bn": "conv3.bn",
}
_PYSLOWFAST_MODULES = {
    "s1.pathway0_stem.conv_xy": "conv1_s.conv",
    "s1.pathway0_stem.conv": "conv1_t.conv",
    "s1.pathway0_stem.bn": "conv1_t.bn",
    "head.conv_5": "conv5.conv",
    "head.conv_5_bn": "conv5.bn",
    "head.lin_5": "lin5",
    "head.projection": "fc",
}
_MMACTION_HEAD = {"cls_head.fc1": "lin5", "cls_head.fc2": "fc"}  # MMAction2's X3DHead

X3D_RENAMES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    [
        (
            re.compile(rf"^s{stage}\.pathway0_res(\d+)\.{re.escape(theirs)}\.(\w+)$"),
            rf"layer{stage - 1}.\1.{ours}.\2",
        )
        for stage in (2, 3, 4, 5)
        for theirs, ours in _PYSLOWFAST_BLOCK_PARTS.items()
    ]
    + [
        (re.compile(rf"^{re.escape(theirs)}\.(\w+)$"), rf"{ours}.\1")
        for theirs, ours in {**_PYSLOWFAST_MODULES, **_MMACTION_HEAD}.items()
    ]
)
