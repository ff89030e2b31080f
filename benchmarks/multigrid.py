"""Wall-clock to a target synthetic accuracy, with and without multigrid, through the one engine.

    python benchmarks/multigrid.py                          # CPU: r3d_tiny, 8×32×32 clips
    python benchmarks/multigrid.py --device cuda --network r3d_18 --clip-length 16 \\
        --clip-size 112 --train-videos 2000 --batch-size 16

Each row trains the same network from the same seed with ``train.engine.fit`` on moving-shape
clips rendered in memory at any requested ``(T, H, W)`` (a clip spans the same time whatever T,
as the multigrid contract asks of VideoClipDataset): ``baseline`` (no cycles), ``short``
(short cycles), ``long`` (long cycles) and ``long+short``. The time of an epoch is taken when
the engine calls ``model.set_epoch`` for the next one (so it includes validation, the same for
every row). Reported: epochs and seconds until validation video top-1 first reaches
``--target``, the speed-up against the baseline, and the final accuracy.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from network import build_model
from train.args import add_multigrid_arguments, common_parser
from train.engine import fit
from train.history import read_metrics
from train.logs import setup_logging

# Row name -> multigrid flags.
MODES: dict[str, tuple[str, ...]] = {
    "baseline": ("--no-long-cycles", "--no-short-cycles"),
    "short": ("--no-long-cycles", "--short-cycles"),
    "long": ("--long-cycles", "--no-short-cycles"),
    "long+short": ("--long-cycles", "--short-cycles"),
}
# Class -> direction of motion (dy, dx) in frame heights per clip duration.
DIRECTIONS = ((0.0, 0.5), (0.0, -0.5), (0.5, 0.0), (-0.5, 0.0))


class MovingShapes(Dataset):
    """A bright square crossing a noisy background; the class is its direction of motion.

    Items: ``(clip (3, T, H, W) float, label, index)``; ``__getitem__`` takes an index or
    ``(index, (T, H, W))``. Video ``i`` has fixed start, size, colour and speed (from ``seed``),
    so every clip shape shows the same motion over the same time span.
    """

    def __init__(self, num_videos: int, *, frames: int, size: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.num_videos, self.frames, self.size, self.seed = num_videos, frames, size, seed
        self.labels = torch.arange(num_videos) % len(DIRECTIONS)
        self.starts = 0.25 + 0.5 * torch.rand(num_videos, 2, generator=generator)
        self.sides = 0.15 + 0.1 * torch.rand(num_videos, generator=generator)
        self.colours = 0.5 + 0.5 * torch.rand(num_videos, 3, generator=generator)
        self.speeds = 0.6 + 0.8 * torch.rand(num_videos, generator=generator)

    def __len__(self) -> int:
        return self.num_videos

    def __getitem__(self, item: int | tuple[int, tuple[int, int, int]]):
        index, (frames, height, width) = (
            item if isinstance(item, tuple) else (item, (self.frames, self.size, self.size))
        )
        label = int(self.labels[index])
        times = (torch.arange(frames) + 0.5) / frames - 0.5  # same span for every T
        motion = torch.tensor(DIRECTIONS[label]) * self.speeds[index]
        centres = self.starts[index] + times[:, None] * motion  # (T, 2) as (y, x) in [0, 1]
        ys = (torch.arange(height) + 0.5) / height
        xs = (torch.arange(width) + 0.5) / width
        half = self.sides[index] / 2
        inside_y = (ys[None, :] - centres[:, :1]).abs() <= half  # (T, H)
        inside_x = (xs[None, :] - centres[:, 1:]).abs() <= half  # (T, W)
        mask = (inside_y[:, :, None] & inside_x[:, None, :]).float()  # (T, H, W)
        noise = torch.Generator().manual_seed(self.seed * 100_003 + index)
        background = 0.3 * torch.rand(3, frames, height, width, generator=noise)
        clip = background + self.colours[index][:, None, None, None] * mask[None]
        return (clip - 0.5) / 0.5, label, index


def engine_args(options: argparse.Namespace, run_dir: Path, mode: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(parents=[common_parser()])
    add_multigrid_arguments(parser)
    parser.add_argument("--clip-length", type=int)
    parser.add_argument("--clip-size", type=int)
    argv = [
        "--output-dir", str(run_dir), "--end-epoch", str(options.epochs),
        "--batch-size", str(options.batch_size), "--lr-base", str(options.lr),
        "--lr-steps", *map(str, options.lr_steps), "--warmup-epochs", str(options.warmup_epochs),
        "--workers", str(options.workers), "--device", options.device,
        "--random-seed", str(options.seed), "--clip-length", str(options.clip_length),
        "--clip-size", str(options.clip_size), "--log-interval", "1000",
        "--checkpoint-interval", str(options.epochs), "--no-tensorboard", "--no-auto-resume",
        *MODES[mode],
    ]  # fmt: skip
    return parser.parse_args(argv)


def run_mode(options: argparse.Namespace, mode: str, work_dir: Path) -> dict[str, float]:
    """Train one row; returns epochs/seconds to the target and the final accuracy."""
    datasets = [
        MovingShapes(count, frames=options.clip_length, size=options.clip_size, seed=seed)
        for count, seed in ((options.train_videos, options.seed), (options.val_videos, 999))
    ]
    torch.manual_seed(options.seed)
    model = build_model(options.network, num_classes=len(DIRECTIONS))
    stamps: list[float] = []
    model.set_epoch = lambda epoch: stamps.append(time.perf_counter())  # the engine calls it
    run_dir = work_dir / mode.replace("+", "_")
    args = engine_args(options, run_dir, mode)
    started = time.perf_counter()
    fit(model, *datasets, args, family="video", class_names=["right", "left", "down", "up"])
    ends = [*stamps[1:], time.perf_counter()]  # epoch e ends when epoch e + 1 starts
    accuracies = [row["val_video_top1"] for row in read_metrics(run_dir)]
    reached = next((e for e, acc in enumerate(accuracies) if acc >= options.target), None)
    return {
        "epochs": math.nan if reached is None else reached + 1,
        "seconds": math.nan if reached is None else ends[reached] - started,
        "total": ends[-1] - started,
        "final": accuracies[-1],
    }


def print_table(rows: dict[str, dict[str, float]], target: float) -> None:
    baseline = rows.get("baseline", {}).get("seconds", math.nan)
    print(f"\ntime to validation video top-1 >= {target:.2f}")
    header = f"{'mode':<12}{'epochs':>8}{'seconds':>10}{'speed-up':>10}{'final top-1':>13}"
    print(header + f"{'total s':>10}")
    for mode, row in rows.items():
        speedup = baseline / row["seconds"] if row["seconds"] > 0 else math.nan
        print(
            f"{mode:<12}{row['epochs']:>8.0f}{row['seconds']:>10.1f}{speedup:>9.2f}x"
            f"{row['final']:>13.3f}{row['total']:>10.1f}"
        )


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--network", default="r3d_tiny", help="a registered video network")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--target", type=float, default=0.9, help="validation video top-1")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--lr-steps", type=int, nargs="*", default=[8, 11])
    parser.add_argument("--lr", type=float, default=0.05, help="base LR (batch --batch-size)")
    parser.add_argument("--warmup-epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--clip-length", type=int, default=8)
    parser.add_argument("--clip-size", type=int, default=32)
    parser.add_argument("--train-videos", type=int, default=256)
    parser.add_argument("--val-videos", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (1 on a shared machine)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", default=None, help="keep the runs here (default: temp)")
    return parser


def main(argv: list[str] | None = None) -> int:
    options = get_args_parser().parse_args(argv)
    if options.threads:
        torch.set_num_threads(options.threads)
    setup_logging(logging.WARNING)
    with tempfile.TemporaryDirectory() as temp:
        work_dir = Path(options.output_dir or temp)
        rows = {}
        for mode in options.modes:
            rows[mode] = run_mode(options, mode, work_dir)
            print(f"{mode}: {rows[mode]}", flush=True)
    print_table(rows, options.target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
