"""Annotated outputs read back from disk: the overlay primitives (export.render), the covering
window of each frame, ``inference --render`` / ``explain`` of train_hmdb.py on a tiny model
(PyAV frame count and rate, pixels changed only in the overlay), skeleton videos and the
gesture contact sheet."""

from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

import train_hmdb
from export import cli
from export.annotate import (
    contact_sheet,
    covering_window,
    project_poses,
    render_annotated,
    render_skeleton,
    window_count,
)
from export.render import (
    Mp4Writer,
    draw_topk,
    fit_frame,
    fit_size,
    frame_rate,
    topk_panel_box,
    write_mp4,
)


def _read(path: Path) -> tuple[list[np.ndarray], Fraction]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
        return frames, stream.average_rate


# ----------------------------------------------------------------------------- primitives
def test_topk_bars_change_pixels_only_inside_the_panel():
    frame = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    drawn = draw_topk(frame, [("brush_hair", 0.8), ("cartwheel", 0.15), ("catch", 0.05)])
    x0, y0, x1, y1 = topk_panel_box(240, 320, 3)
    changed = np.any(drawn != frame, axis=-1)
    inside = np.zeros_like(changed)
    inside[y0:y1, x0:x1] = True
    assert changed[inside].mean() > 0.9 and not changed[~inside].any()
    assert (x1 - x0, y1 - y0) == (176, 52)  # 3 rows of 16 px + margins at 320x240
    # larger frames get proportionally larger text and bars
    assert topk_panel_box(720, 1280, 3)[3] == 3 * topk_panel_box(240, 320, 3)[3]


def test_sizes_rates_and_writer_round_trip(tmp_path):
    assert fit_size(1920, 1080) == (720, 404) and fit_size(321, 241, None) == (320, 240)
    assert fit_frame(np.zeros((48, 64, 3), np.uint8), min_side=240).shape == (240, 320, 3)
    assert frame_rate(29.97002997) == Fraction(30000, 1001) and frame_rate(12.0) == 12
    with pytest.raises(ValueError, match="positive"):
        frame_rate(0.0)
    frames = [np.full((240, 320, 3), 10 * i, np.uint8) for i in range(7)]
    assert write_mp4(tmp_path / "a.mp4", frames, 30000 / 1001) == 7
    read, rate = _read(tmp_path / "a.mp4")
    assert len(read) == 7 and rate == Fraction(30000, 1001) and read[0].shape == (240, 320, 3)
    with (
        pytest.raises(ValueError, match="frame 1 is 160x120"),
        Mp4Writer(tmp_path / "b.mp4", 25) as w,
    ):
        w.write(frames[0])
        w.write(frames[0][:120, :160])


def test_window_count_and_covering_window_by_hand():
    assert window_count(100, 16, 8) == 11  # starts 0, 8, ..., 80 cover 0..95
    assert window_count(10, 16, 8) == 1  # shorter than a window: one looped window
    windows = [np.arange(0, 4), np.arange(3, 7), np.arange(6, 10)]
    # frame 3 lies in windows 0 and 1: window 1's centre (4.5) is nearer than 0's (1.5)? no:
    # |3 - 1.5| = 1.5 = |3 - 4.5|, the first wins; frame 11 is outside all: the nearest, 2
    assert covering_window(12, windows).tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2]


def test_render_annotated_keeps_count_and_rate_and_the_rest_of_the_frame(tmp_path):
    rng = np.random.default_rng(1)
    # smooth frames (H.264 keeps them well) so untouched pixels can be compared after decoding
    base = np.linspace(40, 200, 320, dtype=np.float32)[None, :, None].repeat(240, 0).repeat(3, 2)
    frames = [np.clip(base + 5 * i, 0, 255).astype(np.uint8) for i in range(9)]
    probs = rng.dirichlet(np.ones(4), size=3)
    owner = covering_window(9, [np.arange(0, 4), np.arange(3, 7), np.arange(5, 9)])
    path = tmp_path / "v.mp4"
    assert render_annotated(frames, owner, probs, ["a", "b", "c", "d"], path, fps=15.0) == 9
    read, rate = _read(path)
    assert len(read) == 9 and rate == 15
    x0, y0, x1, y1 = topk_panel_box(240, 320, 3)
    outside = np.ones((240, 320), bool)
    outside[y0 : y1 + 8, x0 : x1 + 8] = False  # codec blocks straddling the panel edge
    for source, decoded in zip(frames, read):
        error = np.abs(decoded.astype(int) - source.astype(int)).max(axis=-1)
        assert np.percentile(error[outside], 99) <= 4  # only compression noise outside
        assert error[y0:y1, x0:x1].mean() > 20  # the panel is drawn in every frame


