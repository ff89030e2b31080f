"""Skeleton sequences for ST-GCN: an (N, C, T, V, M) ``.npy`` plus labels, items ``(x, target, id)``.

Sequences come as a TAO ``.npy``, or as a pyskl/MMAction2 pickle or NTU ``.skeleton`` files
(``data.skeleton.formats``; ``split`` selects a split, labels come with them). Labels come as the
TAO pickle ``(sample_names, class_ids)`` (read by ``safeio.safe_pickle``), as JSON
(the same two lists, or ``{"names": [...], "labels": [...]}``) or as CSV (``name,label`` rows,
``label`` an id or a class name from ``label_map``). Without labels every target is −1.

Augmentations follow the reference feeder exactly (shared/reference/skeleton.md §5):
``random_choose`` (random crop, or random-offset zero padding, to ``window_size``), ``auto_pad``
(``window_size`` without ``random_choose`` only pads, at frame 0), ``random_move`` (x, y rotated,
scaled and translated, interpolated over time). ``rotate_3d``/``scale_3d`` are ours: a random
rotation about the vertical (y) axis and a uniform scale of all three coordinates.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from data.skeleton.formats import (
    NTU_NAME,
    PaddedSequences,
    SkeletonSource,
    is_skeleton_source,
    read_skeleton_source,
)
from network.graph import LAYOUTS
from safeio.safe_pickle import safe_load

__all__ = [
    "SkeletonDataset",
    "auto_pad",
    "layout_for_joints",
    "load_labels",
    "ntu_class_names",
    "ntu_label_map",
    "random_choose",
    "random_move",
    "random_rotate_scale",
    "read_label_map",
]

logger = logging.getLogger(__name__)

# The reference feeder's candidate values for random_move (degrees, factors, offsets).
MOVE_ANGLES = (-10.0, -5.0, 0.0, 5.0, 10.0)
MOVE_SCALES = (0.9, 1.0, 1.1)
MOVE_SHIFTS = (-0.2, -0.1, 0.0, 0.1, 0.2)
CSV_LABEL_HEADERS = ("label", "labels", "class", "class_id", "action")
# NTU RGB+D 120 action names in order (the first 60 are NTU RGB+D 60's), one per line
NTU_CLASS_FILE = Path(__file__).with_name("ntu_rgbd_classes.txt")
NTU_ACTIONS = 120


def auto_pad(x: np.ndarray, size: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """(C, T, V, M) zero-padded to ``size`` frames (never cropped); random offset given ``rng``."""
    c, t, v, m = x.shape
    if t >= size:
        return x
    begin = int(rng.integers(0, size - t, endpoint=True)) if rng is not None else 0
    padded = np.zeros((c, size, v, m), dtype=x.dtype)
    padded[:, begin : begin + t] = x
    return padded


def random_choose(x: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """(C, T, V, M) → (C, size, V, M): a random crop, or zero padding at a random offset."""
    t = x.shape[1]
    if t == size:
        return x
    if t < size:
        return auto_pad(x, size, rng)
    begin = int(rng.integers(0, t - size, endpoint=True))
    return x[:, begin : begin + size]


def random_move(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(C, T, V, M): channels 0-1 rotated, scaled and shifted, the transform ramped over T frames.

    As the reference: two values of each parameter (at frames 0 and T) linearly interpolated over
    the T frames; channel 2 untouched; zero padding moves too.
    """
    t = x.shape[1]
    angle, scale, shift_x, shift_y = (
        np.linspace(*rng.choice(candidates, 2), t)
        for candidates in (MOVE_ANGLES, MOVE_SCALES, MOVE_SHIFTS, MOVE_SHIFTS)
    )
    angle = np.deg2rad(angle)
    theta = np.array(
        [
            [np.cos(angle) * scale, -np.sin(angle) * scale],
            [np.sin(angle) * scale, np.cos(angle) * scale],
        ]
    )  # (2, 2, T)
    out = x.astype(np.float32, copy=True)
    out[:2] = np.einsum("ijt,jtvm->itvm", theta, x[:2])
    out[0] += shift_x[:, None, None]
    out[1] += shift_y[:, None, None]
    return out


def random_rotate_scale(
    x: np.ndarray, rng: np.random.Generator, *, max_degrees: float, max_scale: float
) -> np.ndarray:
    """(C≥3, T, V, M): rotation about y by U(±max_degrees), scale by U(1 ± max_scale).

    Coordinates are root-relative, so missing (all-zero) joints stay at zero.
    """
    angle = np.deg2rad(rng.uniform(-max_degrees, max_degrees))
    scale = rng.uniform(1.0 - max_scale, 1.0 + max_scale)
    cos, sin = np.cos(angle), np.sin(angle)
    rotation = scale * np.array([[cos, 0.0, sin], [0.0, 1.0, 0.0], [-sin, 0.0, cos]])
    out = x.astype(np.float32, copy=True)
    out[:3] = np.einsum("ij,jtvm->itvm", rotation, x[:3])
    return out


