"""Grad-CAM for every video network of the registry, per-joint importance for skeleton networks.

Grad-CAM (Selvaraju et al. 2017) as MMAction2 applies it to video: the activations ``A`` of the
last convolutional stage (``layer4``, or an earlier one of ``STAGES`` where the last has too
coarse a time axis: r3d's ``layer4`` has one time step for 8 frames) and the gradient ``G`` of the
target logit with respect to them; each channel is weighted by its gradient averaged over space (one weight per channel and
time step), ``cam = relu(sum_c w_c · A_c)``, then upsampled to the clip (trilinear in time and
space) and scaled to [0, 1] by its maximum::

    explanation = grad_cam(model, inputs, target=None)   # None: the predicted class
    explanation = grad_cam(model, inputs, layer="layer3")  # finer in time and space
    explanation.maps["rgb"]        # (T, H, W) float in [0, 1], one map per input stream

Networks: 3D ResNets, r(2+1)d, SRTG (``layer4`` of the VideoResNet family), MTNet (its short and
long paths, each upsampled, summed), 2D ResNets over stacked frames (``layer4`` has no time axis:
one spatial map for all T frames), and the two-stream joint model (a map per stream, the
gradient of the fused logit flowing into both). Skeleton networks: :func:`joint_importance`
gives Grad-CAM over (frames, joints) of the last graph block of ST-GCN, ST-GCN++ and CTR-GCN.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from export.render import Mp4Writer, draw_caption, draw_topk, output_name
from safeio.text import printable

__all__ = [
    "LAST_STAGE",
    "STAGES",
    "Explanation",
    "cam_layers",
    "flow_to_rgb",
    "grad_cam",
    "graph_blocks",
    "heat_mass_fraction",
    "joint_importance",
    "overlay_heat",
    "resolve_target",
    "save_joint_importance",
    "write_explanation",
]

STAGES = ("layer1", "layer2", "layer3", "layer4")  # the residual stages of the video networks
LAST_STAGE = STAGES[-1]
STRIP_FRAMES = 8  # frames in the PNG strip, evenly spaced over the clip
_DISPLAY_SIDE = 240  # explained clips are shown at least this high (network crops are small)


@dataclass(frozen=True)
class Explanation:
    """One clip's Grad-CAM: ``maps[stream]`` (T, H, W) in [0, 1] at the stream's input size,
    ``probs`` (K,) softmax of the model's logits, ``target`` the class explained."""

    maps: dict[str, np.ndarray]
    probs: np.ndarray
    target: int


def cam_layers(model: nn.Module, layer: str = LAST_STAGE) -> dict[str, nn.Module]:
    """``{stream: convolutional stage}``: ``{"rgb": layer4}`` for one-stream networks,
    ``{"rgb": rgb.layer4, "flow": flow.layer4}`` for the joint model (``layer`` names another
    stage of ``STAGES``)."""
    if hasattr(model, "rgb") and hasattr(model, "flow"):
        return {"rgb": _stage(model.rgb, layer), "flow": _stage(model.flow, layer)}
    return {"rgb": _stage(model, layer)}


def _stage(model: nn.Module, layer: str) -> nn.Module:
    stage = getattr(model, layer, None) if layer in STAGES else None
    if not isinstance(stage, nn.Module):
        name = getattr(model, "network_name", type(model).__name__)
        which = "last convolutional stage" if layer == LAST_STAGE else "convolutional stage"
        raise ValueError(f"{name}: no {which} ({printable(layer)}) to explain")
    return stage


def resolve_target(target: str | int | None, class_names: Sequence[str], probs: np.ndarray) -> int:
    """The class index to explain: a name, an index (as text or int), or None (the predicted)."""
    if target is None:
        return int(np.argmax(probs))
    if isinstance(target, str) and target in class_names:
        return list(class_names).index(target)
    try:
        index = int(target)
    except ValueError:
        shown = ", ".join(list(class_names)[:8]) + (", ..." if len(class_names) > 8 else "")
        raise ValueError(f"--target {target!r} is not a class of the model ({shown})") from None
    if not 0 <= index < len(probs):
        raise ValueError(f"--target {index} is outside the model's {len(probs)} classes")
    return index


