"""Sliding windows of the TAO stand-alone sample (shared/reference/video.md A11), generalised.

A window of T consecutive frames slides with stride s: starts 0, s, 2s, ... while the window fits
(N ≥ T). A video shorter than one window (N < T) gives one looped window ``arange(T) mod N``.
TAO's sample is T = 32, s = 1.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

import numpy as np

__all__ = ["sliding_windows", "stream_windows"]


def _check(length: int, stride: int) -> None:
    if length < 1 or stride < 1:
        raise ValueError(f"window length and stride must be >= 1, got {length} and {stride}")


def sliding_windows(num_frames: int, length: int, stride: int = 1) -> list[np.ndarray]:
    """Frame indices of every window: N=5, T=3, s=1 gives [0 1 2], [1 2 3], [2 3 4]."""
    _check(length, stride)
    if num_frames < 1:
        raise ValueError("a video with no frames has no window")
    if num_frames < length:
        return [np.arange(length, dtype=np.int64) % num_frames]
    base = np.arange(length, dtype=np.int64)
    return [start + base for start in range(0, num_frames - length + 1, stride)]


def stream_windows(
    frames: Iterable[np.ndarray], length: int, stride: int = 1
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(indices, clip (T, ...))`` for the windows of :func:`sliding_windows`, read on the fly.

    Only the last T frames are held, so a long video streams in constant memory; a video
    shorter than T is looped once it has ended.
    """
    _check(length, stride)
    buffer: deque[np.ndarray] = deque(maxlen=length)
    count = 0
    for frame in frames:
        buffer.append(frame)
        count += 1
        start = count - length
        if start >= 0 and start % stride == 0:
            yield np.arange(start, count, dtype=np.int64), np.stack(buffer)
    if count == 0:
        raise ValueError("a video with no frames has no window")
    if count < length:
        (indices,) = sliding_windows(count, length, stride)
        yield indices, np.stack([buffer[i] for i in indices])
