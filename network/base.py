"""The one small interface every network offers (shared/CONVENTIONS.md §8)."""

from __future__ import annotations

import torch
from torch import nn


class Classifier(nn.Module):
    """Base class: ``forward(x) == forward_head(forward_features(x))``.

    Subclasses implement ``forward_features`` (input → pooled or unpooled features) and
    ``forward_head`` (features → logits (N, num_classes), with dropout before the classifier),
    and ``reset_classifier(num_classes)`` which swaps in a freshly initialised classifier.
    """

    num_classes: int

    def forward_features(self, *inputs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def reset_classifier(self, num_classes: int) -> None:
        raise NotImplementedError

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(*inputs))
