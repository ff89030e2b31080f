"""Per-class reports: per_class.csv numbers worked by hand, the five worst classes, per_class.png
sized so 51 and 120 class names stay legible, and the shared evaluator writing both files."""

from __future__ import annotations

import argparse
import csv
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from train.metrics import (
    PER_CLASS_FIELDS,
    ScoreAccumulator,
    format_worst,
    per_class_rows,
    per_class_topk,
    save_per_class,
    worst_classes,
)

NAMES = ["brush_hair", "cartwheel", "catch", "chew"]


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_per_class_topk_by_hand():
    scores = np.array([[0.6, 0.3, 0.1], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1], [0.2, 0.2, 0.6]])
    targets = np.array([0, 0, 1, 2])
    # class 0: row 0 top-1 hit, row 1 ranks 3rd -> top-1 1/2, top-2 1/2; class 1: 2nd; class 2: 1st
    np.testing.assert_allclose(per_class_topk(scores, targets, 1), [0.5, 0.0, 1.0])
    np.testing.assert_allclose(per_class_topk(scores, targets, 2), [0.5, 1.0, 1.0])
    # a class without rows is undefined, not 0
    assert np.isnan(per_class_topk(scores[:3], targets[:3], 1)[2])


def _result(num_classes: int = 4):
    """8 videos of 4 classes (2 each) scored so that every number below can be read off.

    Video-level predictions: class 0 -> [0, 0], class 1 -> [1, 0], class 2 -> [0, 3],
    class 3 -> [3, 3]; class 2's true class is second-best in one video, sixth in none."""
    acc = ScoreAccumulator(num_classes, from_logits=False)
    eye = np.eye(num_classes)
    rows = [(0, 0), (0, 0), (1, 1), (1, 0), (2, 0), (2, 3), (3, 3), (3, 3)]
    scores = []
    for target, predicted in rows:
        row = 0.05 * np.ones(num_classes) + 0.6 * eye[predicted]
        if predicted != target:
            row[target] += 0.2  # the true class comes second
        scores.append(row / row.sum())
    targets = [t for t, _ in rows]
    acc.update(torch.tensor(np.array(scores)), targets, list(range(len(rows))))
    return acc.result()


def test_per_class_rows_and_worst_classes():
    rows = {row["class"]: row for row in per_class_rows(_result(), NAMES)}
    assert rows["brush_hair"]["support"] == 2
    # class 0 is predicted 4 times, right twice: precision 0.5, recall 1, F1 2/3
    assert rows["brush_hair"]["precision"] == pytest.approx(0.5)
    assert rows["brush_hair"]["recall"] == pytest.approx(1.0)
    assert rows["brush_hair"]["f1"] == pytest.approx(2 / 3)
    assert rows["catch"]["recall"] == 0.0 and np.isnan(rows["catch"]["precision"])
    assert rows["catch"]["f1"] == 0.0
    assert rows["catch"]["top5_recall"] == 1.0  # K=4 < 5: every class is in the top 5
    worst = worst_classes(_result(), NAMES, count=2)
    assert [row["class"] for row in worst] == ["catch", "cartwheel"]
    assert format_worst(worst) == (
        "worst classes by recall: catch 0.00 (2 videos), cartwheel 0.50 (2 videos)"
    )


def test_top5_recall_with_more_than_five_classes():
    names = [f"c{i}" for i in range(7)]
    acc = ScoreAccumulator(7, from_logits=False)
    # video 0 of class 6 ranks its class last (7th): top-5 miss; video 1 ranks it 2nd: hit
    acc.update(
        torch.tensor([[0.3, 0.2, 0.15, 0.12, 0.1, 0.08, 0.05], [0.4, 0.3, 0, 0, 0, 0, 0.3]]),
        [6, 6],
        [0, 1],
    )
    rows = per_class_rows(acc.result(), names)
    assert rows[6]["top5_recall"] == 0.5 and rows[6]["recall"] == 0.0


def test_csv_has_every_field_and_empty_cells_where_undefined(tmp_path):
    csv_path, png_path = save_per_class(_result(), NAMES, tmp_path)
    rows = _rows(csv_path)
    assert tuple(rows[0]) == PER_CLASS_FIELDS
    assert [row["class"] for row in rows] == NAMES
    assert rows[2]["precision"] == "" and rows[2]["recall"] == "0.0000"
    assert rows[0]["f1"] == "0.6667"
    assert Image.open(png_path).size[0] > 400


