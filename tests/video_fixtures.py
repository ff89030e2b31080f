"""Tiny videos and frame stores for tests: every layout built from the same frames.

Import from tests as ``from tests.video_fixtures import make_frames, ...`` (``tests/conftest.py``
puts the repository root on ``sys.path``).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from data.video.ffmpeg_io import ffmpeg_exe, write_video
from data.video.framestore import FrameDBWriter, FrameFolderWriter


def make_frames(n: int = 8, height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """``(n, H, W, 3)`` uint8 RGB: smooth colour ramps plus a bright bar whose x position encodes
    the frame index, so order survives JPEG/H.264 compression and can be checked."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = np.empty((n, height, width, 3), np.uint8)
    for t in range(n):
        base = rng.uniform(40, 120, size=3)
        for c in range(3):
            frames[t, ..., c] = np.clip(base[c] + 60 * (xx / width) * (c + 1) / 3 + yy / 4, 0, 255)
        x0 = int(t * (width - 8) / max(1, n - 1))
        frames[t, :, x0 : x0 + 8] = (250, 40, 40)
    return frames


def make_flow(n: int = 7, height: int = 48, width: int = 64, seed: int = 1) -> np.ndarray:
    """``(n, H, W)`` uint8 grayscale stand-ins for u or v flow images (smooth, JPEG-friendly)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    return np.stack(
        [np.clip(128 + rng.uniform(-60, 60) * xx / width + yy, 0, 255) for _ in range(n)]
    ).astype(np.uint8)


def make_video(path: Path, frames: np.ndarray | None = None, *, fps: float = 10.0) -> Path:
    """Encode ``frames`` (default :func:`make_frames`) as an mp4 at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_video(path, make_frames() if frames is None else frames, fps=fps)


def make_zero_frame_video(path: Path) -> Path:
    """A valid AVI container whose video stream holds no frame."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi",
         "-i", "color=c=red:s=32x32:d=1", "-frames:v", "0", "-c:v", "mpeg4", str(path)],
        check=True,
    )  # fmt: skip
    return path


def _fill(writer, frames: np.ndarray, u: np.ndarray | None, v: np.ndarray | None) -> None:
    for frame in frames:
        writer.add("rgb", frame)
    for stream, flow in (("u", u), ("v", v)):
        for image in [] if flow is None else flow:
            writer.add(stream, image)


def make_framedb(
    video_dir: Path,
    frames: np.ndarray,
    *,
    u: np.ndarray | None = None,
    v: np.ndarray | None = None,
    legacy: bool = False,
    quality: int = 95,
    **metadata,
) -> Path:
    """Write ``video_dir/frames.db``: ours (index, metadata, n_frames) or ``legacy`` upstream."""
    with FrameDBWriter(video_dir, quality=quality, legacy=legacy) as writer:
        _fill(writer, frames, u, v)
        writer.close(**metadata)
    return video_dir


def make_tao_folder(
    video_dir: Path,
    frames: np.ndarray,
    *,
    u: np.ndarray | None = None,
    v: np.ndarray | None = None,
    image_format: str = "png",
) -> Path:
    """Write the TAO layout ``video_dir/{rgb,u,v}/000000.<ext> ...``."""
    with FrameFolderWriter(video_dir, image_format=image_format) as writer:
        _fill(writer, frames, u, v)
    return video_dir
