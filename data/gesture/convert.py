"""``train_gesture.py convert``: TAO GestureNet ``dataset_convert`` (reference/gesture.md §4).

Two steps, as TAO splits them over its two spec files:

1. crop extraction (``dataset_config.json``): every annotation of a set is read, its image located,
   the hand box made square (``convert_bbox_square``: side max(w, h) about the box centre),
   enlarged (``bbox_enlarge_ratio``), clipped to the image and saved as a crop under
   ``<mount>/<post_data_dir>/<set>/<uid>/<annotation name>.png``; every ``sampling_rate``-th
   frame of each recording is kept.
2. experiment (``dataset_experiment_config.json``): whole users go to kpi (test), validation or
   train; ``image_feature_filter`` drops images whose metadata match a rule; ``sampling`` resamples
   the train set to the class weights; ``--k_folds`` K >= 2 also writes K user-disjoint folds.

The output ``data.json`` holds ``train_set``, ``validation_set`` and ``kpi_set`` (each
``{"images": [...]}``), each image with ``full_image_path`` and ``bbox_path`` (relative to
``image_root_path``), ``bbox_coordinates`` (upper-left, upper-right, lower-left, lower-right),
``class``, ``user_id``, ``set`` and ``metadata``. Bad annotations are skipped, named in a warning
and counted in ``summary``; every file is written to a temporary name and renamed.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from data.gesture.annotation import (
    GESTURE_CLASSES,
    Annotation,
    AnnotationError,
    parse_annotation,
)
from safeio.atomic import atomic_write_bytes

__all__ = [
    "DatasetSpec",
    "ExperimentSpec",
    "add_arguments",
    "convert",
    "crop_box",
    "filter_entries",
    "kfold_users",
    "run",
    "sample_by_class_weights",
    "split_users",
]

log = logging.getLogger(__name__)

MAX_NAMED_WARNINGS = 10
# Box coordinates (pixels) beyond this are corrupt, not a large image (cv2 images stop at 2^31).
MAX_COORDINATE = 2.0**31
# A path component made of these characters only, not starting with a dot (no "..", no hidden).
_UNSAFE_CHARACTERS = re.compile(r"[^\w.\-]+")


# How each sampling_mode sets the train-set size of the weighted classes from their counts
# (counts) and target shares (shares); then each class gets round(size · share) images.
SAMPLING_MODES = {
    "average": lambda counts, shares: sum(counts),  # same size: rare classes up, common down
    "oversample": lambda counts, shares: max(c / s for c, s in zip(counts, shares)),  # no drops
    "undersample": lambda counts, shares: min(c / s for c, s in zip(counts, shares)),  # no repeats
}


@dataclass(frozen=True)
class DatasetSpec:
    """``dataset_config.json`` (crop extraction). ``classes`` is this project's addition."""

    mount_dir_path: Path
    org_dataset: str = "data"
    org_data_dir: str = "original"
    post_data_dir: str = "extracted"
    kpi_users: tuple[str, ...] = ()
    sampling_rate: int = 1
    convert_bbox_square: bool = True
    bbox_enlarge_ratio: float = 1.0
    annotation_path: str = "annotation"
    classes: tuple[str, ...] = GESTURE_CLASSES

    @classmethod
    def from_json(cls, path: Path) -> DatasetSpec:
        raw = _read_spec(path)
        spec = cls(
            mount_dir_path=Path(raw.get("mount_dir_path", ".")),
            org_dataset=raw.get("org_dataset", "data"),
            org_data_dir=raw.get("org_data_dir", "original"),
            post_data_dir=raw.get("post_data_dir", "extracted"),
            kpi_users=tuple(raw.get("kpi_users", ())),
            sampling_rate=int(raw.get("sampling_rate", 1)),
            convert_bbox_square=bool(raw.get("convert_bbox_square", True)),
            bbox_enlarge_ratio=float(raw.get("bbox_enlarge_ratio", 1.0)),
            annotation_path=raw.get("annotation_config", {}).get("annotation_path", "annotation"),
            classes=tuple(raw.get("classes", GESTURE_CLASSES)),
        )
        if spec.sampling_rate < 1 or spec.bbox_enlarge_ratio <= 0:
            raise ValueError(f"{path}: sampling_rate must be >= 1 and bbox_enlarge_ratio > 0")
        return spec


