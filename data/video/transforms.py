"""Clip augmentation presets: ``(T, C, H, W)`` uint8 clips in, normalised ``(C, T, H, W)`` float out.

Every random parameter (crop box, flip, each photometric op) is drawn ONCE per clip and applied to
all its frames, and to both streams of a joint clip, with the torchvision.transforms.v2 kernels
(which treat the leading T dimension as a batch). The modality of a clip follows from its channel
count: 3 is RGB, 2 is optical flow (u, v as uint8 around 128).

    train = ClipTrainPreset(crop_size=112, short_side=128, crop_type="random_crop", srtg=True)
    x = train(rgb_clip)                 # (3, T, 112, 112) float
    rgb, flow = train(rgb_clip, flow_clip)  # one draw for both streams

``BatchAugment`` runs the same presets on a collated ``(N, T, C, H, W)`` uint8 batch on any
device, for machines whose CPU cores cannot keep up with the augmentation.

Random draws use torch's global generator, which the DataLoader seeds per worker and epoch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as nnf
from torch import Tensor
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

__all__ = [
    "CROP_OFFSETS",
    "CROP_TYPES",
    "SRTG_OPS",
    "BatchAugment",
    "BatchFinish",
    "ClipDraw",
    "ClipEvalPreset",
    "ClipThreeCropPreset",
    "ClipTrainPreset",
    "SRTGAugment",
    "UInt8ResizePreset",
    "augment_batch",
    "hflip_clip",
    "modality_of",
    "uint8_layout",
]

MODALITY_BY_CHANNELS = {3: "rgb", 2: "flow"}
Box = tuple[int, int, int, int]  # (top, left, height, width) in source pixels
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FLOW_MEAN = (0.5,)
FLOW_STD = (0.5,)

# TAO multi_scale_crop offsets in quarters of the free space (x, y): 4 corners, centre,
# 4 edge midpoints, 4 quarter points.
CROP_OFFSETS = (
    (0, 0), (4, 0), (0, 4), (4, 4), (2, 2),
    (0, 2), (4, 2), (2, 4), (2, 0),
    (1, 1), (3, 1), (1, 3), (3, 3),
)  # fmt: skip
SNAP_PX = 3  # TAO snaps a multi-scale crop side to the output size when within 3 px

# SRTG augmentation ranges (shared/reference/video.md B4 and the README list), on [0, 1] pixels.
BLUR_SIGMAS = (0.1, 0.2, 0.3)
CHANNEL_ADD = (-5, 15)  # in uint8 steps, inclusive
NOISE_STD = 0.03  # the SRTG code's 0.03·255; the README's 0.3·255 would bury the frame
COLOUR_FACTOR = (1.2, 1.6)
MOTION_KERNELS = (3, 5, 7)
HUE_SAT_ADD = (-16, 16)  # in uint8 steps of hue and saturation, inclusive
CONTRAST = (0.85, 1.115)
PERSPECTIVE_SCALE = (0.02, 0.05)
ROTATION_DEG = 10.0


def modality_of(clip: Tensor) -> str:
    """``"rgb"`` or ``"flow"`` from the channel dimension of a ``(T, C, H, W)`` clip."""
    if clip.dim() != 4 or clip.shape[1] not in MODALITY_BY_CHANNELS:
        raise ValueError(f"expected a (T, C, H, W) clip with C = 3 or 2, got {tuple(clip.shape)}")
    return MODALITY_BY_CHANNELS[clip.shape[1]]


def hflip_clip(clip: Tensor, modality: str) -> Tensor:
    """Mirror a ``(T, C, H, W)`` uint8 clip; on flow also negate u (TAO forgets it, bug 33).

    The stored u is ``trunc(fx·k + 128)``, so the bin of ``-fx`` is ``255 - u``; this is exact
    negation after the flow normalisation ``(u/255 - 0.5)/0.5``.
    """
    flipped = F.horizontal_flip(clip)
    if modality != "flow":
        return flipped
    return torch.cat((255 - flipped[:, :1], flipped[:, 1:]), dim=1)


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand(()))


def _randint(low: int, high: int, size: Sequence[int] = ()) -> Tensor:
    return torch.randint(low, high + 1, tuple(size))


def _choice(values: Sequence):
    return values[int(torch.randint(len(values), ()))]


# ----------------------------------------------------------------------------- crop boxes
# TAO defines its crops on the frame
# resized to `short_side`; we compute them there and map the box back, so each clip is
# interpolated once.


def _virtual_size(height: int, width: int, short_side: int) -> tuple[int, int, float]:
    scale = short_side / min(height, width)
    return round(height * scale), round(width * scale), scale


def _to_source(top: int, left: int, h: int, w: int, scale: float, height: int, width: int) -> Box:
    top, left = min(round(top / scale), height - 1), min(round(left / scale), width - 1)
    h, w = max(1, min(round(h / scale), height - top)), max(1, min(round(w / scale), width - left))
    return top, left, h, w


def random_crop_box(height: int, width: int, out_hw: Sequence[int], short_side: int, scales) -> Box:
    """TAO random_crop: short side -> ``short_side``, then one random ``out_hw`` window."""
    vh, vw, scale = _virtual_size(height, width, short_side)
    top = int(_randint(0, max(vh - out_hw[0], 0)))
    left = int(_randint(0, max(vw - out_hw[1], 0)))
    return _to_source(top, left, out_hw[0], out_hw[1], scale, height, width)


def multi_scale_crop_box(
    height: int, width: int, out_hw: Sequence[int], short_side: int, scales
) -> Box:
    """TAO multi_scale_crop: a square of ``int(min side · s)`` at one of the 13 fixed offsets."""
    vh, vw, scale = _virtual_size(height, width, short_side)
    side = int(min(vh, vw) * _choice(scales))
    crop_h = out_hw[0] if abs(side - out_hw[0]) < SNAP_PX else side
    crop_w = out_hw[1] if abs(side - out_hw[1]) < SNAP_PX else side
    crop_h, crop_w = min(crop_h, vh), min(crop_w, vw)
    off_x, off_y = _choice(CROP_OFFSETS)
    top, left = off_y * ((vh - crop_h) // 4), off_x * ((vw - crop_w) // 4)
    return _to_source(top, left, crop_h, crop_w, scale, height, width)


def center_crop_box(height: int, width: int, out_hw: Sequence[int], short_side: int, scales=()):
    """Evaluation: short side -> ``short_side``, then the centre ``out_hw`` window."""
    vh, vw, scale = _virtual_size(height, width, short_side)
    top, left = round((vh - out_hw[0]) / 2), round((vw - out_hw[1]) / 2)
    return _to_source(max(top, 0), max(left, 0), out_hw[0], out_hw[1], scale, height, width)


def full_frame_box(height: int, width: int, out_hw: Sequence[int], short_side: int, scales=()):
    """TAO no_crop: the whole frame, squashed to ``out_hw`` (aspect ratio not kept)."""
    return 0, 0, height, width


CROP_TYPES = {
    "random_crop": random_crop_box,
    "multi_scale_crop": multi_scale_crop_box,
    "no_crop": full_frame_box,
}


# ----------------------------------------------------------------------------- SRTG set
# Each op draws its parameters once per clip (``draw(height, width)``) and applies them to every
# frame of a ``(T, 3, H, W)`` float clip in [0, 1] (``apply``); calling the op does both.
# ``apply_batch`` applies per-clip draws to a ``(N, T, 3, H, W)`` batch: the colour ops in one
# vectorised pass, the filters and warps (whose kernels differ per clip) clip by clip.


class _SRTGOp:
    """One SRTG op: ``op(clip)`` == ``op.apply(clip, op.draw(H, W))``."""

    def __init__(self, name: str, draw, apply, apply_batch=None) -> None:
        self.__name__ = name
        self.draw, self.apply, self._apply_batch = draw, apply, apply_batch

    def __repr__(self) -> str:
        return self.__name__

    def __call__(self, clip: Tensor) -> Tensor:
        return self.apply(clip, self.draw(*clip.shape[-2:]))

    def apply_batch(self, batch: Tensor, draws: Sequence) -> Tensor:
        """``draws[n]`` is clip n's draw (the op is applied to every clip of ``batch``)."""
        if self._apply_batch is not None:
            return self._apply_batch(batch, draws)
        return torch.stack([self.apply(clip, d) for clip, d in zip(batch, draws)])


