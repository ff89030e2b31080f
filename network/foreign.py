"""Checkpoints trained by other toolboxes, rebuilt as ActRec models for evaluate/inference/export.

Today: TAO ActionRecognitionNet (video) and TAO PoseClassificationNet (ST-GCN, skeleton; also the
yysijie/mmskeleton state dicts it ports), both recognised by their tensors (``network.tao``). An
ActRec checkpoint is not foreign (``foreign_model`` returns ``None`` and ``train.checkpoint`` reads
it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from network.registry import build_model
from network.tao import (
    is_tao_checkpoint,
    is_tao_pose_checkpoint,
    tao_class_names,
    tao_network,
    tao_pose_network,
    tao_spec,
    tao_train_args,
)
from network.weights import (
    ENCRYPTED_SUFFIXES,
    encrypted_model_error,
    load_pretrained,
    read_checkpoint,
)

__all__ = ["foreign_model"]

log = logging.getLogger(__name__)

Recogniser = Callable[[dict[str, Any]], bool]
Reader = Callable[..., tuple[str, dict[str, Any], dict[str, Any]]]
# One row per foreign kind: (name, family, recognised by its tensors, network reader, train args)
KINDS: tuple[tuple[str, str, Recogniser, Reader, Callable[[Any], dict[str, Any]]], ...] = (
    ("TAO ActionRecognitionNet", "video", is_tao_checkpoint, tao_network, tao_train_args),
    # ST-GCN: TAO's pose_classification checkpoints (A stored) and the state dicts it ports
    ("TAO PoseClassificationNet (ST-GCN)", "skeleton", is_tao_pose_checkpoint, tao_pose_network,
     lambda raw: {}),
)  # fmt: skip


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
    for kind, kind_family, recognised, read_network, train_args in KINDS:
        if recognised(checkpoint.tensors):
            if family not in (None, kind_family):
                raise ValueError(
                    f"{path}: a {kind} checkpoint; this command needs a {family!r} model"
                )
            name, kwargs, args = read_network(raw, checkpoint.tensors, str(path), network)
            return _rebuilt(path, raw, kind, name, kwargs, {**args, **train_args(raw)})
    return None


def _rebuilt(
    path: str | Path, raw: dict, kind: str, name: str, kwargs: dict[str, Any], args: dict
) -> nn.Module:
    """``name(**kwargs)`` with the file's weights (every tensor must fit), class names, args."""
    model = build_model(name, **kwargs)
    load_pretrained(model, path, inflate=False, log=False)  # refuses anything incomplete
    model.class_names = tao_class_names(raw, kwargs["num_classes"])
    model.train_args = args
    log.info("%s: %s checkpoint loaded as %s %s", path, kind, name, kwargs)
    if not tao_spec(raw)[1].get("label_map"):
        log.warning("%s: no label_map stored; classes are named class_0, class_1, …", path)
    return model.eval()
