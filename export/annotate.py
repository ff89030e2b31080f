"""Annotated outputs of ``inference --render DIR`` for videos: per-window scores, an H.264 copy of
the source with the top-3 classes of the window covering each frame, and a timeline PNG.

The windows are the clips of a one-video evaluation dataset in ``conv`` mode (so clip length,
frame interval, sampling strategy, ``--spatial-crops`` views and two-stream inputs are exactly
those of evaluation); :func:`window_count` picks how many so that neighbours start about
``stride`` frames apart. A frame takes the window that contains it with the nearest centre (the
nearest window when none contains it)::

    windows = [sample_indices(...) for k in range(count)]     # (T,) frame indices each
    owner = covering_window(num_frames, windows)               # (N,) window per frame
    render_annotated(frames, owner, probs, class_names, "out/v.mp4", fps=store_fps(store))
    save_timeline("out/v_timeline.png", windows, probs, class_names, fps=...)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from export.render import (
    MAX_SIDE,
    MIN_SIDE,
    Mp4Writer,
    draw_caption,
    draw_topk,
    fit_frame,
    output_name,
    topk_panel_box,
)
from safeio.excluded import ExcludedItem

__all__ = [
    "WindowItems",
    "contact_sheet",
    "covering_window",
    "project_poses",
    "read_frames",
    "render_annotated",
    "render_skeleton",
    "render_video",
    "save_timeline",
    "skeleton_points",
    "store_fps",
    "topk_entries",
    "visible_joints",
    "window_count",
]

SKELETON_SIZE = (320, 240)  # (W, H) of skeleton videos
SKELETON_FPS = 30.0
# Fixed camera for 3D poses: turned 30 degrees about the vertical axis, tilted 15 degrees down.
CAMERA_YAW, CAMERA_PITCH = math.radians(30.0), math.radians(15.0)
_PERSON_COLOURS = ((255, 170, 0), (80, 200, 255), (120, 255, 120), (255, 90, 160))
JOINT_COLOUR, JOINT_RADIUS = (255, 255, 255), 3
_BACKGROUND = 24
_PANEL_ROWS = 2  # the skeleton label panel: "frame t" and the predicted class
_FILL = 0.85  # share of the free canvas the sequence's bounding box fills

log = logging.getLogger(__name__)

DEFAULT_FPS = 25.0  # frame folders and legacy stores keep no rate
TIMELINE_CLASSES = 5
_READ_CHUNK = 32  # frames decoded at a time while rendering


def window_count(num_frames: int, span: int, stride: int) -> int:
    """Windows of ``span`` frames whose starts are about ``stride`` apart over ``num_frames``:
    ``ceil((N - span + 1) / stride)``, at least 1 (a short video has one, looped, window)."""
    if stride < 1 or span < 1:
        raise ValueError(f"stride and window span must be >= 1, got {stride} and {span}")
    return max(1, math.ceil((num_frames - span + 1) / stride))


def covering_window(num_frames: int, windows: Sequence[np.ndarray]) -> np.ndarray:
    """(N,) index of the window that covers each frame: among the windows whose first..last
    frame range holds it, the one with the nearest centre; else the nearest centre overall."""
    first = np.array([int(np.min(w)) for w in windows], dtype=np.float64)
    last = np.array([int(np.max(w)) for w in windows], dtype=np.float64)
    centre = (first + last) / 2
    frames = np.arange(num_frames, dtype=np.float64)[:, None]
    distance = np.abs(frames - centre[None])
    inside = (frames >= first[None]) & (frames <= last[None])
    penalised = np.where(inside, distance, distance + num_frames + 1)
    return penalised.argmin(axis=1)


class WindowItems(Dataset):
    """A one-video evaluation dataset whose items carry the window (clip) index as sample id,
    so ``train.evaluation.predict`` averages the spatial views of each window, not the video."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.views = int(getattr(dataset, "views", 1))

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        item = self.dataset[index]
        if isinstance(item, ExcludedItem):
            return item
        inputs, target, _ = item
        return inputs, target, index // self.views

    @property
    def batch_finisher(self):
        return getattr(self.dataset, "batch_finisher", None)

    @property
    def collate_fn(self):
        return getattr(self.dataset, "collate_fn", None)


