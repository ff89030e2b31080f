"""A run killed at any point of an epoch's save resumes to the same files as an uninterrupted run.

The kill is simulated by raising (a ``BaseException`` nothing in the engine catches) just before
the k-th file operation of one epoch's save: every ``os.replace``/``os.link`` that makes a file
visible, and the pruning of old epoch files after the commit. Stale temporary files, as a
SIGKILL during a write would leave them, are planted before the resume.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from test_engine_toys import CLASS_NAMES, ToyClassifier, ToyDataset, make_args, weights_equal

from train import checkpoint as ckpt
from train.engine import fit
from train.history import read_metrics

END = 5
# LR 0.02 on the toy data: validation video top-1 improves at epochs 1, 2 and 4, not at 3 or 5
# (asserted on the reference run), so epoch 4 replaces an older best and epoch 3 keeps it.
FLAGS = ("--lr-base", "0.02", "--keep-checkpoints", "2")


class _Killed(BaseException):
    """The simulated kill: not an Exception, so no handler in the engine swallows it."""


def _train(run: Path, *flags: str, end: int = END) -> dict:
    args = make_args(run, *FLAGS, "--end-epoch", str(end), *flags)
    torch.manual_seed(args.random_seed)
    return fit(
        ToyClassifier(),
        ToyDataset(24),
        ToyDataset(12, seed=1, clips_per_video=2),
        args,
        family="video",
        class_names=CLASS_NAMES,
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("reference") / "run"
    _train(run)
    top1 = [row["val_video_top1"] for row in read_metrics(run)]
    improved = [e + 1 for e, value in enumerate(top1) if value > max(top1[:e], default=-1.0)]
    assert improved == [1, 2, 4]
    assert ckpt.read_epoch(run / "best.pth") == 4
    return run


def _arm_kill(monkeypatch, epoch: int, point: int) -> list[str]:
    """Raise _Killed before the ``point``-th file operation of epoch ``epoch``'s save."""
    seen: list[str] = []
    armed = {"on": False}

    def guard(name, real):
        def call(*args, **kwargs):
            if armed["on"]:
                seen.append(f"{name} {Path(args[1] if len(args) > 1 else args[0]).name}")
                if len(seen) == point:
                    raise _Killed(seen[-1])
            return real(*args, **kwargs)

        return call

    monkeypatch.setattr(os, "replace", guard("replace", os.replace))
    monkeypatch.setattr(os, "link", guard("link", os.link))
    save, prune = ckpt.save_epoch_files, ckpt.prune_epoch_files

    def save_epoch_files(state, *args, **kwargs):
        armed["on"] = state["epoch"] == epoch
        try:
            return save(state, *args, **kwargs)
        finally:
            armed["on"] = False

    def prune_epoch_files(*args, **kwargs):
        if armed["on"]:
            seen.append("prune")
            if len(seen) == point:
                raise _Killed("prune")
        return prune(*args, **kwargs)

    monkeypatch.setattr(ckpt, "save_epoch_files", save_epoch_files)
    monkeypatch.setattr(ckpt, "prune_epoch_files", prune_epoch_files)
    return seen


def _plant_stale_temporaries(run: Path) -> None:
    """What a SIGKILL in the middle of a write leaves behind."""
    (run / ".latest.pth.k2x9q1.tmp").write_bytes(b"half a checkpoint")
    (run / ".best.pth.4242.link.tmp").write_bytes(b"")
    (run / "metrics.csv.tmp").write_text("epoch\n")


# The operations of one save, in order (asserted below):
# epoch 4 (improved): model_epoch_004 replace, previous-best link, best link+replace,
#                     latest link+replace, prune -> 7 points
# epoch 3 (no improvement): model_epoch_003 replace, latest link+replace, prune -> 4 points
SAVE_OPS = {
    4: [
        "replace model_epoch_004.pth",
        "link .best.pth.previous",
        "link .best.pth.{pid}.link.tmp",
        "replace best.pth",
        "link .latest.pth.{pid}.link.tmp",
        "replace latest.pth",
        "prune",
    ],
    3: [
        "replace model_epoch_003.pth",
        "link .latest.pth.{pid}.link.tmp",
        "replace latest.pth",
        "prune",
    ],
}
CASES = [(epoch, point) for epoch, ops in SAVE_OPS.items() for point in range(1, len(ops) + 1)]


