"""Train/val splits over prepared videos: HMDB51, UCF101, SRTG CSVs and plain class folders.

Every parser returns a :class:`SplitResult`. Split entries whose video is not among the prepared
ones are kept in ``missing`` and reported with a warning (the TAO recipe drops them silently).
Prepared videos are found by :func:`find_videos` in either layout:
``DATA/jpg/<class>/<video>/frames.db`` (sqlite) or ``DATA/<class>/<video>/rgb/`` (frames); raw
video files ``DATA/<class>/<video>.mp4`` (any ``VIDEO_SUFFIXES``) are videos too, named by their
stem, so an HMDB split entry ``x.avi`` matches a prepared ``x`` or a raw ``x.mp4`` alike.
"""

from __future__ import annotations

import csv
import logging
import random
import re
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from data.video.ffmpeg_io import VIDEO_SUFFIXES
from data.video.mmaction_lists import is_mmaction_lists, mmaction_split
from data.video.records import SplitResult, VideoRecord
from data.video.stores import is_complete_video

log = logging.getLogger(__name__)

# HMDB51 split-file ids: 1 = train, 2 = test, 0 = not used in this split.
HMDB_SUBSETS = {"1": "train", "2": "val", "0": None}
# SRTG CSV `split` column values.
CSV_SUBSETS = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "val",
    "testing": "val",
}
_MAX_NAMES_SHOWN = 5


class SplitError(ValueError):
    """A split file is missing or malformed (the message names the file and line)."""


# ----------------------------------------------------------------------------- prepared videos
SQLITE_SUBDIR = "jpg"  # prepare's sqlite layout: DATA/jpg/<class>/<video>/frames.db (SRTG's)


def video_root(data_root: str | Path) -> Path:
    """``DATA/jpg`` for the sqlite layout, ``DATA`` itself for the frames layout."""
    data_root = Path(data_root)
    nested = data_root / SQLITE_SUBDIR
    return nested if nested.is_dir() else data_root


def find_videos(data_root: str | Path) -> dict[str, dict[str, Path]]:
    """``{class: {video: path}}`` of complete prepared videos and raw video files (hidden and
    partial entries skipped; of two files with one stem, the first in sorted order is kept)."""
    root = video_root(data_root)
    if not root.is_dir():
        raise SplitError(f"{root}: prepared data folder not found")
    found: dict[str, dict[str, Path]] = {}
    for class_dir in sorted(_subdirs(root)):
        videos: dict[str, Path] = {}
        for entry in sorted(class_dir.iterdir()):
            if not entry.name.startswith(".") and _is_video(entry):
                videos.setdefault(video_name(entry), entry)
        if videos:
            found[class_dir.name] = videos
    return found


def _is_video(entry: Path) -> bool:
    if entry.suffix.lower() in VIDEO_SUFFIXES and entry.is_file():
        return True
    return entry.is_dir() and is_complete_video(entry)


def video_name(path: Path) -> str:
    """A video's name: a prepared folder's name, or a video file's stem (``x.mp4`` -> ``x``)."""
    return path.stem if path.suffix.lower() in VIDEO_SUFFIXES else path.name


def _subdirs(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]


class _Lookup:
    """Finds prepared videos by class and name, case-insensitively as a fallback (UCF101's
    lists write ``HandStandPushups`` where the archive folder is ``HandstandPushups``)."""

    def __init__(self, videos: dict[str, dict[str, Path]]) -> None:
        self.exact = {(c, v): p for c, vids in videos.items() for v, p in vids.items()}
        self.folded = {(c.lower(), v.lower()): p for (c, v), p in self.exact.items()}

    def get(self, class_name: str, video: str) -> Path | None:
        key = (class_name, video)
        return self.exact.get(key) or self.folded.get((key[0].lower(), key[1].lower()))


def _report_missing(missing: list[str], source: Path, data_root: Path) -> None:
    if missing:
        log.warning(
            "%d entries of %s have no prepared video under %s (first: %s)",
            len(missing),
            source,
            data_root,
            ", ".join(missing[:_MAX_NAMES_SHOWN]),
        )


