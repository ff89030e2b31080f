"""What an export needs to know from a checkpoint: the input shape and the eval preprocessing.

Both are derived from the run's stored arguments (``state["args"]``) and the network, using the
first argument name of each row below that the checkpoint has; command-line values win.

A TAO-trained ActionRecognitionNet checkpoint (tao_pytorch_backend, Lightning) has no ActRec
entries: ``foreign_model`` rebuilds it (network, modality, clip shape from its hyper-parameters or
its tensors, or ``--network``), so ``evaluate``, ``inference`` and ``export`` take it too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

__all__ = [
    "LAYOUT_DIMS",
    "check_layout",
    "foreign_model",
    "input_shape_for",
    "normalization_of",
    "preprocess_for",
    "tao_network",
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
    from network import get_entry

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
    from data import transforms

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


# ----------------------------------------------------------------------------- TAO checkpoints
# TAO ActionRecognitionNet's ResNets: (block, blocks per stage) -> depth (tao_pytorch_backend
# resnet3d.py / resnet.py arch_settings)
TAO_DEPTHS = {
    ("basic", (2, 2, 2, 2)): 18,
    ("basic", (3, 4, 6, 3)): 34,
    ("bottleneck", (3, 4, 6, 3)): 50,
    ("bottleneck", (3, 4, 23, 3)): 101,
    ("bottleneck", (3, 8, 36, 3)): 152,
}
# TAO's names for the input modality (model_type) -> ActRec's --modality
TAO_MODALITIES = {"rgb": "rgb", "of": "flow", "joint": "joint"}
# TAO's joint model streams
TAO_STREAMS = {"rgb": "model_rgb.", "flow": "model_of."}
# in channels of a 3D stream's first convolution -> modality, and back
CHANNEL_MODALITIES = {3: "rgb", 2: "flow"}
MODALITY_CHANNELS_TAO = {"rgb": 3, "flow": 2}


def _tao_spec(raw: Mapping[str, Any]) -> tuple[dict, dict]:
    """(model config, dataset config) from Lightning ``hyper_parameters`` (TAO ≥ 5 ``model`` /
    ``dataset`` or TAO 4 ``model_config`` / ``dataset_config``); empty when absent."""
    hyper = raw.get("hyper_parameters") or {}
    spec = hyper.get("experiment_spec", hyper) if isinstance(hyper, Mapping) else {}
    if not isinstance(spec, Mapping):
        return {}, {}
    model = spec.get("model") or spec.get("model_config") or {}
    dataset = spec.get("dataset") or spec.get("dataset_config") or {}
    return dict(model) if isinstance(model, Mapping) else {}, (
        dict(dataset) if isinstance(dataset, Mapping) else {}
    )


def _tao_stream(tensors: Mapping[str, Any], source: str) -> tuple[str, int, int]:
    """(ActRec network, first-conv in channels, classes) of one TAO ResNet's tensors."""
    conv1 = tensors.get("conv1.weight")
    head = tensors.get("fc_cls.weight")
    if conv1 is None or head is None:
        raise ValueError(f"{source}: not a TAO ActionRecognitionNet ResNet (no conv1 / fc_cls)")
    from network.weights import stage_depths

    block = "bottleneck" if "layer1.0.conv3.weight" in tensors else "basic"
    counts = stage_depths(dict(tensors))
    depth = TAO_DEPTHS.get((block, counts))
    if depth is None:
        raise ValueError(f"{source}: a TAO ResNet with {block} blocks {counts}: no such depth")
    name = f"tao_r3d_{depth}" if conv1.ndim == 5 else f"resnet2d_{depth}"
    return name, int(conv1.shape[1]), int(head.shape[0])


def _stacked(channels: int, modality: str | None, length: int | None) -> tuple[str, int]:
    """(modality, frames) of a 2D stream whose first conv takes ``channels`` = C·T channels."""
    if modality is None:  # no spec: C·T divisible by 3 reads as RGB (TAO's default modality)
        modality = "rgb" if channels % 3 == 0 else "flow"
    per_frame = MODALITY_CHANNELS_TAO[modality]
    if channels % per_frame or (length is not None and length * per_frame != channels):
        raise ValueError(f"a 2D {modality} stream with {channels} input channels: T unknown")
    return modality, channels // per_frame


def _stream_kwargs(
    tensors: Mapping[str, Any], source: str, modality: str | None, length: int | None
) -> tuple[str, dict[str, Any], str, int | None]:
    """(network, kwargs, modality, frames or None) of one TAO stream."""
    name, channels, classes = _tao_stream(tensors, source)
    kwargs: dict[str, Any] = {"num_classes": classes}
    if name.startswith("resnet2d_"):
        modality, frames = _stacked(channels, modality, length)
        kwargs |= {"in_channels": MODALITY_CHANNELS_TAO[modality], "num_frames": frames}
        return name, kwargs, modality, frames
    if channels not in CHANNEL_MODALITIES:
        raise ValueError(f"{source}: a 3D stream with {channels} input channels")
    kwargs["in_channels"] = channels
    return name, kwargs, CHANNEL_MODALITIES[channels], length


