"""The SRTG speed monitor: reading, forward and backward speed in clips per second.

One line per logging interval, e.g. ``Speed (r=1.53e+5 f=9.84e+1 b=1.78e+1)``, each number
coloured red / yellow / green at the thresholds of the SRTG README (slow / average / fast)::

    monitor = SpeedMonitor()
    for step, batch in enumerate(loader):
        ...  # time the data wait, the forward and the backward pass
        monitor.update(read_s, forward_s, backward_s, batch_size)
        if step % log_interval == 0:
            logger.info("... %s", monitor.format())
    writer.add_scalars(monitor.averages())

``format()`` reports the window since its previous call and the running average of the run
(or since ``reset()``); GPU times come from CUDA events (``train.precision.seconds_between``).
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field
from typing import TextIO

__all__ = ["SPEED_THRESHOLDS", "SpeedMonitor", "colour_enabled", "format_rate"]

STAGES = ("read", "forward", "backward")
# clips/s below the first value are slow (red), below the second average (yellow), else green.
SPEED_THRESHOLDS: dict[str, tuple[float, float]] = {
    "read": (100.0, 3000.0),
    "forward": (50.0, 300.0),
    "backward": (20.0, 200.0),
}
ANSI = {"red": "\033[31m", "yellow": "\033[33m", "green": "\033[32m", "reset": "\033[0m"}


def colour_enabled(stream: TextIO | None = None) -> bool:
    """True when ``stream`` (default stderr, where logs go) is a terminal and ``NO_COLOR`` unset."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return "NO_COLOR" not in os.environ and bool(isatty and isatty())


@dataclass
class _Totals:
    clips: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

    def add(self, clips: int, times: dict[str, float]) -> None:
        self.clips += clips
        for stage, seconds in times.items():
            self.seconds[stage] += seconds

    def rates(self) -> dict[str, float]:
        return {stage: _rate(self.clips, seconds) for stage, seconds in self.seconds.items()}


def format_rate(rate: float) -> str:
    """SRTG notation: 3 significant digits and a short exponent, ``1.53e+5``."""
    if not math.isfinite(rate):
        return str(rate)
    mantissa, exponent = f"{rate:.2e}".split("e")
    return f"{mantissa}e{int(exponent):+d}"


def _rate(clips: int, seconds: float) -> float:
    if clips == 0:
        return math.nan
    return clips / seconds if seconds > 0 else math.inf


class SpeedMonitor:
    """Clips/s of data reading, forward and backward; ``colour=None`` decides by the terminal."""

    def __init__(self, *, colour: bool | None = None) -> None:
        self.colour = colour_enabled() if colour is None else colour
        self.reset()

    def reset(self) -> None:
        """Forget everything (e.g. at the start of an epoch)."""
        self._window = _Totals()
        self._total = _Totals()

    def update(self, read_s: float, forward_s: float, backward_s: float, batch_size: int) -> None:
        """Add one iteration: seconds spent waiting for data, in forward, in backward."""
        times = {"read": read_s, "forward": forward_s, "backward": backward_s}
        if any(seconds < 0 for seconds in times.values()) or batch_size < 0:
            raise ValueError(f"negative time or batch size: {times}, batch_size={batch_size}")
        self._window.add(batch_size, times)
        self._total.add(batch_size, times)

    def format(self) -> str:
        """``Speed (r=… f=… b=…) avg (r=… f=… b=…)``; the first group covers the updates since
        the previous ``format`` call, which starts a new window."""
        window = self._window.rates()
        self._window = _Totals()
        return f"Speed ({self._group(window)}) avg ({self._group(self._total.rates())})"

    def averages(self) -> dict[str, float]:
        """Running clips/s, e.g. ``{"speed/read": 1.5e5, "speed/forward": 98.4, ...}``."""
        return {f"speed/{stage}": rate for stage, rate in self._total.rates().items()}

    def _group(self, rates: dict[str, float]) -> str:
        return " ".join(
            f"{stage[0]}={self._paint(stage, format_rate(rates[stage]), rates[stage])}"
            for stage in STAGES
        )

    def _paint(self, stage: str, text: str, rate: float) -> str:
        if not self.colour or math.isnan(rate):
            return text
        slow, average = SPEED_THRESHOLDS[stage]
        name = "red" if rate < slow else "yellow" if rate < average else "green"
        return f"{ANSI[name]}{text}{ANSI['reset']}"
