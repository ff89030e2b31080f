"""ffmpeg through ffmpeg-python: locate the binary, probe, stream-decode and encode videos.

The binary is the system ``ffmpeg`` when on PATH, else the one bundled with imageio-ffmpeg. That
bundle has no ``ffprobe``, so :func:`probe` falls back to parsing ``ffmpeg -i`` output; exact
frame counts come from decoding (:func:`iter_frames` counts as it streams).
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import ffmpeg
import numpy as np

log = logging.getLogger(__name__)

# Containers read as videos (by prepare, open_store and the split loaders).
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")
# Encoders for write_video in order of preference (the imageio-ffmpeg build has libx264).
ENCODERS = {
    "libx264": {"vcodec": "libx264", "crf": 18, "preset": "veryfast"},
    "mpeg4": {"vcodec": "mpeg4", "qscale:v": 2},
}
# A video that decodes to fewer frames than this share of its container's count is truncated
# (prepare fails it, VideoFileStore refuses it).
MIN_DECODED_SHARE = 0.5
_QUIET = ("-nostdin", "-hide_banner", "-loglevel", "error")


class VideoDecodeError(RuntimeError):
    """ffmpeg could not read a video (missing, truncated, not a video, no frames)."""


@dataclass(frozen=True)
class VideoInfo:
    """Container-level facts; ``num_frames`` is an estimate unless the container stores it."""

    fps: float
    width: int
    height: int
    num_frames: int
    duration: float


@functools.cache
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary: the system one, else imageio-ffmpeg's."""
    system = shutil.which("ffmpeg")
    if system:
        return system
    try:
        import imageio_ffmpeg
    except ImportError as exc:
        raise RuntimeError("no ffmpeg on PATH and imageio-ffmpeg is not installed") from exc
    return imageio_ffmpeg.get_ffmpeg_exe()


@functools.cache
def ffprobe_exe() -> str | None:
    """Path of ffprobe next to ffmpeg or on PATH, or None (imageio-ffmpeg ships none)."""
    sibling = Path(ffmpeg_exe()).with_name("ffprobe")
    return str(sibling) if sibling.is_file() else shutil.which("ffprobe")


@functools.cache
def _ffmpeg_version() -> tuple[int, int]:
    out = subprocess.run([ffmpeg_exe(), "-version"], capture_output=True, text=True).stdout
    match = re.search(r"version n?(\d+)\.(\d+)", out)
    # Git builds print no release number; they are recent.
    return (int(match[1]), int(match[2])) if match else (99, 0)


@functools.cache
def available_encoders() -> frozenset[str]:
    out = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-encoders"], capture_output=True, text=True
    ).stdout
    return frozenset(m[1] for m in re.finditer(r"^\s*V\S*\s+(\S+)", out, re.MULTILINE))


def _passthrough_args() -> dict:
    # Keep every decoded frame, no duplication/dropping to a constant rate (VFR sources).
    if _ffmpeg_version() >= (5, 1):
        return {"fps_mode": "passthrough"}
    return {"vsync": "passthrough"}


# ----------------------------------------------------------------------------- probing
def probe(path: str | os.PathLike) -> VideoInfo:
    """fps, size (after rotation metadata) and an estimated frame count of the first video stream."""
    path = Path(path)
    if not path.is_file():
        raise VideoDecodeError(f"{path}: file not found")
    exe = ffprobe_exe()
    return _probe_ffprobe(path, exe) if exe else _probe_ffmpeg_stderr(path)


def _probe_ffprobe(path: Path, exe: str) -> VideoInfo:
    try:
        info = ffmpeg.probe(str(path), cmd=exe)
    except ffmpeg.Error as exc:
        raise VideoDecodeError(f"{path}: not a readable video ({_last_line(exc.stderr)})") from exc
    streams = [s for s in info.get("streams", []) if s.get("codec_type") == "video"]
    if not streams:
        raise VideoDecodeError(f"{path}: no video stream")
    s = streams[0]
    num, _, den = s.get("avg_frame_rate", "0/1").partition("/")
    fps = _number(num) / _number(den) if _number(den) else 0.0
    duration = _number(s.get("duration")) or _number(info.get("format", {}).get("duration"))
    frames = int(_number(s.get("nb_frames"))) or round(duration * fps)
    width, height = int(s["width"]), int(s["height"])
    rotation = _number(s.get("tags", {}).get("rotate"))
    for side in s.get("side_data_list", []):
        rotation = _number(side.get("rotation", rotation))
    if round(rotation) % 180:
        width, height = height, width
    return VideoInfo(fps=fps, width=width, height=height, num_frames=frames, duration=duration)


