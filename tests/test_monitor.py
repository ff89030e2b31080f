"""The SRTG speed monitor: clips/s, SRTG number format, colours at the seed-004 thresholds."""

import io
import math

import pytest

from train.monitor import SPEED_THRESHOLDS, SpeedMonitor, colour_enabled, format_rate

RED, YELLOW, GREEN, RESET = "\033[31m", "\033[33m", "\033[32m", "\033[0m"


def test_format_rate_uses_the_srtg_notation():
    assert format_rate(1.53e5) == "1.53e+5"
    assert format_rate(98.4) == "9.84e+1"
    assert format_rate(0.05) == "5.00e-2"
    assert format_rate(math.inf) == "inf"


def test_plain_line_reports_window_and_running_average():
    monitor = SpeedMonitor(colour=False)
    monitor.update(0.01, 0.5, 1.0, 48)
    monitor.update(0.01, 0.5, 1.0, 48)
    assert (
        monitor.format()
        == "Speed (r=4.80e+3 f=9.60e+1 b=4.80e+1) avg (r=4.80e+3 f=9.60e+1 b=4.80e+1)"
    )
    monitor.update(0.02, 1.0, 4.0, 48)  # a slower window
    assert (
        monitor.format()
        == "Speed (r=2.40e+3 f=4.80e+1 b=1.20e+1) avg (r=3.60e+3 f=7.20e+1 b=2.40e+1)"
    )
    assert monitor.averages() == pytest.approx(
        {"speed/read": 3600.0, "speed/forward": 72.0, "speed/backward": 24.0}
    )
    monitor.reset()
    assert monitor.format() == "Speed (r=nan f=nan b=nan) avg (r=nan f=nan b=nan)"


@pytest.mark.parametrize(
    ("stage", "rate", "colour"),
    [
        ("read", 99.0, RED),
        ("read", 100.0, YELLOW),
        ("read", 2999.0, YELLOW),
        ("read", 3000.0, GREEN),
        ("forward", 49.0, RED),
        ("forward", 299.0, YELLOW),
        ("forward", 300.0, GREEN),
        ("backward", 19.0, RED),
        ("backward", 199.0, YELLOW),
        ("backward", 200.0, GREEN),
    ],
)
def test_colours_at_the_srtg_thresholds(stage, rate, colour):
    monitor = SpeedMonitor(colour=True)
    times = {"read": 1.0, "forward": 1.0, "backward": 1.0}
    times[stage] = 10.0 / rate
    monitor.update(times["read"], times["forward"], times["backward"], 10)
    window = monitor.format().split(" avg ")[0]
    assert f"{stage[0]}={colour}{format_rate(rate)}{RESET}" in window
    assert SPEED_THRESHOLDS[stage][0] < SPEED_THRESHOLDS[stage][1]


def test_colour_only_on_a_terminal_without_no_color(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert colour_enabled(Tty())
    assert not colour_enabled(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not colour_enabled(Tty())


def test_zero_time_is_infinite_speed_and_negative_time_is_an_error():
    monitor = SpeedMonitor(colour=False)
    monitor.update(0.0, 0.1, 0.1, 4)
    assert monitor.format().startswith("Speed (r=inf f=4.00e+1")
    with pytest.raises(ValueError, match="negative"):
        monitor.update(-1.0, 0.1, 0.1, 4)
