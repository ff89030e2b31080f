"""Frame storage: one reader API over three on-disk layouts of a single video's frames.

Layouts, detected by :func:`open_store` from the video directory:

* ``sqlite`` (ours): ``<video>/frames.db`` + ``<video>/n_frames``. Table
  ``Images(ObjId TEXT, frames BLOB, size INT)`` as in SRTG/dataset2database: ObjId
  ``"<video>/frame_%05d"`` 1-based, JPEG bytes, ``size`` = image width. Optical flow lives in the
  same table as grayscale JPEGs with ObjIds ``"<video>/u_%05d"`` and ``"<video>/v_%05d"``
  (1-based flow index: flow k is between frames k and k+1, 0-based). Additions over the
  upstream format: a unique index on ObjId (upstream scans the whole table per read) and a
  ``metadata(key, value)`` table (fps, width, height, num_frames, num_flow_frames, source,
  flow settings, video name).
* ``legacy``: a dataset2database ``frames.db`` without index or metadata (``n_frames`` optional).
  Frames are counted with ``COUNT(*)`` once per store and a warning is logged once per store.
* ``folders`` (TAO): ``<video>/rgb/*.png|jpg`` and optional ``u/``, ``v/`` grayscale flow images,
  indexed by position in the sorted listing (names are never parsed, as TAO does).

Reading: ``read(indices, stream)`` returns ``(T, H, W, 3)`` uint8 **RGB** for ``"rgb"`` (OpenCV
decodes BGR; upstream SRTG keeps BGR, defect 13) and ``(T, H, W)`` uint8 for ``"u"``/``"v"``.
Indices are 0-based, may repeat and keep their order; only the distinct rows needed are fetched.

SQLite connections are opened read-only, lazily, at most once per process and file, from a small
per-process LRU pool: stores hold no connection, so they pickle to DataLoader workers, and a
forked worker never touches its parent's connections (the pool is replaced when the pid changes).
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from pathlib import Path
from typing import Generic, TypeVar

import cv2
import numpy as np

log = logging.getLogger(__name__)

DB_NAME = "frames.db"
N_FRAMES_NAME = "n_frames"
STREAMS = ("rgb", "u", "v")
# ObjId stem per stream; the full id is f"{video}/{stem}_{index + 1:05d}".
OBJID_STEMS = {"rgb": "frame", "u": "u", "v": "v"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
FORMAT_VERSION = "actrec-framedb-1"
# Bound on SQL variables per statement (SQLite builds before 3.32 allow 999).
_MAX_SQL_VARS = 900
# Open connections kept per process; per-video DBs would otherwise exhaust file descriptors.
MAX_OPEN_CONNECTIONS = 64
# Page cache per connection (negative = KiB); reads are random, a large cache only costs memory.
_CACHE_KIB = 1024


H = TypeVar("H")  # an open handle with a close() method


class FrameStoreError(RuntimeError):
    """A frame store is missing, corrupt or asked for frames it does not hold."""


def objid(video: str, stream: str, index: int) -> str:
    """The ObjId of 0-based frame ``index`` of ``stream``: ``"<video>/frame_00001"`` for 0."""
    return f"{video}/{OBJID_STEMS[stream]}_{index + 1:05d}"


# ----------------------------------------------------------------------------- connections


def _file_key(path: Path) -> tuple:
    # The inode and mtime make a re-written (renamed into place) database a new entry.
    try:
        st = path.stat()
    except OSError as exc:
        raise FrameStoreError(f"{path}: frame database not found") from exc
    return (str(path), st.st_ino, st.st_mtime_ns)


class HandlePool(Generic[H]):
    """Per-process LRU of open handles (SQLite connections, video readers), keyed by file.

    ``opener(path)`` opens a handle, ``key(path)`` names it, at most ``capacity`` stay open (the
    least recently used is closed). Handles inherited through fork() are never used, closed or
    freed in the child: they move to ``inherited`` and stay referenced there (SQLite forbids using
    a connection outside its creator's process; freeing a video reader joins decoder threads that
    exist only in the parent).
    """

    def __init__(
        self, opener: Callable[[Path], H], capacity: int, key: Callable[[Path], Hashable] = Path
    ) -> None:
        self.opener, self.capacity, self.key = opener, capacity, key
        self.pid = os.getpid()
        self.handles: OrderedDict[Hashable, H] = OrderedDict()
        self.inherited: list[H] = []

    def get(self, path: Path) -> H:
        self._claim()
        key = self.key(path)
        handle = self.handles.get(key)
        if handle is not None:
            self.handles.move_to_end(key)
            return handle
        handle = self.opener(path)
        self.handles[key] = handle
        while len(self.handles) > self.capacity:
            self.handles.popitem(last=False)[1].close()
        return handle

    def discard(self, path: Path) -> None:
        """Close the handle of ``path`` if this process opened one."""
        self._claim()
        handle = self.handles.pop(self.key(path), None)
        if handle is not None:
            handle.close()

    def _claim(self) -> None:
        if self.pid != os.getpid():
            self.inherited.extend(self.handles.values())
            self.handles, self.pid = OrderedDict(), os.getpid()


def _connect_readonly(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise FrameStoreError(f"{path}: frame database not found")
    uri = path.resolve().as_uri() + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        conn.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
    except sqlite3.Error as exc:
        raise FrameStoreError(f"{path}: cannot open frame database ({exc})") from exc
    return conn


_pool: HandlePool[sqlite3.Connection] = HandlePool(
    _connect_readonly, MAX_OPEN_CONNECTIONS, key=_file_key
)


def _connection(path: Path) -> sqlite3.Connection:
    return _pool.get(path)


def _query(path: Path, sql: str, params: Sequence = ()) -> list[tuple]:
    try:
        return _connection(path).execute(sql, params).fetchall()
    except sqlite3.Error as exc:
        _pool.discard(path)
        raise FrameStoreError(f"{path}: corrupt or unreadable frame database ({exc})") from exc


# ----------------------------------------------------------------------------- decoding
_IMREAD_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)
# libjpeg's DCT scaling through OpenCV: decode at 1/2, 1/4 or 1/8 of the size (each side rounded
# up), skipping the inverse-DCT work of the dropped frequencies. The colour flags are the
# grayscale ones with the colour bit set (IMREAD_REDUCED_COLOR_2 == IMREAD_REDUCED_GRAYSCALE_2 | 1).
_REDUCED_GRAY = {
    2: cv2.IMREAD_REDUCED_GRAYSCALE_2,
    4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
    8: cv2.IMREAD_REDUCED_GRAYSCALE_8,
}
# JPEG start-of-frame markers (baseline, progressive, ...); C4, C8 and CC are other segments.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _colour_flag(reduce: int) -> int:
    base = _REDUCED_GRAY.get(reduce, 0)
    return base | (_IMREAD_RGB if _IMREAD_RGB is not None else cv2.IMREAD_COLOR)


def decode_rgb(data: bytes, reduce: int = 1) -> np.ndarray | None:
    """Encoded image bytes -> ``(H, W, 3)`` uint8 RGB, or None when undecodable.

    ``reduce`` 2, 4 or 8 decodes a JPEG at that fraction of its size (``ceil(side / reduce)``).
    """
    frame = cv2.imdecode(np.frombuffer(data, np.uint8), _colour_flag(reduce))
    if _IMREAD_RGB is None and frame is not None:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    return frame


def decode_gray(data: bytes, reduce: int = 1) -> np.ndarray | None:
    """Encoded image bytes -> ``(H, W)`` uint8, or None when undecodable (``reduce`` as above)."""
    flag = _REDUCED_GRAY.get(reduce, cv2.IMREAD_GRAYSCALE)
    return cv2.imdecode(np.frombuffer(data, np.uint8), flag)


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """``(height, width)`` from a JPEG's start-of-frame header; None for anything else (PNG)."""
    if data[:2] != b"\xff\xd8":
        return None
    pos, end = 2, len(data)
    while pos + 9 <= end:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _SOF_MARKERS:
            return _be16(data, pos + 5), _be16(data, pos + 7)
        pos += 2 + _be16(data, pos + 2)
    return None


