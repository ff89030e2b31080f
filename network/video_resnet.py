"""One 3D ResNet implementation for torchvision's, the SRTG paper's and TAO's video ResNets.

Every variant is a row of ``PRESETS`` (stem, stem pool, block, expansion, convolution type per
stage, temporal striding, SR blocks, depths, widths), registered under its name::

    from network import build_model
    model = build_model("srtg_r3d_50", num_classes=51, gates=True, gates_from_epoch=30)

- ``r3d_*``, ``r2plus1d_*``, ``mc3_18``: torchvision's VideoResNet (no stem pool, stages stride
  in T, H and W, expansion-4 bottlenecks from 50 up). Parameter names equal torchvision's, so its
  Kinetics-400 state_dicts load directly; the 18-layer models are numerically identical.
- ``srtg_r3d_*``, ``srtg_r2plus1d_*``: the SRTG paper's networks (shared/reference/video.md B7): a
  3×3×3 max-pool after the stem, expansion-1 bottlenecks (widths 64–512) from 50 up, and a Squeeze
  and Recursion block after every residual block (``sr_blocks=False`` gives the plain baseline).
- ``tao_r3d_*``: TAO ActionRecognitionNet's 3D ResNets 18–152 (A9; ``ResNet3d`` of
  tao_pytorch_backend): a (5,7,7) stem striding 2 in T, H and W, a (1,3,3) max-pool that also
  strides 2 in T, H and W (16 frames → 4 after the stem), stages striding only in H and W.
  Parameter names differ from TAO's (``conv1`` → ``stem.0``, ``fc_cls`` → ``fc``, ...);
  ``network.weights.load_pretrained`` maps them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from network.layers import PooledLinearClassifier, init_resnet_weights
from network.registry import register_variant
from network.srtg import SqueezeRecursion

__all__ = ["PRESETS", "VideoResNet", "VideoResNetPreset"]

Stride3d = tuple[int, int, int]


def _conv3x3x3(in_planes: int, out_planes: int, midplanes: int, stride: Stride3d) -> nn.Module:
    return nn.Conv3d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


def _conv1x3x3(in_planes: int, out_planes: int, midplanes: int, stride: Stride3d) -> nn.Module:
    return nn.Conv3d(in_planes, out_planes, (1, 3, 3), stride=stride, padding=(0, 1, 1), bias=False)


class Conv2Plus1D(nn.Sequential):
    """(2+1)D convolution: (1,3,3) spatial → BN → ReLU → (3,1,1) temporal, via ``midplanes``."""

    def __init__(self, in_planes: int, out_planes: int, midplanes: int, stride: Stride3d) -> None:
        t, h, w = stride
        super().__init__(
            nn.Conv3d(in_planes, midplanes, (1, 3, 3), (1, h, w), (0, 1, 1), bias=False),
            nn.BatchNorm3d(midplanes),
            nn.ReLU(inplace=True),
            nn.Conv3d(midplanes, out_planes, (3, 1, 1), (t, 1, 1), (1, 0, 0), bias=False),
        )


@dataclass(frozen=True)
class ConvType:
    build: Callable[[int, int, int, Stride3d], nn.Module]
    strides_time: bool  # whether a stage built from it may downsample T


CONV_TYPES = {
    "3d": ConvType(_conv3x3x3, strides_time=True),  # R3D
    "2d": ConvType(_conv1x3x3, strides_time=False),  # MC3's (1,3,3) stages
    "2plus1d": ConvType(Conv2Plus1D, strides_time=True),  # R(2+1)D
}


def _stem_r3d(in_channels: int, width: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(in_channels, width, (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=False),
        nn.BatchNorm3d(width),
        nn.ReLU(inplace=True),
    )


def _stem_r2plus1d(in_channels: int, width: int) -> nn.Sequential:
    mid = width * 45 // 64  # torchvision's 45 mid channels at width 64
    return nn.Sequential(
        nn.Conv3d(in_channels, mid, (1, 7, 7), (1, 2, 2), (0, 3, 3), bias=False),
        nn.BatchNorm3d(mid),
        nn.ReLU(inplace=True),
        nn.Conv3d(mid, width, (3, 1, 1), (1, 1, 1), (1, 0, 0), bias=False),
        nn.BatchNorm3d(width),
        nn.ReLU(inplace=True),
    )


def _stem_tao(in_channels: int, width: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(in_channels, width, (5, 7, 7), 2, (2, 3, 3), bias=False),
        nn.BatchNorm3d(width),
        nn.ReLU(inplace=True),
    )


STEMS: dict[str, Callable[[int, int], nn.Sequential]] = {
    "r3d": _stem_r3d,  # (3,7,7) stride (1,2,2)
    "r2plus1d": _stem_r2plus1d,  # (1,7,7) then (3,1,1)
    "tao": _stem_tao,  # (5,7,7) stride 2 in T, H and W
}

STEM_POOLS: dict[str, Callable[[], nn.Module]] = {
    "none": nn.Identity,  # torchvision
    "max3d": lambda: nn.MaxPool3d(3, 2, 1),  # SRTG: halves T, H and W
    "max2d": lambda: nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),  # MTNet: halves H and W
    # TAO: a (1,3,3) kernel with stride 2 in T too (TAO's int stride), so it halves T, H and W
    "tao": lambda: nn.MaxPool3d((1, 3, 3), 2, (0, 1, 1)),
}


def _midplanes(in_planes: int, planes: int) -> int:
    """(2+1)D mid width matching the parameters of a full 3×3×3 conv (torchvision's formula)."""
    return (in_planes * planes * 27) // (in_planes * 9 + 3 * planes)


class _ResidualBlock(nn.Module):
    """relu(branch(x) + downsample(x)), then the SR block (an identity when SR is off).

    Subclasses build the branch (``conv1`` … in ``_build_branch``) after the shortcut, so the
    state_dict keys and their order are those of torchvision's and SRTG's blocks.
    """

    expands = False  # True: the output has planes · expansion channels (bottleneck)

    def __init__(
        self,
        in_planes: int,
        planes: int,
        *,
        conv: ConvType,
        stride: Stride3d,
        expansion: int,
        sr: nn.Module,
    ) -> None:
        super().__init__()
        out_planes = self.out_planes(planes, expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module = nn.Identity()
        if stride != (1, 1, 1) or in_planes != out_planes:
            self.downsample = nn.Sequential(
                nn.Conv3d(in_planes, out_planes, 1, stride=stride, bias=False),
                nn.BatchNorm3d(out_planes),
            )
        self.sr = sr
        mid = _midplanes(in_planes, planes)
        self._build_branch(in_planes, planes, out_planes, conv=conv, stride=stride, mid=mid)

    @classmethod
    def out_planes(cls, planes: int, expansion: int) -> int:
        """Output channels of a block of width ``planes``."""
        return planes * expansion if cls.expands else planes

    def _build_branch(
        self, in_planes: int, planes: int, out_planes: int, *, conv: ConvType, stride: Stride3d,
        mid: int,
    ) -> None:  # fmt: skip
        raise NotImplementedError

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def last_norm(self) -> nn.BatchNorm3d:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sr(self.relu(self.branch(x) + self.downsample(x)))


class BasicBlock(_ResidualBlock):
    """Two convolutions of ``conv`` type; output ``planes`` channels."""

    def _build_branch(
        self, in_planes: int, planes: int, out_planes: int, *, conv: ConvType, stride: Stride3d,
        mid: int,
    ) -> None:  # fmt: skip
        self.conv1 = nn.Sequential(
            conv.build(in_planes, planes, mid, stride),
            nn.BatchNorm3d(planes),
            nn.ReLU(inplace=True),
        )
        self.conv2 = nn.Sequential(
            conv.build(planes, planes, mid, (1, 1, 1)), nn.BatchNorm3d(planes)
        )

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))

    def last_norm(self) -> nn.BatchNorm3d:
        return self.conv2[1]


