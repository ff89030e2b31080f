"""Clip loading speed per storage layout, against the bound of decoding JPEG bytes from memory.

    python benchmarks/loader.py                      # 40 videos x 64 frames at 128x170, 0/1/2 workers
    python benchmarks/loader.py --workers 0 4 8 --videos 200 --srtg

Writes synthetic videos to a temporary directory in four forms holding the same frames:
(a) our ``frames.db`` (index + metadata), (b) a legacy dataset2database ``frames.db`` (no index,
no n_frames), (c) TAO PNG folders (``rgb/000001.png``), (d) the bound: the JPEG bytes of (a) held
in memory. Each row runs the same training pipeline: ``VideoClipDataset`` consecutive random
clips (16 frames, rate 2), ``ClipTrainPreset`` random crop 112 + flip, default collate, through a
DataLoader. A first pass warms up (worker start, page cache, store caches); then ``--repeats``
passes are timed and the fastest is reported. ``/ bound`` is clips/s divided by (d) at the same
worker count (target >= 0.75 for (a)).
RSS columns: each worker's peak resident memory (max over workers) at its first clip, at the end
of pass 1 and at the end of the last pass; equal values mean memory does not grow with clips read.
The process and its DataLoader run as training does: the main process reuses its large buffers
(``train.malloc.reuse_large_buffers``) and each worker returns its clip buffers to the OS
(``train.seeding.worker_init_fn``), which keeps worker memory from creeping up.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.framestore import FrameDBWriter, FrameFolderWriter, FrameStore, encode_image
from data.splits import VideoRecord
from data.transforms import ClipTrainPreset
from data.video_dataset import VideoClipDataset
from train.malloc import reuse_large_buffers
from train.seeding import worker_init_fn


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=40)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=170)
    parser.add_argument("--clip-length", type=int, default=16)
    parser.add_argument("--sample-rate", type=int, default=2)
    parser.add_argument("--crop", type=int, default=112)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--clips-per-video", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality of the stores")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed passes per row; the fastest is reported"
    )
    parser.add_argument("--srtg", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the main process")
    return parser


# ----------------------------------------------------------------------------- data


def synthetic_frames(n: int, height: int, width: int, seed: int) -> np.ndarray:
    """``(n, H, W, 3)`` uint8: a textured background, a moving square and sensor noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = rng.uniform(0, 6.28, size=3)
    background = np.stack(
        [110 + 60 * np.sin(xx / (9 + 4 * c) + yy / (13 + 3 * c) + phase[c]) for c in range(3)], -1
    )
    frames = np.empty((n, height, width, 3), np.uint8)
    for t in range(n):
        frame = background + rng.normal(0, 6, size=background.shape)
        x0 = int((t * 3 + seed * 7) % (width - 24))
        y0 = int(height / 2 + height / 4 * np.sin(t / 6))
        frame[max(y0 - 12, 0) : y0 + 12, x0 : x0 + 24] = (230, 60 + seed % 150, 40)
        frames[t] = np.clip(frame, 0, 255)
    return frames


def write_sources(root: Path, args: argparse.Namespace) -> dict[str, list]:
    """Write the three on-disk layouts; return the records and the in-memory JPEG bytes."""
    sources = {"db": [], "legacy": [], "png": [], "memory": []}
    for i in tqdm(range(args.videos), desc="writing videos", unit="video"):
        frames = synthetic_frames(args.frames, args.height, args.width, seed=i)
        jpegs = [encode_image(f, quality=args.quality) for f in frames]
        name = f"video_{i:03d}"
        for kind in ("db", "legacy"):
            with FrameDBWriter(root / kind / name, legacy=kind == "legacy") as writer:
                for data in jpegs:
                    writer.add_encoded("rgb", data, args.width, args.height)
            sources[kind].append(VideoRecord(root / kind / name, i % 5, name))
        with FrameFolderWriter(root / "png" / name, image_format="png") as writer:
            for frame in frames:
                writer.add_encoded("rgb", encode_image(frame, fmt="png"), "png")
        sources["png"].append(VideoRecord(root / "png" / name, i % 5, name))
        sources["memory"].append(jpegs)
    return sources


class MemoryStore(FrameStore):
    """JPEG bytes held in memory, decoded by the same ``FrameStore.read`` as the real stores."""

    kind = "memory"

    def __init__(self, jpegs: list[bytes]) -> None:
        super().__init__(Path("<memory>"))
        self.jpegs = jpegs

    def num_frames(self, stream: str = "rgb") -> int:
        return len(self.jpegs) if stream == "rgb" else 0

    def read_encoded(self, indices, stream: str = "rgb") -> list[bytes]:
        return [self.jpegs[int(i)] for i in indices]


