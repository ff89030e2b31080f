"""The device path of the clip loader: workers hand over JPEG bytes, the main process decodes and
augments whole batches on the device.

A worker reads a clip's frames as stored (``FrameStore.read_encoded``), draws the clip's crop,
flip and photometric parameters once (``preset.draw`` on the size in the JPEG header) and returns
an :class:`EncodedClip`. :class:`DeviceBatchDecoder` then, in the main process, decodes every
frame of the batch in one ``torchvision.io.decode_jpeg(list, device=...)`` call (nvJPEG on CUDA;
libjpeg-turbo with ``device="cpu"``, which is how the tests run it) and hands the frames to
:func:`data.video.transforms.augment_batch`: crop+resize, flip, colour ops and normalisation vectorised
over the clips.

Stores that decode themselves (``FrameStore.encoded`` False, e.g. raw video files) and images
that are not JPEG (TAO PNG folders) are decoded in the worker as on the CPU path and travel as
uint8 frames. A JPEG the device cannot decode is named (video, frame) in the log and decoded on
the CPU instead; when the CPU cannot decode it either, the clip is dropped from its batch and
counted in ``skipped``; nothing raises mid-epoch.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import default_collate

from data.video.framestore import FrameStore, FrameStoreError, decode_frames, jpeg_size
from data.video.transforms import ClipDraw, augment_batch, to_input_dims

__all__ = ["DeviceBatchDecoder", "EncodedClip", "EncodedStream", "collate_encoded", "read_encoded"]

log = logging.getLogger(__name__)

JPEG_MAGIC = b"\xff\xd8"
# the framestore streams behind each clip stream, in channel order
PARTS = {"rgb": ("rgb",), "flow": ("u", "v")}


@dataclass
class EncodedStream:
    """One stream of a clip: per part (rgb; or u, v) the T JPEGs, or ``frames`` decoded already.

    ``frames`` is ``(T, C, H, W)`` uint8 when the worker had to decode (no JPEG bytes).
    ``indices`` and ``where`` name the frames in error messages.
    """

    stream: str
    jpegs: tuple[list[bytes], ...] = ()
    frames: Tensor | None = None
    indices: tuple[int, ...] = ()
    where: str = ""

    def size(self) -> tuple[int, int]:
        if self.frames is not None:
            return tuple(self.frames.shape[-2:])
        return jpeg_size(self.jpegs[0][0])


@dataclass
class EncodedClip:
    """A clip as a worker hands it over: its streams and its one draw."""

    streams: tuple[EncodedStream, ...]
    draw: ClipDraw


def read_encoded(store: FrameStore, stream: str, indices: np.ndarray) -> EncodedStream:
    """A clip stream's bytes (or, for non-JPEG or self-decoding stores, its uint8 frames)."""
    indices = [int(i) for i in indices]
    where = str(store.video_dir)
    if store.encoded:
        jpegs = tuple(store.read_encoded(indices, part) for part in PARTS[stream])
        if all(data[:2] == JPEG_MAGIC for part in jpegs for data in part):
            return EncodedStream(stream, jpegs=jpegs, indices=tuple(indices), where=where)
    frames = [store.read(indices, part) for part in PARTS[stream]]
    clip = frames[0].transpose(0, 3, 1, 2) if stream == "rgb" else np.stack(frames, axis=1)
    return EncodedStream(stream, frames=torch.from_numpy(np.ascontiguousarray(clip)), where=where)


def collate_encoded(items: Sequence[tuple]) -> tuple[list[EncodedClip], Tensor, Tensor]:
    """``[(EncodedClip, target, sample_id), ...]`` -> ``(clips, targets, sample_ids)``."""
    clips = [item[0] for item in items]
    rest = default_collate([item[1:] for item in items])
    return clips, rest[0], rest[1]


