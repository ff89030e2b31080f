"""The one training engine shared by the video, skeleton and gesture families.

::

    from train.engine import evaluate, fit, predict
    summary = fit(model, train_set, val_set, args, family="video", class_names=names)
    result = evaluate(model, val_set, args, class_names=names, output_dir=run_dir)

Datasets yield ``(inputs, target, sample_id)`` (docs/ARCHITECTURE.md); ``inputs`` is a tensor
or a tuple of tensors (``model(*inputs)``). ``args`` comes from a parser built on
``train.args.common_parser()``. The same code runs under ``python`` and ``torchrun``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from train import checkpoint as ckpt
from train.compile import compile_model
from train.config import write_resolved_args
from train.distributed import (
    DistInfo,
    barrier,
    init_distributed,
    reduce_across_processes,
    watch_for_stalls,
)
from train.evaluation import evaluate, evaluate_loader, predict
from train.history import RunHistory, plot_curves
from train.input_shapes import check_clip_shapes
from train.loaders import build_eval_loader, build_train_loader, multigrid_enabled, set_loader_epoch
from train.logs import log_to_file
from train.metrics import EvalResult
from train.monitor import SpeedMonitor
from train.multigrid import BN_BASE_SIZE, resolve_multigrid, sub_batch_norm
from train.optim import build_optimizer, parameter_groups
from train.precision import (
    Mark,
    Precision,
    forward_model,
    move_to_device,
    seconds_between,
    to_channels_last,
)
from train.rundir import choose_resume, experiment_identity, reconcile, resolve_run_dir
from train.schedule import LRSchedule
from train.seeding import epoch_seed, seed_everything

__all__ = ["NonFiniteLossError", "describe_best", "evaluate", "fit", "predict"]

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite (fp32/bf16); the message names epoch and step."""


@dataclass
class _Progress:
    """What a checkpoint needs beyond module states; ``epoch`` counts finished epochs."""

    epoch: int = 0
    step: int = 0
    best_metric: float | None = None
    best_epoch: int | None = None
    skipped_steps: int = 0


@dataclass
class _Context:
    """Everything one training run holds, built once by ``fit``."""

    model: nn.Module  # what is called: maybe DDP- and/or compile-wrapped
    plain: nn.Module  # the unwrapped module (checkpoints, set_epoch)
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    precision: Precision
    criterion: nn.Module
    train_loader: DataLoader
    val_loader: DataLoader | None
    info: DistInfo
    args: argparse.Namespace
    run_dir: Path
    family: str
    class_names: list[str]
    progress: _Progress = field(default_factory=_Progress)
    history: RunHistory | None = None
    experiment: dict[str, Any] = field(default_factory=dict)  # train.rundir.experiment_identity


@dataclass(frozen=True)
class _FamilyParts:
    """What a family script hands :func:`fit` besides the model, the datasets and the flags."""

    family: str
    class_names: list[str]
    criterion: nn.Module | None
    batch_sampler: Sampler | None
    collate_fn: Callable | None
    param_groups: Sequence[dict[str, Any]] | None
    lr_lambda: Callable[[float], float] | None
    output_dir: str | Path | None
    on_run_dir: Callable[[Path], None] | None