def _per_clip(values: Sequence, like: Tensor) -> Tensor:
    """Per-clip scalars or vectors as a tensor broadcasting over ``(N, T, C, H, W)``."""
    tensor = torch.stack([torch.as_tensor(v, dtype=torch.float32) for v in values]).to(like)
    return (
        tensor.view(len(values), 1, -1, 1, 1) if tensor.dim() == 2 else tensor.view(-1, 1, 1, 1, 1)
    )


def _blur_apply(clip: Tensor, sigma: float) -> Tensor:
    return F.gaussian_blur(clip, kernel_size=[3, 3], sigma=[sigma, sigma])


def _channel_add_draw(height: int, width: int) -> Tensor:
    return _randint(*CHANNEL_ADD, size=(3,)).float() / 255


def _noise_draw(height: int, width: int) -> Tensor:
    # one noise field for every frame and channel, as imgaug's per-video deterministic draw
    return torch.randn((1, 1, height, width))


def _saturate(images: Tensor, factor: Tensor | float) -> Tensor:
    """torchvision's ``adjust_saturation`` blend with a per-clip ``factor``."""
    gray = F.rgb_to_grayscale(images)
    return (factor * images + (1 - factor) * gray).clamp(0, 1)


def _line_kernel(size: int, angle_deg: float) -> Tensor:
    kernel = torch.zeros(size, size)
    centre = (size - 1) / 2
    steps = torch.linspace(-centre, centre, 4 * size)
    rad = math.radians(angle_deg)
    cols = (centre + steps * math.cos(rad)).round().long().clamp(0, size - 1)
    rows = (centre - steps * math.sin(rad)).round().long().clamp(0, size - 1)
    kernel[rows, cols] = 1.0
    return kernel / kernel.sum()


