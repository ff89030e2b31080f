"""Sliding windows of the TAO stand-alone sample: pure indices, and the streaming reader."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from export.windows import sliding_windows, stream_windows


def _as_lists(windows) -> list[list[int]]:
    return [w.tolist() for w in windows]


def test_stride_one_windows_by_hand() -> None:
    assert _as_lists(sliding_windows(5, 3)) == [[0, 1, 2], [1, 2, 3], [2, 3, 4]]


def test_tao_sample_window_count() -> None:
    windows = sliding_windows(40, 32)  # starts 0..N-32 with stride 1 (reference A11)
    assert len(windows) == 9 and windows[-1][-1] == 39


def test_stride_skips_and_never_passes_the_end() -> None:
    assert _as_lists(sliding_windows(10, 4, stride=3)) == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    assert _as_lists(sliding_windows(9, 4, stride=3)) == [[0, 1, 2, 3], [3, 4, 5, 6]]


def test_short_video_gives_one_looped_window() -> None:
    assert _as_lists(sliding_windows(3, 7)) == [[0, 1, 2, 0, 1, 2, 0]]
    assert _as_lists(sliding_windows(4, 4)) == [[0, 1, 2, 3]]


@pytest.mark.parametrize("args", [(0, 4, 1), (5, 0, 1), (5, 2, 0)])
def test_invalid_arguments(args) -> None:
    with pytest.raises(ValueError):
        sliding_windows(*args)


@given(st.integers(1, 40), st.integers(1, 12), st.integers(1, 5))
def test_stream_matches_the_pure_indices(num_frames: int, length: int, stride: int) -> None:
    frames = (np.full((2, 2), i) for i in range(num_frames))  # frame i holds the value i
    streamed = list(stream_windows(frames, length, stride))
    expected = sliding_windows(num_frames, length, stride)
    assert _as_lists(i for i, _ in streamed) == _as_lists(expected)
    for indices, clip in streamed:
        assert clip.shape == (length, 2, 2)
        assert clip[:, 0, 0].tolist() == indices.tolist()  # the right frames, in order


def test_stream_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no frames"):
        list(stream_windows(iter(()), 4))
