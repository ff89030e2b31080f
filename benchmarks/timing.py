"""Timing several runtimes fairly on one shared machine.

Runtimes are timed in rounds, one call of each per round, so load drifts from other processes hit
them alike. Before each timed call the same runtime runs untimed for at least ``SETTLE_SECONDS``:
thread pools spin for a while after their work (ONNX Runtime's, OpenMP's), and without settling a
runtime timed right after another shares the cores with the other's spinning threads (GestureNet
eager at batch 1 read 94 ms interleaved with ONNX Runtime against 20 ms alone; ONNX Runtime INT8
read 9 ms after one settling call against 4.5 ms alone).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping

SETTLE_SECONDS = 0.25


def interleaved_median(
    runs: Mapping[str, Callable[[], object]], repeats: int, warmup: int = 1
) -> dict[str, float]:
    """Median seconds per call of each run, timed in ``repeats`` rounds after ``warmup`` rounds."""
    for _ in range(warmup):
        for run in runs.values():
            run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            _settle(run)
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def _settle(run: Callable[[], object]) -> None:
    """Run until the previous runtime's spinning threads have gone to sleep (at least once)."""
    start = time.perf_counter()
    run()
    while time.perf_counter() - start < SETTLE_SECONDS:
        run()
