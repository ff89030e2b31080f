"""MMAction2's data as it ships: rawframe folders and annotation lists.

Rawframe folder (``tools/data/build_rawframes.py``, denseflow): ``<video>/img_00001.jpg ...``
(``filename_tmpl`` ``img_{:05}.jpg``, frames counted from 1: ``start_index=1``) and, with
optical flow, ``x_00001.jpg``/``y_00001.jpg`` (flow template ``{}_{:05d}.jpg`` formatted with
``"x"``/``"y"``; some releases write ``flow_x_00001.jpg``). :class:`MMActionFrameStore` reads it:
frame i (0-based) is ``filename_tmpl.format(i + start_index)``; u/v are the x/y images. Without it
the flow images of such a folder were read as RGB frames.

Annotation lists (one video per line, whitespace separated, label a 0-based class index):

* videos: ``some/path/000.mp4 1`` (``VideoDataset``);
* rawframes: ``some/directory 163 1`` = frame folder, total frames, label (``RawframeDataset``).

Paths are relative to the data root (mmaction's ``data_prefix``). Multi-label lines and
``with_offset`` lists are refused with the file and line named. A split folder holds
``<dataset>_train_split_<k>_{rawframes,videos}.txt`` and ``..._val_split_<k>_...`` (mmaction's
``build_file_list.py``) or ``*_train_list_*.txt``/``*_val_list_*.txt`` (Kinetics); class names
come from a ``*label_map*.txt`` there (one name per line), else ``class_<k>``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from data.video.ffmpeg_io import VIDEO_SUFFIXES
from data.video.framestore import FrameStore, FrameStoreError
from data.video.records import SplitResult, VideoRecord
from safeio.limits import check_label_range, derived_class_count
from safeio.text import printable

__all__ = [
    "FLOW_TEMPLATES",
    "RGB_TEMPLATES",
    "MMActionFrameStore",
    "find_rawframe_template",
    "is_mmaction_lists",
    "mmaction_split",
    "read_annotation_list",
]

# RGB file-name templates tried in this order (mmaction's default first); frames start at 1.
RGB_TEMPLATES = ("img_{:05}.jpg", "img_{:05}.png", "image_{:05}.jpg", "{:05}.jpg")
# Flow templates, formatted with ("x" or "y", index): denseflow's, then the flow_ prefixed one.
FLOW_TEMPLATES = ("{}_{:05}.jpg", "flow_{}_{:05}.jpg")
START_INDEX = 1
FLOW_STREAMS = {"u": "x", "v": "y"}


def find_rawframe_template(folder: Path) -> str | None:
    """The RGB template whose first frame exists in ``folder``, or None."""
    return next((t for t in RGB_TEMPLATES if (folder / t.format(START_INDEX)).is_file()), None)


class MMActionFrameStore(FrameStore):
    """An MMAction2 rawframe folder (see the module docstring); frames are counted once per
    stream from the folder listing (consecutive names from ``start_index`` on)."""

    kind = "mmaction"

    def __init__(self, video_dir: Path, filename_tmpl: str | None = None) -> None:
        super().__init__(video_dir)
        template = filename_tmpl or find_rawframe_template(self.video_dir)
        if template is None:
            raise FrameStoreError(
                f"{self.video_dir}: no MMAction2 rawframes (tried {', '.join(RGB_TEMPLATES)})"
            )
        self.templates = {"rgb": template}
        flow = next(
            (t for t in FLOW_TEMPLATES if (self.video_dir / t.format("x", START_INDEX)).is_file()),
            None,
        )
        if flow is not None:
            self.templates |= dict.fromkeys(FLOW_STREAMS, flow)
        self._counts: dict[str, int] = {}

    def _name(self, stream: str, index: int) -> str:
        number = index + START_INDEX
        if stream == "rgb":
            return self.templates["rgb"].format(number)
        return self.templates[stream].format(FLOW_STREAMS[stream], number)

    def num_frames(self, stream: str = "rgb") -> int:
        if stream not in self._counts:
            self._counts[stream] = self._count(stream) if stream in self.templates else 0
        return self._counts[stream]

    def _count(self, stream: str) -> int:
        names = set(os.listdir(self.video_dir))
        count = 0
        while self._name(stream, count) in names:
            count += 1
        if stream != "rgb":  # a flow frame needs both images
            other = "v" if stream == "u" else "u"
            while count and self._name(other, count - 1) not in names:
                count -= 1
        return count

    def read_encoded(self, indices: Iterable[int], stream: str = "rgb") -> list[bytes]:
        indices = [int(i) for i in indices]
        self._check(indices, stream)
        return [(self.video_dir / self._name(stream, i)).read_bytes() for i in indices]


# ----------------------------------------------------------------------------- lists
def _parse_line(file: Path, lineno: int, parts: list[str]) -> tuple[str, int]:
    """``(relative path, label)`` of one line; rawframe lines carry a frame count in between."""
    is_video = Path(parts[0]).suffix.lower() in VIDEO_SUFFIXES
    expected = 2 if is_video else 3
    shape = "<video> <label>" if is_video else "<frame_dir> <total_frames> <label>"
    if len(parts) != expected or not all(p.lstrip("-").isdigit() for p in parts[1:]):
        raise ValueError(
            f"{file}:{lineno}: expected '{shape}' (multi-label and with_offset lists are not "
            f"supported), got {' '.join(parts)!r}"
        )
    label = int(parts[-1])
    if label < 0:
        raise ValueError(f"{file}:{lineno}: negative label {label}")
    return parts[0], label


def _inside(file: Path, lineno: int, rel: str, data_root: Path) -> Path:
    """``data_root / rel``, refused when ``rel`` is absolute or its ``..`` parts leave the root
    (compared on the names as written: symlinks inside the root may point anywhere)."""
    path = Path(os.path.normpath(data_root / rel))
    root = Path(os.path.normpath(data_root))
    if Path(rel).is_absolute() or (path != root and root not in path.parents):
        raise ValueError(
            f"{file}:{lineno}: entry {printable(rel)} leads outside the data root {root}"
        )
    return path


def read_annotation_list(file: str | Path, data_root: str | Path) -> list[tuple[Path, int, str]]:
    """``(path, label, name)`` per line of an MMAction2 video or rawframe list; ``path`` is
    ``data_root / <entry>``, ``name`` the entry as written. Entries that lead outside
    ``data_root`` (absolute, or ``..`` past it) are refused with the file and line."""
    return [entry[:3] for entry in _read_entries(Path(file), Path(data_root))]


def _read_entries(file: Path, data_root: Path) -> list[tuple[Path, int, str, int]]:
    """``(path, label, name, line number)`` per entry of ``file``."""
    if not file.is_file():
        raise FileNotFoundError(f"{file}: annotation list not found")
    text = file.read_text(encoding="utf-8-sig", errors="replace")
    entries = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.strip():
            rel, label = _parse_line(file, lineno, line.split())
            entries.append((_inside(file, lineno, rel, data_root), label, rel, lineno))
    return entries


def _list_files(lists_dir: Path, split: int) -> tuple[Path, Path] | None:
    """(train, val) lists of ``lists_dir`` for split ``split``, or None when there are none."""
    for train_glob, val_glob in (
        (f"*_train_split_{split}_*.txt", f"*_val_split_{split}_*.txt"),
        ("*_train_list*.txt", "*_val_list*.txt"),
    ):
        train, val = sorted(lists_dir.glob(train_glob)), sorted(lists_dir.glob(val_glob))
        if train and val:
            return train[0], val[0]
    return None


def is_mmaction_lists(lists_dir: str | Path) -> bool:
    """True for a folder holding MMAction2 train/val annotation lists (any split number)."""
    lists_dir = Path(lists_dir)
    return lists_dir.is_dir() and any(_list_files(lists_dir, k) for k in (1, 2, 3))


def _label_map_names(lists_dir: Path) -> tuple[Path, list[str]] | None:
    """(file, names) of the folder's ``*label_map*.txt``, or None."""
    maps = sorted(lists_dir.glob("*label_map*.txt"))
    if not maps:
        return None
    text = maps[0].read_text(encoding="utf-8-sig", errors="replace")
    return maps[0], [name.strip() for name in text.splitlines() if name.strip()]


