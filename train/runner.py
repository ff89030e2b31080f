"""Running one subcommand of a family script: seeding, error reporting, process-group cleanup.

Every entry script's ``main(argv)`` is ``FamilyScript.main`` (``run_script(parse, COMMANDS)``), so
all families get the same exit codes: 0 success, 1 training diverged or a rank stalled, 2 bad input
(one line naming the file or flag, no traceback). Every command also gets the same malloc settings
(``train.malloc``).
"""

from __future__ import annotations

import argparse
import functools
import logging
import resource
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from data.video.dataset import VideoReadError
from data.video.framestore import FrameStoreError
from safeio.safe_pickle import UnsafePickleError
from train.config import SpecMap, command_of, log_spec_notes, resolve_args
from train.distributed import DistributedTimeoutError, cleanup_distributed
from train.engine import NonFiniteLossError
from train.logs import setup_logging
from train.malloc import reuse_large_buffers
from train.rundir import OTHER_COMMANDS_OUTPUT_DIR
from train.seeding import seed_everything
from train.validation import ScriptParser, check_args, print_error, printable

log = logging.getLogger(__name__)

Command = Callable[[argparse.Namespace], int | None]
# A family's TAO spec map: one table, or a function of the subcommand and the loaded spec.
SpecMapOf = SpecMap | Callable[[str, Mapping[str, Any]], SpecMap]

# Errors that mean "this input is wrong", raised with a message naming the file (SplitError
# and the spec errors are ValueErrors; OSError carries the file name: a folder where a file is
# expected, no permission, a full disk).
USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    OSError,
    FrameStoreError,
    VideoReadError,
    UnsafePickleError,
)
# How torch re-raises an exception of a DataLoader worker: the worker's traceback in the message.
WORKER_TRACEBACK = "Original Traceback"


def one_line(error: BaseException) -> str:
    """The message of ``error`` as one printable line; for an exception re-raised from a
    DataLoader worker, the worker's own message (its traceback dropped)."""
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if WORKER_TRACEBACK in text and lines:
        last = lines[-1]
        name = type(error).__name__ + ": "
        return printable(last[len(name) :] if last.startswith(name) else last)
    return printable(" ".join(lines) or type(error).__name__)


def _exit_code(stop: SystemExit) -> int:
    """``SystemExit(message)`` is a user error (one line, exit code 2); an int passes through."""
    if stop.code is None or isinstance(stop.code, int):
        return stop.code or 0
    message = str(stop.code)
    print_error(message.removeprefix("error: "))
    return 2


def run_command(command: Command, args: argparse.Namespace) -> int:
    """Run ``command(args)`` and map its outcome to an exit code.

    ``--random-seed`` is applied first, so that a network built by the command (before the engine
    seeds each epoch) starts from the same weights in every run. The process keeps its large
    buffers for reuse (``train.malloc``): every subcommand computes on big tensors.
    """
    reuse_large_buffers()
    if getattr(args, "output_dir", "") is None and getattr(args, "command", None) != "train":
        args.output_dir = OTHER_COMMANDS_OUTPUT_DIR  # train makes a new run directory instead
    seed = getattr(args, "random_seed", None)
    if seed is not None:
        seed_everything(seed)
    try:
        outcome = command(args)
    except (NonFiniteLossError, DistributedTimeoutError) as error:
        log.error("%s", one_line(error))
        return 1
    except USER_ERRORS as error:
        log.error("%s", one_line(error))
        return 2
    except SystemExit as stop:
        return _exit_code(stop)
    finally:
        cleanup_distributed()
    return outcome if isinstance(outcome, int) else 0


def run_script(parse: Callable[[], argparse.Namespace], commands: Mapping[str, Command]) -> int:
    """A family script's ``main``: parse and check the flags (a bad flag or spec file is one line
    and exit code 2, before logging is set up), set up logging, run the subcommand (``commands``,
    else ``args.func``). ``--help`` returns 0."""
    try:
        args = check_args(parse())
    except (ValueError, OSError) as error:
        print_error(one_line(error))
        return 2
    except SystemExit as stop:  # argparse has printed its one line (or the help)
        return _exit_code(stop)
    setup_logging(getattr(args, "log_level", "INFO"))
    log_spec_notes(args)  # unknown spec keys and ignored ones, now that logging is set up
    return run_command(commands.get(args.command) or args.func, args)


