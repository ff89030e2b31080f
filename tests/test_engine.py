"""The training loop: schedules, optimiser groups, NaN handling, resume, determinism, multigrid."""

from __future__ import annotations

import math

import pytest
import torch
from test_engine_toys import (
    CLASS_NAMES,
    ShapeDataset,
    TinyVideoNet,
    ToyClassifier,
    ToyDataset,
    close,
    make_args,
    weights_equal,
)

from train.checkpoint import load_checkpoint
from train.engine import NonFiniteLossError, evaluate, fit, predict
from train.history import read_metrics
from train.multigrid import MultigridBatchSampler
from train.optim import build_optimizer, parameter_groups
from train.precision import Precision
from train.schedule import LRSchedule


def _schedule(kind: str = "multistep", **kwargs) -> LRSchedule:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    return LRSchedule(optimizer, lr_base=1.0, total_epochs=10, kind=kind, **kwargs)


def test_multistep_decays_at_each_step_epoch():
    schedule = _schedule(lr_steps=[3, 6], lr_factor=0.1)
    lrs = [schedule.step(epoch) for epoch in (0, 2.99, 3, 5.5, 6, 9.9)]
    assert lrs == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01, 0.01])


def test_warmup_is_linear_then_hands_over():
    schedule = _schedule(lr_steps=[5], warmup_epochs=2, warmup_start_factor=0.1)
    assert schedule.step(0.0) == pytest.approx(0.1)
    assert schedule.step(1.0) == pytest.approx(0.55)
    assert schedule.step(2.0) == pytest.approx(1.0)
    assert schedule.step(5.0) == pytest.approx(0.1)


def test_cosine_goes_from_base_to_min_lr_after_warmup():
    schedule = _schedule("cosine", min_lr=0.01, warmup_epochs=2)
    assert schedule.step(2.0) == pytest.approx(1.0)
    assert schedule.step(6.0) == pytest.approx(0.01 + 0.99 * 0.5)
    assert schedule.step(10.0) == pytest.approx(0.01)


def test_plateau_matches_torch_reduce_lr_on_plateau():
    losses = [1.0, 0.9, 0.95, 0.95, 0.8, 0.81, 0.82, 0.83, 0.7, 0.7, 0.7]
    ours = _schedule("plateau", lr_factor=0.5, patience=1, min_lr=0.05)
    reference_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    reference = torch.optim.lr_scheduler.ReduceLROnPlateau(
        reference_opt, mode="min", factor=0.5, patience=1, min_lr=0.05
    )
    for loss in losses:
        ours.epoch_end(loss)
        reference.step(loss)
        assert ours.step(0.0) == pytest.approx(reference_opt.param_groups[0]["lr"])


def test_lr_lambda_replaces_the_schedule_by_progress():
    schedule = _schedule(lr_lambda=lambda progress: 0.5 ** int(progress / 0.25), lr_steps=[1])
    assert [schedule.step(e) for e in (0, 2.4, 2.5, 5, 9.99)] == pytest.approx(
        [1, 1, 0.5, 0.25, 0.125]
    )


def test_finetune_gives_backbone_a_smaller_lr_than_classifier(tmp_path):
    args = make_args(tmp_path, "--finetune", "--backbone-lr-mult", "0.1", "--no-norm-bias-decay")
    model = ToyClassifier()
    optimizer = build_optimizer(parameter_groups(model, args), args)
    schedule = LRSchedule(optimizer, lr_base=0.1, total_epochs=3)
    schedule.step(0.0)
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    decay_of = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    assert lr_of[id(model.fc.weight)] == pytest.approx(0.1)
    assert lr_of[id(model.body.weight)] == pytest.approx(0.01)
    assert decay_of[id(model.body.bias)] == 0.0 and decay_of[id(model.fc.bias)] == 0.0
    assert decay_of[id(model.body.weight)] == pytest.approx(args.weight_decay)


