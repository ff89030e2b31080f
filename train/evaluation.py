"""Evaluation and prediction on the engine's loaders: clip- and video-level scores.

Used by ``train.engine.fit`` every epoch and by the family scripts' ``evaluate`` and
``inference`` commands (``train.engine`` re-exports :func:`evaluate` and :func:`predict`).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from train.distributed import DistInfo, init_distributed
from train.loaders import build_eval_loader
from train.metrics import EvalResult, ScoreAccumulator, save_confusion, tao_report
from train.precision import Precision, forward_model, move_to_device, to_channels_last

__all__ = ["evaluate", "evaluate_loader", "predict", "write_metrics_json"]

log = logging.getLogger(__name__)


@torch.no_grad()
def _score_batches(
    model: nn.Module,
    loader: DataLoader,
    *,
    info: DistInfo,
    precision: Precision,
    channels_last: bool,
    num_classes: int | None,
    desc: str,
) -> ScoreAccumulator | None:
    """Scores of every clip, gathered over processes; per-clip losses where targets are known.
    ``num_classes=None`` takes it from the logits (None comes back for an empty loader)."""
    from tqdm import tqdm

    criterion = nn.CrossEntropyLoss(reduction="none")
    accumulator = None if num_classes is None else ScoreAccumulator(num_classes)
    model.eval()
    for inputs, targets, sample_ids in tqdm(
        loader, desc=desc, leave=False, disable=info.rank != 0, dynamic_ncols=True
    ):
        inputs = move_to_device(inputs, info.device, channels_last=channels_last)
        with precision.autocast():
            logits = forward_model(model, inputs).float()
        targets = torch.as_tensor(targets)
        known = bool((targets >= 0).all())
        losses = criterion(logits, targets.to(logits.device)) if known else None
        accumulator = accumulator or ScoreAccumulator(logits.shape[1])
        accumulator.update(logits, targets, sample_ids, loss=losses)
    if accumulator is not None:
        accumulator.gather()
    return accumulator


def evaluate_loader(
    model: nn.Module,
    loader: DataLoader,
    *,
    info: DistInfo,
    precision: Precision,
    channels_last: bool,
    num_classes: int,
    desc: str,
) -> EvalResult:
    """Clip- and video-level metrics of every clip of ``loader``, gathered over processes."""
    accumulator = _score_batches(
        model, loader, info=info, precision=precision, channels_last=channels_last,
        num_classes=num_classes, desc=desc,
    )  # fmt: skip
    return accumulator.result()


def _prepare(
    model: nn.Module, dataset: Dataset, args: argparse.Namespace, collate_fn: Callable | None
) -> tuple[nn.Module, DistInfo, DataLoader, Precision]:
    """The model on its device (channels-last if asked) and an in-order sharded loader."""
    info = init_distributed(args.device)
    model = model.to(info.device)
    if args.channels_last:
        to_channels_last(model)
    loader = build_eval_loader(dataset, args, info, collate_fn=collate_fn)
    return model, info, loader, Precision.from_args(args, info.device)


def evaluate(
    model: nn.Module,
    dataset: Dataset,
    args: argparse.Namespace,
    *,
    class_names: Sequence[str],
    output_dir: str | Path | None = None,
    collate_fn: Callable | None = None,
) -> EvalResult:
    """Clip- and video-level evaluation (scores averaged per ``sample_id`` across batches).

    With ``output_dir`` (rank 0): ``metrics.json`` (``EvalResult.as_dict``),
    ``confusion.csv``/``confusion.png`` and ``evaluation.txt`` (the TAO printout, also logged).
    Each process evaluates a disjoint shard under torchrun.
    """
    model, info, loader, precision = _prepare(model, dataset, args, collate_fn)
    result = evaluate_loader(
        model,
        loader,
        info=info,
        precision=precision,
        channels_last=args.channels_last,
        num_classes=len(class_names),
        desc="evaluate",
    )
    if info.rank == 0:
        report = tao_report(result, list(class_names))
        log.info("evaluation\n%s", report)
        if output_dir is not None:
            out = Path(output_dir)
            save_confusion(result, list(class_names), out)
            (out / "evaluation.txt").write_text(report + "\n", encoding="utf-8")
            write_metrics_json(result, out / "metrics.json")
    return result


def write_metrics_json(result: EvalResult, path: Path, **extra: object) -> None:
    """``result.as_dict()`` (entries that are None left out) and ``extra`` as JSON."""
    scores = {key: float(value) for key, value in result.as_dict().items() if value is not None}
    path.write_text(json.dumps({**scores, **extra}, indent=2) + "\n", encoding="utf-8")


def predict(
    model: nn.Module,
    dataset: Dataset,
    args: argparse.Namespace,
    *,
    collate_fn: Callable | None = None,
) -> dict[int, np.ndarray]:
    """Mean softmax probabilities (K,) per ``sample_id`` over all its clips (targets ignored)."""
    model, info, loader, precision = _prepare(model, dataset, args, collate_fn)
    accumulator = _score_batches(
        model, loader, info=info, precision=precision, channels_last=args.channels_last,
        num_classes=None, desc="predict",
    )  # fmt: skip
    if accumulator is None:
        return {}
    ids, probs = accumulator.video_scores()
    return {int(i): p for i, p in zip(ids, probs)}
