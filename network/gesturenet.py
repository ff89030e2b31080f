"""GestureNet: a hand-crop classifier on a ResNet "vanilla" backbone (TAO GestureNet, seed 003).

Input ``(N, C, H, W)`` with C = 3 (RGB) or 1 (``gray_scale_input``), 160×160 by default; output
logits ``(N, num_classes)``. ``num_layers`` counts weighted layers the way TAO names its depths:
the 7×7 stem conv + every 3×3 / bottleneck conv + the classifier (1×1 shortcut projections are
not counted). The per-depth tables for 6/10/12/26 are inferred from NVIDIA's public HelNet template
(shared/reference/gesture.md §2), with residual shortcuts added.

Freezing for two-stage training works on ``layer_groups()``: one entry per counted layer, input to
output, so ``len(model.layer_groups()) == num_layers``; see ``freeze_all_but_last``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from network.layers import PooledLinearClassifier
from network.registry import register_variant

__all__ = [
    "BLOCK_TABLE",
    "GestureNet",
    "count_weighted_layers",
    "freeze_all_but_last",
]


@dataclass(frozen=True)
class DepthSpec:
    """blocks: residual blocks per stage; convs: convs per block; bottleneck: 1×1-3×3-1×1."""

    blocks: tuple[int, int, int, int]
    convs: int
    bottleneck: bool = False


BLOCK_TABLE: dict[int, DepthSpec] = {
    6: DepthSpec((1, 1, 1, 1), convs=1),  # 1 stem + 4×1 + FC (HelNet table, inferred)
    10: DepthSpec((1, 1, 1, 1), convs=2),  # 1 + 8 + 1
    12: DepthSpec((1, 1, 2, 1), convs=2),  # 1 + 10 + 1 (HelNet table, inferred)
    18: DepthSpec((2, 2, 2, 2), convs=2),  # 1 + 16 + 1, the published GestureNet depth
    26: DepthSpec((3, 4, 3, 2), convs=2),  # 1 + 24 + 1 (HelNet table, inferred)
    34: DepthSpec((3, 4, 6, 3), convs=2),  # 1 + 32 + 1
    50: DepthSpec((3, 4, 6, 3), convs=3, bottleneck=True),  # 1 + 48 + 1
    101: DepthSpec((3, 4, 23, 3), convs=3, bottleneck=True),  # 1 + 99 + 1
    152: DepthSpec((3, 8, 36, 3), convs=3, bottleneck=True),  # 1 + 150 + 1
}

DEFAULT_WIDTHS = (64, 128, 256, 512)
BOTTLENECK_EXPANSION = 4
REGULARIZERS = ("l1", "l2", "none")


def _norm(channels: int, use_batch_norm: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if use_batch_norm else nn.Identity()


class ConvUnit(nn.Module):
    """conv → (BN) → optional ReLU, one counted layer: ``(N, C_in, H, W) → (N, C_out, H', W')``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int,
        stride: int = 1,
        use_batch_norm: bool,
        relu: bool = True,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            bias=not use_batch_norm,
        )
        self.norm = _norm(out_channels, use_batch_norm)
        self.act = nn.ReLU(inplace=True) if relu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class ResidualBlock(nn.Module):
    """``len(kernels)`` ConvUnits with a shortcut; the last unit's ReLU comes after the sum.

    kernels/widths give each unit's kernel size and output channels; ``stride`` is applied by the
    3×3 unit (the first unit in basic blocks, the middle one in bottlenecks, as torchvision does).
    """

    def __init__(
        self,
        in_channels: int,
        widths: tuple[int, ...],
        kernels: tuple[int, ...],
        *,
        stride: int,
        use_batch_norm: bool,
    ) -> None:
        super().__init__()
        stride_at = kernels.index(3)
        units = []
        channels = in_channels
        for i, (width, kernel) in enumerate(zip(widths, kernels)):
            units.append(
                ConvUnit(
                    channels,
                    width,
                    kernel_size=kernel,
                    stride=stride if i == stride_at else 1,
                    use_batch_norm=use_batch_norm,
                    relu=i < len(widths) - 1,
                )
            )
            channels = width
        self.units = nn.ModuleList(units)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != channels:
            self.shortcut = ConvUnit(
                in_channels,
                channels,
                kernel_size=1,
                stride=stride,
                use_batch_norm=use_batch_norm,
                relu=False,
            )
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for unit in self.units:
            out = unit(out)
        return torch.relu(out + self.shortcut(x))

    def layer_groups(self) -> list[nn.Module]:
        """One group per counted conv; the shortcut projection joins the last unit (same sum)."""
        groups: list[nn.Module] = list(self.units[:-1])
        groups.append(nn.ModuleList([self.units[-1], self.shortcut]))
        return groups


