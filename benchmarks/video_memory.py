"""Peak memory of ``train_hmdb.py onnx-infer`` on a raw 1080p video file.

    python benchmarks/video_memory.py                       # 103 frames of 1920x1080, --mode conv
    python benchmarks/video_memory.py --repo /tmp/old       # the same inputs, another checkout

Encodes a 1080p H.264 clip with ffmpeg (``testsrc2``, a keyframe every 25 frames), exports a
small video network (``r3d_tiny``, 16 frames, 112 crop, short side 128) to ONNX, then runs
``python train_hmdb.py onnx-infer --input clip.mp4 --mode conv`` in a child process of ``--repo``
and prints its peak resident set size (``wait4`` rusage of that child). The inputs are built
with this checkout, so ``--repo`` can point at an older one (``git worktree add``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.video.ffmpeg_io import ffmpeg_exe
from export.cli import export_checkpoint
from network import build_model
from train.checkpoint import atomic_save, make_checkpoint

REPO = Path(__file__).resolve().parents[1]
TRAIN_ARGS = {"clip_length": 16, "clip_size": 112, "short_side": 128, "modality": "rgb"}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/actrec_video_memory"))
    parser.add_argument("--frames", type=int, default=103)
    parser.add_argument("--size", default="1920x1080")
    parser.add_argument("--mode", choices=("center", "conv"), default="conv")
    parser.add_argument("--segments", type=int, default=10)
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout whose onnx-infer runs")
    return parser


def make_inputs(work: Path, frames: int, size: str) -> tuple[Path, Path]:
    """The 1080p clip and the ONNX file (re-used when present)."""
    work.mkdir(parents=True, exist_ok=True)
    video = work / f"clip_{size}_{frames}.mp4"
    if not video.is_file():
        subprocess.run(
            [ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi",
             "-i", f"testsrc2=s={size}:r=25", "-frames:v", str(frames), "-c:v", "libx264",
             "-preset", "veryfast", "-g", "25", "-pix_fmt", "yuv420p", str(video)],
            check=True,
        )  # fmt: skip
    onnx = work / "r3d_tiny.onnx"
    if not onnx.is_file():
        torch.manual_seed(0)
        model = build_model("r3d_tiny", num_classes=3)
        state = make_checkpoint(model, args=TRAIN_ARGS, family="video", class_names=["a", "b", "c"])
        atomic_save(state, work / "r3d_tiny.pth")
        export_checkpoint(work / "r3d_tiny.pth", onnx, family="video")
    return video, onnx


def peak_rss(repo: Path, argv: list[str]) -> tuple[float, float, int]:
    """``(peak RSS MiB, seconds, exit code)`` of ``python train_hmdb.py *argv`` run in ``repo``."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "train_hmdb.py", *argv], cwd=repo, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024, time.monotonic() - started, proc.returncode


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    video, onnx = make_inputs(args.work, args.frames, args.size)
    infer = ["onnx-infer", "--onnx", str(onnx), "--input", str(video), "--mode", args.mode,
             "--num-segments", str(args.segments), "--threads", "1"]  # fmt: skip
    mib, seconds, code = peak_rss(args.repo.resolve(), infer)
    print(f"| {args.repo} | {video.name} | --mode {args.mode} | {mib:.0f} MiB | {seconds:.1f} s |")
    return code


if __name__ == "__main__":
    sys.exit(main())