def _be16(data: bytes, pos: int) -> int:
    return (data[pos] << 8) | data[pos + 1]


def reduction_factor(height: int, width: int, min_short_side: int | None) -> int:
    """The largest DCT scale 8, 4 or 2 that keeps the short side >= ``min_short_side``, else 1."""
    if min_short_side is None:
        return 1
    short = min(height, width)
    for factor in (8, 4, 2):
        if -(-short // factor) >= min_short_side:
            return factor
    return 1


def decode_frames(
    encoded: Sequence[bytes],
    stream: str = "rgb",
    *,
    min_short_side: int | None = None,
    names: Sequence[object] | None = None,
    where: object = "<memory>",
) -> np.ndarray:
    """Decode one clip's images: ``(T, H, W, 3)`` uint8 RGB or ``(T, H, W)`` for u/v.

    With ``min_short_side``, JPEGs are decoded at 1/2, 1/4 or 1/8 scale (one factor for the clip,
    from the first frame's header) when the short side stays >= ``min_short_side``; other formats
    at full size. ``names`` (frame indices) and ``where`` only label errors.
    """
    if not encoded:
        return _stack([], Path(str(where)), stream)
    size = jpeg_size(encoded[0]) if min_short_side is not None else None
    reduce = reduction_factor(*size, min_short_side) if size is not None else 1
    decode = decode_rgb if stream == "rgb" else decode_gray
    frames = []
    for k, data in enumerate(encoded):
        frame = decode(data, reduce)
        if frame is None:
            name = names[k] if names is not None else k
            raise FrameStoreError(f"{where}: {stream} frame {name} is not decodable")
        frames.append(frame)
    return _stack(frames, Path(str(where)), stream)


def encode_image(frame: np.ndarray, *, fmt: str = "jpg", quality: int = 90) -> bytes:
    """``(H, W, 3)`` uint8 RGB or ``(H, W)`` uint8 gray -> JPEG or PNG bytes."""
    if frame.ndim == 3:
        frame = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if fmt in ("jpg", "jpeg") else []
    ok, buf = cv2.imencode(f".{fmt}", np.ascontiguousarray(frame), params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {frame.shape} frame as {fmt}")
    return buf.tobytes()


# ----------------------------------------------------------------------------- stores
class FrameStore:
    """Frames of one video. Subclasses provide ``num_frames`` and ``read_encoded``.

    ``encoded`` is True where ``read_encoded`` gives the stored JPEG/PNG bytes (frame databases
    and folders), so a caller may decode them elsewhere (on the GPU); stores that decode
    themselves (raw video files) set it False and offer ``read`` only.
    """

    kind = "abstract"
    encoded = True

    def __init__(self, video_dir: Path) -> None:
        self.video_dir = Path(video_dir)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.video_dir)!r})"

    def num_frames(self, stream: str = "rgb") -> int:
        raise NotImplementedError

    def read_encoded(self, indices: Iterable[int], stream: str = "rgb") -> list[bytes]:
        raise NotImplementedError

    def read(
        self, indices: Iterable[int], stream: str = "rgb", *, min_short_side: int | None = None
    ) -> np.ndarray:
        """Decoded frames: ``(T, H, W, 3)`` uint8 RGB for ``"rgb"``, ``(T, H, W)`` for u/v.

        ``min_short_side``: the frames may come downscaled (aspect kept, all frames alike) as
        long as their short side stays >= it; JPEGs then decode with DCT scaling. None: full size.
        """
        indices = [int(i) for i in indices]
        # Decode each distinct frame once; duplicates (looped short videos) are copies.
        unique = list(dict.fromkeys(indices))
        frames = decode_frames(
            self.read_encoded(unique, stream),
            stream,
            min_short_side=min_short_side,
            names=unique,
            where=self.video_dir,
        )
        if len(unique) == len(indices):
            return frames
        position = {i: k for k, i in enumerate(unique)}
        return frames[[position[i] for i in indices]]

    def close(self) -> None:
        """Release per-process resources (connections are otherwise reused)."""

    def _check(self, indices: list[int], stream: str) -> None:
        if stream not in STREAMS:
            raise ValueError(f"unknown stream {stream!r}; expected one of {STREAMS}")
        n = self.num_frames(stream)
        if n == 0 and indices:
            raise FrameStoreError(f"{self.video_dir}: no {stream} frames (flow needs --flow)")
        bad = [i for i in indices if not 0 <= i < n]
        if bad:
            raise FrameStoreError(
                f"{self.video_dir}: {stream} frame index {bad[0]} out of range [0, {n})"
            )