@dataclass(frozen=True)
class ExperimentSpec:
    """``dataset_experiment_config.json`` (users, filters, sampling)."""

    train_val_sets: tuple[str, ...] = ("data",)
    kpi_sets: tuple[str, ...] = ("data",)
    uid_name: str = "user_id"
    predefined_val_users: bool = False
    val_fraction: float = 0.25
    validation: tuple[str, ...] = ()
    kpi: tuple[str, ...] = ()
    image_feature_filter: Mapping[str, Any] = field(default_factory=dict)
    sampling_mode: str = "average"
    use_class_weights: bool = False
    class_weights: Mapping[str, float] = field(default_factory=dict)
    random_seed: int = 108

    @classmethod
    def from_json(cls, path: Path) -> ExperimentSpec:
        raw = _read_spec(path)
        sets, uids, sampling = (
            raw.get("set_list", {}),
            raw.get("uid_list", {}),
            raw.get("sampling", {}),
        )
        spec = cls(
            train_val_sets=tuple(sets.get("train_val", ("data",))),
            kpi_sets=tuple(sets.get("kpi", ("data",))),
            uid_name=uids.get("uid_name", "user_id"),
            predefined_val_users=bool(uids.get("predefined_val_users", False)),
            val_fraction=float(uids.get("val_fraction", 0.25)),
            validation=tuple(uids.get("validation", ())),
            kpi=tuple(uids.get("kpi", ())),
            image_feature_filter=raw.get("image_feature_filter", {}) or {},
            sampling_mode=sampling.get("sampling_mode", "average"),
            use_class_weights=bool(sampling.get("use_class_weights", False)),
            class_weights={k: float(v) for k, v in (sampling.get("class_weights") or {}).items()},
            random_seed=int(raw.get("random_seed", 108)),
        )
        if spec.sampling_mode not in SAMPLING_MODES:
            raise ValueError(f"{path}: sampling_mode must be one of {sorted(SAMPLING_MODES)}")
        if not 0.0 <= spec.val_fraction < 1.0:
            raise ValueError(f"{path}: val_fraction must be in [0, 1)")
        return spec


def _read_spec(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read spec ({exc})") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a spec must be a JSON object")
    return raw


def crop_box(
    box: tuple[float, float, float, float],
    image_size: tuple[int, int],
    *,
    square: bool,
    enlarge_ratio: float,
) -> tuple[int, int, int, int] | None:
    """Box ``(x1, y1, w, h)`` → integer ``(x1, y1, x2, y2)`` (x2, y2 exclusive) after squaring,
    enlarging about the centre and clipping to the image ``(W, H)``; ``None`` when nothing is left.
    """
    x, y, w, h = box
    width, height = image_size
    cx, cy = x + w / 2.0, y + h / 2.0
    if square:
        w = h = max(w, h)
    w, h = w * enlarge_ratio, h * enlarge_ratio
    x1 = max(0, math.floor(cx - w / 2.0 + 0.5))
    y1 = max(0, math.floor(cy - h / 2.0 + 0.5))
    x2 = min(width, math.floor(cx + w / 2.0 + 0.5))
    y2 = min(height, math.floor(cy + h / 2.0 + 0.5))
    if x2 <= x1 or y2 <= y1:
        return None
    return x1, y1, x2, y2


def _box_problem(box: tuple[float, float, float, float], image_size: tuple[int, int]) -> str | None:
    x, y, w, h = box
    width, height = image_size
    if not all(math.isfinite(v) and abs(v) <= MAX_COORDINATE for v in box):
        return f"box {list(box)} is not finite or absurdly large"
    if not (w > 0 and h > 0):
        return "zero-area box"
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        return "box outside the image"
    return None


