"""train_hmdb.py evaluate / inference as a paper needs them: the checkpoint alone is enough, the
split a run drew is saved and reused, unreadable videos are excluded and counted (never replaced),
multi-view testing (segments × 3 crops, prob or score averaging), per-video predictions, and
parsers that list only the flags these commands use."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

import train_hmdb
from data.video.splits import SplitResult, VideoRecord, hmdb51_split, load_split, write_split_lists
from data.video.transforms import ClipThreeCropPreset, uniform_crop_box
from safeio.excluded import ExcludedItem
from train import args as train_args

CLASSES = ["grow", "move_left", "move_right"]
CLIP = ["--clip-length", "4", "--clip-size", "32", "--short-side", "36"]
EVAL = ["--workers", "0"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """3 classes × 4 videos, prepared; r3d_tiny trained 1 epoch on a --val-fraction draw."""
    root = tmp_path_factory.mktemp("evaluate")
    videos, data, out = root / "videos", root / "data", root / "run"
    synth = ["synth", "--out", str(videos), "--classes", *CLASSES, "--videos-per-class", "4"]
    assert train_hmdb.main([*synth, "--frames", "10", "--size", "48x36"]) == 0
    prepare = ["prepare", "--videos", str(videos), "--out", str(data), "--short-side", "36"]
    assert train_hmdb.main([*prepare, "--workers", "1"]) == 0
    train = ["train", "--data", str(data), "--network", "r3d_tiny", *CLIP, "--batch-size", "4"]
    fast = ["--end-epoch", "1", "--workers", "0", "--no-tensorboard", "--no-plots"]
    assert train_hmdb.main([*train, *fast, "--output-dir", str(out), "--random-seed", "3"]) == 0
    return {"root": root, "data": data, "run": out, "splits": videos / "splits"}


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _val_names(run_dir: Path) -> list[str]:
    lines = (run_dir / "splits_used" / "testlist01.txt").read_text().splitlines()
    return [line.split()[0].removesuffix(".avi") for line in lines]


def test_train_saves_the_split_it_drew(run):
    saved = load_split(run["data"], run["run"] / "splits_used")
    # --random-seed 3 drew it; the saved lists give back exactly that draw, labels included
    drawn = load_split(run["data"], None, val_fraction=0.2, seed=3)
    assert saved.class_names == drawn.class_names == CLASSES
    for subset in ("train", "val"):
        assert [(r.name, r.label) for r in getattr(saved, subset)] == [
            (r.name, r.label) for r in getattr(drawn, subset)
        ]
    assert len(saved.val) == 3 and len(saved.train) == 9


def test_evaluate_needs_only_the_checkpoint(run, tmp_path, capsys):
    out = tmp_path / "eval"
    argv = ["evaluate", "--checkpoint", str(run["run"] / "best.pth"), "--output-dir", str(out)]
    assert train_hmdb.main([*argv, *EVAL]) == 0
    assert "videos scored 3 / 3 listed" in capsys.readouterr().out
    # data root from the checkpoint, validation videos from the run's splits_used (seed 3),
    # not a fresh draw with evaluate's own seed
    scored = [row["video"] for row in _rows(out / "evaluated.csv")]
    assert scored == _val_names(run["run"])
    predictions = _rows(out / "predictions.csv")
    assert [row["video"] for row in predictions] == scored
    first = predictions[0]
    assert first["label"] == first["video"].split("/")[0]
    assert first["predicted"] == first["class_1"]
    assert sorted(first[f"class_{k}"] for k in (1, 2, 3)) == CLASSES  # K = 3: top-5 is all 3
    scores = [float(first[f"score_{k}"]) for k in (1, 2, 3)]
    assert scores == sorted(scores, reverse=True) and sum(scores) == pytest.approx(1, abs=1e-5)
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["num_videos"], metrics["num_listed"], metrics["excluded"]) == (3, 3, [])


def _broken_copy(run: dict[str, Path], tmp_path: Path) -> tuple[Path, str]:
    """A copy of the prepared data with one validation video's frames.db overwritten."""
    data = tmp_path / "data"
    shutil.copytree(run["data"], data)
    name = _val_names(run["run"])[0]
    (data / "jpg" / name / "frames.db").write_bytes(b"not a database")
    return data, name