def _stack(frames: list[np.ndarray], where: Path, stream: str) -> np.ndarray:
    if not frames:
        return np.empty((0, 0, 0, 3) if stream == "rgb" else (0, 0, 0), np.uint8)
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise FrameStoreError(f"{where}: {stream} frames differ in size {sorted(shapes)}")
    return np.stack(frames)


class SQLiteFrameStore(FrameStore):
    """Our ``frames.db`` (index + metadata) or a legacy dataset2database one."""

    def __init__(self, video_dir: Path) -> None:
        super().__init__(video_dir)
        self.db_path = self.video_dir / DB_NAME
        self.metadata = self._load_metadata()
        self.kind = "sqlite" if self.metadata else "legacy"
        self.video = self.metadata.get("video") or self._legacy_video_name()
        self._counts: dict[str, int] = {}

    def _load_metadata(self) -> dict[str, str]:
        tables = {r[0] for r in _query(self.db_path, "SELECT name FROM sqlite_master")}
        if "Images" not in tables:
            raise FrameStoreError(f"{self.db_path}: no Images table; not a frames database")
        if "metadata" not in tables:
            return {}
        return dict(_query(self.db_path, "SELECT key, value FROM metadata"))

    def _legacy_video_name(self) -> str:
        # The ObjId prefix is the folder name at conversion time; trust the rows, not the folder.
        row = _query(self.db_path, "SELECT ObjId FROM Images LIMIT 1")
        if not row:
            return self.video_dir.name
        return str(row[0][0]).rsplit("/frame_", 1)[0]

    def num_frames(self, stream: str = "rgb") -> int:
        if stream not in self._counts:
            self._counts[stream] = self._count(stream)
        return self._counts[stream]

    def _count(self, stream: str) -> int:
        if self.kind == "sqlite":
            key = "num_frames" if stream == "rgb" else "num_flow_frames"
            return int(self.metadata.get(key, 0))
        if stream != "rgb":
            return 0
        n_file = self.video_dir / N_FRAMES_NAME
        if n_file.is_file():
            return _read_count(n_file)
        _warn_legacy(self.db_path)
        return int(_query(self.db_path, "SELECT COUNT(*) FROM Images")[0][0])

    def read_encoded(self, indices: Iterable[int], stream: str = "rgb") -> list[bytes]:
        indices = [int(i) for i in indices]
        self._check(indices, stream)
        wanted = list(dict.fromkeys(objid(self.video, stream, i) for i in indices))
        rows: dict[str, bytes] = {}
        for start in range(0, len(wanted), _MAX_SQL_VARS):
            chunk = wanted[start : start + _MAX_SQL_VARS]
            sql = f"SELECT ObjId, frames FROM Images WHERE ObjId IN ({','.join('?' * len(chunk))})"
            rows.update(_query(self.db_path, sql, chunk))
        missing = [k for k in wanted if k not in rows]
        if missing:
            raise FrameStoreError(f"{self.db_path}: missing rows {missing[:3]}")
        return [bytes(rows[objid(self.video, stream, i)]) for i in indices]

    def close(self) -> None:
        _pool.discard(self.db_path)


