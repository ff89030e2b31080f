"""train_gesture.py: the two-stage plan and schedule; synth → convert → train → evaluate →
inference → export → onnx-infer through ``main([...])`` on a tiny synthetic set."""

import argparse
import csv
import json
from pathlib import Path

import onnx
import pytest
import torch

import train_gesture
from train_gesture import plan_stages, step_annealing


def make_gesture_set(tmp_path: Path, *, images_per_class: int) -> Path:
    """Synthetic hands (4 users, 64×48) converted into ``tmp_path/data.json``; returns its path."""
    root, data = tmp_path / "set", tmp_path / "data.json"
    synth = ["synth", "--out", str(root), "--num-users", "4",
             "--images-per-class", str(images_per_class), "--image-size", "64", "48"]  # fmt: skip
    assert train_gesture.main(synth) == 0
    convert = ["convert", "--dataset_spec", str(root / "dataset_config.json"),
               "--experiment_spec", str(root / "dataset_experiment_config.json"),
               "--k_folds", "0", "--output_filename", str(data), "--experiment_name", "t"]  # fmt: skip
    assert train_gesture.main(convert) == 0
    return data


def test_step_annealing_halves_at_each_decay_step() -> None:
    factor = step_annealing(33, 0.5)
    assert [factor(p) for p in (0.0, 0.32, 0.33, 0.5, 0.66, 0.98, 0.99, 1.0)] == [
        1.0,
        1.0,
        0.5,
        0.5,
        0.25,
        0.25,
        0.125,
        0.125,
    ]
    assert step_annealing(50, 0.1)(0.75) == pytest.approx(0.1)
    with pytest.raises(ValueError):
        step_annealing(0, 0.5)


def _stage_args(**overrides: object) -> argparse.Namespace:
    args = train_gesture.parse_args(["train", "--data_json", "x.json"])
    for key, value in overrides.items():
        setattr(args, key, value)
    return args


def test_plan_skips_zero_epoch_stages_and_follows_stage_order() -> None:
    stages = plan_stages(_stage_args(top_epochs=0))
    assert [s.name for s in stages] == ["finetuning"]
    stages = plan_stages(_stage_args(top_stage_order=3))
    assert [s.name for s in stages] == ["finetuning", "top_training"]
    top, fine = plan_stages(_stage_args())
    assert (top.optimizer, top.epochs, top.num_layers_unfreeze, top.decay_step_size) == (
        "rmsprop",
        5,
        3,
        None,
    )
    assert (fine.optimizer, fine.lr, fine.decay_step_size, fine.lr_drop_rate) == (
        "sgd",
        3e-4,
        33.0,
        0.5,
    )


def test_spec_file_and_overrides(tmp_path: Path) -> None:
    spec = Path(__file__).resolve().parents[1] / "configs" / "gesture" / "train_spec.json"
    args = train_gesture.parse_args(
        ["train", "-e", str(spec), "trainer.finetuning.train_epochs=7", "--top-epochs", "2"]
    )
    assert (args.finetune_epochs, args.top_epochs, args.finetune_lr) == (7, 2, 3e-4)
    assert args.classes == ["thumbs_up", "fist", "stop", "ok", "two", "random"]
    assert args.kernel_regularizer_factor == 0.001 and args.num_layers == 18


def _lrs(run_dir: Path) -> list[float]:
    with (run_dir / "metrics.csv").open() as stream:
        rows = {int(r["epoch"]): float(r["lr"]) for r in csv.DictReader(stream)}
    return [rows[e] for e in sorted(rows)]


@pytest.fixture
def one_thread():
    # Tiny convolutions run ~10× slower with 2 threads on a loaded 2-core machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_end_to_end_tiny(tmp_path: Path) -> None:
    data, run = make_gesture_set(tmp_path, images_per_class=2), tmp_path / "run"
    split = json.loads(data.read_text())
    assert len(split["train_set"]["images"]) == 24 and len(split["kpi_set"]["images"]) == 12
    common = [
        "--network",
        "gesturenet_tiny",
        "--num-layers",
        "6",
        "--image-height",
        "32",
        "--image-width",
        "32",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--no-tensorboard",
    ]
    assert (
        train_gesture.main(
            [
                "train",
                "--data_json",
                str(data),
                "--output-dir",
                str(run),
                "--batch-size",
                "8",
                "--top-epochs",
                "1",
                "--top-unfreeze",
                "0",
                "--top-lr",
                "0.01",
                "--finetune-epochs",
                "3",
                "--finetune-optimizer",
                "adam",
                "--finetune-lr",
                "0.002",
                "--use-class-weights",
                *common,
            ]
        )
        == 0
    )
    assert _lrs(run / "top_training") == [0.01]
    assert _lrs(run / "finetuning") == pytest.approx([0.002, 0.001, 0.0005])
    top = torch.load(run / "top_training" / "latest.pth", weights_only=True)["model"]
    assert torch.equal(top["stem.norm.running_mean"], torch.zeros(16))  # frozen BN untouched
    model = run / "model" / "model.pth"
    assert model.is_file()
    assert (
        train_gesture.main(
            [
                "evaluate",
                "--model",
                str(model),
                "--data_json",
                str(data),
                "--output-dir",
                str(run),
                "--workers",
                "0",
            ]
        )
        == 0
    )
    metrics = json.loads((run / "evaluation" / "metrics.json").read_text())
    assert metrics["num_images"] == 12 and 0.0 <= metrics["accuracy"] <= 1.0
    assert (run / "evaluation" / "confusion.png").is_file()
    assert (
        train_gesture.main(
            [
                "inference",
                "--model",
                str(model),
                "--data_json",
                str(data),
                "--data_type",
                "kpi_set",
                "--results_dir",
                str(tmp_path / "inf"),
                "--workers",
                "0",
            ]
        )
        == 0
    )
    with (tmp_path / "inf" / "predictions.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 12 and abs(sum(float(rows[0][c]) for c in split["classes"]) - 1) < 1e-4
    assert (
        train_gesture.main(["export", "--model", str(model), "--output", str(tmp_path / "g.onnx")])
        == 0
    )
    graph = onnx.load(str(tmp_path / "g.onnx")).graph
    assert graph.input[0].name == "input" and graph.output[0].name == "fc_pred"
    dims = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims[1:] == [3, 32, 32]
    crops = tmp_path / "set" / "extracted" / "data" / "id01"
    results = tmp_path / "onnx.txt"
    infer = ["onnx-infer", "--onnx", str(tmp_path / "g.onnx"), "--input", str(crops)]
    assert train_gesture.main([*infer, "--results", str(results)]) == 0
    lines = results.read_text().splitlines()
    assert len(lines) == 12 and lines[0].split(" : ")[1].split()[0] in split["classes"]


def test_bad_inputs_exit_with_code_2(tmp_path: Path) -> None:
    assert (
        train_gesture.main(
            ["train", "--top-epochs", "0", "--finetune-epochs", "0", "--data_json", "x.json"]
        )
        == 2
    )
    bad = tmp_path / "spec.json"
    bad.write_text("{")
    assert (
        train_gesture.main(
            [
                "convert",
                "--dataset_spec",
                str(bad),
                "--experiment_spec",
                str(bad),
                "--output_filename",
                str(tmp_path / "d.json"),
            ]
        )
        == 2
    )
    assert not (tmp_path / "d.json").exists()