# ----------------------------------------------------------------------------- skeletons, gestures
def test_skeleton_video_draws_every_person_and_stops_at_the_padding(tmp_path):
    frames, joints = 12, 4
    poses = np.zeros((3, 20, joints, 2), np.float32)  # (C, T, V, M), 8 padded frames
    t = np.arange(frames)[:, None]
    poses[0, :frames, :, 0] = np.arange(joints) * 0.1 + 0.01 * t
    poses[1, :frames, :, 0] = np.arange(joints) * 0.2
    poses[2, :frames, :, 0] = 1.5  # a depth: 3D, through the fixed camera
    poses[:2, :frames, :, 1] = poses[:2, :frames, :, 0] + 0.5  # a second person, shifted
    poses[2, :frames, :, 1] = 2.0
    edges = [(0, 1), (1, 2), (2, 3)]
    path = tmp_path / "s.mp4"
    assert render_skeleton(poses, edges, path, label="wave", score=0.9, fps=10.0) == frames
    read, rate = _read(path)
    assert len(read) == frames and rate == 10 and read[0].shape == (240, 320, 3)
    bright = np.any(read[0] > 200, axis=-1)
    x0, y0, x1, y1 = topk_panel_box(240, 320, 2)
    bright[y0:y1, x0:x1] = False
    _, xs = np.nonzero(bright)
    assert xs.max() - xs.min() > 100  # both persons, spread over the canvas
    # 3D projection differs from the 2D reading of the same numbers
    assert not np.allclose(project_poses(poses)[..., 0], poses[0].transpose(0, 1, 2))


def test_contact_sheet_marks_wrong_predictions(tmp_path):
    images = [np.full((40, 30, 3), 90 * i, np.uint8) for i in range(3)]
    path = contact_sheet(images, ["fist", "palm", "fist"], [0.9, 0.6, 0.7],
                         ["fist", "fist", None], tmp_path / "sheet.png", tile=64, columns=2)  # fmt: skip
    sheet = np.asarray(Image.open(path).convert("RGB"))
    assert sheet.shape == (2 * (64 + 34), 2 * 64, 3)
    right, wrong, unknown = sheet[2, 20], sheet[2, 64 + 20], sheet[98 + 2, 20]
    assert right[1] > 150 and right[0] < 50  # green frame
    assert wrong[0] > 200 and wrong[1] < 50  # red frame
    assert abs(int(unknown[0]) - int(unknown[1])) < 10  # grey: no true label


# ----------------------------------------------------------------------------- train_hmdb.py
@pytest.fixture(scope="module")
def video_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """2 classes x 2 raw synthetic videos (12 frames, 12 fps); r3d_tiny trained one epoch."""
    root = tmp_path_factory.mktemp("render")
    videos, run = root / "videos", root / "run"
    synth = ["synth", "--out", str(videos), "--classes", "move_left", "move_right"]
    synth += ["--videos-per-class", "2", "--frames", "12", "--size", "64x48", "--workers", "1"]
    assert train_hmdb.main(synth) == 0
    train = ["train", "--data", str(videos), "--network", "r3d_tiny", "--clip-length", "4",
             "--clip-size", "32", "--short-side", "36", "--batch-size", "4", "--end-epoch", "1",
             "--workers", "0", "--no-tensorboard", "--no-plots", "--no-auto-resume",
             "--output-dir", str(run)]  # fmt: skip
    assert train_hmdb.main(train) == 0
    return {"videos": videos, "checkpoint": run / "best.pth"}


@pytest.mark.slow
@pytest.mark.parametrize(
    "views", [[], ["--eval-mode", "conv", "--segments", "2", "--spatial-crops", "3"]]
)
def test_inference_render_writes_annotated_video_and_timeline(video_run, tmp_path, views):
    source = video_run["videos"] / "move_left" / "move_left_000.mp4"
    out = tmp_path / "rendered"
    argv = ["inference", "--checkpoint", str(video_run["checkpoint"]), "--videos", str(source)]
    assert train_hmdb.main([*argv, *views, "--workers", "0", "--render", str(out)]) == 0
    read, rate = _read(out / "move_left_000.mp4")
    assert len(read) == 12 and rate == 12  # the source's frame count and rate
    assert read[0].shape == (240, 320, 3)  # 64x48 enlarged x5 so the bars stay readable
    assert Image.open(out / "move_left_000_timeline.png").size == (800, 300)


