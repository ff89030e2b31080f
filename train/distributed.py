"""One distributed module: the same code runs under ``python`` and ``torchrun``.

``torchrun --nproc_per_node N script.py ...`` sets RANK, WORLD_SIZE and LOCAL_RANK; without them
everything here degrades to a single process (rank 0 of 1).
"""

from __future__ import annotations

import datetime
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

__all__ = [
    "DEFAULT_TIMEOUT_MINUTES",
    "DistInfo",
    "DistributedTimeoutError",
    "barrier",
    "broadcast_object",
    "cleanup_distributed",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_distributed",
    "is_main_process",
    "reduce_across_processes",
    "watch_for_stalls",
]

log = logging.getLogger(__name__)

# torch waits 30 minutes (NCCL: 10) before a collective gives up; a stalled rank should be named
# sooner than that, and a healthy collective never waits minutes.
DEFAULT_TIMEOUT_MINUTES = 10.0
# Once a collective has timed out, the ranks are asked to check in for a tenth of --dist-timeout,
# within these bounds: every live rank times out of the same collective at about the same moment,
# so the check-in only needs to cover their skew, and the stall is named within 1.1x the timeout.
_CHECK_IN_SHARE = 0.1
_CHECK_IN_SECONDS = (1.0, 30.0)
_T = TypeVar("_T")


class DistributedTimeoutError(RuntimeError):
    """A rank did not answer within ``--dist-timeout``; the message names it where known."""


