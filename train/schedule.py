"""Learning-rate schedules in epochs, applied at every optimizer step.

lr(group) = max(lr_base · lr_mult · schedule(epoch), min_lr) · warm-up(epoch) · batch_scale

where ``epoch`` is fractional (epoch index + fraction of the epoch done), so the schedule is
expressed in epochs whatever the number of steps (multigrid changes it). ``plateau`` is TAO's
AutoReduce: ReduceLROnPlateau semantics (mode min, relative threshold 1e-4) on ``val_loss`` or
``train_loss``, updated once per epoch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

__all__ = ["LRSchedule"]

PLATEAU_THRESHOLD = 1e-4  # torch ReduceLROnPlateau default (relative)


def _multistep(schedule: LRSchedule, epoch: float) -> float:
    passed = sum(1 for milestone in schedule.lr_steps if milestone <= int(epoch))
    return schedule.lr_factor**passed


def _cosine(schedule: LRSchedule, epoch: float) -> float:
    span = max(schedule.total_epochs - schedule.warmup_epochs, 1e-12)
    progress = min(max((epoch - schedule.warmup_epochs) / span, 0.0), 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _plateau(schedule: LRSchedule, epoch: float) -> float:
    return schedule.plateau_factor


def _constant(schedule: LRSchedule, epoch: float) -> float:
    return 1.0


# --lr-schedule name -> factor(schedule, fractional epoch)
SCHEDULES: dict[str, Callable[[Any, float], float]] = {
    "multistep": _multistep,  # × lr_factor at each --lr-steps epoch
    "cosine": _cosine,  # half cosine from the end of warm-up to min_lr
    "plateau": _plateau,  # × lr_factor after `patience` epochs without improvement
    "constant": _constant,
}


class LRSchedule:
    """Sets ``group["lr"]`` for every optimizer group; ``lr_lambda(progress)`` replaces the kind.

    Each group's base LR is ``lr_base × group["lr_mult"]``.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        lr_base: float,
        total_epochs: int,
        kind: str = "multistep",
        lr_steps: Sequence[int] = (),
        lr_factor: float = 0.1,
        min_lr: float = 0.0,
        warmup_epochs: float = 0.0,
        warmup_start_factor: float = 0.01,
        patience: int = 1,
        lr_lambda: Callable[[float], float] | None = None,
    ) -> None:
        if kind not in SCHEDULES:
            raise ValueError(f"unknown LR schedule {kind!r}; choose from {sorted(SCHEDULES)}")
        self.optimizer = optimizer
        self.lr_base = lr_base
        self.total_epochs = max(int(total_epochs), 1)
        self.kind = kind
        self.lr_steps = sorted(int(s) for s in lr_steps)
        self.lr_factor = lr_factor
        self.min_lr = min_lr
        self.warmup_epochs = warmup_epochs
        self.warmup_start_factor = warmup_start_factor
        self.patience = patience
        self.lr_lambda = lr_lambda
        self.plateau_factor = 1.0
        self.plateau_best = math.inf
        self.plateau_bad_epochs = 0

    def factor(self, epoch: float) -> float:
        """The schedule factor (before the min_lr floor and warm-up) at fractional ``epoch``."""
        if self.lr_lambda is not None:
            return float(self.lr_lambda(min(max(epoch / self.total_epochs, 0.0), 1.0)))
        return SCHEDULES[self.kind](self, epoch)

    def warmup(self, epoch: float) -> float:
        if epoch >= self.warmup_epochs or self.warmup_epochs <= 0:
            return 1.0
        start = self.warmup_start_factor
        return start + (1.0 - start) * epoch / self.warmup_epochs

    def lr(self, epoch: float, lr_mult: float = 1.0, batch_scale: float = 1.0) -> float:
        """The LR of a group with ``lr_mult`` at fractional ``epoch``."""
        base = self.lr_base * lr_mult
        factor = self.factor(epoch)
        if self.kind == "cosine" and self.lr_lambda is None:
            scheduled = self.min_lr + (base - self.min_lr) * factor
        else:
            scheduled = base * factor
        return max(scheduled, self.min_lr) * self.warmup(epoch) * batch_scale

    def step(self, epoch: float, batch_scale: float = 1.0) -> float:
        """Set every group's LR for the step at ``epoch``; returns the LR of the first group."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr(epoch, group.get("lr_mult", 1.0), batch_scale)
        return self.optimizer.param_groups[0]["lr"]

    def epoch_end(self, monitored: float | None) -> None:
        """Feed the epoch's monitored loss to the plateau rule (ignored by other kinds)."""
        if self.kind != "plateau" or monitored is None or not math.isfinite(monitored):
            return
        if monitored < self.plateau_best * (1.0 - PLATEAU_THRESHOLD):
            self.plateau_best = monitored
            self.plateau_bad_epochs = 0
            return
        self.plateau_bad_epochs += 1
        if self.plateau_bad_epochs > self.patience:
            self.plateau_factor *= self.lr_factor
            self.plateau_bad_epochs = 0

    def state_dict(self) -> dict[str, float]:
        return {
            "plateau_factor": self.plateau_factor,
            "plateau_best": self.plateau_best,
            "plateau_bad_epochs": self.plateau_bad_epochs,
        }

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.plateau_factor = float(state["plateau_factor"])
        self.plateau_best = float(state["plateau_best"])
        self.plateau_bad_epochs = int(state["plateau_bad_epochs"])
