"""The deployment subcommands: export from a checkpoint, and ONNX Runtime inference per family."""

from __future__ import annotations

import argparse
import json

import cv2
import numpy as np
import pytest
import torch

from export import cli, read_metadata
from network import build_model
from train.checkpoint import atomic_save, make_checkpoint

LABELS = ["walk", "run", "jump"]
# Per family: a tiny network and the training arguments that fix its input shape.
RUNS = {
    "video": ("r3d_tiny", {"clip_length": 4, "clip_size": 16, "short_side": 18}),
    "skeleton": ("st_gcn_tiny", {"seq_length": 12, "num_person": 1}),
    "gesture": ("gesturenet_tiny", {"image_height": 24, "image_width": 24}),
}


def _checkpoint(tmp_path, family: str):
    name, args = RUNS[family]
    torch.manual_seed(0)
    model = build_model(name, num_classes=len(LABELS))
    state = make_checkpoint(model, args=args, family=family, class_names=LABELS)
    path = tmp_path / f"{family}.pth"
    atomic_save(state, path)
    return path


def _parse(add, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add(parser)
    return parser.parse_args(argv)


def _export(tmp_path, family: str, *extra: str):
    checkpoint = _checkpoint(tmp_path, family)
    onnx_path = tmp_path / f"{family}.onnx"
    argv = ["--checkpoint", str(checkpoint), "--onnx", str(onnx_path), *extra]
    return cli.run_export(_parse(cli.add_export_arguments, argv), family=family), onnx_path


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict:
    """One ONNX file per family, exported through the CLI from a checkpoint."""
    folder = tmp_path_factory.mktemp("exported")
    files = {}
    for family in RUNS:
        code, path = _export(folder, family)
        assert code == 0
        files[family] = path
    return files


def _infer(capsys, family: str, onnx_path, *argv: str) -> list[str]:
    args = _parse(cli.add_ort_arguments, ["--onnx", str(onnx_path), *argv])
    assert cli.run_ort(args, family=family) == 0
    return capsys.readouterr().out.strip().splitlines()


def test_export_writes_shape_labels_and_preprocessing(exported) -> None:
    video = read_metadata(exported["video"])
    assert video["input_shape"] == [[3, 4, 16, 16]] and video["input_names"] == ["input_rgb"]
    assert video["labels"] == LABELS and video["family"] == "video"
    assert video["preprocess"]["short_side"] == 18 and video["preprocess"]["clip_length"] == 4
    assert video["normalization"]["rgb_mean"] == [0.485, 0.456, 0.406]
    assert read_metadata(exported["skeleton"])["input_shape"] == [[3, 12, 34, 1]]
    assert read_metadata(exported["gesture"])["input_shape"] == [[3, 24, 24]]


def test_missing_checkpoint_is_one_clear_line(tmp_path, capsys) -> None:
    args = _parse(cli.add_export_arguments, ["--checkpoint", str(tmp_path / "nope.pth")])
    assert cli.run_export(args, family="video") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nope.pth: checkpoint not found" in err


def test_checkpoint_of_another_family_is_refused(tmp_path, capsys) -> None:
    checkpoint = _checkpoint(tmp_path, "skeleton")
    args = _parse(cli.add_export_arguments, ["--checkpoint", str(checkpoint)])
    assert cli.run_export(args, family="video") == 2
    assert "family 'skeleton'" in capsys.readouterr().err
    assert not (tmp_path / "skeleton.onnx").exists()


@pytest.mark.parametrize(
    ("shape", "message"),
    [("3,12,34", "takes input(s) with [4] dims"), ("3,12,20,1", "does not fit network")],
)
def test_wrong_input_shape_is_refused(tmp_path, capsys, shape: str, message: str) -> None:
    code, onnx_path = _export(tmp_path, "skeleton", "--input-shape", shape)
    assert code == 2 and message in capsys.readouterr().err
    assert not onnx_path.exists()


def test_skeleton_npy_inference(exported, tmp_path, capsys) -> None:
    data = np.random.default_rng(0).standard_normal((3, 3, 20, 34, 1)).astype(np.float32)
    np.save(tmp_path / "seq.npy", data)
    lines = _infer(capsys, "skeleton", exported["skeleton"], "--input", str(tmp_path / "seq.npy"))
    assert len(lines) == 3 and lines[0].startswith(f"{tmp_path / 'seq.npy'}[0] : ")
    assert all(line.split(" : ")[1].split()[0] in LABELS for line in lines)


def _write_frames(folder, count: int, size: int = 20) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(count):
        cv2.imwrite(
            str(folder / f"{i + 1:06d}.png"), rng.integers(0, 255, (size, size + 4, 3), np.uint8)
        )


def test_video_stream_windows(exported, tmp_path, capsys) -> None:
    _write_frames(tmp_path / "frames", 7)
    argv = ["--input", str(tmp_path / "frames"), "--mode", "stream", "--stride", "2"]
    lines = _infer(capsys, "video", exported["video"], *argv)
    assert [line.split(" : ")[0] for line in lines] == ["[0..3]", "[2..5]"]
    label, prob = lines[0].split(" : ")[1].split()
    assert label in LABELS and 0 < float(prob) <= 1


def test_video_center_and_conv_on_a_tao_folder(exported, tmp_path, capsys) -> None:
    _write_frames(tmp_path / "video" / "rgb", 9)
    center = _infer(capsys, "video", exported["video"], "--input", str(tmp_path / "video"))
    assert len(center) == 1 and center[0].split(" : ")[1].split()[0] in LABELS
    conv = _infer(capsys, "video", exported["video"], "--input", str(tmp_path / "video"),
                  "--mode", "conv", "--num-segments", "3")  # fmt: skip
    assert len(conv) == 2 and conv[0].count("'") == 6  # three clip labels, then the mean
    assert " : mean " in conv[1]


def test_gesture_image_folder(exported, tmp_path, capsys) -> None:
    _write_frames(tmp_path / "hands", 2, size=30)
    lines = _infer(capsys, "gesture", exported["gesture"], "--input", str(tmp_path / "hands"))
    assert [line.split(" : ")[0] for line in lines] == [
        str(tmp_path / "hands" / "000001.png"),
        str(tmp_path / "hands" / "000002.png"),
    ]


def test_inference_with_the_wrong_family_or_input(exported, tmp_path, capsys) -> None:
    args = _parse(cli.add_ort_arguments, ["--onnx", str(exported["gesture"]), "--input", "x"])
    assert cli.run_ort(args, family="skeleton") == 2
    assert "a gesture model, not skeleton" in capsys.readouterr().err
    args = _parse(cli.add_ort_arguments, ["--onnx", str(exported["skeleton"]), "--input", "x.npy"])
    assert cli.run_ort(args, family="skeleton") == 2
    assert "x.npy: no such skeleton file" in capsys.readouterr().err


def test_skeleton_deepstream_json_inference(exported, tmp_path, capsys) -> None:
    rng = np.random.default_rng(2)
    frames = [
        {"batch_id": 0, "frame_num": i, "objects": [
            {"object_id": 7, "pose3d": rng.uniform(1, 2, (34, 4)).ravel().tolist()}
        ]}
        for i in range(20)
    ]  # fmt: skip
    path = tmp_path / "poses.json"
    path.write_text(json.dumps([{"num_frames_in_batch": 20, "batches": frames}]))
    lines = _infer(capsys, "skeleton", exported["skeleton"], "--input", str(path))
    assert len(lines) == 1 and lines[0].startswith(f"{path}[0] : ")


def test_add_subcommands_wires_the_family(tmp_path, capsys) -> None:
    parser = argparse.ArgumentParser()
    cli.add_subcommands(parser.add_subparsers(dest="command"), family="gesture")
    args = parser.parse_args(["export", "--checkpoint", str(tmp_path / "missing.pth")])
    assert args.func(args) == 2 and "missing.pth" in capsys.readouterr().err
    assert parser.parse_args(["trt-engine", "--onnx", "m.onnx"]).precision == "fp16"
