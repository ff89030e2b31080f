"""Self-describing checkpoints: atomic writes, exact resume, rebuilding a model from its file.

A checkpoint is a dict with the keys of ``CHECKPOINT_KEYS``; everything in it is a tensor or a
plain Python value, so it loads with ``torch.load(..., weights_only=True)``.

The files of one finished epoch are written by :func:`save_epoch_files` in a fixed order:
``model_epoch_XXX.pth`` (when due), ``best.pth`` (when improved), then ``latest.pth``, each
atomically. ``latest.pth`` is the commit point: a run killed before it resumes from the previous
epoch, and ``train.rundir.reconcile`` puts the other files back in line with it.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import random
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from network import build_model
from network.foreign import foreign_model
from safeio.atomic import atomic_write_bytes
from safeio.safe_pickle import torch_load
from train.config import plain_args
from train.validation import FlagValueError

__all__ = [
    "BEST",
    "CHECKPOINT_KEYS",
    "KEEP_CHECKPOINTS",
    "LATEST",
    "PREVIOUS_BEST",
    "atomic_save",
    "capture_rng",
    "epoch_filename",
    "epoch_files",
    "keep_count",
    "link_or_write",
    "load_checkpoint",
    "load_model",
    "make_checkpoint",
    "prune_epoch_files",
    "read_epoch",
    "restore_rng",
    "restore_training_state",
    "save_epoch_files",
    "unwrap_model",
]

CHECKPOINT_KEYS = (
    "model",
    "optimizer",
    "scheduler",
    "scaler",
    "epoch",
    "step",
    "rng",
    "args",
    "network",
    "network_kwargs",
    "family",
    "class_names",
    "best_metric",
)
LATEST = "latest.pth"
BEST = "best.pth"
# The best.pth being replaced, kept (as a hard link) until latest.pth commits the new one.
PREVIOUS_BEST = ".best.pth.previous"
# model_epoch_XXX.pth files kept besides latest.pth and best.pth (--keep-checkpoints).
KEEP_CHECKPOINTS = 3
_EPOCH_FILE = re.compile(r"^model_epoch_(\d+)\.pth$")

log = logging.getLogger(__name__)


def epoch_filename(epoch: int) -> str:
    """``model_epoch_XXX.pth`` for the number of finished epochs."""
    return f"model_epoch_{epoch:03d}.pth"


def keep_count(text: Any) -> int:
    """``--keep-checkpoints``: an integer >= 0, or -1 for every epoch file."""
    try:
        value = int(str(text).strip())
    except ValueError:
        value = -2
    if value < -1:
        raise FlagValueError(f"expected an integer >= 0 (or -1: keep all), got {text!r}")
    return value


def epoch_files(run_dir: str | Path) -> dict[int, Path]:
    """The ``model_epoch_XXX.pth`` files of ``run_dir`` by epoch."""
    run_dir = Path(run_dir)
    found = {}
    for path in run_dir.glob("model_epoch_*.pth"):
        match = _EPOCH_FILE.match(path.name)
        if match:
            found[int(match.group(1))] = path
    return dict(sorted(found.items()))


def link_or_write(data: bytes | memoryview | None, path: Path, source: Path | None = None) -> Path:
    """Atomically make ``path`` hold ``data``: a hard link to ``source`` (a file already holding
    exactly ``data``) where the file system allows, else a fresh atomic write (of ``source``'s
    bytes when ``data`` is None).

    A link costs no disk and no write time; every writer in ActRec replaces files (never edits
    them in place), so linked names never change each other.
    """
    if source is not None:
        temp = path.with_name(f".{path.name}.{os.getpid()}.link.tmp")
        try:
            temp.unlink(missing_ok=True)
            os.link(source, temp)
            os.replace(temp, path)
            return path
        except OSError:
            temp.unlink(missing_ok=True)
    if data is None:
        if source is None:
            raise ValueError("link_or_write needs data or a source file")
        data = source.read_bytes()
    return atomic_write_bytes(path, data)


def read_epoch(path: str | Path) -> int | None:
    """The ``epoch`` stored in a checkpoint, read through a memory map (cheap for big files);
    ``None`` when the file is missing or unreadable."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return int(state["epoch"])
    except Exception:  # a missing, truncated or foreign file: the caller rewrites or removes it
        return None