def _labels_from_rows(names: list, labels: list, source: Path) -> tuple[list[str], list]:
    if len(names) != len(labels):
        raise ValueError(f"{source}: {len(names)} sample names but {len(labels)} labels")
    return [str(n) for n in names], list(labels)


def _read_label_rows(path: Path) -> tuple[list[str], list]:
    suffix = path.suffix.lower()
    if suffix in (".pkl", ".pickle"):
        value = safe_load(path)
    elif suffix == ".json":
        value = json.loads(path.read_text())
        if isinstance(value, dict):
            value = [value.get("names"), value.get("labels")]
    elif suffix == ".csv":
        with path.open(newline="") as handle:
            rows = [row for row in csv.reader(handle) if row]
        if rows and rows[0][-1].strip().lower() in CSV_LABEL_HEADERS:
            rows = rows[1:]
        value = [[r[0] for r in rows], [r[-1].strip() for r in rows]]
    else:
        raise ValueError(f"{path}: labels must be .pkl, .json or .csv")
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ValueError(f"{path}: expected two lists (sample names, labels)")
    if not all(isinstance(part, list | tuple) for part in value):
        raise ValueError(f"{path}: expected two lists (sample names, labels)")
    return _labels_from_rows(list(value[0]), list(value[1]), path)


def read_label_map(label_map: str | Path | Mapping | None) -> dict[str, int] | None:
    """``{class: id}`` from a spec mapping, a JSON file or an MMAction2 label map ``.txt`` (one
    class name per line, id = line number from 0); ids must be 0..K-1."""
    if label_map is None:
        return None
    source = "dataset.label_map"
    if not isinstance(label_map, dict):
        path = source = Path(label_map)
        if path.suffix.lower() == ".txt":
            return _text_label_map(path)
        try:
            label_map = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"{path}: not a readable JSON label map ({error})") from error
    try:
        mapping = {str(name): int(index) for name, index in label_map.items()}
    except (AttributeError, TypeError, ValueError):
        raise ValueError(f"{source}: a label map is an object {{class: id}}") from None
    if sorted(mapping.values()) != list(range(len(mapping))):
        raise ValueError(
            f"label map ids must be 0..{len(mapping) - 1}, got {sorted(mapping.values())}"
        )
    return mapping


