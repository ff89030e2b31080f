"""Atomic file writes: a path always holds either its old content or the complete new one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write_bytes"]


def atomic_write_bytes(path: str | Path, data: bytes | memoryview, *, fsync: bool = True) -> Path:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place.

    With ``fsync`` the bytes and the rename are flushed to disk, so a crash or power loss cannot
    leave a truncated file (checkpoints, engines); without it only a killed process is covered,
    which is enough for files that are cheap to redo (image crops).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            if fsync:
                stream.flush()
                os.fsync(stream.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    if fsync:
        _fsync_directory(path.parent)
    return path


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (not possible on Windows, where it is skipped)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
