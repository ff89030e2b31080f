"""A torchrun target for tests/test_launcher.py: the toy classifier trained by the one engine.

    torchrun ... tests/launch_toy.py OUTPUT_DIR GLOBAL_BATCH [KILL_RANK KILL_EPOCH KILL_STEP]

Each process trains with GLOBAL_BATCH // WORLD_SIZE clips per step. With the kill arguments, rank
KILL_RANK SIGKILLs itself at step KILL_STEP of epoch KILL_EPOCH on the launcher's first attempt
(TORCHELASTIC_RESTART_COUNT 0), as a crashed node would, after writing OUTPUT_DIR.killed; a
restart resumes from latest.pth.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

import torch  # noqa: E402
from test_engine_toys import CLASS_NAMES, ToyClassifier, ToyDataset, make_args  # noqa: E402

from train.distributed import cleanup_distributed, init_distributed  # noqa: E402
from train.engine import fit  # noqa: E402

FLAGS = ("--end-epoch", "3", "--lr-steps", "2", "--weight-decay", "1e-3")


class _KillingClassifier(ToyClassifier):
    """Counts forward passes per epoch and kills its own process at the chosen one."""

    def __init__(self, kill: tuple[int, int, int] | None, killed_file: Path) -> None:
        super().__init__(dropout=0.0)
        self.kill, self.killed_file = kill, killed_file
        self.epoch, self.step = 0, 0

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.epoch, self.step = epoch, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.step += 1
            first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
            rank, epoch, step = self.kill or (-1, -1, -1)
            here = (int(os.environ.get("RANK", "0")), self.epoch, self.step)
            if first_attempt and here == (rank, epoch, step):
                self.killed_file.write_text(f"rank {rank} killed at epoch {epoch} step {step}")
                os.kill(os.getpid(), signal.SIGKILL)
        return super().forward(x)


def train(output_dir: str, global_batch: int, kill: tuple[int, int, int] | None = None) -> None:
    """Train the toy model into ``output_dir`` (auto-resuming from its latest.pth)."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    info = init_distributed("cpu")
    batch = global_batch // info.world_size
    args = make_args(output_dir, *FLAGS, "--batch-size", str(batch))
    fit(
        _KillingClassifier(kill, Path(f"{output_dir}.killed")),
        ToyDataset(24, noise=0.0),
        ToyDataset(10, seed=1, clips_per_video=2, noise=0.0),
        args,
        family="video",
        class_names=CLASS_NAMES,
    )
    cleanup_distributed()


if __name__ == "__main__":
    output, global_batch, *kill = sys.argv[1:]
    train(output, int(global_batch), tuple(int(k) for k in kill) if kill else None)