def test_unreadable_video_is_excluded_named_and_counted(run, tmp_path, capsys, caplog):
    data, bad = _broken_copy(run, tmp_path)
    out = tmp_path / "eval"
    argv = ["evaluate", "--checkpoint", str(run["run"] / "best.pth"), "--data", str(data)]
    assert train_hmdb.main([*argv, "--output-dir", str(out), *EVAL]) == 0
    assert f"videos scored 2 / 3 listed (1 excluded: {bad})" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["num_videos"], metrics["num_listed"]) == (2, 3)
    assert [entry["name"] for entry in metrics["excluded"]] == [bad]
    assert bad not in [row["video"] for row in _rows(out / "predictions.csv")]  # not substituted
    status = {row["video"]: row["status"] for row in _rows(out / "evaluated.csv")}
    assert status[bad] == "excluded" and list(status.values()).count("scored") == 2
    assert "videos scored 2 / 3 listed" in (out / "evaluation.txt").read_text()

    caplog.clear()
    with caplog.at_level(logging.ERROR):
        assert train_hmdb.main([*argv, "--output-dir", str(out), "--strict", *EVAL]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and bad.split("/")[1] in errors[0] and "--strict" in errors[0]
    assert "\n" not in errors[0]


def test_inference_excludes_an_unreadable_video(run, tmp_path, capsys):
    data, bad = _broken_copy(run, tmp_path)
    checkpoint = ["inference", "--checkpoint", str(run["run"] / "best.pth")]
    jsonl = tmp_path / "out.jsonl"
    folder = data / "jpg" / bad.split("/")[0]
    assert (
        train_hmdb.main([*checkpoint, "--videos", str(folder), "--jsonl", str(jsonl), *EVAL]) == 0
    )
    printed = [line for line in capsys.readouterr().out.splitlines() if " : " in line]
    assert len(printed) == 4 and f"{data / 'jpg' / bad} : excluded (unreadable)" in printed
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert sum(bool(row.get("excluded")) for row in rows) == 1
    assert all(row["label"] in CLASSES for row in rows if not row.get("excluded"))
    # a single unreadable video is an error, one line, exit code 2
    assert train_hmdb.main([*checkpoint, "--videos", str(data / "jpg" / bad), *EVAL]) == 2


def test_segments_times_three_crops_and_score_averaging(run, tmp_path, capsys):
    argv = ["evaluate", "--checkpoint", str(run["run"] / "best.pth"), *EVAL]
    views = ["--eval-mode", "conv", "--segments", "2", "--spatial-crops", "3"]
    results = {}
    for average in ("prob", "score"):
        out = tmp_path / average
        assert train_hmdb.main([*argv, *views, "--average", average, "--output-dir", str(out)]) == 0
        assert "6 views per video" in capsys.readouterr().out
        metrics = json.loads((out / "metrics.json").read_text())
        assert (metrics["num_clips"], metrics["num_videos"]) == (18, 3)
        results[average] = [float(r["score_1"]) for r in _rows(out / "predictions.csv")]
    assert all(0 < p <= 1 for p in results["prob"])  # mean softmax
    assert results["score"] != results["prob"]  # mean logits


def _help(command: str) -> str:
    parser = train_hmdb.get_args_parser()
    return parser._subparsers._group_actions[0].choices[command].format_help()


@pytest.mark.parametrize("command", ["evaluate", "inference"])
def test_evaluate_and_inference_list_only_their_flags(command):
    text = _help(command)
    for training_flag in ("--lr-base", "--end-epoch", "--optimizer", "--tensorboard", "--resume",
                          "--train-crop", "--flip-prob", "--clips-per-video",
                          "--sync-bn", "--train-frame-interval"):  # fmt: skip
        assert training_flag not in text
    for flag in ("--checkpoint", "--clip-length", "--segments", "--spatial-crops", "--average",
                 "--strict", "--workers", "--device", "--batch-size", "--compile"):  # fmt: skip
        assert flag in text
    assert ("--splits" in text) == (command == "evaluate")
    assert "--lr-base" in _help("train")


def test_default_workers_follow_the_cpus_this_process_may_use(monkeypatch):
    monkeypatch.setattr(train_args.os, "sched_getaffinity", lambda pid: set(range(6)))
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert train_args.default_workers() == 6
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # torchrun: 4 processes share the node's CPUs
    assert train_args.default_workers() == 1
    monkeypatch.setattr(train_args.os, "sched_getaffinity", lambda pid: set(range(96)))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert train_args.default_workers() == train_args.MAX_DEFAULT_WORKERS
    parser = train_hmdb.get_args_parser()
    assert parser.parse_args(["evaluate", "--checkpoint", "x"]).workers == 8


# PySlowFast uniform_crop (slowfast/datasets/transform.py): centre offset ceil((L - size) / 2),
# views 0/2 at 0 and L - size along the longer side; 3-crop testing resizes the short side to the
# crop size first (TEST_CROP_SIZE for min/max scale), so the windows are full height.
@pytest.mark.parametrize(
    ("height", "width", "boxes"),
    [
        (256, 340, [(0, 0), (0, 42), (0, 84)]),  # wide: left, centre, right
        (256, 341, [(0, 0), (0, 43), (0, 85)]),  # odd free space: ceil(42.5) = 43
        (340, 256, [(0, 0), (42, 0), (84, 0)]),  # tall: top, centre, bottom
        (256, 256, [(0, 0), (0, 0), (0, 0)]),  # square: the whole frame three times
    ],
)
def test_uniform_crop_offsets_match_pyslowfast(height, width, boxes):
    for view, (top, left) in enumerate(boxes):
        assert uniform_crop_box(height, width, (256, 256), 256, view) == (top, left, 256, 256)
    with pytest.raises(ValueError, match="view"):
        uniform_crop_box(height, width, (256, 256), 256, 3)


def test_three_crop_preset_gives_full_height_windows():
    columns = torch.arange(44, dtype=torch.uint8).view(1, 1, 1, 44).expand(2, 3, 32, 44)
    preset = ClipThreeCropPreset(crop_size=32, rgb_mean=[0.0] * 3, rgb_std=[1.0] * 3)
    assert preset.num_views == 3
    for view, left in enumerate((0, 6, 12)):  # free space 12: 0, ceil(6), 12
        out = preset(columns.clone(), view=view)  # (C, T, 32, 32) float
        assert out.shape == (3, 2, 32, 32)
        torch.testing.assert_close(
            out * 255, columns[:, :, :, left : left + 32].permute(1, 0, 2, 3).float()
        )


def test_split_lists_round_trip_keeps_class_order(run, tmp_path):
    split = load_split(run["data"], run["splits"])
    # a class order that is not sorted (as UCF101's classInd can be) survives the round trip
    order = list(reversed(split.class_names))
    relabel = {old: order.index(name) for old, name in enumerate(split.class_names)}
    shuffled = SplitResult(
        [VideoRecord(r.path, relabel[r.label], r.name) for r in split.train],
        [VideoRecord(r.path, relabel[r.label], r.name) for r in split.val],
        order,
    )
    back = load_split(run["data"], write_split_lists(shuffled, tmp_path / "lists"))
    assert back.class_names == order
    assert [(r.name, r.label) for r in back.val] == [(r.name, r.label) for r in shuffled.val]


def test_class_folder_no_split_entry_names_is_reported(run, tmp_path, caplog):
    splits = tmp_path / "splits"
    splits.mkdir()
    for name in CLASSES[:2]:  # the split files leave out move_right
        shutil.copy(run["splits"] / f"{name}_test_split1.txt", splits)
    with caplog.at_level(logging.WARNING):
        result = hmdb51_split(run["data"], splits, 1)
    assert result.unlisted_classes == ["move_right"]
    assert "move_right" in caplog.text and "not used" in caplog.text


def test_evaluate_relabels_by_class_name():
    records = [VideoRecord(Path("a"), 0, "x/a"), VideoRecord(Path("b"), 1, "y/b")]
    relabelled = train_hmdb._relabel(records, ["x", "y"], ["y", "x"])
    assert [r.label for r in relabelled] == [1, 0]
    with pytest.raises(ValueError, match="not trained on: y"):
        train_hmdb._relabel(records, ["x", "y"], ["x", "z"])


class _ToyDataset(torch.utils.data.Dataset):
    """4 samples of 2 features (class = which feature is larger); sample 2 cannot be read.
    Any family's dataset that returns an ExcludedItem goes through the same evaluator."""

    def __init__(self) -> None:
        self.x = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 2.0]])
        self.y = [0, 1, 0, 1]

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int):
        if index == 2:
            return ExcludedItem(index, "sample-2", "sample-2: cannot be read")
        return self.x[index], self.y[index], index


