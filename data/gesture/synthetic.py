"""Synthetic hand-gesture images in the GestureNet annotation format (``train_gesture.py synth``).

Drawn hands (palm + capsule fingers) for thumbs_up, fist, stop, ok, two and random, by several
users, each with a skin tone, a hand size and a handedness; varied backgrounds, rotation, scale and
lighting. Layout (shared/reference/gesture.md §4.3)::

    ROOT/original/data/data.json                              {"set": "data", "users": {...}}
    ROOT/original/data/<uid>/<uid>_r<rec>/<frame>.png         one recording = one class
    ROOT/original/data/annotation/<uid>_r<rec>_<frame>.json   one annotation per image
    ROOT/dataset_config.json, ROOT/dataset_experiment_config.json   specs for ``convert``

Deterministic for a seed: each recording draws from its own ``default_rng([seed, user, rec])``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from data.gesture.annotation import GESTURE_CLASSES, make_annotation

__all__ = ["SynthConfig", "add_arguments", "draw_hand", "make_synthetic_dataset", "run"]

log = logging.getLogger(__name__)

# Finger order: thumb, index, middle, ring, pinky. Geometry in units of the hand size, palm
# centre at the origin, fingers up (-y), a right hand seen from the palm side (thumb on the left).
FINGER_BASES = ((-0.42, 0.0), (-0.3, -0.38), (-0.1, -0.45), (0.1, -0.43), (0.29, -0.36))
FINGER_LENGTHS = (0.55, 0.62, 0.7, 0.64, 0.5)
FINGER_ANGLES = (-60.0, -12.0, -3.0, 6.0, 16.0)  # degrees from "up", spread of an open hand
FINGER_WIDTH = 0.17

# Extended fingers per pose (1 = extended); curled fingers are drawn as knuckle stubs.
POSES: dict[str, tuple[int, int, int, int, int]] = {
    "thumbs_up": (1, 0, 0, 0, 0),  # thumb drawn pointing straight up, see _thumb_direction
    "fist": (0, 0, 0, 0, 0),
    "stop": (1, 1, 1, 1, 1),
    "ok": (0, 0, 1, 1, 1),  # thumb and index close into a ring, drawn by _draw_ok_ring
    "two": (0, 1, 1, 0, 0),
    "point": (0, 1, 0, 0, 0),
    "call": (1, 0, 0, 0, 1),
    "rock": (0, 1, 0, 0, 1),
    "three": (0, 1, 1, 1, 0),
}
# Palm half-axes (x, y) in hand units; a thumbs-up shows the fist from the side (wide, low).
PALM_AXES = {"thumbs_up": (0.5, 0.36)}
DEFAULT_PALM_AXES = (0.45, 0.5)
# Knuckles of fingers curled towards the camera: (x, y) centres; radius KNUCKLE_RADIUS.
KNUCKLES = {"thumbs_up": ((0.46, -0.24), (0.5, -0.08), (0.5, 0.08), (0.46, 0.24))}
KNUCKLE_RADIUS = 0.11
# The "random" class: hand shapes that are none of the five gestures.
RANDOM_POSES = ("point", "call", "rock", "three")
SKIN_TONES_BGR = ((189, 224, 255), (148, 192, 241), (110, 160, 224), (72, 118, 188), (45, 80, 141))
LOCATIONS = ("indoor", "outdoor")


@dataclass(frozen=True)
class SynthConfig:
    """Size of the synthetic set; the defaults make the demo set (864 images)."""

    num_users: int = 12
    images_per_class: int = 12
    image_width: int = 160
    image_height: int = 120
    seed: int = 0


@dataclass(frozen=True)
class User:
    uid: str
    skin_bgr: tuple[int, int, int]
    hand_size: float  # pixels, palm height
    left_handed: bool


def _to_image(
    points: np.ndarray, centre: tuple[float, float], size: float, angle: float, mirror: bool
) -> np.ndarray:
    """Hand-frame points (K, 2) → image pixels (K, 2)."""
    pts = points.copy()
    if mirror:
        pts[:, 0] = -pts[:, 0]
    rad = math.radians(angle)
    rot = np.array([[math.cos(rad), -math.sin(rad)], [math.sin(rad), math.cos(rad)]])
    return pts @ rot.T * size + np.asarray(centre)


def _capsule(canvas: np.ndarray, mask: np.ndarray, p0, p1, width: int, colour) -> None:
    """A finger: a thick line with round caps, outlined in a darker shade."""
    a = (round(p0[0]), round(p0[1]))
    b = (round(p1[0]), round(p1[1]))
    dark = tuple(int(c * 0.6) for c in colour)
    cv2.line(canvas, a, b, dark, width + 2, cv2.LINE_AA)
    cv2.line(canvas, a, b, colour, width, cv2.LINE_AA)
    cv2.line(mask, a, b, 255, width + 2)


def _finger_segment(finger: int, extended: bool, pose: str) -> np.ndarray:
    """(2, 2) start and end of one finger in hand coordinates."""
    base = np.asarray(FINGER_BASES[finger])
    if finger == 0 and pose == "thumbs_up":
        base = np.asarray((-0.3, -0.35))
        return np.stack([base, base + np.asarray((0.0, -0.65))])
    if not extended:
        # Curled: a short stub folded over the palm (the thumb lies across it).
        stub = (0.3, 0.05) if finger == 0 else (0.0, 0.12)
        return np.stack([base, base + np.asarray(stub)])
    rad = math.radians(FINGER_ANGLES[finger])
    direction = np.asarray((math.sin(rad), -math.cos(rad)))
    return np.stack([base, base + direction * FINGER_LENGTHS[finger]])


def draw_hand(
    canvas: np.ndarray,
    pose: str,
    *,
    centre: tuple[float, float],
    size: float,
    angle: float,
    mirror: bool,
    skin_bgr: tuple[int, int, int],
) -> tuple[int, int, int, int]:
    """Draw ``pose`` on ``canvas`` (H, W, 3) uint8 BGR in place; the hand box (x, y, w, h)."""
    mask = np.zeros(canvas.shape[:2], np.uint8)
    width = max(2, round(FINGER_WIDTH * size))
    extended = POSES[pose]
    for finger in range(5):
        if pose == "ok" and finger in (0, 1):
            continue
        seg = _to_image(
            _finger_segment(finger, bool(extended[finger]), pose), centre, size, angle, mirror
        )
        _capsule(canvas, mask, seg[0], seg[1], width, skin_bgr)
    palm = _to_image(np.asarray([[0.0, 0.0]]), centre, size, angle, mirror)[0]
    half_x, half_y = PALM_AXES.get(pose, DEFAULT_PALM_AXES)
    axes = (round(half_x * size), round(half_y * size))
    palm_xy = (round(palm[0]), round(palm[1]))
    dark = tuple(int(c * 0.6) for c in skin_bgr)
    cv2.ellipse(canvas, palm_xy, (axes[0] + 1, axes[1] + 1), angle, 0, 360, dark, -1, cv2.LINE_AA)
    cv2.ellipse(canvas, palm_xy, axes, angle, 0, 360, skin_bgr, -1, cv2.LINE_AA)
    cv2.ellipse(mask, palm_xy, (axes[0] + 1, axes[1] + 1), angle, 0, 360, 255, -1)
    radius = max(2, round(KNUCKLE_RADIUS * size))
    for knuckle in _to_image(
        np.asarray(KNUCKLES.get(pose, ()), float).reshape(-1, 2), centre, size, angle, mirror
    ):
        xy = (round(knuckle[0]), round(knuckle[1]))
        cv2.circle(canvas, xy, radius + 1, dark, -1, cv2.LINE_AA)
        cv2.circle(canvas, xy, radius, skin_bgr, -1, cv2.LINE_AA)
        cv2.circle(mask, xy, radius + 1, 255, -1)
    if pose == "ok":
        _draw_ok_ring(canvas, mask, centre, size, angle, mirror, skin_bgr, width)
    # Anti-aliased edges reach one pixel past the hard-edged mask.
    ys, xs = np.nonzero(cv2.dilate(mask, np.ones((3, 3), np.uint8)))
    x1, y1 = int(xs.min()), int(ys.min())
    return x1, y1, int(xs.max()) - x1 + 1, int(ys.max()) - y1 + 1


def _draw_ok_ring(canvas, mask, centre, size, angle, mirror, skin_bgr, width) -> None:
    """Thumb and index tips touching: a ring at the upper thumb side of the palm."""
    ring = _to_image(np.asarray([[-0.42, -0.55]]), centre, size, angle, mirror)[0]
    ring_xy = (round(ring[0]), round(ring[1]))
    radius = max(2, round(0.22 * size))
    dark = tuple(int(c * 0.6) for c in skin_bgr)
    cv2.circle(canvas, ring_xy, radius, dark, width + 2, cv2.LINE_AA)
    cv2.circle(canvas, ring_xy, radius, skin_bgr, width, cv2.LINE_AA)
    cv2.circle(mask, ring_xy, radius, 255, width + 2)


def _background(rng: np.random.Generator, height: int, width: int, location: str) -> np.ndarray:
    """A gradient (bluish-green outdoors, greyish-warm indoors) with clutter shapes and noise."""
    base = rng.integers(60, 200, 3) if location == "indoor" else rng.integers(40, 230, 3)
    top = base * rng.uniform(0.6, 1.0)
    bottom = base * rng.uniform(0.8, 1.2) if location == "indoor" else top * (0.5, 0.9, 0.6)
    ramp = np.linspace(0.0, 1.0, height)[:, None, None]
    image = (top * (1 - ramp) + bottom * ramp) * np.ones((1, width, 1))
    image = image.astype(np.float32)
    for _ in range(int(rng.integers(2, 7))):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        if rng.random() < 0.5:
            w, h = int(rng.integers(8, width // 2)), int(rng.integers(8, height // 2))
            cv2.rectangle(image, (x, y), (x + w, y + h), colour, -1)
        else:
            cv2.circle(image, (x, y), int(rng.integers(4, height // 4)), colour, -1)
    image += rng.normal(0.0, 6.0, image.shape).astype(np.float32)
    return image


def _make_users(config: SynthConfig) -> list[User]:
    rng = np.random.default_rng([config.seed, 10_000])
    users = []
    for i in range(config.num_users):
        skin = SKIN_TONES_BGR[i % len(SKIN_TONES_BGR)]
        jitter = rng.integers(-12, 13, 3)
        users.append(
            User(
                uid=f"id{i + 1:02d}",
                skin_bgr=tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(skin, jitter)),
                hand_size=float(rng.uniform(0.2, 0.3) * config.image_height),
                left_handed=bool(rng.random() < 0.3),
            )
        )
    return users


def _render_frame(
    rng: np.random.Generator,
    user: User,
    pose: str,
    background: np.ndarray,
    drift: np.ndarray,
    frame: int,
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """One video-like frame: the hand drifts slowly; scene clutter and lighting vary per frame
    (a background fixed per recording, i.e. per user and class, would be a label shortcut)."""
    height, width = background.shape[:2]
    size = user.hand_size * rng.uniform(0.85, 1.15)
    cx = float(np.clip(drift[0] + frame * drift[2], 0.3 * width, 0.7 * width))
    cy = float(np.clip(drift[1] + frame * drift[3], 0.4 * height, 0.6 * height))
    canvas = background.copy()
    box = draw_hand(
        canvas,
        pose,
        centre=(cx, cy),
        size=size,
        angle=float(rng.uniform(-25.0, 25.0)),
        mirror=user.left_handed,
        skin_bgr=user.skin_bgr,
    )
    canvas = canvas * rng.uniform(0.7, 1.25) + rng.normal(0.0, 4.0, canvas.shape)
    return np.clip(canvas, 0, 255).astype(np.uint8), box


def _write_recording(
    root: Path, config: SynthConfig, user_index: int, user: User, rec: int, label: str
) -> int:
    """Render and write one recording of ``images_per_class`` frames of ``label``."""
    rng = np.random.default_rng([config.seed, user_index, rec])
    set_dir = root / "original" / "data"
    rec_name = f"{user.uid}_r{rec:02d}"
    rec_dir = set_dir / user.uid / rec_name
    rec_dir.mkdir(parents=True, exist_ok=True)
    location = LOCATIONS[int(rng.integers(0, 2))]
    width, height = config.image_width, config.image_height
    drift = np.array(
        [
            width * rng.uniform(0.35, 0.65),
            height * rng.uniform(0.45, 0.55),
            rng.uniform(-1, 1),
            rng.uniform(-0.5, 0.5),
        ]
    )
    for frame in range(config.images_per_class):
        pose = label if label != "random" else RANDOM_POSES[int(rng.integers(0, len(RANDOM_POSES)))]
        background = _background(rng, height, width, location)
        image, box = _render_frame(rng, user, pose, background, drift, frame)
        image_path = rec_dir / f"{frame:06d}.png"
        cv2.imwrite(str(image_path), image)
        metadata = {"user_id": user.uid, "location": location, "recording": rec_name}
        annotation = make_annotation(
            str(image_path.resolve()), label, box, (width, height), metadata
        )
        annotation_path = set_dir / "annotation" / f"{rec_name}_{frame:06d}.json"
        annotation_path.write_text(json.dumps(annotation), encoding="utf-8")
    return config.images_per_class


def write_specs(root: Path, kpi_users: list[str]) -> tuple[Path, Path]:
    """dataset_config.json and dataset_experiment_config.json for ``convert`` on ``root``."""
    mount = str(root.resolve())
    dataset_spec = {
        "org_dataset": "data",
        "mount_dir_path": mount,
        "org_data_dir": "original",
        "post_data_dir": "extracted",
        "kpi_users": kpi_users,
        "sampling_rate": 1,
        "convert_bbox_square": True,
        "bbox_enlarge_ratio": 1.1,
        "annotation_config": {"annotation_path": "annotation"},
    }
    experiment_spec = {
        "mount_dir_path": mount,
        "org_data_dir": "original",
        "post_data_dir": "extracted",
        "set_list": {"train_val": ["data"], "kpi": ["data"]},
        "uid_list": {
            "uid_name": "user_id",
            "predefined_val_users": False,
            "val_fraction": 0.25,
            "validation": [],
            "kpi": kpi_users,
        },
        "image_feature_filter": {"train_val": {"*": [{}]}, "kpi": {}},
        "sampling": {"sampling_mode": "average", "use_class_weights": False, "class_weights": {}},
    }
    paths = (root / "dataset_config.json", root / "dataset_experiment_config.json")
    for path, spec in zip(paths, (dataset_spec, experiment_spec)):
        path.write_text(json.dumps(spec, indent=2), encoding="utf-8")
    return paths


def make_synthetic_dataset(root: Path, config: SynthConfig = SynthConfig()) -> int:
    """Write the synthetic set under ``root``; returns the number of images."""
    root = Path(root)
    set_dir = root / "original" / "data"
    (set_dir / "annotation").mkdir(parents=True, exist_ok=True)
    users = _make_users(config)
    jobs = [
        (u, user, rec, label)
        for u, user in enumerate(users)
        for rec, label in enumerate(GESTURE_CLASSES)
    ]
    count = 0
    for user_index, user, rec, label in tqdm(jobs, desc="synth", unit="rec", leave=False):
        count += _write_recording(root, config, user_index, user, rec, label)
    users_meta = {u.uid: {"hand": "left" if u.left_handed else "right"} for u in users}
    (set_dir / "data.json").write_text(
        json.dumps({"set": "data", "users": users_meta}, indent=2), encoding="utf-8"
    )
    kpi_users = [u.uid for u in users[: max(1, len(users) // 5)]]
    write_specs(root, kpi_users)
    log.info("wrote %d synthetic images of %d users under %s", count, len(users), root)
    return count


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="dataset root (mount_dir_path)")
    parser.add_argument("--num-users", type=int, default=SynthConfig.num_users)
    parser.add_argument(
        "--images-per-class",
        type=int,
        default=SynthConfig.images_per_class,
        help="frames per user and class",
    )
    parser.add_argument(
        "--image-size",
        type=int,
        nargs=2,
        default=(SynthConfig.image_width, SynthConfig.image_height),
        metavar=("W", "H"),
    )
    parser.add_argument("--seed", type=int, default=SynthConfig.seed)


def run(args: argparse.Namespace) -> int:
    config = SynthConfig(
        num_users=args.num_users,
        images_per_class=args.images_per_class,
        image_width=args.image_size[0],
        image_height=args.image_size[1],
        seed=args.seed,
    )
    if config.num_users < 1 or config.images_per_class < 1:
        log.error("--num-users and --images-per-class must be at least 1")
        return 2
    make_synthetic_dataset(args.out, config)
    return 0
