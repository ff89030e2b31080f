"""prepare: videos -> frame stores (round trip, resizing, flow, bad input, resume, atomicity)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from data.video import ffmpeg_io, prepare
from data.video.ffmpeg_io import VideoDecodeError, ffmpeg_exe, parse_stream_info, probe, read_video
from data.video.flow import FlowStream, flow_to_uv, iter_flow_uv
from data.video.framestore import partial_dir
from data.video.stores import open_store
from tests.video_fixtures import make_frames, make_video, make_zero_frame_video

N = 12


def run_prepare(src: Path, out: Path, *extra: str) -> int:
    parser = argparse.ArgumentParser()
    prepare.add_arguments(parser)
    return prepare.run(parser.parse_args(["--videos", str(src), "--out", str(out), *extra]))


def summary(out: Path) -> dict[str, tuple[str, str]]:
    data = json.loads((out / prepare.SUMMARY_FILE).read_text())
    return {v["name"]: (v["status"], v["reason"]) for v in data["videos"]}


def nearest(clip: np.ndarray, frames: np.ndarray) -> list[int]:
    diff = np.abs(clip[:, None].astype(np.int16) - frames[None].astype(np.int16))
    return diff.mean(axis=(2, 3, 4)).argmin(axis=1).tolist()


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    make_video(root / "run" / "clip one é.mp4", make_frames(N, 48, 64, seed=1))
    make_video(root / "walk" / "w1.mp4", make_frames(N, 48, 64, seed=2))
    return root


@pytest.mark.parametrize(("layout", "fmt"), [("sqlite", "jpg"), ("frames", "png")])
def test_round_trip_equals_direct_decoding(src, tmp_path, layout, fmt):
    out = tmp_path / "data"
    args = ["--layout", layout, "--height", "0", "--quality", "95", "--workers", "1"]
    assert run_prepare(src, out, *args, "--image-format", "png") == 0
    video = src / "run" / "clip one é.mp4"
    direct = read_video(video)
    base = out / "jpg" if layout == "sqlite" else out
    store = open_store(base / "run" / "clip one é")
    assert store.num_frames() == len(direct) == N
    clip = store.read(range(N))
    assert clip.shape == direct.shape == (N, 48, 64, 3)
    if fmt == "png":
        np.testing.assert_array_equal(clip, direct)
    else:
        assert nearest(clip, direct) == list(range(N))
        assert np.abs(clip.astype(int) - direct).mean() < 4
        assert store.metadata["source"] == str(video) and float(store.metadata["fps"]) == 10
        assert (base / "run" / "clip one é" / "n_frames").read_text().strip() == str(N)


@pytest.mark.parametrize(("flag", "value"), [("--height", "24"), ("--short-side", "24")])
def test_resize_keeps_aspect(src, tmp_path, flag, value):
    assert run_prepare(src, tmp_path, flag, value, "--workers", "1") == 0
    store = open_store(tmp_path / "jpg" / "walk" / "w1")
    assert store.read([0]).shape == (1, 24, 32, 3)
    assert (store.metadata["width"], store.metadata["height"]) == ("32", "24")


@pytest.mark.parametrize("layout", ["sqlite", "frames"])
def test_flow_streams_written(src, tmp_path, layout):
    args = ["--layout", layout, "--flow", "--workers", "1", "--height", "0"]
    assert run_prepare(src, tmp_path, *args) == 0
    base = tmp_path / "jpg" if layout == "sqlite" else tmp_path
    store = open_store(base / "walk" / "w1")
    assert store.num_frames("u") == store.num_frames("v") == N - 1
    assert store.read([0, N - 2], "u").shape == (2, 48, 64)
    if layout == "sqlite":
        assert store.metadata["flow_mapping"] == "tao_max_rad"


def test_bad_inputs_are_reported_and_skipped(tmp_path):
    src = tmp_path / "videos"
    make_video(src / "good" / "name with spaces ü.mp4", make_frames(6, 32, 32))
    (src / "bad").mkdir()
    data = (src / "good" / "name with spaces ü.mp4").read_bytes()
    (src / "bad" / "truncated.mp4").write_bytes(data[: len(data) // 3])
    plain = make_video(tmp_path / "plain.mp4", make_frames(30, 48, 64))
    faststart = tmp_path / "faststart.mp4"  # index first: a cut file still opens
    subprocess.run(
        [ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(plain), "-c", "copy",
         "-movflags", "+faststart", str(faststart)],
        check=True,
    )  # fmt: skip
    cut = faststart.read_bytes()
    (src / "bad" / "cut.mp4").write_bytes(cut[: len(cut) // 2])
    (src / "bad" / "fake.avi").write_text("not a video")
    (src / "bad" / "readme.txt").write_text("notes")
    (src / "bad" / "empty.mkv").write_bytes(b"")
    make_zero_frame_video(src / "bad" / "zero.avi")
    os.close(os.open(os.fsencode(src / "bad") + b"/\xff\xfe.mp4", os.O_CREAT | os.O_WRONLY))
    (src / "empty_class").mkdir()
    (src / "stray.mp4").write_bytes(data)
    (src / "splits").mkdir()
    out = tmp_path / "data"
    assert run_prepare(src, out, "--workers", "2", "--height", "32") == 1
    report = summary(out)
    assert report["good/name with spaces ü.mp4"][0] == "written"
    for name in (
        "bad/truncated.mp4",
        "bad/cut.mp4",
        "bad/fake.avi",
        "bad/empty.mkv",
        "bad/zero.avi",
    ):
        status, reason = report[name]
        assert status == "failed" and name.split("/")[1] in reason
    assert "no frames decoded" in report["bad/zero.avi"][1]
    assert "truncated, decoded" in report["bad/cut.mp4"][1]
    assert report["bad/readme.txt"] == ("skipped", "not a video file")
    assert report["empty_class/"][0] == "skipped"
    assert report["stray.mp4"][0] == "skipped"
    assert any("UTF-8" in reason for _, reason in report.values())
    assert "splits/" not in report
    assert open_store(out / "jpg" / "good" / "name with spaces ü").num_frames() == 6
    assert [p.parent.parent.name for p in (out / "jpg").glob("*/*/frames.db")] == ["good"]
    assert not list((out / "jpg").glob("*/.*"))  # no partial leftovers


def test_resume_skips_complete_and_redoes_partial(src, tmp_path):
    out = tmp_path / "data"
    assert run_prepare(src, out, "--workers", "1", "--height", "24") == 0
    done = out / "jpg" / "run" / "clip one é" / "frames.db"
    redo = out / "jpg" / "walk" / "w1"
    stamp = done.stat().st_mtime_ns
    os.rename(redo, partial_dir(redo))  # as if killed before the final rename
    assert run_prepare(src, out, "--workers", "1", "--height", "24") == 0
    report = summary(out)
    assert report["run/clip one é.mp4"] == ("skipped", "already prepared")
    assert report["walk/w1.mp4"][0] == "written"
    assert done.stat().st_mtime_ns == stamp
    assert not partial_dir(redo).exists() and open_store(redo).num_frames() == N
    assert run_prepare(src, out, "--workers", "1", "--height", "24", "--flow") == 0
    assert summary(out)["walk/w1.mp4"][0] == "written"  # flow requested: redone
    assert run_prepare(src, out, "--workers", "1", "--height", "24", "--overwrite") == 0
    assert done.stat().st_mtime_ns != stamp


def test_failure_mid_video_leaves_nothing(src, tmp_path, monkeypatch):
    def broken(path, size):
        yield from read_video(path, size)[:3]
        raise VideoDecodeError(f"{path}: boom")

    monkeypatch.setattr(prepare, "iter_frames", broken)
    out = tmp_path / "data"
    assert run_prepare(src, out, "--workers", "1") == 1
    assert all(status == "failed" for status, _ in summary(out).values())
    assert list((out / "jpg" / "run").iterdir()) == []


def test_probe_from_ffmpeg_stderr(src):
    info = probe(src / "walk" / "w1.mp4")
    assert (info.width, info.height, info.fps, info.num_frames) == (64, 48, 10.0, N)
    rotated = parse_stream_info(
        "Duration: 00:00:02.00, start: 0\n"
        "  Stream #0:0[0x1](und): Video: h264 (avc1), yuv420p, 640x480 [SAR 1:1], 29.97 fps, "
        "29.97 tbr\n      displaymatrix: rotation of -90.00 degrees\n",
        Path("x.mp4"),
    )
    assert (rotated.width, rotated.height, rotated.fps, rotated.num_frames) == (480, 640, 29.97, 60)
    with pytest.raises(VideoDecodeError, match=r"x\.mp4: no video stream"):
        parse_stream_info("Stream #0:0: Audio: aac", Path("x.mp4"))


def test_tao_flow_mapping_on_hand_made_flow():
    flow = np.zeros((2, 3, 2), np.float32)
    flow[0, 0] = (3, 4)  # |f| = 5 is the frame's max radius
    flow[0, 1] = (-5, 0)
    flow[1, 2] = (0.5, -2.5)
    u, v = flow_to_uv(flow)
    assert (u[0, 0], v[0, 0]) == (204, 230)  # trunc(3/5*127.999+128), trunc(4/5*...+128)
    assert (u[0, 1], v[0, 1]) == (0, 128)
    assert (u[1, 2], v[1, 2]) == (140, 64)  # trunc(140.7999), trunc(64.0005)
    assert u[1, 0] == v[1, 0] == 128  # zero flow
    small = flow_to_uv(np.full((1, 1, 2), 0.5, np.float32))
    assert small[0][0, 0] == 191  # max_rad floors at 1


def test_fixed_bound_flow_mapping():
    flow = np.array([[[3.0, -1.0], [0.0, -9.0]]], np.float32)
    u, v = flow_to_uv(flow, bound=2.0)
    assert u.tolist() == [[255, 128]] and v.tolist() == [[64, 0]]


@pytest.mark.parametrize("method", ["dis", "farneback"])
def test_flow_direction(method):
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 255, (60, 80), dtype=np.uint8)
    texture = np.repeat(np.repeat(texture, 2, axis=0), 2, axis=1)[:48, :64]
    frames = [np.stack([np.roll(texture, 2 * t, axis=1)] * 3, axis=-1) for t in range(3)]
    uv = list(iter_flow_uv(frames, method=method, bound=4.0))
    assert len(uv) == 2
    u, v = uv[0]
    centre = (slice(12, 36), slice(16, 48))
    assert np.median(u[centre]) > 180 and abs(float(np.median(v[centre])) - 128) < 16
    with pytest.raises(ValueError, match="unknown flow method"):
        FlowStream(method="tvl1")


def test_probe_with_ffprobe_output(src, monkeypatch):
    canned = {
        "streams": [
            {"codec_type": "audio"},
            {
                "codec_type": "video",
                "width": 640,
                "height": 360,
                "avg_frame_rate": "30000/1001",
                "nb_frames": "N/A",
                "side_data_list": [{"rotation": 90}],
            },
        ],
        "format": {"duration": "2.002"},
    }
    monkeypatch.setattr(ffmpeg_io, "ffprobe_exe", lambda: "ffprobe")
    monkeypatch.setattr(ffmpeg_io.ffmpeg, "probe", lambda path, cmd: canned)
    info = probe(src / "walk" / "w1.mp4")
    assert (info.width, info.height, info.num_frames) == (360, 640, 60)
    assert abs(info.fps - 29.97) < 0.01