@pytest.mark.slow
def test_explain_writes_overlay_video_and_strip(video_run, tmp_path):
    source = video_run["videos"] / "move_right" / "move_right_001.mp4"
    argv = ["explain", "--checkpoint", str(video_run["checkpoint"]), "--video", str(source)]
    for target in ("move_left", "move_right"):
        assert train_hmdb.main([*argv, "--target", target, "--out", str(tmp_path / target)]) == 0
    read, rate = _read(tmp_path / "move_left" / "move_right_001_gradcam.mp4")
    assert len(read) == 4 and rate == 12  # the clip's 4 frames, sampled every frame
    strips = [np.asarray(Image.open(tmp_path / t / "move_right_001_gradcam.png")) for t in
              ("move_left", "move_right")]  # fmt: skip
    assert strips[0].shape == (256, 4 * 256, 3)  # 32-pixel crops shown at 256
    assert np.abs(strips[0].astype(int) - strips[1].astype(int)).mean() > 1  # target matters
    assert train_hmdb.main([*argv, "--target", "swim", "--out", str(tmp_path / "x")]) == 2


def test_onnx_infer_render_matches_inference_render(video_run, tmp_path):
    source = video_run["videos"] / "move_left" / "move_left_001.mp4"
    onnx = tmp_path / "m.onnx"
    export = ["export", "--checkpoint", str(video_run["checkpoint"]), "--onnx", str(onnx)]
    assert train_hmdb.main(export) == 0
    argv = ["onnx-infer", "--onnx", str(onnx), "--input", str(source)]
    assert train_hmdb.main([*argv, "--render", str(tmp_path / "onnx")]) == 0
    infer = ["inference", "--checkpoint", str(video_run["checkpoint"]), "--videos", str(source)]
    assert train_hmdb.main([*infer, "--workers", "0", "--render", str(tmp_path / "torch")]) == 0
    onnx_frames, rate = _read(tmp_path / "onnx" / "move_left_001.mp4")
    assert len(onnx_frames) == 12 and rate == 12 and onnx_frames[0].shape == (240, 320, 3)
    assert Image.open(tmp_path / "onnx" / "move_left_001_timeline.png").size == (800, 300)
    torch_frames, _ = _read(tmp_path / "torch" / "move_left_001.mp4")
    # the same windows and (up to float error) the same probabilities: the same drawing
    for a, b in zip(onnx_frames, torch_frames):
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 1.0
    timelines = [np.asarray(Image.open(tmp_path / d / "move_left_001_timeline.png"))
                 for d in ("onnx", "torch")]  # fmt: skip
    assert np.array_equal(*timelines)