def fit(
    model: nn.Module,
    train_set: Dataset,
    val_set: Dataset | None,
    args: argparse.Namespace,
    *,
    family: str,
    class_names: Sequence[str],
    criterion: nn.Module | None = None,
    batch_sampler: Sampler | None = None,
    collate_fn: Callable | None = None,
    param_groups: Sequence[dict[str, Any]] | None = None,
    lr_lambda: Callable[[float], float] | None = None,
    output_dir: str | Path | None = None,
    on_run_dir: Callable[[Path], None] | None = None,
) -> dict[str, Any]:
    """Train ``args.end_epoch`` epochs with validation, checkpoints, logs and auto-resume.

    ``criterion(logits (N, K), targets (N,))`` defaults to cross-entropy (with
    ``--label-smoothing``); a model's ``regularization_loss()`` is added when it has one, and
    ``model.set_epoch(epoch)`` is called before every epoch when defined. ``param_groups``
    (dicts with ``params`` and optional ``lr_mult``/``weight_decay``) replace the default groups;
    ``lr_lambda(progress in [0, 1]) -> factor`` replaces the ``--lr-schedule``. ``output_dir``
    overrides ``args.output_dir``; without either, a new ``runs/<family>/<network>-<time>``
    directory is made (``train.rundir``). ``on_run_dir(run_dir)`` runs on rank 0 once the
    directory is accepted (same experiment, reconciled), before the first epoch: for files a
    family keeps beside the checkpoints. Returns a summary: ``epoch``, ``best_metric`` (best
    validation video top-1; ``None`` without a validation set), ``best_epoch``, ``best_by``
    (what chose best.pth: ``BEST_BY_VALIDATION`` or, without a validation set,
    ``BEST_BY_LAST_EPOCH``), ``skipped_steps``, ``run_dir`` and the last epoch's metrics
    (``train_loss``, ``train_top1``, ``lr``, ``val_*``).
    """
    parts = _FamilyParts(family, list(class_names), criterion, batch_sampler, collate_fn,
                         param_groups, lr_lambda, output_dir, on_run_dir)  # fmt: skip
    ctx = _setup(model, train_set, val_set, args, parts)
    row: dict[str, Any] = {}
    log_file = (
        log_to_file(ctx.run_dir / "train.log") if ctx.info.rank == 0 else contextlib.nullcontext()
    )
    try:
        with log_file:
            for epoch in range(ctx.progress.epoch, ctx.args.end_epoch):
                row = watch_for_stalls(lambda epoch=epoch: _run_epoch(ctx, epoch))
            _finish(ctx)
    finally:
        if ctx.history is not None:
            ctx.history.close()
    return {
        **row,
        "epoch": ctx.progress.epoch,
        "best_metric": ctx.progress.best_metric,
        "best_epoch": ctx.progress.best_epoch,
        "best_by": _best_by(ctx),
        "skipped_steps": ctx.progress.skipped_steps,
        "run_dir": str(ctx.run_dir),
    }


BEST_BY_VALIDATION = "validation video top-1"
BEST_BY_LAST_EPOCH = "last epoch (no validation set)"


def _best_by(ctx: _Context) -> str:
    return BEST_BY_VALIDATION if ctx.val_loader is not None else BEST_BY_LAST_EPOCH


def describe_best(summary: dict[str, Any]) -> str:
    """What best.pth holds, from a :func:`fit` summary, e.g. ``"best.pth: epoch 7, validation
    video top-1 81.25%"`` or ``"best.pth: epoch 10, the last epoch (no validation set)"``."""
    if summary.get("best_by") == BEST_BY_LAST_EPOCH or summary.get("best_metric") is None:
        return f"best.pth: epoch {summary.get('best_epoch')}, the last epoch (no validation set)"
    return (
        f"best.pth: epoch {summary['best_epoch']}, {BEST_BY_VALIDATION} "
        f"{100 * summary['best_metric']:.2f}%"
    )


