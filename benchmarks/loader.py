"""Clip loading: throughput and CPU cost per clip of ActRec's loader, the SRTG procedure and the
bound of decoding the clip's JPEG bytes from memory.

    python benchmarks/loader.py                          # 360p and 128-pixel stores, 0 and 2 workers
    python benchmarks/loader.py --workers 0 4 --videos 100 --all-layouts
    python benchmarks/loader.py --decode-device cuda     # adds the GPU path and r3d_18's step rate

Synthetic videos are written to a temporary directory at each ``--height`` (width 4:3 unless
``--width``): our ``frames.db`` stores (``--all-layouts`` adds legacy dataset2database DBs and TAO
PNG folders) and the same JPEG bytes in memory. Every row draws the same clips (consecutive,
16 frames at rate 2, ``ClipTrainPreset`` random crop 112 + flip, batch 8) through a DataLoader
built as training builds it (``train.loaders``, ``train.seeding.worker_init_fn``, the main process
under ``train.malloc.reuse_large_buffers``), with persistent workers so that worker memory is seen
over ``--passes`` passes:

* **ActRec**: ``VideoClipDataset`` as ``train_hmdb.py train`` builds it (DCT-scaled decode, uint8
  clips, normalised per batch in the main process); ``--exact-decode`` decodes at full size.
* **SRTG procedure**: the reading code of the SRTG README (``data/video_iterator.py``): connect
  per clip, ``SELECT ObjId, frames FROM Images WHERE ObjId IN (...)``, ``cv2.imdecode`` every frame
  at full size, sort by ObjId, then the same crop/flip and float conversion in the worker.
* **ActRec raw mp4 (no prepare)**: the same ``VideoClipDataset`` over the same frames encoded
  as H.264 mp4 files, decoded on the fly by ``data.video.videofile.VideoFileStore`` (seek, decode,
  downscale in the decoder's colour conversion): what ``prepare`` saves.
* **decode-only**: the clip's JPEG bytes, already in memory, decoded at the size our pipeline
  decodes (scaled, or full for ``--exact-decode``); nothing else (no crop, no batch).

Columns: clips/s over the timed passes; CPU ms/clip = user + system time of the main process and
its workers (``/proc/<pid>/stat``) per clip; ``/ SRTG`` and ``/ decode`` are CPU ms/clip over
the SRTG procedure's and over decode-only's at the same decoded size, same store and workers
(targets for ActRec: <= 0.33 and <= 1.33); RSS: the largest worker's resident memory (the main
process's with 0 workers) at the end of each timed pass.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.video.dataset import VideoClipDataset
from data.video.framestore import (
    FrameDBWriter,
    FrameFolderWriter,
    FrameStore,
    encode_image,
    objid,
)
from data.video.splits import VideoRecord
from data.video.transforms import ClipTrainPreset
from train import malloc
from train.distributed import DistInfo
from train.loaders import build_train_loader
from train.malloc import reuse_large_buffers

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
NOT_MEASURED = "not measured (no CUDA)"


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--height", type=int, nargs="+", default=[360, 128], help="store heights")
    parser.add_argument("--width", type=int, nargs="+", default=None, help="default: 4:3")
    parser.add_argument("--clip-length", type=int, default=16)
    parser.add_argument("--sample-rate", type=int, default=2)
    parser.add_argument("--crop", type=int, default=112)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--clips-per-video", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality of the stores")
    parser.add_argument("--passes", type=int, default=3, help="timed passes after a warm one")
    parser.add_argument("--all-layouts", action="store_true", help="add legacy DB and PNG rows")
    parser.add_argument("--decode-device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--rows", nargs="+", default=None, help="only rows named exactly so")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the main process")
    parser.add_argument(
        "--worker-free-slack-mib",
        type=float,
        default=None,
        help="workers trim their heap when more than this lies free (train.malloc; default: "
        "the training setting; 0: trim every second as before)",
    )
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
    side = max(height // 8, 4)
    for t in range(n):
        frame = background + rng.normal(0, 6, size=background.shape)
        x0 = int((t * 3 + seed * 7) % (width - side))
        y0 = int(height / 2 + height / 4 * np.sin(t / 6))
        frame[max(y0 - side // 2, 0) : y0 + side // 2, x0 : x0 + side] = (230, 60 + seed % 150, 40)
        frames[t] = np.clip(frame, 0, 255)
    return frames


def write_sources(root: Path, args: argparse.Namespace, height: int, width: int) -> dict:
    """Write the stores of one frame size; return records per layout and the JPEG bytes."""
    sources: dict[str, list] = {"db": [], "legacy": [], "png": [], "memory": []}
    for i in tqdm(range(args.videos), desc=f"writing {height}x{width} videos", unit="video"):
        frames = synthetic_frames(args.frames, height, width, seed=i)
        jpegs = [encode_image(f, quality=args.quality) for f in frames]
        name = f"video_{i:03d}"
        for kind in ("db", "legacy") if args.all_layouts else ("db",):
            with FrameDBWriter(root / kind / name, legacy=kind == "legacy") as writer:
                for data in jpegs:
                    writer.add_encoded("rgb", data, width, height)
            sources[kind].append(VideoRecord(root / kind / name, i % 5, name))
        if args.all_layouts:
            with FrameFolderWriter(root / "png" / name, image_format="png") as writer:
                for frame in frames:
                    writer.add_encoded("rgb", encode_image(frame, fmt="png"), "png")
            sources["png"].append(VideoRecord(root / "png" / name, i % 5, name))
        sources["memory"].append(jpegs)
    sources["mp4"] = write_mp4_sources(root, args, height, width)
    return sources


def write_mp4_sources(root: Path, args: argparse.Namespace, height: int, width: int) -> list:
    """The same frames as H.264 mp4 files (``write_video``: x264 CRF 18, its default keyframe
    interval, so a 64-frame video is one GOP as short clips such as HMDB51's usually are),
    read on the fly by ``VideoFileStore``: what training on raw videos without ``prepare`` costs."""
    from data.video.ffmpeg_io import write_video

    records = []
    for i in tqdm(range(args.videos), desc=f"writing {height}x{width} mp4 files", unit="video"):
        frames = synthetic_frames(args.frames, height, width, seed=i)
        frames = frames[:, : height // 2 * 2, : width // 2 * 2]  # yuv420p needs even sides
        path = write_video(root / "mp4" / f"video_{i:03d}.mp4", frames, fps=25)
        records.append(VideoRecord(path, i % 5, path.stem))
    return records


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


class DecodeOnlyDataset(VideoClipDataset):
    """The bound: the same clips' JPEG bytes from memory, decoded at the size ActRec decodes
    (``exact_decode``: full size); items carry only the decoded shape."""

    def __init__(self, records, jpegs: list[list[bytes]], **kwargs) -> None:
        super().__init__(records, **kwargs)
        self.jpegs = jpegs

    def open_video(self, video: int) -> FrameStore:
        return MemoryStore(self.jpegs[video])

    def __getitem__(self, index: int):
        video, _ = divmod(index, self.per_video)
        clip = self.read_clip(video)[0]
        return torch.tensor(clip.shape), int(self.records[video].label), video

    @property
    def batch_finisher(self):
        return None


class SRTGProcedureDataset(VideoClipDataset):
    """The SRTG README's reading code per clip (see the module docstring), then the same preset
    crop/flip/normalisation in the worker."""

    def _read_stream(self, store, stream: str, indices: np.ndarray, shape) -> torch.Tensor:
        con = sqlite3.connect(str(store.db_path))  # connection per clip, as the README
        cur = con.cursor()
        frame_names = [objid(store.video, "rgb", int(i)) for i in indices]
        sql = (
            f"SELECT ObjId, frames FROM Images WHERE ObjId IN ({','.join('?' * len(frame_names))})"
        )
        rows = cur.execute(sql, frame_names).fetchall()
        ids, frames = [], []
        for obj_id, item in rows:
            frames.append(cv2.imdecode(np.frombuffer(item, np.uint8), cv2.IMREAD_COLOR))
            ids.append(obj_id)
        con.close()
        frames = [frame for _, frame in sorted(zip(ids, frames), key=lambda pair: pair[0])]
        return torch.from_numpy(np.asarray(frames)).permute(0, 3, 1, 2)


# ----------------------------------------------------------------------------- measuring
_worker_pids = multiprocessing.Array("i", 64)  # written by each worker at start (fork)


class _RecordPid:
    """Wraps the training worker_init_fn and records the worker's pid for CPU and RSS readings."""

    def __init__(self, inner: Callable[[int], None]) -> None:
        self.inner = inner

    def __call__(self, worker_id: int) -> None:
        _worker_pids[worker_id] = os.getpid()
        self.inner(worker_id)


def _proc_cpu_seconds(pid: int) -> np.ndarray:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return np.array([int(fields[11]), int(fields[12])]) / CLOCK_TICKS  # utime, stime


def _proc_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _self_cpu_seconds() -> np.ndarray:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return np.array([usage.ru_utime, usage.ru_stime])


def measure(dataset: Dataset, workers: int, args: argparse.Namespace, device: str) -> dict:
    """Warm pass, then ``args.passes`` timed passes through a training-built loader."""
    loader_args = argparse.Namespace(workers=workers, batch_size=args.batch_size, random_seed=0)
    info = DistInfo(0, 1, 0, torch.device(device))
    loader = build_train_loader(dataset, loader_args, info, persistent_workers=workers > 0)
    inner = getattr(loader, "loader", loader)
    inner.worker_init_fn = _RecordPid(inner.worker_init_fn)
    for k in range(workers):
        _worker_pids[k] = 0
    _run(loader)
    pids = [_worker_pids[k] for k in range(workers)] if workers else [os.getpid()]
    cpu_before = _cpu(pids, workers)
    start, clips, rss = time.perf_counter(), 0, []
    for _ in range(args.passes):
        clips += _run(loader)
        rss.append(max(_proc_rss_mib(pid) for pid in pids))
    seconds = time.perf_counter() - start
    cpu = _cpu(pids, workers) - cpu_before
    del loader, inner  # persistent workers end here
    return {
        "clips_s": clips / seconds,
        "cpu_ms": 1000 * cpu.sum() / clips,
        "sys_ms": 1000 * cpu[1] / clips,
        "rss": rss,
    }


def _cpu(pids: list[int], workers: int) -> np.ndarray:
    """(user, system) seconds of this process and its workers."""
    total = _self_cpu_seconds()
    if workers:
        total += sum(_proc_cpu_seconds(pid) for pid in pids)
    return total


def _run(loader) -> int:
    clips = 0
    for batch in loader:
        clips += len(batch[1])
        if torch.is_tensor(batch[0]) and batch[0].is_cuda:
            torch.cuda.synchronize()
    return clips


# ----------------------------------------------------------------------------- rows
def build_datasets(sources: dict, args: argparse.Namespace) -> dict[str, Dataset]:
    """Row name -> dataset; each row's ``decode_row`` names the decode-only row it compares to."""
    preset = ClipTrainPreset(crop_size=args.crop, short_side=round(args.crop * 8 / 7))
    common = {
        "clip_length": args.clip_length,
        "sample_rate": args.sample_rate,
        "clips_per_video": args.clips_per_video,
        "transform": preset,
    }
    rows = {
        "ActRec": VideoClipDataset(sources["db"], deliver="uint8", **common),
        "ActRec --exact-decode": VideoClipDataset(
            sources["db"], deliver="uint8", exact_decode=True, **common
        ),
        "SRTG procedure": SRTGProcedureDataset(sources["db"], exact_decode=True, **common),
        "ActRec raw mp4 (no prepare)": VideoClipDataset(sources["mp4"], deliver="uint8", **common),
        "decode-only (scaled)": DecodeOnlyDataset(sources["db"], sources["memory"], **common),
        "decode-only (full size)": DecodeOnlyDataset(
            sources["db"], sources["memory"], exact_decode=True, **common
        ),
    }
    if args.all_layouts:
        rows["ActRec legacy frames.db"] = VideoClipDataset(
            sources["legacy"], deliver="uint8", **common
        )
        rows["ActRec TAO PNG folders"] = VideoClipDataset(sources["png"], deliver="uint8", **common)
    if args.decode_device == "cuda":
        rows["ActRec GPU decode (cuda)"] = VideoClipDataset(
            sources["db"], deliver="encoded", **common
        )
    return rows


DECODE_ROW = {"ActRec --exact-decode": "decode-only (full size)"}  # others: decode-only (scaled)


def format_table(rows: list[tuple[str, str, int, dict | str]]) -> str:
    header = (
        "| store | source | workers | clips/s | CPU ms/clip | sys ms/clip | / SRTG | / decode | "
        "RSS MiB after passes |"
    )
    lines = [header, "|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|"]
    done = {(store, name, w): r for store, name, w, r in rows if isinstance(r, dict)}
    for store, name, workers, r in rows:
        if not isinstance(r, dict):
            lines.append(f"| {store} | {name} | {workers} | {r} | | | | | |")
            continue
        srtg = done.get((store, "SRTG procedure", workers))
        decode = done.get((store, DECODE_ROW.get(name, "decode-only (scaled)"), workers))
        ratio_srtg = (
            f"{r['cpu_ms'] / srtg['cpu_ms']:.2f}" if srtg and name.startswith("ActRec") else ""
        )
        ratio_dec = (
            f"{r['cpu_ms'] / decode['cpu_ms']:.2f}" if decode and name.startswith("ActRec") else ""
        )
        rss = " / ".join(f"{v:.0f}" for v in r["rss"])
        lines.append(
            f"| {store} | {name} | {workers} | {r['clips_s']:.1f} | {r['cpu_ms']:.2f} | "
            f"{r['sys_ms']:.2f} | {ratio_srtg} | {ratio_dec} | {rss} |"
        )
    return "\n".join(lines)


def train_step_rate(args: argparse.Namespace) -> str:
    """r3d_18 training clips/s at 16x112² bf16 channels-last (benchmarks/train_step.py)."""
    if not torch.cuda.is_available():
        return NOT_MEASURED
    from benchmarks.train_step import step_rate

    rate = step_rate("r3d_18", "amp_channels_last", batch_size=args.batch_size * 4)
    return f"{rate:.1f} clips/s (batch {args.batch_size * 4})"


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    reuse_large_buffers()  # as train_hmdb.py train runs (train.runner)
    if args.worker_free_slack_mib is not None:  # read by the workers' worker_init_fn
        malloc.WORKER_FREE_SLACK_BYTES = int(args.worker_free_slack_mib * (1 << 20))
    widths = args.width or [round(h * 4 / 3) for h in args.height]
    if len(widths) != len(args.height):
        raise SystemExit("error: --width needs one value per --height")
    cuda = args.decode_device == "cuda" and torch.cuda.is_available()
    rows: list[tuple[str, str, int, dict | str]] = []
    print(
        f"clips {args.clip_length}x{args.crop}x{args.crop}, rate {args.sample_rate}, batch "
        f"{args.batch_size}, {args.videos * args.clips_per_video} clips per pass, "
        f"{args.passes} timed passes; worker free-heap slack "
        f"{malloc.WORKER_FREE_SLACK_BYTES >> 20} MiB; load average {os.getloadavg()[0]:.2f} at start"
    )
    for height, width in zip(args.height, widths):
        with tempfile.TemporaryDirectory(prefix="loader_bench_") as tmp:
            sources = write_sources(Path(tmp), args, height, width)
            store = f"{height}x{width}"
            for workers in args.workers:
                for name, dataset in build_datasets(sources, args).items():
                    if args.rows and name not in args.rows:
                        continue
                    if "cuda" in name and not cuda:
                        rows.append((store, name, workers, NOT_MEASURED))
                        continue
                    device = "cuda" if "cuda" in name else "cpu"
                    rows.append((store, name, workers, measure(dataset, workers, args, device)))
                    print(format_table(rows[-1:]).splitlines()[-1], flush=True)
    if args.decode_device == "cuda":
        rows.append(("-", "r3d_18 train step bf16 channels-last", 0, train_step_rate(args)))
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