@pytest.mark.parametrize("num_classes", [51, pytest.param(120, marks=pytest.mark.slow)])
def test_png_gives_every_class_a_legible_row(tmp_path, num_classes):
    names = [f"class_name_{i:03d}" for i in range(num_classes)]
    rng = np.random.default_rng(0)
    acc = ScoreAccumulator(num_classes)
    targets = np.repeat(np.arange(num_classes), 2)
    logits = torch.tensor(rng.normal(size=(targets.size, num_classes)), dtype=torch.float32)
    logits[np.arange(targets.size), targets] += 2.0
    acc.update(logits, targets, np.arange(targets.size))
    _, png_path = save_per_class(acc.result(), names, tmp_path)
    width, height = Image.open(png_path).size
    # 0.14 inch (10 pt at 100 dpi) per class row in both panels
    assert height >= 14 * num_classes and width >= 14 * num_classes + 300


class _Toy(torch.utils.data.Dataset):
    def __init__(self) -> None:
        self.x = torch.tensor([[3.0, 0.0], [0.0, 3.0], [3.0, 0.0], [3.0, 0.0]])
        self.y = [0, 1, 1, 0]

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int):
        return self.x[index], self.y[index], index


def test_evaluate_writes_per_class_files_and_logs_the_worst(tmp_path, caplog):
    from train.evaluation import evaluate

    model = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))
    args = argparse.Namespace(
        device="cpu", channels_last=False, batch_size=4, eval_batch_size=None, workers=0,
        random_seed=0, amp=False, amp_dtype="bf16",
    )  # fmt: skip
    with caplog.at_level(logging.INFO, logger="train.evaluation"):
        evaluate(model, _Toy(), args, class_names=["walk", "run"], output_dir=tmp_path)
    rows = _rows(tmp_path / "per_class.csv")
    assert [(r["class"], r["support"], r["recall"]) for r in rows] == [
        ("walk", "2", "1.0000"),
        ("run", "2", "0.5000"),
    ]
    assert "worst classes by recall: run 0.50 (2 videos), walk 1.00 (2 videos)" in caplog.text
    assert (tmp_path / "per_class.png").stat().st_size > 0


# ----------------------------------------------------------------------------- train_nvpose.py
@pytest.fixture(scope="module")
def skeleton_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import train_nvpose

    root = tmp_path_factory.mktemp("skeleton")
    assert train_nvpose.main(["synth", "--output-dir", str(root), "--classes", "standing",
                              "sitting", "--train-per-class", "1", "--val-per-class", "2",
                              "--min-frames", "10", "--max-frames", "12"]) == 0  # fmt: skip
    return root


def _skeleton_checkpoint(path: Path, names: list[str]) -> Path:
    from network import build_model
    from train.checkpoint import atomic_save, make_checkpoint

    torch.manual_seed(0)
    model = build_model("st_gcn_tiny", num_classes=len(names))
    args = {"seq_length": 12, "num_person": 1}
    atomic_save(make_checkpoint(model, args=args, family="skeleton", class_names=names), path)
    return path


def _evaluate_skeleton(root: Path, checkpoint: Path, out: Path, *extra: str) -> int:
    import train_nvpose

    return train_nvpose.main(["evaluate", "--checkpoint", str(checkpoint), "--data",
                              str(root / "val_data.npy"), "--labels", str(root / "val_label.pkl"),
                              "--output-dir", str(out), "--workers", "0", "--device", "cpu",
                              "--no-plots", *extra])  # fmt: skip


def test_skeleton_evaluate_names_classes_from_label_map(skeleton_set, tmp_path, capsys):
    label_map = skeleton_set / "label_map.json"  # {"standing": 0, "sitting": 1}
    generic = _skeleton_checkpoint(tmp_path / "generic.pth", ["class_0", "class_1"])
    assert _evaluate_skeleton(skeleton_set, generic, tmp_path / "a") == 0
    assert [r["class"] for r in _rows(tmp_path / "a" / "per_class.csv")] == ["class_0", "class_1"]
    assert _evaluate_skeleton(skeleton_set, generic, tmp_path / "b", "--label-map",
                              str(label_map)) == 0  # fmt: skip
    rows = _rows(tmp_path / "b" / "per_class.csv")
    assert [(r["class"], r["support"]) for r in rows] == [("standing", "2"), ("sitting", "2")]
    # a map of another size, or names other than the checkpoint's own: one line, exit 2
    other = tmp_path / "three.json"
    other.write_text('{"a": 0, "b": 1, "c": 2}')
    capsys.readouterr()
    assert _evaluate_skeleton(skeleton_set, generic, tmp_path / "c", "--label-map",
                              str(other)) == 2  # fmt: skip
    assert f"{other}: 3 classes, but {generic} has 2" in capsys.readouterr().err
    named = _skeleton_checkpoint(tmp_path / "named.pth", ["sitting", "standing"])
    assert _evaluate_skeleton(skeleton_set, named, tmp_path / "d", "--label-map",
                              str(label_map)) == 2  # fmt: skip
    assert "its names differ from those stored in" in capsys.readouterr().err
