"""Evaluation metrics: clip- and video-level accuracy, per-class numbers, confusion, printouts.

Scores of every clip are kept (small: clips × classes floats) so that video-level results average
the softmax scores of *all* clips/segments that share a ``sample_id``, whichever batch or process
they came from (TAO sums over the whole dataset or votes per batch instead, bug 30)::

    acc = ScoreAccumulator(num_classes)
    for inputs, targets, sample_ids in loader:
        acc.update(model(inputs), targets, sample_ids, loss=criterion_per_clip)
    acc.gather()  # no-op without torch.distributed
    result = acc.result()
    print(tao_report(result, class_names))

Items that could not be read are passed to ``acc.exclude(...)``: the clips of an excluded video
are never scored, and the result states its denominator (``num_videos`` scored of ``num_listed``).
``ScoreAccumulator(K, average="score")`` averages logits per video instead of softmax scores.

Under torch.distributed, shard evaluation with :class:`EvalShardSampler` (no padding, so no
duplicates). With a padding ``DistributedSampler`` pass the dataset indices as ``clip_ids`` to
``update``: ``gather`` keeps one copy of each clip id.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from train.distributed import is_distributed
from train.validation import printable

__all__ = [
    "EvalResult",
    "EvalShardSampler",
    "ScoreAccumulator",
    "format_worst",
    "per_class_report",
    "per_class_rows",
    "per_class_topk",
    "precision_recall_f1",
    "save_confusion",
    "save_per_class",
    "tao_report",
    "worst_classes",
]

TAO_RULE = "*" * 31
CLASS_NAME_WIDTH = 14
# What a video's clips average into: "prob" the softmax scores (TAO, PySlowFast), "score" the
# logits (MMAction2's average_clips="score").
AVERAGES = ("prob", "score")
_NAMES_SHOWN = 5


@dataclass(frozen=True)
class EvalResult:
    """Evaluation numbers; accuracies are fractions in [0, 1].

    per_class_accuracy: (K,) video-level recall per class, NaN for a class without videos.
    confusion: (K, K) int, rows = true class, columns = predicted class (video level).
    loss: mean loss per clip, NaN when no loss was given.
    num_videos: videos scored; excluded: ``(name, reason)`` of each video left out (unreadable);
    ``num_listed`` = scored + excluded, the denominator a reader needs.
    """

    clip_top1: float
    clip_top5: float
    video_top1: float
    video_top5: float
    per_class_accuracy: np.ndarray
    mean_class_accuracy: float
    confusion: np.ndarray
    num_clips: int
    num_videos: int
    loss: float
    excluded: tuple[tuple[str, str], ...] = ()
    # (K,) video-level top-5 recall per class (NaN for a class without videos); None if unknown.
    per_class_top5: np.ndarray | None = None

    @property
    def num_listed(self) -> int:
        return self.num_videos + len(self.excluded)

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        """Scalar fields for CSV rows and TensorBoard, e.g. ``{"val/video_top1": 0.9, ...}``."""
        names = ("clip_top1", "clip_top5", "video_top1", "video_top5", "mean_class_accuracy")
        scalars = {name: float(getattr(self, name)) for name in names}
        scalars.update(loss=self.loss, num_clips=self.num_clips, num_videos=self.num_videos)
        scalars.update(num_listed=self.num_listed)
        return {f"{prefix}{key}": value for key, value in scalars.items()}

    def coverage(self) -> str:
        """``"videos scored 3 / 4 listed (1 excluded: a/v1)"``: the denominator of the numbers."""
        text = f"videos scored {self.num_videos} / {self.num_listed} listed"
        if self.excluded:
            names = [name for name, _ in self.excluded[:_NAMES_SHOWN]]
            more = ", ..." if len(self.excluded) > _NAMES_SHOWN else ""
            text += f" ({len(self.excluded)} excluded: {', '.join(names)}{more})"
        return text


class EvalShardSampler(Sampler[int]):
    """Indices ``rank, rank + world_size, ...`` of ``range(num_items)``: every item on exactly one
    rank, no padding (ranks may get one item more or less; evaluation does not need equal counts).
    """

    def __init__(self, num_items: int, *, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        self.num_items, self.rank, self.world_size = num_items, rank, world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.num_items, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.num_items, self.world_size))


def _as_numpy(values: torch.Tensor | np.ndarray | Sequence, dtype: type) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().float().cpu() if dtype is np.float32 else values.detach().cpu()
        values = values.numpy()
    return np.asarray(values, dtype=dtype)


class ScoreAccumulator:
    """Collects per-clip scores (B, K), targets (B,), sample ids (B,) and losses across batches.

    ``from_logits=True`` (default): scores are logits and softmax is applied for video averaging;
    ``False``: scores are already probabilities. ``average``: what a video's clips average into,
    ``"prob"`` (softmax scores) or ``"score"`` (the scores as given, e.g. logits).
    """

    def __init__(
        self, num_classes: int, *, from_logits: bool = True, average: str = "prob"
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if average not in AVERAGES:
            raise ValueError(f"average must be one of {AVERAGES}, got {average!r}")
        self.num_classes = num_classes
        self.from_logits, self.average = from_logits, average
        self._parts: dict[str, list[np.ndarray]] = {
            key: [] for key in ("scores", "targets", "sample_ids", "clip_ids", "losses")
        }
        self._excluded: dict[int, tuple[str, str]] = {}  # sample id -> (name, reason)

    def exclude(self, sample_id: int, name: str, reason: str) -> None:
        """Leave video ``sample_id`` out (unreadable): its clips, any batch, are never scored."""
        self._excluded.setdefault(int(sample_id), (name, reason))

    @property
    def excluded(self) -> dict[int, tuple[str, str]]:
        """``{sample id: (name, reason)}`` of the videos left out."""
        return dict(sorted(self._excluded.items()))

    def update(
        self,
        scores: torch.Tensor,
        targets: torch.Tensor | Sequence[int],
        sample_ids: torch.Tensor | Sequence[int],
        loss: torch.Tensor | float | None = None,
        clip_ids: torch.Tensor | Sequence[int] | None = None,
    ) -> None:
        """Add one batch. ``loss``: the batch mean (scalar) or per-clip losses (B,);
        ``clip_ids``: dataset indices, used by ``gather`` to drop sampler padding."""
        scores = _as_numpy(scores, np.float32)
        if scores.ndim != 2 or scores.shape[1] != self.num_classes:
            raise ValueError(
                f"scores must have shape (B, {self.num_classes}), got {tuple(scores.shape)}"
            )
        batch = scores.shape[0]
        parts = {
            "scores": scores,
            "targets": _as_numpy(targets, np.int64).reshape(batch),
            "sample_ids": _as_numpy(sample_ids, np.int64).reshape(batch),
            "clip_ids": np.full(batch, -1, np.int64)
            if clip_ids is None
            else _as_numpy(clip_ids, np.int64).reshape(batch),
            "losses": np.full(batch, np.nan, np.float64)
            if loss is None
            else np.broadcast_to(_as_numpy(loss, np.float32).astype(np.float64), (batch,)),
        }
        for key, value in parts.items():
            self._parts[key].append(np.array(value))

    def _arrays(self) -> dict[str, np.ndarray]:
        empty = {
            "scores": np.zeros((0, self.num_classes), np.float32),
            "targets": np.zeros(0, np.int64),
            "sample_ids": np.zeros(0, np.int64),
            "clip_ids": np.zeros(0, np.int64),
            "losses": np.zeros(0, np.float64),
        }
        return {
            key: np.concatenate(chunks) if chunks else empty[key]
            for key, chunks in self._parts.items()
        }

    def gather(self) -> None:
        """All-gather the clips of every rank (unequal counts are fine) so each rank holds all
        of them; clips with the same non-negative ``clip_id`` are kept once. No-op when
        torch.distributed is not initialised."""
        if not is_distributed():
            return
        gathered: list[tuple | None] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, (self._arrays(), self._excluded))
        merged = {key: np.concatenate([part[0][key] for part in gathered]) for key in self._parts}
        keep = _first_occurrence(merged["clip_ids"])
        self._parts = {key: [value[keep]] for key, value in merged.items()}
        for _, excluded in gathered:
            for sample_id, (name, reason) in excluded.items():
                self.exclude(sample_id, name, reason)

    def video_scores(self) -> tuple[np.ndarray, np.ndarray]:
        """``(sample_ids (V,), scores (V, K))``: per scored (not excluded) sample id, ids sorted
        ascending, the mean softmax scores (``average="prob"``) or mean scores (``"score"``)."""
        arrays = self._scored_arrays()
        video_ids, _, averaged = _average_by_id(arrays["sample_ids"], self._averaged(arrays))
        return video_ids, averaged

    def video_targets(self) -> np.ndarray:
        """(V,) target of each scored sample id, in the order of :meth:`video_scores`."""
        arrays = self._scored_arrays()
        video_ids, inverse = np.unique(arrays["sample_ids"], return_inverse=True)
        return _video_targets(video_ids, inverse, arrays["targets"])

    def _scored_arrays(self) -> dict[str, np.ndarray]:
        arrays = self._arrays()
        if not self._excluded:
            return arrays
        keep = ~np.isin(arrays["sample_ids"], np.fromiter(self._excluded, np.int64))
        return {key: value[keep] for key, value in arrays.items()}

    def _averaged(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        scores = torch.from_numpy(arrays["scores"]).double()
        if self.from_logits and self.average == "prob":
            scores = scores.softmax(dim=1)
        return scores.numpy()

    def result(self) -> EvalResult:
        """All metrics over the clips added so far (call ``gather`` first under DDP); clips of
        excluded videos do not count, and ``num_listed`` says how many videos were listed."""
        arrays = self._scored_arrays()
        targets = arrays["targets"]
        if targets.size == 0:
            if self._excluded:
                raise ValueError(
                    f"all {len(self._excluded)} listed videos were excluded (unreadable)"
                )
            raise ValueError("no clips were evaluated (empty dataset?)")
        if targets.min() < 0 or targets.max() >= self.num_classes:
            raise ValueError(
                f"targets must lie in [0, {self.num_classes}); got {targets.min()}..{targets.max()}"
                " (unknown labels, -1, are for inference: use video_scores())"
            )
        video_ids, inverse, probs = _average_by_id(arrays["sample_ids"], self._averaged(arrays))
        video_targets = _video_targets(video_ids, inverse, targets)
        confusion = _confusion(video_targets, probs.argmax(axis=1), self.num_classes)
        per_class = _per_class_recall(confusion)
        losses = arrays["losses"]
        return EvalResult(
            clip_top1=_topk_accuracy(arrays["scores"], targets, 1),
            clip_top5=_topk_accuracy(arrays["scores"], targets, 5),
            video_top1=_topk_accuracy(probs, video_targets, 1),
            video_top5=_topk_accuracy(probs, video_targets, 5),
            per_class_accuracy=per_class,
            mean_class_accuracy=float(np.nanmean(per_class)),
            confusion=confusion,
            num_clips=int(targets.size),
            num_videos=int(video_ids.size),
            loss=float(losses.mean()) if not np.isnan(losses).any() else math.nan,
            excluded=tuple(self.excluded.values()),
            per_class_top5=per_class_topk(probs, video_targets, 5),
        )


def _first_occurrence(clip_ids: np.ndarray) -> np.ndarray:
    """Boolean mask keeping every clip without an id (-1) and the first clip of each id."""
    keep = clip_ids < 0
    _, first = np.unique(clip_ids, return_index=True)
    keep[first] = True
    return keep


def _average_by_id(
    sample_ids: np.ndarray, probs: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unique ids (V,), clip → video index (N,), mean probabilities (V, K))."""
    video_ids, inverse, counts = np.unique(sample_ids, return_inverse=True, return_counts=True)
    sums = np.zeros((video_ids.size, probs.shape[1]), np.float64)
    np.add.at(sums, inverse, probs)
    return video_ids, inverse, sums / counts[:, None]