def save_epoch_files(
    state: Mapping[str, Any],
    run_dir: str | Path,
    *,
    epoch_file: bool,
    best: bool,
    keep: int = KEEP_CHECKPOINTS,
) -> list[Path]:
    """Write the files of a finished epoch (``state["epoch"]``); ``latest.pth`` last.

    Order: ``model_epoch_XXX.pth`` (``epoch_file``), ``best.pth`` (``best``; the previous one
    stays linked as ``PREVIOUS_BEST`` until the commit), ``latest.pth`` (the commit point), then
    the epoch files beyond the newest ``keep`` (-1: none) are deleted. The state is serialised
    once; the second and third names are hard links to the first where possible.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(dict(state), buffer)
    data, epoch = buffer.getbuffer(), int(state["epoch"])
    written: list[Path] = []
    if epoch_file and keep != 0:
        written.append(atomic_write_bytes(run_dir / epoch_filename(epoch), data))
    if best:
        _keep_previous_best(run_dir)
        written.append(link_or_write(data, run_dir / BEST, written[0] if written else None))
    written.append(link_or_write(data, run_dir / LATEST, written[0] if written else None))
    (run_dir / PREVIOUS_BEST).unlink(missing_ok=True)
    prune_epoch_files(run_dir, keep, up_to=epoch)
    return written


def _keep_previous_best(run_dir: Path) -> None:
    """Keep the current best.pth as ``PREVIOUS_BEST`` (a hard link; where links are not
    possible, the file is moved and best.pth is briefly absent: reconcile restores it)."""
    best, previous = run_dir / BEST, run_dir / PREVIOUS_BEST
    if not best.is_file():
        return
    previous.unlink(missing_ok=True)
    try:
        os.link(best, previous)
    except OSError:
        os.replace(best, previous)


def prune_epoch_files(run_dir: str | Path, keep: int, *, up_to: int) -> list[Path]:
    """Delete the ``model_epoch_XXX.pth`` files of epochs <= ``up_to`` beyond the newest
    ``keep`` (-1 keeps all); returns the deleted paths."""
    if keep < 0:
        return []
    committed = [path for epoch, path in epoch_files(run_dir).items() if epoch <= up_to]
    doomed = committed[: max(len(committed) - keep, 0)]
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside DDP and/or ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def capture_rng() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) RNG states as tensors and plain values."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": list(random.getstate()),
        "numpy": [
            kind,
            torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            position,
            has_gauss,
            cached,
        ],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def make_checkpoint(
    model: nn.Module,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    scaler: Any = None,
    epoch: int = 0,
    step: int = 0,
    args: argparse.Namespace | Mapping[str, Any] | None = None,
    family: str | None = None,
    class_names: Sequence[str] | None = None,
    best_metric: float | None = None,
) -> dict[str, Any]:
    """The checkpoint dict (see ``CHECKPOINT_KEYS``); ``epoch`` counts finished epochs."""
    plain = unwrap_model(model)
    return {
        "model": plain.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "epoch": int(epoch),
        "step": int(step),
        "rng": capture_rng(),
        "args": plain_args(args) if args is not None else {},
        "network": getattr(plain, "network_name", type(plain).__name__),
        "network_kwargs": dict(getattr(plain, "network_kwargs", {})),
        "family": family or getattr(plain, "network_family", None),
        "class_names": list(class_names) if class_names is not None else None,
        "best_metric": best_metric,
    }


def atomic_save(state: Mapping[str, Any], *paths: str | Path) -> list[Path]:
    """Write ``state`` to each path so that a path is always the old file or the complete new one.

    The state is serialised once; for each path the bytes go to a temporary file in the same
    directory, are flushed to disk (fsync), then replace the path in one ``os.replace``.
    """
    buffer = io.BytesIO()
    torch.save(dict(state), buffer)
    return [atomic_write_bytes(path, buffer.getbuffer()) for path in paths]


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", *, mmap: bool = False
) -> dict[str, Any]:
    """Load a checkpoint weights-only; a missing or unreadable file raises one clear error.

    ``mmap`` maps the tensors instead of reading them (for a look at the plain entries)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    state = torch_load(path, map_location=map_location, mmap=mmap, what="checkpoint")
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"{path}: not an ActRec checkpoint (no 'model' entry)")
    return state


def restore_training_state(
    state: Mapping[str, Any],
    model: nn.Module,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    scaler: Any = None,
    restore_random: bool = True,
) -> None:
    """Load model, optimizer, scheduler, scaler and RNG states from a checkpoint dict (strict)."""
    unwrap_model(model).load_state_dict(state["model"])
    if optimizer is not None and state.get("optimizer") is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler") is not None:
        scaler.load_state_dict(state["scaler"])
    if restore_random and state.get("rng"):
        restore_rng(state["rng"])


def _mismatch(error: RuntimeError) -> str:
    """The first problem of a ``load_state_dict`` error (its lines after the header), counted."""
    problems = [line.strip() for line in str(error).splitlines()[1:] if line.strip()]
    if not problems:
        return str(error).strip() or "state_dict mismatch"
    more = f" and {len(problems) - 1} more" if len(problems) > 1 else ""
    return problems[0] + more


def load_model(
    path: str | Path,
    family: str | None = None,
    map_location: str | torch.device = "cpu",
    network: str | None = None,
) -> nn.Module:
    """Rebuild the network stored in ``path`` from its registry name and kwargs, with weights.

    ``family`` (``"video"``, ``"skeleton"``, ``"gesture"``) guards against a checkpoint of another
    family. The model comes back in eval mode with ``class_names`` and ``train_args`` (the
    training command's arguments, a dict) set from the checkpoint, which is read once.
    A TAO-trained checkpoint is rebuilt by ``network.foreign.foreign_model`` (``network``:
    ``--network``, else read from the checkpoint).
    """
    if (foreign := foreign_model(path, family=family, network=network)) is not None:
        return foreign.to(map_location)
    state = load_checkpoint(path, map_location)
    stored = state.get("family")
    if family is not None and stored is not None and stored != family:
        raise ValueError(
            f"{path}: checkpoint of family {stored!r} ({state.get('network')}), "
            f"this command needs a {family!r} model"
        )
    # Files named in the kwargs (stream or ImageNet initialisations) were read at training time
    # and their tensors are in the checkpoint; they need not exist where the model is rebuilt.
    kwargs = {
        key: value
        for key, value in dict(state.get("network_kwargs") or {}).items()
        if "pretrained" not in key
    }
    try:
        model = build_model(state["network"], **kwargs)
    except KeyError as error:
        raise ValueError(f"{path}: {error.args[0]}") from None
    except (TypeError, ValueError) as error:  # kwargs the builder does not take, or bad values
        raise ValueError(
            f"{path}: network kwargs {kwargs} do not build {state['network']!r} "
            f"({str(error).splitlines()[0]})"
        ) from None
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:
        raise ValueError(
            f"{path}: the weights do not fit {state['network']!r} ({_mismatch(error)})"
        ) from None
    model.class_names = state.get("class_names")
    model.train_args = dict(state.get("args") or {})
    return model.eval()
