"""SoftPool (Stergiou, Poppe & Kalliatakis, ICCV 2021) in plain PyTorch, no compiled extension.

Each window returns Σ softmax(x)·x over its elements: a smooth maximum that keeps the gradient of
every element. Computed as avg_pool(e^x · x) / avg_pool(e^x) in float32, with e^x shifted by the
per-(sample, channel) maximum, which cancels in the ratio and keeps the exponentials ≤ 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SoftPool3d", "soft_pool3d"]

Size3d = int | tuple[int, int, int]


def soft_pool3d(x: torch.Tensor, kernel_size: Size3d, stride: Size3d | None = None) -> torch.Tensor:
    """(N, C, T, H, W) → (N, C, T', H', W') with T' = (T − kt) // st + 1 etc. (no padding).

    A window whose values all lie more than ~87 below its channel's maximum underflows; it then
    returns 0 instead of NaN.
    """
    stride = kernel_size if stride is None else stride
    values = x.float()
    weights = torch.exp(values - values.detach().amax(dim=(2, 3, 4), keepdim=True))
    numerator = F.avg_pool3d(weights * values, kernel_size, stride)
    denominator = F.avg_pool3d(weights, kernel_size, stride)
    return (numerator / denominator.clamp_min(torch.finfo(torch.float32).tiny)).to(x.dtype)


class SoftPool3d(nn.Module):
    """Module form of ``soft_pool3d``."""

    def __init__(self, kernel_size: Size3d, stride: Size3d | None = None) -> None:
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return soft_pool3d(x, self.kernel_size, self.stride)
