"""deepstream-bodypose-3d JSON → per-object skeleton sequences (``train_nvpose.py convert``).

Input (``deepstream-bodypose-3d --save-pose``): a list of ``{num_frames_in_batch, batches: [frame]}``,
each frame ``{frame_num, objects: [{object_id, pose25d: [x, y, zRel, conf]×V, pose3d: [x, y, z,
conf]×V}]}``. Per joint (a joint with confidence exactly 0 becomes zeros):

- ``3dbp``  (C=3): (pose3d_j − pose3d_pelvis) / focal_length
- ``25dbp`` (C=3): x / width − 0.5, y / height − 0.5, zRel
- ``2dbp``  (C=2): as 25dbp without z

Each object's frames are split into tracks where ``frame_num`` jumps by more than ``max_gap``
(``max_gap`` 0: never split, as TAO, which ignores ``frame_num``), and each track into windows of
``sequence_length`` frames while at least ``sequence_length_min`` frames remain, zero-padded to
``sequence_length_max``. Windows start every ``window_stride`` frames, or by default every
``int(sequence_length · sequence_overlap)`` frames: TAO's ``sequence_overlap`` is really the step
as a fraction of the window (0.25 → step 25 for 100 frames, 1.0 → no overlap, 0.5 → half), and
it means the same here; 0 (TAO loops forever) is refused. A 3D frame whose pelvis has zero
confidence is dropped (counted) unless ``keep_unseen_pelvis``, which subtracts the stored pelvis
coordinates anyway as TAO does. With ``max_gap`` 0 and ``keep_unseen_pelvis`` the arrays are
bit-identical to TAO ``dataset_convert``'s on clean input.

Output in ``--output-dir``: ``object_<id>.npy`` (``<stem>_object_<id>.npy`` for a folder) of shape
(S, C, sequence_length_max, V, 1) as TAO writes, ``data.npy`` with all sequences, ``manifest.csv``
and ``manifest.json`` (one row per sequence), and with ``--labels`` a training set
``labels.pkl`` + ``label_map.json`` (sequences without a class are left out of it, counted).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import logging
import math
import pickle
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data.skeleton.dataset import read_label_map

__all__ = [
    "POSE_TYPES",
    "ConvertSettings",
    "Sequence",
    "add_arguments",
    "collect_tracks",
    "convert",
    "convert_deepstream_json",
    "normalize_pose",
    "read_deepstream_json",
    "run",
    "split_at_gaps",
    "window_bounds",
]

logger = logging.getLogger(__name__)

# pose_type → (JSON key, output channels)
POSE_TYPES: dict[str, tuple[str, int]] = {
    "3dbp": ("pose3d", 3),  # root-relative metric 3D / focal length
    "25dbp": ("pose25d", 3),  # image x, y normalised to [-0.5, 0.5], relative depth
    "2dbp": ("pose25d", 2),  # image x, y only
}


@dataclass(frozen=True)
class ConvertSettings:
    """The TAO ``dataset_convert`` settings, plus ``max_gap`` (frames; 0 = no track splitting),
    ``window_stride`` (frames; overrides ``sequence_overlap``) and ``keep_unseen_pelvis``."""

    pose_type: str = "3dbp"
    num_joints: int = 34
    input_width: float = 1920.0
    input_height: float = 1080.0
    focal_length: float = 1200.0  # TAO's "1080P" default; the DeepStream app uses 800.79041
    sequence_length_max: int = 300
    sequence_length_min: int = 10
    sequence_length: int = 100
    sequence_overlap: float = 0.5  # TAO's meaning: window step = int(sequence_length × this)
    window_stride: int | None = None
    max_gap: int = 15
    keep_unseen_pelvis: bool = False

    def __post_init__(self) -> None:
        if self.pose_type not in POSE_TYPES:
            raise ValueError(f"pose_type {self.pose_type!r}: choose one of {', '.join(POSE_TYPES)}")
        if not 0 < self.sequence_length <= self.sequence_length_max:
            raise ValueError(
                f"sequence_length {self.sequence_length} must be in [1, sequence_length_max "
                f"{self.sequence_length_max}]"
            )
        if self.window_stride is not None and self.window_stride < 1:
            raise ValueError(f"window_stride {self.window_stride} must be at least 1 frame")
        if self.window_stride is None and not (
            math.isfinite(self.sequence_overlap) and self.window_step >= 1
        ):
            raise ValueError(
                f"sequence_overlap {self.sequence_overlap}: TAO steps windows by "
                f"int(sequence_length x sequence_overlap) = int({self.sequence_length} x "
                f"{self.sequence_overlap}) frames, which must be at least 1 (TAO loops forever "
                "at 0); give e.g. 0.5 (half overlap), 1.0 (none), or --window-stride in frames"
            )
        if self.sequence_length_min < 1 or self.max_gap < 0:
            raise ValueError("sequence_length_min must be at least 1 and max_gap at least 0")

    @property
    def window_step(self) -> int:
        """Frames between window starts: ``window_stride``, else TAO's int(L × overlap)."""
        if self.window_stride is not None:
            return self.window_stride
        if not math.isfinite(self.sequence_overlap):
            return 0
        return int(self.sequence_length * self.sequence_overlap)