def _report_unlisted(
    videos: dict[str, dict[str, Path]], class_names: list[str], source: Path, data_root: Path
) -> list[str]:
    """Class folders under ``data_root`` that no entry of ``source`` names (compared
    case-insensitively, as the lookup): reported, since their videos are not used."""
    listed = {name.lower() for name in class_names}
    unlisted = sorted(name for name in videos if name.lower() not in listed)
    if unlisted:
        log.warning(
            "%d class folders under %s are named by no entry of %s; their videos are not used: %s",
            len(unlisted),
            data_root,
            source,
            ", ".join(unlisted[:_MAX_NAMES_SHOWN])
            + (", ..." if len(unlisted) > _MAX_NAMES_SHOWN else ""),
        )
    return unlisted


def _assemble(
    entries: list[tuple[str, str, str]],
    class_names: list[str],
    data_root: Path,
    source: Path,
    folder_names: Callable[[str, str], list[str]] = lambda c, v: [v],
) -> SplitResult:
    """``entries`` are ``(subset, class, video)``; build records for those prepared."""
    videos = find_videos(data_root)
    lookup = _Lookup(videos)
    labels = {name: i for i, name in enumerate(class_names)}
    result = SplitResult(train=[], val=[], class_names=class_names)
    result.unlisted_classes = _report_unlisted(videos, class_names, source, data_root)
    for subset, class_name, video in entries:
        path = next(
            (p for name in folder_names(class_name, video) if (p := lookup.get(class_name, name))),
            None,
        )
        if path is None:
            result.missing.append(f"{class_name}/{video}")
            if subset == "val":
                result.missing_val.append(f"{class_name}/{video}")
            continue
        record = VideoRecord(
            path=path, label=labels[class_name], name=f"{class_name}/{video_name(path)}"
        )
        getattr(result, subset).append(record)
    _report_missing(result.missing, source, data_root)
    return result


# ----------------------------------------------------------------------------- HMDB51
def hmdb51_split(data_root: str | Path, splits_dir: str | Path, split: int = 1) -> SplitResult:
    """Official HMDB51 files ``<class>_test_split<k>.txt`` with lines ``<video>.avi 1|2|0``."""
    if split not in (1, 2, 3):
        raise SplitError(f"HMDB51 split must be 1, 2 or 3, got {split}")
    splits_dir = Path(splits_dir)
    suffix = f"_test_split{split}.txt"
    files = sorted(splits_dir.glob(f"*{suffix}"))
    if not files:
        raise SplitError(f"{splits_dir}: no *{suffix} files")
    class_names = [f.name[: -len(suffix)] for f in files]
    entries = []
    for class_name, file in zip(class_names, files):
        for lineno, parts in _split_lines(file):
            if len(parts) != 2 or parts[1] not in HMDB_SUBSETS:
                raise SplitError(f"{file}:{lineno}: expected '<video>.avi 0|1|2', got {parts}")
            subset = HMDB_SUBSETS[parts[1]]
            if subset:
                # The folder is the name minus its extension only; HMDB names contain dots
                # ("Vol._2"), which the TAO recipe's cut at the first "." breaks.
                entries.append((subset, class_name, Path(parts[0]).stem))
    return _assemble(entries, class_names, Path(data_root), splits_dir)


