"""The command-line flags shared by every family (SRTG-style names), defined once.

Family scripts extend the parent parser with their own ``add_argument_group``::

    parser = argparse.ArgumentParser(parents=[common_parser()])
    parser.set_defaults(end_epoch=40, lr_base=0.1)   # family defaults, still beaten by the CLI

Commands that run a trained model without training it (evaluate, inference) take the smaller
``runtime_parser()`` instead, so their ``--help`` lists only the flags they use.

Flags that fall back to a component's own setting default to ``None``.
"""

from __future__ import annotations

import argparse
import os

from train.checkpoint import KEEP_CHECKPOINTS, keep_count
from train.config import add_spec_arguments
from train.distributed import DEFAULT_TIMEOUT_MINUTES
from train.multigrid import BN_BASE_SIZE, EPOCH_FACTOR, MULTIGRID_SCHEDULES
from train.validation import (
    device,
    log_level,
    momentum,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    probability,
)

OPTIMIZERS = ("sgd", "adamw", "adam", "rmsprop")
LR_SCHEDULES = ("multistep", "plateau", "cosine", "constant")
AMP_DTYPES = ("bf16", "fp16")
PLATEAU_MONITORS = ("val_loss", "train_loss")

_BOOL = argparse.BooleanOptionalAction
MAX_DEFAULT_WORKERS = 8  # more loader processes than this rarely pay for their memory


