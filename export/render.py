"""Drawing primitives for annotated outputs: top-k class bars on a frame, an H.264 mp4 writer.

Used by ``inference --render``, ``explain`` and ``live``. Frames are RGB ``uint8`` arrays
``(H, W, 3)``; drawing returns a new array and changes pixels only inside the box that
:func:`topk_panel_box` gives, so a caller (or a test) knows exactly what the overlay touched.

    frame = fit_frame(frame, max_side=720)          # long side capped, even sides for H.264
    frame = draw_topk(frame, [("run", 0.81), ("walk", 0.12), ("jump", 0.04)])
    with Mp4Writer("out.mp4", fps=source_fps) as writer:
        writer.write(frame)
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import cv2
import numpy as np

from safeio.text import printable

__all__ = [
    "MAX_SIDE",
    "MIN_SIDE",
    "Mp4Writer",
    "draw_caption",
    "draw_topk",
    "fit_frame",
    "fit_size",
    "frame_rate",
    "output_name",
    "text_scale",
    "topk_panel_box",
    "write_mp4",
]

# Long side of rendered videos unless the caller asks otherwise.
MAX_SIDE = 720
# Bars are sized for a 240-pixel-high frame and scaled with the short side above that.
_BASE_SIDE = 240
MIN_SIDE = _BASE_SIDE  # annotated outputs enlarge smaller sources to this short side
_ROW = 16  # pixels per class row at the base size
_PAD = 4  # margin around the panel and inside it
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_BAR_COLOURS = ((255, 170, 0), (80, 200, 255), (160, 160, 160))  # RGB: first, second, rest
_PANEL_DARKEN = 0.45  # the panel keeps this share of the frame under it


# Bytes of a name before its suffixes ("_gradcam.mp4", "_timeline.png"): file names stop at 255.
_NAME_BYTES = 200


def output_name(name: str) -> str:
    """``name`` (a video's or sequence's, from the user's files) as one printable file name that
    stays inside the output folder: control characters escaped as ``printable`` prints them,
    path separators as ``_``, a bare ``.``/``..`` or empty name prefixed, long names cut."""
    safe = printable(name).replace("/", "_").replace("\\", "_")
    safe = safe.encode("utf-8")[:_NAME_BYTES].decode("utf-8", "ignore")
    return f"_{safe}" if safe.strip(".") == "" else safe


def fit_size(width: int, height: int, max_side: int | None = MAX_SIDE) -> tuple[int, int]:
    """``(width, height)`` scaled so the long side is at most ``max_side``, both sides even.

    H.264 in yuv420p needs even sides; ``None`` keeps the size (rounded down to even).
    """
    if width < 2 or height < 2:
        raise ValueError(f"a frame of {width}x{height} pixels is too small to encode")
    scale = 1.0 if max_side is None else min(1.0, max_side / max(width, height))
    new_w = max(2, round(width * scale) // 2 * 2)
    new_h = max(2, round(height * scale) // 2 * 2)
    return new_w, new_h


def fit_frame(
    frame: np.ndarray, max_side: int | None = MAX_SIDE, *, min_side: int | None = None
) -> np.ndarray:
    """An RGB ``(H, W, 3)`` uint8 frame resized to :func:`fit_size` (a copy only when needed);
    with ``min_side``, a frame whose short side is below it is first enlarged by the smallest
    whole factor that reaches it (so text on small sources stays readable)."""
    frame = _check_frame(frame)
    height, width = frame.shape[:2]
    if min_side and min(height, width) < min_side:
        factor = -(-min_side // min(height, width))
        height, width = height * factor, width * factor
        frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR)
    new_w, new_h = fit_size(width, height, max_side)
    if (new_w, new_h) == (width, height):
        return frame
    return cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_AREA)


def text_scale(height: int, width: int) -> float:
    """Size factor for text and bars: 1 at 320x240 and below, growing with the short side."""
    return max(1.0, min(height, width) / _BASE_SIDE)


def topk_panel_box(height: int, width: int, k: int) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` of the panel :func:`draw_topk` draws (top-left corner, exclusive end)."""
    scale = text_scale(height, width)
    pad, row = round(_PAD * scale), round(_ROW * scale)
    x1 = min(width, pad + max(int(0.55 * width), int(150 * scale)))
    y1 = min(height, pad + k * row + pad)
    return pad, pad, x1, y1


def draw_topk(
    frame: np.ndarray, entries: list[tuple[str, float]], *, title: str | None = None
) -> np.ndarray:
    """A copy of ``frame`` (RGB uint8 ``(H, W, 3)``) with a bar per ``(class name, probability)``.

    The bars sit on a darkened panel in the top-left corner (:func:`topk_panel_box` with
    ``k = len(entries)``, plus one row when ``title`` is given); the bar length is the probability.
    """
    frame = _check_frame(frame).copy()
    rows: list[tuple[str, float | None]] = [(title, None)] if title else []
    rows += [(name, float(p)) for name, p in entries]
    if not rows:
        return frame
    height, width = frame.shape[:2]
    x0, y0, x1, y1 = topk_panel_box(height, width, len(rows))
    region = frame[y0:y1, x0:x1]
    region[:] = (region * _PANEL_DARKEN).astype(np.uint8)
    scale = text_scale(height, width)
    row_h = round(_ROW * scale)
    inner_w = max(1, x1 - x0 - 2 * round(_PAD * scale))
    for i, (name, prob) in enumerate(rows):
        top = y0 + round(_PAD * scale) + i * row_h
        left = x0 + round(_PAD * scale)
        if prob is not None:
            colour = _BAR_COLOURS[min(i - (1 if title else 0), len(_BAR_COLOURS) - 1)]
            bar_w = round(inner_w * min(max(prob, 0.0), 1.0))
            cv2.rectangle(
                region, (left - x0, top - y0 + 1), (left - x0 + bar_w, top - y0 + row_h - 2),
                colour, thickness=-1,
            )  # fmt: skip
            text = f"{prob:4.2f} {name}"
        else:
            text = name
        _put_text(region, text, (left - x0 + 2, top - y0 + row_h - 4), scale, inner_w)
    return frame


def draw_caption(frame: np.ndarray, text: str, *, colour: tuple[int, int, int] = (255, 255, 255)):
    """A copy of ``frame`` with one line of ``text`` on a dark strip along the bottom edge."""
    frame = _check_frame(frame).copy()
    height, width = frame.shape[:2]
    scale = text_scale(height, width)
    strip = round((_ROW + _PAD) * scale)
    region = frame[height - strip :, :]
    region[:] = (region * _PANEL_DARKEN).astype(np.uint8)
    _put_text(
        region, text, (int(_PAD * scale), strip - int(_PAD * scale) - 1), scale, width, colour
    )
    return frame


def _put_text(
    region: np.ndarray,
    text: str,
    origin: tuple[int, int],
    scale: float,
    max_width: int,
    colour: tuple[int, int, int] = (255, 255, 255),
) -> None:
    """White text with a black outline, cut with '…' to fit ``max_width`` pixels."""
    font_scale, thickness = 0.4 * scale, max(1, round(scale))
    text = text.encode("ascii", "replace").decode()  # Hershey fonts draw ASCII only
    while len(text) > 1 and cv2.getTextSize(text, _FONT, font_scale, thickness)[0][0] > max_width:
        text = text[:-2] + "~"
    # the outline: the same strokes shifted one pixel each way (a thicker stroke also widens
    # the Hershey glyph advance, so its letters would drift from the fill's)
    x, y = origin
    for dx, dy in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        cv2.putText(region, text, (x + dx, y + dy), _FONT, font_scale, (0, 0, 0), thickness,
                    cv2.LINE_AA)  # fmt: skip
    cv2.putText(region, text, origin, _FONT, font_scale, colour, thickness, cv2.LINE_AA)


def _check_frame(frame: np.ndarray) -> np.ndarray:
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 frame (H, W, 3), got {frame.dtype} {frame.shape}")
    return np.ascontiguousarray(frame)


def frame_rate(fps: float | Fraction) -> Fraction:
    """A frame rate as the exact fraction a container stores (29.97 -> 30000/1001)."""
    if isinstance(fps, Fraction):
        rate = fps
    else:
        if not np.isfinite(fps) or fps <= 0:
            raise ValueError(f"frame rate must be a positive number, got {fps}")
        rate = Fraction(fps).limit_denominator(1001)
    if rate <= 0:
        raise ValueError(f"frame rate must be positive, got {rate}")
    return rate


class Mp4Writer:
    """H.264 (libx264, yuv420p) mp4 through PyAV: one ``write`` per frame, same rate as the source.

    Every frame must have the size of the first one (after :func:`fit_frame`); ``crf`` is
    libx264's quality (lower is better; 18 is visually lossless).
    """

    def __init__(
        self, path: str | Path, fps: float | Fraction, *, crf: int = 20, max_side: int | None = None
    ) -> None:
        self.path = Path(path)
        self.rate = frame_rate(fps)
        self.crf = crf
        self.max_side = max_side
        self.frames = 0
        self._container: av.container.OutputContainer | None = None
        self._stream: av.VideoStream | None = None
        self._size: tuple[int, int] | None = None

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _open(self, width: int, height: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(self.path), mode="w", format="mp4")
        stream = self._container.add_stream("libx264", rate=self.rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(self.crf), "preset": "veryfast"}
        stream.codec_context.time_base = 1 / self.rate
        self._stream, self._size = stream, (width, height)

    def write(self, frame: np.ndarray) -> None:
        """Encode one RGB uint8 ``(H, W, 3)`` frame (resized to even sides / ``max_side``)."""
        frame = fit_frame(frame, self.max_side)
        height, width = frame.shape[:2]
        if self._size is None:
            self._open(width, height)
        elif (width, height) != self._size:
            raise ValueError(
                f"{self.path}: frame {self.frames} is {width}x{height}, "
                f"the video is {self._size[0]}x{self._size[1]}"
            )
        video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
        video_frame.pts = self.frames
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and close the file (nothing is written for zero frames)."""
        if self._container is None:
            return
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        self._container = None


def write_mp4(
    path: str | Path, frames, fps: float | Fraction, *, max_side: int | None = MAX_SIDE
) -> int:
    """Write an iterable of RGB uint8 frames as H.264 mp4; returns the number of frames written."""
    with Mp4Writer(path, fps, max_side=max_side) as writer:
        for frame in frames:
            writer.write(frame)
    if writer.frames == 0:
        raise ValueError(f"{path}: no frames to write")
    return writer.frames
