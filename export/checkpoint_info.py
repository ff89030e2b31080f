"""What an export needs to know from a checkpoint: the input shape and the eval preprocessing.

Both are derived from the run's stored arguments (``state["args"]``) and the network, using the
first argument name of each row below that the checkpoint has; command-line values win.

A TAO-trained checkpoint has no stored arguments: ``network.foreign.foreign_model`` rebuilds it
and sets ``model.train_args`` from its spec, which the rows below read like an ActRec run's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from data.video import transforms
from network import get_entry

__all__ = [
    "LAYOUT_DIMS",
    "check_layout",
    "input_shape_for",
    "normalization_of",
    "preprocess_for",
]

# input layout -> dims of each input without the batch axis
LAYOUT_DIMS = {
    "NCTHW": ((4,),),
    "NCHW": ((3,),),
    "NCTVM": ((4,),),
    "joint": ((4, 4), (3, 3), (4, 3), (3, 4)),  # (rgb, flow), each stream 3D or 2D
}

# setting -> (argument names tried in order, default)
VIDEO_ARGS: dict[str, tuple[tuple[str, ...], Any]] = {
    "clip_length": (("clip_length", "rgb_seq_length", "num_frames", "rgb_frames"), 16),
    "flow_length": (("flow_clip_length", "flow_length", "of_seq_length", "of_frames"), None),
    "crop_size": (("clip_size", "crop_size", "input_size"), 112),
    "short_side": (("short_side", "crop_smaller_edge"), None),
    # frame_interval (both subsets) beats val_frame_interval, as in train_hmdb.py
    "sample_rate": (("frame_interval", "val_frame_interval", "sample_rate"), 1),
    "strategy": (("sample_strategy", "strategy"), "consecutive"),
    "center_crop": (("val_center_crop", "center_crop"), True),
    "modality": (("modality",), "rgb"),
    "rgb_mean": (("rgb_mean",), None),
    "rgb_std": (("rgb_std",), None),
    "flow_mean": (("of_mean", "flow_mean"), None),
    "flow_std": (("of_std", "flow_std"), None),
}
# train_hmdb.py's default short side when --short-side is not given: crop × 8/7 (112 -> 128)
SHORT_SIDE_RATIO = 8 / 7
SKELETON_ARGS: dict[str, tuple[tuple[str, ...], Any]] = {
    "seq_length": (("seq_length", "window_size", "sequence_length_max"), 300),
    "num_person": (("num_person", "num_persons"), 1),
    "in_channels": (("in_channels", "input_channels"), 3),
}
GESTURE_ARGS: dict[str, tuple[tuple[str, ...], Any]] = {
    "height": (("image_height", "image_size", "input_size"), 160),
    "width": (("image_width", "image_size", "input_size"), 160),
    "gray_scale": (("gray_scale_input", "gray_scale"), False),
}
# The network's expected input channels per video modality.
VIDEO_CHANNELS = {"rgb": 3, "of": 2, "flow": 2}


def _lookup(args: Mapping[str, Any], table: Mapping[str, tuple[tuple[str, ...], Any]]) -> dict:
    found = {}
    for setting, (names, default) in table.items():
        value = next((args[n] for n in names if args.get(n) is not None), default)
        if value is not None:
            found[setting] = value
    return found


def _pair(value: int | Sequence[int]) -> list[int]:
    return [int(value)] * 2 if isinstance(value, int | float) else [int(v) for v in value]


def _stream_shape(stream: nn.Module | None, channels: int, length: int, hw: list[int]) -> tuple:
    """(C, T, H, W) for a 3D network, (C·T, H, W) for a 2D one (its own T: the first conv needs it)."""
    if stream is not None and _layout_of(stream) == "NCHW":
        frames = int(getattr(stream, "num_frames", length))
        return (channels * frames, *hw)
    return (channels, length, *hw)


def _layout_of(model: nn.Module) -> str | None:
    name = getattr(model, "network_name", None)
    return get_entry(name).input_layout if name else None


def _video_shape(settings: dict, model: nn.Module) -> list[tuple[int, ...]]:
    length, hw = int(settings["clip_length"]), _pair(settings["crop_size"])
    if _layout_of(model) == "joint":
        flow_length = int(settings.get("flow_length", length))
        return [
            _stream_shape(getattr(model, "rgb", None), 3, length, hw),
            _stream_shape(getattr(model, "flow", None), 2, flow_length, hw),
        ]
    modality = "of" if settings["modality"] in ("of", "flow") else "rgb"
    channels = int(getattr(model, "in_channels", None) or VIDEO_CHANNELS[modality])
    return [_stream_shape(model, channels, length, hw)]


def _skeleton_joints(model: nn.Module) -> int:
    graph = getattr(model, "graph", None)
    adjacency = getattr(graph, "A", None)
    if adjacency is None:
        raise ValueError("cannot tell the number of joints of this network; pass --input-shape")
    return int(adjacency.shape[-1])


def input_shape_for(
    family: str, args: Mapping[str, Any], model: nn.Module
) -> list[tuple[int, ...]]:
    """The exported input shape(s), without batch, from the run's arguments and the network
    (its ``network_kwargs`` fill in what the arguments do not say)."""
    kwargs = getattr(model, "network_kwargs", {})
    if family == "video":
        return _video_shape(_lookup({**kwargs, **args}, VIDEO_ARGS), model)
    if family == "skeleton":
        s = _lookup({**args, **kwargs}, SKELETON_ARGS)
        return [
            (
                int(s["in_channels"]),
                int(s["seq_length"]),
                _skeleton_joints(model),
                int(s["num_person"]),
            )
        ]
    if family == "gesture":
        s = _lookup({**kwargs, **args}, GESTURE_ARGS)
        channels = getattr(model, "in_channels", None) or (1 if s["gray_scale"] else 3)
        return [(int(channels), int(s["height"]), int(s["width"]))]
    raise ValueError(f"unknown family {family!r}")


def check_layout(name: str, layout: str, shapes: Sequence[tuple[int, ...]]) -> None:
    """A clear error when the number of inputs or of their dims does not fit the layout."""
    allowed = LAYOUT_DIMS.get(layout)
    got = tuple(len(s) for s in shapes)
    if allowed is not None and got not in allowed:
        want = " or ".join(str(list(dims)) for dims in allowed)
        raise ValueError(
            f"network {name} ({layout}) takes input(s) with {want} dims without the batch; "
            f"got input shape {[list(s) for s in shapes]}"
        )


def _default_normalization() -> dict[str, list[float]]:
    """The eval preset's own defaults, written out so the file states what it expects."""
    return {
        "rgb_mean": list(transforms.IMAGENET_MEAN),
        "rgb_std": list(transforms.IMAGENET_STD),
        "flow_mean": list(transforms.FLOW_MEAN),
        "flow_std": list(transforms.FLOW_STD),
    }