def default_workers() -> int:
    """DataLoader workers per process by default: the CPUs this process may run on
    (``os.sched_getaffinity``, which honours taskset/cgroups/Slurm) shared by the processes of
    this node (torchrun's ``LOCAL_WORLD_SIZE``), at most ``MAX_DEFAULT_WORKERS``."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    per_process = cpus // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    return max(0, min(MAX_DEFAULT_WORKERS, per_process))


def runtime_parser() -> argparse.ArgumentParser:
    """A parent parser for commands that run a trained model (evaluate, inference): spec, output
    directory, batch size, workers, seed, log level, device, AMP, channels-last; no training
    flags."""
    parser = argparse.ArgumentParser(add_help=False)
    _add_run_arguments(parser.add_argument_group("run"), training=False)
    _add_speed_arguments(parser.add_argument_group("speed and devices"), training=False)
    return parser


def common_parser() -> argparse.ArgumentParser:
    """A parent parser (``add_help=False``) with the flags every family script shares."""
    parser = argparse.ArgumentParser(add_help=False)
    _add_run_arguments(parser.add_argument_group("run"), training=True)
    _add_optim_arguments(parser.add_argument_group("optimisation"))
    _add_speed_arguments(parser.add_argument_group("speed and devices"), training=True)
    _add_checkpoint_arguments(parser.add_argument_group("checkpoints"))
    return parser


def add_multigrid_arguments(parser: argparse.ArgumentParser) -> None:
    """Multigrid flags (video only): long and short cycles work independently."""
    group = parser.add_argument_group("multigrid")
    group.add_argument("--long-cycles", action=_BOOL, default=False, help="long-cycle shapes")
    group.add_argument("--short-cycles", action=_BOOL, default=False, help="short-cycle sizes")
    group.add_argument(
        "--multigrid-schedule",
        choices=list(MULTIGRID_SCHEDULES),
        default="pyslowfast",
        help="pyslowfast: --lr-steps/--end-epoch are the baseline, the run trains "
        "--multigrid-epoch-factor x its epochs with PySlowFast's steps; simple: as given",
    )
    group.add_argument(
        "--multigrid-epoch-factor",
        type=positive_float,
        default=EPOCH_FACTOR,
        help="pyslowfast schedule: epochs per baseline epoch (PySlowFast EPOCH_FACTOR)",
    )
    group.add_argument(
        "--bn-base-size",
        type=positive_int,
        default=BN_BASE_SIZE,
        help="BatchNorm statistics over this many clips when multigrid grows the batch",
    )


def _add_run_arguments(group: argparse._ArgumentGroup, *, training: bool) -> None:
    add_spec_arguments(group)
    group.add_argument(
        "-r",
        "--output-dir",
        default=None,
        help="run directory (logs, checkpoints); train's default is a new "
        "runs/<family>/<network>-<YYYYmmdd-HHMMSS>[-N], other commands write to ./results",
    )
    group.add_argument(
        "--batch-size", type=positive_int, default=8, help="clips per step and process"
    )
    group.add_argument(
        "--eval-batch-size", type=positive_int, default=None, help="default: --batch-size"
    )
    group.add_argument(
        "--workers",
        type=non_negative_int,
        default=default_workers(),
        help="DataLoader worker processes (default: this process's share of the CPUs, at most "
        f"{MAX_DEFAULT_WORKERS})",
    )
    group.add_argument(
        "--random-seed", type=non_negative_int, default=0, help="seeds Python/NumPy/torch/workers"
    )
    group.add_argument("--log-level", type=log_level, default="INFO", help="console logging level")
    if not training:
        return
    group.add_argument(
        "--end-epoch", type=positive_int, default=10, help="number of training epochs"
    )
    group.add_argument(
        "--log-interval", type=positive_int, default=10, help="steps between console lines"
    )
    group.add_argument(
        "--eval-interval", type=positive_int, default=1, help="epochs between validations"
    )
    group.add_argument("--tensorboard", action=_BOOL, default=True, help="TensorBoard scalars")
    group.add_argument("--plots", action=_BOOL, default=True, help="PNG curves at the end")


def _add_optim_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd")
    group.add_argument(
        "--lr-base", type=non_negative_float, default=0.01, help="LR at --batch-size"
    )
    group.add_argument("--lr-schedule", choices=LR_SCHEDULES, default="multistep")
    group.add_argument(
        "--lr-steps",
        type=non_negative_int,
        nargs="*",
        default=[],
        help="epochs where the LR is multiplied",
    )
    group.add_argument("--lr-factor", type=positive_float, default=0.1, help="LR decay factor")
    group.add_argument(
        "--min-lr", type=non_negative_float, default=0.0, help="LR floor (plateau, cosine)"
    )
    group.add_argument("--plateau-monitor", choices=PLATEAU_MONITORS, default="val_loss")
    group.add_argument(
        "--plateau-patience", type=non_negative_int, default=1, help="epochs without progress"
    )
    group.add_argument(
        "--warmup-epochs", type=non_negative_float, default=0.0, help="linear warm-up length"
    )
    group.add_argument("--warmup-start-factor", type=probability, default=0.01)
    group.add_argument("--momentum", type=momentum, default=0.9)
    group.add_argument("--nesterov", action=_BOOL, default=False)
    group.add_argument("--weight-decay", type=non_negative_float, default=1e-4)
    group.add_argument(
        "--norm-bias-decay",
        action=_BOOL,
        default=True,
        help="apply weight decay to normalisation weights and biases too",
    )
    group.add_argument(
        "--clip-grad", type=positive_float, default=None, help="max gradient L2 norm"
    )
    group.add_argument(
        "--accum-steps", type=positive_int, default=1, help="gradient accumulation steps"
    )
    group.add_argument("--label-smoothing", type=probability, default=0.0)


def _add_speed_arguments(group: argparse._ArgumentGroup, *, training: bool) -> None:
    group.add_argument(
        "--device", type=device, default=None, help="cuda, cpu, cuda:1 (default: cuda if any)"
    )
    group.add_argument("--amp", action=_BOOL, default=False, help="mixed precision (GPU only)")
    group.add_argument("--amp-dtype", choices=AMP_DTYPES, default="bf16")
    group.add_argument("--channels-last", action=_BOOL, default=False, help="channels_last(_3d)")
    group.add_argument(
        "--compile",
        action=_BOOL,
        default=False,
        help="torch.compile the model (one warning and eager execution where compilation fails)",
    )
    if training:
        group.add_argument(
            "--sync-bn", action=_BOOL, default=False, help="SyncBatchNorm under DDP (CUDA only)"
        )
    group.add_argument(
        "--dist-timeout",
        type=positive_float,
        default=DEFAULT_TIMEOUT_MINUTES,
        metavar="MINUTES",
        help="a rank that does not answer a collective for this long stops the job, named",
    )


def _add_checkpoint_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--checkpoint-interval",
        "--save-frequency",
        dest="checkpoint_interval",
        type=positive_int,
        default=1,
        help="epochs between model_epoch_XXX.pth files",
    )
    group.add_argument(
        "--keep-checkpoints",
        type=keep_count,
        default=KEEP_CHECKPOINTS,
        metavar="N",
        help="keep the newest N model_epoch_XXX.pth files besides latest.pth and best.pth "
        "(-1: all)",
    )
    group.add_argument("--resume", default=None, metavar="PATH", help="checkpoint to resume")
    group.add_argument(
        "--auto-resume", action=_BOOL, default=True, help="resume from <output-dir>/latest.pth"
    )
    group.add_argument(
        "--pretrained", default=None, metavar="PATH", help="weights; must load completely"
    )
    group.add_argument(
        "--pretrained-partial",
        action=_BOOL,
        default=False,
        help="load what matches of --pretrained/--rgb-pretrained/--of-pretrained, not refuse",
    )
    group.add_argument(
        "--finetune",
        action=_BOOL,
        default=False,
        help="backbone LR × --backbone-lr-mult, classifier at the full LR",
    )
    group.add_argument("--backbone-lr-mult", type=non_negative_float, default=0.1)