def _setup(
    model: nn.Module,
    train_set: Dataset,
    val_set: Dataset | None,
    args: argparse.Namespace,
    parts: _FamilyParts,
) -> _Context:
    info = init_distributed(args.device, getattr(args, "dist_timeout", None))
    _check_args(args, info)
    check_clip_shapes(ckpt.unwrap_model(model), args)  # before any file is written
    network = getattr(ckpt.unwrap_model(model), "network_name", type(model).__name__)
    run_dir = Path(parts.output_dir or resolve_run_dir(args, parts.family, network))
    seed_everything(epoch_seed(args.random_seed, 0, info.rank))
    experiment = experiment_identity(parts.family, model, parts.class_names, args)
    resume_path = choose_resume(run_dir, experiment, args)
    state = _load_resume_state(resume_path, parts.family, network) if resume_path else None
    baseline = args  # args.yaml keeps the baseline
    # PySlowFast's multigrid schedule stretches epochs and LR steps
    args, multigrid_schedule = resolve_multigrid(args)
    if state is None and args.pretrained:
        _load_pretrained(model, args.pretrained, getattr(args, "pretrained_partial", False))
    model = _place_model(model, args, info)
    optimizer = build_optimizer(parameter_groups(model, args, parts.param_groups), args)
    schedule = _make_schedule(optimizer, args, parts.lr_lambda)
    precision = Precision.from_args(args, info.device)
    progress = _Progress()
    if state is not None:
        progress = _resume(state, resume_path, model, optimizer, schedule, precision)
    if info.rank == 0:
        _prepare_run_dir(run_dir, args, progress, resume_path)
        write_resolved_args(baseline, run_dir)
        if parts.on_run_dir is not None:
            parts.on_run_dir(run_dir)
    barrier()
    criterion = parts.criterion or nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    ctx = _Context(
        model=_wrap_model(model, args, info),
        plain=model,
        optimizer=optimizer,
        schedule=schedule,
        precision=precision,
        criterion=criterion.to(info.device),
        train_loader=build_train_loader(
            train_set,
            args,
            info,
            batch_sampler=parts.batch_sampler,
            collate_fn=parts.collate_fn,
            multigrid_schedule=multigrid_schedule,
        ),
        val_loader=build_eval_loader(val_set, args, info, collate_fn=parts.collate_fn)
        if val_set is not None
        else None,
        info=info,
        args=args,
        run_dir=run_dir,
        family=parts.family,
        class_names=parts.class_names,
        progress=progress,
        history=RunHistory(
            run_dir,
            tensorboard=args.tensorboard,
            start_epoch=progress.epoch,
            start_step=progress.step,
        )
        if info.rank == 0
        else None,
        experiment=experiment,
    )
    _announce(ctx, len(train_set))
    return ctx


def _check_args(args: argparse.Namespace, info: DistInfo) -> None:
    """Refuse settings that cannot train, before any data is read."""
    if args.end_epoch < 1:
        raise ValueError(f"--end-epoch must be at least 1, got {args.end_epoch}")
    if args.sync_bn and info.distributed and info.device.type != "cuda":
        raise ValueError(
            "--sync-bn needs CUDA devices (SyncBatchNorm has no CPU/gloo kernel); drop it: "
            "each rank then normalises over its own batch"
        )


def _epoch_file_due(args: argparse.Namespace, epoch: int) -> bool:
    """Whether ``model_epoch_XXX.pth`` is written after ``epoch`` finished epochs."""
    return epoch % max(args.checkpoint_interval, 1) == 0 or epoch == args.end_epoch


def _prepare_run_dir(
    run_dir: Path, args: argparse.Namespace, progress: _Progress, resume_path: Path | None
) -> None:
    """Rank 0: put the run directory in line with the state the run starts from."""
    reconcile(
        run_dir,
        epoch=progress.epoch,
        best_epoch=progress.best_epoch,
        source=resume_path,
        epoch_due=lambda epoch: _epoch_file_due(args, epoch),
        keep=getattr(args, "keep_checkpoints", ckpt.KEEP_CHECKPOINTS),
    )


def _announce(ctx: _Context, num_items: int) -> None:
    """Refuse a loader without batches; log what is about to be trained."""
    if len(ctx.train_loader) == 0:
        raise ValueError(
            f"the training set ({num_items} items) gives no batch of {ctx.args.batch_size} "
            f"on each of {ctx.info.world_size} process(es)"
        )
    log.info(
        "training %s: %d train items, %d steps/epoch, %s, epochs %d..%d, output %s",
        getattr(ctx.plain, "network_name", type(ctx.plain).__name__),
        num_items,
        len(ctx.train_loader),
        ctx.precision.describe(),
        ctx.progress.epoch + 1,
        ctx.args.end_epoch,
        ctx.run_dir,
    )


def _load_pretrained(model: nn.Module, path: str, partial: bool) -> None:
    from network.weights import load_pretrained

    load_pretrained(model, path, partial=partial)


def _place_model(model: nn.Module, args: argparse.Namespace, info: DistInfo) -> nn.Module:
    if args.sync_bn and info.distributed:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(info.device)
    if args.channels_last:
        to_channels_last(model)
    return model


