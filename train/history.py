"""Per-epoch records for machines and people: metrics.csv, TensorBoard scalars, PNG curves.

Only rank 0 creates a :class:`RunHistory`. ``metrics.csv`` is appended to; a run that starts from
epoch E first drops the rows past E (:func:`truncate_metrics`, called by ``train.rundir``), so no
epoch appears twice. TensorBoard scalars go to two runs: ``tensorboard/steps`` (per logging
interval, x = optimizer step) and ``tensorboard/epochs`` (one point per epoch, x = epoch); a
resumed run purges the points past its starting step and epoch (``SummaryWriter(purge_step)``).
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["RunHistory", "plot_curves", "read_metrics", "truncate_metrics"]

log = logging.getLogger(__name__)
METRICS_FILE = "metrics.csv"
CURVES_FILE = "curves.png"
TENSORBOARD_DIR = "tensorboard"

# Curves drawn at the end of a run: panel title -> metrics.csv columns.
CURVE_PANELS: dict[str, tuple[str, ...]] = {
    "loss": ("train_loss", "val_loss"),
    "top-1 accuracy": ("train_top1", "val_clip_top1", "val_video_top1"),
    "learning rate": ("lr",),
}


class RunHistory:
    """Appends one row per epoch to ``metrics.csv`` and writes TensorBoard scalars.

    ``start_epoch``/``start_step``: where the run starts (a resumed checkpoint's epoch and
    optimizer step); TensorBoard points past them, left by an interrupted run, are purged.
    """

    def __init__(
        self,
        run_dir: str | Path,
        *,
        tensorboard: bool = True,
        start_epoch: int = 0,
        start_step: int = 0,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.csv_path = self.run_dir / METRICS_FILE
        board = self.run_dir / TENSORBOARD_DIR
        self.writer = _tensorboard_writer(board / "steps", start_step) if tensorboard else None
        self.epoch_writer = (
            _tensorboard_writer(board / "epochs", start_epoch) if tensorboard else None
        )

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        """TensorBoard scalars at an optimizer step (per logging interval)."""
        _add_scalars(self.writer, values, step)

    def append(self, row: Mapping[str, Any]) -> None:
        """Append one epoch's row; new columns extend the header (old rows get blanks)."""
        header = _read_header(self.csv_path)
        fields = header + [key for key in row if key not in header]
        if header and header != fields:
            _write_rows(self.csv_path, fields, [*_read_rows(self.csv_path), dict(row)])
        else:
            new_file = not self.csv_path.exists()
            with self.csv_path.open("a", newline="", encoding="utf-8") as stream:
                writer = csv.DictWriter(stream, fieldnames=fields)
                if new_file:
                    writer.writeheader()
                writer.writerow(dict(row))
        epoch = int(row.get("epoch", 0))
        values = {f"epoch/{k}": v for k, v in row.items() if _is_number(v) and k != "epoch"}
        _add_scalars(self.epoch_writer, values, epoch)

    def close(self) -> None:
        for writer in (self.writer, self.epoch_writer):
            if writer is not None:
                writer.close()


def _add_scalars(writer: Any, values: Mapping[str, float], step: int) -> None:
    if writer is None:
        return
    for key, value in values.items():
        if value is not None and math.isfinite(float(value)):
            writer.add_scalar(key, float(value), step)


def _tensorboard_writer(directory: Path, start: int) -> Any:
    """A SummaryWriter; when ``directory`` already holds events, those at x > ``start`` are
    purged (hidden by TensorBoard) as the first new point is written."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional at run time
        log.warning("tensorboard is not installed: no TensorBoard scalars")
        return None
    purge = start + 1 if any(directory.glob("events.out.tfevents.*")) else None
    return SummaryWriter(log_dir=str(directory), purge_step=purge)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _read_header(path: Path) -> list[str]:
    """The column names of an existing CSV (the whole file is read only when they change)."""
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as stream:
        return next(csv.reader(stream), [])


def _read_rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def _write_rows(path: Path, fields: list[str], rows: list[Mapping[str, Any]]) -> None:
    temp = path.with_suffix(".csv.tmp")
    with temp.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(rows)
    temp.replace(path)


def truncate_metrics(run_dir: str | Path, epoch: int) -> int:
    """Drop the ``metrics.csv`` rows of epochs after ``epoch``; returns how many were dropped."""
    path = Path(run_dir) / METRICS_FILE
    header = _read_header(path)
    if not header:
        return 0
    rows = _read_rows(path)
    kept = [row for row in rows if _row_epoch(row) is not None and _row_epoch(row) <= epoch]
    if len(kept) != len(rows):
        _write_rows(path, header, kept)
    return len(rows) - len(kept)


def _row_epoch(row: Mapping[str, Any]) -> int | None:
    try:
        return int(float(row.get("epoch") or ""))
    except ValueError:
        return None


def read_metrics(run_dir: str | Path) -> list[dict[str, float]]:
    """Rows of ``metrics.csv`` as floats, the last row of each epoch, in epoch order."""
    by_epoch: dict[int, dict[str, float]] = {}
    for row in _read_rows(Path(run_dir) / METRICS_FILE):
        values = {k: float(v) for k, v in row.items() if v not in ("", None)}
        by_epoch[int(values["epoch"])] = values
    return [by_epoch[e] for e in sorted(by_epoch)]


def plot_curves(run_dir: str | Path) -> Path | None:
    """Draw ``curves.png`` (loss, accuracy, LR per epoch) from ``metrics.csv``."""
    rows = read_metrics(run_dir)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(1, len(CURVE_PANELS), figsize=(5 * len(CURVE_PANELS), 4), dpi=100)
    epochs = [row["epoch"] for row in rows]
    for ax, (title, columns) in zip(axes, CURVE_PANELS.items()):
        for column in columns:
            points = [(e, r[column]) for e, r in zip(epochs, rows) if column in r]
            if points:
                ax.plot(*zip(*points), marker="o", label=column)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(run_dir) / CURVES_FILE
    fig.savefig(path)
    plt.close(fig)
    return path
