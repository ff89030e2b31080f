"""Pieces shared by the video networks: the pooled linear head and ResNet-style initialisation."""

from __future__ import annotations

import torch
from torch import nn

from network.base import Classifier

__all__ = ["PooledLinearClassifier", "init_resnet_weights", "reset_linear"]


def reset_linear(layer: nn.Linear) -> None:
    """Classifier init used by torchvision's video ResNets and SRTG: N(0, 0.01) weights, zero bias."""
    nn.init.normal_(layer.weight, 0.0, 0.01)
    nn.init.zeros_(layer.bias)


def init_resnet_weights(model: nn.Module) -> None:
    """Kaiming (fan_out) convolutions, BN/GN at 1/0, linears N(0, 0.01); recurrent cells untouched."""
    for module in model.modules():
        if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d | nn.BatchNorm3d | nn.GroupNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            reset_linear(module)


class PooledLinearClassifier(Classifier):
    """A classifier whose head is global average pooling → dropout → ``self.fc``.

    Subclasses create the head with :meth:`add_head` (``self.dropout``, an ``nn.Dropout``, and
    ``self.fc``, an ``nn.Linear``: the state_dict keys ``fc.weight`` / ``fc.bias``) and implement
    ``forward_features`` returning a map (N, C, ...) or already pooled (N, C) features.
    """

    dropout: nn.Dropout
    fc: nn.Linear

    def add_head(self, num_features: int, num_classes: int, dropout: float) -> None:
        """Dropout(p=``dropout``) → Linear(``num_features`` → ``num_classes``), PyTorch's init."""
        self.num_features = num_features
        self.num_classes = num_classes
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(num_features, num_classes)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """(N, C, *spatial) or (N, C) → logits (N, num_classes)."""
        if features.ndim > 2:
            features = features.mean(dim=tuple(range(2, features.ndim)))
        return self.fc(self.dropout(features))

    def reset_classifier(self, num_classes: int) -> None:
        device = self.fc.weight.device
        self.fc = nn.Linear(self.fc.in_features, num_classes, device=device)
        reset_linear(self.fc)
        self.num_classes = num_classes