def _video_targets(video_ids: np.ndarray, inverse: np.ndarray, targets: np.ndarray) -> np.ndarray:
    video_targets = np.full(video_ids.size, -1, np.int64)
    video_targets[inverse] = targets
    if not np.array_equal(video_targets[inverse], targets):
        bad = video_ids[np.unique(inverse[video_targets[inverse] != targets])]
        raise ValueError(f"clips of the same sample_id have different targets: ids {bad[:5]}")
    return video_targets


def _topk_hits(scores: np.ndarray, targets: np.ndarray, k: int) -> np.ndarray:
    """(N,) bool: the row's target is among its k highest scores (k capped at K)."""
    k = min(k, scores.shape[1])
    target_scores = np.take_along_axis(scores, targets[:, None], axis=1)
    # Ties rank the lower class index first, as argmax does: constant scores are not all right.
    tied_before = (scores == target_scores) & (np.arange(scores.shape[1]) < targets[:, None])
    return ((scores > target_scores) | tied_before).sum(axis=1) < k


def _topk_accuracy(scores: np.ndarray, targets: np.ndarray, k: int) -> float:
    """Fraction of rows whose target is among the k highest scores (k capped at K)."""
    return float(_topk_hits(scores, targets, k).mean())


def _confusion(targets: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    flat = targets * num_classes + predictions
    return np.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)


