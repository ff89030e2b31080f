"""Items that evaluation and inference leave out instead of substituting another one.

A dataset in an evaluation mode returns an :class:`ExcludedItem` where a training dataset would
substitute the next readable item; :class:`ExcludingCollate` (which ``build_eval_loader`` puts
around every evaluation collate function) separates them from the scored items, so every batch
from an evaluation loader is ``(collated batch or None, [ExcludedItem, ...])``::

    for batch, excluded in loader:
        ...  # score ``batch`` (None when every item of the batch was excluded), count ``excluded``
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from torch.utils.data import default_collate

__all__ = ["ExcludedItem", "ExcludingCollate"]


@dataclass(frozen=True)
class ExcludedItem:
    """An item that could not be read: its ``sample_id`` (video index), a name for people
    (the video path or ``<class>/<video>``) and the reason."""

    sample_id: int
    name: str
    reason: str


class ExcludingCollate:
    """``batch -> (inner(scored items) or None, excluded items)``; picklable for spawned workers."""

    def __init__(self, inner: Callable[[list], Any] | None = None) -> None:
        self.inner = inner or default_collate

    def __call__(self, items: Sequence[Any]) -> tuple[Any, list[ExcludedItem]]:
        excluded = [item for item in items if isinstance(item, ExcludedItem)]
        scored = [item for item in items if not isinstance(item, ExcludedItem)]
        return (self.inner(scored) if scored else None), excluded