class _Capture:
    """Forward hook keeping a stage's output tensors and, after backward, their gradients."""

    def __init__(self) -> None:
        self.activations: list[Tensor] = []
        self.gradients: dict[int, Tensor] = {}

    def __call__(self, module: nn.Module, inputs: object, output: Tensor | Sequence) -> None:
        tensors = [output] if isinstance(output, Tensor) else list(output)  # MTNet: (short, long)
        self.activations = tensors
        for i, tensor in enumerate(tensors):
            tensor.register_hook(lambda grad, i=i: self.gradients.__setitem__(i, grad))


def grad_cam(
    model: nn.Module,
    inputs: Tensor | tuple[Tensor, ...],
    target: str | int | None = None,
    *,
    class_names: Sequence[str] = (),
    layer: str = LAST_STAGE,
) -> Explanation:
    """Grad-CAM of one clip at stage ``layer``. ``inputs``: the model's input(s) for a batch of
    one, e.g. ``(1, C, T, H, W)``, ``(1, C·T, H, W)`` (stacked frames) or ``((1, 3, T, H, W),
    (1, 2, T', H, W))`` (joint). The model's parameters are left unchanged (gradients dropped)."""
    inputs = inputs if isinstance(inputs, tuple) else (inputs,)
    if any(x.shape[0] != 1 for x in inputs):
        raise ValueError(
            f"grad_cam explains one clip: got batches of {[x.shape[0] for x in inputs]}"
        )
    stages = cam_layers(model, layer)
    captures = {stream: _Capture() for stream in stages}
    handles = [stage.register_forward_hook(captures[stream]) for stream, stage in stages.items()]
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            logits = model(*inputs)
            probs = logits.detach().float().softmax(dim=1)[0].cpu().numpy()
            index = resolve_target(target, class_names, probs)
            model.zero_grad(set_to_none=True)
            logits[0, index].backward()
    finally:
        for handle in handles:
            handle.remove()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    maps = {
        stream: _stream_map(capture, _clip_shape(model, stream, x))
        for (stream, capture), x in zip(captures.items(), inputs)
    }
    return Explanation(maps=maps, probs=probs, target=index)


def _clip_shape(model: nn.Module, stream: str, x: Tensor) -> tuple[int, int, int]:
    """(T, H, W) of one stream's input: 5-D inputs say it, stacked frames know T from the net."""
    if x.ndim == 5:
        return tuple(x.shape[2:])
    network = getattr(model, stream, model) if stream in ("rgb", "flow") else model
    frames = int(getattr(network, "num_frames", 1))
    return frames, int(x.shape[2]), int(x.shape[3])


def _stream_map(capture: _Capture, size: tuple[int, int, int]) -> np.ndarray:
    """Grad-CAM of the captured stage(s), each upsampled to ``size`` (T, H, W), summed, max 1."""
    total = torch.zeros(size, dtype=torch.float64)
    for i, activation in enumerate(capture.activations):
        gradient = capture.gradients.get(i)
        if gradient is None:  # the target does not depend on this path
            continue
        total += _upsample(_cam(activation.detach(), gradient), size)
    peak = float(total.max())
    return (total / peak if peak > 0 else total).float().numpy()


def _cam(activation: Tensor, gradient: Tensor) -> Tensor:
    """(1, C, T', h, w) or (1, C, h, w) -> relu(sum_c w_c A_c) (T', h, w); the weights are the
    gradient averaged over space per channel and time step."""
    if activation.ndim == 4:  # stacked-frame 2D network: a single time step
        activation, gradient = activation[:, :, None], gradient[:, :, None]
    weights = gradient.double().mean(dim=(3, 4), keepdim=True)
    return F.relu((weights * activation.double()).sum(dim=1))[0]


def _upsample(cam: Tensor, size: tuple[int, int, int]) -> Tensor:
    """(T', h, w) -> (T, H, W), trilinear, half-pixel centres."""
    return F.interpolate(cam[None, None], size=size, mode="trilinear", align_corners=False)[0, 0]


def heat_mass_fraction(heat: np.ndarray, mask: np.ndarray) -> float:
    """Share of the heat map's total mass inside ``mask`` (same shape, bool); NaN if no heat."""
    heat = np.asarray(heat, np.float64)
    total = heat.sum()
    return float((heat * np.asarray(mask, bool)).sum() / total) if total > 0 else float("nan")