def _per_class_recall(confusion: np.ndarray) -> np.ndarray:
    totals = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(confusion) / totals, np.nan)


def per_class_topk(scores: np.ndarray, targets: np.ndarray, k: int) -> np.ndarray:
    """(K,) share of each class's rows whose target is among the k highest of ``scores`` (N, K),
    ties ranked as in :func:`_topk_accuracy`; NaN for a class without rows."""
    num_classes = scores.shape[1]
    hit = _topk_hits(scores, targets, k)
    support = np.bincount(targets, minlength=num_classes)
    hits = np.bincount(targets, weights=hit.astype(np.float64), minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, hits / support, np.nan)


def precision_recall_f1(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall and F1 (each (K,), NaN where undefined) from a (K, K)
    confusion matrix with rows = true class."""
    confusion = np.asarray(confusion, np.float64)
    true_pos = np.diag(confusion)
    predicted, actual = confusion.sum(axis=0), confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, true_pos / predicted, np.nan)
        recall = np.where(actual > 0, true_pos / actual, np.nan)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), np.nan)
    f1 = np.where(np.isnan(precision) | np.isnan(recall), np.nan, f1)
    f1 = np.where((true_pos == 0) & (actual > 0), 0.0, f1)
    return precision, recall, f1


def _check_names(result: EvalResult, class_names: Sequence[str]) -> None:
    if len(class_names) != result.confusion.shape[0]:
        raise ValueError(f"{len(class_names)} class names for {result.confusion.shape[0]} classes")


def tao_report(result: EvalResult, class_names: Sequence[str]) -> str:
    """The TAO ActionRecognitionNet evaluation printout (video level), e.g.::

    *******************************
    fall_floor    96.67
    ride_bike     100.0
    *******************************
    Total accuracy: 98.333
    Average class accuracy: 98.333

    A last line states the denominator when videos were excluded:
    ``videos scored 3 / 4 listed (1 excluded: fall_floor/v07)``.
    """
    _check_names(result, class_names)
    confusion = result.confusion
    lines = [TAO_RULE]
    for name, accuracy in zip(map(printable, class_names), result.per_class_accuracy):
        lines.append(f"{name.ljust(CLASS_NAME_WIDTH)}{100 * accuracy:.4}")
    lines.append(TAO_RULE)
    lines.append(f"Total accuracy: {round(100 * np.trace(confusion) / confusion.sum(), 3)}")
    lines.append(f"Average class accuracy: {round(100 * result.mean_class_accuracy, 3)}")
    if result.excluded:
        lines.append(result.coverage())
    return "\n".join(lines)


def per_class_report(result: EvalResult, class_names: Sequence[str]) -> str:
    """A table of precision, recall, F1 (%) and support per class, then macro averages."""
    _check_names(result, class_names)
    precision, recall, f1 = precision_recall_f1(result.confusion)
    support = result.confusion.sum(axis=1)
    width = max(CLASS_NAME_WIDTH, *(len(name) + 1 for name in class_names))
    lines = [f"{'class'.ljust(width)}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>9}"]
    for name, p, r, f, n in zip(map(printable, class_names), precision, recall, f1, support):
        lines.append(f"{name.ljust(width)}{100 * p:10.2f}{100 * r:10.2f}{100 * f:10.2f}{n:9d}")
    means = [100 * np.nanmean(values) for values in (precision, recall, f1)]
    lines.append(
        f"{'macro avg'.ljust(width)}{means[0]:10.2f}{means[1]:10.2f}{means[2]:10.2f}"
        f"{int(support.sum()):9d}"
    )
    return "\n".join(lines)


def save_confusion(
    result: EvalResult, class_names: Sequence[str], out_dir: str | Path
) -> tuple[Path, Path]:
    """Write ``confusion.csv`` (rows = true class, columns = predicted) and ``confusion.png``
    (row-normalised colours, counts printed for up to 30 classes) into ``out_dir``."""
    _check_names(result, class_names)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = out_dir / "confusion.csv", out_dir / "confusion.png"
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["true \\ predicted", *class_names])
        for name, row in zip(class_names, result.confusion):
            writer.writerow([name, *(int(count) for count in row)])
    _plot_confusion(result.confusion, class_names, png_path)
    return csv_path, png_path


def _plot_confusion(confusion: np.ndarray, class_names: Sequence[str], path: Path) -> None:
    # A bare Figure (Agg canvas) leaves pyplot's global backend and state alone.
    from matplotlib.figure import Figure

    num_classes = len(class_names)
    totals = confusion.sum(axis=1, keepdims=True)
    normalised = np.divide(confusion, totals, out=np.zeros(confusion.shape), where=totals > 0)
    side = min(40.0, max(4.0, 0.35 * num_classes + 2.5))
    fig = Figure(figsize=(side, side), dpi=100)
    ax = fig.subplots()
    image = ax.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    font = max(5, 10 - num_classes // 15)
    ax.set_xticks(range(num_classes), labels=class_names, rotation=90, fontsize=font)
    ax.set_yticks(range(num_classes), labels=class_names, fontsize=font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if num_classes <= 30:
        for (row, col), count in np.ndenumerate(confusion):
            colour = "white" if normalised[row, col] > 0.5 else "black"
            ax.text(col, row, str(count), ha="center", va="center", fontsize=font, color=colour)
    fig.tight_layout()
    fig.savefig(path)


PER_CLASS_FIELDS = ("class", "support", "precision", "recall", "f1", "top5_recall")


def per_class_rows(result: EvalResult, class_names: Sequence[str]) -> list[dict[str, object]]:
    """One dict per class (``PER_CLASS_FIELDS``): video-level support, precision, recall, F1 and
    top-5 recall as fractions (NaN where undefined: no videos of, or none predicted as, a class)."""
    _check_names(result, class_names)
    precision, recall, f1 = precision_recall_f1(result.confusion)
    support = result.confusion.sum(axis=1)
    top5 = result.per_class_top5
    if top5 is None:
        top5 = np.full(len(class_names), np.nan)
    columns = zip(class_names, support, precision, recall, f1, top5)
    return [
        dict(zip(PER_CLASS_FIELDS, (name, int(n), float(p), float(r), float(f), float(t))))
        for name, n, p, r, f, t in columns
    ]


def worst_classes(result: EvalResult, class_names: Sequence[str], count: int = 5) -> list[dict]:
    """The ``count`` classes with the lowest recall (ties: lower F1, then more videos first);
    classes without videos are left out. Rows as :func:`per_class_rows`."""
    rows = [row for row in per_class_rows(result, class_names) if row["support"] > 0]
    f1 = lambda row: -1.0 if math.isnan(row["f1"]) else row["f1"]  # noqa: E731
    rows.sort(key=lambda row: (row["recall"], f1(row), -row["support"]))
    return rows[:count]


def format_worst(rows: Sequence[dict]) -> str:
    """``"worst classes by recall: fencing 0.00 (3 videos), ..."``."""
    parts = [
        f"{printable(str(r['class']))} {r['recall']:.2f} ({r['support']} videos)" for r in rows
    ]
    return "worst classes by recall: " + ", ".join(parts)


def save_per_class(
    result: EvalResult, class_names: Sequence[str], out_dir: str | Path
) -> tuple[Path, Path]:
    """Write ``per_class.csv`` (``PER_CLASS_FIELDS``; empty cell where undefined) and
    ``per_class.png`` (recall per class sorted, beside the row-normalised confusion matrix with
    class names) into ``out_dir``."""
    rows = per_class_rows(result, class_names)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = out_dir / "per_class.csv", out_dir / "per_class.png"
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(PER_CLASS_FIELDS)
        for row in rows:
            writer.writerow([_cell(row[field]) for field in PER_CLASS_FIELDS])
    _plot_per_class(rows, result.confusion, png_path)
    return csv_path, png_path


def _cell(value: object) -> object:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4f}"
    return value


def _plot_per_class(rows: list[dict], confusion: np.ndarray, path: Path) -> None:
    """Sorted recall bars (worst on top) | normalised confusion matrix, one row per class.

    A row is at least 0.14 inch (10 pt) high, so 120 class names stay legible at 100 dpi. The
    axes are placed in inches (no tight_layout: one draw instead of two for 2 x 120 labels)."""
    from matplotlib.figure import Figure

    names = [printable(str(row["class"])) for row in rows]
    num_classes = len(names)
    font = 6 if num_classes > 40 else 9
    body = max(3.0, (0.14 if num_classes > 40 else 0.3) * num_classes)
    label = min(3.0, 0.3 + font / 100 * max(len(name) for name in names))
    bars_x, bars_w = 0.2 + label, 3.0
    matrix_x = bars_x + bars_w + 0.9 + label
    width, height = matrix_x + body + 1.3, body + label + 1.2
    fig = Figure(figsize=(width, height), dpi=100)

    def axes(x: float, w: float):
        return fig.add_axes((x / width, (label + 0.7) / height, w / width, body / height))

    _recall_bars(axes(bars_x, bars_w), rows, names, font)
    matrix = axes(matrix_x, body)
    totals = confusion.sum(axis=1, keepdims=True)
    normalised = np.divide(confusion, totals, out=np.zeros(confusion.shape), where=totals > 0)
    image = matrix.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    fig.colorbar(image, cax=axes(matrix_x + body + 0.15, 0.2), label="fraction of true class")
    matrix.set_xticks(range(num_classes), labels=names, rotation=90, fontsize=font)
    matrix.set_yticks(range(num_classes), labels=names, fontsize=font)
    matrix.set_xlabel("predicted")
    matrix.set_ylabel("true")
    matrix.set_title("confusion (row-normalised)")
    fig.savefig(path)


def _recall_bars(ax, rows: list[dict], names: list[str], font: int) -> None:
    """Horizontal recall bars sorted ascending from the top; classes without videos left out."""
    order = sorted(
        (i for i, row in enumerate(rows) if row["support"] > 0), key=lambda i: rows[i]["recall"]
    )
    recall = [rows[i]["recall"] for i in order]
    ax.barh(range(len(order)), recall, color="tab:blue")
    ax.set_yticks(range(len(order)), labels=[names[i] for i in order], fontsize=font)
    ax.set_ylim(len(order) - 0.5, -0.5)  # worst class on top
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("recall (video level)")
    ax.set_title("recall per class, sorted")
    ax.grid(axis="x", alpha=0.3)
