"""train_hmdb.py end to end on tiny synthetic videos: synth -> prepare -> train -> evaluate ->
inference -> export, for a 2D, a 3D, an SRTG and a joint (RGB + flow) model, plus the TAO spec."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import train_hmdb
from train.checkpoint import load_checkpoint
from train.config import resolve_args

CLASSES = ["move_left", "move_right", "grow"]
# Small but real: encoded mp4 files, decoded and written to frames.db with flow.
CLIP = ["--clip-length", "4", "--clip-size", "32", "--short-side", "36"]
FAST = ["--workers", "0", "--no-tensorboard", "--no-plots", "--log-interval", "1"]
EVAL_FAST = ["--workers", "0"]  # evaluate and inference take no training flags


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hmdb")
    videos, data = root / "videos", root / "data"
    synth = ["synth", "--out", str(videos), "--classes", *CLASSES, "--videos-per-class", "4"]
    assert train_hmdb.main([*synth, "--frames", "10", "--size", "48x36"]) == 0
    prepare = ["prepare", "--videos", str(videos), "--out", str(data), "--short-side", "36"]
    assert train_hmdb.main([*prepare, "--flow", "--workers", "1"]) == 0
    return {"videos": videos, "data": data, "splits": videos / "splits", "root": root}


def _train(prepared: dict[str, Path], out: Path, *extra: str) -> int:
    data = ["--data", str(prepared["data"]), "--splits", str(prepared["splits"])]
    optim = ["--batch-size", "4", "--end-epoch", "1", "--lr-base", "0.01"]
    return train_hmdb.main(["train", *data, *CLIP, *optim, *FAST, "--output-dir", str(out), *extra])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("network", "extra"),
    [
        ("resnet2d_tiny", []),
        ("r3d_tiny", []),
        ("srtg_r3d_tiny", ["--gates"]),
        ("joint_tiny", ["--modality", "joint"]),
    ],
)
def test_one_epoch_evaluate_and_infer(prepared, tmp_path, network, extra):
    run = tmp_path / "run"
    assert _train(prepared, run, "--network", network, *extra) == 0
    state = load_checkpoint(run / "latest.pth")
    assert state["network"] == network
    assert state["class_names"] == sorted(CLASSES)
    assert (run / "args.yaml").is_file() and (run / "metrics.csv").is_file()

    evaluate = ["evaluate", "--checkpoint", str(run / "best.pth"), "--data", str(prepared["data"])]
    out = tmp_path / "eval"
    conv = ["--eval-mode", "conv", "--segments", "3", "--output-dir", str(out)]
    assert train_hmdb.main([*evaluate, *conv, *EVAL_FAST]) == 0
    report = (out / "evaluation.txt").read_text()
    assert "Total accuracy:" in report and "Average class accuracy:" in report

    jsonl = tmp_path / "inference.jsonl"
    videos = prepared["data"] / "jpg" / "grow"
    infer = ["inference", "--checkpoint", str(run / "best.pth"), "--videos", str(videos)]
    assert train_hmdb.main([*infer, "--jsonl", str(jsonl), *EVAL_FAST]) == 0
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(rows) == 4
    assert all(row["label"] in CLASSES and len(row["top_k"]) == 3 for row in rows)


def test_inference_prints_tao_lines(prepared, tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(prepared, run, "--network", "r3d_tiny") == 0
    capsys.readouterr()
    video = prepared["data"] / "jpg" / "move_left"
    infer = ["inference", "--checkpoint", str(run / "latest.pth"), "--videos", str(video)]
    assert train_hmdb.main([*infer, *EVAL_FAST]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if " : [" in line]
    assert len(lines) == 4
    path, labels = lines[0].split(" : ")
    assert Path(path).parent == video
    assert eval(labels)[0] in CLASSES


def test_export_writes_onnx_with_parity(prepared, tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(prepared, run, "--network", "r3d_tiny") == 0
    onnx_path = tmp_path / "model.onnx"
    assert (
        train_hmdb.main(["export", "--checkpoint", str(run / "best.pth"), "--onnx", str(onnx_path)])
        == 0
    )
    assert onnx_path.is_file()
    assert "max |onnx - torch|" in capsys.readouterr().out

    # INT8 takes the clip shape and preprocessing from the ONNX metadata, not from the flags.
    data = ["--data", str(prepared["data"]), "--splits", str(prepared["splits"])]
    quantize = ["quantize", "--onnx", str(onnx_path), *data, "--calib-samples", "4", *FAST]
    assert train_hmdb.main([*quantize, "--calib-batch-size", "2"]) == 0
    assert (tmp_path / "model.int8.onnx").is_file()
    assert "INT8 top-1" in capsys.readouterr().out


def test_tao_spec_maps_onto_flags_and_command_line_wins(prepared, tmp_path):
    spec = {
        "model_config": {
            "model_type": "rgb",
            "backbone": "resnet18",
            "input_type": "3d",
            "rgb_seq_length": 3,
            "sample_rate": 2,
            "dropout_ratio": 0.0,
        },
        "train_config": {
            "optim": {
                "lr": 0.01,
                "lr_scheduler": "MultiStep",
                "lr_steps": [5, 15],
                "lr_decay": 0.1,
            },
            "epochs": 30,
            "checkpoint_interval": 1,
        },
        "dataset_config": {
            "batch_size": 2,
            "clips_per_video": 5,
            "augmentation_config": {"train_crop_type": "no_crop", "rgb_input_mean": [0.5]},
        },
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    argv = ["train", "-e", str(path), "model_config.rgb_seq_length=32", "--lr-base", "0.5"]
    args = resolve_args(train_hmdb.get_args_parser(), argv, train_hmdb.SPEC_MAP)
    assert train_hmdb.resolve_network(args) == "tao_r3d_18"
    assert args.clip_length == 32  # the override beats the spec
    assert args.lr_base == 0.5  # the command line beats both
    assert args.frame_interval == 2 and args.lr_steps == [5, 15] and args.lr_factor == 0.1
    assert args.end_epoch == 30 and args.batch_size == 2 and args.clips_per_video == 5
    assert args.train_crop == "no_crop" and args.rgb_mean == [0.5] and args.dropout == 0.0


def test_network_kwargs_follow_the_registry(prepared):
    args = train_hmdb.get_args_parser().parse_args(["train", "--modality", "flow"])
    assert train_hmdb.network_kwargs("resnet2d_tiny", args, 5) == {
        "num_classes": 5,
        "in_channels": 2,
        "num_frames": 16,
    }
    assert train_hmdb.input_dims_of("resnet2d_tiny", args) == 2
    assert train_hmdb.input_dims_of("r3d_tiny", args) == 3
    with pytest.raises(SystemExit, match="needs --modality joint"):
        train_hmdb._check_modality("joint_tiny", args)


def test_missing_data_root_is_one_clear_error(tmp_path, caplog):
    missing = tmp_path / "nope"
    assert train_hmdb.main(["train", "--data", str(missing), "--network", "r3d_tiny", *FAST]) == 2
    assert any(str(missing) in record.getMessage() for record in caplog.records)