def _wrap_model(model: nn.Module, args: argparse.Namespace, info: DistInfo) -> nn.Module:
    wrapped: nn.Module = model
    if info.distributed:
        device_ids = [info.device.index] if info.device.type == "cuda" else None
        wrapped = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    return compile_model(wrapped, args.compile)


def _make_schedule(
    optimizer: torch.optim.Optimizer,
    args: argparse.Namespace,
    lr_lambda: Callable[[float], float] | None,
) -> LRSchedule:
    return LRSchedule(
        optimizer,
        lr_base=args.lr_base,
        total_epochs=args.end_epoch,
        kind=args.lr_schedule,
        lr_steps=args.lr_steps or (),
        lr_factor=args.lr_factor,
        min_lr=args.min_lr,
        warmup_epochs=args.warmup_epochs,
        warmup_start_factor=args.warmup_start_factor,
        patience=args.plateau_patience,
        lr_lambda=lr_lambda,
    )


def _load_resume_state(path: Path, family: str, network: str) -> dict[str, Any]:
    """The checkpoint to resume, refused in one line when it is of another family or network."""
    state = ckpt.load_checkpoint(path, map_location="cpu")
    stored_family, stored_network = state.get("family"), state.get("network")
    if stored_family is not None and stored_family != family:
        raise ValueError(
            f"{path}: --resume checkpoint of family {stored_family!r} ({stored_network}); "
            f"this run trains a {family!r} model ({network})"
        )
    if stored_network is not None and stored_network != network:
        raise ValueError(
            f"{path}: --resume checkpoint of network {stored_network!r}; this run trains "
            f"{network!r}"
        )
    return state


def _resume(
    state: dict[str, Any],
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: LRSchedule,
    precision: Precision,
) -> _Progress:
    try:
        ckpt.restore_training_state(
            state, model, optimizer=optimizer, scheduler=schedule, scaler=precision.scaler
        )
    except (RuntimeError, ValueError, KeyError) as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else (lines[0] if lines else type(error).__name__)
        raise ValueError(
            f"{path}: --resume checkpoint does not fit this model or optimizer ({detail}); "
            "were the network kwargs or the trained parameters changed?"
        ) from None
    extra = state.get("progress") or {}
    log.info("resumed from %s after epoch %d (step %d)", path, state["epoch"], state["step"])
    return _Progress(
        epoch=int(state["epoch"]),
        step=int(state["step"]),
        best_metric=state.get("best_metric"),
        best_epoch=extra.get("best_epoch"),
        skipped_steps=int(extra.get("skipped_steps", 0)),
    )


def _run_epoch(ctx: _Context, epoch: int) -> dict[str, Any]:
    """Train one epoch, validate when due, update the plateau rule, log and checkpoint."""
    args = ctx.args
    train_stats = _train_epoch(ctx, epoch)
    row: dict[str, Any] = {"epoch": epoch + 1, **train_stats}
    due = (epoch + 1) % max(args.eval_interval, 1) == 0 or epoch + 1 == args.end_epoch
    improved = ctx.val_loader is None  # without validation, best.pth is the last epoch
    if improved:
        ctx.progress.best_epoch = epoch + 1
    if ctx.val_loader is not None and due:
        # The unwrapped module: DDP would sync buffers in forward, but ranks hold unequal shards.
        result = evaluate_loader(
            ctx.plain,
            ctx.val_loader,
            info=ctx.info,
            precision=ctx.precision,
            channels_last=args.channels_last,
            num_classes=len(ctx.class_names),
            desc=f"val {epoch + 1}",
        )
        row.update(result.as_dict("val_"))
        _log_validation(result, epoch)
        improved = _track_best(ctx, result, epoch)
    monitored = row["train_loss"]
    if args.plateau_monitor == "val_loss" and ctx.val_loader is not None:
        monitored = row.get("val_loss")
    ctx.schedule.epoch_end(monitored)
    ctx.progress.epoch = epoch + 1
    if ctx.history is not None:
        ctx.history.append(row)
    _save_checkpoints(ctx, improved=improved)
    barrier()
    return row


