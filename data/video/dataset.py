"""Video clip dataset over prepared frame stores (our frames.db, legacy DBs, TAO folders).

Items are ``(inputs, target, sample_id)`` (docs/ARCHITECTURE.md): ``inputs`` is ``(C, T, H, W)``
float for 3D models, ``(C·T, H, W)`` channel-major for 2D models, or an ``(rgb, flow)`` tuple for
``modality="joint"``; ``target`` is the record's label (-1 for inference); ``sample_id`` is the
video's index, so clips and conv segments of one video are averaged together by the evaluator.

Dataset length: ``mode="train"``: videos × ``clips_per_video`` (each item a fresh random clip);
``"center"``: one deterministic clip per video; ``"conv"``: videos × ``num_segments``, item k of a
video is TAO's conv segment k.

``dataset[(index, (T, H, W))]`` returns that clip shape (multigrid): the sample rate is multiplied
by ``clip_length // T`` so a shorter clip spans the same time, and ``(H, W)`` is passed to the
transform as ``size``.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from data.video import samplers
from data.video.framestore import FrameStore
from data.video.gpu_decode import (
    DeviceBatchDecoder,
    EncodedClip,
    EncodedStream,
    collate_encoded,
    read_encoded,
)
from data.video.splits import VideoRecord
from data.video.stores import open_store
from data.video.transforms import BatchFinish, ClipEvalPreset, uint8_layout
from safeio.excluded import ExcludedItem

__all__ = ["MODALITY_STREAMS", "VideoClipDataset", "VideoReadError"]

log = logging.getLogger(__name__)

# What each modality reads: the streams it needs and the frame-count stream that bounds indices.
MODALITY_STREAMS = {"rgb": ("rgb",), "flow": ("flow",), "joint": ("rgb", "flow")}
COUNT_STREAM = {"rgb": "rgb", "flow": "u"}  # the framestore stream that holds each one's frames
DELIVERIES = ("float", "uint8", "encoded")
MAX_SUBSTITUTES = 10  # skip_bad tries this many following videos before giving up


class VideoReadError(RuntimeError):
    """A video's frames could not be read; the message starts with the video directory."""