def _number(value: object) -> float:
    """ffprobe fields are strings, sometimes "N/A" or missing: those count as 0."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


_STREAM_RE = re.compile(r"Stream #\S+.*?: Video: (?P<rest>.*)")
_SIZE_RE = re.compile(r"\b(\d{2,5})x(\d{2,5})\b")
_FPS_RE = re.compile(r"([\d.]+)(k?) (?:fps|tbr)")
_DURATION_RE = re.compile(r"Duration: (\d+):(\d+):([\d.]+)")
_ROTATION_RE = re.compile(r"rotation of (-?[\d.]+) degrees")


def _probe_ffmpeg_stderr(path: Path) -> VideoInfo:
    """Parse ``ffmpeg -i`` (which exits non-zero: no output file) for the stream summary."""
    err = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
        capture_output=True,
        text=True,
        errors="replace",
    ).stderr
    return parse_stream_info(err, path)


def parse_stream_info(stderr: str, path: Path) -> VideoInfo:
    """VideoInfo from ``ffmpeg -i`` stderr; raises VideoDecodeError without a video stream."""
    stream = _STREAM_RE.search(stderr)
    if stream is None:
        raise VideoDecodeError(f"{path}: no video stream ({_last_line(stderr)})")
    size = _SIZE_RE.search(stream["rest"])
    if size is None:
        raise VideoDecodeError(f"{path}: cannot read the frame size ({stream['rest'][:80]})")
    width, height = int(size[1]), int(size[2])
    fps_match = _FPS_RE.search(stream["rest"])
    fps = float(fps_match[1]) * (1000 if fps_match and fps_match[2] else 1) if fps_match else 0.0
    dur = _DURATION_RE.search(stderr)
    duration = int(dur[1]) * 3600 + int(dur[2]) * 60 + float(dur[3]) if dur else 0.0
    rotation = _ROTATION_RE.search(stderr)
    if rotation and round(float(rotation[1])) % 180:
        width, height = height, width
    return VideoInfo(
        fps=fps, width=width, height=height, num_frames=round(duration * fps), duration=duration
    )


def _last_line(text: str | bytes | None) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


# ----------------------------------------------------------------------------- decoding
def output_size(
    width: int, height: int, *, target_height: int | None = 360, short_side: int | None = None
) -> tuple[int, int]:
    """``(width, height)`` after resizing: to ``short_side`` if given, else ``target_height``
    (None or 0 keeps the size), aspect kept, both rounded to even numbers (yuv420 codecs and the
    SRTG ``scale=-2:360`` convention)."""
    if short_side:
        scale = short_side / min(width, height)
    elif target_height:
        scale = target_height / height
    else:
        scale = 1.0
    return _even(width * scale), _even(height * scale)


def _even(x: float) -> int:
    return max(2, 2 * round(x / 2))


def iter_frames(
    path: str | os.PathLike, size: tuple[int, int] | None = None
) -> Iterator[np.ndarray]:
    """Stream decoded frames ``(H, W, 3)`` uint8 RGB, resized to ``size = (W, H)`` if given.

    Frames come one at a time through a pipe, so a long video is never held in memory. Raises
    VideoDecodeError when ffmpeg fails or decodes no frame.
    """
    path = Path(path)
    if size is None:
        info = probe(path)
        size = (info.width, info.height)
    width, height = size
    stream = ffmpeg.input(str(path)).video.filter("scale", width, height, flags="area")
    args = stream.output(
        "pipe:", format="rawvideo", pix_fmt="rgb24", **_passthrough_args()
    ).compile(cmd=ffmpeg_exe())
    args[1:1] = _QUIET
    yield from _read_frames(path, args, width, height)


def _read_frames(path: Path, args: list[str], width: int, height: int) -> Iterator[np.ndarray]:
    frame_bytes = width * height * 3
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    errors = _drain(proc.stderr)
    count = 0
    try:
        while len(buf := proc.stdout.read(frame_bytes)) == frame_bytes:
            count += 1
            yield np.frombuffer(buf, np.uint8).reshape(height, width, 3)
    except BaseException:
        proc.kill()  # the consumer stopped early (GeneratorExit) or failed
        raise
    finally:
        proc.stdout.close()
        rc = proc.wait()
        errors.join()
    message = _last_line(b"".join(errors.chunks))
    if count == 0:
        raise VideoDecodeError(f"{path}: no frames decoded (ffmpeg: {message})")
    if rc != 0:
        raise VideoDecodeError(f"{path}: ffmpeg failed ({message})")


class _Drain(threading.Thread):
    """Reads a pipe to the end so ffmpeg never blocks on a full stderr buffer."""

    def __init__(self, pipe) -> None:
        super().__init__(daemon=True)
        self.pipe = pipe
        self.chunks: list[bytes] = []

    def run(self) -> None:
        for chunk in iter(lambda: self.pipe.read(4096), b""):
            self.chunks = [*self.chunks[-15:], chunk]
        self.pipe.close()


def _drain(pipe) -> _Drain:
    thread = _Drain(pipe)
    thread.start()
    return thread


def read_video(path: str | os.PathLike, size: tuple[int, int] | None = None) -> np.ndarray:
    """All frames as ``(T, H, W, 3)`` uint8 RGB (for tests and short clips)."""
    return np.stack(list(iter_frames(path, size)))


# ----------------------------------------------------------------------------- encoding
def default_encoder() -> str:
    encoders = available_encoders()
    for name in ENCODERS:
        if name in encoders:
            return name
    raise RuntimeError(f"{ffmpeg_exe()} has none of the encoders {list(ENCODERS)}")


def write_video(
    path: str | os.PathLike, frames: Iterable[np.ndarray], *, fps: float = 25.0
) -> Path:
    """Encode ``(H, W, 3)`` uint8 RGB frames (even H and W) to an mp4 via a pipe.

    Written to a temporary name and renamed, so a crash never leaves a truncated video.
    """
    path = Path(path)
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise ValueError(f"{path}: no frames to write")
    height, width = first.shape[:2]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    out = ffmpeg.input(
        "pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{width}x{height}", r=fps
    ).output(str(tmp), pix_fmt="yuv420p", r=fps, **ENCODERS[default_encoder()])
    args = out.compile(cmd=ffmpeg_exe(), overwrite_output=True)
    args[1:1] = _QUIET
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    errors = _drain(proc.stderr)
    try:
        for frame in itertools.chain([first], frames):
            proc.stdin.write(np.ascontiguousarray(frame, np.uint8).tobytes())
        proc.stdin.close()
    except BrokenPipeError:
        pass  # ffmpeg exited early; its return code and message tell why
    finally:
        rc = proc.wait()
        errors.join()
    if rc != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"{path}: ffmpeg encode failed ({_last_line(b''.join(errors.chunks))})")
    os.replace(tmp, path)
    return path
