"""Evaluation and prediction on the engine's loaders: clip- and video-level scores.

Used by ``train.engine.fit`` every epoch and by the family scripts' ``evaluate`` and
``inference`` commands (``train.engine`` re-exports :func:`evaluate` and :func:`predict`).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from safeio.excluded import ExcludedItem
from safeio.text import printable
from train.compile import compile_model
from train.distributed import DistInfo, init_distributed
from train.loaders import build_eval_loader
from train.metrics import (
    EvalResult,
    ScoreAccumulator,
    format_worst,
    save_confusion,
    save_per_class,
    tao_report,
    worst_classes,
)
from train.precision import Precision, forward_model, move_to_device, to_channels_last

__all__ = [
    "evaluate",
    "evaluate_loader",
    "predict",
    "write_evaluated_list",
    "write_metrics_json",
    "write_predictions",
]

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
    average: str = "prob",
    strict: bool = False,
) -> ScoreAccumulator | None:
    """Scores of every clip, gathered over processes; per-clip losses where targets are known.

    ``loader`` is an evaluation loader (``build_eval_loader``): batches are ``(batch or None,
    excluded items)``; excluded items are counted (``strict``: the first one is an error).
    ``num_classes=None`` takes it from the logits (None comes back when nothing was scored)."""
    from tqdm import tqdm

    criterion = nn.CrossEntropyLoss(reduction="none")
    accumulator = None if num_classes is None else ScoreAccumulator(num_classes, average=average)
    excluded: list[ExcludedItem] = []
    model.eval()
    for batch, bad in tqdm(
        loader, desc=desc, leave=False, disable=info.rank != 0, dynamic_ncols=True
    ):
        excluded += _check_excluded(bad, strict)
        if strict:
            _check_decode_errors(loader.dataset)
        if batch is None:
            continue
        inputs, targets, sample_ids = batch
        inputs = move_to_device(inputs, info.device, channels_last=channels_last)
        with precision.autocast():
            logits = forward_model(model, inputs).float()
        targets = torch.as_tensor(targets)
        known = bool((targets >= 0).all())
        losses = criterion(logits, targets.to(logits.device)) if known else None
        accumulator = accumulator or ScoreAccumulator(logits.shape[1], average=average)
        accumulator.update(logits, targets, sample_ids, loss=losses)
    if accumulator is None and excluded and num_classes is None:
        log.warning("no item could be read: %d excluded", len(excluded))
    if accumulator is not None:
        for item in excluded:
            accumulator.exclude(item.sample_id, item.name, item.reason)
        accumulator.gather()
    return accumulator


def decode_errors_of(dataset: Dataset) -> dict[int, int]:
    """``{sample id: damaged packets}`` a video dataset met so far (``{}`` for other data)."""
    return dict(getattr(dataset, "decode_errors", None) or {})


def _check_decode_errors(dataset: Dataset) -> None:
    """``--strict``: the first video with damaged packets is an error naming it and the count."""
    for video, count in decode_errors_of(dataset).items():
        records = getattr(dataset, "records", None)
        name = printable(records[video].path) if records else f"sample {video}"
        raise ValueError(
            f"{name}: {count} damaged packet(s) could not be decoded (--strict: a decode error "
            "is an error)"
        )


def _add_dropped(accumulator: ScoreAccumulator, dropped: Sequence[str], first_id: int) -> None:
    """Split entries whose video was not found count as listed and excluded."""
    for offset, name in enumerate(dropped):
        accumulator.exclude(first_id + offset, name, f"{name}: listed, but not found")


def _check_excluded(items: list[ExcludedItem], strict: bool) -> list[ExcludedItem]:
    """``items``, or with ``strict`` an error naming the first one."""
    if strict and items:
        item = items[0]
        reason = item.reason if item.reason.startswith(item.name) else f"{item.name}: {item.reason}"
        raise ValueError(f"{reason} (--strict: an unreadable item is an error)")
    return items


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
    model = compile_model(model, getattr(args, "compile", False))
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
    sample_names: Sequence[str] | None = None,
    dropped: Sequence[str] = (),
) -> EvalResult:
    """Clip- and video-level evaluation (scores averaged per ``sample_id`` across batches, as
    ``args.average``: ``prob`` softmax, ``score`` logits; default ``prob``).

    Unreadable items are excluded and counted, never substituted (``args.strict``: an error).
    With ``output_dir`` (rank 0): ``metrics.json`` (``EvalResult.as_dict`` plus the excluded
    items), ``confusion.csv``/``confusion.png``, ``per_class.csv``/``per_class.png`` (support,
    precision, recall, F1, top-5 recall per class; the five worst classes are logged),
    ``evaluation.txt`` (the TAO printout, also
    logged), ``predictions.csv`` (per sample: name, label, top-5 classes and scores) and
    ``evaluated.csv`` (every listed sample, whether it was scored, and its video's damaged
    packets). ``sample_names[i]`` names sample id ``i`` in those files (default: the id).
    ``dropped`` names split entries whose video was not found: listed and excluded (``strict``:
    an error). Each process evaluates a disjoint shard under torchrun.
    """
    strict = bool(getattr(args, "strict", False))
    if strict and dropped:
        raise ValueError(
            f"{printable(dropped[0])}: listed in the split, but not found ({len(dropped)} such "
            "entries; --strict: a missing video is an error)"
        )
    model, info, loader, precision = _prepare(model, dataset, args, collate_fn)
    accumulator = _score_batches(
        model, loader, info=info, precision=precision, channels_last=args.channels_last,
        num_classes=len(class_names), desc="evaluate", average=getattr(args, "average", "prob"),
        strict=strict,
    )  # fmt: skip
    if dropped:
        _add_dropped(
            accumulator, dropped, len(dataset) if sample_names is None else len(sample_names)
        )
        sample_names = None if sample_names is None else [*sample_names, *dropped]
    damaged = _gather_counts(decode_errors_of(dataset), info)
    result = accumulator.result()
    if info.rank == 0:
        report = tao_report(result, list(class_names))
        log.info("evaluation\n%s", report)
        log.info("%s", result.coverage())
        _warn_damaged(damaged, _namer(sample_names))
        log.info("%s", format_worst(worst_classes(result, list(class_names))))
        if output_dir is not None:
            out = Path(output_dir)
            save_confusion(result, list(class_names), out)
            save_per_class(result, list(class_names), out)
            (out / "evaluation.txt").write_text(report + "\n", encoding="utf-8")
            excluded = [{"name": name, "reason": reason} for name, reason in result.excluded]
            write_metrics_json(result, out / "metrics.json", excluded=excluded)
            names = _namer(sample_names)
            write_predictions(accumulator, class_names, names, out / "predictions.csv")
            write_evaluated_list(accumulator, sample_names, out / "evaluated.csv", damaged)
    return result


def _gather_counts(counts: dict[int, int], info: DistInfo) -> dict[int, int]:
    """Per-sample counts of every process (the largest where two saw one sample)."""
    if info.world_size <= 1:
        return counts
    import torch.distributed as dist

    gathered: list[dict[int, int]] = [{} for _ in range(info.world_size)]
    dist.all_gather_object(gathered, counts)
    merged: dict[int, int] = {}
    for part in gathered:
        for key, value in part.items():
            merged[key] = max(merged.get(key, 0), value)
    return merged


def _warn_damaged(damaged: dict[int, int], name_of: Callable[[int], str]) -> None:
    for sample_id, count in sorted(damaged.items()):
        log.warning("%s: %d damaged packet(s) could not be decoded; scored on the frames left",
                    printable(name_of(sample_id)), count)  # fmt: skip


def _namer(sample_names: Sequence[str] | None) -> Callable[[int], str]:
    return (lambda i: str(i)) if sample_names is None else (lambda i: str(sample_names[i]))


def write_predictions(
    accumulator: ScoreAccumulator,
    class_names: Sequence[str],
    name_of: Callable[[int], str],
    path: Path,
    top_k: int = 5,
) -> None:
    """``predictions.csv``: one row per scored sample: name, true label, predicted label, whether
    it is right, then the ``top_k`` classes and their averaged scores (best first)."""
    ids, scores = accumulator.video_scores()
    targets = accumulator.video_targets()
    k = min(top_k, len(class_names))
    header = ["video", "label", "predicted", "correct"]
    header += [f"{field}_{rank}" for rank in range(1, k + 1) for field in ("class", "score")]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for sample_id, row, target in zip(ids, scores, targets):
            order = np.argsort(-row, kind="stable")[:k]
            top = [value for c in order for value in (class_names[c], f"{row[c]:.6f}")]
            label, predicted = class_names[target], class_names[order[0]]
            writer.writerow(
                [name_of(int(sample_id)), label, predicted, int(target == order[0]), *top]
            )


def write_evaluated_list(
    accumulator: ScoreAccumulator,
    sample_names: Sequence[str] | None,
    path: Path,
    decode_errors: dict[int, int] | None = None,
) -> None:
    """``evaluated.csv``: every listed sample (``sample_names``, else the ids seen) with
    ``scored`` or ``excluded``, the reason and ``decode_errors`` (damaged packets of its video,
    0 when none): the exact list the metrics were computed on."""
    decode_errors = decode_errors or {}
    excluded = accumulator.excluded
    ids = (
        range(len(sample_names))
        if sample_names is not None
        else sorted({*map(int, accumulator.video_scores()[0]), *excluded})
    )
    name_of = _namer(sample_names)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sample_id", "video", "status", "reason", "decode_errors"])
        for sample_id in ids:
            reason = excluded.get(sample_id, (None, ""))[1]
            status = "excluded" if sample_id in excluded else "scored"
            errors = decode_errors.get(sample_id, 0)
            writer.writerow([sample_id, name_of(sample_id), status, reason, errors])


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
    """Averaged scores (K,) per ``sample_id`` over all its clips (targets ignored): the mean
    softmax (``args.average`` ``prob``, default) or mean logits (``score``). Unreadable samples
    are excluded (absent from the result, logged by name), never substituted; ``args.strict``
    makes them an error."""
    model, info, loader, precision = _prepare(model, dataset, args, collate_fn)
    accumulator = _score_batches(
        model, loader, info=info, precision=precision, channels_last=args.channels_last,
        num_classes=None, desc="predict", average=getattr(args, "average", "prob"),
        strict=bool(getattr(args, "strict", False)),
    )  # fmt: skip
    if accumulator is None:
        return {}
    for name, reason in accumulator.excluded.values():
        shown = reason if reason.startswith(name) else name
        log.warning("excluded (unreadable): %s", printable(shown))
    ids, probs = accumulator.video_scores()
    return {int(i): p for i, p in zip(ids, probs)}