def _track_best(ctx: _Context, result: EvalResult, epoch: int) -> bool:
    """Record a new best validation video top-1; True when this epoch improved it."""
    best = ctx.progress.best_metric
    if best is not None and result.video_top1 <= best:
        return False
    ctx.progress.best_metric = result.video_top1
    ctx.progress.best_epoch = epoch + 1
    return True


def _log_validation(result: EvalResult, epoch: int) -> None:
    log.info(
        "epoch %d validation: loss %.4f clip top-1 %.4f top-5 %.4f video top-1 %.4f "
        "top-5 %.4f mean class %.4f",
        epoch + 1,
        result.loss,
        result.clip_top1,
        result.clip_top5,
        result.video_top1,
        result.video_top5,
        result.mean_class_accuracy,
    )


def _save_checkpoints(ctx: _Context, improved: bool) -> None:
    """model_epoch_XXX.pth every interval (the newest --keep-checkpoints kept), best.pth on
    improvement, latest.pth every epoch and last (``ckpt.save_epoch_files``)."""
    if ctx.info.rank != 0:
        return
    epoch = ctx.progress.epoch
    state = ckpt.make_checkpoint(
        ctx.plain,
        optimizer=ctx.optimizer,
        scheduler=ctx.schedule,
        scaler=ctx.precision.scaler,
        epoch=epoch,
        step=ctx.progress.step,
        args=ctx.args,
        family=ctx.family,
        class_names=ctx.class_names,
        best_metric=ctx.progress.best_metric,
    )
    state["progress"] = {
        "best_epoch": ctx.progress.best_epoch,
        "skipped_steps": ctx.progress.skipped_steps,
    }
    state["experiment"] = ctx.experiment
    ckpt.save_epoch_files(
        state,
        ctx.run_dir,
        epoch_file=_epoch_file_due(ctx.args, epoch),
        best=improved,
        keep=getattr(ctx.args, "keep_checkpoints", ckpt.KEEP_CHECKPOINTS),
    )


@dataclass
class _Meter:
    """Running training loss and accuracy, kept on the device until logged."""

    loss_sum: torch.Tensor
    correct1: torch.Tensor
    correct5: torch.Tensor
    count: int = 0

    @classmethod
    def zeros(cls, device: torch.device) -> _Meter:
        return cls(*(torch.zeros((), dtype=torch.float64, device=device) for _ in range(3)))

    def update(self, loss: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor) -> None:
        batch = targets.shape[0]
        self.loss_sum += loss.detach().double() * batch
        top = logits.detach().topk(min(5, logits.shape[1]), dim=1).indices
        hits = top == targets[:, None]
        self.correct1 += hits[:, 0].sum()
        self.correct5 += hits.any(dim=1).sum()
        self.count += batch

    def averages(self) -> tuple[float, float, float]:
        """(loss, top-1, top-5) over this process's clips."""
        count = max(self.count, 1)
        return tuple(float(v) / count for v in (self.loss_sum, self.correct1, self.correct5))

    def reduced(self) -> dict[str, float]:
        """Averages over all processes (weighted by clip counts)."""
        totals = torch.stack([self.loss_sum, self.correct1, self.correct5]).cpu()
        totals = torch.cat([totals, torch.tensor([float(self.count)], dtype=torch.float64)])
        totals = reduce_across_processes(totals, op="sum")
        count = max(float(totals[3]), 1.0)
        return {
            "train_loss": float(totals[0]) / count,
            "train_top1": float(totals[1]) / count,
            "train_top5": float(totals[2]) / count,
        }


