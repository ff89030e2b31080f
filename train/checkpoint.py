"""Self-describing checkpoints: atomic writes, exact resume, rebuilding a model from its file.

A checkpoint is a dict with the keys of ``CHECKPOINT_KEYS``; everything in it is a tensor or a
plain Python value, so it loads with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import argparse
import io
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from data.atomic import atomic_write_bytes
from train.config import plain_args

__all__ = [
    "BEST",
    "CHECKPOINT_KEYS",
    "LATEST",
    "atomic_save",
    "capture_rng",
    "epoch_filename",
    "find_resume_path",
    "load_checkpoint",
    "load_model",
    "make_checkpoint",
    "restore_rng",
    "restore_training_state",
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


def epoch_filename(epoch: int) -> str:
    """``model_epoch_XXX.pth`` for the number of finished epochs."""
    return f"model_epoch_{epoch:03d}.pth"


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


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint weights-only; a missing or unreadable file raises one clear error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"{path}: not a readable checkpoint ({detail})") from None
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"{path}: not an ActRec checkpoint (no 'model' entry)")
    return state


def find_resume_path(output_dir: str | Path, resume: str | None, auto_resume: bool) -> Path | None:
    """``--resume PATH`` if given, else ``<output_dir>/latest.pth`` when auto-resume finds one."""
    if resume:
        return Path(resume)
    latest = Path(output_dir) / LATEST
    return latest if auto_resume and latest.is_file() else None


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


def load_model(
    path: str | Path, family: str | None = None, map_location: str | torch.device = "cpu"
) -> nn.Module:
    """Rebuild the network stored in ``path`` from its registry name and kwargs, with weights.

    ``family`` (``"video"``, ``"skeleton"``, ``"gesture"``) guards against a checkpoint of another
    family. The model comes back in eval mode with ``class_names`` and ``train_args`` (the
    training command's arguments, a dict) set from the checkpoint, which is read once.
    """
    from network import build_model

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
    model.load_state_dict(state["model"])
    model.class_names = state.get("class_names")
    model.train_args = dict(state.get("args") or {})
    return model.eval()
