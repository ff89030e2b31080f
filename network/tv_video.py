"""torchvision's video transformers and S3D, built by torchvision's own builders.

    from network import build_model
    model = build_model("swin3d_t", num_classes=51)

``s3d``, ``mvit_v1_b``, ``mvit_v2_s``, ``swin3d_t``, ``swin3d_s`` and ``swin3d_b`` are made by
``torchvision.models.video.<name>(weights=None, ...)`` (no copied network code); the wrapper
adopts the built model's children under their own names, so torchvision's weight files
(``s3d-d76dad2f.pth``, ``mvit_v2_s-ae3be167.pth``, ...) load by name, and splits torchvision's
``forward`` into ``forward_features`` and ``forward_head`` without changing the computation.
(``r3d_18``, ``mc3_18`` and ``r2plus1d_18`` are ``network.video_resnet``'s, numerically equal to
torchvision's.) The tiny variants are torchvision's ``MViT`` and ``SwinTransformer3d`` classes
with small settings.

Clip shapes, from the torchvision code (``network.registry.InputConstraints``, checked before
training): MViT adds a positional embedding made for one patch grid (8×56×56 from 16×224²),
so it takes 16×224² clips only; S3D ends in a fixed (2,7,7) average pool after 8× temporal and
32× spatial downsampling, so it needs at least 13×209² (torchvision documents 14×224²); Swin3D
pads to its patch and window sizes and takes any clip.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torchvision.models.video as tv_video
from torch import nn
from torchvision.models.video.mvit import MSBlockConfig, MViT
from torchvision.models.video.swin_transformer import SwinTransformer3d

from network.base import Classifier
from network.registry import InputConstraints, register_model

__all__ = ["MODELS", "MViTClassifier", "S3DClassifier", "Swin3dClassifier", "TorchvisionModel"]


def _adopt(owner: nn.Module, model: nn.Module) -> None:
    """Make ``model``'s children ``owner``'s, under the same names (so state_dict names match)."""
    if next(model.parameters(recurse=False), None) is not None or list(model.buffers(False)):
        raise TypeError(f"{type(model).__name__} holds tensors outside its children")
    for name, child in model.named_children():
        owner.add_module(name, child)


def _first_conv(module: nn.Module) -> tuple[nn.Module, str, nn.Conv3d]:
    """(parent, attribute, conv) of the first Conv3d in ``module``: the one that reads the clip."""
    for parent in module.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Conv3d):
                return parent, name, child
    raise TypeError(f"{type(module).__name__} has no Conv3d")


def _set_in_channels(model: nn.Module, in_channels: int) -> None:
    """Replace the input convolution for ``in_channels`` (e.g. 2 for optical flow) when not 3."""
    if in_channels == 3:
        return
    parent, name, conv = _first_conv(model)
    replacement = nn.Conv3d(
        in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        groups=conv.groups,
        bias=conv.bias is not None,
    )
    setattr(parent, name, replacement)


class TorchvisionModel(Classifier):
    """A torchvision video network with the ActRec interface; subclasses split its forward."""

    classifier_name: str  # the module that reset_classifier replaces (the torchvision name)

    def __init__(self, model: nn.Module, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        _set_in_channels(model, in_channels)
        _adopt(self, model)

    def _classifier(self) -> nn.Module:
        return self.get_submodule(self.classifier_name)

    def reset_classifier(self, num_classes: int) -> None:
        old = self._classifier()
        device = next(old.parameters()).device
        new = self._new_classifier(old, num_classes).to(device)
        parent, _, attribute = self.classifier_name.rpartition(".")
        setattr(self.get_submodule(parent) if parent else self, attribute, new)
        self.num_classes = num_classes

    def _new_classifier(self, old: nn.Module, num_classes: int) -> nn.Module:
        """A Linear like ``old`` with ``num_classes`` outputs, torchvision's transformer init."""
        layer = nn.Linear(old.in_features, num_classes)
        nn.init.trunc_normal_(layer.weight, std=0.02)
        nn.init.zeros_(layer.bias)
        return layer


class S3DClassifier(TorchvisionModel):
    """torchvision S3D: features → (2,7,7) average pool (stride 1) → dropout → 1×1×1 conv
    classifier → mean over the remaining T, H, W (as torchvision's forward)."""

    classifier_name = "classifier.1"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, T, H, W) → (N, 1024, T/8 − 1, H/32 − 6, W/32 − 6), pooled windows."""
        return self.avgpool(self.features(x))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(features).mean(dim=(2, 3, 4))

    def _new_classifier(self, old: nn.Module, num_classes: int) -> nn.Module:
        return nn.Conv3d(old.in_channels, num_classes, kernel_size=1)


class MViTClassifier(TorchvisionModel):
    """torchvision MViT (v1/v2): patches + positional encoding → blocks → norm → class token."""

    classifier_name = "head.1"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, T, H, W) → the class token (N, C) after the final norm."""
        x = self.conv_proj(x).flatten(2).transpose(1, 2)
        x = self.pos_encoding(x)
        thw = (self.pos_encoding.temporal_size, *self.pos_encoding.spatial_size)
        for block in self.blocks:
            x, thw = block(x, thw)
        return self.norm(x)[:, 0]

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)


