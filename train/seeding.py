"""Seeding: Python, NumPy, torch and DataLoader workers from one ``--random-seed``.

Every epoch re-seeds from ``(seed, epoch, rank)``, so an epoch's random draws (shuffling,
augmentation, dropout) do not depend on what ran before it: a resumed run repeats the epochs of
an uninterrupted one exactly on CPU.
"""

from __future__ import annotations

import random

import numpy as np
import torch

from train.malloc import return_buffers_to_os

__all__ = ["epoch_seed", "seed_everything", "worker_init_fn"]

_EPOCH_STRIDE = 1_000_003  # a prime, so (seed, epoch, rank) triples do not collide in practice
_RANK_STRIDE = 7919


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """The seed of one epoch on one process, in [0, 2**31)."""
    return (seed + epoch * _EPOCH_STRIDE + rank * _RANK_STRIDE) % (2**31)


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def worker_init_fn(worker_id: int) -> None:
    """Give each DataLoader worker its own Python/NumPy streams derived from torch's seed.

    torch seeds each worker with ``base_seed + worker_id`` (base_seed from the loader's
    generator); NumPy and ``random`` would otherwise be copies of the parent's state. Workers also
    hand their free heap pages back to the OS once a second (``train.malloc``).
    """
    return_buffers_to_os()
    seed = torch.initial_seed() % (2**32)
    random.seed(seed)
    np.random.seed(seed)