def store_fps(store: object, default: float = DEFAULT_FPS) -> float:
    """The frame rate a store knows (a video file's container, ``prepare``'s metadata), else
    ``default``."""
    fps = getattr(store, "fps", None)
    if fps is None:
        fps = (getattr(store, "metadata", None) or {}).get("fps")
    try:
        fps = float(fps)
    except (TypeError, ValueError):
        fps = 0.0
    if not math.isfinite(fps) or fps <= 0:
        log.info("%s: no frame rate stored; rendering at %g fps", store, default)
        return default
    return fps


def read_frames(store: object, num_frames: int, chunk: int = _READ_CHUNK) -> Iterator[np.ndarray]:
    """Every RGB frame ``(H, W, 3)`` uint8 of a frame store, in order, ``chunk`` at a time."""
    for start in range(0, num_frames, chunk):
        yield from store.read(range(start, min(num_frames, start + chunk)), "rgb")


def topk_entries(
    probs: np.ndarray, class_names: Sequence[str], k: int = 3
) -> list[tuple[str, float]]:
    """``[(name, probability), ...]`` of the k highest of ``probs`` (K,), best first."""
    order = np.argsort(-probs, kind="stable")[:k]
    return [(str(class_names[i]), float(probs[i])) for i in order]


def render_annotated(
    frames: Iterable[np.ndarray],
    owner: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    path: str | Path,
    *,
    fps: float,
    k: int = 3,
    caption: str | None = None,
    max_side: int | None = MAX_SIDE,
) -> int:
    """Write ``frames`` as H.264 ``path`` at ``fps``, frame i carrying the top-k bars of window
    ``owner[i]`` (``probs`` (W, K)); returns the number of frames written. Sources with a short
    side under ``MIN_SIDE`` are enlarged by a whole factor, larger ones capped at ``max_side``."""
    entries = [topk_entries(row, class_names, k) for row in probs]
    with Mp4Writer(path, fps) as writer:
        for index, frame in enumerate(frames):
            frame = fit_frame(frame, max_side, min_side=MIN_SIDE)
            frame = draw_topk(frame, entries[int(owner[index])])
            if caption:
                frame = draw_caption(frame, caption)
            writer.write(frame)
    if writer.frames != len(owner):
        raise ValueError(f"{path}: {writer.frames} frames rendered, the source has {len(owner)}")
    return writer.frames


def save_timeline(
    path: str | Path,
    windows: Sequence[np.ndarray],
    probs: np.ndarray,
    class_names: Sequence[str],
    *,
    fps: float,
    top: int = TIMELINE_CLASSES,
    title: str = "",
) -> Path:
    """Probability over time (window centres, seconds) of the ``top`` classes with the highest
    peak, one line each, as a PNG (800 x 300 pixels)."""
    from matplotlib.figure import Figure

    centres = np.array([(np.min(w) + np.max(w)) / 2 for w in windows]) / fps
    order = np.argsort(-probs.max(axis=0), kind="stable")[: min(top, probs.shape[1])]
    fig = Figure(figsize=(8, 3), dpi=100)
    ax = fig.subplots()
    for index in order:
        ax.plot(centres, probs[:, index], marker="o", markersize=3, label=str(class_names[index]))
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("time (s, window centre)")
    ax.set_ylabel("probability")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.subplots_adjust(left=0.08, right=0.78, bottom=0.17, top=0.88)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def render_video(
    store: object,
    windows: Sequence[np.ndarray],
    probs: np.ndarray,
    class_names: Sequence[str],
    out_dir: str | Path,
    name: str,
    *,
    max_side: int | None = MAX_SIDE,
) -> tuple[Path, Path]:
    """``<name>.mp4`` (every RGB frame of ``store`` with the top-3 of its covering window; the
    source's frame count and rate) and ``<name>_timeline.png`` in ``out_dir`` (``name`` made a
    safe file name by :func:`export.render.output_name`)."""
    out_dir, name = Path(out_dir), output_name(name)
    num_frames = store.num_frames("rgb")
    fps = store_fps(store)
    mean = probs.mean(axis=0)
    best = int(mean.argmax())
    caption = f"video: {class_names[best]} {mean[best]:.2f}"
    mp4 = out_dir / f"{name}.mp4"
    owner = covering_window(num_frames, windows)
    render_annotated(
        read_frames(store, num_frames), owner, probs, class_names, mp4,
        fps=fps, caption=caption, max_side=max_side,
    )  # fmt: skip
    png = save_timeline(
        out_dir / f"{name}_timeline.png", windows, probs, class_names, fps=fps, title=name
    )
    return mp4, png