def _resolve_image(task_path: str, set_dir: Path, org_data_dir: str, set_name: str) -> Path:
    """The image of ``task_path``: as is when it exists, else re-rooted at ``set_dir`` (the
    annotation may come from another mount: ``.../<org_data_dir>/<set>/<uid>/...``)."""
    path = Path(task_path)
    if path.is_file():
        return path
    parts = path.parts
    for i in range(len(parts) - 1, 0, -1):
        if parts[i - 1] == org_data_dir and parts[i] == set_name:
            return set_dir.joinpath(*parts[i + 1 :])
    return path if path.is_absolute() else set_dir / path


@dataclass
class ConvertReport:
    """Counts of kept and skipped images by reason, with the first few named."""

    kept: int = 0
    skipped: Counter = field(default_factory=Counter)
    named: int = 0

    def skip(self, path: Path, reason: str) -> None:
        self.skipped[reason] += 1
        if self.named < MAX_NAMED_WARNINGS:
            log.warning("skipping %s: %s", path, reason)
            self.named += 1

    def as_dict(self) -> dict[str, Any]:
        return {"kept": self.kept, "skipped": dict(self.skipped)}


def _user_of(image: Path, set_dir: Path, metadata: Mapping[str, Any], uid_name: str) -> str:
    if uid_name in metadata:
        return str(metadata[uid_name])
    try:
        return image.relative_to(set_dir).parts[0]
    except (ValueError, IndexError):
        return image.parent.parent.name


def _subsample_frames(
    annotation_files: list[Path], parsed: dict[Path, Annotation], rate: int
) -> set[Path]:
    """Every ``rate``-th frame of each recording (images sharing a folder), by file name."""
    by_recording: dict[str, list[Path]] = defaultdict(list)
    for path in annotation_files:
        if path in parsed:
            by_recording[str(Path(parsed[path].task_path).parent)].append(path)
    keep: set[Path] = set()
    for paths in by_recording.values():
        ordered = sorted(paths, key=lambda p: Path(parsed[p].task_path).name)
        keep.update(ordered[::rate])
    return keep


def _extract_one(
    path: Path,
    annotation: Annotation,
    spec: DatasetSpec,
    set_name: str,
    set_meta: Mapping[str, Any],
    uid_name: str,
    report: ConvertReport,
) -> dict[str, Any] | None:
    """Validate one parsed annotation, write its crop; the data.json entry or ``None``."""
    mount = spec.mount_dir_path
    set_dir = mount / spec.org_data_dir / set_name
    if annotation.label not in spec.classes:
        report.skip(path, f"unknown class {annotation.label!r}")
        return None
    problem = _box_problem(annotation.box, annotation.image_size)
    if problem:
        report.skip(path, problem)
        return None
    image_path = _resolve_image(annotation.task_path, set_dir, spec.org_data_dir, set_name)
    image = cv2.imread(str(image_path), cv2.IMREAD_COLOR) if image_path.is_file() else None
    if image is None:
        report.skip(path, f"missing or unreadable image {image_path}")
        return None
    if (image.shape[1], image.shape[0]) != tuple(annotation.image_size):
        report.skip(
            path,
            f"image is {image.shape[1]}x{image.shape[0]}, annotation says {annotation.image_size}",
        )
        return None
    box = crop_box(
        annotation.box,
        annotation.image_size,
        square=spec.convert_bbox_square,
        enlarge_ratio=spec.bbox_enlarge_ratio,
    )
    if box is None:
        report.skip(path, "box outside the image")
        return None
    x1, y1, x2, y2 = box
    uid = _user_of(image_path, set_dir, annotation.metadata, uid_name)
    crop_path = crop_path_of(mount / spec.post_data_dir, set_name, uid, path.stem)
    ok, encoded = cv2.imencode(".png", image[y1:y2, x1:x2])
    if not ok:
        report.skip(path, "crop could not be encoded")
        return None
    atomic_write_bytes(crop_path, encoded.tobytes(), fsync=False)
    report.kept += 1
    metadata = {**set_meta.get(uid, {}), **annotation.metadata, uid_name: uid}
    return {
        "full_image_path": _relative(image_path, mount),
        "bbox_path": _relative(crop_path, mount),
        "bbox_coordinates": [[x1, y1], [x2, y1], [x1, y2], [x2, y2]],
        "class": annotation.label,
        "user_id": uid,
        "set": set_name,
        "metadata": metadata,
    }


