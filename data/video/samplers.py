"""Frame-index samplers: pure functions from a frame count to the indices of one clip.

Every function returns a 1-D ``int64`` array of 0-based frame indices, in the order the frames
enter the clip. ``N`` is the number of frames in the stream, ``T`` the clip length and ``r`` the
sample rate. The definitions follow TAO ActionRecognitionNet (shared/reference/video.md A3, A7)
except where TAO has a bug (Part E 31, 32), and are small enough to check by hand:

- consecutive, train: ``start`` uniform in ``[0, N - T·r]`` (both ends inclusive, so the last
  index is never past the end), indices ``(start + k·r) mod N``: a video shorter than the clip
  loops instead of repeating one frame.
- consecutive, center: ``start = int((N - T·r + 1) / 2)`` (0 when negative); N=128, T=32 gives
  frames 48..79.
- conv: ``tick = (N - T·r + 1) / S``, ``start_k = int(tick/2 + tick·k)``; N=128, T=32, S=10 gives
  starts 4, 14, 24, 33, 43, 53, 63, 72, 82, 92.
- random_interval (TSN): T segments of ``N // T`` frames, one random frame from each at training,
  the middles ``int(N/T/2 + N/T·x)`` at test.

Random draws use a ``numpy.random.Generator`` passed in; :func:`worker_generator` derives one from
``torch.initial_seed()``, which the DataLoader sets differently for every worker and epoch.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "STRATEGIES",
    "consecutive_center",
    "consecutive_clip",
    "consecutive_train",
    "conv_clip",
    "conv_starts",
    "joint_indices",
    "random_interval_conv",
    "random_interval_test",
    "random_interval_train",
    "sample_indices",
    "split_item_index",
    "worker_generator",
]

STRATEGIES = ("consecutive", "random_interval")
MODES = ("train", "center", "conv")


def worker_generator() -> np.random.Generator:
    """A numpy Generator seeded from torch's per-process seed.

    Inside a DataLoader worker ``torch.initial_seed()`` is ``base_seed + worker_id`` with a new
    ``base_seed`` every epoch, so workers never share a random stream (upstream bug 19 duplicated
    one RandomState in every worker).
    """
    return np.random.default_rng(torch.initial_seed())


def consecutive_clip(num_frames: int, clip_length: int, sample_rate: int, start: int) -> np.ndarray:
    """``(start + k·r) mod N`` for k = 0..T-1; the modulo makes short videos loop."""
    _check(num_frames, clip_length, sample_rate)
    return (start + np.arange(clip_length, dtype=np.int64) * sample_rate) % num_frames


def consecutive_train(
    num_frames: int, clip_length: int, sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """Random start in ``[0, N - T·r]`` inclusive (TAO allows N - T·r + 1, which wraps to 0)."""
    _check(num_frames, clip_length, sample_rate)
    high = max(num_frames - clip_length * sample_rate, 0)
    start = int(rng.integers(0, high, endpoint=True))
    return consecutive_clip(num_frames, clip_length, sample_rate, start)


def consecutive_center(num_frames: int, clip_length: int, sample_rate: int) -> np.ndarray:
    """TAO's centre clip: start ``int((N - T·r + 1) / 2)``, or 0 when that is negative."""
    _check(num_frames, clip_length, sample_rate)
    start = max(int((num_frames - clip_length * sample_rate + 1) / 2), 0)
    return consecutive_clip(num_frames, clip_length, sample_rate, start)


def conv_starts(
    num_frames: int, clip_length: int, sample_rate: int, num_segments: int
) -> list[int]:
    """TAO ``conv`` starts: ``int(tick/2 + tick·k)`` with ``tick = (N - T·r + 1) / S``.

    A video with ``N <= T·r - 1`` frames has a single start, 0 (its clip loops).
    """
    _check(num_frames, clip_length, sample_rate)
    if num_segments < 1:
        raise ValueError(f"num_segments must be >= 1, got {num_segments}")
    span = clip_length * sample_rate
    if num_frames <= span - 1:
        return [0]
    tick = (num_frames - span + 1) / num_segments
    return [int(tick / 2 + tick * k) for k in range(num_segments)]


def conv_clip(
    num_frames: int, clip_length: int, sample_rate: int, num_segments: int, segment: int
) -> np.ndarray:
    """Indices of segment ``segment`` of the conv evaluation (the single start repeats if short)."""
    starts = conv_starts(num_frames, clip_length, sample_rate, num_segments)
    start = starts[min(segment, len(starts) - 1)]
    return consecutive_clip(num_frames, clip_length, sample_rate, start)


