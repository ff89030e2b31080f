"""One distributed module: the same code runs under ``python`` and ``torchrun``.

``torchrun --nproc_per_node N script.py ...`` sets RANK, WORLD_SIZE and LOCAL_RANK; without them
everything here degrades to a single process (rank 0 of 1).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = [
    "DistInfo",
    "barrier",
    "cleanup_distributed",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_distributed",
    "is_main_process",
    "reduce_across_processes",
]

log = logging.getLogger(__name__)


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


def init_distributed(device: str | None = None) -> DistInfo:
    """Join the torchrun process group (NCCL on GPU, gloo on CPU) if there is one.

    ``device`` is ``"cuda"``, ``"cpu"``, ``"cuda:1"`` or ``None`` (CUDA when available). Under
    torchrun each process takes GPU ``LOCAL_RANK``. Calling it twice is harmless.
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
        backend = "nccl" if use_cuda else "gloo"
        dist.init_process_group(backend=backend, init_method="env://")
        log.info("process group: backend %s, rank %d of %d", backend, rank, world_size)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=resolved)


def cleanup_distributed() -> None:
    """Leave the process group (end of a run)."""
    if is_distributed():
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
