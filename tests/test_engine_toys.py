"""Tiny in-memory datasets, a toy classifier and argument helpers for the engine tests.

No tests live here; ``test_engine*.py``, ``test_checkpoint.py`` and ``test_distributed.py``
import it.
"""

from __future__ import annotations

import argparse
import math
import socket
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from network.base import Classifier
from train.args import add_multigrid_arguments, common_parser

# One thread: these models are tiny, and thread start-up dominates on a busy 2-core machine.
torch.set_num_threads(1)

NUM_CLASSES = 3
FEATURES = 6
CLASS_NAMES = ["walk", "run", "fall"]


class ToyDataset(Dataset):
    """``(features (FEATURES,), label, sample_id)``; ``clips_per_video`` clips share an id."""

    def __init__(
        self, size: int = 24, *, seed: int = 0, clips_per_video: int = 1, noise: float = 0.05
    ) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(size) // clips_per_video % NUM_CLASSES
        centres = torch.nn.functional.one_hot(self.labels, FEATURES).float() * 2.0
        self.features = centres + torch.randn(size, FEATURES, generator=generator)
        self.clips_per_video = clips_per_video
        self.noise = noise

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        # Random noise per access: the per-epoch seeding must make it reproducible.
        noise = self.noise * torch.randn(FEATURES)
        return self.features[index] + noise, int(self.labels[index]), index // self.clips_per_video


class ToyClassifier(Classifier):
    """Linear → (BatchNorm) → ReLU → Dropout → Linear; optional regulariser and set_epoch."""

    def __init__(self, *, batch_norm: bool = False, dropout: float = 0.2, reg: float = 0.0) -> None:
        super().__init__()
        self.num_classes = NUM_CLASSES
        self.body = nn.Linear(FEATURES, 16)
        self.norm = nn.BatchNorm1d(16) if batch_norm else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(16, NUM_CLASSES)
        self.reg = reg
        self.epochs_seen: list[int] = []

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(torch.relu(self.norm(self.body(x))))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features)

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = nn.Linear(16, num_classes)

    def set_epoch(self, epoch: int) -> None:
        self.epochs_seen.append(epoch)

    def regularization_loss(self) -> torch.Tensor:
        return self.reg * self.body.weight.pow(2).sum()


class ShapeDataset(Dataset):
    """Video-like items for multigrid: accepts ``index`` or ``(index, (T, H, W))``."""

    def __init__(self, size: int = 16, *, frames: int = 4, side: int = 8) -> None:
        self.size, self.frames, self.side = size, frames, side
        self.seen: list[int] = []

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, item: int | tuple[int, tuple[int, int, int]]):
        index, (t, h, w) = (
            item if isinstance(item, tuple) else (item, (self.frames,) + (self.side,) * 2)
        )
        label = index % NUM_CLASSES
        self.seen.append((index, t, h, w))
        clip = torch.full((1, t, h, w), float(label)) + 0.1 * torch.randn(1, t, h, w)
        return clip, label, index


class TinyVideoNet(Classifier):
    """Conv3d → BN → global pool → Linear: works for any (T, H, W)."""

    def __init__(self) -> None:
        super().__init__()
        self.num_classes = NUM_CLASSES
        self.conv = nn.Conv3d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm3d(4)
        self.fc = nn.Linear(4, NUM_CLASSES)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3, 4))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features)

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = nn.Linear(4, num_classes)


def make_args(output_dir: Path | str, *extra: str) -> argparse.Namespace:
    """Engine arguments for fast CPU tests (no workers, no TensorBoard)."""
    parser = argparse.ArgumentParser(parents=[common_parser()])
    add_multigrid_arguments(parser)
    parser.add_argument("--clip-length", type=int, default=None)
    parser.add_argument("--clip-size", type=int, default=None)
    base = [
        "--output-dir", str(output_dir), "--end-epoch", "3", "--batch-size", "4",
        "--workers", "0", "--lr-base", "0.1", "--log-interval", "100", "--no-tensorboard", "--no-plots",
        "--device", "cpu",
    ]  # fmt: skip
    return parser.parse_args([*base, *extra])


def weights_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def close(a: float, b: float, tol: float = 1e-6) -> bool:
    return math.isclose(a, b, rel_tol=tol, abs_tol=tol)


def free_port() -> int:
    """A free TCP port on localhost (MASTER_PORT of a test process group)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
