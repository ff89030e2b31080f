"""glibc malloc settings (train.malloc): where a large tensor's memory comes from.

Each check runs in a fresh interpreter, because mallopt settings are process-wide, and reads
glibc's own accounting (``mallinfo2``: ``hblkhd`` bytes in mmapped blocks, ``arena`` bytes of heap).
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc"
    or tuple(int(p) for p in platform.libc_ver()[1].split(".")[:2]) < (2, 33),
    reason="needs glibc ≥ 2.33 (mallinfo2)",
)

ROOT = Path(__file__).resolve().parents[1]

# Allocations go through ctypes' malloc, as torch's CPU allocator's do, so a probe starts in a
# tenth of a second instead of importing torch (seconds on 2 loaded cores).
ALLOC = """
import ctypes, json, os, sys, time
from train import malloc

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]

def touched(size):
    pointer = libc.malloc(size)
    ctypes.memset(pointer, 1, size)
    return pointer

def resident_mib():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") >> 20
"""

PROBE = (
    ALLOC
    + """
ok = getattr(malloc, sys.argv[1])()
before = libc.mallinfo2()
block = touched(int(sys.argv[2]) << 20)
mapped = libc.mallinfo2().hblkhd - before.hblkhd
libc.free(block)
kept = libc.mallinfo2().arena - before.arena  # heap growth still held after the free
after_free = resident_mib()
time.sleep(float(sys.argv[3]))
print(json.dumps({"ok": ok, "mapped_mib": mapped >> 20, "kept_mib": kept >> 20,
                  "released_mib": after_free - resident_mib()}))
"""
)


def _probe(setting: str, mib: int, wait_seconds: float = 0.0) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, setting, str(mib), str(wait_seconds)],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_compute_processes_keep_large_blocks_in_the_heap() -> None:
    result = _probe("reuse_large_buffers", 200)  # above glibc's largest adaptive threshold
    assert result["ok"] is True
    assert result["mapped_mib"] == 0
    assert (
        result["kept_mib"] >= 150
    )  # most of it kept after the free, ready for the next forward pass


def test_workers_reuse_buffers_and_return_free_pages_to_the_os() -> None:
    result = _probe("return_buffers_to_os", 200, wait_seconds=1.5)  # one trim period and a half
    assert result["ok"] is True
    assert result["mapped_mib"] == 0  # clip buffers come from the heap: no page faults per clip
    assert result["released_mib"] >= 150  # the periodic trim gave the free pages back


def test_compute_processes_do_not_trim() -> None:
    result = _probe("reuse_large_buffers", 200, wait_seconds=1.5)
    assert result["released_mib"] < 50


def test_runner_applies_the_compute_setting(monkeypatch) -> None:
    import argparse

    from train import runner

    calls = []
    monkeypatch.setattr(runner, "reuse_large_buffers", lambda: calls.append(1) or True)
    assert runner.run_command(lambda args: 0, argparse.Namespace()) == 0
    assert calls == [1]


SLACK_PROBE = (
    ALLOC
    + """
assert malloc.return_buffers_to_os(period_seconds=0.2, free_slack_bytes=int(sys.argv[1]) << 20)
blocks = [touched(1 << 20) for _ in range(101)]  # 101 MiB of touched heap blocks
for block in blocks[:-1]:  # 100 MiB free inside the heap, below the last block
    libc.free(block)
free_mib, before = malloc.free_heap_bytes() >> 20, resident_mib()
time.sleep(0.7)
print(json.dumps({"free_mib": free_mib, "released_mib": before - resident_mib()}))
"""
)

# A worker whose every clip needs more than the slack (full-size frames): 100 MiB in 1 MiB
# blocks, touched and freed per clip, for about 20 trim periods.
CLIPS_PROBE = (
    ALLOC
    + """
import resource
assert malloc.return_buffers_to_os(period_seconds=0.05, free_slack_bytes=int(sys.argv[1]) << 20)
def clip():
    for block in [touched(1 << 20) for _ in range(100)]:
        libc.free(block)
clip()
time.sleep(0.2)  # the first trim: the free heap is above the slack
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
start = time.monotonic()
while time.monotonic() - start < 1.0:
    clip()
    time.sleep(0.01)
print(json.dumps({"faulted_mib": (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults)
                  * os.sysconf("SC_PAGE_SIZE") >> 20}))
"""
)


@pytest.mark.parametrize(("slack_mib", "trimmed"), [(64, True), (512, False)])
def test_workers_trim_only_when_more_than_the_slack_lies_free(slack_mib, trimmed) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SLACK_PROBE, str(slack_mib)],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["free_mib"] >= 90
    if trimmed:  # 100 MiB free > 64 MiB slack: the pages go back to the OS
        assert result["released_mib"] >= 80
    else:  # below the slack: kept for the next clips, no page faults
        assert result["released_mib"] < 20


def test_a_worker_whose_clips_need_more_than_the_slack_is_not_trimmed_per_clip() -> None:
    """Trimmed pages stay on malloc's free lists: the free heap reads as high after a trim, and a
    trigger on that level trimmed every period, faulting the clip's 100 MiB back each time
    (about 2 GiB here). On growth, the first trim is the only one."""
    done = subprocess.run(
        [sys.executable, "-c", CLIPS_PROBE, "64"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    faulted = json.loads(done.stdout.strip().splitlines()[-1])["faulted_mib"]
    assert faulted < 150  # at most the pages of one trim refaulted, not one trim per period
