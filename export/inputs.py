"""Inputs for deployed classifiers, preprocessed exactly as at evaluation.

Each reader turns one user path into :class:`Item` s (a name and the network inputs, each
``(B, *input_shape)`` float32). What the preprocessing needs (clip length, crop, normalisation,
image size, ...) comes from the ``preprocess`` entry of the ONNX metadata, written by export.

- video: a video file, a frame folder of the TAO layout (``rgb/``, ``u/``, ``v/``), a
  ``frames.db`` directory, a folder of images, or a folder of video files (searched
  recursively, e.g. class folders; an unreadable one is skipped with a warning); modes
  ``center`` and ``conv`` (the sampler and eval preset of evaluation; a video file is read like a
  prepared one, only the clips' frames decoded) and ``stream`` (the TAO stand-alone sample's
  sliding window, RGB).
- skeleton: a ``.npy`` of ``(N, C, T, V, M)`` or ``(C, T, V, M)``, or a deepstream-bodypose-3d JSON.
- gesture: image files, or folders of images.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from export.windows import stream_windows

log = logging.getLogger(__name__)

__all__ = [
    "IMAGE_SUFFIXES",
    "Item",
    "RenderWindows",
    "VideoOptions",
    "read_items",
    "render_windows",
    "video_paths",
    "window_batches",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
VIDEO_MODES = ("center", "conv", "stream")


@dataclass
class Item:
    """Network inputs for one named thing: a video (all its clips), a window, a sequence, an image."""

    name: str
    inputs: list[np.ndarray]
    details: list[str] = field(default_factory=list)  # per batch row, e.g. window frame indices


@dataclass(frozen=True, kw_only=True)
class VideoOptions:
    mode: str = "center"
    num_segments: int = 10
    stride: int = 1


# ----------------------------------------------------------------------------- video
def _video_preset(pre: dict[str, Any]) -> Any:
    from data.video.transforms import ClipEvalPreset

    keys = ("rgb_mean", "rgb_std", "flow_mean", "flow_std")
    return ClipEvalPreset(
        crop_size=tuple(pre["crop_size"]),
        short_side=int(pre.get("short_side", max(pre["crop_size"]))),
        center_crop=bool(pre.get("center_crop", True)),
        **{key: tuple(pre[key]) for key in keys if key in pre},
    )


def _to_network(preset: Any, pre: dict[str, Any], *clips: np.ndarray) -> list[np.ndarray]:
    """``(T, H, W, C)`` or ``(T, H, W)`` uint8 clips -> network inputs ``(C, T, h, w)``/``(C·T, h, w)``."""
    tensors = []
    for clip in clips:
        clip = clip[..., None] if clip.ndim == 3 else clip
        tensors.append(torch.from_numpy(np.ascontiguousarray(clip)).permute(0, 3, 1, 2))
    outputs = preset(*tensors)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    dims = pre.get("input_dims") or [3] * len(outputs)
    return [(o.flatten(0, 1) if d == 2 else o).numpy() for o, d in zip(outputs, dims)]


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path}: unreadable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _frame_iterator(path: Path) -> Iterator[np.ndarray]:
    """RGB frames ``(H, W, 3)`` uint8 of a video file, a frame store or a folder of images."""
    if path.is_file():
        from data.video.ffmpeg_io import iter_frames

        yield from iter_frames(path)
        return
    from data.video.stores import is_complete_video, open_store

    if is_complete_video(path):
        store = open_store(path)
        for index in range(store.num_frames("rgb")):
            yield store.read([index], "rgb")[0]
        return
    files = _image_files(path) if path.is_dir() else []
    if not files:
        raise ValueError(f"{path}: not a video file, a frame folder (rgb/, frames.db) or images")
    for file in files:
        yield _read_rgb(file)


def video_dataset(
    records: Sequence[Any], pre: dict[str, Any], *, mode: str = "center", num_segments: int = 10
) -> Any:
    """The evaluation dataset of prepared videos ``records`` (``data.video.splits.VideoRecord``),
    preprocessed as the ONNX metadata's ``preprocess`` entry ``pre`` says."""
    from data.video.dataset import VideoClipDataset

    return VideoClipDataset(
        records,
        modality=pre.get("modality", "rgb"),
        clip_length=int(pre["clip_length"]),
        flow_clip_length=pre.get("flow_length"),
        sample_rate=int(pre.get("sample_rate", 1)),
        strategy=pre.get("strategy", "consecutive"),
        mode=mode,
        num_segments=num_segments,
        input_dims=int((pre.get("input_dims") or [3])[0]),
        transform=_video_preset(pre),
    )


