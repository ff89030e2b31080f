"""train_nvpose.py end to end on tiny synthetic data: synth → train → evaluate → inference → export."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

import train_nvpose
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    code = train_nvpose.main([
        "synth", "--output-dir", str(out), "--classes", "standing", "sitting",
        "--train-per-class", "4", "--val-per-class", "2", "--min-frames", "20",
        "--max-frames", "24",
    ])  # fmt: skip
    assert code == 0
    return out


def test_spec_and_overrides_resolve(tmp_path) -> None:
    spec = ROOT / "configs" / "nvpose" / "experiment_nvidia.yaml"
    args = train_nvpose.parse_args(
        ["train", "-e", str(spec), "train.optim.lr=0.01", "--end-epoch", "3"]
    )
    assert (args.lr_base, args.end_epoch, args.lr_steps) == (0.01, 3, [10, 60])
    assert (args.network, args.graph_layout, args.nesterov, args.lr_schedule) == (
        "st_gcn", "nvidia", True, "multistep",
    )  # fmt: skip
    assert args.label_map["jumping"] == 5 and args.output_dir == "results/nvpose/train"
    evaluate = train_nvpose.parse_args(["evaluate", "-e", str(spec)])
    assert evaluate.checkpoint == "results/nvpose/train/best.pth"
    export = train_nvpose.parse_args(["export", "-e", str(spec)])
    assert export.onnx == "results/nvpose/export/st_gcn.onnx"


@pytest.mark.slow
def test_end_to_end(synth_dir, tmp_path) -> None:
    run = tmp_path / "run"
    common = ["--device", "cpu", "--workers", "0", "--output-dir", str(run), "--no-tensorboard",
              "--no-plots", "--log-level", "WARNING"]  # fmt: skip
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({
        "model": {"model_type": "st_gcn_tiny", "dropout": 0.0},
        "dataset": {
            "train_dataset": {"data_path": str(synth_dir / "train_data.npy"),
                              "label_path": str(synth_dir / "train_label.pkl")},
            "val_dataset": {"data_path": str(synth_dir / "val_data.npy"),
                            "label_path": str(synth_dir / "val_label.pkl")},
            "label_map": {"standing": 0, "sitting": 1},
            "batch_size": 4,
        },
        "train": {"num_epochs": 2, "optim": {"lr": 0.05, "lr_scheduler": "MultiStep", "lr_steps": [1]}},
    }))  # fmt: skip
    assert train_nvpose.main(["train", "-e", str(spec), *common]) == 0
    checkpoint = torch.load(run / "best.pth", weights_only=True)  # plain data only
    assert checkpoint["network"] == "st_gcn_tiny" and checkpoint["family"] == "skeleton"
    assert checkpoint["class_names"] == ["standing", "sitting"]
    assert checkpoint["args"]["seq_length"] == 24

    assert train_nvpose.main([
        "evaluate", *common, "--checkpoint", str(run / "best.pth"),
        "--data", str(synth_dir / "val_data.npy"), "--labels", str(synth_dir / "val_label.pkl"),
    ]) == 0  # fmt: skip
    assert (run / "confusion.csv").exists()

    out_file = tmp_path / "actions.txt"
    assert train_nvpose.main([
        "inference", *common, "--checkpoint", str(run / "best.pth"),
        "--data", str(synth_dir / "val.json"), "--output-file", str(out_file),
        "--sequence-length", "20", "--sequence-overlap", "0.5",
    ]) == 0  # fmt: skip
    actions = out_file.read_text().split()
    assert actions and set(actions) <= {"standing", "sitting"}
    annotated = json.loads((run / "val_actions.json").read_text())
    objects = [o for batch in annotated for f in batch["batches"] for o in f["objects"]]
    assert all(o.get("action") in {"standing", "sitting"} for o in objects)

    onnx_path = tmp_path / "model.onnx"
    assert train_nvpose.main(["export", "--checkpoint", str(run / "best.pth"),
                              "--onnx", str(onnx_path)]) == 0  # fmt: skip
    assert onnx_path.stat().st_size > 0

    assert train_nvpose.main([
        "quantize", "--onnx", str(onnx_path), "--calib-samples", "4", "--calib-batch-size", "2",
        "--train-data", str(synth_dir / "train_data.npy"),
        "--val-data", str(synth_dir / "val_data.npy"), "--val-labels", str(synth_dir / "val_label.pkl"),
    ]) == 0  # fmt: skip
    assert (tmp_path / "model.int8.onnx").stat().st_size > 0


def test_bad_input_gives_exit_code(tmp_path, caplog, capsys) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("[{")
    assert train_nvpose.main(["convert", "--data", str(broken), "--output-dir", str(tmp_path)]) == 2
    assert "broken.json: malformed JSON" in caplog.text
    assert train_nvpose.main(["train", "--output-dir", str(tmp_path)]) == 2
    assert "train needs --train-data, --train-labels" in capsys.readouterr().err
