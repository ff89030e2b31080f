"""glibc malloc settings for the two kinds of process a run has: compute and data workers.

glibc serves any block above its mmap threshold (at most 32 MiB, however it adapts) with a fresh
``mmap`` and unmaps it on free. Activations of video and skeleton networks are tens to hundreds of
MiB, so with the defaults every forward pass faults in its buffers page by page again: on 2 CPU
cores that doubled the time of an ST-GCN forward (benchmarks/stgcn.py) and cost r3d_18 CPU
training steps a fifth of their speed when the threshold was 128 KiB. A compute process therefore
keeps freed blocks below 1 GiB in its heap for reuse (like PyTorch's CUDA caching allocator).

DataLoader workers reuse their clip buffers the same way (with a 128 KiB threshold every clip's
buffers were faulted in afresh: 0.6× the clips/s in benchmarks/loader.py), but heap
fragmentation then grows each worker's memory over the epochs (+230 MiB in 10 passes), so a
daemon thread in each worker hands free heap pages back to the OS once a second
(``malloc_trim``). ``worker_init_fn`` sets that. Both return False where the C library is not
glibc; nothing else changes then.
"""

from __future__ import annotations

import ctypes
import functools
import threading
import time

__all__ = ["return_buffers_to_os", "reuse_large_buffers"]

M_TRIM_THRESHOLD = -1  # mallopt parameters, glibc's malloc.h
M_MMAP_THRESHOLD = -3
COMPUTE_MMAP_THRESHOLD = 1 << 30  # blocks up to 1 GiB stay in the heap for reuse
COMPUTE_TRIM_THRESHOLD = 1 << 30  # free heap top kept up to 1 GiB instead of trimmed
TRIM_PERIOD_SECONDS = 1.0


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


def return_buffers_to_os(period_seconds: float = TRIM_PERIOD_SECONDS) -> bool:
    """Data workers: reuse buffers as compute processes do, and give free heap pages back to the
    OS every ``period_seconds`` (``malloc_trim`` from a daemon thread), so memory stays flat."""
    if not reuse_large_buffers():
        return False
    libc = _libc()
    threading.Thread(target=_trim_forever, args=(libc, period_seconds), daemon=True).start()
    return True


def _trim_forever(libc: ctypes.CDLL, period_seconds: float) -> None:
    while True:
        time.sleep(period_seconds)
        libc.malloc_trim(0)