def random_interval_train(
    num_frames: int, clip_length: int, rng: np.random.Generator
) -> np.ndarray:
    """TSN: one random frame from each of T segments of ``N // T`` frames; sorted repeats if N < T."""
    _check(num_frames, clip_length, 1)
    segment = num_frames // clip_length
    if segment == 0:
        return np.sort(rng.integers(0, num_frames, size=clip_length)).astype(np.int64)
    offsets = rng.integers(0, segment, size=clip_length)
    return np.arange(clip_length, dtype=np.int64) * segment + offsets


def random_interval_test(num_frames: int, clip_length: int) -> np.ndarray:
    """The segment middles ``int(N/T/2 + N/T·x)``; N=128, T=32 gives 2, 6, ..., 126."""
    _check(num_frames, clip_length, 1)
    step = num_frames / clip_length
    return np.array([int(step / 2 + step * x) for x in range(clip_length)], dtype=np.int64)


def random_interval_conv(
    num_frames: int, clip_length: int, num_segments: int, segment: int
) -> np.ndarray:
    """Interleaved clips ``arange(T)·(N // T) + j`` (TAO A7), with the S phases j spread evenly.

    TAO evaluates all ``N // T`` phases; we keep S items per video so the dataset length does not
    depend on the video. A video with fewer than T frames falls back to the test middles.
    """
    segment_len = num_frames // clip_length
    if segment_len == 0:
        return random_interval_test(num_frames, clip_length)
    phase = int(segment_len / num_segments * (segment + 0.5))
    return np.arange(clip_length, dtype=np.int64) * segment_len + phase


def sample_indices(
    num_frames: int,
    *,
    clip_length: int,
    sample_rate: int = 1,
    strategy: str = "consecutive",
    mode: str = "train",
    num_segments: int = 10,
    segment: int = 0,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Dispatch to the sampler for ``strategy`` x ``mode`` (``rng`` is needed for ``train``).

    ``random_interval`` ignores ``sample_rate``: its spacing is set by the segments.
    """
    if strategy not in STRATEGIES or mode not in MODES:
        raise ValueError(f"unknown sampling {strategy!r}/{mode!r}; use {STRATEGIES} x {MODES}")
    if mode == "train" and rng is None:
        raise ValueError("training sampling needs a numpy Generator (rng=...)")
    if strategy == "consecutive":
        if mode == "train":
            return consecutive_train(num_frames, clip_length, sample_rate, rng)
        if mode == "center":
            return consecutive_center(num_frames, clip_length, sample_rate)
        return conv_clip(num_frames, clip_length, sample_rate, num_segments, segment)
    if mode == "train":
        return random_interval_train(num_frames, clip_length, rng)
    if mode == "center":
        return random_interval_test(num_frames, clip_length)
    return random_interval_conv(num_frames, clip_length, num_segments, segment)


def joint_indices(
    long_indices: np.ndarray,
    short_length: int,
    *,
    strategy: str,
    train: bool,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Indices of the shorter stream of a joint (RGB + flow) clip, drawn inside the longer one.

    TAO A3: ``consecutive`` takes the centred sub-window of the long clip; ``random_interval``
    picks one index per segment of the long clip (random at training, the middle at test). Both
    streams then cover the same moment: flow frame i is the motion from RGB frame i to i+1.
    """
    length = len(long_indices)
    if short_length > length:
        raise ValueError(
            f"the short stream ({short_length}) is longer than the long one ({length})"
        )
    if strategy == "consecutive":
        offset = (length - short_length) // 2
        return np.asarray(long_indices[offset : offset + short_length], dtype=np.int64)
    if train:
        positions = random_interval_train(length, short_length, rng)
    else:
        positions = random_interval_test(length, short_length)
    return np.asarray(long_indices, dtype=np.int64)[positions]


def split_item_index(index: int, per_video: int) -> tuple[int, int]:
    """Dataset item ``index`` -> ``(video, k)`` when each video yields ``per_video`` items."""
    return divmod(index, per_video)


def _check(num_frames: int, clip_length: int, sample_rate: int) -> None:
    if num_frames < 1:
        raise ValueError(f"a video needs at least one frame, got {num_frames}")
    if clip_length < 1 or sample_rate < 1:
        raise ValueError(
            f"clip_length and sample_rate must be >= 1, got {clip_length}, {sample_rate}"
        )