def _store_dataset(path: Path, pre: dict[str, Any], options: VideoOptions) -> Any:
    """The evaluation dataset itself, over one prepared video (frames.db or rgb/, u/, v/)."""
    from data.video.splits import VideoRecord

    record = VideoRecord(path=path, label=-1, name=path.name)
    return video_dataset([record], pre, mode=options.mode, num_segments=options.num_segments)


def _clip_indices(num_frames: int, pre: dict[str, Any], mode: str, segment: int, segments: int):
    from data.video.samplers import sample_indices

    return sample_indices(
        num_frames,
        clip_length=int(pre["clip_length"]),
        sample_rate=int(pre.get("sample_rate", 1)),
        strategy=pre.get("strategy", "consecutive"),
        mode=mode,
        num_segments=segments,
        segment=segment,
    )


def _store_clips(path: Path, pre: dict[str, Any], options: VideoOptions) -> tuple[list, int]:
    from data.video.stores import open_store

    dataset = _store_dataset(path, pre, options)
    clips = [dataset[k][0] for k in range(len(dataset))]
    clips = [c if isinstance(c, tuple) else (c,) for c in clips]
    stream = "u" if pre.get("modality") == "flow" else "rgb"
    return [torch.stack(parts).numpy() for parts in zip(*clips)], open_store(path).num_frames(
        stream
    )


def _decoded_clips(path: Path, pre: dict[str, Any], options: VideoOptions) -> tuple[list, int]:
    if pre.get("modality", "rgb") != "rgb":
        raise ValueError(f"{path}: flow models need a prepared video (frames.db or u/, v/)")
    frames = np.stack(list(_frame_iterator(path)))
    preset, segments = _video_preset(pre), _segments(options)
    per_clip = [
        _to_network(preset, pre, frames[_clip_indices(len(frames), pre, options.mode, k, segments)])
        for k in range(segments)
    ]
    return [np.stack(parts) for parts in zip(*per_clip)], len(frames)


def _segments(options: VideoOptions) -> int:
    return options.num_segments if options.mode == "conv" else 1


def _video_clips(path: Path, pre: dict[str, Any], options: VideoOptions) -> Iterator[Item]:
    """One item per video: its centre clip, or its ``num_segments`` conv clips.

    Prepared videos and video files go through the evaluation dataset itself (a video file is
    a ``data.video.videofile.VideoFileStore``: only the clips' frames are decoded, resized on the
    fly, so memory follows the clip, not the video); plain image folders (RGB only) through
    the same sampler and eval preset.
    """
    from data.video.stores import is_complete_video
    from data.video.videofile import is_video_file

    prepared = (path.is_dir() and is_complete_video(path)) or is_video_file(path)
    inputs, count = (_store_clips if prepared else _decoded_clips)(path, pre, options)
    segments = _segments(options)
    details = [
        _describe(_clip_indices(count, pre, options.mode, k, segments)) for k in range(segments)
    ]
    yield Item(str(path), inputs, details)


def _describe(indices: np.ndarray) -> str:
    if len(indices) > 1 and np.all(np.diff(indices) == 1):
        return f"[{indices[0]}..{indices[-1]}]"
    return np.array2string(indices, max_line_width=10_000)