class Swin3dClassifier(TorchvisionModel):
    """torchvision Swin3D: patches → stages → norm → global average pool → linear head."""

    classifier_name = "head"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, T, H, W) → token map (N, C, T/2, H/32, W/32) after the final norm."""
        x = self.features(self.pos_drop(self.patch_embed(x)))
        return self.norm(x).permute(0, 4, 1, 2, 3)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.avgpool(features), 1))


# ----------------------------------------------------------------------------- tiny settings
def _mvit_tiny(**kwargs: Any) -> MViT:
    """MViT v2 style (pooling residual, relative positions) with 3 blocks, widths 16–32, on
    8×32² clips (4×8×8 patches)."""
    settings = [  # heads, in, out, kernel_q, kernel_kv, stride_q, stride_kv
        (1, 16, 16, [3, 3, 3], [3, 3, 3], [1, 1, 1], [1, 2, 2]),
        (2, 16, 32, [3, 3, 3], [3, 3, 3], [1, 2, 2], [1, 1, 1]),
        (2, 32, 32, [3, 3, 3], [3, 3, 3], [1, 1, 1], [1, 1, 1]),
    ]
    return MViT(
        spatial_size=(32, 32),
        temporal_size=8,
        block_setting=[MSBlockConfig(*row) for row in settings],
        residual_pool=True,
        residual_with_cls_embed=False,
        rel_pos_embed=True,
        proj_after_attn=True,
        **kwargs,
    )


def _swin3d_tiny(**kwargs: Any) -> SwinTransformer3d:
    """Swin3D with one block per stage, widths 16–128, windows 2×3×3."""
    return SwinTransformer3d(
        patch_size=[2, 4, 4],
        embed_dim=16,
        depths=[1, 1, 1, 1],
        num_heads=[1, 2, 2, 4],
        window_size=[2, 3, 3],
        **kwargs,
    )


@dataclass(frozen=True)
class TorchvisionEntry:
    """One registered torchvision network: its builder, wrapper, default dropout, clip shapes."""

    builder: Callable[..., nn.Module]
    wrapper: type[TorchvisionModel]
    dropout: float  # torchvision's default (Swin3D's is after the patch embedding and in MLPs)
    constraints: InputConstraints
    tags: tuple[str, ...] = field(default=())


_MVIT_FIXED = "torchvision's MViT positional embedding is made for 8×56×56 patches"
_S3D_MINIMUM = "S3D ends in a fixed 2×7×7 average pool"
MODELS: dict[str, TorchvisionEntry] = {
    "s3d": TorchvisionEntry(
        tv_video.s3d,
        S3DClassifier,
        0.2,
        InputConstraints(reference=(16, 224, 224), minimum=(13, 209, 209), reason=_S3D_MINIMUM),
    ),
    "mvit_v1_b": TorchvisionEntry(
        tv_video.mvit_v1_b,
        MViTClassifier,
        0.5,
        InputConstraints(reference=(16, 224, 224), fixed=(16, 224, 224), reason=_MVIT_FIXED),
    ),
    "mvit_v2_s": TorchvisionEntry(
        tv_video.mvit_v2_s,
        MViTClassifier,
        0.5,
        InputConstraints(reference=(16, 224, 224), fixed=(16, 224, 224), reason=_MVIT_FIXED),
    ),
    "swin3d_t": TorchvisionEntry(
        tv_video.swin3d_t, Swin3dClassifier, 0.0, InputConstraints(reference=(16, 224, 224))
    ),
    "swin3d_s": TorchvisionEntry(
        tv_video.swin3d_s, Swin3dClassifier, 0.0, InputConstraints(reference=(16, 224, 224))
    ),
    "swin3d_b": TorchvisionEntry(
        tv_video.swin3d_b, Swin3dClassifier, 0.0, InputConstraints(reference=(16, 224, 224))
    ),
    "mvit_tiny": TorchvisionEntry(
        _mvit_tiny,
        MViTClassifier,
        0.5,
        InputConstraints(
            reference=(8, 32, 32),
            fixed=(8, 32, 32),
            reason="its positional embedding is made for 4×8×8 patches",
        ),
        tags=("tiny",),
    ),
    "swin3d_tiny": TorchvisionEntry(
        _swin3d_tiny, Swin3dClassifier, 0.0, InputConstraints(reference=(8, 32, 32)), ("tiny",)
    ),
}


def _register(name: str, entry: TorchvisionEntry) -> None:
    def build(
        *, num_classes: int = 400, in_channels: int = 3, dropout: float = entry.dropout
    ) -> TorchvisionModel:
        model = entry.builder(num_classes=num_classes, dropout=dropout)
        return entry.wrapper(model, num_classes, in_channels)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"Build ``{name}`` with torchvision's builder (``network.tv_video``)."
    register_model(
        name,
        family="video",
        input_layout="NCTHW",
        tags=("3d", "torchvision", *entry.tags),
        constraints=entry.constraints,
    )(build)


for _name, _entry in MODELS.items():
    _register(_name, _entry)
