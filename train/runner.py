"""Running one subcommand of a family script: seeding, error reporting, process-group cleanup.

Every entry script ends with ``return run_command(COMMANDS[args.command], args)``, so all
families get the same exit codes: 0 success, 1 training diverged, 2 bad input (one line naming the
file, no traceback). Every command also gets the same malloc settings (``train.malloc``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Mapping

from data.framestore import FrameStoreError
from data.safe_pickle import UnsafePickleError
from data.video_dataset import VideoReadError
from train.distributed import cleanup_distributed
from train.engine import NonFiniteLossError
from train.logs import setup_logging
from train.malloc import reuse_large_buffers
from train.seeding import seed_everything

log = logging.getLogger(__name__)

# Errors that mean "this input is wrong", raised with a message naming the file (SplitError
# and the spec errors are ValueErrors).
USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    FileNotFoundError,
    FrameStoreError,
    VideoReadError,
    UnsafePickleError,
)


def run_command(
    command: Callable[[argparse.Namespace], int | None], args: argparse.Namespace
) -> int:
    """Run ``command(args)`` and map its outcome to an exit code.

    ``--random-seed`` is applied first, so that a network built by the command (before the engine
    seeds each epoch) starts from the same weights in every run. The process keeps its large
    buffers for reuse (``train.malloc``): every subcommand computes on big tensors.
    """
    reuse_large_buffers()
    seed = getattr(args, "random_seed", None)
    if seed is not None:
        seed_everything(seed)
    try:
        outcome = command(args)
    except NonFiniteLossError as error:
        log.error("%s", error)
        return 1
    except USER_ERRORS as error:
        log.error("%s", error)
        return 2
    finally:
        cleanup_distributed()
    return outcome if isinstance(outcome, int) else 0


def run_script(
    parse: Callable[[], argparse.Namespace],
    commands: Mapping[str, Callable[[argparse.Namespace], int | None]],
) -> int:
    """A family script's ``main``: parse (a bad spec file is one line and exit code 2, before
    logging is set up), set up logging, run the subcommand (``commands``, else ``args.func``)."""
    try:
        args = parse()
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    setup_logging(getattr(args, "log_level", "INFO"))
    return run_command(commands.get(args.command) or args.func, args)
