"""Multigrid training (Wu et al., CVPR 2020), following PySlowFast rather than the SRTG code.

Long cycle: the clip shape changes with the epoch, from small clips in big batches to the full
shape, keeping batch × frames × size² roughly constant. Short cycle: within an epoch the spatial
size cycles through S/2, S/√2 and the long-cycle size from one iteration to the next.

Choices (see README "Multigrid"):
- Shapes change through :class:`MultigridBatchSampler`, which yields lists of
  ``(index, (T, H, W))`` (one shape per batch); DataLoaders are never rebuilt.
- Every epoch is one permutation of the training set chopped into batches of varying size, so
  each sample is seen exactly once per epoch (the SRTG code covers about half, bug 15).
- Two epoch schedules (``--multigrid-schedule``):

  ``pyslowfast`` (default) is PySlowFast's ``get_long_cycle_schedule``: ``--lr-steps`` and
  ``--end-epoch`` describe the baseline run; each LR stage but the last is split over the 4
  long-cycle shapes (epochs ∝ their average batch, so equal iterations per shape), the last
  stage becomes a full-shape fine-tune with the same iteration saving, and the whole run is
  stretched to ``EPOCH_FACTOR`` (1.5) × ``--end-epoch`` epochs. The LR steps move to the ends
  of the split stages, and the fine-tune holds the LR of the stage before it until its midpoint
  (PySlowFast's ``SOLVER.STEPS``/``SOLVER.LRS``). Short cycles continue in the fine-tune.
  Without LR steps the whole run is one split stage (PySlowFast needs steps; this is ActRec's
  reading), and without short cycles the average batch of a shape is its long-cycle batch
  (PySlowFast fails there with an IndexError).

  ``simple`` (ActRec's earlier schedule): the LR stage boundaries and ``--end-epoch`` are kept as
  given; each stage but the last is split over the 4 shapes the same way; the last stage is a
  base-shape fine-tune without short cycles. It trains ~1/1.5 of the pyslowfast epochs.
- LR: linear scaling by the long-cycle batch factor (8, 4, 2, 1); short cycles leave it alone.
- BN statistics over a fixed number of clips (``BN_BASE_SIZE`` = 8): the :func:`sub_batch_norm`
  context around the forward pass.

This module depends on nothing else in ``train/``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import itertools
import logging
import math
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Sampler

log = logging.getLogger(__name__)

__all__ = [
    "BN_BASE_SIZE",
    "EPOCH_FACTOR",
    "LONG_CYCLE_FACTORS",
    "MULTIGRID_SCHEDULES",
    "SHORT_CYCLE_FACTORS",
    "BatchShape",
    "MultigridBatchSampler",
    "MultigridSchedule",
    "build_schedule",
    "cycle_shapes",
    "long_cycle_shapes",
    "pyslowfast_average_batches",
    "resolve_multigrid",
    "round_to_multiple",
    "short_cycle_shapes",
    "sub_batch_norm",
]

# (frames factor, spatial factor) per long-cycle phase; the last one is the base shape.
LONG_CYCLE_FACTORS: tuple[tuple[float, float], ...] = (
    (0.25, 1 / math.sqrt(2)),  # 8B, T/4, S/√2
    (0.5, 1 / math.sqrt(2)),  # 4B, T/2, S/√2
    (0.5, 1.0),  # 2B, T/2, S
    (1.0, 1.0),  # B, T, S
)
# Spatial factors (of the base size) of the two short-cycle iterations before the long shape.
SHORT_CYCLE_FACTORS: tuple[float, ...] = (0.5, 1 / math.sqrt(2))
# Clips per batch-norm group (PySlowFast MULTIGRID.BN_BASE_SIZE).
BN_BASE_SIZE = 8
# Epochs of a multigrid run per baseline epoch (PySlowFast MULTIGRID.EPOCH_FACTOR).
EPOCH_FACTOR = 1.5
FULL_PHASE = len(LONG_CYCLE_FACTORS) - 1
# A training BatchNorm cannot normalise a single clip with 1×1×1 features: no smaller batches.
MIN_CLIPS_PER_RANK = 2


@dataclass(frozen=True)
class BatchShape:
    """Per-rank batch size and clip shape of one batch."""

    batch_size: int
    frames: int
    size: int

    @property
    def clip_shape(self) -> tuple[int, int, int]:
        """``(T, H, W)`` as passed to the dataset."""
        return (self.frames, self.size, self.size)


def round_to_multiple(value: float, multiple: int = 2) -> int:
    """``value`` rounded to the nearest multiple of ``multiple`` (at least ``multiple``)."""
    return max(multiple, round(value / multiple) * multiple)


def long_cycle_shapes(
    base_batch: int, base_frames: int, base_size: int, *, size_multiple: int = 2
) -> list[BatchShape]:
    """The 4 long-cycle shapes; batch factor ``round(T·S² / (t·s²))`` keeps B·T·S² constant.

    B=48, T=16, S=224 → (384, 4, 158), (192, 8, 158), (96, 8, 224), (48, 16, 224).
    """
    if min(base_batch, base_frames, base_size, size_multiple) < 1:
        raise ValueError(
            "base_batch, base_frames, base_size and size_multiple must be >= 1, got "
            f"{base_batch}, {base_frames}, {base_size}, {size_multiple}"
        )
    shapes = []
    for frames_factor, size_factor in LONG_CYCLE_FACTORS:
        frames = max(1, round(base_frames * frames_factor))
        size = round_to_multiple(base_size * size_factor, size_multiple)
        factor = max(1, round(base_frames * base_size**2 / (frames * size**2)))
        shapes.append(BatchShape(base_batch * factor, frames, size))
    return shapes


def short_cycle_shapes(
    long_shape: BatchShape, base_size: int, *, size_multiple: int = 2
) -> list[BatchShape]:
    """The 3 short-cycle shapes around ``long_shape``: sizes f·S for f in SHORT_CYCLE_FACTORS,
    then the long shape; batch multiplier ``round((S_long / (f·S))²)`` (PySlowFast):
    ×4, ×2, ×1 at the full size and ×2, ×1, ×1 at S/√2."""
    shapes = []
    for size_factor in SHORT_CYCLE_FACTORS:
        size = min(round_to_multiple(base_size * size_factor, size_multiple), long_shape.size)
        factor = max(1, round((long_shape.size / size) ** 2))
        shapes.append(BatchShape(long_shape.batch_size * factor, long_shape.frames, size))
    return [*shapes, long_shape]


def cycle_shapes(
    long_shape: BatchShape, *, short_cycles: bool, base_size: int, size_multiple: int = 2
) -> list[BatchShape]:
    """Shapes the batches of one long-cycle phase cycle through: 3 with short cycles, else 1."""
    if not short_cycles:
        return [long_shape]
    return short_cycle_shapes(long_shape, base_size, size_multiple=size_multiple)


def _phase_offsets(epochs: int, cumulative: Sequence[float]) -> list[int]:
    """First epoch of each phase within a stage of ``epochs`` epochs: ∝ ``cumulative`` weights,
    at least one epoch per phase when there are enough, and always one at the full shape."""
    offsets, previous = [0], 0
    for phase, fraction in enumerate(cumulative[:-1]):
        later_phases = len(cumulative) - 1 - phase
        if epochs > later_phases:
            offset = min(max(round(epochs * fraction), previous + 1), epochs - later_phases)
        else:  # too short for every phase: skip the smallest shapes, keep the full one
            offset = min(round(epochs * fraction), epochs - 1)
        offsets.append(max(offset, previous))
        previous = offsets[-1]
    return offsets


@dataclass(frozen=True)
class MultigridSchedule:
    """The long-cycle phase (0..3, 3 = full shape) of every epoch ``0 .. len(phases) - 1``;
    later epochs use the full shape. From ``finetune_start`` on (the last LR stage of the
    ``simple`` schedule) batches have the base shape only, without short cycles; the
    ``pyslowfast`` schedule has no such stage (``None``). ``end_epoch`` and ``lr_steps`` are the
    epochs the run trains and its LR steps, in the run's own epochs."""

    phases: tuple[int, ...]
    finetune_start: int | None = None
    end_epoch: int | None = None
    lr_steps: tuple[int, ...] = ()

    @classmethod
    def from_lr_steps(
        cls, lr_steps: Sequence[int], end_epoch: int, phase_weights: Sequence[float]
    ) -> MultigridSchedule:
        """The ``simple`` schedule: split each LR stage but the last over the phases, epochs ∝
        ``phase_weights`` (the average batch size of each phase, which gives equal iterations
        per phase); the last stage runs the full shape. Without LR steps the whole run is
        split. LR steps and ``end_epoch`` stay as given."""
        _check_weights(phase_weights)
        steps = _inner_steps(lr_steps, end_epoch)
        bounds = [0, *steps, end_epoch]
        stages = list(itertools.pairwise(bounds))
        split_stages = stages[:-1] if len(stages) > 1 else stages
        phases = [FULL_PHASE] * end_epoch
        cumulative = [sum(phase_weights[: i + 1]) / sum(phase_weights) for i in range(4)]
        for start, end in split_stages:
            phase_starts = [start + offset for offset in _phase_offsets(end - start, cumulative)]
            for phase, (first, last) in enumerate(zip(phase_starts, [*phase_starts[1:], end])):
                phases[first:last] = [phase] * (last - first)
        finetune_start = stages[-1][0] if len(stages) > 1 else None
        return cls(tuple(phases), finetune_start, end_epoch, tuple(steps))

    @classmethod
    def pyslowfast(
        cls,
        lr_steps: Sequence[int],
        end_epoch: int,
        average_batches: Sequence[float],
        epoch_factor: float = EPOCH_FACTOR,
    ) -> MultigridSchedule:
        """PySlowFast's ``get_long_cycle_schedule`` for the baseline ``lr_steps``/``end_epoch``.

        ``average_batches``: the mean batch factor of each phase's shapes
        (:func:`pyslowfast_average_batches`). Steps 94 154 196, end 239, factor 1.5 and the
        default shapes with short cycles give shape ends 73 110 142 158 | 205 228 248 259 |
        291 308 322 329 | 358, LR steps 158 259 343 and 358 epochs.
        """
        _check_weights(average_batches)
        steps = [0, *_inner_steps(lr_steps, end_epoch)]
        if len(steps) == 1:  # no LR steps: the whole run is one split stage, no fine-tune
            steps.append(end_epoch)
        entries = _pyslowfast_entries(steps, end_epoch, average_batches)
        scale = end_epoch * epoch_factor / sum(epochs for _, epochs in entries)
        ends, total = [], 0.0
        for _, epochs in entries:
            total += epochs * scale
            ends.append(round(total))
        phases: list[int] = []
        for (phase, _), (first, last) in zip(entries, itertools.pairwise([0, *ends])):
            phases += [phase] * (last - first)
        per_stage = len(average_batches)
        stage_ends = [ends[(stage + 1) * per_stage - 1] for stage in range(len(steps) - 1)]
        # The LR drops at the end of every split stage but the last; the fine-tune keeps that
        # stage's LR until its midpoint (PySlowFast overwrites its last step with the midpoint).
        lr_steps_run = [*stage_ends[:-1], (ends[-2] + ends[-1]) // 2]
        return cls(tuple(phases), None, ends[-1], tuple(s for s in lr_steps_run if s < ends[-1]))

    def phase(self, epoch: int) -> int:
        return self.phases[epoch] if 0 <= epoch < len(self.phases) else FULL_PHASE

    def is_finetune(self, epoch: int) -> bool:
        return self.finetune_start is not None and epoch >= self.finetune_start


def _check_weights(weights: Sequence[float]) -> None:
    if len(weights) != len(LONG_CYCLE_FACTORS):
        raise ValueError(f"need {len(LONG_CYCLE_FACTORS)} phase weights, got {weights}")


def _inner_steps(lr_steps: Sequence[int], end_epoch: int) -> list[int]:
    """Sorted distinct LR steps strictly inside the run."""
    return sorted({int(step) for step in lr_steps if 0 < step < end_epoch})


def _pyslowfast_entries(
    steps: Sequence[int], end_epoch: int, average_batches: Sequence[float]
) -> list[tuple[int, float]]:
    """(phase, unscaled epochs) per schedule entry: 4 per stage between ``steps`` (epochs ∝
    average batch), then the full-shape fine-tune with the same iteration saving. The
    arithmetic follows PySlowFast's order so that rounding ties fall the same way."""
    total_batch = sum(average_batches)
    entries, total_iters = [], 0.0
    for start, stop in itertools.pairwise(steps):
        for phase, batch in enumerate(average_batches):
            epochs = (stop - start) * batch / total_batch
            total_iters += epochs / batch
            entries.append((phase, epochs))
    iter_saving = steps[-1] / total_iters
    entries.append((FULL_PHASE, (end_epoch - steps[-1]) / iter_saving * average_batches[-1]))
    return entries


def pyslowfast_average_batches(
    base_frames: int, base_size: int, *, short_cycles: bool
) -> list[float]:
    """Mean batch factor of each long-cycle phase as PySlowFast's schedule computes it.

    Shapes ``(t, s)``: the short-cycle sizes f·S (not rounded) when ``short_cycles``, then the
    long-cycle shape (rounded); batch factor ``round(T·S² / (t·s²))``. T=16, S=224 with short
    cycles → 10.67, 5.33, 4.67, 2.33 (16 8 8 | 8 4 4 | 8 4 2 | 4 2 1, averaged).
    """
    default = float(base_frames * base_size**2)
    averages = []
    for frames_factor, size_factor in LONG_CYCLE_FACTORS:
        frames = max(1, round(base_frames * frames_factor))
        sizes = [base_size * factor for factor in SHORT_CYCLE_FACTORS] if short_cycles else []
        sizes.append(round(base_size * size_factor))
        batches = [round(default / (frames * size * size)) for size in sizes]
        averages.append(sum(batches) / len(batches))
    return averages


def _simple_weights(
    base_frames: int, base_size: int, *, short_cycles: bool, size_multiple: int
) -> list[float]:
    """Mean batch factor of each phase's shapes as ActRec's sampler builds them."""
    weights = []
    for long_shape in long_cycle_shapes(1, base_frames, base_size, size_multiple=size_multiple):
        shapes = cycle_shapes(
            long_shape, short_cycles=short_cycles, base_size=base_size, size_multiple=size_multiple
        )
        weights.append(sum(shape.batch_size for shape in shapes) / len(shapes))
    return weights


# --multigrid-schedule name -> what it does with the baseline --lr-steps/--end-epoch.
MULTIGRID_SCHEDULES: dict[str, str] = {
    "pyslowfast": "PySlowFast get_long_cycle_schedule: EPOCH_FACTOR × epochs, steps moved",
    "simple": "LR steps and end epoch as given; last stage a base-shape fine-tune",
}


def build_schedule(
    kind: str,
    *,
    lr_steps: Sequence[int],
    end_epoch: int,
    base_frames: int,
    base_size: int,
    short_cycles: bool,
    epoch_factor: float = EPOCH_FACTOR,
    size_multiple: int = 2,
) -> MultigridSchedule:
    """The long-cycle schedule ``kind`` (a :data:`MULTIGRID_SCHEDULES` key) of a run whose
    baseline has ``lr_steps`` and ``end_epoch``."""
    if kind == "pyslowfast":
        averages = pyslowfast_average_batches(base_frames, base_size, short_cycles=short_cycles)
        return MultigridSchedule.pyslowfast(lr_steps, end_epoch, averages, epoch_factor)
    if kind == "simple":
        weights = _simple_weights(
            base_frames, base_size, short_cycles=short_cycles, size_multiple=size_multiple
        )
        return MultigridSchedule.from_lr_steps(lr_steps, end_epoch, weights)
    raise ValueError(
        f"unknown multigrid schedule {kind!r}; choose from {list(MULTIGRID_SCHEDULES)}"
    )


def resolve_multigrid(
    args: argparse.Namespace,
) -> tuple[argparse.Namespace, MultigridSchedule | None]:
    """The arguments a run trains with, and its long-cycle schedule (``None`` without long
    cycles).

    Under ``--multigrid-schedule pyslowfast`` the returned copy has PySlowFast's epochs:
    with long cycles the schedule's ``end_epoch`` and (``multistep``) LR steps; with short
    cycles only ``int(EPOCH_FACTOR × e)`` for the end epoch and every step (PySlowFast
    ``init_multigrid``). ``args`` itself is never changed, so ``args.yaml`` keeps the baseline.
    """
    long_cycles = bool(getattr(args, "long_cycles", False))
    short_cycles = bool(getattr(args, "short_cycles", False))
    kind = getattr(args, "multigrid_schedule", "pyslowfast")
    factor = float(getattr(args, "multigrid_epoch_factor", EPOCH_FACTOR))
    multistep = getattr(args, "lr_schedule", "multistep") == "multistep"
    lr_steps = list(args.lr_steps or []) if multistep else []
    schedule = None
    if long_cycles:
        for needed in ("clip_length", "clip_size"):
            if getattr(args, needed, None) is None:
                raise ValueError(f"multigrid needs args.{needed} (the base clip shape)")
        schedule = build_schedule(
            kind,
            lr_steps=lr_steps,
            end_epoch=args.end_epoch,
            base_frames=args.clip_length,
            base_size=args.clip_size,
            short_cycles=short_cycles,
            epoch_factor=factor,
        )
    if kind != "pyslowfast" or not (long_cycles or short_cycles):
        return args, schedule
    resolved = copy.copy(args)
    if schedule is not None:
        resolved.end_epoch = schedule.end_epoch
        resolved.lr_steps = list(schedule.lr_steps) if multistep else args.lr_steps
    else:
        resolved.end_epoch = int(args.end_epoch * factor)
        resolved.lr_steps = [int(step * factor) for step in args.lr_steps or []]
    log.info(
        "multigrid (pyslowfast): %d baseline epochs -> %d, LR steps %s -> %s%s",
        args.end_epoch,
        resolved.end_epoch,
        list(args.lr_steps or []),
        list(resolved.lr_steps or []),
        f", long-cycle phases by epoch {_phase_runs(schedule.phases)}" if schedule else "",
    )
    return resolved, schedule


def _phase_runs(phases: Sequence[int]) -> str:
    """``0:0-72 1:73-109 ...``: each run of equal phases with its first and last epoch."""
    runs, start = [], 0
    for phase, group in itertools.groupby(phases):
        length = len(list(group))
        runs.append(f"{phase}:{start}-{start + length - 1}")
        start += length
    return " ".join(runs)


class MultigridBatchSampler(Sampler[list[tuple[int, tuple[int, int, int]]]]):
    """Batches of ``(index, (T, H, W))`` with one shape per batch, for one rank.

    Each epoch is a permutation of ``range(num_samples)`` (seeded by ``seed + epoch``; the same
    on every rank) chopped into global batches of ``world_size × batch_size`` following the
    epoch's shape cycle; rank r takes items ``r::world_size`` of each global batch, so all ranks
    have the same number of batches and every sample is used exactly once per epoch (a last global
    batch that would give a rank fewer than 2 clips is merged into the one before it, so BatchNorm
    never sees a single clip). ``drop_last`` drops a last global batch smaller than its nominal
    size instead.
    Long cycles need ``schedule``; without long cycles every epoch uses the base shape.
    """

    def __init__(
        self,
        num_samples: int,
        *,
        base_batch: int,
        base_frames: int,
        base_size: int,
        long_cycles: bool,
        short_cycles: bool,
        schedule: MultigridSchedule | None = None,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        size_multiple: int = 2,
    ) -> None:
        if num_samples < world_size:
            raise ValueError(f"{num_samples} training samples cannot fill {world_size} ranks")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        if long_cycles and schedule is None:
            raise ValueError("long cycles need a MultigridSchedule (see from_lr_schedule)")
        self.num_samples, self.shuffle, self.seed = num_samples, shuffle, seed
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.base_batch, self.base_size, self.size_multiple = base_batch, base_size, size_multiple
        self.long_cycles, self.short_cycles = long_cycles, short_cycles
        self.schedule = schedule
        self.long_shapes = long_cycle_shapes(
            base_batch, base_frames, base_size, size_multiple=size_multiple
        )
        self.epoch = 0

    @classmethod
    def from_lr_schedule(
        cls,
        num_samples: int,
        *,
        lr_steps: Sequence[int],
        end_epoch: int,
        schedule_kind: str = "pyslowfast",
        epoch_factor: float = EPOCH_FACTOR,
        **kwargs,
    ) -> MultigridBatchSampler:
        """Build the sampler with the :func:`build_schedule` ``schedule_kind`` of a baseline
        with ``lr_steps`` and ``end_epoch``; ``kwargs`` are the constructor's keywords (without
        ``schedule``). The run then trains ``sampler.schedule.end_epoch`` epochs."""
        schedule = build_schedule(
            schedule_kind,
            lr_steps=lr_steps,
            end_epoch=end_epoch,
            base_frames=kwargs["base_frames"],
            base_size=kwargs["base_size"],
            short_cycles=kwargs["short_cycles"],
            epoch_factor=epoch_factor,
            size_multiple=kwargs.get("size_multiple", 2),
        )
        return cls(num_samples, schedule=schedule, **kwargs)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def phase(self, epoch: int | None = None) -> int:
        """Long-cycle phase of ``epoch`` (default: the current one); 3 = full shape."""
        epoch = self.epoch if epoch is None else epoch
        return self.schedule.phase(epoch) if self.long_cycles else FULL_PHASE

    def cycle_shapes(self, phase: int) -> list[BatchShape]:
        """Shapes the batches of a phase cycle through (1 without short cycles, else 3)."""
        return cycle_shapes(
            self.long_shapes[phase],
            short_cycles=self.short_cycles,
            base_size=self.base_size,
            size_multiple=self.size_multiple,
        )

    def epoch_shapes(self, epoch: int | None = None) -> list[BatchShape]:
        """Shapes of the epoch's batches in cycle order (the base shape only in the fine-tune)."""
        epoch = self.epoch if epoch is None else epoch
        if self.schedule is not None and self.schedule.is_finetune(epoch):
            return [self.long_shapes[FULL_PHASE]]
        return self.cycle_shapes(self.phase(epoch))

    def lr_multiplier(self, epoch: int | None = None) -> float:
        """Linear LR scaling for the epoch: long-cycle batch / base batch (8, 4, 2 or 1);
        short cycles keep the LR (PySlowFast)."""
        return self.long_shapes[self.phase(epoch)].batch_size / self.base_batch

    def _global_batches(self) -> list[tuple[int, BatchShape]]:
        """(global batch length, shape) of every batch of the current epoch."""
        shapes = self.epoch_shapes()
        batches: list[tuple[int, BatchShape]] = []
        remaining, step = self.num_samples, 0
        while remaining > 0:
            shape = shapes[step % len(shapes)]
            nominal = shape.batch_size * self.world_size
            if remaining >= nominal:
                batches.append((nominal, shape))
                remaining -= nominal
                step += 1
                continue
            if self.drop_last:
                break
            if remaining < MIN_CLIPS_PER_RANK * self.world_size and batches:
                previous_size, shape = batches.pop()
                remaining += previous_size
            batches.append((remaining, shape))
            break
        return batches

    def __iter__(self) -> Iterator[list[tuple[int, tuple[int, int, int]]]]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.num_samples, generator=generator).tolist()
        else:
            order = list(range(self.num_samples))
        start = 0
        for size, shape in self._global_batches():
            local = order[start : start + size][self.rank :: self.world_size]
            start += size
            yield [(index, shape.clip_shape) for index in local]

    def __len__(self) -> int:
        return len(self._global_batches())