def graph_blocks(model: nn.Module) -> nn.ModuleList:
    """The graph blocks of a skeleton network, each (N·M, C, T, V) -> (N·M, C', T', V): the list
    the network names in ``blocks_name`` (ST-GCN, ST-GCN++, CTR-GCN)."""
    blocks = getattr(model, getattr(model, "blocks_name", ""), None)
    if not isinstance(blocks, nn.ModuleList) or len(blocks) == 0:
        name = getattr(model, "network_name", type(model).__name__)
        raise ValueError(f"{name}: no graph convolution blocks (ST-GCN family) to explain")
    return blocks


def joint_importance(
    model: nn.Module,
    inputs: Tensor,
    target: str | int | None = None,
    *,
    class_names: Sequence[str] = (),
) -> Explanation:
    """Grad-CAM over (frames, joints) of a skeleton network's last graph block (ST-GCN, ST-GCN++,
    CTR-GCN) for one sequence ``(1, C, T, V, M)``: ``maps["joints"]`` (T, V) in [0, 1], summed
    over the persons (CTR-GCN's zero-padded ones included: they add no positive evidence)."""
    blocks = graph_blocks(model)
    if inputs.ndim != 5 or inputs.shape[0] != 1:
        raise ValueError(f"expected one sequence (1, C, T, V, M), got {tuple(inputs.shape)}")
    capture = _Capture()
    handle = blocks[-1].register_forward_hook(capture)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            logits = model(inputs)
            probs = logits.detach().float().softmax(dim=1)[0].cpu().numpy()
            index = resolve_target(target, class_names, probs)
            logits[0, index].backward()
    finally:
        handle.remove()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    _, _, frames, joints, _ = inputs.shape
    activation, gradient = capture.activations[0].detach(), capture.gradients[0]
    # blocks see (N·M, C, T', V): one weight per channel and person, averaged over time and joints
    weights = gradient.double().mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * activation.double()).sum(dim=1))  # (M, T', V)
    cam = cam.sum(dim=0)[None, None]  # persons summed -> (1, 1, T', V)
    cam = F.interpolate(cam, size=(frames, joints), mode="bilinear", align_corners=False)[0, 0]
    peak = float(cam.max())
    heat = (cam / peak if peak > 0 else cam).float().numpy()
    return Explanation(maps={"joints": heat}, probs=probs, target=index)