# The process group's timeout and a gloo group used only to find ranks that stopped answering
# (NCCL cannot say which rank is missing; gloo's monitored barrier can).
_state: dict[str, Any] = {"timeout": datetime.timedelta(minutes=DEFAULT_TIMEOUT_MINUTES)}


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``device`` is the one it should compute on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str | None = None, timeout_minutes: float | None = None) -> DistInfo:
    """Join the torchrun process group (NCCL on GPU, gloo on CPU) if there is one.

    ``device`` is ``"cuda"``, ``"cpu"``, ``"cuda:1"`` or ``None`` (CUDA when available). Under
    torchrun each process takes GPU ``LOCAL_RANK``. ``timeout_minutes`` (``--dist-timeout``,
    default ``DEFAULT_TIMEOUT_MINUTES``) bounds every collective: a rank that does not answer
    in time ends the run with :class:`DistributedTimeoutError`. Calling it twice is harmless.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    wanted = device or ("cuda" if torch.cuda.is_available() else "cpu")
    use_cuda = wanted.startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError(f"--device {wanted} asked for CUDA but no CUDA device is available")
    if use_cuda:
        index = local_rank if (world_size > 1 or ":" not in wanted) else int(wanted.split(":")[1])
        torch.cuda.set_device(index)
        resolved = torch.device("cuda", index)
    else:
        resolved = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        _join_group("nccl" if use_cuda else "gloo", rank, world_size, timeout_minutes)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=resolved)


def _join_group(backend: str, rank: int, world_size: int, timeout_minutes: float | None) -> None:
    minutes = DEFAULT_TIMEOUT_MINUTES if timeout_minutes is None else float(timeout_minutes)
    if not minutes > 0:
        raise ValueError(f"--dist-timeout must be a positive number of minutes, got {minutes}")
    timeout = datetime.timedelta(minutes=minutes)
    try:
        dist.init_process_group(
            backend=backend, store=_attempt_store(timeout), rank=rank, world_size=world_size,
            timeout=timeout,
        )  # fmt: skip
        _state["monitor"] = dist.new_group(backend="gloo", timeout=timeout)
    except RuntimeError as error:
        if not _is_timeout(error):
            raise
        raise DistributedTimeoutError(
            f"rank {rank}: not all {world_size} ranks joined the process group within "
            f"{_minutes(timeout)} (--dist-timeout); a rank failed to start or cannot reach "
            f"MASTER_ADDR {os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}"
        ) from None
    _state["timeout"] = timeout
    log.info("process group: backend %s, rank %d of %d, timeout %s", backend, rank, world_size,
             _minutes(timeout))  # fmt: skip


def _attempt_store(timeout: datetime.timedelta) -> dist.Store:
    """The torchrun store (``MASTER_ADDR:MASTER_PORT``) under a prefix of this restart attempt.

    torchrun's agent keeps one store across ``--max-restarts`` attempts: without a prefix, a
    restarted rank can read the address its dead predecessor published and the new group never
    forms (gloo "Connection refused": 3 of 5 restarts tried here on torch 2.14.1).
    """
    store, _, _ = next(dist.rendezvous("env://", timeout=timeout))
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return dist.PrefixStore(f"actrec/attempt_{attempt}", store)


def _minutes(timeout: datetime.timedelta) -> str:
    return f"{timeout.total_seconds() / 60:g} min"


def _is_timeout(error: BaseException) -> bool:
    text = str(error).lower()
    return "timed out" in text or "timeout" in text


# Words of the backends' timeout messages (gloo: "Timed out waiting 600000ms for recv operation",
# NCCL: "Watchdog caught collective operation timeout"); a DataLoader's "timed out" is not one.
_COLLECTIVE_WORDS = ("gloo", "nccl", "collective", "watchdog", "process group", "timed out waiting")


def _is_collective_timeout(error: BaseException) -> bool:
    text = str(error).lower()
    return _is_timeout(error) and any(word in text for word in _COLLECTIVE_WORDS)


def watch_for_stalls(step: Callable[[], _T]) -> _T:
    """Run ``step()``; a collective that times out inside it becomes a
    :class:`DistributedTimeoutError` naming the rank(s) that did not answer.

    Rank 0 learns the missing ranks from a monitored barrier on a separate gloo group (a tenth of
    the timeout, 1 to 30 s); the other ranks say that rank 0 names them.
    """
    try:
        return step()
    except RuntimeError as error:
        if not is_distributed() or isinstance(error, DistributedTimeoutError):
            raise
        if not _is_collective_timeout(error):
            raise
        raise DistributedTimeoutError(_stall_message()) from None


def _stall_message() -> str:
    timeout: datetime.timedelta = _state["timeout"]
    rank, waited = get_rank(), _minutes(timeout)
    check_in = datetime.timedelta(seconds=check_in_seconds(timeout))
    try:
        dist.monitored_barrier(group=_state.get("monitor"), timeout=check_in, wait_all_ranks=True)
    except RuntimeError as error:
        missing = _missing_ranks(str(error))
        if rank == 0 and missing:
            names = ", ".join(str(r) for r in missing)
            return (
                f"rank {names} did not answer within {waited} (--dist-timeout): "
                "stalled or dead (data loading, a hung device or an exception on that rank); "
                "stopping the job"
            )
        return (
            f"rank {rank}: a collective timed out after {waited} (--dist-timeout) and rank 0 "
            "did not confirm; rank 0 names the rank that stalled (or stalled itself)"
        )
    return (
        f"rank {rank}: a collective timed out after {waited} (--dist-timeout) although every "
        "rank answered the check-in: the ranks ran different collectives (unequal batch counts?)"
    )


def check_in_seconds(timeout: datetime.timedelta) -> float:
    """How long the ranks are given to check in after a collective timed out."""
    low, high = _CHECK_IN_SECONDS
    return min(max(_CHECK_IN_SHARE * timeout.total_seconds(), low), high)


def _missing_ranks(text: str) -> list[int]:
    """Ranks named in a monitored-barrier error ("Ranks 1, 3 failed to pass ...")."""
    match = re.search(r"Ranks? ([\d, ]+) failed to pass", text)
    return [int(r) for r in re.findall(r"\d+", match.group(1))] if match else []


def broadcast_object(value: _T) -> _T:
    """Rank 0's ``value`` on every rank (identity in a single process)."""
    if not is_distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0, group=_state.get("monitor"))
    return box[0]


def cleanup_distributed() -> None:
    """Leave the process group (end of a run)."""
    if is_distributed():
        _state.pop("monitor", None)
        dist.destroy_process_group()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """True on rank 0: the only process that logs and writes files."""
    return get_rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def reduce_across_processes(value: float | torch.Tensor, op: str = "mean") -> float | torch.Tensor:
    """Sum or mean of ``value`` over all processes (identity in a single process).

    Floats come back as floats, tensors as tensors (on their own device).
    """
    if op not in ("mean", "sum"):
        raise ValueError(f"op must be 'mean' or 'sum', got {op!r}")
    is_tensor = isinstance(value, torch.Tensor)
    if not is_distributed():
        return value
    device = _collective_device()
    tensor = (value.detach().clone() if is_tensor else torch.tensor(value, dtype=torch.float64)).to(
        device
    )
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    if op == "mean":
        tensor = tensor / get_world_size()
    return tensor.to(value.device) if is_tensor else float(tensor.item())


def _collective_device() -> torch.device:
    """NCCL needs CUDA tensors; gloo takes CPU ones."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