def _video_stream(path: Path, pre: dict[str, Any], options: VideoOptions) -> Iterator[Item]:
    """The TAO stand-alone sample: a window of T frames sliding by ``stride``, one item each."""
    if pre.get("modality", "rgb") != "rgb":
        raise ValueError("stream mode reads RGB frames; use center or conv for flow models")
    preset = _video_preset(pre)
    length = int(pre["clip_length"])
    for indices, frames in stream_windows(_frame_iterator(path), length, options.stride):
        inputs = _to_network(preset, pre, frames)
        yield Item(str(path), [x[None] for x in inputs], [_describe(indices)])


def read_video(path: Path, pre: dict[str, Any], options: VideoOptions) -> Iterator[Item]:
    if options.mode not in VIDEO_MODES:
        raise ValueError(f"unknown video mode {options.mode!r}; choose from {VIDEO_MODES}")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such video or frame folder")
    files = _video_files(path)
    if files:
        return _each_video(files, pre, options)
    return _read_one_video(path, pre, options)


def _read_one_video(path: Path, pre: dict[str, Any], options: VideoOptions) -> Iterator[Item]:
    """Items of one video; an unreadable one is a ValueError naming it (one line, exit 2)."""
    from data.video.dataset import VideoReadError
    from data.video.ffmpeg_io import VideoDecodeError
    from data.video.framestore import FrameStoreError

    read = _video_stream if options.mode == "stream" else _video_clips
    try:
        yield from read(path, pre, options)
    except (VideoReadError, FrameStoreError, VideoDecodeError) as error:
        raise ValueError(str(error)) from None


def _video_files(path: Path) -> list[Path]:
    """Video files below a folder that is neither a frame store nor a folder of images."""
    from data.video.stores import is_complete_video
    from data.video.videofile import is_video_file

    if not path.is_dir() or is_complete_video(path) or _image_files(path):
        return []
    return sorted(
        p
        for p in path.rglob("*")
        if is_video_file(p) and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )


def _each_video(files: list[Path], pre: dict[str, Any], options: VideoOptions) -> Iterator[Item]:
    """Items of every file; an unreadable one is named, skipped and counted."""
    failed = 0
    for file in files:
        try:
            yield from _read_one_video(file, pre, options)
        except ValueError as error:
            failed += 1
            log.warning("skipped unreadable video: %s", error)
    if failed:
        log.warning("%d of %d video files unreadable and skipped", failed, len(files))
    if failed == len(files):
        raise ValueError(f"none of the {len(files)} video files could be read")


@dataclass
class RenderWindows:
    """What ``onnx-infer --render`` needs of one video: its frame ``store``, the frame indices
    of each window (W arrays) and the evaluation dataset of those windows (W items, conv mode)."""

    name: str
    store: Any
    windows: list[np.ndarray]
    dataset: Any