# ----------------------------------------------------------------------------- skeletons
def project_poses(sequence: np.ndarray) -> np.ndarray:
    """(C, T, V, M) joint coordinates (C = 2 or 3, optionally + a score channel) to (T, V, M, 2)
    image-plane points, y down: 2D poses as given; 3D poses (a non-zero z) through the fixed
    camera (``CAMERA_YAW``, ``CAMERA_PITCH``, orthographic) with y up in the data."""
    coords = np.asarray(sequence, np.float64)
    xy = coords[:2].transpose(1, 2, 3, 0)  # (T, V, M, 2)
    if coords.shape[0] < 3 or not np.any(coords[2]) or (coords.shape[0] == 3 and _is_score(coords)):
        return xy
    x, y, z = coords[0], coords[1], coords[2]
    x_cam = x * math.cos(CAMERA_YAW) + z * math.sin(CAMERA_YAW)
    z_cam = -x * math.sin(CAMERA_YAW) + z * math.cos(CAMERA_YAW)
    y_cam = y * math.cos(CAMERA_PITCH) - z_cam * math.sin(CAMERA_PITCH)
    return np.stack([x_cam, -y_cam], axis=-1)


def _is_score(coords: np.ndarray) -> bool:
    """A third channel of keypoint scores (values in [0, 1]) rather than a depth."""
    third = coords[2][np.any(coords[:2] != 0, axis=0)]
    return third.size > 0 and bool(np.all((third >= 0) & (third <= 1)))


def visible_joints(sequence: np.ndarray, root: int | None = None) -> np.ndarray:
    """(T, V, M) joints to draw of a (C, T, V, M) sequence: those with a non-zero x or y (zeros
    mark unseen joints and padding), and the ``root`` joint wherever its person is seen when the
    data are root-relative (the root at the origin in every such frame, as TAO's 3dbp poses)."""
    visible = np.any(np.asarray(sequence)[:2] != 0, axis=0)
    if root is None:
        return visible
    present = visible.any(axis=1)  # (T, M)
    at_origin = ~visible[:, root]
    if present.any() and np.all(at_origin[present]):
        visible[:, root] = present
    return visible