def tao_network(
    raw: Mapping[str, Any], tensors: Mapping[str, Any], source: str, network: str | None = None
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(network, build kwargs, train args) for a TAO ActionRecognitionNet checkpoint.

    Read from the Lightning ``hyper_parameters`` where the checkpoint has them, else from the
    tensors: 2D or 3D from the first conv, depth from the blocks per stage, classes from
    ``fc_cls``, modality from the input channels, joint from ``model_rgb``/``model_of``. A 2D
    stream's C·T channels read as RGB when divisible by 3, unless the spec says otherwise.
    ``network`` (``--network``) replaces the network read from the tensors (each stream's, for a
    joint checkpoint); ``load_pretrained`` then refuses it unless every tensor fits.
    """
    model_config, _ = _tao_spec(raw)
    spec_type = TAO_MODALITIES.get(str(model_config.get("model_type", "")).lower())
    rgb_len, of_len = model_config.get("rgb_seq_length"), model_config.get("of_seq_length")
    if any(key.startswith(TAO_STREAMS["rgb"]) for key in tensors):
        streams = {}
        for modality, prefix in TAO_STREAMS.items():
            part = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            length = rgb_len if modality == "rgb" else of_len
            streams[modality] = _stream_kwargs(part, source, modality, length)
        (rgb, rgb_kw, _, rgb_frames), (flow, _, _, of_frames) = streams["rgb"], streams["flow"]
        kwargs = {
            "num_classes": rgb_kw["num_classes"],
            "rgb_network": network if network and network != "joint" else rgb,
            "of_network": network if network and network != "joint" else flow,
            "num_fc": int(tensors["fc1.weight"].shape[0]),
            "rgb_frames": rgb_frames or 16,
            "of_frames": of_frames or 16,
        }
        args = {"modality": "joint", "clip_length": rgb_frames, "flow_clip_length": of_frames}
        return "joint", kwargs, {k: v for k, v in args.items() if v is not None}
    length = of_len if spec_type == "flow" else rgb_len
    name, kwargs, modality, frames = _stream_kwargs(tensors, source, spec_type, length)
    if network:
        from network import get_entry

        if get_entry(network).input_layout != "NCHW":
            kwargs.pop("num_frames", None)
        name = network
    args = {"modality": modality, "clip_length": frames}
    return name, kwargs, {k: v for k, v in args.items() if v is not None}


def _tao_train_args(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Crop size and normalisation from the spec's dataset config, where present."""
    _, dataset = _tao_spec(raw)
    augment = dataset.get("augmentation_config") or {}
    found = {
        "clip_size": (dataset.get("output_shape") or [None])[0],
        "rgb_mean": augment.get("rgb_input_mean"),
        "rgb_std": augment.get("rgb_input_std"),
        "of_mean": augment.get("of_input_mean"),
        "of_std": augment.get("of_input_std"),
    }
    return {key: value for key, value in found.items() if value is not None}


def _tao_class_names(raw: Mapping[str, Any], num_classes: int) -> list[str]:
    """The spec's ``label_map`` (name -> index) in index order, else class_0 … class_{n-1}."""
    _, dataset = _tao_spec(raw)
    label_map = dataset.get("label_map") or {}
    if len(label_map) == num_classes:
        return [name for name, _ in sorted(label_map.items(), key=lambda item: int(item[1]))]
    return [f"class_{index}" for index in range(num_classes)]


def is_tao_checkpoint(tensors: Mapping[str, Any]) -> bool:
    """TAO ActionRecognitionNet tensors: its ``fc_cls`` head or its joint model's streams."""
    return any(key.startswith(("fc_cls.", "model_rgb.", "model_of.")) for key in tensors)


def foreign_model(
    path: str | Path, *, family: str | None = None, network: str | None = None
) -> nn.Module | None:
    """A TAO-trained PyTorch checkpoint rebuilt as an ActRec model (eval mode, ``class_names``
    and ``train_args`` set), or ``None`` when ``path`` is not one (an ActRec checkpoint)."""
    import logging

    import torch

    from network import build_model
    from network.weights import (
        ENCRYPTED_SUFFIXES,
        encrypted_model_error,
        load_pretrained,
        read_checkpoint,
    )

    try:
        raw = torch.load(Path(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not a zip checkpoint: load_checkpoint says what it is
        if Path(path).suffix.lower() in ENCRYPTED_SUFFIXES:
            raise encrypted_model_error(path) from None
        return None
    if not isinstance(raw, dict) or "network" in raw:
        return None
    if raw.get("state_dict_encrypted"):
        raise encrypted_model_error(path)
    checkpoint = read_checkpoint(raw)
    if not is_tao_checkpoint(checkpoint.tensors):
        return None
    if family not in (None, "video"):
        raise ValueError(
            f"{path}: a TAO ActionRecognitionNet checkpoint; this command needs a {family!r} model"
        )
    name, kwargs, args = tao_network(raw, checkpoint.tensors, str(path), network)
    model = build_model(name, **kwargs)
    load_pretrained(model, path, inflate=False, log=False)  # refuses anything incomplete
    model.class_names = _tao_class_names(raw, kwargs["num_classes"])
    model.train_args = {**args, **_tao_train_args(raw)}
    log = logging.getLogger(__name__)
    log.info("%s: TAO ActionRecognitionNet checkpoint loaded as %s %s", path, name, kwargs)
    if not _tao_spec(raw)[1].get("label_map"):
        log.warning("%s: no label_map stored; classes are named class_0, class_1, …", path)
    return model.eval()
