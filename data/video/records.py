"""What a split holds: one record per video and the train/val lists with class names."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["SplitResult", "VideoRecord"]


@dataclass(frozen=True)
class VideoRecord:
    """One prepared video: its frame-store directory, class index and ``<class>/<video>`` name."""

    path: Path
    label: int
    name: str


@dataclass
class SplitResult:
    train: list[VideoRecord]
    val: list[VideoRecord]
    class_names: list[str]
    missing: list[str] = field(default_factory=list)
    missing_val: list[str] = field(default_factory=list)  # the validation entries of ``missing``
    unlisted_classes: list[str] = field(default_factory=list)  # data folders no entry names
