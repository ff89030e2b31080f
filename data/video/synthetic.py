"""``train_hmdb.py synth``: a small synthetic action dataset as real encoded mp4 videos.

Writes ``ROOT/<class>/<class>_<i>.mp4`` and HMDB51-style split files
``ROOT/splits/<class>_test_split{1,2,3}.txt`` (``<video>.mp4 1|2``), so the data goes through
the same ``prepare`` and split code as HMDB51.

Every video is a procedural scene: a smooth random textured background, a large solid shape with
an outline, camera jitter (a random walk of the crop window) and Gaussian pixel noise. Position,
size, colour, shape and speed are random per video; the class only fixes the motion (or, for the
``wobble_*`` pair, the shape). Pairs that no single frame separates: left vs right, grow vs
shrink, clockwise vs anticlockwise, appear vs disappear; one pair differs in appearance only.
Speeds scale with ``--frames`` so any half of a video still shows its action. Each video draws
from its own generator seeded by ``(seed, class, index)``: the output is deterministic and a
video does not change when classes or counts are added.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from data.video.ffmpeg_io import write_video

log = logging.getLogger(__name__)

# Camera-jitter margin (pixels) around the visible frame.
MARGIN = 4
# Unit-size shapes, vertices as (x, y) with y down. All have a visible orientation, so rotation
# shows; the cross and ring are reserved for the appearance pair.
_CIRCLE = [(math.cos(a), math.sin(a)) for a in np.linspace(0, 2 * math.pi, 40, endpoint=False)]
SHAPES = {
    "triangle": [(1.0, 0.0), (-0.7, -0.75), (-0.7, 0.75)],
    "bar": [(1.0, 0.35), (-1.0, 0.35), (-1.0, -0.35), (1.0, -0.35)],
    "pacman": [(0.0, 0.0)] + [p for p in _CIRCLE if math.atan2(p[1], p[0]) % (2 * math.pi) > 0.9],
    "arrow": [
        (1.0, 0.0),
        (0.1, -0.8),
        (0.1, -0.3),
        (-1.0, -0.3),
        (-1.0, 0.3),
        (0.1, 0.3),
        (0.1, 0.8),
    ],
    "cross": [
        (1.0, 0.3),
        (0.3, 0.3),
        (0.3, 1.0),
        (-0.3, 1.0),
        (-0.3, 0.3),
        (-1.0, 0.3),
        (-1.0, -0.3),
        (-0.3, -0.3),
        (-0.3, -1.0),
        (0.3, -1.0),
        (0.3, -0.3),
        (1.0, -0.3),
    ],
    "ring": _CIRCLE,
}
MOTION_SHAPES = ("triangle", "bar", "pacman", "arrow")
ELONGATED_SHAPES = ("bar", "arrow", "triangle")


@dataclass
class Track:
    """Per-frame object state, arrays of length F: centre (px), scale (px), angle (deg), alpha."""

    x: np.ndarray
    y: np.ndarray
    scale: np.ndarray
    angle: np.ndarray
    alpha: np.ndarray
    shape: str


def _base(rng: np.random.Generator, f: int, w: int, h: int) -> Track:
    """A roughly static object: random place, size and orientation, slow drift, no spin (so only
    the rotation classes turn)."""
    t = np.arange(f, dtype=np.float64)
    drift = rng.uniform(-0.04, 0.04, size=2) * (w, h) / max(1, f - 1)
    return Track(
        x=rng.uniform(0.35, 0.65) * w + drift[0] * t,
        y=rng.uniform(0.35, 0.65) * h + drift[1] * t,
        scale=np.full(f, rng.uniform(0.2, 0.28) * h),
        angle=np.full(f, rng.uniform(0, 360)),
        alpha=np.ones(f),
        shape=str(rng.choice(MOTION_SHAPES)),
    )


def _move(direction: int) -> Callable[[np.random.Generator, int, int, int], Track]:
    def track(rng: np.random.Generator, f: int, w: int, h: int) -> Track:
        tr = _base(rng, f, w, h)
        travel = rng.uniform(0.55, 0.75) * w
        start = w / 2 - direction * travel / 2 + rng.uniform(-0.05, 0.05) * w
        tr.x = start + direction * travel * np.linspace(0, 1, f)
        return tr

    return track


def _zoom(grow: bool) -> Callable[[np.random.Generator, int, int, int], Track]:
    def track(rng: np.random.Generator, f: int, w: int, h: int) -> Track:
        tr = _base(rng, f, w, h)
        small, ratio = rng.uniform(0.11, 0.14) * h, rng.uniform(2.5, 3.2)
        exponent = np.linspace(0, 1, f) if grow else np.linspace(1, 0, f)
        tr.scale = small * ratio**exponent
        return tr

    return track


def _rotate(sign: int) -> Callable[[np.random.Generator, int, int, int], Track]:
    def track(rng: np.random.Generator, f: int, w: int, h: int) -> Track:
        tr = _base(rng, f, w, h)
        # Degrees per frame for a 32-frame video (a shorter video turns faster): slow enough
        # that the tips of these larger, elongated shapes move a few pixels per frame, which
        # small early receptive fields can follow.
        speed = rng.uniform(5.0, 8.0) * 32 / f
        tr.angle = rng.uniform(0, 360) + sign * speed * np.arange(f)
        tr.scale = np.full(f, rng.uniform(0.28, 0.36) * h)
        tr.shape = str(rng.choice(ELONGATED_SHAPES))
        return tr

    return track


def _fade(appear: bool) -> Callable[[np.random.Generator, int, int, int], Track]:
    def track(rng: np.random.Generator, f: int, w: int, h: int) -> Track:
        tr = _base(rng, f, w, h)
        # A quick fade near the middle: unlike growing, the object is full size throughout,
        # and a half-length clip around the centre still sees the change.
        start = rng.uniform(0.3, 0.45) * f
        ramp = np.clip((np.arange(f) - start) / (rng.uniform(0.2, 0.3) * f), 0, 1)
        tr.alpha = ramp if appear else 1 - ramp
        return tr

    return track


def _wobble(shape: str) -> Callable[[np.random.Generator, int, int, int], Track]:
    def track(rng: np.random.Generator, f: int, w: int, h: int) -> Track:
        tr = _base(rng, f, w, h)
        t = np.arange(f)
        amp, period = rng.uniform(0.05, 0.08) * w, rng.uniform(6, 10)
        phase = rng.uniform(0, 2 * math.pi, size=2)
        tr.x = tr.x + amp * np.sin(2 * math.pi * t / period + phase[0])
        tr.y = tr.y + amp * np.sin(2 * math.pi * t / period + phase[1])
        tr.scale = np.full(f, rng.uniform(0.26, 0.32) * h)
        tr.shape = shape
        return tr

    return track


# class name -> object track. Order fixes each class's seed, so append new classes at the end.
CLASSES: dict[str, Callable[[np.random.Generator, int, int, int], Track]] = {
    "move_left": _move(-1),
    "move_right": _move(+1),
    "grow": _zoom(grow=True),
    "shrink": _zoom(grow=False),
    "rotate_clockwise": _rotate(+1),  # +angle turns clockwise on screen (y points down)
    "rotate_anticlockwise": _rotate(-1),
    "appear": _fade(appear=True),
    "disappear": _fade(appear=False),
    "wobble_cross": _wobble("cross"),
    "wobble_ring": _wobble("ring"),
}


# ----------------------------------------------------------------------------- rendering
def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Smooth random texture ``(h, w, 3)`` float32: mid grey with a mild tint. Low contrast and
    colour on purpose: a distinctive background would let a network memorise each video."""
    coarse = cv2.resize(rng.uniform(-1, 1, (4, 5)).astype(np.float32), (w, h), cv2.INTER_CUBIC)
    fine = cv2.resize(rng.uniform(-1, 1, (12, 16)).astype(np.float32), (w, h), cv2.INTER_CUBIC)
    grey = rng.uniform(100, 150) + 25 * coarse + 12 * fine
    tint = rng.uniform(-12, 12, size=3).astype(np.float32)
    return np.clip(grey[..., None] + tint, 0, 255)


