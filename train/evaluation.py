"""Evaluation and prediction on the engine's loaders: clip- and video-level scores.

Used by ``train.engine.fit`` every epoch and by the family scripts' ``evaluate`` and
``inference`` commands (``train.engine`` re-exports :func:`evaluate` and :func:`predict`).
"""

from __future__ import annotations

import argparse
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

__all__ = ["evaluate", "evaluate_loader", "predict"]

log = logging.getLogger(__name__)


@torch.no_grad()
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
    """Scores of every clip, gathered over processes; clip- and video-level metrics."""
    from tqdm import tqdm

    criterion = nn.CrossEntropyLoss(reduction="none")
    accumulator = ScoreAccumulator(num_classes)
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
        accumulator.update(logits, targets, sample_ids, loss=losses)
    accumulator.gather()
    return accumulator.result()


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

    With ``output_dir`` (rank 0): ``confusion.csv``/``confusion.png`` and ``evaluation.txt`` (the
    TAO printout, also logged). Each process evaluates a disjoint shard under torchrun.
    """
    info = init_distributed(args.device)
    model = model.to(info.device)
    if args.channels_last:
        to_channels_last(model)
    loader = build_eval_loader(dataset, args, info, collate_fn=collate_fn)
    result = evaluate_loader(
        model,
        loader,
        info=info,
        precision=Precision.from_args(args, info.device),
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
    return result


@torch.no_grad()
def predict(
    model: nn.Module,
    dataset: Dataset,
    args: argparse.Namespace,
    *,
    collate_fn: Callable | None = None,
) -> dict[int, np.ndarray]:
    """Mean softmax probabilities (K,) per ``sample_id`` over all its clips (targets ignored)."""
    from tqdm import tqdm

    info = init_distributed(args.device)
    model = model.to(info.device).eval()
    precision = Precision.from_args(args, info.device)
    loader = build_eval_loader(dataset, args, info, collate_fn=collate_fn)
    accumulator: ScoreAccumulator | None = None
    for inputs, _targets, sample_ids in tqdm(loader, desc="predict", disable=info.rank != 0):
        inputs = move_to_device(inputs, info.device, channels_last=args.channels_last)
        with precision.autocast():
            logits = forward_model(model, inputs).float()
        accumulator = accumulator or ScoreAccumulator(logits.shape[1])
        accumulator.update(logits, torch.zeros(len(sample_ids), dtype=torch.long), sample_ids)
    if accumulator is None:
        return {}
    accumulator.gather()
    ids, probs = accumulator.video_scores()
    return {int(i): p for i, p in zip(ids, probs)}
