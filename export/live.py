"""Live classification: a camera, a network stream, a pipe or a (growing) file, window by window.

::

    python train_hmdb.py live --source clip.mp4 --checkpoint run/best.pth --realtime
    python train_hmdb.py live --source rtsp://camera/stream --onnx r3d18.int8.onnx --stride 8
    python train_hmdb.py live --source /dev/video0 --onnx r3d18.onnx --render live.mp4 --display
    ffmpeg -i camera.mp4 -f mpegts - | python train_hmdb.py live --source - --onnx r3d18.onnx

Three threads, nothing queued without bound:

- the **reader** decodes the source (PyAV), prepares every frame once (the evaluation
  preprocessing: resize, crop, normalise) and puts it into a :class:`FrameRing` of a fixed size;
  it decodes and prepares on one thread each, leaving the cores to the model (its CPU time per
  stream second is in the summary);
  a file with ``--realtime`` is paced at its own frame rate (how tests simulate a camera);
- the **main thread** runs the model on the newest complete window (``--clip-length`` frames
  ``--rate`` apart, one window every ``--stride`` frames). When the model is slower than the
  stream it skips to the newest window: skipped windows and the frames no window used are
  counted (``dropped_frames``), never queued. A plain file without ``--realtime`` is not live:
  the reader waits for the model instead, so every window is scored;
- with ``--render`` / ``--display``, a **render** thread draws the latest top-k on each frame
  (``export.render``) behind a bounded queue of its own.

Output: one JSON line per window on stdout (``window``, ``frames``, ``time`` in stream seconds,
``top_k``, ``latency_ms`` of the model call, ``delay_ms`` from the moment the window's last frame
was due, i.e. its presentation time on the wall clock for ``--realtime`` and its arrival from the
decoder otherwise, to the line), then a ``{"summary": ...}`` line, also logged for people, at the
end of the stream and on Ctrl-C. A source that cannot be opened is one line and exit code 2; a
stream that fails or stalls mid-way (no data for ``--read-timeout`` seconds: PyAV's ``timeout``
for network sources, a select() deadline on pipes, a watchdog for everything) is one line and
exit code 1, never a hang.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import select
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from export.ort_runtime import OrtClassifier, softmax
from train.validation import device as device_flag
from train.validation import positive_float, positive_int

log = logging.getLogger(__name__)

__all__ = [
    "FrameRing",
    "LiveSummary",
    "Schedule",
    "SourceError",
    "StreamError",
    "TorchClassifier",
    "VideoSource",
    "add_live_arguments",
    "open_classifier",
    "run_command",
    "run_live",
    "warm_up",
    "window_inputs",
]

NETWORK_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://",
                   "srt://")  # fmt: skip
STDIN = "-"
POLL_S = 0.05  # how often blocked waits look at the clock (stall checks, Ctrl-C, stop requests)
# The watchdog waits this much longer than the source's own read timeout, whose message is
# more precise; it catches what has none (a V4L2 device, a decoder that stops delivering).
WATCHDOG_GRACE_S = 2.0
RENDER_QUEUE = 8  # frames waiting for the renderer before the oldest is dropped


class SourceError(ValueError):
    """The source cannot be opened or is not a video (a bad input: exit code 2)."""


class StreamError(RuntimeError):
    """The stream failed or stalled after it had started (exit code 1)."""


# ----------------------------------------------------------------------------- sources
class TimedReader:
    """A file object over a pipe or a growing file whose ``read`` never blocks for longer than
    ``timeout`` seconds: PyAV reads through it, and a writer that stops is a ``TimeoutError``.

    ``follow`` (a growing file): at the end of the file, wait for it to grow; a file that has not
    grown for ``timeout`` seconds has ended.
    """

    def __init__(self, fd: int, timeout: float, *, follow: bool = False, name: str = "") -> None:
        self.fd, self.timeout, self.follow, self.name = fd, timeout, follow, name

    def read(self, size: int = -1) -> bytes:
        size = size if size and size > 0 else 1 << 16
        if self.follow:
            return self._read_growing(size)
        ready, _, _ = select.select([self.fd], [], [], self.timeout)
        if not ready:
            raise TimeoutError(f"no data for {self.timeout:g} s")
        return os.read(self.fd, size)

    def _read_growing(self, size: int) -> bytes:
        deadline = time.monotonic() + self.timeout
        while True:
            data = os.read(self.fd, size)
            if data or time.monotonic() > deadline:
                return data
            time.sleep(POLL_S)


@dataclass
class VideoSource:
    """A video source read with PyAV: ``frames()`` yields ``(seconds, (H, W, 3) uint8 RGB)``.

    ``spec``: a file path, a URL (``rtsp://``, ``http://``, ...), a V4L2 device (``/dev/video0``)
    or ``-`` (standard input: a streamable container such as MPEG-TS, Matroska or NUT).
    """

    spec: str
    timeout: float = 10.0
    follow: bool = False
    format: str | None = None
    options: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.kind = _kind_of(self.spec)
        self.name = "stdin" if self.kind == "pipe" else self.spec
        self._file = None
        self.container = self._open()
        streams = self.container.streams.video
        if not streams:
            self.close()
            raise SourceError(f"{self.name}: no video stream")
        self.stream = streams[0]
        # One decoding thread: FFmpeg's frame threads would add a frame of latency per thread
        # and compete with the model for the cores; 320x240 H.264 costs ~0.5 ms per frame.
        self.stream.codec_context.thread_count = 1
        rate = self.stream.average_rate or self.stream.guessed_rate
        self.fps = float(rate) if rate else 0.0

    @property
    def live(self) -> bool:
        """True when the source runs on its own clock (frames are dropped, not waited for)."""
        return self.kind != "file" or self.follow

    def _open(self) -> Any:
        import av

        kwargs: dict[str, Any] = {"options": dict(self.options)}
        if self.format or self.kind == "device":
            kwargs["format"] = self.format or "v4l2"
        if self.kind == "file" and not Path(self.spec).is_file():
            raise SourceError(f"{self.spec}: no such video file")
        try:
            target = self._target()
            if self.kind == "network":
                kwargs["timeout"] = (self.timeout, self.timeout)
            return av.open(target, mode="r", **kwargs)
        except (av.FFmpegError, OSError, TimeoutError) as error:
            self.close()
            raise SourceError(f"{self.name}: cannot open ({self._reason(error)})") from None

    def _target(self) -> Any:
        if self.kind == "pipe":
            return TimedReader(sys.stdin.fileno(), self.timeout, name=self.name)
        if self.follow:
            self._file = open(self.spec, "rb")  # noqa: SIM115 (closed by close())
            return TimedReader(self._file.fileno(), self.timeout, follow=True, name=self.spec)
        return self.spec

    def frames(self) -> Iterator[tuple[float, np.ndarray]]:
        """Decoded frames in presentation order; a failure is a :class:`StreamError`."""
        import av

        count = 0
        try:
            for frame in self.container.decode(self.stream):
                seconds = frame.time if frame.time is not None else count / (self.fps or 30.0)
                yield float(seconds), frame.to_ndarray(format="rgb24")
                count += 1
        except (av.FFmpegError, OSError, TimeoutError) as error:
            raise StreamError(
                f"{self.name}: stream failed after {count} frames ({self._reason(error)})"
            ) from None

    def _reason(self, error: BaseException) -> str:
        """FFmpeg's words, except for its read timeout: PyAV interrupts the read ("Immediate
        exit requested") once ``timeout`` seconds pass without data."""
        import av

        if isinstance(error, av.error.ExitError):
            return f"no data for {self.timeout:g} s"
        return _reason(error)

    def close(self) -> None:
        container = getattr(self, "container", None)
        if container is not None:
            container.close()
        if self._file is not None:
            self._file.close()


def _kind_of(spec: str) -> str:
    if spec == STDIN:
        return "pipe"
    if spec.lower().startswith(NETWORK_SCHEMES):
        return "network"
    if spec.startswith("/dev/video"):
        return "device"
    return "file"


def _reason(error: BaseException) -> str:
    text = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return " ".join(str(text).split())


# ----------------------------------------------------------------------------- windows
@dataclass(frozen=True)
class Schedule:
    """Windows of ``length`` frames ``rate`` apart, one every ``stride`` frames.

    Window k ends at frame ``span - 1 + k * stride`` (``span = (length - 1) * rate + 1``) and
    holds frames ``end - span + 1 ... end`` step ``rate``.
    """

    length: int
    rate: int = 1
    stride: int = 1

    def __post_init__(self) -> None:
        if min(self.length, self.rate, self.stride) < 1:
            raise ValueError(f"clip length, rate and stride must be >= 1, got {self}")

    @property
    def span(self) -> int:
        return (self.length - 1) * self.rate + 1

    def newest_end(self, newest: int) -> int:
        """The last frame of the newest window complete once frame ``newest`` arrived (-1: none)."""
        if newest < self.span - 1:
            return -1
        return self.span - 1 + (newest - self.span + 1) // self.stride * self.stride

    def indices(self, end: int) -> range:
        return range(end - self.span + 1, end + 1, self.rate)

    def wanted(self, index: int, last: int | None = None) -> bool:
        """Whether frame ``index`` belongs to a window (ending at or before ``last``, if given)."""
        first = max(index, self.span - 1)
        first += (self.span - 1 - first) % self.stride
        stop = index + self.span if last is None else min(index + self.span, last + 1)
        return any((end - index) % self.rate == 0 for end in range(first, stop, self.stride))


@dataclass(eq=False)
class Frame:
    """One frame in the ring: ``data`` is the prepared network frame; ``image`` the RGB picture
    (kept only when rendering); ``due`` the monotonic time it was due (see the module doc)."""

    index: int
    time: float
    due: float
    data: np.ndarray
    used: bool = False


class FrameRing:
    """The frames the reader has delivered and the model may still need, at most ``capacity``.

    ``block=False`` (a live source): a full ring evicts its oldest frame. ``block=True`` (a file
    read as fast as it decodes): the reader waits for the model. A frame that leaves without a
    window having used it, though it belongs to one, is counted in ``dropped``.
    """

    def __init__(
        self, schedule: Schedule, capacity: int | None = None, *, block: bool, name: str = "source"
    ) -> None:
        self.schedule, self.name = schedule, name
        self.capacity = max(capacity or 0, schedule.span + schedule.stride)
        self.block = block
        self.frames: deque[Frame] = deque()
        self.received = self.dropped = self.skipped = 0
        self.reader_cpu_s = self.stream_s = 0.0  # the reader thread's CPU time, stream covered
        self.error: BaseException | None = None
        self.closed = self.stopped = False
        self.last_arrival = time.monotonic()
        self._next_end = schedule.span - 1
        self._cond = threading.Condition()

    def put(self, frame: Frame) -> bool:
        """Add ``frame`` (reader thread); False once the consumer has stopped."""
        with self._cond:
            self._release(self._next_end - self.schedule.span + 1)
            while self.block and len(self.frames) >= self.capacity and not self.stopped:
                self._cond.wait(POLL_S)
                self._release(self._next_end - self.schedule.span + 1)
            if self.stopped:
                return False
            if len(self.frames) >= self.capacity:
                self._evict(self.frames.popleft())
            self.frames.append(frame)
            self.received += 1
            self.last_arrival = time.monotonic()
            self._cond.notify_all()
            return True

    def _release(self, low: int) -> None:
        while self.frames and self.frames[0].index < low:
            self._evict(self.frames.popleft())

    def _evict(self, frame: Frame, last: int | None = None) -> None:
        if not frame.used and self.schedule.wanted(frame.index, last):
            self.dropped += 1

    def finish(self, error: BaseException | None = None) -> None:
        """The reader is done (``error``: how the stream failed)."""
        with self._cond:
            self.closed, self.error = True, error
            self._cond.notify_all()

    def stop(self) -> None:
        """The consumer is done: count the frames left, release a blocked reader."""
        with self._cond:
            self.stopped = True
            last = self.frames[-1].index if self.frames else None
            while self.frames:
                self._evict(self.frames.popleft(), last)
            self._cond.notify_all()

    def next_window(self, timeout: float) -> list[Frame] | None:
        """The frames of the newest complete window not yet run; None at the end of the stream.

        Raises the reader's :class:`StreamError`, or one when no frame arrived for ``timeout``.
        """
        with self._cond:
            while (end := self._newest_end()) < self._next_end:
                if self.closed:
                    if self.error is not None:
                        raise self.error
                    return None
                if time.monotonic() - self.last_arrival > timeout:
                    raise StreamError(f"{self.name}: no frame for {timeout:g} s (stream stalled)")
                self._cond.wait(POLL_S)
            if self.block:  # every window in turn; live: the newest, skipping the others
                end = self._next_end
            self.skipped += (end - self._next_end) // self.schedule.stride
            first = self.frames[0].index
            window = [self.frames[i - first] for i in self.schedule.indices(end)]
            for frame in window:
                frame.used = True
            self._next_end = end + self.schedule.stride
            self._cond.notify_all()
            return window

    def _newest_end(self) -> int:
        return self.schedule.newest_end(self.frames[-1].index) if self.frames else -1


# ----------------------------------------------------------------------------- models
class Classifier(Protocol):
    metadata: dict[str, Any]

    def logits(self, *inputs: np.ndarray) -> np.ndarray: ...

    def label(self, index: int) -> str: ...


class TorchClassifier:
    """A checkpoint's model (``train.checkpoint.load_model``) with the ONNX classifier's face:
    ``logits(*inputs)`` on batched float32 arrays and the same ``metadata`` (labels, input
    shapes, evaluation preprocessing) that export would write."""

    def __init__(self, model: Any, *, family: str, device: str = "cpu") -> None:
        from export.checkpoint_info import input_shape_for, preprocess_for
        from export.metadata import MetadataView
        from network import get_entry

        self.model, self.device = model.to(device).eval(), device
        args = getattr(model, "train_args", None) or {}
        shapes = input_shape_for(family, args, model)
        layout = get_entry(model.network_name).input_layout
        self.metadata = {
            "labels": getattr(model, "class_names", None),
            "preprocess": preprocess_for(family, args, shapes, layout),
            "input_shape": [list(s) for s in shapes],
            "family": family,
        }
        self._view = MetadataView()
        self._view.metadata = self.metadata

    def logits(self, *inputs: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            tensors = [torch.from_numpy(np.ascontiguousarray(x)).to(self.device) for x in inputs]
            return self.model(*tensors).float().cpu().numpy()

    def label(self, index: int) -> str:
        return self._view.label(index)


def open_classifier(
    *,
    family: str,
    checkpoint: str | None = None,
    onnx: str | None = None,
    network: str | None = None,
    threads: int | None = None,
    device: str = "cpu",
    spinning: bool = False,
) -> Classifier:
    """A PyTorch checkpoint or an ONNX file (ONNX Runtime) behind one interface.

    ONNX Runtime's threads do not spin between calls by default (``spinning``): the reader
    needs the cores then, and on 2 busy cores spinning cost r3d_18 INT8 about 100 ms CPU per
    window (795 against 695 ms)."""
    if onnx:
        classifier = OrtClassifier(onnx, threads=threads, spinning=spinning)
        if classifier.family not in (None, family):
            raise ValueError(f"{onnx}: a {classifier.family} model, not {family}")
        return classifier
    import torch

    from train.checkpoint import load_model

    if threads:
        torch.set_num_threads(threads)
    model = load_model(checkpoint, family=family, network=network)
    return TorchClassifier(model, family=family, device=device)


# ----------------------------------------------------------------------------- inputs
@dataclass
class WindowInputs:
    """How frames become network inputs: ``frame`` runs once per frame in the reader thread,
    ``window`` stacks a window's prepared frames into the batched inputs ``(1, ...)``."""

    length: int
    rate: int
    frame: Callable[[np.ndarray], np.ndarray]
    window: Callable[[list[np.ndarray]], list[np.ndarray]]
    blank: np.ndarray  # a source frame of zeros, for the warm-up call


def window_inputs(
    family: str, metadata: dict[str, Any], *, length: int | None = None, rate: int | None = None
) -> WindowInputs:
    """The live inputs of a classifier of ``family`` described by its ``metadata``.

    video: RGB frames ``(H, W, 3)`` -> the evaluation preset per frame ``(C, 1, h, w)`` ->
    ``(1, C, T, h, w)`` (3D) or ``(1, C·T, h, w)`` (2D, channel-major); skeleton: frames
    ``(C, V, M)`` -> ``(1, C, T, V, M)``; gesture: one frame, resized to the input size as
    ``GestureCropDataset`` does, ``x/127.5 - 1``. ``length``/``rate`` replace the model's.
    """
    pre = dict(metadata.get("preprocess") or {})
    shapes = [tuple(s) for s in metadata.get("input_shape", [])]
    picture = np.zeros((240, 320, 3), np.uint8)
    if family == "video":
        if "clip_length" not in pre or "crop_size" not in pre:
            raise ValueError(
                "the model carries no ActRec preprocessing (clip length, crop size, "
                "normalisation): export it with train_hmdb.py export"
            )
        pre["clip_length"] = length or pre["clip_length"]
        pre["sample_rate"] = rate or pre.get("sample_rate", 1)
        return _video_inputs(pre, picture)
    if family == "skeleton":
        channels, frames, joints, persons = shapes[0]
        return WindowInputs(
            length=length or int(frames),
            rate=rate or 1,
            frame=lambda f: np.asarray(f, np.float32),
            window=lambda frames: [np.stack(frames, axis=1)[None]],
            blank=np.zeros((channels, joints, persons), np.float32),
        )
    if family == "gesture":
        frame = _gesture_frame(shapes[0])
        return WindowInputs(1, 1, frame, lambda frames: [frames[0][None]], picture)
    raise ValueError(f"unknown family {family!r}")


def _video_inputs(pre: dict[str, Any], blank: np.ndarray) -> WindowInputs:
    import torch

    from export.inputs import _video_preset

    if pre.get("modality", "rgb") != "rgb":
        raise ValueError("live reads RGB frames; flow and two-stream models need prepared flow")
    preset = _video_preset(pre)
    flat = (pre.get("input_dims") or [3])[0] == 2

    def frame(image: np.ndarray) -> np.ndarray:
        clip = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
        return preset(clip).numpy()  # (C, 1, h, w)

    def window(frames: list[np.ndarray]) -> list[np.ndarray]:
        clip = np.concatenate(frames, axis=1)
        return [(clip.reshape(-1, *clip.shape[2:]) if flat else clip)[None]]

    return WindowInputs(int(pre["clip_length"]), int(pre["sample_rate"]), frame, window, blank)


def _gesture_frame(shape: tuple[int, ...]) -> Callable[[np.ndarray], np.ndarray]:
    import cv2

    channels, height, width = shape

    def frame(image: np.ndarray) -> np.ndarray:
        pixels = cv2.resize(image, (width, height), interpolation=cv2.INTER_CUBIC)
        pixels = pixels.astype(np.float32)
        if channels == 1:
            pixels = (pixels @ np.asarray([0.299, 0.587, 0.114], np.float32))[:, :, None]
        return pixels.transpose(2, 0, 1) / 127.5 - 1.0

    return frame


def warm_up(classifier: Classifier, inputs: WindowInputs) -> None:
    """One call on a blank window: a wrong clip length fails here (one line, exit code 2),
    before the source is opened, and the first real window does not pay the start-up cost."""
    blank = inputs.frame(inputs.blank)
    classifier.logits(*inputs.window([blank] * inputs.length))


# ----------------------------------------------------------------------------- rendering
def display_problem() -> str | None:
    """Why no OpenCV window can be shown here (None when one can)."""
    import cv2

    gui = [line for line in cv2.getBuildInformation().splitlines() if "GUI:" in line]
    if gui and gui[0].split(":", 1)[1].strip().upper() == "NONE":
        return "this OpenCV has no GUI (opencv-python-headless)"
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return "no display ($DISPLAY is not set)"
    return None


class Renderer:
    """Draws the latest top-k on every frame the reader offers (``export.render``) and writes
    them to an mp4 and/or an OpenCV window, in its own thread behind a bounded queue: when
    drawing and encoding fall behind, the oldest waiting frame is dropped (``dropped``)."""

    WINDOW = "ActRec live"

    def __init__(self, path: str | None, *, display: bool, fps: float, block: bool) -> None:
        from export.render import MAX_SIDE, Mp4Writer

        self.writer = Mp4Writer(path, fps or 30.0, max_side=MAX_SIDE) if path else None
        self.display, self.block = display, block
        self.queue: queue.Queue = queue.Queue(maxsize=RENDER_QUEUE)
        self.dropped = 0
        self.error: str | None = None
        self.entries: list[tuple[str, float]] = []
        self._thread = threading.Thread(target=self._run, name="live-render", daemon=True)
        self._thread.start()

    def offer(self, image: np.ndarray, seconds: float) -> None:
        """Queue a frame (reader thread); a full queue loses its oldest frame, or, for a source
        that is not live (``block``), makes the reader wait."""
        if self.block:
            self.queue.put((image, seconds))
            return
        while True:
            try:
                self.queue.put_nowait((image, seconds))
                return
            except queue.Full:
                try:
                    self.queue.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def _run(self) -> None:
        from export.render import draw_topk

        while (item := self.queue.get()) is not None:
            if self.error:
                continue
            image, seconds = item
            try:
                frame = draw_topk(image, list(self.entries), title=f"{seconds:7.2f} s")
                if self.writer is not None:
                    self.writer.write(frame)
                if self.display:
                    self._show(frame)
            except Exception as error:  # a full disk, a closed window: say so once, keep going
                self.error = f"rendering stopped: {_reason(error)}"
                log.warning("%s", self.error)

    def _show(self, frame: np.ndarray) -> None:
        import cv2

        cv2.imshow(self.WINDOW, cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        cv2.waitKey(1)

    def close(self) -> None:
        self.queue.put(None)
        self._thread.join()
        if self.writer is not None:
            self.writer.close()
        if self.display:
            import cv2

            cv2.destroyAllWindows()


# ----------------------------------------------------------------------------- the loop
class FrameSource(Protocol):
    name: str

    @property
    def live(self) -> bool: ...

    def frames(self) -> Iterator[tuple[float, np.ndarray]]: ...

    def close(self) -> None: ...


@dataclass
class LiveSummary:
    """What a live run did. Latencies are the model call; delays from a window's last frame
    being due to its line (``delay_ms_start``/``_end``: median of the first/last quarter of
    the windows, equal when the model keeps up, growing when it does not)."""

    source: str
    end: str
    windows: int = 0
    frames: int = 0
    dropped_frames: int = 0
    skipped_windows: int = 0
    latency_ms_p50: float | None = None
    latency_ms_p95: float | None = None
    delay_ms_p50: float | None = None
    delay_ms_p95: float | None = None
    delay_ms_start: float | None = None
    delay_ms_end: float | None = None
    windows_per_s: float | None = None
    seconds: float = 0.0
    render_dropped: int = 0
    reader_cpu_ms_per_s: float | None = None  # CPU time of the reader thread per stream second
    error: str | None = None

    def line(self) -> str:
        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f}"

        return (
            f"{self.source}: {self.end}; {self.windows} windows in {self.seconds:.1f} s "
            f"({self.windows_per_s or 0:.2f}/s), {self.frames} frames, {self.dropped_frames} "
            f"dropped, {self.skipped_windows} windows skipped; model latency p50 "
            f"{ms(self.latency_ms_p50)} ms p95 {ms(self.latency_ms_p95)} ms; delay p50 "
            f"{ms(self.delay_ms_p50)} ms p95 {ms(self.delay_ms_p95)} ms; reader "
            f"{ms(self.reader_cpu_ms_per_s)} ms CPU per stream second"
        )


def _read_into(
    source: FrameSource,
    ring: FrameRing,
    prepare: Callable[[np.ndarray], np.ndarray],
    *,
    realtime: bool,
    renderer: Renderer | None,
) -> None:
    """The reader thread: frames of ``source``, paced with ``realtime``, prepared, into ``ring``."""
    _one_torch_thread()
    start = first = None
    cpu = time.thread_time()
    try:
        for index, (seconds, image) in enumerate(source.frames()):
            due = time.monotonic()
            if realtime:
                if start is None:
                    start, first = due, seconds
                due = start + (seconds - first)
                while (wait := due - time.monotonic()) > 0 and not ring.stopped:
                    time.sleep(min(wait, POLL_S))
            if renderer is not None:
                renderer.offer(image, seconds)
            data = prepare(image)
            first = seconds if first is None else first
            ring.reader_cpu_s, ring.stream_s = time.thread_time() - cpu, seconds - first
            if not ring.put(Frame(index, seconds, due, data)):
                return
        ring.finish()
    except StreamError as error:
        ring.finish(error)
    except Exception as error:  # preprocessing of a frame the decoder delivered, e.g. too small
        ring.finish(StreamError(f"{source.name}: {_reason(error)}"))


def _one_torch_thread() -> None:
    """Prepare frames on this thread alone: one 320x240 frame is too small to share, and torch's
    OpenMP workers spin against the model's threads (a 2-thread pool cost 7-33 ms CPU per frame
    instead of 0.5 ms on 2 busy cores)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


def _torch_threads() -> int | None:
    """This thread's torch thread count, now fixed for it: torch gives a thread that has not run
    an op yet the count last set anywhere, which the reader is about to set to 1."""
    torch = sys.modules.get("torch")
    return None if torch is None else torch.get_num_threads()


def _restore_torch_threads(count: int | None) -> None:
    """Put back the count that threads started later get (see :func:`_torch_threads`)."""
    if count is not None:
        sys.modules["torch"].set_num_threads(count)


def _percentile(values: Sequence[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if len(values) else None


def _median_quarters(values: Sequence[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    quarter = max(1, len(values) // 4)
    return _percentile(values[:quarter], 50), _percentile(values[-quarter:], 50)


def _record(
    number: int, frames: list[Frame], probs: np.ndarray, classifier: Classifier, top_k: int
) -> dict[str, Any]:
    order = np.argsort(probs)[::-1][:top_k]
    return {
        "window": number,
        "frames": [frames[0].index, frames[-1].index],
        "time": round(frames[-1].time, 3),
        "top_k": [[classifier.label(int(i)), round(float(probs[i]), 4)] for i in order],
    }


def run_live(
    source: FrameSource,
    classifier: Classifier,
    inputs: WindowInputs,
    schedule: Schedule,
    *,
    emit: Callable[[dict[str, Any]], None],
    top_k: int = 3,
    realtime: bool = False,
    timeout: float = 10.0,
    max_windows: int | None = None,
    renderer: Renderer | None = None,
) -> LiveSummary:
    """Classify the newest window of ``source`` until it ends, fails, stalls, ``max_windows``
    windows are done or Ctrl-C; ``emit`` gets one record per window. The source is closed."""
    ring = FrameRing(schedule, block=not (source.live or realtime), name=source.name)
    reader = threading.Thread(
        target=_read_into, args=(source, ring, inputs.frame), name="live-reader", daemon=True,
        kwargs={"realtime": realtime, "renderer": renderer},
    )  # fmt: skip
    latencies: list[float] = []
    delays: list[float] = []
    summary = LiveSummary(source=source.name, end="end of stream")
    started = time.monotonic()
    model_threads = _torch_threads()
    reader.start()
    try:
        while max_windows is None or len(latencies) < max_windows:
            frames = ring.next_window(timeout + WATCHDOG_GRACE_S)
            if frames is None:
                break
            tick = time.perf_counter()
            logits = classifier.logits(*inputs.window([f.data for f in frames]))
            latency = time.perf_counter() - tick
            probs = softmax(logits[0].astype(np.float64))
            record = _record(len(latencies), frames, probs, classifier, top_k)
            if renderer is not None:
                renderer.entries = [tuple(entry) for entry in record["top_k"]]
            latencies.append(1000 * latency)
            delays.append(1000 * (time.monotonic() - frames[-1].due))
            emit(
                {**record, "latency_ms": round(latencies[-1], 2), "delay_ms": round(delays[-1], 2)}
            )
        else:
            summary.end = f"stopped after {max_windows} windows"
    except StreamError as error:
        summary.end, summary.error = "stream failed", str(error)
    except KeyboardInterrupt:
        summary.end = "interrupted (Ctrl-C)"
    finally:
        ring.stop()
        reader.join(timeout=2 * POLL_S + 1)
        if not reader.is_alive():  # never close a container a stuck decoder is still inside
            source.close()
        if renderer is not None:
            renderer.close()
        _restore_torch_threads(model_threads)
    return _summarise(summary, ring, latencies, delays, time.monotonic() - started, renderer)


def _summarise(
    summary: LiveSummary,
    ring: FrameRing,
    latencies: list[float],
    delays: list[float],
    seconds: float,
    renderer: Renderer | None,
) -> LiveSummary:
    summary.windows, summary.frames = len(latencies), ring.received
    summary.dropped_frames, summary.skipped_windows = ring.dropped, ring.skipped
    summary.latency_ms_p50, summary.latency_ms_p95 = (_percentile(latencies, q) for q in (50, 95))
    summary.delay_ms_p50, summary.delay_ms_p95 = (_percentile(delays, q) for q in (50, 95))
    summary.delay_ms_start, summary.delay_ms_end = _median_quarters(delays)
    summary.seconds = round(seconds, 3)
    summary.windows_per_s = round(len(latencies) / seconds, 3) if seconds > 0 else None
    summary.render_dropped = renderer.dropped if renderer is not None else 0
    if ring.stream_s > 0:
        summary.reader_cpu_ms_per_s = round(1000 * ring.reader_cpu_s / ring.stream_s, 2)
    if not latencies and ring.received and summary.error is None:
        summary.end += f" (fewer frames than one window of {ring.schedule.span})"
    return summary


# ----------------------------------------------------------------------------- command
def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def add_live_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``live`` subcommand's flags (the same for every family)."""
    group = parser.add_argument_group("source")
    group.add_argument(
        "--source", required=True,
        help="a video file, an rtsp:// / http:// URL, a V4L2 device (/dev/video0) or - (a "
        "streamable container, e.g. MPEG-TS, on standard input)",
    )  # fmt: skip
    group.add_argument("--realtime", action="store_true",
                       help="pace the source at its own frame rate (a file as a camera)")  # fmt: skip
    group.add_argument("--follow", action="store_true",
                       help="a growing file: wait for more data at its end")  # fmt: skip
    group.add_argument("--read-timeout", type=positive_float, default=10.0,
                       help="seconds without data after which the stream counts as dead")  # fmt: skip
    group.add_argument("--format", default=None, help="container format (e.g. mpegts, v4l2)")
    group.add_argument("--source-option", type=_key_value, action="append", default=[],
                       metavar="KEY=VALUE", help="FFmpeg option, e.g. rtsp_transport=tcp")  # fmt: skip
    model = parser.add_argument_group("model")
    which = model.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", help="a checkpoint (.pth): PyTorch")
    which.add_argument("--onnx", help="an exported ONNX file (FP32 or INT8): ONNX Runtime")
    model.add_argument("--network", default=None, help="a TAO-trained checkpoint's network")
    model.add_argument(
        "--device", type=device_flag, default="cpu", help="PyTorch device (cpu, cuda)"
    )
    model.add_argument("--threads", type=positive_int, default=None, help="intra-op threads")
    windows = parser.add_argument_group("windows and output")
    windows.add_argument("--clip-length", type=positive_int, default=None,
                         help="frames per window (default: the model's)")  # fmt: skip
    windows.add_argument("--rate", type=positive_int, default=None,
                         help="take every n-th frame (default: the model's sample rate)")  # fmt: skip
    windows.add_argument("--stride", type=positive_int, default=None,
                         help="frames between windows (default: half the clip length)")  # fmt: skip
    windows.add_argument("--top-k", type=positive_int, default=3)
    windows.add_argument("--max-windows", type=positive_int, default=None)
    windows.add_argument("--render", default=None, help="write the annotated stream (.mp4)")
    windows.add_argument("--display", action="store_true", help="show an OpenCV window")


def _print_json(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def run_command(args: argparse.Namespace, *, family: str) -> int:
    """``live``: 0 at the end of the stream or on Ctrl-C, 1 when the stream failed or stalled;
    a source or model that cannot be opened raises (one line, exit code 2). Ctrl-C before the
    stream has started (a slow camera or URL) is one line and exit code 130."""
    try:
        classifier = open_classifier(
            family=family, checkpoint=args.checkpoint, onnx=args.onnx, network=args.network,
            threads=args.threads, device=args.device,
        )  # fmt: skip
        inputs = window_inputs(family, classifier.metadata, length=args.clip_length, rate=args.rate)
        warm_up(classifier, inputs)
        source = VideoSource(args.source, timeout=args.read_timeout, follow=args.follow,
                             format=args.format, options=dict(args.source_option))  # fmt: skip
    except KeyboardInterrupt:
        print("live: interrupted before the stream started", file=sys.stderr)
        return 130
    stride = args.stride or max(1, inputs.length // 2)
    summary = run_live(
        source, classifier, inputs, Schedule(inputs.length, inputs.rate, stride),
        emit=_print_json, top_k=args.top_k, realtime=args.realtime, timeout=args.read_timeout,
        max_windows=args.max_windows, renderer=_renderer(args, source),
    )  # fmt: skip
    _print_json({"summary": asdict(summary)})
    log.info("%s", summary.line())
    if summary.error:
        log.error("%s", summary.error)
        return 1
    return 0


def _renderer(args: argparse.Namespace, source: VideoSource) -> Renderer | None:
    """The ``--render`` / ``--display`` thread, if asked for (``--display`` without a display
    says why in one line and goes on without a window)."""
    display = args.display
    if display and (problem := display_problem()):
        print(f"--display: {problem}; continuing without a window", file=sys.stderr)
        display = False
    if not (args.render or display):
        return None
    block = not (source.live or args.realtime)
    return Renderer(args.render, display=display, fps=source.fps, block=block)