def skeleton_points(
    sequence: np.ndarray, size: tuple[int, int] = SKELETON_SIZE, *, root: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Where :func:`render_skeleton` draws each joint: ``(T, V, M, 2)`` pixel positions (x, y)
    on a ``size`` (W, H) canvas, and the ``(T, V, M)`` mask of joints drawn (see
    :func:`visible_joints`). All visible points of the sequence are scaled alike, aspect kept,
    into the canvas below the label panel with a margin, so no joint hides under the label."""
    sequence = np.asarray(sequence)
    points = project_poses(sequence)  # (T, V, M, 2)
    visible = visible_joints(sequence, root)
    width, height = size
    top = topk_panel_box(height, width, _PANEL_ROWS)[3]
    shown = points[visible]
    if shown.size == 0:
        return np.zeros_like(points), visible
    low, high = shown.min(axis=0), shown.max(axis=0)
    span = np.maximum(high - low, 1e-6)
    scale = _FILL * min(width / span[0], (height - top) / span[1])
    centre = np.array([width / 2, (top + height) / 2])
    return (points - (low + high) / 2) * scale + centre, visible


def render_skeleton(
    sequence: np.ndarray,
    edges: Sequence[tuple[int, int]],
    path: str | Path,
    *,
    label: str,
    score: float,
    fps: float = SKELETON_FPS,
    size: tuple[int, int] = SKELETON_SIZE,
    root: int | None = None,
) -> int:
    """One (C, T, V, M) sequence as an H.264 video: every person's bones (the layout's
    ``edges``, a colour per person) and joints (white, drawn last so no bone hides one) per
    frame (trailing all-zero frames, padding, left out), the predicted ``label`` and ``score``
    drawn on every frame; ``root``: the layout's centre joint (drawn at the origin of
    root-relative poses). Returns the number of frames."""
    import cv2

    points, visible = skeleton_points(sequence, size, root=root)
    frames = int(np.nonzero(visible.any(axis=(1, 2)))[0].max(initial=-1)) + 1 or len(points)
    pixels = np.round(points).astype(int)
    with Mp4Writer(path, fps) as writer:
        for t in range(frames):
            canvas = np.full((size[1], size[0], 3), _BACKGROUND, np.uint8)
            seen, xy = visible[t], pixels[t]  # (V, M), (V, M, 2)
            for person in range(xy.shape[1]):
                colour = _PERSON_COLOURS[person % len(_PERSON_COLOURS)]
                for i, j in edges:
                    if seen[i, person] and seen[j, person]:
                        cv2.line(canvas, tuple(xy[i, person]), tuple(xy[j, person]), colour, 2,
                                 cv2.LINE_AA)  # fmt: skip
            for v, person in zip(*np.nonzero(seen)):
                cv2.circle(canvas, tuple(xy[v, person]), JOINT_RADIUS, JOINT_COLOUR, -1,
                           cv2.LINE_AA)  # fmt: skip
            writer.write(draw_topk(canvas, [(label, score)], title=f"frame {t}"))
    return writer.frames


# ----------------------------------------------------------------------------- gesture crops
def contact_sheet(
    images: Sequence[np.ndarray],
    predicted: Sequence[str],
    scores: Sequence[float],
    truth: Sequence[str | None],
    path: str | Path,
    *,
    tile: int = 128,
    columns: int = 8,
) -> Path:
    """A PNG grid of RGB uint8 crops (each fitted into ``tile`` x ``tile``) with the predicted
    label and score under each; where the true label is known and differs, the tile gets a red
    frame and the true label ("≠ true"); right ones a green frame."""
    import cv2

    rows = max(1, math.ceil(len(images) / columns))
    caption = 34
    sheet = np.full((rows * (tile + caption), min(columns, max(1, len(images))) * tile, 3), 255,
                    np.uint8)  # fmt: skip
    for index, (image, label, score, true) in enumerate(zip(images, predicted, scores, truth)):
        top, left = (index // columns) * (tile + caption), (index % columns) * tile
        height, width = image.shape[:2]
        factor = tile / max(height, width)
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        fitted = cv2.resize(np.ascontiguousarray(image), size, interpolation=cv2.INTER_AREA)
        y, x = top + (tile - size[1]) // 2, left + (tile - size[0]) // 2
        sheet[y : y + size[1], x : x + size[0]] = fitted
        colour = (200, 200, 200) if true is None else (0, 170, 0) if true == label else (220, 0, 0)
        cv2.rectangle(sheet, (left + 1, top + 1), (left + tile - 2, top + tile - 2), colour, 3)
        lines = [f"{label} {score:.2f}"] + ([] if true in (None, label) else [f"true: {true}"])
        for k, text in enumerate(lines):
            text = text.encode("ascii", "replace").decode()[:22]
            cv2.putText(sheet, text, (left + 3, top + tile + 14 + 15 * k), cv2.FONT_HERSHEY_SIMPLEX,
                        0.4, (0, 0, 0) if k == 0 else (200, 0, 0), 1, cv2.LINE_AA)  # fmt: skip
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), sheet[..., ::-1])
    return path