class FolderFrameStore(FrameStore):
    """TAO folders ``rgb/``, ``u/``, ``v/``; frames by position in the sorted listing."""

    kind = "folders"

    def __init__(self, video_dir: Path) -> None:
        super().__init__(video_dir)
        self._listing: dict[str, list[str]] = {}

    def _names(self, stream: str) -> list[str]:
        if stream not in self._listing:
            if stream in ("u", "v"):
                self._list_flow_pair()
            else:
                self._listing[stream] = _list_images(self.video_dir / stream)
        return self._listing[stream]

    def _list_flow_pair(self) -> None:
        """List ``u/`` and ``v/`` once, together: a flow frame needs both."""
        u, v = _list_images(self.video_dir / "u"), _list_images(self.video_dir / "v")
        if u != v:
            raise FrameStoreError(f"{self.video_dir}: u/ and v/ hold different frame names")
        self._listing.update(u=u, v=v)

    def num_frames(self, stream: str = "rgb") -> int:
        return len(self._names(stream))

    def read_encoded(self, indices: Iterable[int], stream: str = "rgb") -> list[bytes]:
        indices = [int(i) for i in indices]
        self._check(indices, stream)
        names = self._names(stream)
        return [(self.video_dir / stream / names[i]).read_bytes() for i in indices]


