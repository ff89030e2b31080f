"""A raw video file as a frame store: frames decoded on the fly with PyAV, no ``prepare`` needed.

:class:`VideoFileStore` answers the :class:`data.video.framestore.FrameStore` API for one video file
(mp4, avi, mkv, webm, mov, ...; ``open_store`` dispatches on the suffix).

Frame index k is the k-th frame the decoder outputs from the start of the file (presentation
order, every frame kept, variable frame rate included): the frame that ``prepare`` writes as row
k of ``frames.db`` (its ffmpeg runs with ``-fps_mode passthrough``). Rotation (the display matrix,
which libavformat also fills from an old ``rotate`` tag) is applied as ffmpeg's autorotate does.

Reading seeks instead of decoding the whole file. The frame index is built once per store from
the packets (demuxed, not decoded): the presentation timestamps, sorted, are the frames in index
order, and the keyframe packets are the seek points. A clip is read by seeking to the keyframe at
or before its first frame and decoding forward; each decoded frame is placed by its timestamp and
only the wanted ones are converted to RGB (resized on the fly with ``min_short_side``). Sorted
reads continue from the decoder's position when no keyframe lies in between. Files whose
timestamps cannot place frames (missing or inconsistent timestamps) are decoded from the start,
frame counting as ``prepare`` does; their frame count is a decode count.

Per process at most :data:`MAX_OPEN_READERS` containers are open (an LRU pool keyed by the process
id, replaced after ``fork``), so stores pickle to DataLoader workers and a worker never touches
its parent's open file.
"""

from __future__ import annotations

import bisect
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from data.video.ffmpeg_io import MIN_DECODED_SHARE, VIDEO_SUFFIXES
from data.video.framestore import FrameStore, FrameStoreError, HandlePool
from safeio.text import printable

log = logging.getLogger(__name__)

__all__ = ["MAX_OPEN_READERS", "VideoFileStore", "is_video_file"]

# Open containers (and their decoders) kept per process; a 1080p decoder holds tens of MB.
MAX_OPEN_READERS = 4


def is_video_file(path: str | os.PathLike) -> bool:
    """True for an existing file whose suffix is a video container's (``VIDEO_SUFFIXES``)."""
    path = Path(path)
    return path.suffix.lower() in VIDEO_SUFFIXES and path.is_file()


class _Unplaceable(Exception):
    """Decoded timestamps do not match the packet index: fall back to counting from the start."""


@dataclass(frozen=True)
class _FrameIndex:
    """Where the frames of one video are: packet timestamps in index order and seek points.

    ``pts`` (stream time base, sorted) is None when frames are placed by counting decoded frames
    from the start. ``offset`` is decoded minus packet timestamp (AVI decoders shift by their
    reorder delay).
    """

    count: int
    fps: float
    pts: tuple[int, ...] | None = None
    keyframes: tuple[int, ...] = (0,)  # frame indices of keyframes, ascending, 0 first
    offset: int = 0

    def keyframe_before(self, index: int) -> int:
        """The last keyframe index <= ``index``."""
        return self.keyframes[max(bisect.bisect_right(self.keyframes, index) - 1, 0)]

    def place(self, pts: int | None, previous: tuple[int, int] | None) -> int:
        """Frame index of a decoded frame with timestamp ``pts``; ``previous`` is the last
        ``(pts, index)`` placed (equal timestamps are consecutive frames)."""
        if pts is None:
            raise _Unplaceable("a decoded frame has no timestamp")
        pts -= self.offset
        if previous is not None and pts == previous[0]:
            return previous[1] + 1
        index = bisect.bisect_left(self.pts, pts)
        if index >= len(self.pts) or self.pts[index] != pts:
            raise _Unplaceable(f"decoded timestamp {pts} is not a packet timestamp")
        return index


