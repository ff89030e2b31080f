"""TAO ActionRecognitionNet and PoseClassificationNet checkpoints (tao_pytorch_backend, Lightning)
recognised by content.

``tao_network`` reads the ActRec network, its build kwargs and the run's train arguments from a
TAO checkpoint: from the Lightning ``hyper_parameters`` where present, else from the tensors (2D or
3D from the first conv, depth from the blocks per stage, classes from ``fc_cls``, modality from the
input channels, joint from ``model_rgb``/``model_of``). ``tao_pose_network`` does the same for an
ST-GCN (TAO's ``pose_classification``, or the yysijie/mmskeleton code it ports): block widths,
input channels, classes, edge-importance weights and the graph that reproduces the stored
adjacency ``A``. ``network.foreign`` builds the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from network.graph import find_graph, get_layout
from network.registry import get_entry
from network.stages import stage_depths
from network.stgcn import STAGES

__all__ = [
    "is_tao_checkpoint",
    "is_tao_pose_checkpoint",
    "tao_class_names",
    "tao_network",
    "tao_pose_network",
    "tao_spec",
    "tao_train_args",
]

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


def tao_spec(raw: Mapping[str, Any]) -> tuple[dict, dict]:
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
    model_config, _ = tao_spec(raw)
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
        if get_entry(network).input_layout != "NCHW":
            kwargs.pop("num_frames", None)
        name = network
    args = {"modality": modality, "clip_length": frames}
    return name, kwargs, {k: v for k, v in args.items() if v is not None}


def tao_train_args(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Crop size and normalisation from the spec's dataset config, where present."""
    _, dataset = tao_spec(raw)
    augment = dataset.get("augmentation_config") or {}
    found = {
        "clip_size": (dataset.get("output_shape") or [None])[0],
        "rgb_mean": augment.get("rgb_input_mean"),
        "rgb_std": augment.get("rgb_input_std"),
        "of_mean": augment.get("of_input_mean"),
        "of_std": augment.get("of_input_std"),
    }
    return {key: value for key, value in found.items() if value is not None}


def tao_class_names(raw: Mapping[str, Any], num_classes: int) -> list[str]:
    """The spec's ``label_map`` (name -> index) in index order, else class_0 … class_{n-1}."""
    _, dataset = tao_spec(raw)
    label_map = dataset.get("label_map") or {}
    if len(label_map) == num_classes:
        return [name for name, _ in sorted(label_map.items(), key=lambda item: int(item[1]))]
    return [f"class_{index}" for index in range(num_classes)]


def is_tao_checkpoint(tensors: Mapping[str, Any]) -> bool:
    """TAO ActionRecognitionNet tensors: its ``fc_cls`` head or its joint model's streams."""
    return any(key.startswith(("fc_cls.", "model_rgb.", "model_of.")) for key in tensors)


# ----------------------------------------------------------------------------- ST-GCN
# tensors every ST-GCN state dict holds (TAO st_gcn.py and the yysijie code share the names)
POSE_TENSORS = ("data_bn.weight", "st_gcn_networks.0.gcn.conv.weight", "fcn.weight")


def is_tao_pose_checkpoint(tensors: Mapping[str, Any]) -> bool:
    """ST-GCN tensors as TAO's PoseClassificationNet (and the code it ports) names them."""
    return all(name in tensors for name in POSE_TENSORS)


def _pose_widths(tensors: Mapping[str, Any]) -> tuple[int, ...]:
    """Output channels of each ST-GCN block (its first temporal BatchNorm), in order."""
    widths = []
    while (bn := tensors.get(f"st_gcn_networks.{len(widths)}.tcn.0.weight")) is not None:
        widths.append(int(bn.shape[0]))
    return tuple(widths)


def _pose_variant(tensors: Mapping[str, Any], source: str) -> str:
    """The registered ST-GCN variant whose block widths the tensors have."""
    widths = _pose_widths(tensors)
    for name, stages in STAGES.items():
        if tuple(width for width, _ in stages) == widths:
            return name
    raise ValueError(f"{source}: an ST-GCN with block widths {list(widths)}: no such network")


def _pose_graph(
    tensors: Mapping[str, Any], model_config: Mapping[str, Any], source: str
) -> dict[str, Any]:
    """Graph kwargs whose adjacency equals the stored ``A`` (the spec's graph is preferred)."""
    prefer = {
        key: model_config[spec_key]
        for key, spec_key in (
            ("graph_layout", "graph_layout"),
            ("graph_strategy", "graph_strategy"),
        )
        if model_config.get(spec_key)
    }
    stored = tensors.get("A")
    if stored is None:  # no adjacency stored: the spec's graph, TAO's defaults else
        layout = prefer.get("graph_layout", "nvidia")
        return {"graph_layout": layout, "graph_strategy": prefer.get("graph_strategy", "spatial"),
                "graph_legacy": True}  # fmt: skip
    adjacency = stored.detach().cpu().float().numpy()
    graph = find_graph(adjacency, prefer={**prefer, "graph_legacy": True})
    if graph is None:
        raise ValueError(
            f"{source}: its adjacency A {tuple(np.shape(adjacency))} equals no graph ActRec "
            "builds (layouts nvidia, openpose, human3.6m, ntu-rgb+d, ntu_edge, coco)"
        )
    return graph


def tao_pose_network(
    raw: Mapping[str, Any], tensors: Mapping[str, Any], source: str, network: str | None = None
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(network, build kwargs, train args) for an ST-GCN checkpoint of TAO PoseClassificationNet.

    Block widths pick the variant (``network`` replaces it), ``data_bn`` gives the input channels
    (V·C features), ``fcn`` the classes, ``edge_importance.*`` the edge weighting, and the stored
    adjacency ``A`` the graph (layout, strategy, truncated distances). The train args hold TAO's
    export input: ``seq_length`` and ``num_person`` of the layout (300 frames; M = 2 for NTU).
    """
    model_config, _ = tao_spec(raw)
    graph = _pose_graph(tensors, model_config, source)
    joints = get_layout(graph["graph_layout"]).num_joints
    features = int(tensors["data_bn.weight"].shape[0])
    if features % joints:
        raise ValueError(f"{source}: data_bn has {features} features, not a multiple of {joints}")
    kwargs = {
        "num_classes": int(tensors["fcn.weight"].shape[0]),
        "in_channels": features // joints,
        "edge_importance_weighting": any(k.startswith("edge_importance.") for k in tensors),
        **graph,
    }
    if model_config.get("dropout") is not None:
        kwargs["dropout"] = float(model_config["dropout"])
    layout = get_layout(graph["graph_layout"])
    args = {"seq_length": layout.seq_length, "num_person": layout.num_person}
    return network or _pose_variant(tensors, source), kwargs, args