@pytest.mark.parametrize(("epoch", "point"), CASES)
def test_kill_at_every_write_point_resumes_to_the_uninterrupted_files(
    tmp_path, monkeypatch, reference, epoch, point
):
    run = tmp_path / "run"
    with monkeypatch.context() as patch:
        seen = _arm_kill(patch, epoch, point)
        with pytest.raises(_Killed):
            _train(run)
    assert seen == [op.format(pid=os.getpid()) for op in SAVE_OPS[epoch][:point]]
    committed = _check_after_kill(run, epoch)
    _plant_stale_temporaries(run)

    _train(run, end=committed)  # resume with nothing left to train: only the reconciliation
    _check_reconciled(run, committed)
    _train(run)  # auto-resume in the same directory

    _check_same_files(run, reference)


def _check_after_kill(run: Path, killed_epoch: int) -> int:
    """Between the kill and the resume, best.pth is never behind the committed state; returns
    the committed epoch."""
    latest = ckpt.load_checkpoint(run / "latest.pth")
    committed_best = latest["progress"]["best_epoch"]
    assert latest["epoch"] in (killed_epoch - 1, killed_epoch)
    assert ckpt.read_epoch(run / "best.pth") in (committed_best, killed_epoch)
    return latest["epoch"]


def _check_reconciled(run: Path, committed: int) -> None:
    """After the resume's reconciliation the directory describes epoch ``committed`` only."""
    latest = ckpt.load_checkpoint(run / "latest.pth")
    assert latest["epoch"] == committed
    assert ckpt.read_epoch(run / "best.pth") == latest["progress"]["best_epoch"]
    assert max(ckpt.epoch_files(run)) == committed
    assert not list(run.glob("*.tmp")) and not (run / ckpt.PREVIOUS_BEST).exists()
    assert [row["epoch"] for row in read_metrics(run)] == list(range(1, committed + 1))
    assert len((run / "metrics.csv").read_text().splitlines()) == 1 + committed


def _check_same_files(run: Path, reference: Path) -> None:
    names = sorted(p.name for p in run.iterdir() if p.is_file())
    assert names == sorted(p.name for p in reference.iterdir() if p.is_file())
    assert not list(run.glob("*.tmp")) and not (run / ckpt.PREVIOUS_BEST).exists()
    assert sorted(ckpt.epoch_files(run)) == [4, 5]  # --keep-checkpoints 2
    for name in ("latest.pth", "best.pth", "model_epoch_004.pth", "model_epoch_005.pth"):
        mine, theirs = ckpt.load_checkpoint(run / name), ckpt.load_checkpoint(reference / name)
        assert mine["epoch"] == theirs["epoch"], name
        assert weights_equal(mine["model"], theirs["model"]), name
    rows, expected = read_metrics(run), read_metrics(reference)
    lines = (run / "metrics.csv").read_text().splitlines()
    assert len(lines) == 1 + END  # header + one row per epoch: none twice
    for mine, theirs in zip(rows, expected, strict=True):
        for key in ("epoch", "train_loss", "val_video_top1", "lr"):
            assert mine[key] == theirs[key], (key, mine, theirs)


def test_resume_rebuilds_a_lost_best_and_epoch_file_from_the_committed_state(tmp_path, reference):
    run = tmp_path / "run"
    _train(run, end=4)  # epoch 4 is the best
    (run / "best.pth").unlink()
    (run / "model_epoch_004.pth").unlink()
    _train(run)
    _check_same_files(run, reference)


@pytest.mark.slow  # imports TensorBoard
def test_tensorboard_points_past_the_resumed_epoch_are_purged(tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    with monkeypatch.context() as patch:
        _arm_kill(patch, 4, 6)  # before latest.pth of epoch 4: epoch 4 is re-run
        with pytest.raises(_Killed):
            _train(run, "--tensorboard", "--log-interval", "2")
    _train(run, "--tensorboard", "--log-interval", "2")
    rows = read_metrics(run)
    epochs = EventAccumulator(str(run / "tensorboard" / "epochs"))
    epochs.Reload()
    points = epochs.Scalars("epoch/train_loss")
    assert [p.step for p in points] == [1, 2, 3, 4, 5]
    assert [p.value for p in points] == pytest.approx([r["train_loss"] for r in rows])
    steps = EventAccumulator(str(run / "tensorboard" / "steps"))
    steps.Reload()
    logged = [p.step for p in steps.Scalars("train/loss")]
    assert logged == sorted(set(logged))  # every optimizer step once