class VideoClipDataset(Dataset):
    """Clips of prepared videos; see the module docstring for items and lengths.

    Args:
        records: videos (``VideoRecord(path, label, name)``; label -1 when unknown).
        modality: ``"rgb"``, ``"flow"`` (u, v) or ``"joint"`` (both, aligned in time).
        clip_length: frames per clip T (RGB clip length for ``joint``).
        flow_clip_length: flow frames per joint clip (TAO ``of_seq_length``); default T.
        sample_rate: frame step r of ``consecutive`` sampling.
        strategy: ``"consecutive"`` or ``"random_interval"`` (TSN segments).
        mode: ``"train"`` (random), ``"center"`` or ``"conv"`` (``num_segments`` per video).
        input_dims: 3 -> ``(C, T, H, W)``; 2 -> ``(C·T, H, W)`` channel-major.
        transform: a preset from ``data.video.transforms`` (called as ``transform(*clips, size=...)``
            with ``(T, C, H, W)`` uint8 clips); default: normalisation only.
        skip_bad: instead of raising :class:`VideoReadError` (logged and counted in
            ``bad_reads``): ``mode="train"`` reads the next readable video in its place;
            ``"center"``/``"conv"`` return an :class:`~safeio.excluded.ExcludedItem` (evaluation
            never substitutes: the video is left out and counted).
        store_cache_size: open stores kept per process (connections are pooled by framestore).
        deliver: what an item's ``inputs`` are. ``"float"``: the transform's normalised output.
            ``"uint8"`` (CPU path): the preset's cropped, resized, flipped ``(C, T, h, w)`` uint8
            clips, normalised per batch in the main process by ``batch_finisher``; presets with
            photometric augmentation deliver float (their ops finish in the worker).
            ``"encoded"`` (device path): an :class:`~data.video.gpu_decode.EncodedClip` (JPEG bytes and
            the clip's draw) that ``batch_finisher`` decodes and augments on the device.
        exact_decode: decode frames at full size; by default JPEGs are decoded with DCT scaling
            down to the smallest short side the transform's output needs (``decode_short_side``).
    """

    def __init__(
        self,
        records: Sequence[VideoRecord],
        *,
        modality: str = "rgb",
        clip_length: int,
        flow_clip_length: int | None = None,
        sample_rate: int = 1,
        strategy: str = "consecutive",
        mode: str = "train",
        num_segments: int = 10,
        clips_per_video: int = 1,
        input_dims: int = 3,
        transform: Callable | None = None,
        skip_bad: bool = False,
        store_cache_size: int = 256,
        deliver: str = "float",
        exact_decode: bool = False,
    ) -> None:
        _check_choice("modality", modality, MODALITY_STREAMS)
        _check_choice("strategy", strategy, samplers.STRATEGIES)
        _check_choice("mode", mode, samplers.MODES)
        _check_choice("input_dims", input_dims, (2, 3))
        _check_choice("deliver", deliver, DELIVERIES)
        if not records:
            raise ValueError("VideoClipDataset needs at least one video record")
        if min(clip_length, sample_rate, num_segments, clips_per_video) < 1:
            raise ValueError("clip_length, sample_rate, num_segments, clips_per_video must be >= 1")
        self.records = list(records)
        self.modality, self.strategy, self.mode = modality, strategy, mode
        self.clip_length, self.sample_rate = clip_length, sample_rate
        self.flow_clip_length = flow_clip_length or clip_length
        self.num_segments, self.input_dims = num_segments, input_dims
        self.per_video = {"train": clips_per_video, "center": 1, "conv": num_segments}[mode]
        self.transform = transform if transform is not None else ClipEvalPreset(crop_size=None)
        # Spatial views (a multi-crop eval preset's ``num_views``): item k of a video is clip
        # k // views at crop k % views, crops varying fastest as PySlowFast's test views.
        self.views = 1 if mode == "train" else int(getattr(self.transform, "num_views", 1))
        self.per_video *= self.views
        self.skip_bad = skip_bad
        self.store_cache_size = store_cache_size
        self.deliver = _effective_delivery(deliver, self.transform)
        self.exact_decode = exact_decode
        self._bad_reads = multiprocessing.Value("i", 0)
        # damaged packets per video (a video file's decode errors), shared by the workers
        self._decode_errors = multiprocessing.Array("i", len(self.records))
        self._stores: OrderedDict[int, FrameStore] = OrderedDict()
        self._warned: set[int] = set()
        self._rng: np.random.Generator | None = None
        self._rng_seed: int | None = None
        self._decoder: DeviceBatchDecoder | None = None

    def __len__(self) -> int:
        return len(self.records) * self.per_video

    @property
    def decode_errors(self) -> dict[int, int]:
        """``{video index: damaged packets}`` of the videos read so far that had any."""
        return {video: n for video, n in enumerate(self._decode_errors[:]) if n}

    @property
    def bad_reads(self) -> int:
        """Unreadable videos replaced so far, summed over all DataLoader workers."""
        return self._bad_reads.value

    def __getitem__(self, key: int | tuple[int, Sequence[int]]) -> tuple[Tensor | tuple, int, int]:
        index, shape = (key[0], tuple(key[1])) if isinstance(key, (tuple, list)) else (key, None)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        video, k = samplers.split_item_index(index, self.per_video)
        k, view = divmod(k, self.views)
        video, clips = self._read_with_fallback(video, k, shape)
        if isinstance(clips, ExcludedItem):
            return clips
        kwargs = {"size": shape[1:]} if shape else {}
        if self.views > 1:
            kwargs["view"] = view
        return self._inputs(clips, kwargs), int(self.records[video].label), video

    def _inputs(self, clips: tuple, kwargs: dict) -> Tensor | tuple | EncodedClip:
        if self.deliver == "encoded":
            return EncodedClip(clips, self.transform.draw(*clips[0].size(), **kwargs))
        if self.deliver == "uint8":
            outputs = tuple(uint8_layout(c) for c in self.transform(*clips, **kwargs, finish=False))
            return outputs if len(outputs) > 1 else outputs[0]
        outputs = self.transform(*clips, **kwargs)
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        inputs = tuple(self._layout(o) for o in outputs)
        return inputs if len(inputs) > 1 else inputs[0]

    @property
    def batch_finisher(self) -> Callable | None:
        """What the main process applies to each collated batch (``train.loaders``), or None:
        a ``BatchFinish`` for ``deliver="uint8"``, a ``DeviceBatchDecoder`` for ``"encoded"``."""
        if self.deliver == "uint8":
            return BatchFinish(self.transform, input_dims=self.input_dims)
        if self.deliver == "encoded":
            if self._decoder is None:
                self._decoder = DeviceBatchDecoder(self.transform, input_dims=self.input_dims)
            return self._decoder
        return None

    @property
    def collate_fn(self) -> Callable | None:
        """The collate function items need (None: PyTorch's default)."""
        return collate_encoded if self.deliver == "encoded" else None

    # ------------------------------------------------------------------ reading
    def _read_with_fallback(
        self, video: int, k: int, shape
    ) -> tuple[int, tuple[Tensor, ...] | ExcludedItem]:
        """(the video read, its clips). Training reads the next video when one is unreadable (up
        to ``MAX_SUBSTITUTES``); evaluation has no substitute: the video is excluded and counted."""
        substitutes = min(MAX_SUBSTITUTES, len(self.records) - 1) if self.mode == "train" else 0
        for step in range(substitutes + 1):
            other = (video + step) % len(self.records)
            try:
                return other, self.read_clip(other, k, shape)
            except VideoReadError as exc:
                if not self.skip_bad:
                    raise
                self._count_bad(other, exc)
                error = str(exc)
        if self.mode != "train":
            return video, ExcludedItem(video, self.records[video].name, error)
        raise VideoReadError(f"{self.records[video].path}: unreadable and no readable substitute")

    def _count_bad(self, video: int, exc: Exception) -> None:
        with self._bad_reads.get_lock():
            self._bad_reads.value += 1
        if video not in self._warned:
            self._warned.add(video)
            action = "substituting the next one" if self.mode == "train" else "excluded"
            log.warning("skipping unreadable video (%s): %s", action, exc)

    def read_clip(self, video: int, k: int = 0, shape=None) -> tuple[Tensor, ...]:
        """The uint8 ``(T, C, H, W)`` clip(s) of item ``k`` of ``video``: (rgb,), (flow,) or both."""
        record = self.records[video]
        try:
            store = self._store(video)
            clips = self._sample_and_read(store, k, shape)
            errors = getattr(store, "decode_errors", 0)  # video files count damaged packets
            if errors > self._decode_errors[video]:
                self._decode_errors[video] = errors
            return clips
        except VideoReadError:
            raise
        except Exception as exc:
            raise VideoReadError(
                f"{record.path}: cannot read a {self.modality} clip: {exc}"
            ) from exc

    def _sample_and_read(self, store: FrameStore, k: int, shape) -> tuple[Tensor, ...]:
        rgb_length, flow_length, rate = self._clip_params(shape)
        streams = MODALITY_STREAMS[self.modality]
        counts = {s: store.num_frames(COUNT_STREAM[s]) for s in streams}
        num_frames = min(counts[s] for s in streams)  # flow has N - 1 frames: the common range
        if num_frames < 1:
            missing = [s for s in streams if counts[s] < 1]
            raise VideoReadError(f"{store.video_dir}: no {'/'.join(missing)} frames")
        lengths = {"rgb": rgb_length, "flow": flow_length}
        long_stream = max(streams, key=lambda s: lengths[s])
        long_indices = self._indices(num_frames, lengths[long_stream], rate, k)
        clips = []
        for stream in streams:
            indices = long_indices
            if lengths[stream] != lengths[long_stream]:
                indices = samplers.joint_indices(
                    long_indices,
                    lengths[stream],
                    strategy=self.strategy,
                    train=self.mode == "train",
                    rng=self._generator() if self.mode == "train" else None,
                )
            clips.append(self._read_stream(store, stream, indices, shape))
        return tuple(clips)

    def _read_stream(
        self, store: FrameStore, stream: str, indices: np.ndarray, shape
    ) -> Tensor | EncodedStream:
        if self.deliver == "encoded":
            return read_encoded(store, stream, indices)
        min_short_side = None
        if not self.exact_decode and hasattr(self.transform, "decode_short_side"):
            min_short_side = self.transform.decode_short_side(shape[1:] if shape else None)
        return _read_stream(store, stream, indices, min_short_side)

    def _clip_params(self, shape) -> tuple[int, int, int]:
        if shape is None:
            return self.clip_length, self.flow_clip_length, self.sample_rate
        length = int(shape[0])
        rate = self.sample_rate * max(1, self.clip_length // length)
        flow_length = max(1, self.flow_clip_length * length // self.clip_length)
        return length, flow_length, rate

    def _indices(self, num_frames: int, length: int, rate: int, k: int) -> np.ndarray:
        return samplers.sample_indices(
            num_frames,
            clip_length=length,
            sample_rate=rate,
            strategy=self.strategy,
            mode=self.mode,
            num_segments=self.num_segments,
            segment=k,
            rng=self._generator() if self.mode == "train" else None,
        )

    def _generator(self) -> np.random.Generator:
        # torch.initial_seed() differs per DataLoader worker and epoch: re-seed when it changes
        seed = torch.initial_seed()
        if self._rng is None or seed != self._rng_seed:
            self._rng, self._rng_seed = samplers.worker_generator(), seed
        return self._rng

    def _store(self, video: int) -> FrameStore:
        store = self._stores.get(video)
        if store is None:
            store = self.open_video(video)
            self._stores[video] = store
            if len(self._stores) > self.store_cache_size:
                self._stores.popitem(last=False)
        else:
            self._stores.move_to_end(video)
        return store

    def open_video(self, video: int) -> FrameStore:
        """The frame store of ``records[video]``; override to read frames from elsewhere."""
        return open_store(self.records[video].path)

    # ------------------------------------------------------------------ output layout
    def _layout(self, clip: Tensor) -> Tensor:
        if self.input_dims == 3:
            return clip
        if not clip.is_floating_point() or clip.dim() != 4:
            raise ValueError(
                f"input_dims=2 stacks a (C, T, H, W) float clip, the transform gave {clip.dtype} "
                f"{tuple(clip.shape)}; with a device-side BatchAugment set input_dims there"
            )
        return clip.flatten(0, 1)  # (C, T, H, W) -> (C·T, H, W): all of R, then G, then B


def _read_stream(
    store: FrameStore, stream: str, indices: np.ndarray, min_short_side: int | None = None
) -> Tensor:
    """``(T, 3, H, W)`` uint8 RGB, or ``(T, 2, H, W)`` uint8 flow (u, v); ``min_short_side`` as
    in ``FrameStore.read`` (the frames may come downscaled, never below it)."""
    if stream == "rgb":
        frames = store.read(indices, "rgb", min_short_side=min_short_side)
        return torch.from_numpy(frames).permute(0, 3, 1, 2)
    u, v = (store.read(indices, s, min_short_side=min_short_side) for s in ("u", "v"))
    return torch.from_numpy(np.stack((u, v), axis=1))


def _effective_delivery(deliver: str, transform) -> str:
    if deliver == "float":
        return deliver
    if not hasattr(transform, "draw"):
        raise ValueError(
            f"deliver={deliver!r} needs a preset from data.video.transforms, got {transform!r}"
        )
    if deliver == "uint8" and getattr(transform, "srtg", None) is not None:
        return "float"  # photometric ops draw per clip: they finish in the worker
    return deliver


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose from {tuple(choices)}")
