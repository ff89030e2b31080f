"""Blocks per stage of a ResNet-style state dict, read from its key names (no network built)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["stage_depths"]


def stage_depths(tensors: Mapping[str, Any]) -> tuple[int, ...]:
    """Blocks per stage (layer1..4) of a ResNet-style state dict."""
    return tuple(
        1 + max((int(k.split(".")[1]) for k in tensors if k.startswith(f"layer{i}.")), default=-1)
        for i in range(1, 5)
    )
