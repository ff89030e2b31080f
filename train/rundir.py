"""Run directories: a default that cannot collide, one experiment per directory, and a directory
put back in line with the checkpoint a run starts from.

::

    run_dir = resolve_run_dir(args, "video", "r3d_18")     # runs/video/r3d_18-20261205-093012
    identity = experiment_identity("video", model, class_names, args)
    resume = choose_resume(run_dir, identity, args)         # None, latest.pth or --resume
    reconcile(run_dir, epoch=5, best_epoch=4, source=resume, epoch_due=due)

A run directory holds one experiment: its family, network and network kwargs, class names and
the data/shape arguments of ``EXPERIMENT_ARGS``. Auto-resume continues it only when these agree;
otherwise :class:`RunDirConflict` names the differing arguments in one line.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from torch import nn

from train import checkpoint as ckpt
from train.config import plain_args
from train.distributed import broadcast_object, get_rank, init_distributed
from train.history import truncate_metrics

__all__ = [
    "EXPERIMENT_ARGS",
    "OTHER_COMMANDS_OUTPUT_DIR",
    "RUNS_ROOT",
    "RunDirConflict",
    "choose_resume",
    "experiment_differences",
    "experiment_identity",
    "new_run_dir",
    "reconcile",
    "resolve_run_dir",
    "saved_identity",
]

log = logging.getLogger(__name__)

RUNS_ROOT = "runs"  # train's default: runs/<family>/<network>-<YYYYmmdd-HHMMSS>[-N]
OTHER_COMMANDS_OUTPUT_DIR = "results"  # evaluate, inference, ... without --output-dir

# Arguments that define an experiment's data and input shape, by family (a script has only its
# own). The family, network name, network kwargs (num_classes, frames, channels, ...) and class
# names are part of the identity too.
EXPERIMENT_ARGS = (
    # video (train_hmdb.py)
    "data", "val_data", "splits", "split", "val_fraction", "modality", "clip_length",
    "flow_clip_length", "clip_size",
    # skeleton (train_nvpose.py)
    "train_data", "train_labels", "val_labels", "label_map", "window_size",
    # gesture (train_gesture.py)
    "data_json", "image_root_path", "fold", "image_height", "image_width",
)  # fmt: skip
# Of those, the ones naming files or folders: compared as absolute paths.
PATH_ARGS = frozenset(
    ("data", "val_data", "splits", "train_data", "train_labels", "val_labels", "label_map",
     "data_json", "image_root_path")
)  # fmt: skip
ARGS_FILE = "args.yaml"


class RunDirConflict(ValueError):
    """The run directory holds another experiment (or a run that may not be continued)."""


# ----------------------------------------------------------------------------- default dirs
def new_run_dir(
    family: str, network: str, *, root: str | Path = RUNS_ROOT, now: datetime.datetime | None = None
) -> Path:
    """Create and return ``<root>/<family>/<network>-<YYYYmmdd-HHMMSS>``, with ``-1``, ``-2``,
    ... appended when that name exists (``mkdir`` claims a name atomically, so two runs started
    in the same second get two directories)."""
    stamp = (now or datetime.datetime.now()).strftime("%Y%m%d-%H%M%S")
    base = Path(root) / family / f"{network}-{stamp}"
    base.parent.mkdir(parents=True, exist_ok=True)
    for number in itertools.count():
        path = base if number == 0 else base.with_name(f"{base.name}-{number}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise AssertionError("unreachable")


def resolve_run_dir(args: argparse.Namespace, family: str, network: str) -> Path:
    """``--output-dir`` if given, else a new directory from :func:`new_run_dir` (rank 0 creates
    it, every rank gets its name); ``args.output_dir`` is set to the result."""
    if getattr(args, "output_dir", None):
        return Path(args.output_dir)
    init_distributed(getattr(args, "device", None), getattr(args, "dist_timeout", None))
    path = broadcast_object(new_run_dir(family, network) if get_rank() == 0 else None)
    args.output_dir = str(path)
    log.info("run directory: %s (give --output-dir to choose one)", path)
    return Path(path)


# ----------------------------------------------------------------------------- identity
def experiment_identity(
    family: str, model: nn.Module, class_names: Sequence[str] | None, args: Any
) -> dict[str, Any]:
    """What defines the experiment of a run (compared before auto-resume; stored in checkpoints
    as ``experiment``). ``args``: a Namespace or a dict of arguments."""
    plain = ckpt.unwrap_model(model)
    return _identity(
        family,
        getattr(plain, "network_name", type(plain).__name__),
        getattr(plain, "network_kwargs", {}),
        class_names,
        args,
    )


def _identity(
    family: str | None,
    network: str | None,
    network_kwargs: Mapping[str, Any] | None,
    class_names: Sequence[str] | None,
    args: Any,
) -> dict[str, Any]:
    values = plain_args(args) if args is not None else {}
    identity: dict[str, Any] = {
        "family": family,
        "network": network,
        # Files named in the kwargs initialise the weights; they do not define the experiment.
        "network_kwargs": plain_args(
            {k: v for k, v in dict(network_kwargs or {}).items() if "pretrained" not in k}
        ),
        "classes": list(class_names) if class_names is not None else None,
    }
    for key in EXPERIMENT_ARGS:
        if key in values:
            value = values[key]
            if key in PATH_ARGS and isinstance(value, str) and value:
                value = os.path.abspath(os.path.expanduser(value))
            identity[key] = value
    return identity


def saved_identity(run_dir: str | Path) -> tuple[dict[str, Any], Path] | None:
    """The identity recorded in ``run_dir`` and the file it came from: ``latest.pth`` (its
    ``experiment`` entry, or one rebuilt from its fields), else the arguments of ``args.yaml``
    (a run that never finished an epoch); ``None`` for a directory without either."""
    run_dir = Path(run_dir)
    latest = run_dir / ckpt.LATEST
    if latest.is_file():
        state = ckpt.load_checkpoint(latest, map_location="cpu", mmap=True)
        if isinstance(state.get("experiment"), dict):
            return state["experiment"], latest
        return (
            _identity(
                state.get("family"),
                state.get("network"),
                state.get("network_kwargs"),
                state.get("class_names"),
                state.get("args") or {},
            ),
            latest,
        )
    args_file = run_dir / ARGS_FILE
    if args_file.is_file():
        try:
            saved = yaml.safe_load(args_file.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError):
            saved = None
        if not isinstance(saved, dict):
            raise RunDirConflict(
                f"{args_file}: not a readable arguments file; give another --output-dir"
            )
        partial = _identity(None, None, None, None, saved)
        keep = set(EXPERIMENT_ARGS)
        return {k: v for k, v in partial.items() if k in keep}, args_file
    return None


def experiment_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``"clip_length 16 -> 8"`` for each identity entry present in both that differs."""
    differences = []
    for key, value in current.items():
        if key not in saved:
            continue
        old = saved[key]
        if key == "network_kwargs" and isinstance(old, Mapping) and isinstance(value, Mapping):
            for name in sorted(set(old) | set(value)):
                if old.get(name) != value.get(name):
                    differences.append(
                        f"network kwarg {name} {_short(old.get(name))} -> {_short(value.get(name))}"
                    )
        elif old != value:
            differences.append(f"{key} {_short(old)} -> {_short(value)}")
    return differences


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def choose_resume(
    run_dir: str | Path, identity: Mapping[str, Any], args: argparse.Namespace
) -> Path | None:
    """The checkpoint to resume from: ``--resume``, else ``<run_dir>/latest.pth`` when the run
    directory holds the same experiment, else ``None`` (a fresh run).

    Raises :class:`RunDirConflict` when ``run_dir`` holds another experiment (unless
    ``--resume`` names a file in it: continuing that run with changed arguments is an explicit
    choice), or a run while ``--no-auto-resume`` is given.
    """
    run_dir = Path(run_dir)
    resume = Path(args.resume) if getattr(args, "resume", None) else None
    saved = saved_identity(run_dir)
    if saved is None:
        return resume
    recorded, source = saved
    differences = experiment_differences(recorded, identity)
    latest = run_dir / ckpt.LATEST
    if differences and not (resume is not None and _inside(resume, run_dir)):
        if latest.is_file():
            choices = f"or --resume {latest} to continue that run with these arguments"
        else:
            choices = "or remove that directory (it finished no epoch)"
        raise RunDirConflict(
            f"{run_dir} holds another experiment ({source.name}: {'; '.join(differences)}): "
            f"give another --output-dir (none: a new {RUNS_ROOT}/<family>/<network>-<time>), "
            f"{choices}"
        )
    if differences:
        log.warning("resuming %s with changed arguments: %s", resume, "; ".join(differences))
    if resume is not None:
        return resume
    if latest.is_file() and not getattr(args, "auto_resume", True):
        raise RunDirConflict(
            f"{run_dir} already holds a run (latest.pth after epoch "
            f"{ckpt.read_epoch(latest)}) and --no-auto-resume was given: give another "
            "--output-dir, or drop --no-auto-resume to continue it"
        )
    return latest if latest.is_file() else None


