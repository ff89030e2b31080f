"""``train_hmdb.py prepare``: a folder of videos -> frame stores, in parallel and resumably.

Input ``ROOT/<class>/<video>.(mp4|avi|mkv|webm|mov)``. Output, per video:

* ``--layout sqlite`` (default): ``DATA/jpg/<class>/<video>/frames.db`` + ``n_frames``
  (see data/video/framestore.py; flow u/v go into the same database);
* ``--layout frames``: the TAO folders ``DATA/<class>/<video>/rgb/000000.png ...``, ``u/``, ``v/``.

Each video is written under a hidden ``.partial`` name and renamed when complete, so a re-run
skips finished videos and redoes interrupted ones. Problems with one file (unreadable, truncated,
no frames, not a video) are reported in the final summary and do not stop the run; the exit code
is 1 when any video failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
from collections import Counter
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
from tqdm import tqdm

from data.video.ffmpeg_io import (
    MIN_DECODED_SHARE,
    VIDEO_SUFFIXES,
    VideoDecodeError,
    iter_frames,
    output_size,
    probe,
)
from data.video.flow import FLOW_METHODS, FlowStream
from data.video.framestore import (
    FrameDBWriter,
    FrameFolderWriter,
    FrameStoreError,
)
from data.video.splits import SQLITE_SUBDIR
from data.video.stores import is_complete_video, open_store

log = logging.getLogger(__name__)

# Folders next to the class folders that hold labels, not videos (synth writes ROOT/splits).
NON_CLASS_DIRS = frozenset({"splits", "labels", "annotations"})
SUMMARY_FILE = "prepare_summary.json"


@dataclass(frozen=True)
class Options:
    """Per-video settings shared by all workers."""

    layout: str
    height: int | None
    short_side: int | None
    quality: int
    image_format: str
    flow: bool
    flow_method: str
    flow_bound: float | None
    overwrite: bool


@dataclass(frozen=True)
class Job:
    source: Path
    target: Path
    name: str  # "<class>/<video file>", for reports


@dataclass(frozen=True)
class Outcome:
    name: str
    status: str  # "written", "skipped" or "failed"
    reason: str = ""
    frames: int = 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--videos", type=Path, required=True, help="ROOT/<class>/<video>.mp4")
    parser.add_argument("--out", type=Path, required=True, help="output data folder DATA")
    parser.add_argument("--layout", choices=("sqlite", "frames"), default="sqlite")
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--height", type=int, default=360, help="frame height, aspect kept (0: keep size)"
    )
    size.add_argument("--short-side", type=int, default=None, help="resize the short side to N")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality (1-100)")
    parser.add_argument(
        "--image-format", choices=("png", "jpg"), default="png", help="RGB format, frames layout"
    )
    parser.add_argument("--flow", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument("--flow-method", choices=sorted(FLOW_METHODS), default="dis")
    parser.add_argument(
        "--flow-bound",
        type=float,
        default=None,
        help="map flow with a fixed ±B pixel range instead of TAO's per-frame max radius",
    )
    parser.add_argument(
        "--workers", type=int, default=max(1, (os.cpu_count() or 2) // 2), help="processes"
    )
    parser.add_argument(
        "--overwrite", action=argparse.BooleanOptionalAction, default=False, help="redo all"
    )


def run(args: argparse.Namespace) -> int:
    """Prepare every video under ``args.videos``; returns 1 if any failed, else 0."""
    if not args.videos.is_dir():
        log.error("%s: video folder not found", args.videos)
        return 2
    opts = Options(
        layout=args.layout,
        height=args.height or None,
        short_side=args.short_side,
        quality=args.quality,
        image_format=args.image_format,
        flow=args.flow,
        flow_method=args.flow_method,
        flow_bound=args.flow_bound,
        overwrite=args.overwrite,
    )
    jobs, outcomes = scan(args.videos, args.out, opts.layout)
    outcomes += process(jobs, opts, args.workers)
    return report(outcomes, args.out)


# ----------------------------------------------------------------------------- scanning
def scan(root: Path, out: Path, layout: str) -> tuple[list[Job], list[Outcome]]:
    """Jobs for the video files under ``root``; everything else becomes a skipped outcome."""
    video_root = out / SQLITE_SUBDIR if layout == "sqlite" else out
    jobs: list[Job] = []
    skipped: list[Outcome] = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            skipped.append(
                Outcome(_printable(entry.name), "skipped", "file outside a class folder")
            )
        elif _printable(entry.name) != entry.name:
            skipped.append(Outcome(_printable(entry.name), "skipped", "name is not valid UTF-8"))
        elif entry.name in NON_CLASS_DIRS:
            log.info("%s: not a class folder (holds labels), ignored", entry)
        else:
            class_jobs, class_skipped = _scan_class(entry, video_root / entry.name)
            jobs += class_jobs
            skipped += class_skipped
    return jobs, skipped


def _scan_class(class_dir: Path, target_dir: Path) -> tuple[list[Job], list[Outcome]]:
    jobs: list[Job] = []
    skipped: list[Outcome] = []
    seen: dict[str, str] = {}
    for path in sorted(class_dir.iterdir()):
        name = _printable(f"{class_dir.name}/{path.name}")
        if path.name.startswith("."):
            continue
        reason = _unusable(path, seen)
        if reason:
            skipped.append(Outcome(name, "skipped", reason))
            continue
        seen[path.stem] = path.name
        jobs.append(Job(source=path, target=target_dir / path.stem, name=name))
    if not jobs:
        skipped.append(Outcome(f"{class_dir.name}/", "skipped", "empty class folder (no videos)"))
    return jobs, skipped


def _printable(name: str) -> str:
    """``name`` with undecodable file-name bytes shown as escapes (safe to log and to JSON)."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _unusable(path: Path, seen: dict[str, str]) -> str:
    """Why ``path`` cannot become a video folder, or "" when it can."""
    if path.is_dir() or path.suffix.lower() not in VIDEO_SUFFIXES:
        return "not a video file"
    if _printable(path.name) != path.name:
        return "name is not valid UTF-8"
    if path.stem in seen:
        return f"same video name as {seen[path.stem]}"
    return ""


