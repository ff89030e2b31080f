"""DataLoaders built once per run: seeded per epoch, sharded per rank, multigrid through the
batch sampler (the loader is never re-created for a new clip shape)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from safeio.excluded import ExcludedItem, ExcludingCollate
from train.distributed import DistInfo
from train.metrics import EvalShardSampler
from train.multigrid import MultigridBatchSampler, MultigridSchedule, resolve_multigrid
from train.seeding import epoch_seed, worker_init_fn

__all__ = [
    "FinishedBatches",
    "build_eval_loader",
    "build_train_loader",
    "multigrid_enabled",
    "set_loader_epoch",
]


def multigrid_enabled(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "long_cycles", False) or getattr(args, "short_cycles", False))


def _multigrid_sampler(
    dataset: Dataset,
    args: argparse.Namespace,
    info: DistInfo,
    schedule: MultigridSchedule | None,
) -> MultigridBatchSampler:
    """``schedule``: the long-cycle schedule from ``resolve_multigrid`` (made here if None)."""
    for needed in ("clip_length", "clip_size"):
        if getattr(args, needed, None) is None:
            raise ValueError(f"multigrid needs args.{needed} (the base clip shape)")
    if schedule is None:
        schedule = resolve_multigrid(args)[1]
    return MultigridBatchSampler(
        len(dataset),
        schedule=schedule,
        base_batch=args.batch_size,
        base_frames=args.clip_length,
        base_size=args.clip_size,
        long_cycles=bool(getattr(args, "long_cycles", False)),
        short_cycles=bool(getattr(args, "short_cycles", False)),
        seed=args.random_seed,
        rank=info.rank,
        world_size=info.world_size,
    )


def build_train_loader(
    dataset: Dataset,
    args: argparse.Namespace,
    info: DistInfo,
    *,
    batch_sampler: Sampler | None = None,
    collate_fn: Callable | None = None,
    multigrid_schedule: MultigridSchedule | None = None,
    persistent_workers: bool = False,
) -> DataLoader:
    """Shuffled training batches for this rank (``persistent_workers``: workers outlive a pass,
    as benchmarks/loader.py uses them to watch worker memory).

    Priority: a family's ``batch_sampler``; else the multigrid sampler when ``--long-cycles`` or
    ``--short-cycles`` is on; else a ``DistributedSampler`` (also for one process, so the order
    depends only on the seed and epoch, never on the world size), last partial batch dropped
    only when it would leave a single clip (BatchNorm cannot train on one).
    """
    if batch_sampler is None and multigrid_enabled(args):
        batch_sampler = _multigrid_sampler(dataset, args, info, multigrid_schedule)
    common = _common_loader_kwargs(args, info, collate_fn or _dataset_collate(dataset))
    if persistent_workers and common["num_workers"] > 0:
        common["persistent_workers"] = True
    if batch_sampler is not None:
        loader = DataLoader(dataset, batch_sampler=batch_sampler, **common)
        return _finished(loader, dataset, info, evaluation=False)
    sampler = DistributedSampler(
        dataset,
        num_replicas=info.world_size,
        rank=info.rank,
        shuffle=True,
        seed=args.random_seed,
        drop_last=info.world_size > 1,
    )
    per_rank = len(sampler)
    drop_last = per_rank % args.batch_size == 1 and per_rank > 1
    loader = DataLoader(
        dataset, batch_size=args.batch_size, sampler=sampler, drop_last=drop_last, **common
    )
    return _finished(loader, dataset, info, evaluation=False)


def build_eval_loader(
    dataset: Dataset,
    args: argparse.Namespace,
    info: DistInfo,
    *,
    collate_fn: Callable | None = None,
) -> DataLoader:
    """In-order evaluation batches; each rank gets a disjoint shard (no padding duplicates).

    Batches are ``(collated scored items or None, [ExcludedItem, ...])``: items a dataset could
    not read are passed on by name, never substituted (``safeio.excluded``)."""
    sampler = EvalShardSampler(len(dataset), rank=info.rank, world_size=info.world_size)
    batch_size = getattr(args, "eval_batch_size", None) or args.batch_size
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        **_common_loader_kwargs(
            args, info, ExcludingCollate(collate_fn or _dataset_collate(dataset))
        ),
    )
    return _finished(loader, dataset, info, evaluation=True)


def _dataset_collate(dataset: Dataset) -> Callable | None:
    """A dataset's own collate function (``VideoClipDataset.collate_fn``), if it has one."""
    return getattr(dataset, "collate_fn", None)


def _finished(
    loader: DataLoader, dataset: Dataset, info: DistInfo, *, evaluation: bool
) -> DataLoader | FinishedBatches:
    finisher = getattr(dataset, "batch_finisher", None)
    if finisher is None:
        return loader
    return FinishedBatches(loader, finisher, info.device, evaluation=evaluation)


class FinishedBatches:
    """A DataLoader whose batches the main process finishes on ``device`` with the dataset's
    ``batch_finisher`` (``finish_batch(batch, device) -> (batch or None, dropped)``): uint8
    clips normalised per batch, or JPEG bytes decoded and augmented on the GPU.

    Length, sampler, batch sampler and generator are the loader's. Training batches whose clips
    were all dropped are left out; evaluation batches keep the ``(batch, excluded)`` form of
    ``safeio.excluded`` and list dropped clips as excluded items.
    """

    def __init__(
        self, loader: DataLoader, finisher: Any, device: torch.device, *, evaluation: bool
    ) -> None:
        self.loader, self.finisher, self.device = loader, finisher, device
        self.evaluation = evaluation

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str) -> Any:
        if name == "loader":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.loader, name)

    def __iter__(self):
        for batch in self.loader:
            if not self.evaluation:
                finished, _ = self.finisher.finish_batch(batch, self.device)
                if finished is not None:
                    yield finished
                continue
            inner, excluded = batch
            if inner is not None:
                inner, dropped = self.finisher.finish_batch(inner, self.device)
                excluded = [*excluded, *(ExcludedItem(*d) for d in dropped)]
            yield inner, excluded


def _common_loader_kwargs(
    args: argparse.Namespace, info: DistInfo, collate_fn: Callable | None
) -> dict[str, Any]:
    workers = max(0, int(args.workers))
    kwargs: dict[str, Any] = {
        "num_workers": workers,
        "pin_memory": info.device.type == "cuda",
        "worker_init_fn": worker_init_fn,
        "generator": torch.Generator().manual_seed(epoch_seed(args.random_seed, 0, info.rank)),
    }
    if collate_fn is not None:
        kwargs["collate_fn"] = collate_fn
    if workers > 0:
        kwargs["prefetch_factor"] = 2
    return kwargs


def set_loader_epoch(loader: DataLoader, epoch: int, seed: int, rank: int = 0) -> None:
    """Re-seed shuffling and worker seeds for ``epoch`` (before iterating it)."""
    for sampler in (loader.sampler, loader.batch_sampler):
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
    if loader.generator is not None:
        loader.generator.manual_seed(epoch_seed(seed, epoch, rank))