class VideoFileStore(FrameStore):
    """Frames of one video file, decoded on demand (see the module docstring)."""

    kind = "video"
    encoded = False  # frames are not stored as JPEG/PNG bytes: read_encoded is unavailable

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(Path(path))
        if not self.video_dir.is_file():
            raise FrameStoreError(f"{self.video_dir}: video file not found")
        self._index: _FrameIndex | None = None
        self._broken: str | None = None  # why reads fail, once the file turned out unreadable
        self.decode_errors = 0  # packets that failed to decode so far (skipped, as ffmpeg does)

    @property
    def path(self) -> Path:
        return self.video_dir

    def index(self) -> _FrameIndex:
        """The frame index, built on first use and cached on the store."""
        if self._broken:
            raise FrameStoreError(self._broken)
        if self._index is None:
            try:
                self._index = _reader(self.path).build_index()
            except FrameStoreError as exc:
                self._broken = str(exc)
                raise
        return self._index

    @property
    def fps(self) -> float:
        """Average frame rate from the container (0.0 when it states none)."""
        return self.index().fps

    def num_frames(self, stream: str = "rgb") -> int:
        return self.index().count if stream == "rgb" else 0

    def read_encoded(self, indices: Iterable[int], stream: str = "rgb") -> list[bytes]:
        raise FrameStoreError(f"{self.path}: a video file holds no encoded frame images")

    def read(
        self, indices: Iterable[int], stream: str = "rgb", *, min_short_side: int | None = None
    ) -> np.ndarray:
        """``(T, H, W, 3)`` uint8 RGB frames ``indices`` (0-based, any order, repeats allowed).

        With ``min_short_side``, frames whose short side is longer are downscaled (area
        interpolation, aspect kept) to that short side.
        """
        indices = [int(i) for i in indices]
        if stream != "rgb":
            raise FrameStoreError(
                f"{self.path}: a video file has no optical flow ({stream}); "
                "run `prepare --flow` for flow models"
            )
        self._check(indices, stream)
        if not indices:
            return np.empty((0, 0, 0, 3), np.uint8)
        wanted = sorted(set(indices))
        try:
            frames = self._frames(wanted, min_short_side)
        except FrameStoreError as exc:
            self._broken = str(exc)
            raise
        finally:
            self._note_decode_errors()
        return np.stack([frames[i] for i in indices])

    def _note_decode_errors(self) -> None:
        """Take the reader's count of damaged packets; warn (file and count) when it grew."""
        failed = len(_reader(self.path).failed)
        if failed > self.decode_errors:
            self.decode_errors = failed
            log.warning(
                "%s: %d damaged packet(s) could not be decoded; their frames are skipped",
                printable(self.path),
                failed,
            )

    def _frames(self, wanted: list[int], min_short_side: int | None) -> dict[int, np.ndarray]:
        index = self.index()
        try:
            return _reader(self.path).frames(index, wanted, min_short_side)
        except _Unplaceable as exc:
            if index.pts is None:
                raise FrameStoreError(f"{self.path}: {exc}") from exc
            log.debug("%s: %s; frames counted from the start from now on", self.path, exc)
            self._index = _FrameIndex(index.count, index.fps)
            return _reader(self.path).frames(self._index, wanted, min_short_side)