# ----------------------------------------------------------------------------- processing
def process(jobs: list[Job], opts: Options, workers: int) -> list[Outcome]:
    """Run :func:`prepare_video` over ``jobs`` with a progress bar (in-process for 1 worker)."""
    with tqdm(total=len(jobs), desc="prepare", unit="video", dynamic_ncols=True) as bar:
        if workers <= 1 or len(jobs) <= 1:
            return [_tick(bar, prepare_video(job, opts)) for job in jobs]
        # spawn: workers start clean (no inherited threads or open files from the caller).
        # A worker that dies (e.g. killed for memory) fails its video instead of hanging the run.
        pool = ProcessPoolExecutor(
            workers, mp_context=mp.get_context("spawn"), initializer=_init_worker
        )
        try:
            futures = {pool.submit(prepare_video, job, opts): job for job in jobs}
            return [_tick(bar, _result(f, futures[f])) for f in as_completed(futures)]
        finally:
            pool.shutdown(cancel_futures=True)  # on Ctrl-C, queued videos are not started


def _tick(bar: tqdm, outcome: Outcome) -> Outcome:
    bar.update()
    return outcome


def _result(future: Future, job: Job) -> Outcome:
    try:
        return future.result()
    except BrokenProcessPool:
        return Outcome(job.name, "failed", f"{job.source}: worker process died")


def _init_worker() -> None:
    cv2.setNumThreads(1)  # parallelism comes from the processes


def prepare_video(job: Job, opts: Options) -> Outcome:
    """Decode one video into its frame store; never raises for a bad input file."""
    if not opts.overwrite and _is_done(job.target, opts.flow):
        return Outcome(job.name, "skipped", "already prepared")
    try:
        return _convert(job, opts)
    except (VideoDecodeError, FrameStoreError) as exc:
        return Outcome(job.name, "failed", str(exc))
    except Exception as exc:  # one broken file must not end a run over thousands
        return Outcome(job.name, "failed", f"{job.source}: {type(exc).__name__}: {exc}")


def _is_done(target: Path, want_flow: bool) -> bool:
    if not is_complete_video(target):
        return False
    if not want_flow:
        return True
    try:
        store = open_store(target)
        return store.num_frames("u") > 0 or store.num_frames() < 2
    except FrameStoreError:
        return False


def _convert(job: Job, opts: Options) -> Outcome:
    info = probe(job.source)
    size = output_size(
        info.width, info.height, target_height=opts.height, short_side=opts.short_side
    )
    writer = _make_writer(job.target, opts)
    flow = FlowStream(method=opts.flow_method, bound=opts.flow_bound) if opts.flow else None
    with writer:
        for frame in iter_frames(job.source, size):
            writer.add("rgb", frame)
            uv = flow.push(frame) if flow else None
            if uv is not None:
                writer.add("u", uv[0])
                writer.add("v", uv[1])
        decoded = writer.counts["rgb"]
        if info.num_frames and decoded < MIN_DECODED_SHARE * info.num_frames:
            raise VideoDecodeError(
                f"{job.source}: truncated, decoded {decoded} of ~{info.num_frames} frames"
            )
        writer.close(**_metadata(job, info.fps, opts))
    return Outcome(job.name, "written", frames=decoded)


def _make_writer(target: Path, opts: Options) -> FrameDBWriter | FrameFolderWriter:
    if opts.layout == "sqlite":
        return FrameDBWriter(target, quality=opts.quality)
    return FrameFolderWriter(target, image_format=opts.image_format, quality=opts.quality)


def _metadata(job: Job, fps: float, opts: Options) -> dict:
    meta = {"fps": fps, "source": str(job.source), "quality": opts.quality}
    if opts.flow:
        mapping = "tao_max_rad" if opts.flow_bound is None else f"bound:{opts.flow_bound:g}"
        meta |= {"flow_method": opts.flow_method, "flow_mapping": mapping}
    return meta


# ----------------------------------------------------------------------------- summary
def report(outcomes: list[Outcome], out: Path) -> int:
    """Log the summary, write ``DATA/prepare_summary.json``; 1 if any video failed."""
    counts = Counter(o.status for o in outcomes)
    for o in outcomes:
        if o.status == "failed":
            log.error("failed %s: %s", o.name, o.reason)
        elif o.status == "skipped" and o.reason != "already prepared":
            log.warning("skipped %s: %s", o.name, o.reason)
    log.info(
        "prepare: %d written, %d skipped (%d already prepared), %d failed",
        counts["written"],
        counts["skipped"],
        sum(o.reason == "already prepared" for o in outcomes),
        counts["failed"],
    )
    out.mkdir(parents=True, exist_ok=True)
    summary = {"counts": dict(counts), "videos": [asdict(o) for o in outcomes]}
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=1, ensure_ascii=False))
    return 1 if counts["failed"] else 0