class Bottleneck(_ResidualBlock):
    """1×1×1 → ``conv`` → 1×1×1; output ``planes · expansion`` channels."""

    expands = True

    def _build_branch(
        self, in_planes: int, planes: int, out_planes: int, *, conv: ConvType, stride: Stride3d,
        mid: int,
    ) -> None:  # fmt: skip
        self.conv1 = nn.Sequential(
            nn.Conv3d(in_planes, planes, 1, bias=False),
            nn.BatchNorm3d(planes),
            nn.ReLU(inplace=True),
        )
        self.conv2 = nn.Sequential(
            conv.build(planes, planes, mid, stride), nn.BatchNorm3d(planes), nn.ReLU(inplace=True)
        )
        self.conv3 = nn.Sequential(
            nn.Conv3d(planes, out_planes, 1, bias=False), nn.BatchNorm3d(out_planes)
        )

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.conv2(self.conv1(x)))

    def last_norm(self) -> nn.BatchNorm3d:
        return self.conv3[1]


BLOCKS: dict[str, type[_ResidualBlock]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


class VideoResNet(PooledLinearClassifier):
    """3D ResNet on clips (N, C, T, H, W) → logits (N, num_classes).

    Architecture keywords (stem … widths) come from a ``PRESETS`` row; the others are per run.
    Any T, H, W work (adaptive head); each stride halves the size with rounding up.
    With ``sr_blocks`` an SR block follows every residual block; ``gates`` adds the temporal
    cycle-consistency gate, enabled from epoch ``gates_from_epoch`` on (``set_epoch``).
    """

    def __init__(
        self,
        *,
        stem: str,
        stem_pool: str,
        block: str,
        depths: tuple[int, ...],
        convs: tuple[str, ...],
        expansion: int = 1,
        temporal_stride: bool = True,
        widths: tuple[int, ...] = (64, 128, 256, 512),
        num_classes: int = 400,
        in_channels: int = 3,
        dropout: float = 0.0,
        sr_blocks: bool = False,
        gates: bool = False,
        gates_from_epoch: int = 0,
        recalibration: str = "paper",
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if gates and not sr_blocks:
            raise ValueError("gates=True needs sr_blocks=True (the gate belongs to the SR block)")
        self.num_classes = num_classes
        self.gates_from_epoch = gates_from_epoch
        self.stem = STEMS[stem](in_channels, widths[0])
        self.stem_pool = STEM_POOLS[stem_pool]()
        sr_options = {"gates": gates, "recalibration": recalibration} if sr_blocks else None
        in_planes = widths[0]
        for index, (width, depth, conv) in enumerate(zip(widths, depths, convs)):
            conv_type, s = CONV_TYPES[conv], 1 if index == 0 else 2
            stride = (s if temporal_stride and conv_type.strides_time else 1, s, s)
            out_planes = BLOCKS[block].out_planes(width, expansion)
            blocks = [
                BLOCKS[block](
                    in_planes if block_index == 0 else out_planes,
                    width,
                    conv=conv_type,
                    stride=stride if block_index == 0 else (1, 1, 1),
                    expansion=expansion,
                    sr=SqueezeRecursion(out_planes, **sr_options) if sr_options else nn.Identity(),
                )
                for block_index in range(depth)
            ]
            self.add_module(f"layer{index + 1}", nn.Sequential(*blocks))
            in_planes = out_planes
        self.add_head(in_planes, num_classes, dropout)
        init_resnet_weights(self)
        if zero_init_residual:
            for module in self.modules():
                if isinstance(module, _ResidualBlock):
                    nn.init.zeros_(module.last_norm().weight)
        self.set_epoch(0)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, T, H, W) → feature map (N, num_features, T', H', W')."""
        x = self.stem_pool(self.stem(x))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def gated_blocks(self) -> list[SqueezeRecursion]:
        return [m for m in self.modules() if isinstance(m, SqueezeRecursion) and m.gates]

    def set_epoch(self, epoch: int) -> None:
        """Turn the cycle-consistency gates on from ``gates_from_epoch`` (0-based) on."""
        for module in self.gated_blocks():
            module.gate_enabled.fill_(epoch >= self.gates_from_epoch)

    def gate_pass_fraction(self) -> float | None:
        """Mean fraction of the last batch passed by the enabled gates; ``None`` if none ran."""
        fractions = [
            m.last_pass_fraction
            for m in self.gated_blocks()
            if bool(m.gate_enabled) and m.last_pass_fraction is not None
        ]
        return float(torch.stack(fractions).mean()) if fractions else None


@dataclass(frozen=True)
class VideoResNetPreset:
    """One registered variant: the architecture keywords of ``VideoResNet`` plus its defaults."""

    stem: str
    stem_pool: str
    block: str
    depths: tuple[int, ...]
    convs: tuple[str, ...]
    expansion: int = 1
    temporal_stride: bool = True
    widths: tuple[int, ...] = (64, 128, 256, 512)
    sr_blocks: bool = False  # default of the builder's ``sr_blocks``
    dropout: float = 0.0  # default of the builder's ``dropout``
    tags: tuple[str, ...] = field(default=())

    def architecture(self) -> dict:
        fields = asdict(self)
        for run_option in ("sr_blocks", "dropout", "tags"):
            fields.pop(run_option)
        return fields


_R3D, _R2PLUS1D, _TV = ("3d",) * 4, ("2plus1d",) * 4, ("torchvision",)
_TINY = {"depths": (1, 1, 1, 1), "widths": (16, 32, 64, 128), "block": "basic"}

_DEPTHS = {  # depth -> (block, blocks per stage)
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}

_FAMILIES = {  # name prefix -> (preset fields shared by its depths, depths registered)
    "r3d": (
        {"stem": "r3d", "stem_pool": "none", "convs": _R3D, "expansion": 4, "tags": _TV},
        (18, 34, 50, 101, 152),
    ),
    "r2plus1d": (
        {"stem": "r2plus1d", "stem_pool": "none", "convs": _R2PLUS1D, "expansion": 4, "tags": _TV},
        (18, 34, 50, 101, 152),
    ),
    "srtg_r3d": (
        {"stem": "r3d", "stem_pool": "max3d", "convs": _R3D, "sr_blocks": True, "tags": ("srtg",)},
        (18, 34, 50, 101, 152),
    ),
    "srtg_r2plus1d": (
        {
            "stem": "r2plus1d",
            "stem_pool": "max3d",
            "convs": _R2PLUS1D,
            "sr_blocks": True,
            "tags": ("srtg",),
        },
        (18, 34, 50, 101, 152),
    ),
    "tao_r3d": (
        {
            "stem": "tao",
            "stem_pool": "tao",
            "convs": _R3D,
            "expansion": 4,
            "temporal_stride": False,
            "dropout": 0.5,
            "tags": ("tao",),
        },
        (18, 34, 50, 101, 152),
    ),
}

PRESETS: dict[str, VideoResNetPreset] = {
    f"{prefix}_{depth}": VideoResNetPreset(
        block=_DEPTHS[depth][0], depths=_DEPTHS[depth][1], **fields
    )
    for prefix, (fields, depths) in _FAMILIES.items()
    for depth in depths
}
PRESETS |= {
    # torchvision MC3: 3×3×3 convs in the first stage, (1,3,3) after it
    "mc3_18": VideoResNetPreset(
        stem="r3d",
        stem_pool="none",
        block="basic",
        depths=(2, 2, 2, 2),
        convs=("3d",) + ("2d",) * 3,
    ),
}
PRESETS |= {  # small fast variants for tests and demos: one basic block per stage, widths 16–128
    f"{prefix}_tiny": VideoResNetPreset(
        **{**_FAMILIES[prefix][0], **_TINY, "tags": (*_FAMILIES[prefix][0].get("tags", ()), "tiny")}
    )
    for prefix in _FAMILIES
}


for _name, _preset in PRESETS.items():
    register_variant(
        _name, VideoResNet, family="video", input_layout="NCTHW",
        doc=f"Build ``{_name}`` (see ``network.video_resnet.PRESETS``).",
        tags=("3d", *_preset.tags), fixed=_preset.architecture(),
        defaults={"dropout": _preset.dropout, "sr_blocks": _preset.sr_blocks},
    )  # fmt: skip