def safe_component(text: str) -> str:
    """``text`` as one file-name component: runs of characters other than letters, digits,
    ``_``, ``.`` and ``-`` become ``_`` (so no separator), and leading dots ``_`` (so neither
    ``..`` nor a hidden name): ``"../../x"`` → ``"___.._x"``, ``"/a/b"`` → ``"_a_b"``; never
    empty."""
    cleaned = _UNSAFE_CHARACTERS.sub("_", str(text))
    stripped = cleaned.lstrip(".")
    return "_" * (len(cleaned) - len(stripped)) + stripped if cleaned else "_"


def crop_path_of(out_dir: Path, set_name: str, uid: str, stem: str) -> Path:
    """``<out_dir>/<set>/<uid>/<stem>.png`` from sanitised components; always inside
    ``out_dir`` (checked, whatever an annotation's ``metadata.user_id`` holds)."""
    path = out_dir / safe_component(set_name) / safe_component(uid) / f"{safe_component(stem)}.png"
    if not path.resolve().is_relative_to(out_dir.resolve()):
        raise ValueError(f"{path}: crop path outside {out_dir}")  # unreachable: kept as a guard
    return path


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path.resolve())


def extract_set(
    spec: DatasetSpec, set_name: str, uid_name: str, report: ConvertReport
) -> list[dict[str, Any]]:
    """Step 1 for one set: parse, check and crop every annotation; the kept entries."""
    set_dir = spec.mount_dir_path / spec.org_data_dir / set_name
    annotation_dir = set_dir / spec.annotation_path
    if not annotation_dir.is_dir():
        raise FileNotFoundError(
            f"{annotation_dir}: annotation folder of set {set_name!r} not found"
        )
    set_meta = _read_set_users(set_dir / "data.json")
    files = sorted(annotation_dir.glob("*.json"))
    parsed = {}
    for path in files:
        try:
            parsed[path] = parse_annotation(path)
        except AnnotationError as exc:
            report.skip(path, str(exc).removeprefix(f"{path}: "))
    keep = _subsample_frames(files, parsed, spec.sampling_rate)
    entries = []
    for path in tqdm(files, desc=f"crop {set_name}", unit="img", leave=False):
        if path in keep:
            entry = _extract_one(path, parsed[path], spec, set_name, set_meta, uid_name, report)
            if entry is not None:
                entries.append(entry)
    return entries


def _read_set_users(path: Path) -> dict[str, dict[str, Any]]:
    """Per-user metadata of a set's ``data.json`` (``{"set": ..., "users": {uid: {...}}}``)."""
    if not path.is_file():
        return {}
    try:
        users = json.loads(path.read_text(encoding="utf-8")).get("users", {})
    except (OSError, json.JSONDecodeError, AttributeError) as exc:
        raise ValueError(f"{path}: unreadable set config ({exc})") from exc
    return {str(uid): dict(meta or {}) for uid, meta in users.items()}


def split_users(
    users: Iterable[str],
    kpi_users: Iterable[str],
    *,
    val_fraction: float,
    predefined_validation: Sequence[str] | None,
    seed: int,
) -> tuple[list[str], list[str], list[str]]:
    """Whole users to (train, validation, kpi), disjoint. ``predefined_validation`` (when not
    ``None``) is the validation list; otherwise ``round(val_fraction · n)`` of the non-kpi users,
    at least one when the fraction is positive and two or more users remain."""
    kpi = sorted(set(kpi_users))
    pool = sorted(set(users) - set(kpi))
    if predefined_validation is not None:
        overlap = sorted(set(predefined_validation) & set(kpi))
        if overlap:
            raise ValueError(f"users {overlap} are listed for both validation and kpi")
        validation = sorted(set(predefined_validation) & set(pool))
    else:
        shuffled = list(pool)
        random.Random(seed).shuffle(shuffled)
        count = round(val_fraction * len(pool))
        if val_fraction > 0 and len(pool) >= 2:
            count = min(max(count, 1), len(pool) - 1)
        validation = sorted(shuffled[:count])
    train = sorted(set(pool) - set(validation))
    return train, validation, kpi


