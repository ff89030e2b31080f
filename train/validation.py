"""Flag checks shared by every family script, so that bad values stop at parse time.

Each ``type=`` function turns a command-line string (or a spec value) into the flag's value, or
raises :class:`FlagValueError`; argparse prints it as one line naming the flag, exit code 2::

    group.add_argument("--batch-size", type=positive_int, default=8)
    group.add_argument("--flip-prob", type=probability, default=0.5)

Checks that involve several flags (increasing ``--lr-steps``, mean/std lengths) run after parsing
in :func:`check_args`, which ``train.runner.run_script`` calls for every subcommand.
:class:`ScriptParser` prints a parse error as that single line (argparse's usage block would bury
it). :func:`printable` escapes labels read from files before they reach a terminal.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from safeio.text import printable

__all__ = [
    "FlagValueError",
    "ScriptParser",
    "available_memory",
    "check_args",
    "check_batch_memory",
    "clip_batch_bytes",
    "device",
    "finite_float",
    "fraction",
    "log_level",
    "momentum",
    "non_negative_float",
    "non_negative_int",
    "positive_float",
    "positive_int",
    "printable",
    "probability",
]


class FlagValueError(argparse.ArgumentTypeError, ValueError):
    """A flag value out of range. argparse shows its message after ``argument --flag:``; spec
    values (``train.config``) see a ValueError."""


class ScriptParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, ``<prog>: error: <message>``, exit code 2.

    Subcommand parsers inherit the class (argparse builds them with the parent's class).
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


# ----------------------------------------------------------------------------- numbers
def _number(text: Any, kind: type, what: str) -> Any:
    if isinstance(text, bool):
        raise FlagValueError(f"expected {what}, got {text!r}")
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise FlagValueError(f"expected {what}, got {text!r}") from None
    if kind is int and isinstance(text, float) and text != value:
        raise FlagValueError(f"expected {what}, got {text!r}")
    if kind is float and not math.isfinite(value):
        raise FlagValueError(f"expected {what}, got {text!r}")
    return value


def _ranged(kind: type, what: str, ok: Callable[[Any], bool]) -> Callable[[Any], Any]:
    def convert(text: Any) -> Any:
        value = _number(text, kind, what)
        if not ok(value):
            raise FlagValueError(f"expected {what}, got {text!r}")
        return value

    convert.__name__ = what.replace(" ", "_")
    return convert


positive_int = _ranged(int, "an integer > 0", lambda v: v > 0)
non_negative_int = _ranged(int, "an integer >= 0", lambda v: v >= 0)
finite_float = _ranged(float, "a finite number", lambda v: True)
positive_float = _ranged(float, "a number > 0", lambda v: v > 0)
non_negative_float = _ranged(float, "a number >= 0", lambda v: v >= 0)
probability = _ranged(float, "a probability in [0, 1]", lambda v: 0.0 <= v <= 1.0)
fraction = _ranged(float, "a fraction in [0, 1)", lambda v: 0.0 <= v < 1.0)
momentum = _ranged(float, "a momentum in [0, 1)", lambda v: 0.0 <= v < 1.0)


# ----------------------------------------------------------------------------- names
def log_level(text: str) -> str:
    """A logging level name (any case): DEBUG, INFO, WARNING, ERROR, CRITICAL."""
    name = str(text).upper()
    if not isinstance(logging.getLevelName(name), int):
        raise FlagValueError(f"expected DEBUG, INFO, WARNING, ERROR or CRITICAL, got {text!r}")
    return name


def device(text: str) -> str:
    """``cpu``, ``cuda``, ``cuda:N`` (N < the visible GPU count) or ``mps``, present here."""
    import torch

    try:
        parsed = torch.device(str(text))
    except (RuntimeError, ValueError):
        raise FlagValueError(f"unknown device {text!r}; expected cpu, cuda or cuda:N") from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise FlagValueError(f"{text!r}: no CUDA GPU is visible here; use --device cpu")
        if parsed.index is not None and parsed.index >= count:
            raise FlagValueError(f"{text!r}: only {count} CUDA GPU(s) visible (0..{count - 1})")
    elif parsed.type == "mps":
        if not torch.backends.mps.is_available():
            raise FlagValueError(f"{text!r}: MPS is not available here; use --device cpu")
    elif parsed.type != "cpu":
        raise FlagValueError(f"unsupported device {text!r}; expected cpu, cuda or cuda:N")
    return str(text)


# ----------------------------------------------------------------------------- after parsing
# Normalisation flags -> the channel counts they may have (one value broadcasts).
NORM_LENGTHS = {
    "rgb_mean": (1, 3),
    "rgb_std": (1, 3),
    "of_mean": (1, 2),
    "of_std": (1, 2),
}


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _check_lr_steps(steps: Sequence[int] | None) -> None:
    steps = list(steps or [])
    if any(later <= earlier for earlier, later in itertools.pairwise(steps)):
        raise ValueError(f"--lr-steps {' '.join(map(str, steps))}: epochs must be increasing")


def _check_norm(dest: str, values: Sequence[float] | None) -> None:
    if values is None:
        return
    lengths = NORM_LENGTHS[dest]
    if len(values) not in lengths:
        raise ValueError(
            f"{_flag(dest)}: {len(values)} values, expected "
            f"{' or '.join(map(str, lengths))} (one per channel)"
        )
    if dest.endswith("_std") and any(v <= 0 for v in values):
        raise ValueError(f"{_flag(dest)}: standard deviations must be > 0, got {list(values)}")


def check_args(args: argparse.Namespace) -> argparse.Namespace:
    """Checks across flags, for whichever of them the subcommand has; ValueError names the flag."""
    if hasattr(args, "lr_steps"):
        _check_lr_steps(args.lr_steps)
    for dest in NORM_LENGTHS:
        if hasattr(args, dest):
            _check_norm(dest, getattr(args, dest))
    return args


# ----------------------------------------------------------------------------- memory
def available_memory(device: str = "cpu") -> int | None:
    """Bytes a new tensor can take: MemAvailable (capped by this process's RLIMIT_AS), or the
    free memory of a CUDA ``device``; None when unknown."""
    if str(device).startswith("cuda"):
        import torch

        try:
            return int(torch.cuda.mem_get_info(torch.device(device))[0])
        except (RuntimeError, AssertionError, ValueError):  # no CUDA here: the device check says
            return None
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            fields = dict(line.split(":", 1) for line in handle)
        free = int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None
    import resource

    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    return free if limit == resource.RLIM_INFINITY else min(free, limit)


def clip_batch_bytes(
    clips: int, clip_length: int, clip_size: int, short_side: int, channels: int = 3
) -> int:
    """Bytes of one batch of ``clips`` clips before the network sees it: the float32 input
    ``(clips, channels, clip_length, clip_size, clip_size)`` plus the decoded uint8 frames it is
    cut from (``clip_length`` frames of ``short_side`` x 4/3 ``short_side``, RGB)."""
    inputs = clips * channels * clip_length * clip_size * clip_size * 4
    frames = clips * clip_length * short_side * (short_side * 4 // 3) * 3
    return inputs + frames


def _size(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if count < 1000 or unit == "PB":
            return f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError  # unreachable


def check_batch_memory(needed: int, what: str, device: str = "cpu") -> None:
    """Refuse (ValueError, one line with the estimate) a batch of ``needed`` bytes that cannot
    fit in the memory available now (``what`` says which flags made it)."""
    free = available_memory(device)
    if free is not None and needed > free:
        where = "GPU memory" if str(device).startswith("cuda") else "memory"
        raise ValueError(
            f"{what}: one batch needs about {_size(needed)}, more than the {_size(free)} of "
            f"{where} available"
        )


# ----------------------------------------------------------------------------- printing
def print_error(message: str) -> None:
    """One ``error: ...`` line on stderr (newlines inside ``message`` escaped)."""
    print(f"error: {printable(message)}", file=sys.stderr)
