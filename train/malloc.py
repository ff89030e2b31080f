"""glibc malloc settings for the two kinds of process a run has: compute and data workers.

glibc serves any block above its mmap threshold (at most 32 MiB, however it adapts) with a fresh
``mmap`` and unmaps it on free. Activations of video and skeleton networks are tens to hundreds of
MiB, so with the defaults every forward pass faults in its buffers page by page again: on 2 CPU
cores that doubled the time of an ST-GCN forward (benchmarks/stgcn.py) and cost r3d_18 CPU
training steps a fifth of their speed when the threshold was 128 KiB. A compute process therefore
keeps freed blocks below 1 GiB in its heap for reuse (like PyTorch's CUDA caching allocator).

DataLoader workers reuse their clip buffers the same way (with a 128 KiB threshold every clip's
buffers were faulted in afresh: 0.6× the clips/s in benchmarks/loader.py), but heap
fragmentation then grows each worker's memory over the epochs (+230 MiB in 10 passes). A daemon
thread in each worker therefore looks at the free heap once a second (``mallinfo2``, a walk of
the free lists) and hands free pages back to the OS (``malloc_trim``) when the free heap has
grown by more than ``WORKER_FREE_SLACK_BYTES`` beyond what it was at the last trim. Growth, not
level: a worker whose clips need more than the slack (full-size frames under ``--exact-decode``)
frees that much after every clip, and a trigger on the level trimmed it every second, so its
buffers were faulted in afresh for every clip (38.5 against 27.0 ms/clip, 14 ms of it system
time). On growth it is trimmed once, and again only when fragmentation has added another slack's
worth of free heap beyond the most its clips ever freed; each trim still hands every free page
back. ``worker_init_fn`` sets that. All return False where the C library
is not glibc; nothing else changes then.
"""

from __future__ import annotations

import ctypes
import functools
import threading
import time

__all__ = ["free_heap_bytes", "return_buffers_to_os", "reuse_large_buffers"]

M_TRIM_THRESHOLD = -1  # mallopt parameters, glibc's malloc.h
M_MMAP_THRESHOLD = -3
COMPUTE_MMAP_THRESHOLD = 1 << 30  # blocks up to 1 GiB stay in the heap for reuse
COMPUTE_TRIM_THRESHOLD = 1 << 30  # free heap top kept up to 1 GiB instead of trimmed
TRIM_PERIOD_SECONDS = 1.0
# Free heap a worker may hold before it is trimmed: a few clips' buffers (a 16-frame 360p clip
# decodes to 8 MiB), far below the fragmentation that grew workers by hundreds of MiB.
WORKER_FREE_SLACK_BYTES = 64 << 20


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


@functools.lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - glibc only: other C libraries lack it
    except (OSError, AttributeError):
        return None
    return libc


def _mallopt(mmap_threshold: int, trim_threshold: int) -> bool:
    libc = _libc()
    if libc is None:
        return False
    return bool(
        libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold)
        and libc.mallopt(M_TRIM_THRESHOLD, trim_threshold)
    )


def reuse_large_buffers() -> bool:
    """Compute processes: freed blocks up to 1 GiB stay in the heap and are reused."""
    return _mallopt(COMPUTE_MMAP_THRESHOLD, COMPUTE_TRIM_THRESHOLD)


def return_buffers_to_os(
    period_seconds: float = TRIM_PERIOD_SECONDS, free_slack_bytes: int | None = None
) -> bool:
    """Data workers: reuse buffers as compute processes do; every ``period_seconds`` a daemon
    thread gives free heap pages back to the OS (``malloc_trim``) when the free heap has grown
    by more than ``free_slack_bytes`` (default ``WORKER_FREE_SLACK_BYTES``; 0: every period)
    since the last trim."""
    if not reuse_large_buffers():
        return False
    libc = _libc()
    slack = WORKER_FREE_SLACK_BYTES if free_slack_bytes is None else int(free_slack_bytes)
    free_bytes = _free_heap_reader(libc) if slack > 0 else None
    threading.Thread(
        target=_trim_forever, args=(libc, period_seconds, slack, free_bytes), daemon=True
    ).start()
    return True


def free_heap_bytes() -> int | None:
    """Bytes free inside malloc's heaps (all arenas), or None without glibc >= 2.33."""
    reader = _free_heap_reader(_libc())
    return None if reader is None else reader()


def _free_heap_reader(libc: ctypes.CDLL | None):
    mallinfo2 = getattr(libc, "mallinfo2", None)
    if mallinfo2 is None:  # glibc < 2.33: no 64-bit statistics; trim every period then
        return None
    mallinfo2.restype = _MallInfo2
    return lambda: int(mallinfo2().fordblks)


def _trim_forever(libc: ctypes.CDLL, period_seconds: float, slack: int, free_bytes) -> None:
    level = 0  # the free heap when last trimmed: the most the worker's own clips free at once
    while True:
        time.sleep(period_seconds)
        free = None if free_bytes is None else free_bytes()
        if free is None or free > level + slack:
            libc.malloc_trim(0)
            level = max(level, free or 0)
