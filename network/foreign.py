"""Checkpoints trained by other toolboxes, rebuilt as ActRec models for evaluate/inference/export.

Today: TAO ActionRecognitionNet (``network.tao`` recognises it). An ActRec checkpoint is not
foreign (``foreign_model`` returns ``None`` and ``train.checkpoint`` reads it).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from network.registry import build_model
from network.tao import is_tao_checkpoint, tao_class_names, tao_network, tao_spec, tao_train_args
from network.weights import (
    ENCRYPTED_SUFFIXES,
    encrypted_model_error,
    load_pretrained,
    read_checkpoint,
)

__all__ = ["foreign_model"]

log = logging.getLogger(__name__)


def foreign_model(
    path: str | Path, *, family: str | None = None, network: str | None = None
) -> nn.Module | None:
    """A TAO-trained PyTorch checkpoint rebuilt as an ActRec model (eval mode, ``class_names``
    and ``train_args`` set), or ``None`` when ``path`` is not one (an ActRec checkpoint)."""
    try:
        raw = torch.load(Path(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not a zip checkpoint: load_checkpoint says what it is
        if Path(path).suffix.lower() in ENCRYPTED_SUFFIXES:
            raise encrypted_model_error(path) from None
        return None
    if not isinstance(raw, dict) or "network" in raw:
        return None
    if raw.get("state_dict_encrypted"):
        raise encrypted_model_error(path)
    checkpoint = read_checkpoint(raw)
    if not is_tao_checkpoint(checkpoint.tensors):
        return None
    if family not in (None, "video"):
        raise ValueError(
            f"{path}: a TAO ActionRecognitionNet checkpoint; this command needs a {family!r} model"
        )
    name, kwargs, args = tao_network(raw, checkpoint.tensors, str(path), network)
    model = build_model(name, **kwargs)
    load_pretrained(model, path, inflate=False, log=False)  # refuses anything incomplete
    model.class_names = tao_class_names(raw, kwargs["num_classes"])
    model.train_args = {**args, **tao_train_args(raw)}
    log.info("%s: TAO ActionRecognitionNet checkpoint loaded as %s %s", path, name, kwargs)
    if not tao_spec(raw)[1].get("label_map"):
        log.warning("%s: no label_map stored; classes are named class_0, class_1, …", path)
    return model.eval()
