"""Skeleton datasets as the field ships them: pyskl/MMAction2 pickles and NTU RGB+D ``.skeleton``.

**pyskl / MMAction2 pickle** (NTU60/120, Kinetics-skeleton, FineGYM 2D/3D releases)::

    {'split': {'xsub_train': [frame_dir, ...], 'xsub_val': [...], ...},
     'annotations': [{'frame_dir': str, 'label': int, 'total_frames': T, 'img_shape': (H, W),
                      'keypoint': (M, T, V, C) float, 'keypoint_score': (M, T, V) (2D only)}, ...]}

read with ``safeio.safe_pickle`` (numpy arrays allowed, no other code). ``split`` selects the
annotations whose ``frame_dir`` the split lists; ``keypoint_score=True`` appends the score as one
more channel (pyskl's 2D "j" input: x, y, score).

**NTU RGB+D ``.skeleton`` text** (one file per sample, named ``SsssCcccPpppRrrrAaaa``): the frame
count; per frame the body count, then per body a line of 10 body values (bodyID, clipedEdges,
handLeftConfidence, handLeftState, handRightConfidence, handRightState, isResticted, leanX, leanY,
trackingState), the joint count (25) and one line of 12 values per joint (x, y, z, depthX,
depthY, colorX, colorY, orientationW/X/Y/Z, trackingState). The camera-space x, y, z (metres) of
the first ``max_bodies`` (2) bodies are kept; the label is the action ``Aaaa`` − 1. Splits
``xsub_*`` (training subjects) and ``xview_*`` (training cameras 2 and 3) of NTU RGB+D 60.

Both become a :class:`PaddedSequences`, an ``(N, C, T, V, M)`` array-like that zero-pads each
sample when it is read (T the longest sample, M the most bodies), so 40 000 NTU samples are not
held padded in memory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from safeio.safe_pickle import safe_load

__all__ = [
    "NTU_XSUB_TRAIN_SUBJECTS",
    "NTU_XVIEW_TRAIN_CAMERAS",
    "PaddedSequences",
    "SkeletonSource",
    "is_skeleton_source",
    "read_ntu_folder",
    "read_ntu_skeleton",
    "read_pyskl",
    "read_skeleton_source",
]

PICKLE_SUFFIXES = (".pkl", ".pickle")
NTU_SUFFIX = ".skeleton"
NTU_JOINTS = 25
NTU_BODY_VALUES = 10  # the body line
NTU_JOINT_VALUES = 12  # x, y, z first
NTU_NAME = re.compile(r"S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})")
# NTU RGB+D 60 cross-subject training subjects and cross-view training cameras (Shahroudy et al.).
NTU_XSUB_TRAIN_SUBJECTS = frozenset(
    (1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38)
)
NTU_XVIEW_TRAIN_CAMERAS = frozenset((2, 3))
PYSKL_REQUIRED = ("frame_dir", "label", "keypoint")


class PaddedSequences:
    """``(N, C, T, V, M)`` float32 view of samples ``(C, t, V, m)``, zero-padded when read.

    ``data[i]`` is one padded sample, ``data[a:b]`` a stacked block; ``frames``/``persons``
    default to the longest sample and the most persons (longer samples keep their first frames).
    """

    ndim = 5

    def __init__(
        self, samples: list[np.ndarray], *, frames: int | None = None, persons: int | None = None
    ) -> None:
        if not samples:
            raise ValueError("no skeleton samples")
        channels, joints = samples[0].shape[0], samples[0].shape[2]
        self.samples = samples
        self.frames = frames or max(sample.shape[1] for sample in samples)
        self.persons = persons or max(sample.shape[3] for sample in samples)
        self.shape = (len(samples), channels, self.frames, joints, self.persons)

    def __len__(self) -> int:
        return len(self.samples)

    def _padded(self, index: int) -> np.ndarray:
        sample = self.samples[index][:, : self.frames, :, : self.persons]
        out = np.zeros(self.shape[1:], dtype=np.float32)
        out[:, : sample.shape[1], :, : sample.shape[3]] = sample
        return out

    def __getitem__(self, index: int | slice) -> np.ndarray:
        if isinstance(index, slice):
            return np.stack([self._padded(i) for i in range(*index.indices(len(self)))])
        return self._padded(int(index))


@dataclass
class SkeletonSource:
    """Sequences read from a pyskl pickle or NTU files, with their names and labels (None:
    the source has no labels)."""

    data: PaddedSequences
    names: list[str]
    labels: list[int] | None


def is_skeleton_source(path: str | Path) -> bool:
    """A pyskl pickle, an NTU ``.skeleton`` file or a folder of them (not a TAO ``.npy``)."""
    path = Path(path)
    return path.suffix.lower() in (*PICKLE_SUFFIXES, NTU_SUFFIX) or path.is_dir()


def read_skeleton_source(
    path: str | Path, *, split: str | None = None, keypoint_score: bool = False
) -> SkeletonSource:
    """Sequences of a pyskl pickle, an NTU ``.skeleton`` file or a folder of them."""
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return read_pyskl(path, split=split, keypoint_score=keypoint_score)
    if keypoint_score:
        raise ValueError(f"{path}: --keypoint-score needs a pyskl pickle with keypoint_score")
    return read_ntu_folder(path, split=split)


# ----------------------------------------------------------------------------- pyskl
def _pyskl_root(value: Any, path: Path) -> list[dict]:
    if not isinstance(value, dict):
        raise ValueError(
            f"{path}: not a pyskl skeleton pickle (a dict with 'split' and 'annotations'; "
            f"got {type(value).__name__})"
        )
    if "annotations" not in value:
        raise ValueError(f"{path}: missing key 'annotations' (a pyskl skeleton pickle)")
    annotations = value["annotations"]
    if not isinstance(annotations, list):
        raise ValueError(f"{path}: 'annotations' is a {type(annotations).__name__}, not a list")
    for index, annotation in enumerate(annotations):
        if not isinstance(annotation, dict):
            raise ValueError(f"{path}: annotation {index} is not a dict")
        missing = [key for key in PYSKL_REQUIRED if key not in annotation]
        if missing:
            raise ValueError(
                f"{path}: annotation {index} lacks key {', '.join(map(repr, missing))}"
            )
    return annotations


def _select_split(value: dict, annotations: list[dict], split: str, path: Path) -> list[dict]:
    splits = value.get("split")
    if not isinstance(splits, dict):
        raise ValueError(f"{path}: missing key 'split' (needed for --split {split})")
    if split not in splits:
        raise ValueError(f"{path}: no split {split!r}; it has {', '.join(map(str, splits))}")
    wanted = {str(name) for name in splits[split]}
    selected = [a for a in annotations if str(a["frame_dir"]) in wanted]
    if not selected:
        raise ValueError(f"{path}: split {split!r} names no annotated frame_dir")
    return selected


def _pyskl_sample(
    annotation: dict, index: int, keypoint_score: bool, path: Path, made: dict[tuple, np.ndarray]
) -> np.ndarray:
    """(C, T, V, M) float32 of one annotation (C + 1 channels with the score): a transposed view
    of the pickle's own array when it is float32 (no copy; ``PaddedSequences`` copies one sample
    when it is read), else one converted copy per distinct array (``made``, keyed by the arrays'
    ids: annotations sharing an array share the copy)."""
    where = f"{path}: annotation {index} ({annotation['frame_dir']})"
    keypoint = annotation["keypoint"]
    if not isinstance(keypoint, np.ndarray) or keypoint.ndim != 4:
        raise ValueError(f"{where}: 'keypoint' must be an (M, T, V, C) array")
    score = annotation.get("keypoint_score") if keypoint_score else None
    if keypoint_score and (not isinstance(score, np.ndarray) or score.shape != keypoint.shape[:3]):
        raise ValueError(f"{where}: --keypoint-score needs 'keypoint_score' of shape (M, T, V)")
    key = (id(keypoint), id(score))
    if key not in made:
        if score is not None:
            keypoint = np.concatenate([keypoint, score[..., None]], axis=-1, dtype=np.float32)
        made[key] = keypoint.astype(np.float32, copy=False).transpose(3, 1, 2, 0)
    return made[key]


def _pyskl_labels(annotations: list[dict], path: Path) -> list[int]:
    labels = []
    for index, annotation in enumerate(annotations):
        label = annotation["label"]
        if isinstance(label, bool) or not isinstance(label, int | np.integer):
            raise ValueError(f"{path}: annotation {index}: label {label!r} is not an integer")
        labels.append(int(label))
    return labels


def read_pyskl(
    path: str | Path, *, split: str | None = None, keypoint_score: bool = False
) -> SkeletonSource:
    """The annotations of a pyskl pickle (those of ``split`` when given)."""
    path = Path(path)
    value = safe_load(path, arrays=True)
    annotations = _pyskl_root(value, path)
    if split is not None:
        annotations = _select_split(value, annotations, split, path)
    if not annotations:
        raise ValueError(f"{path}: no annotations")
    made: dict[tuple, np.ndarray] = {}
    samples = [_pyskl_sample(a, i, keypoint_score, path, made) for i, a in enumerate(annotations)]
    shapes = {(sample.shape[0], sample.shape[2]) for sample in samples}
    if len(shapes) > 1:
        raise ValueError(f"{path}: samples differ in (channels, joints): {sorted(shapes)}")
    names = [str(a["frame_dir"]) for a in annotations]
    return SkeletonSource(PaddedSequences(samples), names, _pyskl_labels(annotations, path))


# ----------------------------------------------------------------------------- NTU
def _numbers(line: str, count: int, where: str) -> list[float]:
    parts = line.split()
    if len(parts) < count:
        raise ValueError(f"{where}: expected {count} numbers, got {len(parts)}")
    try:
        return [float(part) for part in parts[:count]]
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None


def read_ntu_skeleton(path: str | Path, max_bodies: int = 2) -> np.ndarray:
    """(3, T, 25, max_bodies) float32 x, y, z of an NTU ``.skeleton`` file."""
    path = Path(path)
    lines = path.read_text().splitlines()
    position = 0

    def next_count(what: str) -> int:
        nonlocal position
        if position >= len(lines):
            raise ValueError(f"{path}: the file ends where {what} was expected")
        text = lines[position].strip()
        if not text.isdigit():
            raise ValueError(f"{path}: line {position + 1}: {what} {text!r} is not a count")
        position += 1
        return int(text)

    frames = next_count("the frame count")
    if frames > len(lines) - position:  # every frame takes at least its body-count line
        raise ValueError(
            f"{path}: line 1: {frames} frames, but the file has only {len(lines) - position} "
            "more lines"
        )
    out = np.zeros((3, frames, NTU_JOINTS, max_bodies), dtype=np.float32)
    for frame in range(frames):
        for body in range(next_count("a body count")):  # reading stops where the file ends
            position += 1  # the body line
            joints = next_count("a joint count")
            if joints != NTU_JOINTS:
                raise ValueError(f"{path}: line {position}: {joints} joints, NTU has {NTU_JOINTS}")
            for joint in range(joints):
                if position >= len(lines):
                    raise ValueError(f"{path}: the file ends inside frame {frame}")
                where = f"{path}: line {position + 1}"
                values = _numbers(lines[position], NTU_JOINT_VALUES, where)
                if body < max_bodies:
                    out[:, frame, joint, body] = values[:3]
                position += 1
    return out


def _ntu_split(name: str, split: str, path: Path) -> bool:
    match = NTU_NAME.search(name)
    if match is None:
        raise ValueError(f"{path}: {name} is not an NTU name SsssCcccPpppRrrrAaaa")
    camera, subject = int(match.group(2)), int(match.group(3))
    rules = {
        "xsub_train": subject in NTU_XSUB_TRAIN_SUBJECTS,
        "xsub_val": subject not in NTU_XSUB_TRAIN_SUBJECTS,
        "xview_train": camera in NTU_XVIEW_TRAIN_CAMERAS,
        "xview_val": camera not in NTU_XVIEW_TRAIN_CAMERAS,
    }
    if split not in rules:
        raise ValueError(f"{path}: NTU files have the splits {', '.join(rules)}, not {split!r}")
    return rules[split]


def read_ntu_folder(path: str | Path, *, split: str | None = None) -> SkeletonSource:
    """NTU ``.skeleton`` files (a file or a folder of them, sorted); labels from ``Aaaa``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    files = sorted(path.glob(f"*{NTU_SUFFIX}")) if path.is_dir() else [path]
    if not files:
        raise ValueError(f"{path}: no {NTU_SUFFIX} files in this folder")
    if split is not None:
        files = [file for file in files if _ntu_split(file.stem, split, path)]
        if not files:
            raise ValueError(f"{path}: no {NTU_SUFFIX} file is in split {split!r}")
    names = [file.stem for file in files]
    matches = [NTU_NAME.search(name) for name in names]
    labels = [int(m.group(5)) - 1 for m in matches] if all(matches) else None
    samples = [read_ntu_skeleton(file) for file in files]
    return SkeletonSource(PaddedSequences(samples), names, labels)
