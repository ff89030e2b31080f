"""Wall-clock to a target synthetic accuracy, with and without multigrid, through the one engine.

    python benchmarks/multigrid.py --threads 1              # CPU: r3d_tiny, 8×32×32 clips
    python benchmarks/multigrid.py --data DATA              # a prepared dataset instead
    python benchmarks/multigrid.py --device cuda --network r3d_18 --clip-length 16 \\
        --clip-size 112 --train-videos 2000 --batch-size 16

Each row trains the same network from the same seed with ``train.engine.fit``: ``baseline`` (no
cycles), ``short`` (short cycles), ``long`` (long cycles) and ``long+short``. Data: moving-square
clips rendered in memory at any requested ``(T, H, W)`` (8 classes: 4 directions × 2 speeds; a
clip spans the same time whatever T, as the multigrid contract asks of VideoClipDataset), or with
``--data`` a prepared class-folder dataset (``train_hmdb.py synth`` + ``prepare``) read by
``data.video.dataset.VideoClipDataset``. The time of an epoch is taken when the engine calls
``model.set_epoch`` for the next one, so it includes validation (at the base shape, the same for
every row); an untimed one-epoch run first absorbs one-time costs. With the default
``--multigrid-schedule pyslowfast`` the multigrid rows train 1.5 × ``--epochs`` (PySlowFast's
EPOCH_FACTOR); ``simple`` keeps ``--epochs``. Reported: epochs and seconds
until validation video top-1 first reaches ``--target``, the speed-up against the baseline, the
final accuracy and the total time of the schedule.
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
from train.malloc import reuse_large_buffers
from train.multigrid import MULTIGRID_SCHEDULES

# Row name -> multigrid flags.
MODES: dict[str, tuple[str, ...]] = {
    "baseline": ("--no-long-cycles", "--no-short-cycles"),
    "short": ("--no-long-cycles", "--short-cycles"),
    "long": ("--long-cycles", "--no-short-cycles"),
    "long+short": ("--long-cycles", "--short-cycles"),
}
# Class -> (direction of motion (dy, dx), distance covered in frame heights per clip).
CLASSES: dict[str, tuple[tuple[float, float], float]] = {
    "right_slow": ((0.0, 1.0), 0.3),
    "left_slow": ((0.0, -1.0), 0.3),
    "down_slow": ((1.0, 0.0), 0.3),
    "up_slow": ((-1.0, 0.0), 0.3),
    "right_fast": ((0.0, 1.0), 0.7),
    "left_fast": ((0.0, -1.0), 0.7),
    "down_fast": ((1.0, 0.0), 0.7),
    "up_fast": ((-1.0, 0.0), 0.7),
}
NOISE = 0.5  # background noise amplitude (object colours are 0.5..1)


class MovingShapes(Dataset):
    """A square crossing a noisy background; the class is its direction and speed of motion.

    Items: ``(clip (3, T, H, W) float, label, index)``; ``__getitem__`` takes an index or
    ``(index, (T, H, W))``. Video ``i`` has a fixed start, size, colour, speed jitter and noise
    (from ``seed``), so every clip shape shows the same motion over the same time span.
    """

    def __init__(self, num_videos: int, *, frames: int, size: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.num_videos, self.frames, self.size, self.seed = num_videos, frames, size, seed
        self.labels = torch.arange(num_videos) % len(CLASSES)
        self.starts = 0.3 + 0.4 * torch.rand(num_videos, 2, generator=generator)
        self.sides = 0.12 + 0.1 * torch.rand(num_videos, generator=generator)
        self.colours = 0.5 + 0.5 * torch.rand(num_videos, 3, generator=generator)
        self.jitter = 0.85 + 0.3 * torch.rand(num_videos, generator=generator)

    def __len__(self) -> int:
        return self.num_videos

    def __getitem__(self, item: int | tuple[int, tuple[int, int, int]]):
        index, (frames, height, width) = (
            item if isinstance(item, tuple) else (item, (self.frames, self.size, self.size))
        )
        label = int(self.labels[index])
        direction, distance = list(CLASSES.values())[label]
        times = (torch.arange(frames) + 0.5) / frames - 0.5  # same span for every T
        motion = torch.tensor(direction) * distance * self.jitter[index]
        centres = self.starts[index] + times[:, None] * motion  # (T, 2) as (y, x) in [0, 1]
        ys = (torch.arange(height) + 0.5) / height
        xs = (torch.arange(width) + 0.5) / width
        half = self.sides[index] / 2
        inside_y = (ys[None, :] - centres[:, :1]).abs() <= half  # (T, H)
        inside_x = (xs[None, :] - centres[:, 1:]).abs() <= half  # (T, W)
        mask = (inside_y[:, :, None] & inside_x[:, None, :]).float()  # (T, H, W)
        noise = torch.Generator().manual_seed(self.seed * 100_003 + index)
        background = NOISE * torch.rand(3, frames, height, width, generator=noise)
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
        "--multigrid-schedule", options.multigrid_schedule, *MODES[mode],
    ]  # fmt: skip
    return parser.parse_args(argv)


def in_memory_datasets(options: argparse.Namespace) -> tuple[Dataset, Dataset, list[str]]:
    train, val = (
        MovingShapes(count, frames=options.clip_length, size=options.clip_size, seed=seed)
        for count, seed in ((options.train_videos, options.seed), (options.val_videos, 999))
    )
    return train, val, list(CLASSES)


def prepared_datasets(options: argparse.Namespace) -> tuple[Dataset, Dataset, list[str]]:
    """VideoClipDataset over a prepared class-folder dataset (``train_hmdb.py synth`` then
    ``prepare``), 20 % of each class for validation."""
    from data.video.dataset import VideoClipDataset
    from data.video.splits import folder_split
    from data.video.transforms import ClipEvalPreset, ClipTrainPreset

    split = folder_split(options.data, val_fraction=0.2, seed=options.seed)
    crop = {"crop_size": options.clip_size, "short_side": round(options.clip_size * 8 / 7)}
    # No flips: synthetic classes can be left/right motions.
    train_transform = ClipTrainPreset(**crop, hflip_prob=0.0)
    common = {"clip_length": options.clip_length, "sample_rate": options.sample_rate}
    train = VideoClipDataset(split.train, mode="train", transform=train_transform, **common)
    val = VideoClipDataset(split.val, mode="center", transform=ClipEvalPreset(**crop), **common)
    return train, val, list(split.class_names)


def run_mode(
    options: argparse.Namespace,
    mode: str,
    work_dir: Path,
    data: tuple[Dataset, Dataset, list[str]],
) -> dict[str, float]:
    """Train one row; returns epochs/seconds to the target and the final accuracy."""
    train_set, val_set, class_names = data
    torch.manual_seed(options.seed)
    model = build_model(options.network, num_classes=len(class_names))
    stamps: list[float] = []
    model.set_epoch = lambda epoch: stamps.append(time.perf_counter())  # the engine calls it
    run_dir = work_dir / mode.replace("+", "_")
    args = engine_args(options, run_dir, mode)
    started = time.perf_counter()
    fit(model, train_set, val_set, args, family="video", class_names=class_names)
    ends = [*stamps[1:], time.perf_counter()]  # epoch e ends when epoch e + 1 starts
    accuracies = [row["val_video_top1"] for row in read_metrics(run_dir)]
    reached = next((e for e, acc in enumerate(accuracies) if acc >= options.target), None)
    print(f"{mode}: epoch seconds {[round(b - a, 1) for a, b in zip(stamps, ends)]}")
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
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--lr-steps", type=int, nargs="*", default=[10, 14])
    parser.add_argument(
        "--multigrid-schedule",
        choices=list(MULTIGRID_SCHEDULES),
        default="pyslowfast",
        help="pyslowfast: multigrid rows train 1.5x --epochs (PySlowFast); simple: --epochs",
    )
    parser.add_argument("--lr", type=float, default=0.05, help="base LR (batch --batch-size)")
    parser.add_argument("--warmup-epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--clip-length", type=int, default=8)
    parser.add_argument("--clip-size", type=int, default=32)
    parser.add_argument(
        "--data", type=Path, default=None, help="a prepared dataset (default: clips in memory)"
    )
    parser.add_argument("--sample-rate", type=int, default=1, help="frame step (with --data)")
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
    reuse_large_buffers()  # as train_hmdb.py train runs (train.runner)
    setup_logging(logging.WARNING)
    with tempfile.TemporaryDirectory() as temp:
        work_dir = Path(options.output_dir or temp)
        # One short untimed run first: one-time costs (lazy imports, allocator) must not land
        # on whichever row runs first.
        data = prepared_datasets(options) if options.data else in_memory_datasets(options)
        warm_up = argparse.Namespace(**{**vars(options), "epochs": 1, "lr_steps": []})
        run_mode(warm_up, "baseline", work_dir / "warm_up", data)
        rows = {}
        for mode in options.modes:
            rows[mode] = run_mode(options, mode, work_dir, data)
            print(f"{mode}: {rows[mode]}", flush=True)
    print_table(rows, options.target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