class MemoryClipDataset(VideoClipDataset):
    """The bound: the same dataset, its stores replaced by :class:`MemoryStore`."""

    def __init__(self, records, jpegs: list[list[bytes]], **kwargs) -> None:
        super().__init__(records, **kwargs)
        self.jpegs = jpegs

    def open_video(self, video: int) -> FrameStore:
        return MemoryStore(self.jpegs[video])


class RSSProbe(Dataset):
    """Adds ``(pid, peak RSS KiB)`` of the process that made each item."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index):
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return (*self.dataset[index], torch.tensor([os.getpid(), peak_kib]))


# ----------------------------------------------------------------------------- measuring
def run_pass(loader: DataLoader) -> tuple[float, int, dict[int, tuple[int, int]]]:
    """One full pass: seconds, clips, and per process (peak RSS at first item, at last item)."""
    rss: dict[int, tuple[int, int]] = {}
    clips = 0
    start = time.perf_counter()
    for batch in loader:
        clips += len(batch[1])
        for pid, peak in batch[-1].tolist():
            first = rss.get(pid, (peak, peak))[0]
            rss[pid] = (first, max(peak, rss.get(pid, (0, 0))[1]))
    return time.perf_counter() - start, clips, rss


def measure(dataset: Dataset, workers: int, batch_size: int, repeats: int) -> dict:
    loader = DataLoader(
        RSSProbe(dataset),
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        worker_init_fn=worker_init_fn,
    )
    _, _, warm = run_pass(loader)
    best, timed = 0.0, {}
    for _ in range(repeats):  # the machine may be shared: the fastest pass is the least disturbed
        seconds, clips, timed = run_pass(loader)
        best = max(best, clips / seconds)
    mib = 1 / 1024
    return {
        "clips_s": best,
        "rss_first": max(v[0] for v in warm.values()) * mib,
        "rss_pass1": max(v[1] for v in warm.values()) * mib,
        "rss_last": max(v[1] for v in timed.values()) * mib,
    }


def build_datasets(sources: dict[str, list], args: argparse.Namespace) -> dict[str, Dataset]:
    common = {
        "clip_length": args.clip_length,
        "sample_rate": args.sample_rate,
        "clips_per_video": args.clips_per_video,
        "transform": ClipTrainPreset(
            crop_size=args.crop, short_side=round(args.crop * 8 / 7), srtg=args.srtg
        ),
    }
    return {
        "(a) frames.db (ours)": VideoClipDataset(sources["db"], **common),
        "(b) legacy frames.db": VideoClipDataset(sources["legacy"], **common),
        "(c) TAO PNG folders": VideoClipDataset(sources["png"], **common),
        "(d) bound: JPEG in memory": MemoryClipDataset(sources["db"], sources["memory"], **common),
    }


def format_table(rows: list[tuple[str, int, dict]]) -> str:
    bound = {w: r["clips_s"] for name, w, r in rows if name.startswith("(d)")}
    header = (
        f"| {'source':<26} | workers | clips/s | / bound | "
        "RSS MiB first clip | end pass 1 | end last pass |"
    )
    lines = [header, "|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|"]
    for name, workers, r in rows:
        ratio = r["clips_s"] / bound[workers] if workers in bound else float("nan")
        lines.append(
            f"| {name:<26} | {workers:>7} | {r['clips_s']:>7.1f} | {ratio:>7.2f} | "
            f"{r['rss_first']:>18.0f} | {r['rss_pass1']:>10.0f} | {r['rss_last']:>13.0f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    reuse_large_buffers()  # as train_hmdb.py train runs (train.runner)
    with tempfile.TemporaryDirectory(prefix="loader_bench_") as tmp:
        start = time.perf_counter()
        sources = write_sources(Path(tmp), args)
        print(
            f"wrote {args.videos} videos x {args.frames} frames at {args.height}x{args.width} "
            f"in 3 layouts in {time.perf_counter() - start:.1f}s; clips {args.clip_length}x"
            f"{args.crop}x{args.crop}, rate {args.sample_rate}, batch {args.batch_size}, "
            f"{args.videos * args.clips_per_video} clips per pass, srtg={args.srtg}"
        )
        datasets = build_datasets(sources, args)
        rows = []
        for workers in args.workers:  # sources side by side at each worker count
            for name, dataset in datasets.items():
                rows.append(
                    (name, workers, measure(dataset, workers, args.batch_size, args.repeats))
                )
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