def _grouped_batch_norm(self: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
    """BatchNorm over groups of ``self._bn_group`` samples along dim 0; running statistics are
    updated once per call with the mean of the group statistics (PySlowFast SubBatchNorm3d)."""
    group = self._bn_group
    if not self.training or x.shape[0] <= group:
        return type(self).forward(self, x)
    full, rest = divmod(x.shape[0], group)
    sizes = [group] * full + ([rest] if rest else [])
    if 0 < rest < MIN_CLIPS_PER_RANK:  # a lone last clip joins the group before it
        sizes[-2:] = [group + rest]
    chunks = x.split(sizes)
    outputs = [
        F.batch_norm(chunk, None, None, self.weight, self.bias, True, 0.0, self.eps)
        for chunk in chunks
    ]
    if self.track_running_stats and self.running_mean is not None:
        _update_running_stats(self, chunks)
    return torch.cat(outputs)


@torch.no_grad()
def _update_running_stats(
    bn: nn.modules.batchnorm._BatchNorm, chunks: Sequence[torch.Tensor]
) -> None:
    dims = [0, *range(2, chunks[0].dim())]
    means = torch.stack([chunk.float().mean(dims) for chunk in chunks])
    variances = torch.stack([chunk.float().var(dims, unbiased=True) for chunk in chunks])
    bn.num_batches_tracked += 1
    momentum = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
    bn.running_mean.lerp_(means.mean(0).to(bn.running_mean.dtype), momentum)
    bn.running_var.lerp_(variances.mean(0).to(bn.running_var.dtype), momentum)


@contextlib.contextmanager
def sub_batch_norm(model: nn.Module, bn_batch: int = BN_BASE_SIZE) -> Iterator[nn.Module]:
    """Inside the context, every (non-sync) BatchNorm of ``model`` in training mode normalises
    groups of ``bn_batch`` clips separately, so BN statistics do not depend on the batch size.
    Convolutions still run on the whole batch; gradients are exact for this grouped BN."""
    if bn_batch < 2:
        raise ValueError(f"bn_batch must be >= 2, got {bn_batch}")
    patched = [
        module
        for module in model.modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm)
        and not isinstance(module, nn.SyncBatchNorm)
    ]
    for module in patched:
        module._bn_group = bn_batch
        module.forward = types.MethodType(_grouped_batch_norm, module)
    try:
        yield model
    finally:
        for module in patched:
            del module.forward
            del module._bn_group