def test_onnx_infer_render_skips_an_unreadable_video(video_run, tmp_path, caplog):
    folder = tmp_path / "videos"
    folder.mkdir()
    good = folder / "good.mp4"
    good.write_bytes((video_run["videos"] / "move_left" / "move_left_000.mp4").read_bytes())
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\xff" * 64)
    onnx = tmp_path / "m.onnx"
    assert train_hmdb.main(["export", "--checkpoint", str(video_run["checkpoint"]), "--onnx",
                            str(onnx)]) == 0  # fmt: skip
    argv = ["onnx-infer", "--onnx", str(onnx), "--input", str(folder), "--render"]
    assert train_hmdb.main([*argv, str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.mp4", "good_timeline.png"]
    assert "1 of 2 videos not rendered" in caplog.text


def test_output_names_are_printable_and_stay_inside_the_folder(tmp_path):
    from export.annotate import render_video
    from export.explain import Explanation, write_explanation
    from export.render import output_name

    assert output_name("walk_01") == "walk_01"
    for hostile in ("../../etc/x", "..", ".", "", "a\nb\x1b[31mc\r", "dir\\..\\x", "é" * 300):
        name = output_name(hostile)
        assert name.isprintable() and "/" not in name and "\\" not in name
        assert name.strip(".") and len(name.encode()) <= 200
    assert output_name("a\nb") != output_name("a b")  # escaped, not dropped

    class Store:  # a 3-frame frame store
        fps = 5.0

        def num_frames(self, stream):
            return 3

        def read(self, indices, stream):
            return [np.full((48, 64, 3), 50 * i, np.uint8) for i in indices]

    out = tmp_path / "out"
    render_video(Store(), [np.arange(3)], np.array([[0.7, 0.3]]), ["a", "b"], out, "../x\ny")
    clip = np.zeros((2, 32, 32, 3), np.uint8)
    explanation = Explanation({"rgb": np.zeros((2, 32, 32))}, np.array([0.6, 0.4]), 0)
    write_explanation(out, "..", {"rgb": clip}, explanation, ["a", "b"], fps=5.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert sorted(p.name for p in out.iterdir()) == [
        ".._x_ny.mp4", ".._x_ny_timeline.png", "_.._gradcam.mp4", "_.._gradcam.png"
    ]  # fmt: skip


def test_hostile_video_names_render_inside_the_folder(video_run, tmp_path):
    """inference --render, onnx-infer --render and explain on a video whose file name holds an
    escape sequence and a new line: printable names inside the output folder."""
    source = tmp_path / "ev\x1b[31mil\n..name.mp4"
    source.write_bytes((video_run["videos"] / "move_left" / "move_left_000.mp4").read_bytes())
    checkpoint = str(video_run["checkpoint"])
    onnx = tmp_path / "m.onnx"
    assert train_hmdb.main(["export", "--checkpoint", checkpoint, "--onnx", str(onnx)]) == 0
    runs = {
        "torch": ["inference", "--checkpoint", checkpoint, "--videos", str(source), "--workers",
                  "0", "--render"],
        "onnx": ["onnx-infer", "--onnx", str(onnx), "--input", str(source), "--render"],
        "cam": ["explain", "--checkpoint", checkpoint, "--video", str(source), "--out"],
    }  # fmt: skip
    for folder, argv in runs.items():
        assert train_hmdb.main([*argv, str(tmp_path / folder)]) == 0
    stem = "ev\\x1b[31mil\\n..name".replace("\\", "_")  # export.render.output_name
    assert sorted(p.name for p in (tmp_path / "torch").iterdir()) == [
        f"{stem}.mp4", f"{stem}_timeline.png"
    ]  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "onnx").iterdir()) == sorted(
        p.name for p in (tmp_path / "torch").iterdir()
    )
    assert sorted(p.name for p in (tmp_path / "cam").iterdir()) == [
        f"{stem}_gradcam.mp4", f"{stem}_gradcam.png"
    ]  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["cam", "m.onnx", "onnx", "torch", source.name]
    )


