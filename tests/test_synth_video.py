"""Synthetic videos: deterministic, real mp4, HMDB-style splits, classes that need motion."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from data import synth_video
from data.ffmpeg_io import probe, read_video
from data.splits import hmdb51_split
from data.synth_video import CLASSES, render_video, video_rng

SMALL = {"frames": 12, "size": (48, 36)}


def run_synth(out, *extra: str) -> int:
    parser = argparse.ArgumentParser()
    synth_video.add_arguments(parser)
    return synth_video.run(parser.parse_args(["--out", str(out), *extra]))


def object_mask(video: np.ndarray) -> np.ndarray:
    """Pixels that differ strongly from the per-pixel median over time ~ the object."""
    gray = video.astype(np.float32).mean(axis=-1)
    return np.abs(gray - np.median(gray, axis=0)) > 40


def test_render_is_deterministic_and_seeded():
    a = render_video("grow", video_rng(0, "grow", 3), **SMALL)
    b = render_video("grow", video_rng(0, "grow", 3), **SMALL)
    c = render_video("grow", video_rng(1, "grow", 3), **SMALL)
    assert a.shape == (12, 36, 48, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(int) - c).mean() > 5


@pytest.mark.parametrize("class_name", list(CLASSES))
def test_every_class_renders_a_visible_object(class_name):
    video = render_video(class_name, video_rng(0, class_name, 0), frames=16, size=(64, 48))
    frame_diff = np.abs(np.diff(video.astype(np.int16), axis=0)).mean()
    assert 1 < frame_diff < 40  # noise + motion, not static, not garbage
    assert video.std() > 10


def _centroid_x(video: np.ndarray) -> np.ndarray:
    mask = object_mask(video)
    xs = np.arange(video.shape[2])[None, None, :]
    return (mask * xs).sum(axis=(1, 2)) / np.maximum(mask.sum(axis=(1, 2)), 1)


def _area(video: np.ndarray) -> np.ndarray:
    return object_mask(video).sum(axis=(1, 2))


@pytest.mark.parametrize("index", range(3))
def test_motion_pairs_move_as_named(index):
    size = (96, 72)
    left = render_video("move_left", video_rng(0, "move_left", index), size=size)
    right = render_video("move_right", video_rng(0, "move_right", index), size=size)
    assert _centroid_x(left)[-4:].mean() < _centroid_x(left)[:4].mean() - 20
    assert _centroid_x(right)[-4:].mean() > _centroid_x(right)[:4].mean() + 20
    grow = _area(render_video("grow", video_rng(0, "grow", index), size=size))
    shrink = _area(render_video("shrink", video_rng(0, "shrink", index), size=size))
    assert grow[-1] > 3 * grow[0] and shrink[0] > 3 * shrink[-1]


def test_left_and_right_cover_the_same_positions():
    """Position alone does not give the direction away: left-movers start where right-movers
    end."""
    starts_left = [
        _centroid_x(render_video("move_left", video_rng(0, "move_left", i)))[0] for i in range(8)
    ]
    ends_right = [
        _centroid_x(render_video("move_right", video_rng(0, "move_right", i)))[-1] for i in range(8)
    ]
    assert abs(np.mean(starts_left) - np.mean(ends_right)) < 15


def test_rotation_direction():
    cw = render_video("rotate_clockwise", video_rng(0, "rotate_clockwise", 0), frames=8)
    acw = render_video("rotate_anticlockwise", video_rng(0, "rotate_anticlockwise", 0), frames=8)
    for video, sign in ((cw, 1), (acw, -1)):
        mask = object_mask(video)
        angles = []
        for m in mask[[0, 1]]:
            ys, xs = np.nonzero(m)
            cov = np.cov(np.stack([xs, ys]))
            angles.append(0.5 * np.degrees(np.arctan2(2 * cov[0, 1], cov[0, 0] - cov[1, 1])))
        turn = (angles[1] - angles[0] + 90) % 180 - 90
        assert sign * turn > 2  # principal axis turns the named way (y points down)


def test_synth_command_writes_videos_and_splits(tmp_path):
    out = tmp_path / "synth"
    args = ["--classes", "move_left", "appear", "--videos-per-class", "4", "--frames", "10"]
    assert run_synth(out, *args, "--size", "48x32", "--seed", "5") == 0
    videos = sorted(p.relative_to(out).as_posix() for p in out.glob("*/*.mp4"))
    assert videos == [f"{c}/{c}_{i:03d}.mp4" for c in ("appear", "move_left") for i in range(4)]
    info = probe(out / "appear" / "appear_000.mp4")
    assert (info.width, info.height, info.fps) == (48, 32, 12.0)
    decoded = read_video(out / "appear" / "appear_000.mp4")
    rendered = render_video("appear", video_rng(5, "appear", 0), frames=10, size=(48, 32))
    assert decoded.shape == rendered.shape
    assert np.abs(decoded.astype(int) - rendered).mean() < 6  # only lossy coding apart
    tests = set()
    for k in (1, 2, 3):
        lines = (out / "splits" / f"appear_test_split{k}.txt").read_text().split("\n")
        assert len([x for x in lines if x]) == 4
        tests.add(frozenset(x.split()[0] for x in lines if x.endswith(" 2")))
    assert len(tests) == 3 and all(len(t) == 1 for t in tests)
    # The split files parse with the HMDB51 reader (no prepared data: everything is "missing").
    (tmp_path / "data").mkdir()
    result = hmdb51_split(tmp_path / "data", out / "splits", 1)
    assert result.class_names == ["appear", "move_left"] and len(result.missing) == 8


def test_bad_size_is_rejected():
    parser = argparse.ArgumentParser()
    synth_video.add_arguments(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["--out", "x", "--size", "47x32"])