def kfold_users(users: Iterable[str], k: int, seed: int) -> list[list[str]]:
    """``k`` disjoint, near-equal user folds (shuffled by ``seed``) covering every user."""
    pool = sorted(set(users))
    if k > len(pool):
        raise ValueError(f"--k_folds {k} is more than the {len(pool)} train/validation users")
    random.Random(seed).shuffle(pool)
    return [sorted(pool[i::k]) for i in range(k)]


def _rule_matches(rule: Mapping[str, Any], metadata: Mapping[str, Any]) -> bool:
    # An empty rule matches nothing: the tutorial's {"*": [{}]} means "no filtering".
    return bool(rule) and all(metadata.get(key) == value for key, value in rule.items())


def filter_entries(
    entries: Sequence[dict[str, Any]], rules: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Drop entries whose metadata match a rule of their class or of ``"*"`` (every class)."""
    kept = []
    for entry in entries:
        entry_rules = [*rules.get("*", []), *rules.get(entry["class"], [])]
        if not any(_rule_matches(rule, entry["metadata"]) for rule in entry_rules):
            kept.append(entry)
    return kept


def sample_by_class_weights(
    entries: Sequence[dict[str, Any]], class_weights: Mapping[str, float], mode: str, seed: int
) -> list[dict[str, Any]]:
    """Resample the classes named in ``class_weights`` so each holds its weight's share of them
    (``SAMPLING_MODES`` sets the total); other classes are kept as they are. Deterministic."""
    by_class: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in entries:
        by_class[entry["class"]].append(entry)
    weighted = [c for c in class_weights if by_class.get(c) and class_weights[c] > 0]
    absent = [c for c in class_weights if not by_class.get(c)]
    if absent:
        log.warning("class_weights names classes without train images: %s", absent)
    if not weighted:
        return list(entries)
    total_weight = sum(class_weights[c] for c in weighted)
    shares = [class_weights[c] / total_weight for c in weighted]
    counts = [len(by_class[c]) for c in weighted]
    size = SAMPLING_MODES[mode](counts, shares)
    rng = np.random.default_rng(seed)
    out = [e for e in entries if e["class"] not in weighted]
    for name, share in zip(weighted, shares):
        items = by_class[name]
        target = max(1, round(size * share))
        repeats, rest = divmod(target, len(items))
        picks = list(range(len(items))) * repeats + sorted(
            rng.choice(len(items), rest, replace=False).tolist()
        )
        out.extend(items[i] for i in picks)
    return out


def _assign(
    entries: Sequence[dict[str, Any]], sets: Iterable[str], users: Iterable[str]
) -> list[dict[str, Any]]:
    sets, users = set(sets), set(users)
    return [e for e in entries if e["set"] in sets and e["user_id"] in users]


def _train_set(entries, users, experiment: ExperimentSpec) -> list[dict[str, Any]]:
    train = _assign(entries, experiment.train_val_sets, users)
    train = filter_entries(train, experiment.image_feature_filter.get("train_val", {}))
    if experiment.use_class_weights:
        train = sample_by_class_weights(
            train, experiment.class_weights, experiment.sampling_mode, experiment.random_seed
        )
    return train


def build_splits(
    entries: list[dict[str, Any]], dataset: DatasetSpec, experiment: ExperimentSpec, k_folds: int
) -> dict[str, Any]:
    """Step 2: the data.json body (sets, users, folds) from the extracted entries."""
    train_val_users = {e["user_id"] for e in entries if e["set"] in experiment.train_val_sets}
    kpi_users = set(dataset.kpi_users) | set(experiment.kpi)
    known = {e["user_id"] for e in entries}
    for role, listed in (("kpi", kpi_users), ("validation", set(experiment.validation))):
        if listed - known:
            log.warning("%s users without any kept image: %s", role, sorted(listed - known))
    predefined = experiment.validation if experiment.predefined_val_users and k_folds < 2 else None
    train_users, val_users, kpi_users_sorted = split_users(
        train_val_users,
        kpi_users,
        val_fraction=experiment.val_fraction,
        predefined_validation=predefined,
        seed=experiment.random_seed,
    )
    folds = []
    if k_folds >= 2:
        for fold in kfold_users(train_users + val_users, k_folds, experiment.random_seed):
            rest = sorted(set(train_users + val_users) - set(fold))
            folds.append((rest, fold))
        train_users, val_users = folds[0]
    val_filter = experiment.image_feature_filter.get("train_val", {})
    kpi = filter_entries(
        _assign(entries, experiment.kpi_sets, kpi_users_sorted),
        experiment.image_feature_filter.get("kpi", {}),
    )
    body = {
        "train_set": {"images": _train_set(entries, train_users, experiment)},
        "validation_set": {
            "images": filter_entries(
                _assign(entries, experiment.train_val_sets, val_users), val_filter
            )
        },
        "kpi_set": {"images": kpi},
        "users": {"train": train_users, "validation": val_users, "kpi": kpi_users_sorted},
    }
    if folds:
        body["folds"] = [
            {
                "train_set": {"images": _train_set(entries, tr, experiment)},
                "validation_set": {
                    "images": filter_entries(
                        _assign(entries, experiment.train_val_sets, va), val_filter
                    )
                },
                "users": {"train": tr, "validation": va},
            }
            for tr, va in folds
        ]
    return body


def convert(
    dataset_spec: Path, experiment_spec: Path, k_folds: int, output: Path, experiment_name: str
) -> dict[str, Any]:
    """Run both steps and write ``output`` atomically; returns the data.json dict."""
    dataset = DatasetSpec.from_json(dataset_spec)
    experiment = ExperimentSpec.from_json(experiment_spec)
    if k_folds < 0:
        raise ValueError("--k_folds must be >= 0")
    report = ConvertReport()
    sets = list(
        dict.fromkeys([dataset.org_dataset, *experiment.train_val_sets, *experiment.kpi_sets])
    )
    entries = [e for name in sets for e in extract_set(dataset, name, experiment.uid_name, report)]
    body = build_splits(entries, dataset, experiment, k_folds)
    data = {
        "experiment_name": experiment_name,
        "image_root_path": str(dataset.mount_dir_path.resolve()),
        "classes": list(dataset.classes),
        "k_folds": k_folds,
        "summary": report.as_dict(),
        **body,
    }
    atomic_write_bytes(Path(output), json.dumps(data, indent=1).encode("utf-8"))
    sizes = ", ".join(
        f"{key} {len(data[key]['images'])}" for key in ("train_set", "validation_set", "kpi_set")
    )
    skipped = ", ".join(f"{n} {reason}" for reason, n in report.skipped.most_common()) or "none"
    log.info("%s: %d crops (%s); skipped: %s", output, report.kept, sizes, skipped)
    return data


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset_spec", "--dataset-spec", type=Path, required=True, help="dataset_config.json"
    )
    parser.add_argument(
        "--experiment_spec",
        "--experiment-spec",
        dest="dataset_experiment_spec",  # not "experiment_spec": that is the -e train spec
        type=Path,
        required=True,
        help="dataset_experiment_config.json",
    )
    parser.add_argument(
        "--k_folds", "--k-folds", type=int, default=0, help="user folds (0: one split)"
    )
    parser.add_argument(
        "--output_filename",
        "--output-filename",
        type=Path,
        required=True,
        help="data.json to write",
    )
    parser.add_argument(
        "--experiment_name", "--experiment-name", default="v1", help="name stored in data.json"
    )


def run(args: argparse.Namespace) -> int:
    """``convert`` subcommand; bad input raises, and ``train.runner`` turns it into exit code 2."""
    convert(
        args.dataset_spec,
        args.dataset_experiment_spec,
        args.k_folds,
        args.output_filename,
        args.experiment_name,
    )
    return 0