@dataclass(frozen=True)
class Sequence:
    """One output window: where it came from and its (C, T, V) poses (unpadded)."""

    source: str
    object_id: int
    track: int
    first_frame: int
    last_frame: int
    poses: np.ndarray


def read_deepstream_json(path: str | Path) -> list[dict]:
    """The list of frames of a deepstream-bodypose-3d JSON file; malformed files raise clearly."""
    path = Path(path)
    try:
        batches = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{path}: malformed JSON at line {error.lineno} column {error.colno} "
            f"(char {error.pos}): {error.msg}"
        ) from error
    if not isinstance(batches, list):
        raise ValueError(f"{path}: expected a list of batches at the top level")
    frames = []
    for number, batch in enumerate(batches):
        if not isinstance(batch, dict) or not isinstance(batch.get("batches"), list):
            raise ValueError(f"{path}: batch {number} has no 'batches' list")
        declared = batch.get("num_frames_in_batch", len(batch["batches"]))
        if declared != len(batch["batches"]):
            raise ValueError(
                f"{path}: batch {number} declares {declared} frames but holds "
                f"{len(batch['batches'])}"
            )
        frames.extend(batch["batches"])
    return frames


def normalize_pose(values: Iterable[float], settings: ConvertSettings) -> np.ndarray | None:
    """Flat [x, y, z, conf]×V → (C, V) normalised; None for a 3D pose whose root is unseen
    (unless ``keep_unseen_pelvis``: its stored coordinates are subtracted anyway, as TAO)."""
    joints = np.asarray(values, dtype=np.float64).reshape(settings.num_joints, 4)
    seen = joints[:, 3] != 0
    if settings.pose_type == "3dbp":
        if not seen[0] and not settings.keep_unseen_pelvis:
            return None
        coords = (joints[:, :3] - joints[0, :3]) / settings.focal_length
    else:
        channels = POSE_TYPES[settings.pose_type][1]
        scale = np.array([settings.input_width, settings.input_height])
        coords = np.concatenate([joints[:, :2] / scale - 0.5, joints[:, 2:3]], axis=1)
        coords = coords[:, :channels]
    coords[~seen] = 0.0
    return coords.T.astype(np.float32)


# |coordinate| above this (mm, pixels) is no measurement; such poses are dropped, counted per file.
MAX_ABS_COORDINATE = 1e6
UNSEEN_PELVIS = "3D poses whose pelvis had zero confidence (--keep-unseen-pelvis keeps them as TAO)"
BAD_VALUES = f"poses with NaN, infinite or absurd (|value| > {MAX_ABS_COORDINATE:g}) coordinates"
JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
              int: "a number", float: "a number", type(None): "null"}  # fmt: skip


def _json_type(value: object) -> str:
    return JSON_TYPES.get(type(value), type(value).__name__)