def _inside(path: Path, directory: Path) -> bool:
    try:
        return path.resolve().parent == directory.resolve()
    except OSError:
        return False


# ----------------------------------------------------------------------------- reconcile
def reconcile(
    run_dir: str | Path,
    *,
    epoch: int,
    best_epoch: int | None,
    source: Path | None,
    epoch_due: Callable[[int], bool],
    keep: int = ckpt.KEEP_CHECKPOINTS,
) -> list[str]:
    """Make ``run_dir`` agree with the state a run starts from (``epoch`` finished epochs, 0 for
    a fresh run; ``best_epoch`` the epoch best.pth must hold; ``source`` the checkpoint resumed).

    A kill between an epoch's first file and its ``latest.pth`` (the commit) leaves files of an
    uncommitted epoch: temporary files are removed, epoch files past ``epoch`` are removed,
    best.pth is restored (from the previous best, an epoch file or ``source``) or removed when
    no file holds the right epoch, a missing due epoch file is rewritten from ``source``, and
    ``metrics.csv`` loses its rows past ``epoch``. Returns what was done, one line each.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    done = [f"removed {p.name}" for p in _remove_temporary_files(run_dir)]
    for number, path in ckpt.epoch_files(run_dir).items():
        if number > epoch:
            path.unlink()
            done.append(f"removed {path.name} (epoch {number} was never committed)")
    done += _reconcile_best(run_dir, best_epoch, epoch, source)
    epoch_file = run_dir / ckpt.epoch_filename(epoch)
    if (
        epoch > 0
        and keep != 0
        and epoch_due(epoch)
        and not epoch_file.exists()
        and source is not None
        and source.is_file()
        and ckpt.read_epoch(source) == epoch
    ):
        ckpt.link_or_write(None, epoch_file, source)
        done.append(f"rewrote {epoch_file.name} from {source}")
    (run_dir / ckpt.PREVIOUS_BEST).unlink(missing_ok=True)
    dropped = truncate_metrics(run_dir, epoch)
    if dropped:
        done.append(f"dropped {dropped} metrics.csv row(s) after epoch {epoch}")
    for line in done:
        log.info("%s: %s", run_dir, line)
    return done


def _remove_temporary_files(run_dir: Path) -> list[Path]:
    """``*.tmp`` files of interrupted atomic writes (ours are never left behind otherwise)."""
    removed = []
    for path in run_dir.glob("*.tmp"):
        if path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _reconcile_best(
    run_dir: Path, best_epoch: int | None, epoch: int, source: Path | None
) -> list[str]:
    best = run_dir / ckpt.BEST
    held = ckpt.read_epoch(best) if best.exists() else None
    if best_epoch is None:
        if best.exists():
            best.unlink()
            return [f"removed best.pth (epoch {held}): no committed epoch was the best"]
        return []
    if held == best_epoch:
        return []
    candidates = [run_dir / ckpt.PREVIOUS_BEST, run_dir / ckpt.epoch_filename(best_epoch)]
    if best_epoch == epoch and source is not None:
        candidates.append(source)
    for candidate in candidates:
        if candidate.is_file() and ckpt.read_epoch(candidate) == best_epoch:
            ckpt.link_or_write(None, best, candidate)
            return [
                f"best.pth restored to epoch {best_epoch} (it held {held}) from {candidate.name}"
            ]
    if best.exists():
        best.unlink()
        log.warning(
            "%s: best.pth held epoch %s, but the run's best is epoch %s and no file holds it: "
            "removed (the next improvement writes it)",
            run_dir,
            held,
            best_epoch,
        )
        return [f"removed best.pth (epoch {held}, the best is epoch {best_epoch})"]
    return []
