"""Logging configured in one place: coloured console lines, quiet on non-zero ranks."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import coloredlogs

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: int | str = logging.INFO, *, rank: int | None = None) -> None:
    """Configure the root logger once per process.

    Only rank 0 (from ``rank`` or the torchrun ``RANK`` variable) logs at ``level``; other ranks
    log warnings and errors only, so a multi-process run prints each line once.
    """
    if rank is None:
        rank = int(os.environ.get("RANK", "0"))
    effective = level if rank == 0 else logging.WARNING
    fmt = FORMAT if rank == 0 else f"[rank {rank}] {FORMAT}"
    coloredlogs.install(level=effective, fmt=fmt, datefmt="%H:%M:%S", isatty=None)
    logging.getLogger("PIL").setLevel(logging.WARNING)
    logging.getLogger("matplotlib").setLevel(logging.WARNING)


@contextlib.contextmanager
def log_to_file(path: str | Path) -> Iterator[Path]:
    """Inside the context, also append every log record (INFO and up) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield path
    finally:
        root.removeHandler(handler)
        handler.close()