def _split_lines(file: Path) -> list[tuple[int, list[str]]]:
    """Non-empty lines split on whitespace (a UTF-8 BOM, trailing spaces and CRLF tolerated)."""
    text = file.read_text(encoding="utf-8-sig", errors="replace")
    return [(n, line.split()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


# ----------------------------------------------------------------------------- UCF101
def ucf101_split(data_root: str | Path, lists_dir: str | Path, split: int = 1) -> SplitResult:
    """UCF101 ``classInd.txt`` (``1 ApplyEyeMakeup``), ``trainlist0k.txt`` (``Class/v.avi 1``)
    and ``testlist0k.txt`` (``Class/v.avi``)."""
    lists_dir = Path(lists_dir)
    class_file = lists_dir / "classInd.txt"
    if not class_file.is_file():
        raise SplitError(f"{class_file}: not found")
    indexed = []
    for lineno, parts in _split_lines(class_file):
        if len(parts) != 2 or not parts[0].isdigit():
            raise SplitError(f"{class_file}:{lineno}: expected '<index> <class>', got {parts}")
        indexed.append((int(parts[0]), parts[1]))
    class_names = [name for _, name in sorted(indexed)]
    canonical = {name.lower(): name for name in class_names}
    entries = []
    for subset, stem in (("train", "trainlist"), ("val", "testlist")):
        file = lists_dir / f"{stem}{split:02d}.txt"
        if not file.is_file():
            raise SplitError(f"{file}: not found")
        for lineno, parts in _split_lines(file):
            class_name, _, video = parts[0].replace("\\", "/").partition("/")
            if not video or class_name.lower() not in canonical:
                raise SplitError(f"{file}:{lineno}: expected '<class>/<video>.avi', got {parts}")
            entries.append((subset, canonical[class_name.lower()], video_name(Path(video))))
    return _assemble(entries, class_names, Path(data_root), lists_dir)


# ----------------------------------------------------------------------------- SRTG CSV
def srtg_csv_split(data_root: str | Path, *csv_files: str | Path) -> SplitResult:
    """SRTG label CSVs: columns ``label``, ``youtube_id`` or ``id``, optional ``time_start``,
    ``time_end``, and ``split`` (train/val/test). The ``split`` column decides the subset (the
    SRTG code ignores it); rows without one go by their file name (``*train*`` -> train).
    Class indices follow the sorted label names, independent of row order."""
    rows = []
    for csv_file in map(Path, csv_files):
        rows += _read_csv_rows(csv_file)
    class_names = sorted({label for _, label, _ in rows})
    return _assemble(rows, class_names, Path(data_root), Path(csv_files[0]), _csv_folders)


def _read_csv_rows(csv_file: Path) -> list[tuple[str, str, str]]:
    if not csv_file.is_file():
        raise SplitError(f"{csv_file}: not found")
    with csv_file.open(newline="", encoding="utf-8-sig") as fh:  # -sig: a BOM is not a column
        reader = csv.DictReader(fh)
        columns = set(reader.fieldnames or [])
        id_column = "youtube_id" if "youtube_id" in columns else "id"
        if not {"label", id_column} <= columns:
            raise SplitError(f"{csv_file}: needs columns 'label' and 'youtube_id' or 'id'")
        default = "train" if "train" in csv_file.stem.lower() else "val"
        rows = []
        for lineno, row in enumerate(reader, 2):
            subset = CSV_SUBSETS.get((row.get("split") or default).strip().lower())
            if subset is None:
                raise SplitError(f"{csv_file}:{lineno}: unknown split {row.get('split')!r}")
            rows.append((subset, row["label"].strip(), _csv_folder(row, id_column)))
    return rows


def _csv_folder(row: dict, id_column: str) -> str:
    """Kinetics/HACS folders are ``<id>_<start:06d>_<end:06d>``; others are the id."""
    video_id = row[id_column].strip()
    start, end = (row.get("time_start") or "").strip(), (row.get("time_end") or "").strip()
    if start and end:
        return f"{video_id}_{int(float(start)):06d}_{int(float(end)):06d}"
    return video_id


def _csv_folders(class_name: str, folder: str) -> list[str]:
    # A timed folder name may have been prepared from an untrimmed video named by its id.
    return [folder, re.sub(r"_\d{6}_\d{6}$", "", folder)]


# ----------------------------------------------------------------------------- class folders
def folder_split(data_root: str | Path, val_fraction: float = 0.2, seed: int = 0) -> SplitResult:
    """Every prepared ``<class>/<video>``; a stratified, seeded ``val_fraction`` per class goes
    to val (at least one video when a class has two or more). Deterministic for a seed."""
    if not 0 <= val_fraction < 1:
        raise SplitError(f"val_fraction must be in [0, 1), got {val_fraction}")
    videos = find_videos(data_root)
    class_names = sorted(videos)
    result = SplitResult(train=[], val=[], class_names=class_names)
    for label, class_name in enumerate(class_names):
        names = sorted(videos[class_name])
        # Per-class generator from a stable hash: adding a class never reshuffles the others.
        random.Random(seed * 1_000_003 + zlib.crc32(class_name.encode())).shuffle(names)
        n_val = round(len(names) * val_fraction)
        if val_fraction > 0 and len(names) >= 2:
            n_val = max(1, n_val)
        for i, name in enumerate(names):
            record = VideoRecord(videos[class_name][name], label, f"{class_name}/{name}")
            (result.val if i < n_val else result.train).append(record)
    result.train.sort(key=lambda r: r.name)
    result.val.sort(key=lambda r: r.name)
    return result


# ----------------------------------------------------------------------------- dispatch
def detect_split_format(split_path: str | Path | None) -> str:
    """``folders`` (no path), ``ucf101`` (classInd.txt), ``hmdb51`` (*_test_split*.txt),
    ``csv`` (a .csv file, or a folder of them) or ``mmaction`` (MMAction2 train/val lists)."""
    if split_path is None:
        return "folders"
    split_path = Path(split_path)
    if split_path.suffix.lower() == ".csv" or any(split_path.glob("*.csv")):
        return "csv"
    if (split_path / "classInd.txt").is_file():
        return "ucf101"
    if any(split_path.glob("*_test_split*.txt")):
        return "hmdb51"
    if is_mmaction_lists(split_path):
        return "mmaction"
    raise SplitError(
        f"{split_path}: not a split CSV (*.csv), UCF101 list folder (classInd.txt, "
        "trainlist01.txt, testlist01.txt), HMDB51 split folder (<class>_test_split1.txt) or "
        "MMAction2 list folder (*_train_split_1_*.txt and *_val_split_1_*.txt, or "
        "*_train_list*.txt and *_val_list*.txt)"
    )


def load_split(
    data_root: str | Path,
    split_path: str | Path | None = None,
    *,
    split: int = 1,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> SplitResult:
    """Split prepared videos with whatever ``split_path`` holds (see :func:`detect_split_format`)."""
    fmt = detect_split_format(split_path)
    if fmt == "folders":
        return folder_split(data_root, val_fraction, seed)
    if fmt == "csv":
        path = Path(split_path)
        return srtg_csv_split(data_root, *(sorted(path.glob("*.csv")) if path.is_dir() else [path]))
    if fmt == "mmaction":
        result = mmaction_split(data_root, split_path, split)
        _report_missing(result.missing, Path(split_path), Path(data_root))
        return result
    parser = hmdb51_split if fmt == "hmdb51" else ucf101_split
    return parser(data_root, split_path, split)


# ----------------------------------------------------------------------------- writing
def _listed_video(record: VideoRecord) -> str:
    """``<class>/<video>`` as the list entry of ``record``: a video file by its real name (its
    own container), a prepared or rawframe folder by its name (the reader drops a suffix only
    when it is a video file's)."""
    if record.path.suffix.lower() in VIDEO_SUFFIXES and not record.path.is_dir():
        return str(PurePosixPath(record.name).with_name(record.path.name))
    return record.name


def write_split_lists(result: SplitResult, folder: str | Path) -> Path:
    """Write ``result`` as UCF101-style lists that :func:`load_split` reads back as split 1:
    ``classInd.txt`` (the class order, so labels keep their indices), ``trainlist01.txt``
    (``<class>/<video file or folder> <label+1>``) and ``testlist01.txt``. Used for ``splits_used/`` in a
    run directory: the exact videos a run trained and validated on, whatever drew them."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    spaced = [name for name in result.class_names if len(name.split()) != 1]
    if spaced:
        raise SplitError(f"class names with whitespace cannot be listed: {spaced[:5]}")
    (folder / "classInd.txt").write_text(
        "".join(f"{i} {name}\n" for i, name in enumerate(result.class_names, 1)), encoding="utf-8"
    )
    for file, records, with_label in (
        ("trainlist01.txt", result.train, True),
        ("testlist01.txt", result.val, False),
    ):
        lines = [
            _listed_video(r) + (f" {r.label + 1}" if with_label else "") + "\n" for r in records
        ]
        (folder / file).write_text("".join(lines), encoding="utf-8")
    return folder
