"""Two-stream (RGB + optical flow) model with TAO's late fusion of logits.

Each stream is a complete registered classifier. Their logits are concatenated (N, 2·n) and fused
by fc1 (2n → num_fc) → ReLU → fc2 (num_fc → n) (shared/reference/video.md A9), as TAO's
``JointModel`` (streams ``model_rgb``/``model_of`` there, ``rgb``/``flow`` here; with ``tao_r3d_*``
or ``resnet2d_*`` streams a TAO joint state dict loads through ``load_pretrained``). Each stream
can start from its own checkpoint trained with another class count: ``load_pretrained`` copies
everything but the classifier, which stays freshly built (reported as "head replaced"); any other
difference refuses the file unless ``pretrained_partial``.
"""

from __future__ import annotations

import torch
from torch import nn

from network.base import Classifier
from network.registry import build_model, get_entry, register_model
from network.weights import load_pretrained

__all__ = ["JointStreamNet"]


def _build_stream(
    name: str,
    *,
    num_classes: int,
    in_channels: int,
    num_frames: int | None,
    pretrained: str | None,
    partial: bool = False,
) -> nn.Module:
    kwargs: dict = {"num_classes": num_classes, "in_channels": in_channels}
    if get_entry(name).input_layout == "NCHW":  # stacked frames: the first conv needs T
        kwargs["num_frames"] = num_frames
    stream = build_model(name, **kwargs)
    if pretrained is not None:
        load_pretrained(stream, pretrained, partial=partial)
    return stream


class JointStreamNet(Classifier):
    """(rgb, flow) → logits (N, num_classes); inputs in each stream's own layout."""

    def __init__(
        self,
        rgb: nn.Module,
        flow: nn.Module,
        *,
        num_classes: int,
        num_fc: int = 64,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.rgb, self.flow = rgb, flow
        self.dropout = nn.Dropout(dropout)
        self.fc1 = nn.Linear(2 * num_classes, num_fc)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(num_fc, num_classes)

    def forward_features(self, rgb: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        """→ concatenated stream logits (N, 2·num_classes)."""
        return torch.cat([self.rgb(rgb), self.flow(flow)], dim=1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.relu(self.fc1(self.dropout(features))))

    def reset_classifier(self, num_classes: int) -> None:
        """New class count for both streams and the fusion layers."""
        self.rgb.reset_classifier(num_classes)
        self.flow.reset_classifier(num_classes)
        device = self.fc1.weight.device
        self.fc1 = nn.Linear(2 * num_classes, self.fc1.out_features, device=device)
        self.fc2 = nn.Linear(self.fc2.in_features, num_classes, device=device)
        self.num_classes = num_classes

    def set_epoch(self, epoch: int) -> None:
        for stream in (self.rgb, self.flow):
            if hasattr(stream, "set_epoch"):
                stream.set_epoch(epoch)

    def gate_pass_fraction(self) -> float | None:
        """Mean of the streams' SRTG gate pass fractions; ``None`` when no gate ran."""
        fractions = [
            fraction
            for stream in (self.rgb, self.flow)
            if hasattr(stream, "gate_pass_fraction")
            and (fraction := stream.gate_pass_fraction()) is not None
        ]
        return sum(fractions) / len(fractions) if fractions else None


def _register(name: str, default_network: str, tags: tuple[str, ...]) -> None:
    def build(
        *,
        num_classes: int = 400,
        rgb_network: str = default_network,
        of_network: str = default_network,
        num_fc: int = 64,
        dropout: float = 0.0,
        rgb_pretrained: str | None = None,
        of_pretrained: str | None = None,
        rgb_frames: int = 16,
        of_frames: int = 16,
        pretrained_partial: bool = False,
    ) -> JointStreamNet:
        rgb = _build_stream(
            rgb_network,
            num_classes=num_classes,
            in_channels=3,
            num_frames=rgb_frames,
            pretrained=rgb_pretrained,
            partial=pretrained_partial,
        )
        flow = _build_stream(
            of_network,
            num_classes=num_classes,
            in_channels=2,
            num_frames=of_frames,
            pretrained=of_pretrained,
            partial=pretrained_partial,
        )
        return JointStreamNet(rgb, flow, num_classes=num_classes, num_fc=num_fc, dropout=dropout)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = "Two-stream RGB + flow model; streams are registered network names."
    register_model(name, family="video", input_layout="joint", tags=tags)(build)


_register("joint", "r3d_18", ("joint",))
_register("joint_tiny", "r3d_tiny", ("joint", "tiny"))