def _toy_args(**extra) -> argparse.Namespace:
    fields = {"device": "cpu", "channels_last": False, "batch_size": 3, "eval_batch_size": None,
              "workers": 0, "random_seed": 0, "amp": False, "amp_dtype": "bf16"}  # fmt: skip
    return argparse.Namespace(**{**fields, **extra})


def test_shared_evaluator_excludes_items_for_every_family(tmp_path):
    from train.evaluation import evaluate, predict

    model = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))
    names = ["s0", "s1", "sample-2", "s3"]
    result = evaluate(model, _ToyDataset(), _toy_args(), class_names=["a", "b"],
                      output_dir=tmp_path, sample_names=names)  # fmt: skip
    assert (result.video_top1, result.num_videos, result.num_listed) == (1.0, 3, 4)
    assert [row["video"] for row in _rows(tmp_path / "predictions.csv")] == ["s0", "s1", "s3"]
    assert [row["status"] for row in _rows(tmp_path / "evaluated.csv")] == [
        "scored", "scored", "excluded", "scored",
    ]  # fmt: skip
    scores = predict(model, _ToyDataset(), _toy_args())
    assert sorted(scores) == [0, 1, 3]  # the excluded id is absent, not another sample's score
    with pytest.raises(ValueError, match=r"sample-2: cannot be read .*--strict"):
        evaluate(model, _ToyDataset(), _toy_args(strict=True), class_names=["a", "b"])