class DeviceBatchDecoder:
    """``(list[EncodedClip], targets, ids)`` -> ``(inputs, targets, ids)`` on ``device``.

    ``inputs`` as the CPU path gives them: ``(N, C, T, h, w)`` float (``(N, C·T, h, w)`` with
    ``input_dims=2``), a tuple for joint clips. Returns the finished batch (None when every clip
    was dropped) and the dropped clips as ``(sample_id, video, reason)``.
    """

    def __init__(self, preset, *, input_dims: int = 3) -> None:
        self.preset, self.input_dims = preset, input_dims
        self.skipped = 0  # clips dropped because no decoder could read a frame

    def finish_batch(self, batch: tuple, device: torch.device | str) -> tuple[tuple | None, list]:
        clips, targets, ids = batch
        device = torch.device(device)
        decoded = [self._decode_stream(clips, s, device) for s in range(len(clips[0].streams))]
        dropped = sorted(set().union(*(bad for _, bad in decoded)))
        keep = [n for n in range(len(clips)) if n not in dropped]
        lost = [
            (int(ids[n]), clips[n].streams[0].where, decoded_reason(decoded, n)) for n in dropped
        ]
        if not keep:
            return None, lost
        draws = [clips[n].draw for n in keep]
        outputs = tuple(
            to_input_dims(
                augment_batch(self.preset, [frames[n] for n in keep], draws), self.input_dims
            )
            for frames, _ in decoded
        )
        keep_t = torch.tensor(keep)
        inputs = outputs[0] if len(outputs) == 1 else outputs
        return (inputs, targets[keep_t].to(device), ids[keep_t]), lost

    def _decode_stream(
        self, clips: Sequence[EncodedClip], s: int, device: torch.device
    ) -> tuple[dict[int, Tensor], dict[int, str]]:
        """Clip n's stream ``s`` as ``(T, C, H, W)`` uint8 on ``device``; undecodable clips with
        their reason in the second dict."""
        frames: dict[int, Tensor] = {}
        bad: dict[int, str] = {}
        pending = []
        for n, clip in enumerate(clips):
            stream = clip.streams[s]
            if stream.frames is not None:
                frames[n] = stream.frames.to(device, non_blocking=True)
            else:
                pending.append(n)
        if not pending:
            return frames, bad
        gray = clips[pending[0]].streams[s].stream == "flow"
        flat = [
            torch.frombuffer(bytearray(data), dtype=torch.uint8)
            for n in pending
            for part in clips[n].streams[s].jpegs
            for data in part
        ]
        try:
            images = _decode_jpegs(flat, device, gray)
        except RuntimeError:
            images = None  # one bad frame fails the call: decode clip by clip to find it
        offset = 0
        for n in pending:
            stream = clips[n].streams[s]
            count = sum(len(part) for part in stream.jpegs)
            if images is not None:
                frames[n] = _assemble(images[offset : offset + count], stream)
            else:
                clip_frames, reason = self._decode_one(stream, device, gray)
                if clip_frames is None:
                    bad[n] = reason
                else:
                    frames[n] = clip_frames
            offset += count
        return frames, bad

    def _decode_one(
        self, stream: EncodedStream, device: torch.device, gray: bool
    ) -> tuple[Tensor | None, str]:
        flat = [
            torch.frombuffer(bytearray(d), dtype=torch.uint8) for part in stream.jpegs for d in part
        ]
        try:
            return _assemble(_decode_jpegs(flat, device, gray), stream), ""
        except RuntimeError as exc:
            frame = _first_bad_frame(flat, device, gray, stream)
            log.warning(
                "%s: %s frame %s failed to decode on %s (%s); decoding the clip on the CPU",
                stream.where,
                stream.stream,
                frame,
                device,
                str(exc).splitlines()[0],
            )
        try:
            parts = [
                decode_frames(part, name, names=stream.indices, where=stream.where)
                for part, name in zip(stream.jpegs, PARTS[stream.stream])
            ]
        except FrameStoreError as exc:
            self.skipped += 1
            log.warning("%s; clip skipped (%d so far)", exc, self.skipped)
            return None, str(exc)
        clip = parts[0].transpose(0, 3, 1, 2) if stream.stream == "rgb" else np.stack(parts, 1)
        return torch.from_numpy(np.ascontiguousarray(clip)).to(device), ""


def decoded_reason(decoded: list[tuple[dict, dict]], n: int) -> str:
    return "; ".join(bad[n] for _, bad in decoded if n in bad)


def _decode_jpegs(data: list[Tensor], device: torch.device, gray: bool) -> list[Tensor]:
    from torchvision.io import ImageReadMode, decode_jpeg

    mode = ImageReadMode.GRAY if gray else ImageReadMode.RGB
    with warnings.catch_warnings():
        # torchvision 0.29 deprecates its image codecs for TorchCodec (another dependency);
        # decode_jpeg(list, device=...) works alike from 0.19 to 0.29: a list in, a list out
        warnings.filterwarnings("ignore", "The image decoding", DeprecationWarning)
        return decode_jpeg(data, mode=mode, device=device)


def _assemble(images: Sequence[Tensor], stream: EncodedStream) -> Tensor:
    """Decoded ``(C, H, W)`` images of all parts -> ``(T, C_total, H, W)``."""
    t = len(stream.jpegs[0])
    parts = [torch.stack(list(images[k * t : (k + 1) * t])) for k in range(len(stream.jpegs))]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def _first_bad_frame(flat: list[Tensor], device, gray: bool, stream: EncodedStream) -> str:
    t = len(stream.jpegs[0])
    for k, data in enumerate(flat):
        try:
            _decode_jpegs([data], device, gray)
        except RuntimeError:
            part = PARTS[stream.stream][k // t]
            index = stream.indices[k % t] if stream.indices else k % t
            return f"{index}" if part == "rgb" else f"{part} {index}"
    return "?"
