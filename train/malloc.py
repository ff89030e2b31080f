"""glibc malloc settings for the two kinds of process a run has: compute and data workers.

glibc serves any block above its mmap threshold (at most 32 MiB, however it adapts) with a fresh
``mmap`` and unmaps it on free. Activations of video and skeleton networks are tens to hundreds of
MiB, so with the defaults every forward pass faults in its buffers page by page again: on 2 CPU
cores that doubled the time of an ST-GCN forward (benchmarks/stgcn.py) and cost r3d_18 CPU
training steps a fifth of their speed when the threshold was 128 KiB. A compute process therefore
keeps freed blocks below 1 GiB in its heap for reuse (like PyTorch's CUDA caching allocator).

DataLoader workers want the opposite: clip-sized buffers that go back to the OS, or each worker's
memory creeps up over the first epochs (benchmarks/loader.py). ``worker_init_fn`` sets that.
Both return False where the C library is not glibc; nothing else changes then.
"""

from __future__ import annotations

import ctypes
import functools

__all__ = ["return_buffers_to_os", "reuse_large_buffers"]

M_TRIM_THRESHOLD = -1  # mallopt parameters, glibc's malloc.h
M_MMAP_THRESHOLD = -3
COMPUTE_MMAP_THRESHOLD = 1 << 30  # blocks up to 1 GiB stay in the heap for reuse
COMPUTE_TRIM_THRESHOLD = 1 << 30  # free heap top kept up to 1 GiB instead of trimmed
WORKER_MMAP_THRESHOLD = 128 << 10  # glibc's initial default, fixed so it does not adapt upwards
WORKER_TRIM_THRESHOLD = 128 << 10


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


def return_buffers_to_os(kib: int = WORKER_MMAP_THRESHOLD >> 10) -> bool:
    """Data workers: blocks above ``kib`` KiB are mmapped and returned to the OS when freed."""
    return _mallopt(kib << 10, max(kib << 10, WORKER_TRIM_THRESHOLD))