def test_frozen_parameters_are_not_optimised(tmp_path):
    model = ToyClassifier()
    model.body.requires_grad_(False)
    args = make_args(tmp_path)
    groups = parameter_groups(model, args, [{"params": list(model.parameters()), "lr_mult": 2.0}])
    trainable = {id(p) for g in groups for p in g["params"]}
    assert trainable == {id(model.fc.weight), id(model.fc.bias)}


class _ExplodingModel(ToyClassifier):
    """Returns NaN logits from the third call on."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        logits = super().forward(x)
        return logits * math.nan if self.calls >= 3 else logits


def test_nan_loss_stops_with_epoch_and_step(tmp_path):
    args = make_args(tmp_path, "--no-auto-resume")
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, step 3"):
        fit(_ExplodingModel(), ToyDataset(16), None, args, family="video", class_names=CLASS_NAMES)


def _default_model() -> ToyClassifier:
    return ToyClassifier(batch_norm=True, reg=1e-3)


def test_nan_loss_under_loss_scaling_skips_and_counts_steps(tmp_path, monkeypatch):
    """fp16 AMP path (a loss scaler on): non-finite steps are skipped and counted, not fatal."""

    def scaled(args, device):
        return Precision(device, None, torch.amp.GradScaler("cpu", enabled=True))

    monkeypatch.setattr(Precision, "from_args", staticmethod(scaled))
    args = make_args(tmp_path, "--no-auto-resume", "--end-epoch", "1")
    summary = fit(
        _ExplodingModel(), ToyDataset(16), None, args, family="video", class_names=CLASS_NAMES
    )
    assert summary["skipped_steps"] == 2  # steps 3 and 4 of 4
    assert load_checkpoint(tmp_path / "latest.pth")["step"] == 2


def _run(tmp_path, name, *extra, model_fn=_default_model, val=True):
    """fit() on the toy data; the model is built after seeding, as family scripts do."""
    args = make_args(tmp_path / name, *extra)
    torch.manual_seed(args.random_seed)
    model = model_fn()
    summary = fit(
        model,
        ToyDataset(24),
        ToyDataset(12, seed=1, clips_per_video=2) if val else None,
        args,
        family="video",
        class_names=CLASS_NAMES,
    )
    return model, summary, read_metrics(tmp_path / name)


@pytest.mark.slow  # imports TensorBoard and matplotlib
def test_fit_learns_calls_hooks_and_writes_outputs(tmp_path):
    model, summary, rows = _run(
        tmp_path, "run", "--end-epoch", "4", "--lr-steps", "3", "--plots", "--tensorboard"
    )
    run = tmp_path / "run"
    assert model.epochs_seen == [0, 1, 2, 3]
    assert [row["epoch"] for row in rows] == [1, 2, 3, 4]
    assert [row["lr"] for row in rows] == pytest.approx([0.1, 0.1, 0.1, 0.01])
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert summary["val_video_top1"] >= 0.8 and rows[-1]["val_num_videos"] == 6
    outputs = (
        "latest.pth",
        "best.pth",
        "model_epoch_004.pth",
        "args.yaml",
        "curves.png",
        "train.log",
    )
    for name in outputs:
        assert (run / name).is_file(), name
    for axis in ("steps", "epochs"):
        assert list((run / "tensorboard" / axis).glob("events.out.tfevents.*")), axis
    state = load_checkpoint(run / "best.pth")
    assert (
        state["epoch"] == summary["best_epoch"] and state["best_metric"] == summary["best_metric"]
    )


def test_speeds_of_every_stage_are_logged(tmp_path):
    _, _, rows = _run(tmp_path, "speed", "--end-epoch", "1", "--log-interval", "2")
    for stage in ("read", "forward", "backward"):
        speed = float(rows[0][f"speed/{stage}"])
        assert math.isfinite(speed) and speed > 0, (stage, speed)


def test_checkpoint_interval_and_last_epoch(tmp_path):
    _run(tmp_path, "run", "--end-epoch", "3", "--checkpoint-interval", "2", val=False)
    names = sorted(p.name for p in (tmp_path / "run").glob("model_epoch_*.pth"))
    assert names == ["model_epoch_002.pth", "model_epoch_003.pth"]


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    common = ("--end-epoch", "4", "--lr-steps", "2", "--warmup-epochs", "1", "--lr-schedule")
    full_model, _, full_rows = _run(tmp_path, "full", *common, "multistep")
    _run(tmp_path, "split", *common[:1], "2", *common[2:], "multistep")
    resumed_model, _, split_rows = _run(tmp_path, "split", *common, "multistep")
    assert resumed_model.epochs_seen == [2, 3]
    assert [r["epoch"] for r in split_rows] == [1, 2, 3, 4]
    for full, split in zip(full_rows, split_rows):
        for key in ("lr", "train_loss", "train_top1", "val_loss", "val_video_top1"):
            assert close(full[key], split[key], 1e-9), (key, full, split)
    assert weights_equal(full_model.state_dict(), resumed_model.state_dict())
    # metrics.csv is appended to on resume, never rewritten (4 data rows + header).
    assert len((tmp_path / "split" / "metrics.csv").read_text().splitlines()) == 5


def test_two_runs_with_the_same_seed_are_identical(tmp_path):
    # One worker process: its random augmentation must be seeded too.
    first, _, rows_a = _run(
        tmp_path, "a", "--random-seed", "7", "--end-epoch", "2", "--workers", "1"
    )
    second, _, rows_b = _run(
        tmp_path, "b", "--random-seed", "7", "--end-epoch", "2", "--workers", "1"
    )
    third, _, _ = _run(tmp_path, "c", "--random-seed", "8", "--end-epoch", "2")
    strip = [{k: v for k, v in r.items() if not k.startswith("speed/")} for r in rows_a]
    assert strip == [{k: v for k, v in r.items() if not k.startswith("speed/")} for r in rows_b]
    assert weights_equal(first.state_dict(), second.state_dict())
    assert not weights_equal(first.state_dict(), third.state_dict())


def _no_dropout() -> ToyClassifier:
    return ToyClassifier(dropout=0.0)


def test_gradient_accumulation_equals_the_big_batch(tmp_path):
    big, _, _ = _run(tmp_path, "big", "--batch-size", "4", model_fn=_no_dropout, val=False)
    small, _, _ = _run(
        tmp_path, "acc", "--batch-size", "2", "--accum-steps", "2", model_fn=_no_dropout, val=False
    )
    for key, value in big.state_dict().items():
        torch.testing.assert_close(small.state_dict()[key], value, rtol=1e-5, atol=1e-6)


def test_gradient_clipping_bounds_the_update(tmp_path):
    torch.manual_seed(0)
    start = _no_dropout().state_dict()
    clipped, _, _ = _run(
        tmp_path, "clip", "--clip-grad", "1e-6", "--momentum", "0", "--weight-decay", "0",
        "--end-epoch", "1", model_fn=_no_dropout, val=False,
    )  # fmt: skip
    change = torch.cat([(v - start[k]).flatten() for k, v in clipped.state_dict().items()])
    steps = 24 // 4
    assert 0 < change.norm() <= steps * 0.1 * 1e-6 * (1 + 1e-4)


def test_evaluate_and_predict_average_clips_per_video(tmp_path):
    model, _, _ = _run(tmp_path, "run", "--end-epoch", "2", val=False)
    args = make_args(tmp_path / "run")
    data = ToyDataset(12, seed=1, clips_per_video=3)
    result = evaluate(model, data, args, class_names=CLASS_NAMES, output_dir=tmp_path / "eval")
    assert result.num_clips == 12 and result.num_videos == 4
    assert (tmp_path / "eval" / "confusion.csv").is_file()
    assert "Total accuracy" in (tmp_path / "eval" / "evaluation.txt").read_text()
    scores = predict(model, data, args)
    assert sorted(scores) == [0, 1, 2, 3]
    assert all(s.shape == (3,) and abs(s.sum() - 1) < 1e-6 for s in scores.values())


def _multigrid_args(tmp_path, *flags):
    return make_args(
        tmp_path, *flags, "--clip-length", "4", "--clip-size", "8", "--batch-size", "2",
        "--bn-base-size", "2", "--no-auto-resume",
    )  # fmt: skip


def test_multigrid_short_cycles_change_shapes_and_cover_the_data(tmp_path):
    data = ShapeDataset(16, frames=4, side=8)
    args = _multigrid_args(tmp_path, "--short-cycles", "--end-epoch", "1")
    _, _, rows = _run_model(TinyVideoNet(), data, args)
    assert sorted(index for index, *_ in data.seen) == list(range(16))
    assert {h for _, _, h, _ in data.seen} == {4, 6, 8}
    assert rows[0]["lr"] == pytest.approx(0.1)  # short cycles keep the LR


def test_multigrid_long_cycles_scale_the_lr_with_the_batch(tmp_path):
    data = ShapeDataset(16, frames=4, side=8)
    args = _multigrid_args(
        tmp_path, "--long-cycles", "--end-epoch", "4", "--lr-schedule", "cosine",
        "--multigrid-schedule", "simple",
    )  # fmt: skip
    sampler = MultigridBatchSampler.from_lr_schedule(
        16, lr_steps=[], end_epoch=4, base_batch=2, base_frames=4, base_size=8,
        long_cycles=True, short_cycles=False, schedule_kind="simple",
    )  # fmt: skip
    _, _, rows = _run_model(TinyVideoNet(), data, args)
    schedule = _schedule("cosine")
    schedule.total_epochs = 4
    expected = [0.1 * schedule.factor(e) * sampler.lr_multiplier(e) for e in range(4)]
    assert sampler.lr_multiplier(0) > 1
    # The logged LR is the last step's; it lies between the epoch's start and end values.
    for row, start, epoch in zip(rows, expected, range(4)):
        end = 0.1 * schedule.factor(epoch + 1) * sampler.lr_multiplier(epoch)
        assert end <= row["lr"] <= start + 1e-12
    assert len(data.seen) == 4 * 16


def _run_model(model, data, args):
    summary = fit(model, data, None, args, family="video", class_names=CLASS_NAMES)
    return model, summary, read_metrics(args.output_dir)


def test_pretrained_and_explicit_resume(tmp_path):
    trained, _, _ = _run(tmp_path, "a", "--end-epoch", "1", val=False)
    source = tmp_path / "a" / "latest.pth"
    # LR 0: one epoch leaves the loaded parameters as they are (BatchNorm statistics move).
    fresh, _, _ = _run(
        tmp_path, "b", "--end-epoch", "1", "--lr-base", "0", "--pretrained", str(source), val=False
    )
    assert weights_equal(dict(fresh.named_parameters()), dict(trained.named_parameters()))
    resumed, summary, _ = _run(tmp_path, "c", "--end-epoch", "1", "--resume", str(source))
    assert summary["epoch"] == 1 and not (tmp_path / "c" / "latest.pth").exists()
    assert weights_equal(resumed.state_dict(), trained.state_dict())


def test_regularization_loss_is_added(tmp_path):
    def strong() -> ToyClassifier:
        return ToyClassifier(dropout=0.0, reg=1.0)

    plain, _, plain_rows = _run(
        tmp_path, "plain", "--end-epoch", "1", model_fn=_no_dropout, val=False
    )
    regular, _, rows = _run(tmp_path, "reg", "--end-epoch", "1", model_fn=strong, val=False)
    assert regular.body.weight.norm() < 0.8 * plain.body.weight.norm()
    # The penalty is part of the reported loss.
    assert rows[0]["train_loss"] > plain_rows[0]["train_loss"] + 0.5