def test_onnx_infer_render_is_refused_for_other_families(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    cli.add_ort_arguments(parser)
    args = parser.parse_args(["--onnx", str(tmp_path / "m.onnx"), "--input", "a.npy",
                              "--render", str(tmp_path / "out")])  # fmt: skip
    assert cli.run_ort(args, family="skeleton") == 2
    assert "--render draws annotated videos: only for video models" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- train_nvpose.py
def _untrained(
    path: Path, network: str, family: str, names: list[str], network_kwargs=None, **args
) -> Path:
    """An untrained checkpoint (make_checkpoint's format): rendering does not need a good model."""
    import torch

    from network import build_model
    from train.checkpoint import atomic_save, make_checkpoint

    torch.manual_seed(0)
    model = build_model(network, num_classes=len(names), **(network_kwargs or {}))
    atomic_save(make_checkpoint(model, args=args, family=family, class_names=names), path)
    return path


@pytest.fixture(scope="module")
def skeleton_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """2 synthetic nvidia-layout sequences (10-12 frames, padded to 12) and st_gcn_tiny."""
    import train_nvpose

    root = tmp_path_factory.mktemp("skeleton")
    assert train_nvpose.main(["synth", "--output-dir", str(root), "--classes", "standing",
                              "sitting", "--train-per-class", "1", "--val-per-class", "1",
                              "--min-frames", "10", "--max-frames", "12"]) == 0  # fmt: skip
    names = ["standing", "sitting"]
    checkpoint = _untrained(root / "st.pth", "st_gcn_tiny", "skeleton", names, seq_length=12,
                            num_person=1)  # fmt: skip
    return {"root": root, "checkpoint": checkpoint}


@pytest.mark.parametrize("source", ["val_data.npy", "val.json"])
def test_nvpose_inference_render_draws_every_sequence(skeleton_run, tmp_path, source):
    import train_nvpose

    out, actions = tmp_path / "videos", tmp_path / "actions.txt"
    argv = ["inference", "--checkpoint", str(skeleton_run["checkpoint"]), "--data",
            str(skeleton_run["root"] / source), "--output-dir", str(tmp_path), "--output-file",
            str(actions), "--workers", "0", "--device", "cpu", "--render", str(out)]  # fmt: skip
    if source.endswith(".json"):
        argv += ["--sequence-length", "8", "--sequence-overlap", "0.5"]
    assert train_nvpose.main(argv) == 0
    labels = actions.read_text().split()
    assert labels and set(labels) <= {"standing", "sitting"}
    videos = sorted(out.glob("sequence_*.mp4"))
    assert [v.name for v in videos] == [f"sequence_{i:04d}.mp4" for i in range(len(labels))]
    if source.endswith(".npy"):
        data = np.load(skeleton_run["root"] / source)  # (N, C, T, V, M), zero padding at the end
        shown = [int(np.nonzero(np.any(s != 0, axis=(0, 2, 3)))[0].max()) + 1 for s in data]
        assert len(labels) == len(data) and min(shown) < data.shape[2]  # one padded sequence
    for index, video in enumerate(videos):
        read, rate = _read(video)
        assert rate == 30 and read[0].shape == (240, 320, 3)
        if source.endswith(".npy"):
            assert len(read) == shown[index]  # the padding is not drawn
        else:
            assert 0 < len(read) <= 8


# One sequence source per format inference reads, each as (data path, the checkpoint's network
# kwargs, the (C, T, V, M) sequences the reader gives, unpadded): two persons where the format
# has persons, a sample name that would leave the output folder and colour the terminal.
HOSTILE_NAME = "../\x1b[31mevil\nname"


def _npy_source(folder: Path):
    rng = np.random.default_rng(1)
    data = np.zeros((2, 3, 12, 34, 2), np.float32)  # nvidia layout, 3D, second sample padded
    data[0] = rng.normal(size=(3, 12, 34, 2))
    data[0, 0, :, :, 1] += 4.0  # the second person stands beside the first
    data[1, :, :9, :, 0] = rng.normal(size=(3, 9, 34))
    np.save(folder / "poses.npy", data)
    return folder / "poses.npy", {}, [data[0], data[1, :, :9]]


def _pyskl_source(folder: Path):
    import pickle

    rng = np.random.default_rng(2)
    points = rng.uniform(200, 400, size=(2, 10, 17, 2)).astype(np.float32)  # (M, T, V, C) pixels
    points[1, ..., 0] += 500
    single = rng.uniform(200, 400, size=(1, 7, 17, 2)).astype(np.float32)
    annotations = [
        {"frame_dir": HOSTILE_NAME, "label": 0, "total_frames": 10, "keypoint": points},
        {"frame_dir": "b", "label": 1, "total_frames": 7, "keypoint": single},
    ]
    path = folder / "coco_2d.pkl"
    path.write_bytes(pickle.dumps({"annotations": annotations}, protocol=2))
    expected = [points.transpose(3, 1, 2, 0), single.transpose(3, 1, 2, 0)]
    return path, {"graph_layout": "coco", "in_channels": 2}, expected


def _ntu_source(folder: Path):
    rng = np.random.default_rng(3)
    poses = rng.normal(size=(3, 8, 25, 2)).round(4).astype(np.float32)  # (C, T, V, M) metres
    poses[0, ..., 1] += 3.0
    poses[..., :2, :, 1] = 0  # the second body enters at frame 2
    lines = ["8"]
    for t in range(8):
        bodies = [m for m in range(2) if poses[:, t, :, m].any()]
        lines.append(str(len(bodies)))
        for m in bodies:
            lines += [f"7205759403792{m} 0 1 1 1 1 0 0.1 0.2 2", "25"]
            lines += [f"{x} {y} {z} 250 200 900 500 0 0 0 0 2" for x, y, z in poses[:, t, :, m].T]
    path = folder / "S001C001P001R001A001.skeleton"
    path.write_text("\n".join(lines) + "\n")
    return path, {"graph_layout": "ntu-rgb+d"}, [poses]


def _deepstream_source(folder: Path):
    import json

    rng = np.random.default_rng(4)
    frames, expected = [], []
    tracks = {7: rng.normal(0, 300, size=(11, 34, 3)), 9: rng.normal(0, 300, size=(11, 34, 3))}
    for t in range(11):
        objects = [{"object_id": key, "pose3d": np.concatenate([xyz[t], np.ones((34, 1))], 1)
                    .ravel().tolist(), "pose25d": [0.0] * 136} for key, xyz in tracks.items()]  # fmt: skip
        frames.append({"frame_num": t, "objects": objects})
    path = folder / "poses.json"
    path.write_text(json.dumps([{"num_frames_in_batch": 11, "batches": frames}]))
    for xyz in tracks.values():  # 3dbp: root-relative over TAO's focal length (1200)
        relative = (xyz - xyz[:, :1]) / 1200.0  # (T, V, 3); the pelvis at the origin
        expected.append(relative.transpose(2, 0, 1)[..., None].astype(np.float32))
    return path, {}, expected


SOURCES = {"npy": _npy_source, "pyskl": _pyskl_source, "ntu": _ntu_source,
           "deepstream": _deepstream_source}  # fmt: skip


@pytest.mark.parametrize("form", sorted(SOURCES))
def test_nvpose_render_reads_every_format_and_draws_every_joint(tmp_path, form):
    """inference --render on each format: one video per sequence, its length, and a white
    joint at every projected joint of every person in every frame (the layout's centre
    included for root-relative 3dbp poses); hostile sample names never reach the file system."""
    import train_nvpose
    from export.annotate import skeleton_points
    from network.graph import get_layout

    data, kwargs, expected = SOURCES[form](tmp_path)
    checkpoint = _untrained(tmp_path / "m.pth", "st_gcn_tiny", "skeleton", ["a", "b"], kwargs,
                            seq_length=12, num_person=2)  # fmt: skip
    out = tmp_path / "render"
    argv = ["inference", "--checkpoint", str(checkpoint), "--data", str(data), "--output-dir",
            str(tmp_path / "inf"), "--workers", "0", "--device", "cpu", "--render", str(out)]  # fmt: skip
    if form == "deepstream":
        argv += ["--sequence-length", "12"]
    assert train_nvpose.main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        f"sequence_{i:04d}.mp4" for i in range(len(expected))
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["inf", "m.pth", "render", data.name]
    )
    root = get_layout(kwargs.get("graph_layout", "nvidia")).center
    for index, sequence in enumerate(expected):
        read, _ = _read(out / f"sequence_{index:04d}.mp4")
        assert len(read) == sequence.shape[1]
        points, visible = skeleton_points(sequence, root=root)
        # 3dbp poses put the pelvis at the origin: drawn in every frame all the same
        pelvis = sequence.shape[1] if form == "deepstream" else 0
        assert visible.sum() == np.count_nonzero(np.any(sequence[:2] != 0, axis=0)) + pelvis
        for t, frame in enumerate(read):
            whiteness = frame.min(axis=-1)  # bones are coloured, joints white
            for v, m in zip(*np.nonzero(visible[t])):
                x, y = np.round(points[t, v, m]).astype(int)
                assert whiteness[y - 1 : y + 2, x - 1 : x + 2].max() > 150, (t, v, m)