def _motion_draw(height: int, width: int) -> tuple[int, float]:
    return _choice(MOTION_KERNELS), _uniform(0.0, 360.0)


def _motion_apply(clip: Tensor, draw: tuple[int, float]) -> Tensor:
    size, angle = draw
    kernel = _line_kernel(size, angle).to(clip)[None, None]
    t, c, h, w = clip.shape
    padded = nnf.pad(clip.reshape(t * c, 1, h, w), [size // 2] * 4, mode="replicate")
    return nnf.conv2d(padded, kernel).reshape(t, c, h, w)


def _rgb_to_hsv(clip: Tensor) -> Tensor:
    red, green, blue = clip.unbind(-3)
    value, argmax = clip.max(dim=-3)
    delta = value - clip.min(dim=-3).values
    saturation = delta / value.clamp_min(1e-8)
    safe = delta.clamp_min(1e-8)
    hue = (
        torch.stack(
            ((green - blue) / safe, 2 + (blue - red) / safe, 4 + (red - green) / safe), dim=-3
        )
        .gather(-3, argmax.unsqueeze(-3))
        .squeeze(-3)
    )
    hue = torch.where(delta > 0, (hue / 6) % 1.0, torch.zeros_like(hue))
    return torch.stack((hue, saturation, value), dim=-3)


def _hsv_to_rgb(hsv: Tensor) -> Tensor:
    hue, sat, value = hsv.unbind(-3)
    sector = (hue * 6).floor()
    frac = hue * 6 - sector
    sector = sector.long().remainder(6).unsqueeze(-3)
    p, q, t = value * (1 - sat), value * (1 - sat * frac), value * (1 - sat * (1 - frac))
    channels = ((value, q, p, p, t, value), (t, value, value, q, p, p), (p, p, t, value, value, q))
    return torch.stack(
        [torch.stack(c, dim=-3).gather(-3, sector).squeeze(-3) for c in channels], dim=-3
    )


def _hue_sat_draw(height: int, width: int) -> Tensor:
    return _randint(*HUE_SAT_ADD, size=(2,)).float() / 255


def _hue_sat_apply(images: Tensor, adds: Tensor) -> Tensor:
    """``adds`` (2,) for a clip, or (N, 1, 2, 1, 1) per clip of a batch."""
    hsv = _rgb_to_hsv(images)
    adds = adds.to(images)
    hue_add, sat_add = (adds[0], adds[1]) if adds.dim() == 1 else adds.unbind(-3)
    hue = (hsv.select(-3, 0) + hue_add) % 1.0
    sat = (hsv.select(-3, 1) + sat_add).clamp(0, 1)
    return _hsv_to_rgb(torch.stack((hue, sat, hsv.select(-3, 2)), dim=-3))


def _perspective_draw(height: int, width: int) -> tuple:
    if torch.rand(()) < 0.5:
        return ("rotate", _uniform(-ROTATION_DEG, ROTATION_DEG))
    scale = _uniform(*PERSPECTIVE_SCALE)
    return ("perspective", torch.randn(4, 2).abs() * scale)


def _perspective_apply(clip: Tensor, draw: tuple) -> Tensor:
    """imgaug ``OneOf(PerspectiveTransform(0.02-0.05, keep_size), Rotate(±10°))``."""
    kind, value = draw
    height, width = clip.shape[-2:]
    if kind == "rotate":
        return F.rotate(clip, value, InterpolationMode.BILINEAR)
    jitter = (value * torch.tensor([width, height])).round().int()
    corners = [[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]]
    inward = ((1, 1), (-1, 1), (-1, -1), (1, -1))
    quad = [
        [x + sx * int(dx), y + sy * int(dy)]
        for (x, y), (sx, sy), (dx, dy) in zip(corners, inward, jitter.tolist())
    ]
    # warp the inner quadrilateral onto the full frame (keep_size)
    return F.perspective(clip, quad, corners, interpolation=InterpolationMode.BILINEAR)


gaussian_blur = _SRTGOp("gaussian_blur", lambda h, w: _choice(BLUR_SIGMAS), _blur_apply)
channel_add = _SRTGOp(
    "channel_add",
    _channel_add_draw,
    lambda clip, add: clip + add.to(clip).view(1, -1, 1, 1),
    lambda batch, adds: batch + _per_clip(adds, batch),
)
gaussian_noise = _SRTGOp(
    "gaussian_noise",
    _noise_draw,
    lambda clip, noise: clip + NOISE_STD * noise.to(clip),
    lambda batch, noises: batch + NOISE_STD * torch.stack(list(noises)).to(batch),
)
enhance_colour = _SRTGOp(
    "enhance_colour",
    lambda h, w: _uniform(*COLOUR_FACTOR),
    _saturate,
    lambda batch, factors: _saturate(batch, _per_clip(factors, batch)),
)
motion_blur = _SRTGOp("motion_blur", _motion_draw, _motion_apply)
hue_saturation = _SRTGOp(
    "hue_saturation",
    _hue_sat_draw,
    _hue_sat_apply,
    lambda batch, adds: _hue_sat_apply(batch, _per_clip(adds, batch)),
)
linear_contrast = _SRTGOp(
    "linear_contrast",
    lambda h, w: _uniform(*CONTRAST),
    lambda clip, factor: (clip - 0.5) * factor + 0.5,
    lambda batch, factors: (batch - 0.5) * _per_clip(factors, batch) + 0.5,
)
perspective_or_rotation = _SRTGOp("perspective_or_rotation", _perspective_draw, _perspective_apply)

SRTG_OPS = (
    gaussian_blur,
    channel_add,
    gaussian_noise,
    enhance_colour,
    motion_blur,
    hue_saturation,
    linear_contrast,
    perspective_or_rotation,
)
# One clip's SRTG draw: (op position, op draw) for each op that fires, in order.
SRTGDraw = tuple[tuple[int, object], ...]


class SRTGAugment:
    """The SRTG photometric/geometric set: with ``p_clip`` run each op with ``p_op``.

    Input and output: ``(T, 3, H, W)`` float in [0, 1]; HMDB51 values 0.8 / 0.4 by default.
    Ops are :class:`_SRTGOp` (drawn once per clip) or plain ``clip -> clip`` callables.
    """

    def __init__(self, *, p_clip: float = 0.8, p_op: float = 0.4, ops=SRTG_OPS) -> None:
        self.p_clip, self.p_op, self.ops = p_clip, p_op, tuple(ops)

    def __call__(self, clip: Tensor) -> Tensor:
        return self.apply(clip, self.draw(*clip.shape[-2:]))

    def draw(self, height: int, width: int) -> SRTGDraw:
        """The ops that fire on one clip of ``height`` x ``width`` and their draws."""
        if float(torch.rand(())) >= self.p_clip:
            return ()
        fired = []
        for k, op in enumerate(self.ops):
            if float(torch.rand(())) < self.p_op:
                fired.append((k, op.draw(height, width) if hasattr(op, "draw") else None))
        return tuple(fired)

    def apply(self, clip: Tensor, draw: SRTGDraw) -> Tensor:
        for k, op_draw in draw:
            op = self.ops[k]
            clip = (op.apply(clip, op_draw) if hasattr(op, "apply") else op(clip)).clamp_(0, 1)
        return clip

    def apply_batch(self, batch: Tensor, draws: Sequence[SRTGDraw]) -> Tensor:
        """``(N, T, 3, H, W)`` float: op by op over the clips it fired on (vectorised)."""
        for k, op in enumerate(self.ops):
            chosen = [(n, dict(d)[k]) for n, d in enumerate(draws) if k in dict(d)]
            if not chosen:
                continue
            rows = torch.tensor([n for n, _ in chosen], device=batch.device)
            if hasattr(op, "apply_batch"):
                out = op.apply_batch(batch[rows], [d for _, d in chosen])
            else:
                out = torch.stack([op(clip) for clip in batch[rows]])
            batch = batch.index_copy(0, rows, out.clamp_(0, 1))
        return batch


# ----------------------------------------------------------------------------- presets


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


@dataclass(frozen=True)
class ClipDraw:
    """One clip's random draw, shared by its frames and streams.

    ``box`` (top, left, height, width) is in pixels of the frames it was drawn for and is
    resized to ``out_hw``; None for both: no crop or resize. ``photometric`` is the SRTG draw.
    """

    box: Box | None
    out_hw: tuple[int, int] | None
    flip: bool = False
    photometric: SRTGDraw = ()


class _ClipPreset:
    """Shared steps: one draw per call, then crop+resize and flip on uint8 (``geometry``), then
    float, photometric, normalise and ``(C, T, H, W)`` (``finish``)."""

    def __init__(
        self,
        *,
        crop_size: int | Sequence[int] | None,
        short_side: int,
        rgb_mean: Sequence[float] = IMAGENET_MEAN,
        rgb_std: Sequence[float] = IMAGENET_STD,
        flow_mean: Sequence[float] = FLOW_MEAN,
        flow_std: Sequence[float] = FLOW_STD,
    ) -> None:
        self.crop_size = None if crop_size is None else _pair(crop_size)
        if self.crop_size is not None and short_side < max(self.crop_size):
            raise ValueError(f"short_side {short_side} is smaller than the crop {self.crop_size}")
        self.short_side = short_side
        # (mean, std) as (1, C, 1, 1) float32 tensors, built once: finish runs for every clip
        self.norm = {
            modality: tuple(torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1) for v in pair)
            for modality, pair in (("rgb", (rgb_mean, rgb_std)), ("flow", (flow_mean, flow_std)))
        }

    def __call__(
        self, *clips: Tensor, size: Sequence[int] | None = None, finish: bool = True
    ) -> Tensor | tuple[Tensor, ...]:
        """``(T, C, H, W)`` uint8 clips (sharing H, W) -> ``(C, T, h, w)`` float, one draw for all.

        ``size`` overrides the output ``(h, w)`` (multigrid); the short side scales with it so
        the field of view stays the same. ``finish=False`` stops after the geometry: a tuple of
        ``(T, C, h, w)`` uint8 clips (for :class:`BatchFinish`; photometric draws are dropped).
        """
        draw = self.draw(*common_size(clips), size=size)
        if not finish:
            return tuple(self.geometry(clip, draw) for clip in clips)
        outputs = tuple(self.finish(self.geometry(clip, draw), draw) for clip in clips)
        return outputs[0] if len(outputs) == 1 else outputs

    def output_size(self, size: Sequence[int] | None = None) -> tuple[int, int] | None:
        return _pair(size) if size is not None else self.crop_size

    def _scaled_short_side(self, out_hw: tuple[int, int]) -> int:
        return round(self.short_side * out_hw[0] / (self.crop_size or out_hw)[0])

    def draw(self, height: int, width: int, *, size: Sequence[int] | None = None) -> ClipDraw:
        """The clip's random draw for frames of ``height`` x ``width`` (box, flip, photometric)."""
        out_hw = self.output_size(size)
        box = None
        if out_hw is not None:
            box = self.draw_box(height, width, out_hw, self._scaled_short_side(out_hw))
        flip = self.draw_flip()
        photometric = self.draw_photometric(*(out_hw or (height, width)))
        return ClipDraw(box, out_hw, flip, photometric)

    def decode_short_side(self, size: Sequence[int] | None = None) -> int | None:
        """The smallest frame short side the output needs (a store may decode down to it)."""
        out_hw = self.output_size(size)
        if out_hw is None:
            return None
        if getattr(self, "crop_box", None) is full_frame_box:
            return max(out_hw)  # squashed whole frame: both sides must reach the output's
        return self._scaled_short_side(out_hw)

    def geometry(self, clip: Tensor, draw: ClipDraw) -> Tensor:
        """``(T, C, H, W)`` uint8 -> cropped, resized once, flipped ``(T, C, h, w)`` uint8."""
        if draw.box is not None:
            top, left, height, width = draw.box
            clip = clip[..., top : top + height, left : left + width]  # crop first: a view
            if (height, width) != tuple(draw.out_hw):
                clip = F.resize(clip, list(draw.out_hw), antialias=True)
        if draw.flip:
            clip = hflip_clip(clip, modality_of(clip))
        return clip

    def finish(self, clip: Tensor, draw: ClipDraw) -> Tensor:
        """``(T, C, h, w)`` uint8 -> float, photometric (RGB), normalised, ``(C, T, h, w)``."""
        modality = modality_of(clip)
        clip = clip.float().div_(255)
        if modality == "rgb" and draw.photometric:
            clip = self.srtg.apply(clip, draw.photometric)
        mean, std = (v.to(clip.device) for v in self.norm[modality])
        clip = (clip - mean) / std
        return clip.permute(1, 0, 2, 3).contiguous()

    def draw_box(self, height: int, width: int, out_hw, short_side: int) -> Box:
        raise NotImplementedError

    def draw_flip(self) -> bool:
        return False

    srtg: SRTGAugment | None = None

    def draw_photometric(self, height: int, width: int) -> SRTGDraw:
        return () if self.srtg is None else self.srtg.draw(height, width)


def common_size(clips: Sequence[Tensor]) -> tuple[int, int]:
    """The ``(H, W)`` shared by the streams of a clip (ValueError when they differ)."""
    heights_widths = {tuple(c.shape[-2:]) for c in clips}
    if len(heights_widths) != 1:
        raise ValueError(f"the streams of a clip differ in size: {sorted(heights_widths)}")
    return heights_widths.pop()


class ClipTrainPreset(_ClipPreset):
    """Training: TAO crop (``random_crop`` | ``multi_scale_crop`` | ``no_crop``), flip, SRTG set."""

    def __init__(
        self,
        *,
        crop_size: int | Sequence[int] = 112,
        short_side: int = 128,
        crop_type: str = "random_crop",
        scales: Sequence[float] = (1.0, 0.875, 0.75, 0.66),
        hflip_prob: float = 0.5,
        srtg: bool | SRTGAugment = False,
        **norm,
    ) -> None:
        super().__init__(crop_size=crop_size, short_side=short_side, **norm)
        if crop_type not in CROP_TYPES:
            raise ValueError(f"unknown crop_type {crop_type!r}; choose from {sorted(CROP_TYPES)}")
        self.crop_box, self.scales = CROP_TYPES[crop_type], tuple(scales)
        self.hflip_prob = min(1.0, hflip_prob)
        self.srtg = SRTGAugment() if srtg is True else (srtg or None)

    def draw_box(self, height: int, width: int, out_hw, short_side: int) -> Box:
        return self.crop_box(height, width, out_hw, short_side, self.scales)

    def draw_flip(self) -> bool:
        return float(torch.rand(())) < self.hflip_prob


class ClipEvalPreset(_ClipPreset):
    """Evaluation: short side -> ``short_side`` + centre crop, or a plain resize (TAO default)."""

    def __init__(
        self,
        *,
        crop_size: int | Sequence[int] | None = 112,
        short_side: int = 128,
        center_crop: bool = True,
        **norm,
    ) -> None:
        super().__init__(crop_size=crop_size, short_side=short_side, **norm)
        self.crop_box = center_crop_box if center_crop else full_frame_box

    def draw_box(self, height: int, width: int, out_hw, short_side: int) -> Box:
        return self.crop_box(height, width, out_hw, short_side)


# ----------------------------------------------------------------------------- 3-crop testing
THREE_CROP_VIEWS = 3


def uniform_crop_box(height: int, width: int, out_hw: Sequence[int], short_side: int, view: int):
    """PySlowFast's ``uniform_crop`` on the frame resized to ``short_side``: view 0, 1, 2 is the
    left, centre, right window (top, centre, bottom when the frame is taller than wide); the
    centre offset is ``ceil((L - size) / 2)``, the last one ``L - size``."""
    if view not in range(THREE_CROP_VIEWS):
        raise ValueError(f"view must be 0, 1 or 2, got {view}")
    vh, vw, scale = _virtual_size(height, width, short_side)
    top, left = math.ceil((vh - out_hw[0]) / 2), math.ceil((vw - out_hw[1]) / 2)
    if vh > vw:
        top = (0, top, vh - out_hw[0])[view]
    else:
        left = (0, left, vw - out_hw[1])[view]
    return _to_source(max(top, 0), max(left, 0), out_hw[0], out_hw[1], scale, height, width)


class ClipThreeCropPreset(ClipEvalPreset):
    """Evaluation with 3 spatial views per clip (PySlowFast/MMAction2 "× 3 crops"): the short side
    is resized to the crop size, so the views are full-height (or full-width) windows.

    ``preset(clip, view=k)``; a dataset reads ``num_views`` and asks for each view in turn.
    """

    num_views = THREE_CROP_VIEWS

    def __init__(self, *, crop_size: int | Sequence[int] = 112, **norm) -> None:
        super().__init__(crop_size=crop_size, short_side=max(_pair(crop_size)), **norm)
        self.view = 1

    def __call__(
        self, *clips: Tensor, size: Sequence[int] | None = None, view: int = 1, finish: bool = True
    ) -> Tensor | tuple[Tensor, ...]:
        self.view = view  # read by draw_box during this call (one preset per worker process)
        return super().__call__(*clips, size=size, finish=finish)

    def draw(
        self, height: int, width: int, *, size: Sequence[int] | None = None, view: int | None = None
    ) -> ClipDraw:
        if view is not None:  # None: the view __call__ set (it calls draw without one)
            self.view = view
        return super().draw(height, width, size=size)

    def draw_box(self, height: int, width: int, out_hw, short_side: int) -> Box:
        return uniform_crop_box(height, width, out_hw, short_side, self.view)


class UInt8ResizePreset:
    """CPU side of the device path: resize to a fixed ``size`` and keep ``(T, C, H, W)`` uint8.

    The clips then collate into ``(N, T, C, H, W)`` uint8 batches for :class:`BatchAugment`,
    which crops, flips, augments and normalises on the device (and applies a multigrid ``size``,
    so the per-item ``size`` is ignored here).
    """

    def __init__(self, *, size: int | Sequence[int] = (128, 171)) -> None:
        self.size = _pair(size)

    def __call__(self, *clips: Tensor, size: Sequence[int] | None = None):
        outputs = tuple(F.resize(c, list(self.size), antialias=True) for c in clips)
        return outputs[0] if len(outputs) == 1 else outputs


class BatchAugment:
    """Apply a preset to a ``(N, T, C, H, W)`` uint8 batch on its device, one draw per clip.

    ``inputs`` is a tensor or a tuple of tensors (joint: rgb, flow); the result has the same
    structure: ``(N, C, T, H, W)`` float, or ``(N, C·T, H, W)`` with ``input_dims=2``. The draws
    are made clip by clip; crop, resize, flip, photometric ops and normalisation run on the
    whole batch (:func:`augment_batch`).
    """

    def __init__(self, preset: _ClipPreset, *, input_dims: int = 3) -> None:
        _check_input_dims(input_dims)
        self.preset, self.input_dims = preset, input_dims

    def __call__(
        self, inputs: Tensor | Sequence[Tensor], *, size: Sequence[int] | None = None
    ) -> Tensor | tuple[Tensor, ...]:
        streams = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
        height, width = common_size(streams)
        draws = [self.preset.draw(height, width, size=size) for _ in range(len(streams[0]))]
        outputs = tuple(
            to_input_dims(augment_batch(self.preset, list(s), draws), self.input_dims)
            for s in streams
        )
        return outputs[0] if isinstance(inputs, Tensor) else outputs


class BatchFinish:
    """The main-process end of the CPU path: ``(N, C, T, h, w)`` uint8 clips (cropped, resized,
    flipped and laid out in the workers: ``uint8_layout``) -> normalised float of the same shape
    (or ``(N, C·T, h, w)``), one conversion and two in-place passes over the batch, on whatever
    device the batch is.

    Workers so hand over a quarter of the bytes (and on a GPU the host-to-device copy shrinks
    alike). Presets with photometric augmentation finish in the workers (their ops draw per
    clip), so this is used only without it.
    """

    def __init__(self, preset: _ClipPreset, *, input_dims: int = 3) -> None:
        _check_input_dims(input_dims)
        self.preset, self.input_dims = preset, input_dims

    def __call__(self, inputs: Tensor | Sequence[Tensor]) -> Tensor | tuple[Tensor, ...]:
        streams = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
        outputs = tuple(self._one(s) for s in streams)
        return outputs[0] if isinstance(inputs, Tensor) else outputs

    def finish_batch(self, batch: tuple, device: torch.device | str) -> tuple[tuple, list]:
        """``(inputs, targets, ids)`` -> the same with ``inputs`` moved to ``device`` and
        finished; nothing is dropped (the second value, for ``train.loaders``, is empty)."""
        inputs, *rest = batch
        if isinstance(inputs, Tensor):
            moved = inputs.to(device, non_blocking=True)
        else:
            moved = tuple(t.to(device, non_blocking=True) for t in inputs)
        return (self(moved), *rest), []

    def _one(self, batch: Tensor) -> Tensor:
        if batch.dtype != torch.uint8 or batch.dim() != 5 or batch.shape[1] not in (2, 3):
            raise ValueError(
                f"expected (N, C, T, H, W) uint8 clips, got {batch.dtype} {tuple(batch.shape)}"
            )
        mean, std = (
            v.to(batch.device) for v in self.preset.norm[MODALITY_BY_CHANNELS[batch.shape[1]]]
        )
        out = batch.float().mul_((1 / (255 * std)).unsqueeze(-1))  # (1, C, 1, 1, 1)
        return to_input_dims(out.sub_((mean / std).unsqueeze(-1)), self.input_dims)


def uint8_layout(clip: Tensor) -> Tensor:
    """A worker's ``(T, C, h, w)`` uint8 clip -> contiguous ``(C, T, h, w)`` for BatchFinish."""
    return clip.permute(1, 0, 2, 3).contiguous()


def _check_input_dims(input_dims: int) -> None:
    if input_dims not in (2, 3):
        raise ValueError(f"input_dims must be 2 or 3, got {input_dims}")


def to_input_dims(batch: Tensor, input_dims: int) -> Tensor:
    """``(N, C, T, H, W)`` -> itself (3) or ``(N, C·T, H, W)`` channel-major (2)."""
    return batch if input_dims == 3 else batch.flatten(1, 2)


def crop_resize_batch(clips: Sequence[Tensor], draws: Sequence[ClipDraw]) -> Tensor:
    """Each ``(T, C, H, W)`` clip's box resized to the shared output size, vectorised over the
    clips: two batched matrix products with per-clip interpolation matrices (the separable
    antialiased bilinear filter of torchvision's ``resize(antialias=True)``, zero outside the
    box, so the crop costs nothing). Clips are grouped by frame size.

    Returns ``(N, T, C, h, w)`` float in [0, 255]. Clips with no box must share their size.
    """
    if all(d.box is None for d in draws):
        return torch.stack([c.float() for c in clips])
    out_hw = {tuple(d.out_hw) for d in draws}
    if len(out_hw) != 1 or any(d.box is None for d in draws):
        raise ValueError(f"the clips of a batch need one output size, got {sorted(out_hw)}")
    oh, ow = out_hw.pop()
    t, c = clips[0].shape[:2]
    out = clips[0].new_empty((len(clips), t, c, oh, ow), dtype=torch.float32)
    groups: dict[tuple, list[int]] = {}
    for n, clip in enumerate(clips):
        groups.setdefault(tuple(clip.shape), []).append(n)
    for members in groups.values():
        frames = torch.stack([clips[n] for n in members]).float()  # (n, T, C, H, W)
        boxes = torch.tensor([draws[n].box for n in members], dtype=torch.float32)
        rows = resize_matrices(boxes[:, 0], boxes[:, 2], oh, frames.shape[-2]).to(frames)
        cols = resize_matrices(boxes[:, 1], boxes[:, 3], ow, frames.shape[-1]).to(frames)
        resized = rows[:, None, None] @ frames @ cols.transpose(1, 2)[:, None, None]
        out[torch.tensor(members, device=out.device)] = resized
    return out


def resize_matrices(starts: Tensor, lengths: Tensor, out_size: int, in_size: int) -> Tensor:
    """``(N, out_size, in_size)``: row i resamples the window ``[start, start + length)`` of a
    line of ``in_size`` pixels at output pixel i with the antialiased bilinear (triangle) filter,
    widened by the downscale factor as torchvision/PIL do; rows sum to 1."""
    scale = (lengths / out_size).view(-1, 1, 1)
    support = scale.clamp(min=1.0)
    centres = starts.view(-1, 1, 1) + scale * (torch.arange(out_size).view(1, -1, 1) + 0.5)
    pixels = torch.arange(in_size).view(1, 1, -1) + 0.5
    weights = (1 - ((pixels - centres) / support).abs()).clamp(min=0)
    inside = (pixels >= starts.view(-1, 1, 1)) & (pixels < (starts + lengths).view(-1, 1, 1))
    weights = weights * inside
    return weights / weights.sum(-1, keepdim=True).clamp(min=1e-12)


def augment_batch(
    preset: _ClipPreset, clips: Sequence[Tensor], draws: Sequence[ClipDraw]
) -> Tensor:
    """``N`` uint8 ``(T, C, H, W)`` clips of one stream and their draws -> ``(N, C, T, h, w)``
    normalised float: crop+resize, flip, photometric ops and normalisation over the whole batch.

    Equal to ``preset.finish(preset.geometry(clip, draw), draw)`` clip by clip up to rounding:
    the same antialiased filter in float here, in uint8 there.
    """
    modality = modality_of(clips[0])
    batch = crop_resize_batch(clips, draws).div_(255)  # (N, T, C, h, w) in [0, 1]
    flips = torch.tensor([d.flip for d in draws], device=batch.device)
    if bool(flips.any()):
        mirrored = batch.flip(-1)
        if modality == "flow":  # u of the mirrored flow is negated, as hflip_clip does
            mirrored[:, :, :1] = 1 - mirrored[:, :, :1]
        batch = torch.where(flips.view(-1, 1, 1, 1, 1), mirrored, batch)
    if modality == "rgb" and preset.srtg is not None:
        batch = preset.srtg.apply_batch(batch, [d.photometric for d in draws])
    mean, std = (v.to(batch.device).unsqueeze(0) for v in preset.norm[modality])
    return ((batch - mean) / std).permute(0, 2, 1, 3, 4).contiguous()
