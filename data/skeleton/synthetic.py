"""Synthetic skeleton actions (``train_nvpose.py synth``): kinematic 34-joint bodies in 3D.

Each sample is one person doing one motion — ``sitting_down``, ``getting_up``, ``sitting``,
``standing``, ``walking``, ``jumping`` (the NVIDIA PoseClassificationNet classes, in TAO's label
order) or ``waving`` — with a random body size, speed, facing direction and camera distance,
Gaussian camera noise on every joint, joints missing at random (confidence 0) and a random length.

Written per split (``train``, ``val``):
- ``<split>.json``: deepstream-bodypose-3d JSON (one object id per sample, ``pose3d`` in camera
  millimetres and ``pose25d`` projected with a pinhole camera) and ``<split>_labels.csv``
  (``object_id,class``) for ``train_nvpose.py convert --labels``;
- ``<split>_data.npy`` (N, C, T, V, 1) normalised as ``3dbp`` by ``data.skeleton.convert`` and
  ``<split>_label.pkl`` (TAO ``(names, ids)``), for the nvidia layout or, remapped by joint name,
  any layout with joint names (``--layout openpose`` etc.); plus ``label_map.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data.skeleton.convert import ConvertSettings, normalize_pose
from network.graph import NVIDIA_JOINTS, get_layout

__all__ = ["MOTIONS", "SynthSettings", "add_arguments", "remap_matrix", "run", "synthesize"]

logger = logging.getLogger(__name__)

NVIDIA_CLASSES = ("sitting_down", "getting_up", "sitting", "standing", "walking", "jumping")
J = {name: index for index, name in enumerate(NVIDIA_JOINTS)}

# Joints of other layouts that BodyPose3DNet lacks, as the mean of nvidia joints.
ALIASES: dict[str, tuple[str, ...]] = {
    "spine": ("torso",),
    "thorax": ("neck",),
    "neck-nose": ("neck", "nose"),
    "head": ("left-ear", "right-ear"),
    "spine-base": ("pelvis",),
    "spine-mid": ("torso",),
    "spine-shoulder": ("neck",),
    "left-hand": ("left-index-knuckle", "left-pinky-knuckle"),
    "right-hand": ("right-index-knuckle", "right-pinky-knuckle"),
    "left-foot": ("left-big-toe",),
    "right-foot": ("right-big-toe",),
    "left-hand-tip": ("left-middle-tip",),
    "right-hand-tip": ("right-middle-tip",),
    "left-thumb": ("left-thumb-tip",),
    "right-thumb": ("right-thumb-tip",),
}


@dataclass(frozen=True)
class SynthSettings:
    """How many samples, how long, how noisy."""

    classes: tuple[str, ...] = NVIDIA_CLASSES
    train_per_class: int = 40
    val_per_class: int = 10
    min_frames: int = 40
    max_frames: int = 100
    noise_mm: float = 15.0
    missing_rate: float = 0.03
    layout: str = "nvidia"
    seed: int = 0


@dataclass
class Pose:
    """Per-frame body parameters (arrays of length T); angles in radians, lengths in mm."""

    height: np.ndarray  # pelvis lift above standing (negative = lower)
    forward: np.ndarray  # pelvis travel along the facing direction
    lean: np.ndarray  # torso pitch forward
    hip: np.ndarray  # (2, T) thigh pitch forward, left/right
    knee: np.ndarray  # (2, T) knee flexion
    shoulder: np.ndarray  # (2, T) upper-arm pitch forward
    abduct: np.ndarray  # (2, T) upper-arm raise sideways
    elbow: np.ndarray  # (2, T) elbow flexion


def _still(t: int) -> Pose:
    zero, pair = np.zeros(t), np.zeros((2, t))
    return Pose(
        zero, zero.copy(), zero.copy(), pair, pair.copy(), pair.copy(), pair.copy(), pair.copy()
    )


def _ramp(t: int, rng: np.random.Generator) -> np.ndarray:
    """0 → 1 smoothly, starting and ending at random points of the clip."""
    a, b = sorted(rng.uniform(0.0, 1.0, 2) * [0.4, 0.4] + [0.0, 0.6])
    s = np.clip((np.linspace(0, 1, t) - a) / max(b - a, 1e-3), 0, 1)
    return 0.5 - 0.5 * np.cos(np.pi * s)


def _sitting(p: Pose, amount: np.ndarray) -> Pose:
    p.height = -430.0 * amount
    p.hip = np.stack([1.45 * amount] * 2)
    p.knee = np.stack([1.5 * amount] * 2)
    p.lean = 0.25 * amount
    p.elbow = np.stack([0.6 * amount] * 2)
    return p


def sitting_down(t: int, rng: np.random.Generator) -> Pose:
    return _sitting(_still(t), _ramp(t, rng))


def getting_up(t: int, rng: np.random.Generator) -> Pose:
    return _sitting(_still(t), 1.0 - _ramp(t, rng))


def sitting(t: int, rng: np.random.Generator) -> Pose:
    p = _sitting(_still(t), np.full(t, rng.uniform(0.85, 1.0)))
    p.shoulder = p.shoulder + 0.1 * np.sin(np.linspace(0, rng.uniform(1, 4), t))
    return p


def standing(t: int, rng: np.random.Generator) -> Pose:
    p = _still(t)
    p.lean = 0.03 * np.sin(np.linspace(0, rng.uniform(1, 3), t))
    p.elbow = p.elbow + rng.uniform(0.0, 0.4)
    return p


def walking(t: int, rng: np.random.Generator) -> Pose:
    p = _still(t)
    phase = rng.uniform(0, 2 * np.pi) + np.linspace(0, 2 * np.pi * t / rng.uniform(28, 40), t)
    swing = rng.uniform(0.35, 0.5) * np.stack([np.sin(phase), np.sin(phase + np.pi)])
    p.hip = swing
    p.knee = 0.6 * np.clip(-np.stack([np.cos(phase), np.cos(phase + np.pi)]), 0, None)
    p.shoulder = -0.8 * swing
    p.elbow = p.elbow + 0.3
    p.forward = np.linspace(0, rng.uniform(1.2, 1.5) * t / 30 * 1000, t)
    p.height = -20.0 * np.abs(np.sin(phase))
    return p


def jumping(t: int, rng: np.random.Generator) -> Pose:
    p = _still(t)
    period = rng.uniform(20, 30)
    phase = (np.arange(t) + rng.uniform(0, period)) % period / period
    air = np.clip(np.sin(2 * np.pi * phase), 0, None)
    crouch = np.clip(-np.sin(2 * np.pi * phase), 0, None)
    p.height = rng.uniform(250, 400) * air - 200 * crouch
    p.hip = np.stack([0.7 * crouch] * 2)
    p.knee = np.stack([1.2 * crouch] * 2)
    p.abduct = np.stack([1.2 * air] * 2)
    return p


def waving(t: int, rng: np.random.Generator) -> Pose:
    p = _still(t)
    side = int(rng.integers(0, 2))
    p.abduct[side] = 2.4
    p.elbow[side] = 0.9 + 0.5 * np.sin(np.linspace(0, 2 * np.pi * t / rng.uniform(12, 20), t))
    return p


# Motion name → per-frame body parameters; keys are the class names written to the labels.
MOTIONS: dict[str, Callable[[int, np.random.Generator], Pose]] = {
    "sitting_down": sitting_down,
    "getting_up": getting_up,
    "sitting": sitting,
    "standing": standing,
    "walking": walking,
    "jumping": jumping,
    "waving": waving,
}


def _pitch(angle: np.ndarray, raise_: np.ndarray, side: float) -> np.ndarray:
    """(T, 3) unit limb directions: down, pitched forward by ``angle``, raised sideways by ``raise_``."""
    return np.stack(
        [side * np.sin(raise_), -np.cos(raise_) * np.cos(angle), np.cos(raise_) * np.sin(angle)], -1
    )


def _limb_points(p: Pose, scale: float) -> dict[str, np.ndarray]:
    """Body-frame joint positions (T, 3) in mm: x to the body's left, y up, z forward."""
    t = len(p.height)
    zero = np.zeros(t)
    pelvis = np.stack([zero, 900.0 * scale + p.height, p.forward], -1)
    up = np.stack([zero, np.cos(p.lean), np.sin(p.lean)], -1)
    pts = {"pelvis": pelvis, "torso": pelvis + 250 * scale * up, "neck": pelvis + 520 * scale * up}
    pts["nose"] = pts["neck"] + scale * (170 * up + [0, 0, 90])
    for index, (name, side) in enumerate((("left", 1.0), ("right", -1.0))):
        hip = pelvis + scale * np.array([side * 100, 0, 0])
        knee = hip + 450 * scale * _pitch(p.hip[index], zero, side)
        ankle = knee + 430 * scale * _pitch(p.hip[index] - p.knee[index], zero, side)
        shoulder = pts["neck"] + scale * np.array([side * 180, -40, 0])
        elbow = shoulder + 290 * scale * _pitch(p.shoulder[index], p.abduct[index], side)
        forearm = _pitch(p.shoulder[index] + p.elbow[index], p.abduct[index], side)
        wrist = elbow + 260 * scale * forearm
        offsets = {
            "hip": hip, "knee": knee, "ankle": ankle, "shoulder": shoulder, "elbow": elbow,
            "wrist": wrist,
            "big-toe": ankle + scale * np.array([side * 20, -60, 150]),
            "small-toe": ankle + scale * np.array([side * 60, -60, 120]),
            "heel": ankle + scale * np.array([0, -60, -50]),
            "eye": pts["nose"] + scale * np.array([side * 35, 35, -10]),
            "ear": pts["nose"] + scale * np.array([side * 75, 10, -90]),
            "pinky-knuckle": wrist + scale * (80 * forearm + [side * 25, 0, 0]),
            "middle-tip": wrist + 180 * scale * forearm,
            "index-knuckle": wrist + scale * (80 * forearm - [side * 15, 0, 0]),
            "thumb-tip": wrist + scale * (90 * forearm + [0, 0, 40]),
        }  # fmt: skip
        pts.update({f"{name}-{part}": value for part, value in offsets.items()})
    return pts


