"""Run directories: default names that cannot collide, one experiment per directory, refused
resumes in one line, training without a validation set, --keep-checkpoints, --end-epoch 0."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import pytest
import torch
import yaml
from test_engine_toys import CLASS_NAMES, ToyClassifier, ToyDataset, make_args, weights_equal

import train_nvpose
from train import checkpoint as ckpt
from train.distributed import DistInfo
from train.engine import _check_args, describe_best, fit
from train.history import read_metrics
from train.rundir import (
    RunDirConflict,
    experiment_differences,
    new_run_dir,
)
from train.runner import run_command


def _fit(args, *, model=None, family="video", classes=CLASS_NAMES, val=True) -> dict:
    torch.manual_seed(args.random_seed)
    return fit(
        model or ToyClassifier(),
        ToyDataset(24),
        ToyDataset(12, seed=1, clips_per_video=2) if val else None,
        args,
        family=family,
        class_names=classes,
    )


def _args(run: Path, *flags: str):
    return make_args(run, "--end-epoch", "2", "--clip-length", "4", *flags)


# ----------------------------------------------------------------------------- default names
def test_new_run_dirs_started_in_the_same_second_get_their_own_names(tmp_path):
    now = datetime.datetime(2026, 12, 5, 9, 30, 12)
    made = [new_run_dir("video", "r3d_18", root=tmp_path, now=now) for _ in range(3)]
    base = tmp_path / "video" / "r3d_18-20261205-093012"
    assert made == [base, base.with_name(base.name + "-1"), base.with_name(base.name + "-2")]
    assert all(path.is_dir() for path in made)


def test_train_without_output_dir_writes_a_new_run_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first, second = _args(None), _args(None)
    first.output_dir = second.output_dir = None
    runs = [Path(_fit(args)["run_dir"]) for args in (first, second)]
    assert runs[0] != runs[1]  # the second run did not resume the first
    for run in runs:
        assert run.parent == Path("runs") / "video"
        assert run.name.startswith("ToyClassifier-")
        assert [r["epoch"] for r in read_metrics(run)] == [1, 2]
        saved = yaml.safe_load((run / "args.yaml").read_text())
        assert saved["output_dir"] == str(run)


# ----------------------------------------------------------------------------- identity
def test_another_experiment_in_the_run_dir_is_refused_in_one_line(tmp_path):
    run = tmp_path / "run"
    _fit(_args(run))
    before = {name: (run / name).read_bytes() for name in ("metrics.csv", "args.yaml")}
    with pytest.raises(RunDirConflict) as caught:
        _fit(_args(run, "--clip-length", "8"), classes=["walk", "run", "jump"])
    message = str(caught.value)
    assert "\n" not in message and str(run) in message
    assert "clip_length 4 -> 8" in message and "'fall'" in message and "'jump'" in message
    assert "--output-dir" in message and f"--resume {run / 'latest.pth'}" in message
    assert before == {name: (run / name).read_bytes() for name in before}
    # the runner turns it into one line and exit code 2
    assert run_command(lambda a: _fit(a), _args(run, "--clip-length", "8")) == 2


def test_same_experiment_resumes_with_other_run_settings(tmp_path):
    run = tmp_path / "run"
    _fit(_args(run))
    model = ToyClassifier()
    _fit(_args(run, "--end-epoch", "3", "--workers", "0", "--lr-base", "0.05"), model=model)
    assert model.epochs_seen == [2]
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2, 3]


def test_explicit_resume_of_the_run_dir_accepts_changed_arguments(tmp_path):
    run = tmp_path / "run"
    _fit(_args(run))
    model = ToyClassifier()
    resume = str(run / "latest.pth")
    _fit(_args(run, "--clip-length", "8", "--end-epoch", "3", "--resume", resume), model=model)
    assert model.epochs_seen == [2]
    assert yaml.safe_load((run / "args.yaml").read_text())["clip_length"] == 8


def test_no_auto_resume_does_not_overwrite_a_run(tmp_path):
    run = tmp_path / "run"
    _fit(_args(run))
    with pytest.raises(RunDirConflict, match="--no-auto-resume"):
        _fit(_args(run, "--no-auto-resume"))


def test_a_run_that_finished_no_epoch_is_still_another_experiment(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "args.yaml").write_text(yaml.safe_dump({"clip_length": 16, "lr_base": 0.1}))
    with pytest.raises(RunDirConflict, match=r"clip_length 16 -> 4.*finished no epoch"):
        _fit(_args(run))
    (run / "args.yaml").write_text(yaml.safe_dump({"clip_length": 4, "lr_base": 0.5}))
    _fit(_args(run))  # the same experiment: it starts afresh there
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2]


def test_network_kwargs_differences_are_named_one_by_one():
    saved = {"network": "r3d_18", "network_kwargs": {"num_classes": 51, "dropout": 0.5}}
    current = {"network": "r3d_18", "network_kwargs": {"num_classes": 101, "dropout": 0.5}}
    assert experiment_differences(saved, current) == ["network kwarg num_classes 51 -> 101"]


# ----------------------------------------------------------------------------- --resume
def test_resume_refuses_another_family_a_corrupt_file_and_wrong_shapes(tmp_path):
    source = tmp_path / "skeleton"
    _fit(_args(source), family="skeleton")
    cases = {
        "family 'skeleton'": (str(source / "latest.pth"), ToyClassifier()),
        "not a readable checkpoint": (str(tmp_path / "corrupt.pth"), ToyClassifier()),
        "does not fit this model": (str(source / "latest.pth"), ToyClassifier()),
    }
    (tmp_path / "corrupt.pth").write_bytes(b"PK\x03\x04 truncated")
    cases["does not fit this model"][1].reset_classifier(5)
    for index, (expected, (path, model)) in enumerate(cases.items()):
        family = "video" if expected.startswith("family") else "skeleton"
        args = _args(tmp_path / f"run{index}", "--resume", path)
        with pytest.raises(ValueError, match=expected) as caught:
            _fit(args, model=model, family=family)
        assert "\n" not in str(caught.value) and path in str(caught.value)


# ----------------------------------------------------------------------------- epochs, keep
def test_end_epoch_zero_is_refused_up_front(tmp_path):
    with pytest.raises(SystemExit) as stop:
        make_args(tmp_path, "--end-epoch", "0")
    assert stop.value.code == 2
    args = _args(tmp_path / "run")
    args.end_epoch = 0  # e.g. from code rather than the command line
    with pytest.raises(ValueError, match="--end-epoch must be at least 1"):
        _fit(args)
    assert not (tmp_path / "run").exists()


def test_training_without_validation_keeps_the_last_epoch_as_best(tmp_path):
    run = tmp_path / "run"
    summary = _fit(_args(run, "--end-epoch", "3"), val=False)
    assert summary["best_metric"] is None and summary["best_epoch"] == 3
    assert "last epoch (no validation set)" in describe_best(summary)
    best, latest = ckpt.load_checkpoint(run / "best.pth"), ckpt.load_checkpoint(run / "latest.pth")
    assert best["epoch"] == latest["epoch"] == 3
    assert weights_equal(best["model"], latest["model"])


@pytest.mark.parametrize(
    ("flags", "kept"),
    [
        ((), [3, 4, 5]),  # the default keeps 3
        (("--keep-checkpoints", "1"), [5]),
        (("--keep-checkpoints", "0"), []),
        (("--keep-checkpoints", "-1"), [1, 2, 3, 4, 5]),
        (("--checkpoint-interval", "2", "--keep-checkpoints", "2"), [4, 5]),
    ],
)
def test_keep_checkpoints_and_interval(tmp_path, flags, kept):
    run = tmp_path / "run"
    _fit(_args(run, "--end-epoch", "5", *flags), val=False)
    assert sorted(ckpt.epoch_files(run)) == kept
    assert {p.name for p in run.glob("*.pth")} == {"latest.pth", "best.pth"} | {
        ckpt.epoch_filename(e) for e in kept
    }
    if kept and kept[-1] == 5:  # one file on disk for the three names of the last epoch
        inodes = {os.stat(run / name).st_ino for name in ("latest.pth", "best.pth")}
        assert inodes == {os.stat(run / ckpt.epoch_filename(5)).st_ino}


@pytest.mark.parametrize("value", ["-2", "two", "1.5"])
def test_keep_checkpoints_rejects_bad_values(tmp_path, value):
    with pytest.raises(SystemExit):
        make_args(tmp_path, "--keep-checkpoints", value)


def test_sync_bn_on_cpu_processes_is_refused():
    args = make_args("unused", "--sync-bn")
    with pytest.raises(ValueError, match="--sync-bn needs CUDA"):
        _check_args(args, DistInfo(rank=0, world_size=2, local_rank=0, device=torch.device("cpu")))
    _check_args(args, DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu")))


# ----------------------------------------------------------------------------- a family script
@pytest.mark.slow  # synthesises skeleton data and trains ST-GCN tiny
def test_skeleton_train_without_val_data_into_the_default_run_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert train_nvpose.main([
        "synth", "--output-dir", "data", "--classes", "standing", "sitting",
        "--train-per-class", "3", "--val-per-class", "1", "--min-frames", "12",
        "--max-frames", "12",
    ]) == 0  # fmt: skip
    train = [
        "train", "--network", "st_gcn_tiny", "--train-data", "data/train_data.npy",
        "--train-labels", "data/train_label.pkl", "--end-epoch", "2", "--batch-size", "2",
        "--device", "cpu", "--workers", "0", "--no-tensorboard", "--no-plots",
    ]  # fmt: skip
    assert train_nvpose.main(train) == 0
    (run,) = (tmp_path / "runs" / "skeleton").iterdir()
    assert run.name.startswith("st_gcn_tiny-")
    assert ckpt.read_epoch(run / "best.pth") == 2
    assert not (tmp_path / "results").exists()