def normalization_of(family: str, preprocess: Mapping[str, Any]) -> dict[str, Any]:
    """The ``normalization`` metadata entry: what is applied to the 0..255 pixels."""
    if family == "video":
        keys = ("rgb_mean", "rgb_std", "flow_mean", "flow_std")
        return {"formula": "(x/255 - mean)/std", **{k: preprocess[k] for k in keys}}
    if family == "gesture":
        return {"formula": "x/127.5 - 1", "mean": [0.5], "std": [0.5]}
    return {"formula": "none (coordinates as stored)"}


def preprocess_for(
    family: str, args: Mapping[str, Any], shapes: Sequence[tuple[int, ...]], layout: str
) -> dict[str, Any]:
    """The evaluation preprocessing, stored in the ONNX metadata for inference from the file."""
    if family == "video":
        settings = _lookup(args, VIDEO_ARGS)
        settings["modality"] = (
            "flow" if settings["modality"] in ("of", "flow") else settings["modality"]
        )
        settings["crop_size"] = list(shapes[0][-2:])
        settings["input_dims"] = [len(shape) - 1 for shape in shapes]  # 3: (C,T,H,W); 2: (C·T,H,W)
        per_frame = VIDEO_CHANNELS.get(settings["modality"], 3)
        settings["clip_length"] = int(
            shapes[0][1] if len(shapes[0]) == 4 else shapes[0][0] // per_frame
        )
        if layout == "joint":
            settings["modality"] = "joint"
            flow = shapes[1]
            settings["flow_length"] = int(flow[1] if len(flow) == 4 else flow[0] // 2)
        settings["short_side"] = int(
            settings.get("short_side") or round(settings["crop_size"][0] * SHORT_SIDE_RATIO)
        )
        return {**_default_normalization(), **settings}
    if family == "gesture":
        return {"image_size": list(shapes[0][1:]), "scale": "x/127.5 - 1"}
    return {"seq_length": int(shapes[0][1])}