def body_to_camera(points: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """(T, 34, 3) camera millimetres (x right, y down, z depth) for a randomly placed body."""
    body = np.stack([points[name] for name in NVIDIA_JOINTS], axis=1)
    yaw = rng.uniform(-0.7, 0.7) + np.pi  # facing the camera, give or take 40°
    rotation = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    turned = body @ rotation.T
    depth, lateral, camera_height = rng.uniform(3000, 6000), rng.uniform(-800, 800), 1000.0
    return np.stack(
        [turned[..., 0] + lateral, camera_height - turned[..., 1], depth + turned[..., 2]], -1
    )


def make_sample(
    motion: str, settings: SynthSettings, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(T, 34, 3) noisy camera-space joints and (T, 34) confidences (0 = missing)."""
    t = int(rng.integers(settings.min_frames, settings.max_frames, endpoint=True))
    pose = MOTIONS[motion](t, rng)
    joints = body_to_camera(_limb_points(pose, rng.uniform(0.85, 1.15)), rng)
    joints += rng.normal(0.0, settings.noise_mm, joints.shape)
    confidence = rng.uniform(0.3, 1.0, joints.shape[:2])
    missing = rng.random(confidence.shape) < settings.missing_rate
    missing[:, 0] = False  # the pelvis is the 3D root; frames without it are dropped by convert
    confidence[missing] = 0.0
    return joints, confidence


def flat_poses(
    joints: np.ndarray, confidence: np.ndarray, focal: float = 1200.0
) -> tuple[np.ndarray, np.ndarray]:
    """deepstream ``pose3d`` and ``pose25d`` rows, (T, 136) each, from camera-space joints."""
    x, y, z = joints[..., 0], joints[..., 1], joints[..., 2]
    image = np.stack([focal * x / z + 960.0, focal * y / z + 540.0, (z - z[:, :1]) / 1000.0], -1)
    pose3d = np.concatenate([joints, confidence[..., None]], -1).reshape(len(joints), -1)
    pose25d = np.concatenate([image, confidence[..., None]], -1).reshape(len(joints), -1)
    return pose3d, pose25d


def remap_matrix(layout: str) -> np.ndarray:
    """(V_layout, 34): each joint of ``layout`` as the mean of nvidia joints, matched by name."""
    target = get_layout(layout)
    if not target.joint_names:
        raise ValueError(f"layout {target.name!r} has no joint names to remap nvidia joints onto")
    matrix = np.zeros((target.num_joints, len(NVIDIA_JOINTS)), dtype=np.float32)
    for row, name in enumerate(target.joint_names):
        sources = ALIASES.get(name, (name,))
        if not all(source in J for source in sources):
            raise ValueError(f"layout {target.name!r}: no nvidia joint for {name!r}")
        matrix[row, [J[source] for source in sources]] = 1.0 / len(sources)
    return matrix


@dataclass
class _Split:
    """Accumulated samples of one split."""

    frames: dict[int, list[dict]]
    arrays: list[np.ndarray]
    labels: list[int]
    names: list[str]


LANES = 4  # objects visible at the same time in the JSON


def _add_sample(
    split: _Split, object_id: int, start: int, pose3d: np.ndarray, pose25d: np.ndarray
) -> None:
    for offset, (p3, p25) in enumerate(zip(pose3d, pose25d)):
        split.frames.setdefault(start + offset, []).append(
            {
                "object_id": object_id,
                "pose25d": np.round(p25, 4).tolist(),
                "pose3d": np.round(p3, 3).tolist(),
            }
        )


def _normalized(pose3d: np.ndarray, length: int, remap: np.ndarray | None) -> np.ndarray:
    """(3, length, V, 1): ``3dbp`` normalisation, zero-padded at the end, optionally remapped."""
    settings = ConvertSettings(pose_type="3dbp")
    frames = np.stack([normalize_pose(row, settings) for row in pose3d], axis=1)  # (3, T, 34)
    if remap is not None:
        frames = np.einsum("vw,ctw->ctv", remap, frames)
    out = np.zeros((3, length, frames.shape[2], 1), dtype=np.float32)
    out[:, : frames.shape[1], :, 0] = frames
    return out


def _deepstream_json(frames: dict[int, list[dict]]) -> list[dict]:
    return [
        {
            "num_frames_in_batch": 1,
            "batches": [
                {
                    "batch_id": 0,
                    "frame_num": frame,
                    "ntp_timestamp": 1_651_865_934_000_000_000 + frame * 33_333_333,
                    "num_obj_meta": len(objects),
                    "objects": objects,
                }
            ],
        }
        for frame, objects in sorted(frames.items())
    ]


def _build_split(
    count: int, settings: SynthSettings, rng: np.random.Generator, desc: str
) -> _Split:
    split = _Split({}, [], [], [])
    remap = None if settings.layout == "nvidia" else remap_matrix(settings.layout)
    lanes = [0] * LANES
    order = [(label, motion) for label, motion in enumerate(settings.classes)] * count
    for object_id, (label, motion) in enumerate(tqdm(order, desc=desc, leave=False)):
        pose3d, pose25d = flat_poses(*make_sample(motion, settings, rng))
        lane = object_id % LANES
        _add_sample(split, object_id, lanes[lane], pose3d, pose25d)
        lanes[lane] += len(pose3d) + int(rng.integers(5, 30))
        split.arrays.append(_normalized(pose3d, settings.max_frames, remap))
        split.labels.append(label)
        split.names.append(f"{desc}_{object_id:05d}_{motion}")
    return split


def _write_split(split: _Split, name: str, classes: tuple[str, ...], out_dir: Path) -> None:
    (out_dir / f"{name}.json").write_text(json.dumps(_deepstream_json(split.frames)))
    with (out_dir / f"{name}_labels.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["object_id", "class"])
        writer.writerows((i, classes[label]) for i, label in enumerate(split.labels))
    np.save(out_dir / f"{name}_data.npy", np.stack(split.arrays), allow_pickle=False)
    with (out_dir / f"{name}_label.pkl").open("wb") as handle:
        pickle.dump((split.names, split.labels), handle)


def synthesize(out_dir: str | Path, settings: SynthSettings) -> dict[str, int]:
    """Write the train and val splits to ``out_dir``; returns the label map (class → id)."""
    unknown = [name for name in settings.classes if name not in MOTIONS]
    if unknown:
        raise ValueError(f"unknown motion(s) {unknown}; choose from {', '.join(MOTIONS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(settings.seed)
    for name, count in (("train", settings.train_per_class), ("val", settings.val_per_class)):
        _write_split(_build_split(count, settings, rng, name), name, settings.classes, out_dir)
    label_map = {name: index for index, name in enumerate(settings.classes)}
    (out_dir / "label_map.json").write_text(json.dumps(label_map, indent=1))
    logger.info("synthetic skeletons (%s layout) written to %s", settings.layout, out_dir)
    return label_map


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``synth`` flags."""
    d = SynthSettings()
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--classes", nargs="+", default=list(d.classes), choices=list(MOTIONS))
    parser.add_argument("--train-per-class", type=int, default=d.train_per_class)
    parser.add_argument("--val-per-class", type=int, default=d.val_per_class)
    parser.add_argument("--min-frames", type=int, default=d.min_frames)
    parser.add_argument("--max-frames", type=int, default=d.max_frames)
    parser.add_argument("--noise-mm", type=float, default=d.noise_mm)
    parser.add_argument("--missing-rate", type=float, default=d.missing_rate)
    parser.add_argument("--layout", default=d.layout, help="nvidia, or a layout with joint names")
    parser.add_argument("--seed", type=int, default=d.seed)


def settings_from_args(args: argparse.Namespace) -> SynthSettings:
    """``SynthSettings`` from parsed ``add_arguments`` flags."""
    names = [name for name in SynthSettings.__dataclass_fields__ if name != "classes"]
    return SynthSettings(
        classes=tuple(args.classes), **{name: getattr(args, name) for name in names}
    )


def run(args: argparse.Namespace) -> int:
    """``synth`` subcommand."""
    synthesize(args.output_dir, settings_from_args(args))
    return 0