def _class_names(lists_dir: Path, subsets: dict[str, tuple[Path, list]]) -> list[str]:
    """The label map's names (every label checked against them), else ``class_<k>`` for a
    plausible derived count (``safeio.limits``); errors name the list file and line."""
    found = _label_map_names(lists_dir)
    if found is None:
        labels = [entry[1] for _, entries in subsets.values() for entry in entries]
        where = [f"{file}:{e[3]}" for file, entries in subsets.values() for e in entries]
        count = derived_class_count(labels, "", where)
        return [f"class_{k}" for k in range(count)]
    for file, entries in subsets.values():
        try:
            check_label_range([e[1] for e in entries], len(found[1]), file, [e[3] for e in entries])
        except ValueError as error:
            raise ValueError(f"{error} of {found[0]}") from None
    return found[1]


def mmaction_split(data_root: str | Path, lists_dir: str | Path, split: int = 1):
    """A :class:`data.video.splits.SplitResult` from MMAction2 lists; entries whose video or frame
    folder does not exist are kept in ``missing`` (val ones also in ``missing_val``)."""
    lists_dir = Path(lists_dir)
    files = _list_files(lists_dir, split)
    if files is None:
        raise ValueError(
            f"{lists_dir}: no MMAction2 train/val lists for split {split} (expected "
            f"*_train_split_{split}_*.txt and *_val_split_{split}_*.txt, or *_train_list*.txt "
            "and *_val_list*.txt)"
        )
    subsets = {s: (f, _read_entries(f, Path(data_root))) for s, f in zip(("train", "val"), files)}
    if not any(entries for _, entries in subsets.values()):
        raise ValueError(f"{files[0]}, {files[1]}: empty annotation lists")
    result = SplitResult(train=[], val=[], class_names=_class_names(lists_dir, subsets))
    for subset, (_, entries) in subsets.items():
        for path, label, name, _ in entries:
            if path.exists():
                getattr(result, subset).append(VideoRecord(path=path, label=label, name=name))
            else:
                result.missing.append(name)
                if subset == "val":
                    result.missing_val.append(name)
    return result