def _train_epoch(ctx: _Context, epoch: int) -> dict[str, Any]:
    """One pass over the training loader; returns reduced loss/accuracy, LR and skipped steps."""
    args, loader = ctx.args, ctx.train_loader
    set_loader_epoch(loader, epoch, args.random_seed, ctx.info.rank)
    seed_everything(epoch_seed(args.random_seed, epoch, ctx.info.rank))
    if hasattr(ctx.plain, "set_epoch"):
        ctx.plain.set_epoch(epoch)
    ctx.model.train()
    batch_scale = _lr_batch_scale(loader, args, epoch)
    grouped_bn = (
        sub_batch_norm(ctx.plain, getattr(args, "bn_base_size", BN_BASE_SIZE))
        if multigrid_enabled(args)
        else contextlib.nullcontext()
    )
    meter, monitor = _Meter.zeros(ctx.info.device), SpeedMonitor()
    skipped_before = ctx.progress.skipped_steps
    with grouped_bn:
        lr = _train_steps(ctx, epoch, batch_scale, meter, monitor)
    return {
        **meter.reduced(),
        "lr": lr,
        "skipped_steps": ctx.progress.skipped_steps - skipped_before,
        **monitor.averages(),
    }


def _lr_batch_scale(loader: DataLoader, args: argparse.Namespace, epoch: int) -> float:
    """Linear LR scaling of multigrid's long cycles (bigger batches, bigger LR)."""
    sampler = loader.batch_sampler
    if multigrid_enabled(args) and hasattr(sampler, "lr_multiplier"):
        return float(sampler.lr_multiplier(epoch))
    return 1.0