def _block_shape(spec: DepthSpec, width: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(widths, kernels) of one block of a stage of base ``width``."""
    if spec.bottleneck:
        return (width, width, width * BOTTLENECK_EXPANSION), (1, 3, 1)
    return (width,) * spec.convs, (3,) * spec.convs


class GestureNet(PooledLinearClassifier):
    """ResNet-vanilla hand-gesture classifier. ``(N, C, H, W) → (N, num_classes)``.

    Args:
        num_classes: output classes (6 for thumbs_up, fist, stop, ok, two, random).
        num_layers: a key of ``BLOCK_TABLE``.
        gray_scale_input: 1 input channel instead of 3.
        use_batch_norm: BatchNorm after every conv (convs get a bias otherwise).
        kernel_regularizer_type: "l1", "l2" or "none"; applied to every conv kernel.
        kernel_regularizer_factor: the regulariser's factor (TAO ``kernel_regularization_factor``).
        dropout: dropout probability before the classifier.
        widths: channels of the four stages (the tiny variant narrows them).
    """

    def __init__(
        self,
        *,
        num_classes: int = 6,
        num_layers: int = 18,
        gray_scale_input: bool = False,
        use_batch_norm: bool = True,
        kernel_regularizer_type: str = "l2",
        kernel_regularizer_factor: float = 1e-3,
        dropout: float = 0.0,
        widths: tuple[int, int, int, int] = DEFAULT_WIDTHS,
    ) -> None:
        super().__init__()
        if num_layers not in BLOCK_TABLE:
            raise ValueError(f"num_layers must be one of {sorted(BLOCK_TABLE)}, got {num_layers}")
        if kernel_regularizer_type not in REGULARIZERS:
            raise ValueError(
                f"kernel_regularizer_type must be one of {REGULARIZERS}, "
                f"got {kernel_regularizer_type!r}"
            )
        spec = BLOCK_TABLE[num_layers]
        self.num_classes = num_classes
        self.num_layers = num_layers
        self.in_channels = 1 if gray_scale_input else 3
        self.kernel_regularizer_type = kernel_regularizer_type
        self.kernel_regularizer_factor = kernel_regularizer_factor
        self.stem = ConvUnit(
            self.in_channels, widths[0], kernel_size=7, stride=2, use_batch_norm=use_batch_norm
        )
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        blocks: list[ResidualBlock] = []
        channels = widths[0]
        for stage, (count, width) in enumerate(zip(spec.blocks, widths)):
            block_widths, kernels = _block_shape(spec, width)
            for i in range(count):
                stride = 2 if stage > 0 and i == 0 else 1
                block = ResidualBlock(
                    channels, block_widths, kernels, stride=stride, use_batch_norm=use_batch_norm
                )
                blocks.append(block)
                channels = block.out_channels
        self.blocks = nn.Sequential(*blocks)
        self.add_head(channels, num_classes, dropout)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W) → (N, num_features)`` globally average-pooled features."""
        x = self.blocks(self.pool(self.stem(x)))
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)

    def layer_groups(self) -> list[nn.Module]:
        """The counted layers, input to output: stem, each block conv, classifier."""
        groups: list[nn.Module] = [self.stem]
        for block in self.blocks:
            groups.extend(block.layer_groups())
        groups.append(self.fc)
        return groups

    def regularization_loss(self) -> torch.Tensor:
        """``factor · Σ|W|`` (l1) or ``factor · Σ W²`` (l2) over trainable conv kernels.

        Frozen kernels are left out: they receive no gradient, so their term is a constant.
        """
        kernels = [
            m.weight for m in self.modules() if isinstance(m, nn.Conv2d) and m.weight.requires_grad
        ]
        total = self.fc.weight.new_zeros(())
        if self.kernel_regularizer_type == "none" or not kernels:
            return total
        power = 1 if self.kernel_regularizer_type == "l1" else 2
        for weight in kernels:
            total = total + weight.abs().pow(power).sum()
        return total * self.kernel_regularizer_factor

    def train(self, mode: bool = True) -> GestureNet:
        """Like ``nn.Module.train``, but BatchNorms whose weights are frozen keep running stats."""
        super().train(mode)
        if mode:
            for module in self.modules():
                if isinstance(module, nn.BatchNorm2d) and not module.weight.requires_grad:
                    module.eval()
        return self


def count_weighted_layers(model: GestureNet) -> int:
    """Convs (without 1×1 shortcut projections) + linear layers: TAO's ``num_layers``."""
    shortcuts = {
        id(block.shortcut.conv) for block in model.blocks if isinstance(block.shortcut, ConvUnit)
    }
    return sum(
        1
        for m in model.modules()
        if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and id(m) not in shortcuts)
    )


def freeze_all_but_last(model: GestureNet, num_layers_unfreeze: int) -> list[nn.Parameter]:
    """Freeze every layer from the input on, leaving the classifier and the last
    ``num_layers_unfreeze`` counted layers below it trainable; returns the trainable parameters.

    TAO's tutorial uses 0 to mean "classifier only", so the classifier always trains; a value at or
    above the depth unfreezes everything.
    """
    groups = model.layer_groups()
    body, head = groups[:-1], groups[-1]
    keep = max(0, min(num_layers_unfreeze, len(body)))
    for param in model.parameters():
        param.requires_grad_(False)
    trainable = [head, *body[len(body) - keep :]]
    for group in trainable:
        for param in group.parameters():
            param.requires_grad_(True)
    model.train(model.training)
    return [p for p in model.parameters() if p.requires_grad]


# Registered variants: name -> (default num_layers, widths, default regulariser factor, tags, doc).
VARIANTS: dict[str, tuple[int, tuple[int, ...], float, tuple[str, ...], str]] = {
    "gesturenet": (18, (64, 128, 256, 512), 1e-3, (),
                   "GestureNet at full width (64/128/256/512), 160×160 input by default."),
    "gesturenet_tiny": (10, (16, 32, 64, 128), 1e-4, ("tiny",),
                        "A narrow (16/32/64/128) 10-layer GestureNet for tests and the CPU demo."),
}  # fmt: skip


for _name, (_layers, _widths, _factor, _tags, _doc) in VARIANTS.items():
    register_variant(
        _name, GestureNet, family="gesture", input_layout="NCHW", doc=_doc, tags=_tags,
        fixed={"widths": _widths},
        defaults={"num_layers": _layers, "kernel_regularizer_factor": _factor},
    )  # fmt: skip
