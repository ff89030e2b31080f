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
    "ClipEvalPreset",
    "ClipTrainPreset",
    "SRTGAugment",
    "UInt8ResizePreset",
    "hflip_clip",
    "modality_of",
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
# Each op takes a (T, 3, H, W) float clip in [0, 1], draws its parameters once, applies them to
# every frame.


def gaussian_blur(clip: Tensor) -> Tensor:
    sigma = _choice(BLUR_SIGMAS)
    return F.gaussian_blur(clip, kernel_size=[3, 3], sigma=[sigma, sigma])


def channel_add(clip: Tensor) -> Tensor:
    values = _randint(*CHANNEL_ADD, size=(clip.shape[1],)).to(clip) / 255
    return clip + values.view(1, -1, 1, 1)


def gaussian_noise(clip: Tensor) -> Tensor:
    # one noise field for every frame and channel, as imgaug's per-video deterministic draw
    noise = torch.randn((1, 1, *clip.shape[-2:])).to(clip)
    return clip + NOISE_STD * noise


def enhance_colour(clip: Tensor) -> Tensor:
    return F.adjust_saturation(clip, _uniform(*COLOUR_FACTOR))


def _line_kernel(size: int, angle_deg: float) -> Tensor:
    kernel = torch.zeros(size, size)
    centre = (size - 1) / 2
    steps = torch.linspace(-centre, centre, 4 * size)
    rad = math.radians(angle_deg)
    cols = (centre + steps * math.cos(rad)).round().long().clamp(0, size - 1)
    rows = (centre - steps * math.sin(rad)).round().long().clamp(0, size - 1)
    kernel[rows, cols] = 1.0
    return kernel / kernel.sum()


def motion_blur(clip: Tensor) -> Tensor:
    size = _choice(MOTION_KERNELS)
    kernel = _line_kernel(size, _uniform(0.0, 360.0)).to(clip)[None, None]
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


def hue_saturation(clip: Tensor) -> Tensor:
    hue_add, sat_add = (_randint(*HUE_SAT_ADD, size=(2,)).to(clip) / 255).unbind()
    hsv = _rgb_to_hsv(clip)
    hue = (hsv[:, 0] + hue_add) % 1.0
    sat = (hsv[:, 1] + sat_add).clamp(0, 1)
    return _hsv_to_rgb(torch.stack((hue, sat, hsv[:, 2]), dim=1))


def linear_contrast(clip: Tensor) -> Tensor:
    return (clip - 0.5) * _uniform(*CONTRAST) + 0.5


def perspective_or_rotation(clip: Tensor) -> Tensor:
    """imgaug ``OneOf(PerspectiveTransform(0.02-0.05, keep_size), Rotate(±10°))``."""
    height, width = clip.shape[-2:]
    if torch.rand(()) < 0.5:
        return F.rotate(clip, _uniform(-ROTATION_DEG, ROTATION_DEG), InterpolationMode.BILINEAR)
    scale = _uniform(*PERSPECTIVE_SCALE)
    jitter = (torch.randn(4, 2).abs() * scale * torch.tensor([width, height])).round().int()
    corners = [[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]]
    inward = ((1, 1), (-1, 1), (-1, -1), (1, -1))
    quad = [
        [x + sx * int(dx), y + sy * int(dy)]
        for (x, y), (sx, sy), (dx, dy) in zip(corners, inward, jitter.tolist())
    ]
    # warp the inner quadrilateral onto the full frame (keep_size)
    return F.perspective(clip, quad, corners, interpolation=InterpolationMode.BILINEAR)


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