def _train_steps(
    ctx: _Context, epoch: int, batch_scale: float, meter: _Meter, monitor: SpeedMonitor
) -> float:
    args, loader = ctx.args, ctx.train_loader
    accum = max(int(args.accum_steps), 1)
    num_batches = len(loader)
    steps_per_epoch = math.ceil(num_batches / accum)
    lr = ctx.optimizer.param_groups[0]["lr"]
    pending: list[tuple[float, tuple[Mark, Mark, Mark], int]] = []  # read into monitor when logged
    started = clock = time.perf_counter()
    for index, (inputs, targets, _ids) in enumerate(loader):
        read_s = time.perf_counter() - clock
        group_start = index - index % accum
        if index == group_start:
            lr = ctx.schedule.step(epoch + (index // accum) / steps_per_epoch, batch_scale)
        inputs = move_to_device(inputs, ctx.info.device, channels_last=args.channels_last)
        targets = targets.to(ctx.info.device, non_blocking=True)
        last_of_group = index % accum == accum - 1 or index == num_batches - 1
        marks = _train_step(
            ctx,
            inputs,
            targets,
            meter,
            epoch=epoch,
            index=index,
            micro_batches=min(accum, num_batches - group_start),
            sync=last_of_group,
        )
        pending.append((read_s, marks, targets.shape[0]))
        if (index + 1) % max(args.log_interval, 1) == 0 or index + 1 == num_batches:
            _record_speeds(monitor, pending)
            _log_step(ctx, epoch, index, num_batches, meter, monitor, lr, inputs, started)
        clock = time.perf_counter()
    return lr


def _record_speeds(
    monitor: SpeedMonitor, pending: list[tuple[float, tuple[Mark, Mark, Mark], int]]
) -> None:
    """Turn the steps' marks into forward/backward seconds, at log time only: reading a CUDA
    event waits for the device, which every step would otherwise do."""
    for read_s, (start, forward_done, end), batch_size in pending:
        forward_s, backward_s = (
            seconds_between(start, forward_done),
            seconds_between(forward_done, end),
        )
        monitor.update(read_s, forward_s, backward_s, batch_size=batch_size)
    pending.clear()


def _train_step(
    ctx: _Context,
    inputs: torch.Tensor | tuple[torch.Tensor, ...],
    targets: torch.Tensor,
    meter: _Meter,
    *,
    epoch: int,
    index: int,
    micro_batches: int,
    sync: bool,
) -> tuple[Mark, Mark, Mark]:
    """Forward + backward of one micro-batch, optimizer step when ``sync``; marks at the start,
    after the forward pass and at the end (``Precision.mark``)."""
    precision = ctx.precision
    no_sync = getattr(ctx.model, "no_sync", None)
    defer = no_sync() if (no_sync is not None and not sync) else contextlib.nullcontext()
    start = precision.mark()
    with defer:
        with precision.autocast():
            logits = forward_model(ctx.model, inputs)
            loss = ctx.criterion(logits.float(), targets) + _regularization(ctx.plain)
        forward_done = precision.mark()
        if not _all_finite(loss):
            _handle_non_finite(ctx, loss, epoch, index)
            return start, forward_done, forward_done
        precision.backward(loss / micro_batches)
    if sync:
        if precision.step(ctx.optimizer, ctx.model.parameters(), ctx.args.clip_grad):
            ctx.progress.step += 1
        else:
            ctx.progress.skipped_steps += 1
        ctx.optimizer.zero_grad(set_to_none=True)
    meter.update(loss, logits, targets)
    return start, forward_done, precision.mark()


def _regularization(model: nn.Module) -> torch.Tensor | float:
    regularization = getattr(model, "regularization_loss", None)
    return regularization() if callable(regularization) else 0.0


def _all_finite(loss: torch.Tensor) -> bool:
    """Whether the loss is finite on every process (all ranks take the same branch)."""
    bad = (~torch.isfinite(loss.detach())).double()
    return float(reduce_across_processes(bad, op="sum")) == 0.0


def _handle_non_finite(ctx: _Context, loss: torch.Tensor, epoch: int, index: int) -> None:
    """fp16 with a loss scaler: skip and count the step; otherwise stop training."""
    where = f"epoch {epoch + 1}, step {index + 1} (global step {ctx.progress.step + 1})"
    ctx.optimizer.zero_grad(set_to_none=True)
    if ctx.precision.scaler.is_enabled():
        ctx.progress.skipped_steps += 1
        log.warning("non-finite loss (%s) at %s: step skipped", float(loss.detach()), where)
        return
    message = (
        f"training stopped: loss is {float(loss.detach())} at {where}; lower --lr-base, "
        "set --clip-grad, or check the input data"
    )
    log.error("%s", message)
    raise NonFiniteLossError(message)


def _log_step(
    ctx: _Context,
    epoch: int,
    index: int,
    num_batches: int,
    meter: _Meter,
    monitor: SpeedMonitor,
    lr: float,
    inputs: torch.Tensor | tuple[torch.Tensor, ...],
    started: float,
) -> None:
    loss, top1, top5 = meter.averages()
    elapsed = time.perf_counter() - started
    remaining_epochs = ctx.args.end_epoch - epoch - 1
    eta = elapsed / (index + 1) * ((num_batches - index - 1) + remaining_epochs * num_batches)
    shape = tuple((inputs[0] if isinstance(inputs, tuple | list) else inputs).shape)
    gate = _gate_pass_fraction(ctx.plain)
    log.info(
        "Epoch[%d/%d] Iter[%d/%d] loss %.4f top-1 %.3f top-5 %.3f lr %.3e batch %s "
        "ETA %s mem %s %s%s",
        epoch + 1,
        ctx.args.end_epoch,
        index + 1,
        num_batches,
        loss,
        top1,
        top5,
        lr,
        "x".join(str(s) for s in shape),
        _format_duration(eta),
        ctx.precision.memory(),
        monitor.format(),
        "" if gate is None else f" gate-pass {gate:.2f}",
    )
    if ctx.history is not None:
        scalars = {"train/loss": loss, "train/top1": top1, "train/lr": lr}
        if gate is not None:
            scalars["train/gate_pass_fraction"] = gate
        ctx.history.scalars(scalars, ctx.progress.step)


def _gate_pass_fraction(model: nn.Module) -> float | None:
    """SRTG: the share of the last batch that the temporal gates let through (None: no gates)."""
    fraction = getattr(model, "gate_pass_fraction", None)
    return fraction() if callable(fraction) else None


def _format_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    return f"{hours:d}:{rest // 60:02d}:{rest % 60:02d}"


def _finish(ctx: _Context) -> None:
    if ctx.info.rank != 0:
        return
    if getattr(ctx.args, "plots", True):
        plot_curves(ctx.run_dir)
    summary = {
        "best_by": _best_by(ctx),
        "best_metric": ctx.progress.best_metric,
        "best_epoch": ctx.progress.best_epoch,
    }
    log.info(
        "finished %d epochs; %s; checkpoints in %s",
        ctx.progress.epoch,
        describe_best(summary),
        ctx.run_dir,
    )
