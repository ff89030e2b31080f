"""Late fusion of several checkpoints' scores: pyskl's multi-stream ensemble, MMAction2's
``report_accuracy.py --coefficients``, two-stream RGB + flow.

Each checkpoint scores its own view of the same samples (joint/bone/motion streams, RGB/flow
clips); per sample its clip scores are averaged (``--average prob``: softmax, as pyskl's
``average_clips='prob'``), and the fused score is ``Σ_i w_i · score_i`` (MMAction2
``get_weighted_score``). Samples are matched by ``sample_id``; a sample one checkpoint could not
score is left out of the fusion (counted and named).
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn
from torch.utils.data import Dataset

from train.evaluation import predict, write_metrics_json
from train.metrics import EvalResult, ScoreAccumulator, save_confusion, save_per_class, tao_report

__all__ = ["FusionInput", "check_fusion_weights", "evaluate_fusion", "fuse_scores", "fused_result"]

log = logging.getLogger(__name__)


@dataclass
class FusionInput:
    """One checkpoint of the fusion: its model, its dataset, ``targets`` by sample id."""

    name: str
    model: nn.Module
    dataset: Dataset
    targets: Mapping[int, int]
    collate_fn: Callable | None = None


def check_fusion_weights(
    checkpoints: Sequence[str], weights: Sequence[float] | None
) -> list[float]:
    """One finite weight per checkpoint (default all 1); a mismatch is a one-line error."""
    if weights is None:
        return [1.0] * len(checkpoints)
    if len(weights) != len(checkpoints):
        raise ValueError(
            f"--fusion-weights gives {len(weights)} weights for {len(checkpoints)} checkpoints"
        )
    if not all(math.isfinite(w) for w in weights):
        raise ValueError(f"--fusion-weights must be finite numbers, got {list(weights)}")
    return [float(w) for w in weights]


def fuse_scores(
    scores: Sequence[Mapping[int, np.ndarray]], weights: Sequence[float]
) -> tuple[dict[int, np.ndarray], list[int]]:
    """``({sample_id: Σ_i w_i · scores[i][id]}, ids left out)``: only ids every input scored."""
    if len(scores) != len(weights) or not scores:
        raise ValueError(f"{len(scores)} score sets for {len(weights)} weights")
    shared = set(scores[0]).intersection(*scores[1:])
    every = set().union(*scores)
    fused = {
        sample: sum(w * np.asarray(s[sample], np.float64) for w, s in zip(weights, scores))
        for sample in sorted(shared)
    }
    return fused, sorted(every - shared)


def fused_result(
    fused: Mapping[int, np.ndarray], targets: Mapping[int, int], num_classes: int
) -> EvalResult:
    """Accuracy of fused per-sample scores (each sample one clip: clip = video level)."""
    ids = sorted(fused)
    accumulator = ScoreAccumulator(num_classes, from_logits=False, average="score")
    accumulator.update(
        np.stack([fused[i] for i in ids]).astype(np.float32),
        [int(targets[i]) for i in ids],
        ids,
    )
    return accumulator.result()


def _check_classes(inputs: Sequence[FusionInput], class_names: Sequence[str]) -> None:
    for item in inputs:
        names = list(getattr(item.model, "class_names", None) or [])
        if names and names != list(class_names):
            raise ValueError(
                f"{item.name}: its classes {names[:3]}... differ from {inputs[0].name}'s; "
                "fused checkpoints must share the class list"
            )


def evaluate_fusion(
    inputs: Sequence[FusionInput],
    weights: Sequence[float],
    args: argparse.Namespace,
    *,
    class_names: Sequence[str],
    output_dir: str | Path | None = None,
) -> tuple[EvalResult, list[EvalResult]]:
    """(fused result, each input's own result). With ``output_dir``: ``metrics.json`` (fused,
    plus every input's top-1 and weight), ``evaluation.txt``, confusion and per-class files."""
    _check_classes(inputs, class_names)
    scores, singles = [], []
    for item in inputs:
        predicted = predict(item.model, item.dataset, args, collate_fn=item.collate_fn)
        scores.append(predicted)
        singles.append(fused_result(predicted, item.targets, len(class_names)))
        log.info("%s: top-1 %.2f%% on %d samples", item.name, 100 * singles[-1].video_top1,
                 singles[-1].num_videos)  # fmt: skip
    fused, left_out = fuse_scores(scores, weights)
    if left_out:
        log.warning("%d samples not scored by every checkpoint are left out of the fusion "
                    "(ids %s)", len(left_out), left_out[:5])  # fmt: skip
    result = fused_result(fused, inputs[0].targets, len(class_names))
    if output_dir is not None:
        _write(result, singles, inputs, weights, class_names, Path(output_dir))
    return result, singles


def _write(
    result: EvalResult,
    singles: Sequence[EvalResult],
    inputs: Sequence[FusionInput],
    weights: Sequence[float],
    class_names: Sequence[str],
    out: Path,
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    report = tao_report(result, list(class_names))
    (out / "evaluation.txt").write_text(report + "\n", encoding="utf-8")
    save_confusion(result, list(class_names), out)
    save_per_class(result, list(class_names), out)
    streams = [
        {"checkpoint": item.name, "weight": w, "top1": single.video_top1,
         "top5": single.video_top5, "num_samples": single.num_videos}
        for item, w, single in zip(inputs, weights, singles)
    ]  # fmt: skip
    write_metrics_json(result, out / "metrics.json", fusion=streams)
