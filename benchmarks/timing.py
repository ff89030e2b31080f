"""Timing several runtimes fairly on one shared machine.

Runtimes are timed in rounds, one call of each per round, so load drifts from other processes hit
them alike. Before each timed call the same runtime runs untimed for at least ``SETTLE_SECONDS``:
thread pools spin for a while after their work (ONNX Runtime's, OpenMP's), and without settling a
runtime timed right after another shares the cores with the other's spinning threads (GestureNet
eager at batch 1 read 94 ms interleaved with ONNX Runtime against 20 ms alone; ONNX Runtime INT8
read 9 ms after one settling call against 4.5 ms alone).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import torch

from train.malloc import reuse_large_buffers

SETTLE_SECONDS = 0.25
Row = TypeVar("Row")


def interleaved_median(
    runs: Mapping[str, Callable[[], object]],
    repeats: int,
    warmup: int = 1,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Median seconds per call of each run, timed in ``repeats`` rounds after ``warmup`` rounds.

    ``clock``: wall time by default; ``time.process_time`` (CPU seconds of all this process's
    threads) reads the work done rather than the share of a busy machine the process got."""
    for _ in range(warmup):
        for run in runs.values():
            run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            _settle(run)
            start = clock()
            run()
            times[name].append(clock() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def _settle(run: Callable[[], object]) -> None:
    """Run until the previous runtime's spinning threads have gone to sleep (at least once)."""
    start = time.perf_counter()
    run()
    while time.perf_counter() - start < SETTLE_SECONDS:
        run()


def benchmark_parser(doc: str, models: Iterable[str]) -> argparse.ArgumentParser:
    """A parser with the flags every table benchmark takes: ``--models`` (default: all, in the
    given order) and ``--threads`` (torch and ONNX Runtime intra-op threads, default 2). The
    description is the first paragraph of ``doc``."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=sorted(models), default=list(models))
    parser.add_argument("--threads", type=int, default=2, help="torch and ORT intra-op threads")
    return parser


def collect_rows(
    threads: int,
    folder_prefix: str,
    batches: Callable[[Path], Iterable[Iterable[Row]]],
    table: Callable[[list[Row]], str],
) -> list[Row]:
    """Run a table benchmark: the process set up as every family command runs it (``threads``
    intra-op threads, ``train.malloc.reuse_large_buffers``), ``batches(work)`` in a temporary
    folder ``work``, the table of the rows so far printed after each batch (partial results
    survive an interruption). Returns every row."""
    torch.set_num_threads(threads)
    reuse_large_buffers()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix=folder_prefix) as folder:
        for batch in batches(Path(folder)):
            rows.extend(batch)
            print(table(rows), flush=True)
    return rows


def markdown_table(header: Sequence[str], align: str, rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table: ``header`` cells, one ``align`` letter per column ("l" left, "r" right),
    then one line per row of cells."""
    rule = "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"
    lines = ["| " + " | ".join(cells) + " |" for cells in [header, *rows]]
    return "\n".join([lines[0], rule, *lines[1:]])