_legacy_warnings = 0
# Per-store warnings stop after this many, so a legacy dataset does not flood the log.
_MAX_LEGACY_WARNINGS = 3


def _warn_legacy(db_path: Path) -> None:
    global _legacy_warnings
    _legacy_warnings += 1
    if _legacy_warnings <= _MAX_LEGACY_WARNINGS:
        more = (
            " (further such warnings suppressed)"
            if _legacy_warnings == _MAX_LEGACY_WARNINGS
            else ""
        )
        log.warning(
            "%s: legacy frames.db without index, metadata or n_frames; counting rows, reads scan "
            "the table (re-run `prepare` for the indexed format)%s",
            db_path,
            more,
        )


def _list_images(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(e.name for e in os.scandir(folder) if e.name.lower().endswith(IMAGE_SUFFIXES))


def _read_count(path: Path) -> int:
    try:
        return int(path.read_text().strip())
    except ValueError as exc:
        raise FrameStoreError(f"{path}: expected an integer frame count") from exc


# ----------------------------------------------------------------------------- writers
class _AtomicVideoWriter:
    """Writes into ``<parent>/.<name>.partial`` and renames it to ``video_dir`` on ``close``.

    A video directory therefore either is complete or does not exist; leftovers of an interrupted
    run are hidden ``.partial`` folders that the next run replaces.
    """

    def __init__(self, video_dir: str | os.PathLike) -> None:
        self.video_dir = Path(video_dir)
        self.tmp_dir = partial_dir(self.video_dir)
        if self.tmp_dir.exists():
            shutil.rmtree(self.tmp_dir)
        self.tmp_dir.mkdir(parents=True)
        self.counts = dict.fromkeys(STREAMS, 0)
        self.closed = False

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def add(self, stream: str, frame: np.ndarray) -> None:
        """Append the next frame: ``(H, W, 3)`` uint8 RGB for rgb, ``(H, W)`` uint8 for u/v."""
        raise NotImplementedError

    def _finish(self, metadata: dict) -> None:
        raise NotImplementedError

    def close(self, **metadata) -> Path:
        """Finish and rename into place; ``metadata`` (fps, source, ...) is stored where possible."""
        if self.closed:
            return self.video_dir
        if self.counts["u"] != self.counts["v"]:
            raise ValueError(f"{self.video_dir}: {self.counts['u']} u vs {self.counts['v']} v")
        self._finish(metadata)
        if self.video_dir.exists():
            shutil.rmtree(self.video_dir)
        os.replace(self.tmp_dir, self.video_dir)
        self.closed = True
        return self.video_dir

    def abort(self) -> None:
        """Drop everything written so far."""
        self.closed = True
        shutil.rmtree(self.tmp_dir, ignore_errors=True)


def partial_dir(video_dir: Path) -> Path:
    """Where a writer builds ``video_dir`` before renaming it."""
    return video_dir.parent / f".{video_dir.name}.partial"


class FrameDBWriter(_AtomicVideoWriter):
    """Writes ``<video_dir>/frames.db`` (+ ``n_frames``) frame by frame.

    ``legacy=True`` writes the bare upstream format (no index, metadata or n_frames), e.g. to
    benchmark against it.
    """

    def __init__(
        self, video_dir: str | os.PathLike, *, quality: int = 90, legacy: bool = False
    ) -> None:
        super().__init__(video_dir)
        self.quality = quality
        self.legacy = legacy
        self.video = self.video_dir.name
        self.conn = sqlite3.connect(self.tmp_dir / DB_NAME)
        self.conn.execute("PRAGMA journal_mode=OFF")
        self.conn.execute("PRAGMA synchronous=OFF")
        self.conn.execute("CREATE TABLE Images(ObjId TEXT, frames BLOB, size INT)")
        self.size: tuple[int, int] | None = None

    def add(self, stream: str, frame: np.ndarray) -> None:
        data = encode_image(frame, quality=self.quality)
        self.add_encoded(stream, data, frame.shape[1], frame.shape[0])

    def add_encoded(self, stream: str, data: bytes, width: int, height: int = 0) -> None:
        """Append already encoded JPEG bytes of an image ``width`` x ``height`` pixels."""
        if stream == "rgb" and height:
            self.size = (int(width), int(height))
        key = objid(self.video, stream, self.counts[stream])
        self.conn.execute("INSERT INTO Images VALUES (?, ?, ?)", (key, data, int(width)))
        self.counts[stream] += 1

    def _finish(self, metadata: dict) -> None:
        if not self.legacy:
            self.conn.execute("CREATE UNIQUE INDEX idx_objid ON Images(ObjId)")
            self._write_metadata(metadata)
        self.conn.commit()
        self.conn.close()
        if not self.legacy:
            (self.tmp_dir / N_FRAMES_NAME).write_text(f"{self.counts['rgb']}\n")

    def _write_metadata(self, extra: dict) -> None:
        width, height = self.size or (0, 0)
        meta = {
            "format": FORMAT_VERSION,
            "video": self.video,
            "num_frames": self.counts["rgb"],
            "num_flow_frames": self.counts["u"],
            "width": width,
            "height": height,
            **extra,
        }
        self.conn.execute("CREATE TABLE metadata(key TEXT PRIMARY KEY, value TEXT)")
        self.conn.executemany(
            "INSERT INTO metadata VALUES (?, ?)", [(k, str(v)) for k, v in meta.items()]
        )

    def abort(self) -> None:
        self.conn.close()
        super().abort()


class FrameFolderWriter(_AtomicVideoWriter):
    """Writes the TAO layout ``rgb/000000.png ...``, ``u/000000.jpg ...``, ``v/...``.

    Names are 0-based ``%06d`` as in the TAO documentation (its recipe converters start at
    000001; readers index by sorted position, so both work). Flow image k is the flow from
    frame k to frame k+1. ``metadata`` given to ``close`` is not stored (no place for it).
    """

    def __init__(
        self, video_dir: str | os.PathLike, *, image_format: str = "png", quality: int = 90
    ) -> None:
        super().__init__(video_dir)
        self.image_format = image_format
        self.quality = quality
        for stream in STREAMS:
            (self.tmp_dir / stream).mkdir()

    def add(self, stream: str, frame: np.ndarray) -> None:
        # Flow is always JPEG, as in the TAO layout; RGB follows --image-format.
        fmt = self.image_format if stream == "rgb" else "jpg"
        self.add_encoded(stream, encode_image(frame, fmt=fmt, quality=self.quality), fmt)

    def add_encoded(self, stream: str, data: bytes, fmt: str) -> None:
        """Append already encoded bytes with file suffix ``fmt`` (png or jpg)."""
        (self.tmp_dir / stream / f"{self.counts[stream]:06d}.{fmt}").write_bytes(data)
        self.counts[stream] += 1

    def _finish(self, metadata: dict) -> None:
        del metadata
