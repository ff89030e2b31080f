"""Synthetic videos: deterministic, real mp4, HMDB-style splits, classes that need motion."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from data.video import synthetic as synth_video
from data.video.ffmpeg_io import probe, read_video
from data.video.splits import hmdb51_split
from data.video.synthetic import CLASSES, render_video, video_rng

SMALL = {"frames": 12, "size": (48, 36)}


def run_synth(out, *extra: str) -> int:
    parser = argparse.ArgumentParser()
    synth_video.add_arguments(parser)
    return synth_video.run(parser.parse_args(["--out", str(out), *extra]))


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


def track(class_name: str, index: int, frames: int = 32, size=(96, 72)):
    return CLASSES[class_name](video_rng(0, class_name, index), frames, *size)


@pytest.mark.parametrize("index", range(4))
def test_tracks_follow_class_semantics(index):
    w = 96
    left, right = track("move_left", index), track("move_right", index)
    assert left.x[-1] < left.x[0] - 0.5 * w and right.x[-1] > right.x[0] + 0.5 * w
    grow, shrink = track("grow", index), track("shrink", index)
    assert grow.scale[-1] > 2.4 * grow.scale[0] and shrink.scale[0] > 2.4 * shrink.scale[-1]
    assert np.all(np.diff(track("rotate_clockwise", index).angle) > 4)
    assert np.all(np.diff(track("rotate_anticlockwise", index).angle) < -4)
    appear, disappear = track("appear", index), track("disappear", index)
    assert appear.alpha[0] == 0 and appear.alpha[-1] == 1 and np.all(np.diff(appear.alpha) >= 0)
    assert disappear.alpha[0] == 1 and disappear.alpha[-1] == 0
    assert track("wobble_cross", index).shape == "cross"
    assert track("wobble_ring", index).shape == "ring"
    for name in list(CLASSES)[:8]:
        assert track(name, index).shape in synth_video.MOTION_SHAPES


def test_left_and_right_cover_the_same_positions():
    """Position alone does not give the direction away: left-movers start where right-movers
    end, and the other way round."""
    lefts = np.array([track("move_left", i).x for i in range(16)])
    rights = np.array([track("move_right", i).x for i in range(16)])
    assert abs(lefts[:, 0].mean() - rights[:, -1].mean()) < 4
    assert abs(lefts[:, -1].mean() - rights[:, 0].mean()) < 4


def _moments(mask: np.ndarray) -> tuple[float, float, float, float]:
    """Area, centroid x, y and principal-axis angle (degrees, y down) of a coverage mask."""
    ys, xs = np.mgrid[0 : mask.shape[0], 0 : mask.shape[1]]
    area = mask.sum()
    cx, cy = (mask * xs).sum() / area, (mask * ys).sum() / area
    cxx, cyy = (mask * (xs - cx) ** 2).sum(), (mask * (ys - cy) ** 2).sum()
    cxy = (mask * (xs - cx) * (ys - cy)).sum()
    return area, cx, cy, 0.5 * np.degrees(np.arctan2(2 * cxy, cxx - cyy))


def test_rendered_object_follows_its_track():
    t = synth_video.Track(
        x=np.array([30.0, 50.0]),
        y=np.array([40.0, 30.0]),
        scale=np.array([10.0, 20.0]),
        angle=np.array([0.0, 20.0]),
        alpha=np.ones(2),
        shape="bar",
    )
    (a0, x0, y0, ang0), (a1, x1, y1, ang1) = (
        _moments(synth_video._mask(t, i, 96, 72)) for i in (0, 1)
    )
    assert abs(x0 - 30) < 0.5 and abs(y0 - 40) < 0.5 and abs(x1 - 50) < 0.5 and abs(y1 - 30) < 0.5
    assert 3.5 < a1 / a0 < 4.5  # area grows with scale squared
    assert abs(ang0) < 1 and abs(ang1 - 20) < 2  # +angle turns clockwise on screen (y down)


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