@dataclass(frozen=True)
class FamilyScript:
    """What differs between the family scripts' command lines; each script's ``parse_args`` and
    ``main`` are this object's.

    ``commands`` is the script's ``COMMANDS`` table (subcommand name → ``cmd_<name>(args)``; a
    subcommand missing from it runs its parser's ``func`` default). ``spec_map`` is the TAO key
    table, or a function ``(subcommand, spec) -> table`` where the keys differ per subcommand;
    ``known_keys`` are spec keys the script reads itself (not unknown, though not in the table).
    """

    get_parser: Callable[[], argparse.ArgumentParser]
    commands: Mapping[str, Command]
    spec_map: SpecMapOf
    known_keys: Iterable[str] = ()

    def parse_args(self, argv: Sequence[str] | None = None) -> argparse.Namespace:
        """Resolve ``argv`` (default ``sys.argv[1:]``) with the TAO spec (``-e``) and
        ``key=value`` overrides: command line > spec > defaults."""
        argv = list(sys.argv[1:] if argv is None else argv)
        spec_map = self.spec_map
        if callable(spec_map):  # the table of this subcommand, given the loaded spec
            spec_map = functools.partial(spec_map, command_of(argv))
        return resolve_args(self.get_parser(), argv, spec_map, known_keys=self.known_keys)

    def main(self, argv: Sequence[str] | None = None) -> int:
        """Parse ``argv``, run its subcommand; the exit code (see :func:`run_script`)."""
        return run_script(lambda: self.parse_args(argv), self.commands)


def command_table(*functions: Command, **named: Command) -> dict[str, Command]:
    """A script's ``COMMANDS``: each ``cmd_<name>`` function under ``<name>`` (underscores read as
    dashes: ``cmd_trt_engine`` runs ``trt-engine``), then ``named`` commands under their keyword."""
    table: dict[str, Command] = {}
    for function in functions:
        if not function.__name__.startswith("cmd_"):
            raise ValueError(f"{function.__name__}: a command function is named cmd_<command>")
        table[function.__name__.removeprefix("cmd_").replace("_", "-")] = function
    return table | named


def command_parser(
    description: str, epilog: str
) -> tuple[ScriptParser, argparse._SubParsersAction]:
    """A family script's parser (``epilog`` printed as written) and its ``COMMAND`` subparsers
    (one is required)."""
    parser = ScriptParser(
        description=description, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    return parser, parser.add_subparsers(dest="command", required=True, metavar="COMMAND")


def set_defaults(
    commands: argparse._SubParsersAction, defaults: Mapping[str, Mapping[str, Any]]
) -> None:
    """Give each named subcommand its own defaults (``{command: {dest: value}}``); each
    subcommand has its own parent parsers, so a default set here reaches no other one."""
    for name, values in defaults.items():
        commands.choices[name].set_defaults(**values)


def run_steps(
    script: str,
    main: Callable[[list[str]], int],
    steps: Iterable[list[str]],
    seconds: dict[str, tuple[float, float]] | None = None,
) -> int:
    """Run a demo's ``steps`` through the script's ``main``, each as from the command line (parsed,
    checked and seeded); the first failing step's exit code stops the run (0: all passed).
    ``seconds``, when given, receives each finished step's (wall, CPU) seconds by subcommand."""
    for argv in steps:
        log.info("demo: %s %s", script, " ".join(argv))
        wall, cpu = time.monotonic(), cpu_seconds()
        code = main(argv)
        if code != 0:
            log.error("demo: step %r failed with exit code %d", argv[0], code)
            return code
        if seconds is not None:
            seconds[argv[0]] = (time.monotonic() - wall, cpu_seconds() - cpu)
    return 0


def cpu_seconds() -> float:
    """User + system CPU seconds of this process (all threads) and its finished children (loader
    workers, ffmpeg)."""
    who = (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    return sum(r.ru_utime + r.ru_stime for r in map(resource.getrusage, who))