def _integer(value: object, where: str, field: str) -> int:
    """An integral JSON number (``7`` or ``7.0``); anything else raises naming the field."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}: {field} {value!r} is {_json_type(value)}, not an integer")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(f"{where}: {field} {value!r} is not an integer")
    return int(value)


def _frame_objects(frame: object, position: int, source: str) -> tuple[int, list[dict]]:
    """(frame_num, objects) of one frame, or ValueError naming file, frame and field."""
    if not isinstance(frame, dict):
        raise ValueError(f"{source}: frame {position}: expected an object, got {_json_type(frame)}")
    frame_num = _integer(
        frame.get("frame_num", position), f"{source}: frame {position}", "frame_num"
    )
    objects = frame.get("objects", [])
    if not isinstance(objects, list):
        raise ValueError(
            f"{source}: frame {frame_num}: objects is {_json_type(objects)}, not an array"
        )
    for index, obj in enumerate(objects):
        if not isinstance(obj, dict):
            raise ValueError(
                f"{source}: frame {frame_num}, object {index}: expected an object, got "
                f"{_json_type(obj)}"
            )
    return frame_num, objects


def _pose_values(obj: dict, key: str, where: str, settings: ConvertSettings) -> np.ndarray:
    """The flat [x, y, z, conf]×V numbers of ``obj[key]`` as float64."""
    values = obj[key]
    if not isinstance(values, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values
    ):
        raise ValueError(f"{where}: {key} must be an array of numbers")
    if len(values) != 4 * settings.num_joints:
        raise ValueError(
            f"{where}: {key} has {len(values) // 4} joints, expected "
            f"num_joints={settings.num_joints}"
        )
    return np.asarray(values, dtype=np.float64)


def _plausible(values: np.ndarray, settings: ConvertSettings) -> bool:
    """Finite confidences; finite coordinates within ±MAX_ABS_COORDINATE for every joint used
    (the seen ones, and the 3D root that is subtracted)."""
    joints = values.reshape(settings.num_joints, 4)
    if not np.isfinite(joints[:, 3]).all():
        return False
    used = joints[:, 3] != 0
    if settings.pose_type == "3dbp":
        used[0] = True
    coords = joints[used, :3]
    return bool(np.isfinite(coords).all() and (np.abs(coords) <= MAX_ABS_COORDINATE).all())


def _drop_reason(values: np.ndarray, pose: np.ndarray | None, settings: ConvertSettings) -> str:
    """Why a pose is dropped ("" when kept): implausible values (also after normalisation, e.g.
    an overflowing division) or an unseen 3D pelvis."""
    if not _plausible(values, settings) or (pose is not None and not np.isfinite(pose).all()):
        return BAD_VALUES
    return UNSEEN_PELVIS if pose is None else ""


def collect_tracks(
    frames: list, settings: ConvertSettings, source: str
) -> tuple[dict[int, list[tuple[int, np.ndarray]]], Counter]:
    """Per object id, its (frame_num, (C, V) pose) in file order; and the dropped poses by
    reason (``UNSEEN_PELVIS``, ``BAD_VALUES``). Malformed frames or objects raise ValueError
    naming the file, the frame and the field."""
    key = POSE_TYPES[settings.pose_type][0]
    tracks: dict[int, list[tuple[int, np.ndarray]]] = defaultdict(list)
    dropped: Counter = Counter()
    for position, frame in enumerate(frames):
        frame_num, objects = _frame_objects(frame, position, source)
        for index, obj in enumerate(objects):
            where = f"{source}: frame {frame_num}, object {index}"
            if obj.get(key) is None or "object_id" not in obj:
                raise ValueError(f"{where}: an object lacks object_id or {key}")
            object_id = _integer(obj["object_id"], where, "object_id")
            values = _pose_values(obj, key, where, settings)
            pose = normalize_pose(values, settings) if _plausible(values, settings) else None
            reason = _drop_reason(values, pose, settings)
            if reason:
                dropped[reason] += 1
                continue
            tracks[object_id].append((frame_num, pose))
    return tracks, dropped


def split_at_gaps(frame_nums: list[int], max_gap: int) -> list[tuple[int, int]]:
    """[start, end) index ranges of runs whose consecutive frame numbers differ by ≤ max_gap;
    ``max_gap`` 0: one run (no splitting)."""
    if max_gap == 0:
        return [(0, len(frame_nums))] if frame_nums else []
    cuts = [
        i + 1 for i in range(len(frame_nums) - 1) if frame_nums[i + 1] - frame_nums[i] > max_gap
    ]
    bounds = [0, *cuts, len(frame_nums)]
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]


def window_bounds(num_frames: int, settings: ConvertSettings) -> list[tuple[int, int]]:
    """[start, end) windows of a track: 250 frames → 5 windows at the defaults (100,100,100,100,50)."""
    length = settings.sequence_length
    step = settings.window_step  # ≥ 1 (ConvertSettings checks it)
    windows, start = [], 0
    while num_frames - start >= settings.sequence_length_min:
        windows.append((start, min(start + length, num_frames)))
        start += step
    return windows


def sequences_of_file(path: Path, settings: ConvertSettings) -> tuple[list[Sequence], int]:
    """All windows of all objects of one JSON file, and its count of dropped poses (each
    reason logged with the file's name)."""
    tracks, dropped = collect_tracks(read_deepstream_json(path), settings, str(path))
    for reason, count in dropped.items():
        logger.warning("%s: dropped %d %s", path, count, reason)
    sequences = []
    for object_id, entries in tracks.items():
        frame_nums = [frame for frame, _ in entries]
        for track, (a, b) in enumerate(split_at_gaps(frame_nums, settings.max_gap)):
            poses = np.stack([pose for _, pose in entries[a:b]], axis=1)  # (C, T, V)
            for start, end in window_bounds(b - a, settings):
                sequences.append(
                    Sequence(
                        str(path),
                        object_id,
                        track,
                        frame_nums[a + start],
                        frame_nums[a + end - 1],
                        poses[:, start:end],
                    )
                )
    return sequences, sum(dropped.values())


def pad_sequences(sequences: list[Sequence], settings: ConvertSettings) -> np.ndarray:
    """(S, C, sequence_length_max, V, 1) float32, each sequence left-aligned in zeros."""
    channels = POSE_TYPES[settings.pose_type][1]
    shape = (len(sequences), channels, settings.sequence_length_max, settings.num_joints, 1)
    out = np.zeros(shape, dtype=np.float32)
    for row, sequence in enumerate(sequences):
        out[row, :, : sequence.poses.shape[1], :, 0] = sequence.poses
    return out


@dataclass(frozen=True)
class LabelRule:
    """``class_name`` for ``object_id`` (of ``source`` if given) over frames [first, last]."""

    object_id: int
    class_name: str
    first: float = -np.inf
    last: float = np.inf
    source: str = ""


def read_label_csv(path: str | Path) -> list[LabelRule]:
    """Rules from a CSV with columns ``object_id,class`` and optional ``start_frame,end_frame,source``."""
    path = Path(path)
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"object_id", "class"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: label CSV lacks column(s) {', '.join(sorted(missing))}")
        rules = []
        for line, row in enumerate(reader, start=2):
            try:
                rules.append(
                    LabelRule(
                        int(row["object_id"]),
                        row["class"].strip(),
                        float(row.get("start_frame") or -np.inf),
                        float(row.get("end_frame") or np.inf),
                        (row.get("source") or "").strip(),
                    )
                )
            except (TypeError, ValueError) as error:
                raise ValueError(f"{path}: line {line}: {error}") from error
    return rules


def label_of(sequence: Sequence, frame_nums: np.ndarray, rules: list[LabelRule]) -> str | None:
    """The class covering more than half of the sequence's frames, else None."""
    best, best_count = None, 0
    for rule in rules:
        if rule.object_id != sequence.object_id:
            continue
        if rule.source and Path(rule.source).name != Path(sequence.source).name:
            continue
        count = int(((frame_nums >= rule.first) & (frame_nums <= rule.last)).sum())
        if count > best_count:
            best, best_count = rule.class_name, count
    return best if best_count * 2 > len(frame_nums) else None


def convert_deepstream_json(
    data: str | Path, settings: ConvertSettings | None = None
) -> np.ndarray:
    """(S, C, sequence_length_max, V, 1) sequences of a JSON file or folder, nothing written."""
    settings = settings or ConvertSettings()
    return pad_sequences(convert_files(input_files(data), settings), settings)


def input_files(data: str | Path) -> list[Path]:
    """A JSON file, or the sorted ``*.json`` files of a folder."""
    data = Path(data)
    if data.is_dir():
        files = sorted(data.glob("*.json"))
        if not files:
            raise ValueError(f"{data}: no .json files in this folder")
        return files
    if not data.is_file():
        raise ValueError(f"{data}: no such file or folder")
    return [data]


def convert_files(files: list[Path], settings: ConvertSettings) -> list[Sequence]:
    """All sequences of all files, in file then object order."""
    sequences, dropped = [], 0
    for path in tqdm(files, desc="convert", disable=len(files) < 2):
        found, lost = sequences_of_file(path, settings)
        sequences += found
        dropped += lost
    if dropped and len(files) > 1:
        logger.warning("dropped %d poses in %d files in all", dropped, len(files))
    return sequences


def _manifest_rows(sequences: list[Sequence], files: list[Path]) -> list[dict]:
    prefix = len(files) > 1
    rows = []
    counters: dict[str, int] = defaultdict(int)
    for sequence in sequences:
        stem = Path(sequence.source).stem + "_" if prefix else ""
        object_file = f"{stem}object_{sequence.object_id}.npy"
        row = {key: value for key, value in asdict(sequence).items() if key != "poses"}
        row.update(
            index=len(rows),
            object_file=object_file,
            object_row=counters[object_file],
            num_frames=sequence.poses.shape[1],
        )
        counters[object_file] += 1
        rows.append(row)
    return rows


def write_outputs(
    sequences: list[Sequence], files: list[Path], data: np.ndarray, out_dir: Path
) -> list[dict]:
    """Per-object arrays, ``data.npy`` (``data``: the padded sequences) and the manifest;
    returns the manifest rows."""
    if not np.isfinite(data).all():  # collect_tracks drops such poses; never write them
        raise ValueError(f"{out_dir}: refusing to write sequences with NaN or infinite values")
    out_dir.mkdir(parents=True, exist_ok=True)
    np.save(out_dir / "data.npy", data, allow_pickle=False)
    rows = _manifest_rows(sequences, files)
    per_object: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        per_object[row["object_file"]].append(row["index"])
    for object_file, picked in per_object.items():
        np.save(out_dir / object_file, data[picked], allow_pickle=False)
    with (out_dir / "manifest.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["index"])
        writer.writeheader()
        writer.writerows(rows)
    (out_dir / "manifest.json").write_text(json.dumps(rows, indent=1))
    return rows


def write_training_labels(
    sequences: list[Sequence],
    data: np.ndarray,
    rules: list[LabelRule],
    out_dir: Path,
    label_map: dict[str, int] | None = None,
) -> dict[str, int]:
    """``train_data.npy`` + ``labels.pkl`` (TAO format) of the labelled sequences; the label map.

    Class ids come from ``label_map`` when given (a class not in it raises), else in order of
    first appearance.
    """
    classes: dict[str, int] = dict(label_map or {})
    rows, names, ids = [], [], []
    for index, sequence in enumerate(sequences):
        frames = np.linspace(sequence.first_frame, sequence.last_frame, sequence.poses.shape[1])
        name = label_of(sequence, frames, rules)
        if name is None:
            continue
        if label_map is not None and name not in classes:
            raise ValueError(f"class {name!r} of the label CSV is not in the label map")
        classes.setdefault(name, len(classes))
        rows.append(index)
        names.append(f"{Path(sequence.source).stem}:object_{sequence.object_id}:{index}")
        ids.append(classes[name])
    if len(rows) < len(sequences):
        logger.warning("%d of %d sequences have no class and are left out of the training set",
                       len(sequences) - len(rows), len(sequences))  # fmt: skip
    np.save(out_dir / "train_data.npy", np.asarray(data[rows]), allow_pickle=False)
    with (out_dir / "labels.pkl").open("wb") as handle:
        pickle.dump((names, ids), handle)
    (out_dir / "label_map.json").write_text(json.dumps(classes, indent=1))
    return classes


def convert(
    data: str | Path,
    out_dir: str | Path,
    settings: ConvertSettings,
    labels: str | Path | None = None,
    label_map: dict[str, int] | None = None,
) -> list[dict]:
    """Convert a JSON file or folder; returns the manifest rows (one per sequence)."""
    files = input_files(data)
    sequences = convert_files(files, settings)
    out_dir = Path(out_dir)
    data = pad_sequences(sequences, settings)
    rows = write_outputs(sequences, files, data, out_dir)
    logger.info("%d sequences from %d file(s) written to %s", len(rows), len(files), out_dir)
    if labels is not None:
        rules = read_label_csv(labels)
        classes = write_training_labels(sequences, data, rules, out_dir, label_map)
        logger.info("training set with classes %s", ", ".join(classes))
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``convert`` flags (TAO ``dataset_convert`` names with dashes)."""
    defaults = ConvertSettings()
    parser.add_argument("--data", help="deepstream-bodypose-3d JSON file or folder (required)")
    parser.add_argument(
        "--output-dir", "-r", "--results-dir", "--results_dir", dest="output_dir",
        help="where the arrays go (required; TAO's -r / dataset_convert.results_dir)",
    )  # fmt: skip
    parser.add_argument(
        "--labels", default=None, help="CSV: object_id,class[,start_frame,end_frame,source]"
    )
    parser.add_argument("--label-map", default=None, help="JSON {class: id} fixing the class ids")
    parser.add_argument("--pose-type", choices=list(POSE_TYPES), default=defaults.pose_type)
    for name in (
        "num_joints",
        "sequence_length_max",
        "sequence_length_min",
        "sequence_length",
    ):
        parser.add_argument(
            "--" + name.replace("_", "-"), type=int, default=getattr(defaults, name)
        )
    for name in ("input_width", "input_height", "focal_length"):
        parser.add_argument(
            "--" + name.replace("_", "-"), type=float, default=getattr(defaults, name)
        )
    add_window_arguments(parser)


def add_window_arguments(parser: argparse.ArgumentParser) -> None:
    """Window and frame-keeping flags shared by ``convert`` and ``inference``."""
    defaults = ConvertSettings()
    parser.add_argument(
        "--sequence-overlap",
        type=float,
        default=defaults.sequence_overlap,
        help="TAO's meaning: windows start every int(sequence_length x this) frames "
        "(0.5: half overlap, 1.0: none, 0.25: 3/4 overlap)",
    )
    parser.add_argument(
        "--window-stride",
        type=int,
        default=None,
        help="frames between window starts (overrides --sequence-overlap)",
    )
    parser.add_argument(
        "--max-gap",
        type=int,
        default=defaults.max_gap,
        help="split a track where frame_num jumps by more (0: never, as TAO)",
    )
    parser.add_argument(
        "--keep-unseen-pelvis",
        action=argparse.BooleanOptionalAction,
        default=defaults.keep_unseen_pelvis,
        help="3dbp: keep frames whose pelvis has confidence 0 (TAO subtracts it anyway)",
    )


def settings_from_args(args: argparse.Namespace) -> ConvertSettings:
    """The ``ConvertSettings`` named by parsed ``add_arguments`` flags."""
    names = ConvertSettings.__dataclass_fields__
    return ConvertSettings(**{name: getattr(args, name) for name in names if hasattr(args, name)})


def run(args: argparse.Namespace) -> int:
    """``convert`` subcommand: exit code 0 when sequences were written, 1 when none were."""
    label_map = read_label_map(args.label_map)
    rows = convert(args.data, args.output_dir, settings_from_args(args), args.labels, label_map)
    return 0 if rows else 1