class SRTGAugment:
    """The SRTG photometric/geometric set: with ``p_clip`` run each op with ``p_op``.

    Input and output: ``(T, 3, H, W)`` float in [0, 1]; HMDB51 values 0.8 / 0.4 by default.
    """

    def __init__(self, *, p_clip: float = 0.8, p_op: float = 0.4, ops=SRTG_OPS) -> None:
        self.p_clip, self.p_op, self.ops = p_clip, p_op, tuple(ops)

    def __call__(self, clip: Tensor) -> Tensor:
        if float(torch.rand(())) >= self.p_clip:
            return clip
        for op in self.ops:
            if float(torch.rand(())) < self.p_op:
                clip = op(clip).clamp_(0.0, 1.0)
        return clip


# ----------------------------------------------------------------------------- presets


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


class _ClipPreset:
    """Shared steps: one box and flip per call, then float, photometric, normalise, (C,T,H,W)."""

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
        # (mean, std) as (1, C, 1, 1) float32 tensors, built once: _one runs for every clip
        self.norm = {
            modality: tuple(torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1) for v in pair)
            for modality, pair in (("rgb", (rgb_mean, rgb_std)), ("flow", (flow_mean, flow_std)))
        }

    def __call__(
        self, *clips: Tensor, size: Sequence[int] | None = None
    ) -> Tensor | tuple[Tensor, ...]:
        """``(T, C, H, W)`` uint8 clips (sharing H, W) -> ``(C, T, h, w)`` float, one draw for all.

        ``size`` overrides the output ``(h, w)`` (multigrid); the short side scales with it so
        the field of view stays the same.
        """
        heights_widths = {tuple(c.shape[-2:]) for c in clips}
        if len(heights_widths) != 1:
            raise ValueError(f"the streams of a clip differ in size: {sorted(heights_widths)}")
        height, width = heights_widths.pop()
        out_hw = _pair(size) if size is not None else self.crop_size
        box = None
        if out_hw is not None:
            short_side = round(self.short_side * out_hw[0] / (self.crop_size or out_hw)[0])
            box = self.draw_box(height, width, out_hw, short_side)
        flip = self.draw_flip()
        outputs = tuple(self._one(clip, box, out_hw, flip) for clip in clips)
        return outputs[0] if len(outputs) == 1 else outputs

    def _one(self, clip: Tensor, box, out_hw, flip: bool) -> Tensor:
        modality = modality_of(clip)
        if box is not None:
            clip = F.resized_crop(clip, *box, size=list(out_hw), antialias=True)
        if flip:
            clip = hflip_clip(clip, modality)
        clip = clip.float().div_(255)
        if modality == "rgb":
            clip = self.photometric(clip)
        mean, std = (v.to(clip.device) for v in self.norm[modality])
        clip = (clip - mean) / std
        return clip.permute(1, 0, 2, 3).contiguous()

    def draw_box(self, height: int, width: int, out_hw, short_side: int) -> Box:
        raise NotImplementedError

    def draw_flip(self) -> bool:
        return False

    def photometric(self, clip: Tensor) -> Tensor:
        return clip


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

    def photometric(self, clip: Tensor) -> Tensor:
        return clip if self.srtg is None else self.srtg(clip)


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
    structure: ``(N, C, T, H, W)`` float, or ``(N, C·T, H, W)`` with ``input_dims=2``.
    """

    def __init__(self, preset: _ClipPreset, *, input_dims: int = 3) -> None:
        if input_dims not in (2, 3):
            raise ValueError(f"input_dims must be 2 or 3, got {input_dims}")
        self.preset, self.input_dims = preset, input_dims

    def __call__(
        self, inputs: Tensor | Sequence[Tensor], *, size: Sequence[int] | None = None
    ) -> Tensor | tuple[Tensor, ...]:
        streams = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
        per_clip = [
            self.preset(*(s[n] for s in streams), size=size) for n in range(len(streams[0]))
        ]
        per_clip = [c if isinstance(c, tuple) else (c,) for c in per_clip]
        outputs = tuple(torch.stack(parts) for parts in zip(*per_clip))
        if self.input_dims == 2:
            outputs = tuple(o.flatten(1, 2) for o in outputs)
        return outputs[0] if isinstance(inputs, Tensor) else outputs