# ----------------------------------------------------------------------------- pictures
def overlay_heat(frames: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """``frames`` (T, H, W, 3) uint8 RGB blended with the jet colours of ``heat`` (T, H, W) in
    [0, 1]: ``(1 - alpha·heat)·frame + alpha·heat·colour``, so cold pixels keep the frame."""
    if frames.shape[:3] != heat.shape:
        raise ValueError(f"frames {frames.shape[:3]} and heat map {heat.shape} differ in shape")
    out = np.empty_like(frames)
    for t, (frame, level) in enumerate(zip(frames, np.clip(heat, 0.0, 1.0))):
        colour = cv2.applyColorMap((level * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
        weight = (alpha * level)[..., None]
        out[t] = (frame * (1 - weight) + colour * weight).round().astype(np.uint8)
    return out


def flow_to_rgb(flow: np.ndarray) -> np.ndarray:
    """(2, T, H, W) uint8 flow (128 = no motion) as (T, H, W, 3) RGB: hue = direction,
    brightness = magnitude (the usual optical-flow colour coding)."""
    u, v = (flow.astype(np.float32) - 128.0) / 128.0
    magnitude, angle = cv2.cartToPolar(u.reshape(-1), v.reshape(-1), angleInDegrees=True)
    hsv = np.zeros((*u.shape, 3), np.uint8)
    hsv[..., 0] = (angle.reshape(u.shape) / 2).astype(np.uint8)
    hsv[..., 1] = 255
    hsv[..., 2] = np.clip(magnitude.reshape(u.shape) * 4 * 255, 0, 255).astype(np.uint8)
    return np.stack([cv2.cvtColor(frame, cv2.COLOR_HSV2RGB) for frame in hsv])


def _display(frames: np.ndarray) -> np.ndarray:
    """Frames scaled up by a whole factor until they are at least ``_DISPLAY_SIDE`` high."""
    factor = max(1, -(-_DISPLAY_SIDE // frames.shape[1]))
    if factor == 1:
        return frames
    size = (frames.shape[2] * factor, frames.shape[1] * factor)
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_LINEAR) for f in frames])


def _panels(frames: dict[str, np.ndarray], explanation: Explanation) -> list[np.ndarray]:
    """Per stream, ``(T, H, 2W, 3)``: the clip beside its Grad-CAM overlay, at display size."""
    rows = []
    for stream, clip in frames.items():
        heat = explanation.maps[stream]
        if heat.shape[0] != clip.shape[0]:  # stacked 2D network: one map for every frame
            heat = np.repeat(heat[:1], clip.shape[0], axis=0)
        shown = _display(clip)
        heat = np.stack([cv2.resize(h, shown.shape[2:0:-1]) for h in heat])
        rows.append(np.concatenate([shown, overlay_heat(shown, heat)], axis=2))
    return rows


def write_explanation(
    out_dir: str | Path,
    name: str,
    frames: dict[str, np.ndarray],
    explanation: Explanation,
    class_names: Sequence[str],
    *,
    fps: float,
) -> tuple[Path, Path]:
    """``<name>_gradcam.mp4`` (each frame: clip | overlay per stream, streams stacked, top-3
    classes and the explained class drawn) and ``<name>_gradcam.png`` (a strip of
    ``STRIP_FRAMES`` overlays per stream); ``name`` made a safe file name by
    :func:`export.render.output_name`. ``frames[stream]``: (T, H, W, 3) uint8 RGB shown for
    that stream (flow already coloured by :func:`flow_to_rgb`)."""
    out_dir, name = Path(out_dir), output_name(name)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = _panels(frames, explanation)
    length = min(len(row) for row in rows)
    width = max(row.shape[2] for row in rows)
    rows = [np.pad(r[:length], ((0, 0), (0, 0), (0, width - r.shape[2]), (0, 0))) for r in rows]
    video = np.concatenate(rows, axis=1)  # (T, sum H, W, 3)
    top = [(str(class_names[i]) if i < len(class_names) else str(i), float(explanation.probs[i]))
           for i in np.argsort(-explanation.probs, kind="stable")[:3]]  # fmt: skip
    target = explanation.target
    label = class_names[target] if target < len(class_names) else str(target)
    caption = f"Grad-CAM: {label} (p={explanation.probs[target]:.2f}), {' | '.join(frames)}"
    mp4 = out_dir / f"{name}_gradcam.mp4"
    with Mp4Writer(mp4, fps) as writer:
        for frame in video:
            writer.write(draw_caption(draw_topk(frame, top), caption))
    picks = np.linspace(0, length - 1, min(STRIP_FRAMES, length)).round().astype(int)
    strip = np.concatenate(
        [np.concatenate(list(row[picks, :, row.shape[2] // 2 :]), axis=1) for row in rows], axis=0
    )
    png = out_dir / f"{name}_gradcam.png"
    cv2.imwrite(str(png), draw_caption(strip, caption)[..., ::-1])
    return mp4, png


def save_joint_importance(
    path: str | Path,
    explanation: Explanation,
    joint_names: Sequence[str],
    class_names: Sequence[str],
    *,
    fps: float | None = None,
) -> Path:
    """Joint-importance plot: the (T, V) Grad-CAM of :func:`joint_importance` as an image
    (joints down, frames across), beside each joint's mean importance."""
    from matplotlib.figure import Figure

    heat = explanation.maps["joints"]
    frames, joints = heat.shape
    fig = Figure(figsize=(9, max(3.0, 0.2 * joints + 1.2)), dpi=100)
    ax, bars = fig.subplots(1, 2, gridspec_kw={"width_ratios": [5, 1]}, sharey=True)
    extent = (0, frames / fps if fps else frames, joints - 0.5, -0.5)
    image = ax.imshow(heat.T, aspect="auto", cmap="inferno", vmin=0, vmax=1, extent=extent)
    ax.set_yticks(range(joints), labels=list(joint_names), fontsize=7)
    ax.set_xlabel("time (s)" if fps else "frame")
    target = explanation.target
    label = class_names[target] if target < len(class_names) else str(target)
    ax.set_title(f"joint importance for {label} (p={explanation.probs[target]:.2f})", fontsize=9)
    bars.barh(range(joints), heat.mean(axis=0), color="tab:orange")
    bars.set_xlabel("mean")
    fig.colorbar(image, ax=bars, fraction=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