def _object_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A saturated colour far from the mean background colour."""
    mean = background.reshape(-1, 3).mean(axis=0)
    for _ in range(20):
        colour = rng.uniform(0, 255, size=3)
        colour[rng.integers(3)] = rng.choice([20.0, 235.0])
        if np.abs(colour - mean).sum() > 150:
            break
    return colour.astype(np.float32)


def _mask(track: Track, t: int, w: int, h: int) -> np.ndarray:
    """Antialiased coverage ``(h, w)`` float32 in [0, 1] of the object at frame ``t``."""
    a = math.radians(track.angle[t])
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    pts = np.asarray(SHAPES[track.shape]) @ rot.T * track.scale[t] + (track.x[t], track.y[t])
    mask = np.zeros((h, w), np.uint8)
    # shift=4: vertices with 1/16 pixel precision, so slow motion is smooth.
    cv2.fillPoly(mask, [np.round(pts * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    if track.shape == "ring":
        hole = np.round(((pts - (track.x[t], track.y[t])) * 0.5 + (track.x[t], track.y[t])) * 16)
        cv2.fillPoly(mask, [hole.astype(np.int32)], 0, cv2.LINE_AA, shift=4)
    return mask.astype(np.float32) / 255


def render_video(
    class_name: str, rng: np.random.Generator, *, frames: int = 32, size: tuple[int, int] = (96, 72)
) -> np.ndarray:
    """One video of ``class_name`` as ``(frames, H, W, 3)`` uint8 RGB, ``size = (W, H)``."""
    w, h = size
    sw, sh = w + 2 * MARGIN, h + 2 * MARGIN
    track = CLASSES[class_name](rng, frames, w, h)
    track.x, track.y = track.x + MARGIN, track.y + MARGIN
    background = _background(rng, sw, sh)
    colour = _object_colour(rng, background)
    outline = colour * 0.35
    jitter = np.clip(np.cumsum(rng.normal(0, 0.5, size=(frames, 2)), axis=0), -MARGIN, MARGIN)
    out = np.empty((frames, h, w, 3), np.uint8)
    for t in range(frames):
        mask = _mask(track, t, sw, sh)
        edge = (cv2.dilate(mask, np.ones((3, 3), np.uint8)) - mask)[..., None] * track.alpha[t]
        cover = mask[..., None] * track.alpha[t]
        scene = background * (1 - cover - edge) + colour * cover + outline * edge
        scene += rng.normal(0, 3.0, size=scene.shape)
        dx, dy = (np.round(jitter[t]) + MARGIN).astype(int)
        out[t] = np.clip(scene[dy : dy + h, dx : dx + w], 0, 255).astype(np.uint8)
    return out


def video_rng(seed: int, class_name: str, index: int) -> np.random.Generator:
    """The generator of one video, independent of which other videos are made."""
    return np.random.default_rng([seed, list(CLASSES).index(class_name), index])


# ----------------------------------------------------------------------------- command
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="output video root ROOT")
    parser.add_argument("--classes", nargs="+", choices=list(CLASSES), default=list(CLASSES))
    parser.add_argument("--videos-per-class", type=int, default=32)
    parser.add_argument("--frames", type=int, default=32, help="frames per video")
    parser.add_argument("--size", type=_parse_size, default=(96, 72), help="WxH, even numbers")
    parser.add_argument("--fps", type=float, default=12.0)
    parser.add_argument("--test-fraction", type=float, default=0.25, help="val share per split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected WxH, got {text!r}") from exc
    if w < 16 or h < 16 or w % 2 or h % 2:
        raise argparse.ArgumentTypeError(f"size must be even and at least 16x16, got {text!r}")
    return w, h


def run(args: argparse.Namespace) -> int:
    """Write the videos and split files; returns 0."""
    names = {c: [f"{c}_{i:03d}.mp4" for i in range(args.videos_per_class)] for c in args.classes}
    jobs = [(c, i, name) for c in args.classes for i, name in enumerate(names[c])]

    def make(job: tuple[str, int, str]) -> None:
        class_name, index, name = job
        rng = video_rng(args.seed, class_name, index)
        frames = render_video(class_name, rng, frames=args.frames, size=args.size)
        write_video(args.out / class_name / name, frames, fps=args.fps)

    # Threads suffice: encoding runs in ffmpeg processes and OpenCV/numpy release the GIL.
    with ThreadPoolExecutor(max(1, args.workers)) as pool:
        list(tqdm(pool.map(make, jobs), total=len(jobs), desc="synth", unit="video"))
    write_splits(args.out / "splits", names, args.test_fraction, args.seed)
    log.info(
        "synth: %d videos in %d classes (%d frames, %dx%d) under %s",
        len(jobs),
        len(names),
        args.frames,
        *args.size,
        args.out,
    )
    return 0


def write_splits(
    splits_dir: Path, names: dict[str, list[str]], test_fraction: float, seed: int
) -> None:
    """HMDB51-style ``<class>_test_split{1,2,3}.txt``: split k tests a different, seeded
    ``test_fraction`` of each class (1 = train, 2 = test)."""
    splits_dir.mkdir(parents=True, exist_ok=True)
    for class_name, videos in names.items():
        order = np.random.default_rng([seed, list(CLASSES).index(class_name)]).permutation(
            len(videos)
        )
        n_test = max(1, round(len(videos) * test_fraction)) if len(videos) > 1 else 0
        for k in (1, 2, 3):
            test = {int(i) for i in np.roll(order, -(k - 1) * n_test)[:n_test]}
            lines = [f"{v} {2 if i in test else 1}\n" for i, v in enumerate(videos)]
            (splits_dir / f"{class_name}_test_split{k}.txt").write_text("".join(lines))