# ----------------------------------------------------------------------------- train_gesture.py
def test_gesture_inference_render_contact_sheet_marks_wrong_predictions(tmp_path):
    import csv
    import json

    from test_train_gesture import make_gesture_set

    import train_gesture

    data = make_gesture_set(tmp_path, images_per_class=1)
    names = json.loads(data.read_text())["classes"]
    model = _untrained(tmp_path / "g.pth", "gesturenet_tiny", "gesture", names,
                       image_height=24, image_width=24)  # fmt: skip
    out = tmp_path / "render"
    assert train_gesture.main(["inference", "--model", str(model), "--data_json", str(data),
                               "--data_type", "kpi_set", "--results_dir", str(tmp_path / "inf"),
                               "--workers", "0", "--render", str(out)]) == 0  # fmt: skip
    with (tmp_path / "inf" / "predictions.csv").open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    wrong = [row["label"] != row["predicted"] for row in rows]
    assert any(wrong) and len(rows) > 1  # an untrained network gets some wrong
    sheet = np.asarray(Image.open(out / "contact_sheet.png").convert("RGB"))
    tile, caption, columns = 128, 34, 8  # export.annotate.contact_sheet's defaults
    rows_of_tiles = -(-len(rows) // columns)
    assert sheet.shape == (rows_of_tiles * (tile + caption), min(columns, len(rows)) * tile, 3)
    for index, is_wrong in enumerate(wrong):
        top, left = (index // columns) * (tile + caption), (index % columns) * tile
        frame = sheet[top + 2, left + 20].astype(int)  # on the 3-pixel frame around the tile
        if is_wrong:
            assert frame[0] > 200 and frame[1] < 50, index  # red
        else:
            assert frame[1] > 150 and frame[0] < 50, index  # green