def render_windows(path: Path, pre: dict[str, Any], stride: int | None = None) -> RenderWindows:
    """The windows of ``train_hmdb.py inference --render`` for an exported model: conv clips
    whose starts are about ``stride`` frames apart (default: half a window), preprocessed as at
    evaluation (``preprocess`` entry ``pre`` of the ONNX metadata)."""
    from data.video.samplers import sample_indices
    from data.video.splits import video_name
    from data.video.stores import is_complete_video, open_store
    from data.video.videofile import is_video_file
    from export.annotate import window_count

    if not ((path.is_dir() and is_complete_video(path)) or is_video_file(path)):
        raise ValueError(
            f"{path}: --render needs a video file or a prepared video (frames.db, rgb/)"
        )
    store = open_store(path)
    streams = ("rgb",) if pre.get("modality", "rgb") == "rgb" else ("rgb", "u")
    num_frames = min(store.num_frames(s) for s in streams)
    length = max(int(pre["clip_length"]), int(pre.get("flow_length") or 0))
    rate = int(pre.get("sample_rate", 1))
    span = length * rate
    count = window_count(num_frames, span, stride or max(1, span // 2))
    windows = [
        sample_indices(num_frames, clip_length=length, sample_rate=rate,
                       strategy=pre.get("strategy", "consecutive"), mode="conv",
                       num_segments=count, segment=k)
        for k in range(count)
    ]  # fmt: skip
    dataset = _store_dataset(path, pre, VideoOptions(mode="conv", num_segments=count))
    return RenderWindows(video_name(path), store, windows, dataset)


def video_paths(path: Path) -> list[Path]:
    """The videos of an input path: the video files below a folder of them, else the path."""
    return _video_files(path) or [path]


def window_batches(dataset: Any, batch: int = 16) -> Iterator[list[np.ndarray]]:
    """The dataset's items in order, ``batch`` at a time, as network inputs ``(B, *shape)``."""
    from safeio.excluded import ExcludedItem

    for start in range(0, len(dataset), batch):
        clips = []
        for index in range(start, min(len(dataset), start + batch)):
            item = dataset[index]
            if isinstance(item, ExcludedItem):
                raise ValueError(f"{item.name}: {item.reason}")
            clips.append(item[0] if isinstance(item[0], tuple) else (item[0],))
        yield [torch.stack(parts).numpy() for parts in zip(*clips)]


# ----------------------------------------------------------------------------- skeleton
def _skeleton_array(path: Path) -> np.ndarray:
    if path.suffix.lower() == ".json":
        from data.skeleton.convert import convert_deepstream_json

        return convert_deepstream_json(path)
    try:
        array = np.load(path, allow_pickle=False, mmap_mode="r")
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: not a readable .npy skeleton array ({error})") from None
    return array[None] if array.ndim == 4 else array


def read_skeleton(path: Path, pre: dict[str, Any], shape: tuple[int, ...]) -> Iterator[Item]:
    """Every sequence of a ``.npy``/JSON file, zero-padded or cut to the exported T."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such skeleton file")
    array = _skeleton_array(path)
    if array.ndim != 5 or tuple(array.shape[1:2]) + tuple(array.shape[3:]) != (
        shape[0],
        *shape[2:],
    ):
        raise ValueError(
            f"{path}: skeleton array {tuple(array.shape)} does not match (N, {shape[0]}, T, "
            f"{shape[2]}, {shape[3]})"
        )
    length = shape[1]
    fitted = np.zeros((len(array), *shape), np.float32)
    kept = min(length, array.shape[2])
    fitted[:, :, :kept] = array[:, :, :kept]
    for i in range(len(fitted)):
        yield Item(f"{path}[{i}]", [fitted[i : i + 1]])


# ----------------------------------------------------------------------------- gesture
def read_gesture(path: Path, pre: dict[str, Any], shape: tuple[int, ...]) -> Iterator[Item]:
    """Images (a file or a folder), through the evaluation preprocessing of GestureCropDataset."""
    from data.gesture.dataset import GestureCropDataset

    files = _image_files(path) if path.is_dir() else [path]
    if not path.exists() or not files:
        raise FileNotFoundError(f"{path}: no image file or folder of images")
    entries = [
        {"bbox_path": os.path.relpath(f, path.parent if path.is_file() else path)} for f in files
    ]
    dataset = GestureCropDataset(
        entries,
        image_root=path.parent if path.is_file() else path,
        class_names=[],
        image_size=tuple(shape[1:]),
        gray_scale=shape[0] == 1,
    )
    for index, entry in enumerate(dataset.entries):
        inputs, _, _ = dataset[index]
        yield Item(str(dataset.image_root / entry["bbox_path"]), [inputs.numpy()[None]])


def read_items(
    family: str, path: str | Path, metadata: dict[str, Any], video: VideoOptions | None = None
) -> Iterator[Item]:
    """Items of ``path`` for a classifier of ``family`` described by its ONNX ``metadata``."""
    path = Path(path)
    pre = dict(metadata.get("preprocess") or {})
    shapes = [tuple(s) for s in metadata.get("input_shape", [])]
    if family == "video":
        return read_video(path, pre, video or VideoOptions())
    if family == "skeleton":
        return read_skeleton(path, pre, shapes[0])
    if family == "gesture":
        return read_gesture(path, pre, shapes[0])
    raise ValueError(f"unknown family {family!r}")