def _text_label_map(path: Path) -> dict[str, int]:
    """MMAction2's ``label_map_*.txt``: class names one per line (blank lines and ``#`` comments
    skipped), ids in line order."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not a readable label map ({error})") from error
    names = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if not names or repeated:
        problem = f"class names repeated: {repeated[:3]}" if repeated else "no class names"
        raise ValueError(f"{path}: {problem} (expected one class name per line)")
    return {name: index for index, name in enumerate(names)}


def ntu_class_names(count: int) -> list[str]:
    """The first ``count`` NTU RGB+D action names (60: NTU RGB+D 60; 120: NTU RGB+D 120)."""
    names = list(_text_label_map(NTU_CLASS_FILE))
    if not 0 < count <= len(names):
        raise ValueError(f"NTU RGB+D has {len(names)} actions, not {count}")
    return names[:count]


def ntu_label_map(sample_names: list[str], labels: list[int], num_classes: int | None = None):
    """``{NTU action name: id}`` when every sample is named as NTU RGB+D names them
    (``SsssCcccPpppRrrrAaaa``) and its label is its action number − 1; else None. Covers
    ``max(label) + 1`` classes (``num_classes`` when given), at most 120."""
    if not sample_names or len(sample_names) != len(labels):
        return None
    for name, label in zip(sample_names, labels):
        match = NTU_NAME.search(name)
        if match is None or int(match.group(5)) - 1 != label:
            return None
    count = num_classes or max(labels) + 1
    if count > NTU_ACTIONS:
        return None
    return {name: index for index, name in enumerate(ntu_class_names(count))}


def layout_for_joints(joints: int, source: str | Path) -> str:
    """The one built-in graph layout with ``joints`` joints per pose; several or none is one
    ValueError naming them (``--graph-layout`` chooses)."""
    fits = [name for name, layout in LAYOUTS.items() if layout.num_joints == joints]
    if len(fits) == 1:
        return fits[0]
    if fits:
        raise ValueError(
            f"{source}: {joints} joints per pose fit the graph layouts {', '.join(fits)}: "
            "give --graph-layout"
        )
    known = ", ".join(f"{name} ({layout.num_joints})" for name, layout in LAYOUTS.items())
    raise ValueError(
        f"{source}: {joints} joints per pose fit no built-in graph layout ({known}): give "
        "--graph-layout with a .yaml layout"
    )


def load_labels(
    path: str | Path, label_map: Mapping[str, int] | None = None
) -> tuple[list[str], list[int]]:
    """(sample names, class ids) from a TAO pickle, JSON or CSV; class names via ``label_map``."""
    path = Path(path)
    names, raw = _read_label_rows(path)
    labels = []
    for name, label in zip(names, raw):
        if isinstance(label, str) and not label.lstrip("-").isdigit():
            if not label_map or label not in label_map:
                raise ValueError(f"{path}: sample {name!r} has unknown class {label!r}")
            label = label_map[label]
        labels.append(int(label))
    return names, labels


class SkeletonDataset(Dataset):
    """Items ``(x (C, T, V, M) float32, target int, sample_id int)`` from a memory-mapped array.

    Samples containing NaN or inf are skipped with a warning (counted in ``skipped``); labels
    outside ``[0, num_classes)`` raise. ``sample_id`` is the row index in the ``.npy``.
    """

    def __init__(
        self,
        data_path: str | Path | np.ndarray,
        label_path: str | Path | None = None,
        *,
        label_map: Mapping[str, int] | None = None,
        num_classes: int | None = None,
        window_size: int = -1,
        random_choose: bool = False,
        random_move: bool = False,
        rotate_3d: float = 0.0,
        scale_3d: float = 0.0,
        split: str | None = None,
        keypoint_score: bool = False,
    ) -> None:
        self.data_path, self.data, source = _open_data(data_path, split, keypoint_score)
        if self.data.ndim != 5:
            raise ValueError(f"{self.data_path}: expected (N, C, T, V, M), got {self.data.shape}")
        n = len(self.data)
        if label_path is None and source is not None and source.labels is not None:
            self.sample_names, self.labels = source.names, source.labels
            _check_label_range(self.labels, num_classes, self.data_path)
        elif label_path is None:
            self.sample_names, self.labels = [str(i) for i in range(n)], [-1] * n
        else:
            self.sample_names, self.labels = load_labels(label_path, label_map)
            if len(self.labels) != n:
                raise ValueError(f"{label_path}: {len(self.labels)} labels for {n} samples")
            _check_label_range(self.labels, num_classes, label_path)
        if random_choose and window_size <= 0:  # the reference would slice x[:, b:b-1]
            raise ValueError(f"{self.data_path}: random_choose needs a window_size > 0")
        self.window_size = window_size
        self.random_choose = random_choose
        self.random_move = random_move
        self.rotate_3d = rotate_3d
        self.scale_3d = scale_3d
        self.indices = _finite_rows(self.data, self.data_path)
        self.skipped = n - len(self.indices)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(C, T, V, M) of the stored samples."""
        return tuple(self.data.shape[1:])  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        row = int(self.indices[index])
        x = np.array(self.data[row], dtype=np.float32)
        # torch's generator is seeded per DataLoader worker; numpy's global one is not.
        rng = np.random.default_rng(int(torch.randint(0, 2**62, ())))
        if self.random_choose:
            x = random_choose(x, self.window_size, rng)
        elif self.window_size > 0:
            x = auto_pad(x, self.window_size)
        if self.random_move:
            x = random_move(x, rng)
        if (self.rotate_3d or self.scale_3d) and x.shape[0] >= 3:
            x = random_rotate_scale(x, rng, max_degrees=self.rotate_3d, max_scale=self.scale_3d)
        return torch.from_numpy(np.ascontiguousarray(x)), self.labels[row], row


def _open_data(
    data: str | Path | np.ndarray, split: str | None, keypoint_score: bool
) -> tuple[Path, np.ndarray | PaddedSequences, SkeletonSource | None]:
    """(path, (N, C, T, V, M) array-like, pyskl/NTU source or None) of ``data``: an array
    converted in memory, a pyskl pickle or NTU ``.skeleton`` file/folder, or a TAO ``.npy``."""
    if isinstance(data, np.ndarray):  # sequences converted in memory (inference)
        return Path("<array>"), data, None
    path = Path(data)
    if is_skeleton_source(path):
        source = read_skeleton_source(path, split=split, keypoint_score=keypoint_score)
        return path, source.data, source
    if split is not None or keypoint_score:
        raise ValueError(
            f"{path}: --split and --keypoint-score need a pyskl pickle or NTU .skeleton files"
        )
    return path, _open_array(path), None


def _open_array(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: not a readable .npy array ({error})") from error


def _check_label_range(labels: list[int], num_classes: int | None, source: str | Path) -> None:
    bad = [label for label in labels if label < 0 or (num_classes and label >= num_classes)]
    if bad:
        raise ValueError(
            f"{source}: class ids {sorted(set(bad))[:5]} outside [0, {num_classes or '∞'})"
        )


def _finite_rows(data: np.ndarray, source: Path, chunk: int = 256) -> np.ndarray:
    """Indices of samples without NaN/inf, scanning the memory map in chunks."""
    keep = []
    for start in range(0, len(data), chunk):
        block = np.asarray(data[start : start + chunk])
        finite = np.isfinite(block.reshape(len(block), -1)).all(axis=1)
        keep.extend(start + np.flatnonzero(finite))
    skipped = len(data) - len(keep)
    if skipped:
        logger.warning(
            "%s: skipped %d of %d samples with NaN/inf values", source, skipped, len(data)
        )
    return np.asarray(keep, dtype=np.int64)