# ----------------------------------------------------------------------------- readers
class _Reader:
    """One open container of one file; the decoder's position is kept between reads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.container = None
        self._frames: Iterator[tuple[int, av.VideoFrame]] | None = None
        self.failed: set[tuple[int | None, int | None]] = set()  # (pts, dts) of damaged packets
        self._open()

    def _open(self) -> None:
        self.close()
        try:
            self.container = av.open(str(self.path), metadata_errors="ignore")
        except (av.FFmpegError, UnicodeDecodeError) as exc:
            raise FrameStoreError(f"{self.path}: cannot open the video ({exc})") from exc
        if not self.container.streams.video:
            self.close()
            raise FrameStoreError(f"{self.path}: no video stream")
        self.stream = self.container.streams.video[0]
        self._next = -1  # index of the frame the decoder outputs next; -1 when unknown

    def close(self) -> None:
        # The frame generator refers back to this reader: dropping it breaks the cycle, so a
        # closed reader is freed at once, never left to a garbage collection in a forked child
        # (freeing decoder state there, whose threads live only in the parent, crashes).
        self._frames = None
        if self.container is not None:
            self.container.close()
            self.container = None

    def decode(self) -> Iterator[av.VideoFrame]:
        """Frames from the current position. A packet that fails to decode is skipped, as the
        ffmpeg command line (and so ``prepare``) skips it; a demuxing error ends the stream."""
        for packet in self.container.demux(self.stream):
            try:
                yield from packet.decode()
            except av.InvalidDataError as exc:
                self.failed.add((packet.pts, packet.dts))
                log.debug("%s: packet at %s skipped (%s)", self.path, packet.pts, exc)

    # ------------------------------------------------------------------ index
    def build_index(self) -> _FrameIndex:
        """Decode the first frame (decoded vs packet timestamps), then demux every packet without
        decoding for timestamps and keyframes. Falls back to a decode count when the packets
        cannot place frames or disagree with the header's frame count."""
        self._open()
        fps = float(self.stream.average_rate or self.stream.guessed_rate or 0)
        header_count = self.stream.frames
        try:
            first = next(self.decode(), None)
            self._open()
            packets = [
                (p.pts, p.is_keyframe)
                for p in self.container.demux(self.stream)
                if p.size and not p.is_discard
            ]
        except av.FFmpegError as exc:
            raise FrameStoreError(f"{self.path}: unreadable video ({exc})") from exc
        finally:
            self._open()
        if first is None or not packets:
            raise FrameStoreError(f"{self.path}: no video frame could be decoded")
        index = _timestamp_index(packets, first.pts, fps)
        if index is None or (header_count and header_count != index.count):
            log.debug("%s: frames placed by decode count", self.path)
            index = _FrameIndex(self._count_frames(), fps)
            if index.count < MIN_DECODED_SHARE * header_count:
                raise FrameStoreError(
                    f"{self.path}: truncated, decoded {index.count} of {header_count} frames"
                )
        return index

    def _count_frames(self) -> int:
        count = 0
        try:
            for _ in self.decode():
                count += 1
        except av.FFmpegError as exc:
            log.warning("%s: decoding stopped after %d frames (%s)", self.path, count, exc)
        finally:
            self._open()
        if count == 0:
            raise FrameStoreError(f"{self.path}: no video frame could be decoded")
        return count

    # ------------------------------------------------------------------ frames
    def frames(
        self, index: _FrameIndex, wanted: list[int], min_short_side: int | None
    ) -> dict[int, np.ndarray]:
        """``{i: (H, W, 3) uint8}`` for the sorted distinct indices ``wanted``."""
        out: dict[int, np.ndarray] = {}
        try:
            for target in wanted:
                if self._needs_seek(index, target):
                    self._seek(index, target)
                out[target] = _to_rgb(self._decode_to(index, target), min_short_side)
        except av.FFmpegError as exc:
            self._open()
            raise FrameStoreError(f"{self.path}: decoding failed ({exc})") from exc
        except _Unplaceable:
            self._open()
            raise
        return out

    def _needs_seek(self, index: _FrameIndex, target: int) -> bool:
        if self._frames is None or not 0 <= self._next <= target:
            return True
        # Seek forward when a keyframe lies between the decoder and the target.
        return index.pts is not None and index.keyframe_before(target) > self._next

    def _seek(self, index: _FrameIndex, target: int) -> None:
        if index.pts is None:  # count from the start
            self._open()
            self._frames = enumerate(self.decode())
            self._next = 0
            return
        key = index.keyframe_before(target)
        self.container.seek(index.pts[key], stream=self.stream)
        self._frames = _placed(self.decode(), index)
        self._next = key

    def _decode_to(self, index: _FrameIndex, target: int) -> av.VideoFrame:
        """Decode forward to frame ``target`` (frames before it are not converted)."""
        for position, frame in self._frames:
            self._next = position + 1
            if position == target:
                return frame
            if position > target:
                if index.pts is not None:
                    raise _Unplaceable(f"seek for frame {target} landed on frame {position}")
                break
        self._frames, self._next = None, -1
        raise FrameStoreError(
            f"{self.path}: ends early: frame {target} of {index.count} was never decoded"
        )


def _placed(
    frames: Iterator[av.VideoFrame], index: _FrameIndex
) -> Iterator[tuple[int, av.VideoFrame]]:
    """``(index, frame)`` for decoded frames, each placed by its timestamp."""
    previous: tuple[int, int] | None = None
    for frame in frames:
        position = index.place(frame.pts, previous)
        previous = (frame.pts - index.offset, position)
        yield position, frame


def _timestamp_index(
    packets: list[tuple[int | None, bool]], first_pts: int | None, fps: float
) -> _FrameIndex | None:
    """Index from packet timestamps, or None when they cannot place frames."""
    if first_pts is None or any(pts is None for pts, _ in packets):
        return None
    order = sorted(range(len(packets)), key=lambda i: packets[i][0])
    pts = tuple(packets[i][0] for i in order)
    keyframes = tuple(rank for rank, i in enumerate(order) if packets[i][1])
    if not keyframes or keyframes[0] != 0:
        keyframes = (0, *keyframes)
    return _FrameIndex(len(pts), fps, pts, keyframes, offset=first_pts - pts[0])


def _to_rgb(frame: av.VideoFrame, min_short_side: int | None) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB, downscaled to ``min_short_side`` if set, rotated for display."""
    width, height = frame.width, frame.height
    if min_short_side and min(width, height) > min_short_side:
        scale = min_short_side / min(width, height)
        size = {
            "width": max(min_short_side, round(width * scale)),
            "height": max(min_short_side, round(height * scale)),
        }
        rgb = frame.to_ndarray(format="rgb24", interpolation="AREA", threads=1, **size)
    else:
        rgb = frame.to_ndarray(format="rgb24", threads=1)
    # A copy: to_ndarray is a view of the converted AVFrame, which must not outlive this call.
    return np.array(np.rot90(rgb, round((frame.rotation or 0) / 90) % 4), order="C")


# Readers are opened lazily, at most MAX_OPEN_READERS per process; a forked child never uses,
# closes or frees its parent's readers (see HandlePool).
_pool: HandlePool[_Reader] = HandlePool(_Reader, MAX_OPEN_READERS)


def _reader(path: Path) -> _Reader:
    return _pool.get(path)
