"""Skeleton action recognition (ST-GCN, NVIDIA PoseClassificationNet) on the shared engine.

    python train_nvpose.py demo --out demo_nvpose                   # synth → train → eval → ONNX
    python train_nvpose.py synth --output-dir data/synth
    python train_nvpose.py convert --data poses.json --output-dir data/seq [--labels labels.csv]
    python train_nvpose.py train -e configs/nvpose/experiment_nvidia.yaml \\
        dataset.train_dataset.data_path=data/synth/train_data.npy \\
        dataset.train_dataset.label_path=data/synth/train_label.pkl \\
        dataset.val_dataset.data_path=data/synth/val_data.npy \\
        dataset.val_dataset.label_path=data/synth/val_label.pkl train.num_epochs=20
    python train_nvpose.py train --train-data train_data.npy --train-labels train_label.pkl \\
        --val-data val_data.npy --val-labels val_label.pkl --label-map label_map.json
    python train_nvpose.py evaluate --checkpoint results/best.pth --data val_data.npy \\
        --labels val_label.pkl
    python train_nvpose.py inference --checkpoint results/best.pth --data poses.json \\
        --output-file results/actions.txt                 # + results/poses_actions.json
    python train_nvpose.py export --checkpoint results/best.pth --onnx st_gcn.onnx
    python train_nvpose.py onnx-infer --onnx st_gcn.onnx --input val_data.npy

Every subcommand accepts a TAO ``pose_classification`` spec (``-e spec.yaml``; sections model,
dataset, train, evaluate, inference, export, dataset_convert) and ``key=value`` overrides;
precedence: command line > spec > defaults.
"""

from __future__ import annotations

import argparse
import csv
import inspect
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from data.skeleton import convert as skeleton_convert
from data.skeleton import synthetic as skeleton_synth
from data.skeleton.dataset import (
    SkeletonDataset,
    layout_for_joints,
    ntu_label_map,
    read_label_map,
)
from data.skeleton.formats import is_skeleton_source
from data.skeleton.streams import STREAMS, with_stream
from export import cli as export_cli
from network import build_model, get_entry, list_models
from network.graph import GRAPH_DEFAULTS, LAYOUTS, STRATEGIES, graph_flags, resolve_stored_graph
from safeio.limits import check_label_range, derived_class_count
from train.args import common_parser
from train.config import add_spec_arguments
from train.runner import FamilyScript, command_parser, command_table, run_steps, set_defaults
from train.tao_specs import SKELETON_KEYS, skeleton_spec_map
from train.validation import (
    device,
    fraction,
    log_level,
    non_negative_float,
    non_negative_int,
    positive_int,
    printable,
)

logger = logging.getLogger("train_nvpose")

FAMILY = "skeleton"
# TAO pose_classification spec keys per subcommand: train/tao_specs.py.


# ----------------------------------------------------------------------------- parser
def _spec_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    add_spec_arguments(parent)
    return parent


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model (None: the network's default)")
    group.add_argument("--network", default="st_gcn", choices=list_models(family=FAMILY))
    group.add_argument(
        "--num-classes", type=positive_int, default=None, help="default: from the labels"
    )
    group.add_argument("--in-channels", type=positive_int, default=None)
    group.add_argument("--graph-layout", default=None, help=f"{', '.join(LAYOUTS)} or a .yaml")
    group.add_argument("--graph-strategy", default=None, choices=STRATEGIES)
    group.add_argument(
        "--graph-legacy",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the reference's truncated hop distances (for its published checkpoints)",
    )
    group.add_argument("--edge-importance-weighting", action=argparse.BooleanOptionalAction)
    group.add_argument("--dropout", type=fraction, default=None)
    group.add_argument("--stream", choices=STREAMS, default="j", help=STREAM_HELP)


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument(
        "--train-data",
        "--data",
        dest="train_data",
        default=None,
        help="(N, C, T, V, M) .npy, a pyskl/MMAction2 .pkl, or NTU .skeleton file(s)",
    )
    group.add_argument(
        "--train-labels", default=None, help="TAO .pkl, .json or .csv (.npy data only)"
    )
    group.add_argument("--split", default=None, help="pyskl/NTU training split, e.g. xsub_train")
    group.add_argument(
        "--val-split", default=None, help="validation split (of --val-data, default --data)"
    )
    group.add_argument(
        "--keypoint-score",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="pyskl 2D: the keypoint score as one more input channel",
    )
    group.add_argument("--val-data", default=None)
    group.add_argument("--val-labels", default=None)
    group.add_argument("--label-map", default=None, help="JSON file {class: id}")
    group.add_argument("--window-size", type=int, default=-1, help="train: pad (or crop) to T")
    group.add_argument("--random-choose", action=argparse.BooleanOptionalAction, default=False)
    group.add_argument("--random-move", action=argparse.BooleanOptionalAction, default=False)
    group.add_argument(
        "--rotate-3d", type=non_negative_float, default=0.0, help="train: ± degrees about y"
    )
    group.add_argument("--scale-3d", type=fraction, default=0.0, help="train: scale 1 ± this")


STREAM_HELP = "input stream: joint, bone, joint motion, bone motion (pyskl's GenSkeFeat)"


def _add_checkpoint_input(parser: argparse.ArgumentParser, *, labels: bool) -> None:
    parser.add_argument(
        "--checkpoint",
        default=None,
        nargs="+" if labels else None,
        help="required (flag or spec); evaluate: several checkpoints fuse their scores",
    )
    parser.add_argument(
        "--stream", choices=STREAMS, default=None, help="default: the checkpoint's own stream"
    )
    parser.add_argument(
        "--data", default=None,
        help=".npy, a pyskl .pkl or NTU .skeleton file(s); inference: also deepstream JSON",
    )  # fmt: skip
    parser.add_argument("--split", default=None, help="pyskl/NTU split, e.g. xsub_val")
    if labels:
        parser.add_argument("--labels", default=None)
        parser.add_argument(
            "--label-map", default=None,
            help="JSON {class: id} or .txt: class names for a checkpoint that holds only class_<i>",
        )  # fmt: skip
        parser.add_argument(
            "--fusion-weights", type=float, nargs="+", default=None,
            help="one weight per --checkpoint: fused score = sum of weight x mean softmax "
            "(pyskl 4-stream: j b jm bm with 2 2 1 1; default all 1)",
        )  # fmt: skip


# Defaults of one subcommand that differ from ``train.args.common_parser``'s; each subcommand gets
# its own parent parsers, so a default set here cannot reach another subcommand.
COMMAND_DEFAULTS: dict[str, dict[str, Any]] = {
    "train": {"end_epoch": 70, "lr_base": 0.1, "lr_steps": [10, 60], "batch_size": 16,
              "nesterov": True},
}  # fmt: skip


def get_args_parser() -> argparse.ArgumentParser:
    """The ``train_nvpose.py`` parser with one subparser per command."""
    parser, commands = command_parser(__doc__.splitlines()[0], __doc__.split("\n", 2)[2])
    synth = commands.add_parser("synth", parents=[_spec_parent()], help="synthetic data")
    skeleton_synth.add_arguments(synth)
    convert = commands.add_parser(
        "convert", parents=[_spec_parent()], help="deepstream JSON → sequences"
    )
    skeleton_convert.add_arguments(convert)
    train = commands.add_parser("train", parents=[common_parser()], help="train a network")
    _add_model_arguments(train)
    _add_data_arguments(train)
    evaluate = commands.add_parser(
        "evaluate", parents=[common_parser()], help="accuracy of a checkpoint"
    )
    _add_checkpoint_input(evaluate, labels=True)
    inference = commands.add_parser(
        "inference", parents=[common_parser()], help="class per sequence"
    )
    _add_checkpoint_input(inference, labels=False)
    _add_inference_arguments(inference)
    explain_help = "Grad-CAM per joint and frame of one sequence: a joint-importance plot"
    explain = commands.add_parser("explain", parents=[common_parser()], help=explain_help)
    _add_checkpoint_input(explain, labels=False)
    _add_explain_arguments(explain)
    export_cli.add_subcommands(commands, family=FAMILY, parents=lambda: [_spec_parent()])
    quantize = commands.add_parser(
        "quantize", parents=[_spec_parent()], help="INT8 ONNX + FP32/INT8 accuracy"
    )
    _add_quantize_arguments(quantize)
    demo = commands.add_parser("demo", help="synth → train → evaluate → export")
    _add_demo_arguments(demo)
    set_defaults(commands, COMMAND_DEFAULTS)
    return parser


def _add_inference_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = skeleton_convert.ConvertSettings()
    parser.add_argument("--output-file", default=None, help="default: <output-dir>/actions.txt")
    parser.add_argument("--pose-type", choices=list(skeleton_convert.POSE_TYPES), default="3dbp")
    parser.add_argument("--sequence-length", type=positive_int, default=defaults.sequence_length)
    skeleton_convert.add_window_arguments(parser)
    parser.add_argument(
        "--render", default=None, metavar="DIR",
        help="also draw each sequence as a skeleton video DIR/sequence_<i>.mp4 with its class",
    )  # fmt: skip


def _add_explain_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Grad-CAM")
    group.add_argument(
        "--sequence", type=non_negative_int, default=0, help="which sequence of --data"
    )
    group.add_argument("--target", default=None, help="class name or index (default: predicted)")
    group.add_argument("--out", required=True, help="output folder")


def _add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo_nvpose", help="working folder")
    parser.add_argument("--epochs", type=positive_int, default=12, help="training epochs")
    parser.add_argument("--samples-per-class", type=positive_int, default=40)
    parser.add_argument(
        "--workers", type=non_negative_int, default=0, help="DataLoader worker processes"
    )
    parser.add_argument("--device", type=device, default="cpu")
    parser.add_argument(
        "--log-level", type=log_level, default="WARNING", help="console logging level"
    )


def _add_quantize_arguments(parser: argparse.ArgumentParser) -> None:
    export_cli.add_quantize_arguments(parser)
    parser.add_argument("--train-data", required=True, help="calibration .npy (N, C, T, V, M)")
    parser.add_argument("--val-data", default=None, help="comparison .npy")
    parser.add_argument("--val-labels", default=None, help="labels of --val-data")
    parser.add_argument("--log-level", type=log_level, default="INFO")


# ----------------------------------------------------------------------------- helpers
def class_names_of(
    label_map: dict[str, int] | None,
    num_classes: int | None,
    labels: Sequence[int],
    dataset: SkeletonDataset | None = None,
) -> list[str]:
    """Class names by id: from the label map, else ``class_<i>`` for max(label)+1 classes (a
    count refused when it is implausible for ``dataset``'s file, naming the sample)."""
    if label_map:
        return sorted(label_map, key=label_map.__getitem__)
    source = _label_source(dataset) if dataset is not None else "labels"
    names = dataset.sample_names if dataset is not None else None
    count = num_classes or derived_class_count(labels, source, names)
    if count < 1:
        raise ValueError("no class names: give --label-map or --num-classes, or labelled data")
    return [f"class_{index}" for index in range(count)]


def _label_source(dataset: SkeletonDataset) -> str:
    return str(getattr(dataset, "label_path", None) or dataset.data_path)


def _ntu_label_map(dataset: SkeletonDataset, num_classes: int | None) -> dict[str, int] | None:
    """NTU RGB+D action names for data named and labelled as NTU RGB+D (no --label-map given)."""
    found = ntu_label_map(dataset.sample_names, dataset.labels, num_classes)
    if found:
        logger.info("%s: NTU RGB+D samples; classes named from the NTU RGB+D %d action list",
                    dataset.data_path, 60 if len(found) <= 60 else 120)  # fmt: skip
    return found


def _need(args: argparse.Namespace, *names: str) -> None:
    missing = [name for name in names if getattr(args, name, None) in (None, "")]
    if missing:
        flags = ", ".join("--" + name.replace("_", "-") for name in missing)
        raise SystemExit(f"error: {args.command} needs {flags} (or the spec entries for them)")


def _train_datasets(
    args: argparse.Namespace, label_map: dict[str, int] | None
) -> tuple[SkeletonDataset, SkeletonDataset | None]:
    num_classes = args.num_classes or (len(label_map) if label_map else None)
    source = {"keypoint_score": args.keypoint_score}
    train_set = SkeletonDataset(
        args.train_data, args.train_labels, label_map=label_map, num_classes=num_classes,
        window_size=args.window_size, random_choose=args.random_choose,
        random_move=args.random_move, rotate_3d=args.rotate_3d, scale_3d=args.scale_3d,
        split=args.split, **source,
    )  # fmt: skip
    val_set = None
    val_data = args.val_data or (args.train_data if args.val_split else None)
    if val_data:
        val_set = SkeletonDataset(val_data, args.val_labels, label_map=label_map,
                                  num_classes=num_classes, split=args.val_split, **source)  # fmt: skip
    layout = _stream_layout(args)
    val_set = with_stream(val_set, args.stream, layout) if val_set is not None else None
    return with_stream(train_set, args.stream, layout), val_set


def _stream_layout(args: argparse.Namespace) -> Any:
    """The layout whose bones ``--stream`` uses: --graph-layout, else the network's default."""
    if args.graph_layout:
        return args.graph_layout
    return inspect.signature(get_entry(args.network).builder).parameters["graph_layout"].default


def _stream_of(args: argparse.Namespace, model: Any, source: str) -> str:
    """The checkpoint's training stream; ``--stream`` only for a checkpoint that records none."""
    recorded = model.train_args.get("stream")
    if args.stream and recorded and args.stream != recorded:
        raise ValueError(
            f"{source}: trained on the {recorded!r} stream; --stream {args.stream} would feed it "
            "another input (leave --stream out)"
        )
    return recorded or args.stream or "j"


def _adopt_stored_graph(args: argparse.Namespace) -> None:
    """A ``--pretrained`` file that stores its adjacency ``A`` (TAO ST-GCN) sets the graph: flags
    left unset take the graph that reproduces ``A`` (logged); a contradicting flag is refused."""
    if not args.pretrained or not _takes(args.network, "graph_strategy"):
        return  # only ST-GCN's graph is rebuilt from a stored A (pyskl networks learn theirs)
    from network.weights import read_checkpoint

    stored = read_checkpoint(args.pretrained).tensors.get("A")
    if stored is None:
        return
    requested = {key: getattr(args, key, None) for key in GRAPH_DEFAULTS}
    graph = resolve_stored_graph(stored.float().numpy(), requested, source=args.pretrained)
    configured = {key: GRAPH_DEFAULTS[key] if value is None else value
                  for key, value in requested.items()}  # fmt: skip
    if graph != configured:
        logger.info("%s: its adjacency A is the graph %s; using it", args.pretrained,
                    graph_flags(graph))  # fmt: skip
    vars(args).update(graph)


def _takes(network: str, argument: str) -> bool:
    return argument in inspect.signature(get_entry(network).builder).parameters


def _build_network(args: argparse.Namespace, class_names: list[str], shape: tuple) -> Any:
    channels = shape[0]
    _adopt_stored_graph(args)
    _layout_from_joints(args, shape)
    model = build_model(
        args.network, num_classes=len(class_names), in_channels=args.in_channels or channels,
        graph_layout=args.graph_layout, graph_strategy=args.graph_strategy,
        graph_legacy=args.graph_legacy,
        edge_importance_weighting=args.edge_importance_weighting, dropout=args.dropout,
    )  # fmt: skip
    _check_poses(model, shape, args.train_data)
    return model


def _layout_from_joints(args: argparse.Namespace, shape: tuple) -> None:
    """No --graph-layout: the one built-in layout with the data's V joints (logged when it is not
    the network's default); several or none is one line naming them."""
    if args.graph_layout is None:
        args.graph_layout = layout_for_joints(shape[2], args.train_data)
        if args.graph_layout != GRAPH_DEFAULTS["graph_layout"]:
            logger.info("%s: %d joints per pose: --graph-layout %s", args.train_data, shape[2],
                        args.graph_layout)  # fmt: skip


def _check_poses(model: Any, shape: tuple, source: str) -> None:
    """(C, T, V, M) sequences fit the network: V joints of its graph, C input channels."""
    channels, _, joints, _ = shape
    expected = model.A.shape[-1]
    if joints != expected:
        raise ValueError(
            f"{source}: {joints} joints per pose, but the network's graph layout "
            f"{model.graph.layout.name!r} has {expected}"
        )
    wanted = getattr(model, "in_channels", None) or model.data_bn.num_features // expected
    if channels != wanted:
        raise ValueError(f"{source}: {channels} channels per joint, but the network takes {wanted}")
    persons = getattr(model, "num_person", 0)  # CTR-GCN's data BN spans a fixed person count
    if persons and shape[3] > persons:
        raise ValueError(
            f"{source}: {shape[3]} persons per sample, but the network takes {persons}"
        )


def _labelled_dataset(
    args: argparse.Namespace, class_names: list[str], model: Any
) -> SkeletonDataset:
    """A labelled .npy, pyskl pickle or NTU .skeleton data; deepstream JSON carries no classes
    (``convert --labels`` makes a set). The score channel follows the training run."""
    data = args.data
    if Path(data).suffix.lower() != ".npy" and not _has_skeleton_files(data):
        raise ValueError(
            f"{data}: evaluate needs labelled .npy sequences, a pyskl pickle or NTU .skeleton "
            "files (deepstream JSON has no classes: run `convert --labels`, or `inference`)"
        )
    label_map = {name: index for index, name in enumerate(class_names)}
    return SkeletonDataset(data, args.labels, label_map=label_map, num_classes=len(class_names),
                           **_source_options(args, model))  # fmt: skip


def _source_options(args: argparse.Namespace, model: Any) -> dict[str, Any]:
    """``split`` and, for pyskl/NTU data, the score channel as the checkpoint was trained."""
    npy = Path(args.data).suffix.lower() == ".npy"
    score = bool(model.train_args.get("keypoint_score")) and not npy
    return {"split": args.split, "keypoint_score": score}


def _has_skeleton_files(data: str) -> bool:
    """A pyskl pickle, an NTU .skeleton file, or a folder holding .skeleton files."""
    path = Path(data)
    return is_skeleton_source(path) and (not path.is_dir() or any(path.glob("*.skeleton")))


def _trained_frames(model: Any) -> int:
    """The T the network was trained with (``load_model``'s ``train_args``), default 300."""
    return int(model.train_args.get("seq_length") or 300)


# ----------------------------------------------------------------------------- commands
def cmd_synth(args: argparse.Namespace) -> int:
    """Write a synthetic dataset (deepstream JSON, npy + pkl)."""
    return skeleton_synth.run(args)


def cmd_convert(args: argparse.Namespace) -> int:
    """deepstream-bodypose-3d JSON → per-object sequences (+ training set with --labels)."""
    _need(args, "data", "output_dir")
    return skeleton_convert.run(args)


def cmd_train(args: argparse.Namespace) -> int:
    """Train on the shared engine."""
    from train.engine import describe_best, fit

    # pyskl and NTU files carry their labels
    carried = bool(args.train_data) and is_skeleton_source(args.train_data)
    _need(args, "train_data", *(() if carried else ("train_labels",)))
    label_map = read_label_map(args.label_map)
    train_set, val_set = _train_datasets(args, label_map)
    label_map = label_map or _ntu_label_map(train_set, args.num_classes)
    class_names = class_names_of(label_map, args.num_classes, train_set.labels, train_set)
    if val_set is not None:
        check_label_range(val_set.labels, len(class_names), _label_source(val_set),
                          val_set.sample_names)  # fmt: skip
    model = _build_network(args, class_names, train_set.shape)
    _, frames, _, persons = train_set.shape
    # stored in args.yaml and the checkpoint: export and inference use the trained T and M
    args.seq_length = args.window_size if args.window_size > 0 else frames
    args.num_person = persons
    summary = fit(model, train_set, val_set, args, family=FAMILY, class_names=class_names)
    logger.info("%s", describe_best(summary))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """TAO-style evaluation of a checkpoint (confusion matrix in --output-dir)."""
    from train import engine

    _need(args, "checkpoint", "data")
    checkpoints = [args.checkpoint] if isinstance(args.checkpoint, str) else list(args.checkpoint)
    if len(checkpoints) > 1 or args.fusion_weights is not None:
        return _evaluate_fusion(args, checkpoints)
    args.checkpoint = checkpoints[0]
    model, dataset, names = _evaluation_input(args, checkpoints[0])
    result = engine.evaluate(model, dataset, args, class_names=names, output_dir=args.output_dir)
    print(f"accuracy {100 * result.clip_top1:.2f}%, mean class accuracy "
          f"{100 * result.mean_class_accuracy:.2f}% on {result.num_clips} sequences")  # fmt: skip
    return 0


def _evaluation_input(args: argparse.Namespace, checkpoint: str) -> tuple[Any, Any, list[str]]:
    """(model, labelled dataset in the checkpoint's stream, class names) of one checkpoint."""
    from train.checkpoint import load_model

    model = load_model(checkpoint, family=FAMILY)
    names = _evaluation_names(args, list(model.class_names or []), checkpoint)
    dataset = _labelled_dataset(args, names, model)
    _check_poses(model, dataset.shape, args.data)
    stream = _stream_of(args, model, checkpoint)
    return model, with_stream(dataset, stream, model.graph.layout), names


def _evaluation_names(args: argparse.Namespace, stored: list[str], checkpoint: str) -> list[str]:
    """The checkpoint's class names, or those of --label-map where it holds only ``class_<i>``
    (a map of another class count, or other names than the checkpoint's own, is refused)."""
    label_map = read_label_map(getattr(args, "label_map", None))
    if not label_map:
        return stored
    given = class_names_of(label_map, None, [])
    if stored and len(given) != len(stored):
        raise ValueError(
            f"{args.label_map}: {len(given)} classes, but {checkpoint} has {len(stored)}"
        )
    generic = [f"class_{index}" for index in range(len(stored))]
    if stored and stored not in (generic, given):
        raise ValueError(
            f"{args.label_map}: its names differ from those stored in {checkpoint} "
            f"({printable(', '.join(stored[:3]))}, ...)"
        )
    return given


def _evaluate_fusion(args: argparse.Namespace, checkpoints: list[str]) -> int:
    """Every checkpoint on its own stream, then the weighted sum of their per-sample scores."""
    from train.fusion import FusionInput, check_fusion_weights, evaluate_fusion

    weights = check_fusion_weights(checkpoints, args.fusion_weights)
    inputs = []
    for path in checkpoints:
        model, dataset, own_names = _evaluation_input(args, path)
        if not inputs:
            names = own_names  # the first checkpoint's
        inputs.append(FusionInput(path, model, dataset, dict(enumerate(dataset.labels))))
    result, singles = evaluate_fusion(inputs, weights, args, class_names=names,
                                      output_dir=args.output_dir)  # fmt: skip
    for item, weight, single in zip(inputs, weights, singles):
        stream = _stream_of(args, item.model, item.name)
        print(f"{printable(item.name)} ({stream}, weight {weight:g}): accuracy "
              f"{100 * single.video_top1:.2f}%")  # fmt: skip
    print(f"fused accuracy {100 * result.video_top1:.2f}%, mean class accuracy "
          f"{100 * result.mean_class_accuracy:.2f}% on {result.num_videos} sequences")  # fmt: skip
    return 0


def _annotate_json(
    sequences: list[skeleton_convert.Sequence], actions: list[str], out_dir: Path
) -> list[Path]:
    """Copies of the source JSON files with ``"action"`` on every object of a classified window.

    A frame covered by several (overlapping) windows takes the latest window's action.
    """
    by_frame: dict[tuple[str, int, int], str] = {}
    for sequence, action in zip(sequences, actions):
        for frame in range(sequence.first_frame, sequence.last_frame + 1):
            by_frame[(sequence.source, sequence.object_id, frame)] = action
    written = []
    for source in dict.fromkeys(sequence.source for sequence in sequences):
        batches = json.loads(Path(source).read_text())
        for frame in (frame for batch in batches for frame in batch["batches"]):
            for obj in frame.get("objects", []):
                key = (source, int(obj["object_id"]), int(frame.get("frame_num", -1)))
                if key in by_frame:
                    obj["action"] = by_frame[key]
        target = out_dir / f"{Path(source).stem}_actions.json"
        target.write_text(json.dumps(batches))
        written.append(target)
    return written


def _sample_ids(dataset: Any, sequences: list[skeleton_convert.Sequence]) -> list[str]:
    """A name per row: ``<json file>:object_<id>:<first>-<last>`` for deepstream windows, else
    the data's sample names (pyskl ``frame_dir``, NTU file stem, label-file name or row index)."""
    if sequences:
        return [f"{Path(s.source).name}:object_{s.object_id}:{s.first_frame}-{s.last_frame}"
                for s in sequences]  # fmt: skip
    base = getattr(dataset, "dataset", dataset)  # a bone/motion stream wraps the sequences
    return [str(name) for name in base.sample_names]


def _write_predictions(
    path: Path, samples: list[str], actions: list[str], scores: dict[int, np.ndarray]
) -> None:
    """``sample,class,score`` per sequence (score: the predicted class's averaged probability)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sample", "class", "score"])
        for row, (sample, action) in enumerate(zip(samples, actions)):
            score = f"{float(np.max(scores[row])):.4f}" if row in scores else ""
            writer.writerow([printable(sample), printable(action), score])
    logger.info("sample ids with their class and score written to %s", path)


def cmd_inference(args: argparse.Namespace) -> int:
    """One predicted class name per sequence, written one per line (TAO); JSON input also gets
    annotated copies ``<stem>_actions.json`` in --output-dir."""
    from train.checkpoint import load_model
    from train.engine import predict

    _need(args, "checkpoint", "data")
    model = load_model(args.checkpoint, family=FAMILY)
    names = list(model.class_names or [])
    frames = _trained_frames(model)
    sequences: list[skeleton_convert.Sequence] = []
    if Path(args.data).suffix.lower() == ".npy" or _has_skeleton_files(args.data):
        dataset = SkeletonDataset(args.data, **_source_options(args, model))
    else:
        settings = skeleton_convert.ConvertSettings(
            pose_type=args.pose_type, sequence_length_max=frames,
            sequence_length=min(args.sequence_length, frames),
            sequence_overlap=args.sequence_overlap, window_stride=args.window_stride,
            max_gap=args.max_gap, keep_unseen_pelvis=args.keep_unseen_pelvis,
        )  # fmt: skip
        files = skeleton_convert.input_files(args.data)
        sequences = skeleton_convert.convert_files(files, settings)
        dataset = SkeletonDataset(skeleton_convert.pad_sequences(sequences, settings))
    _check_poses(model, dataset.shape, args.data)
    poses = dataset.data  # joint coordinates (N, C, T, V, M), before any bone/motion stream
    dataset = with_stream(dataset, _stream_of(args, model, args.checkpoint), model.graph.layout)
    scores = predict(model, dataset, args)
    actions = [names[int(np.argmax(scores[i]))] if i in scores else "unknown"
               for i in range(len(dataset.data))]  # fmt: skip
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    output_file = Path(args.output_file or out_dir / "actions.txt")
    output_file.parent.mkdir(parents=True, exist_ok=True)
    # one line per sequence: a class name from the checkpoint is escaped, never a line break
    output_file.write_text("".join(f"{printable(action)}\n" for action in actions))
    logger.info("%d predictions written to %s", len(actions), output_file)
    samples = _sample_ids(dataset, sequences)
    _write_predictions(out_dir / "predictions.csv", samples, actions, scores)
    if sequences:
        for path in _annotate_json(sequences, actions, out_dir):
            logger.info("annotated JSON written to %s", path)
    if args.render:
        _render_sequences(poses, scores, names, model.graph.layout, Path(args.render))
    return 0


def _render_sequences(
    poses: np.ndarray, scores: dict[int, np.ndarray], names: list[str], layout: Any, out: Path
) -> None:
    """inference --render: sequence i as ``out/sequence_<i>.mp4`` (named by index, so a sample
    name from the data never reaches the file system), every person drawn with the layout's
    edges (3D poses through a fixed camera) and the predicted class (export.annotate)."""
    from export.annotate import render_skeleton

    for index in sorted(scores):
        best = int(np.argmax(scores[index]))
        path = out / f"sequence_{index:04d}.mp4"
        label, score = names[best], float(scores[index][best])
        render_skeleton(poses[index], layout.edges, path, label=label, score=score,
                        root=layout.center)  # fmt: skip
    logger.info("%d skeleton videos written to %s", len(scores), out)


def cmd_explain(args: argparse.Namespace) -> int:
    """Grad-CAM of the last graph block (ST-GCN, ST-GCN++, CTR-GCN) for one sequence of --data:
    importance per joint and frame, ``<out>/sequence_<i>_joints.png`` (export.explain)."""
    import torch

    from export.explain import joint_importance, save_joint_importance
    from train.checkpoint import load_model

    _need(args, "checkpoint", "data")
    model = load_model(args.checkpoint, family=FAMILY)
    names = list(model.class_names or [])
    if Path(args.data).suffix.lower() != ".npy" and not _has_skeleton_files(args.data):
        raise ValueError(f"{args.data}: explain reads .npy, pyskl or NTU data (convert JSON first)")
    dataset = SkeletonDataset(args.data, **_source_options(args, model))
    _check_poses(model, dataset.shape, args.data)
    dataset = with_stream(dataset, _stream_of(args, model, args.checkpoint), model.graph.layout)
    if args.sequence >= len(dataset):
        raise ValueError(f"--sequence {args.sequence}: {args.data} holds {len(dataset)} sequences")
    inputs = torch.as_tensor(dataset[args.sequence][0]).float()[None]
    result = joint_importance(model.float(), inputs, args.target, class_names=names)
    layout = model.graph.layout
    joints = layout.joint_names or [str(i) for i in range(layout.num_joints)]
    path = Path(args.out) / f"sequence_{args.sequence:04d}_joints.png"
    save_joint_importance(path, result, joints, names)
    label = names[result.target] if result.target < len(names) else result.target
    print(f"sequence {args.sequence}: joint importance for {label} -> {path}")
    return 0


def cmd_quantize(args: argparse.Namespace) -> int:
    """INT8 calibrated on ``--train-data`` sequences, compared with FP32 on ``--val-data``."""
    from export import read_metadata

    class_names = read_metadata(args.onnx).get("labels") or []
    label_map = {name: index for index, name in enumerate(class_names)} or None
    calib = SkeletonDataset(args.train_data)
    val = None
    if args.val_data:
        val = SkeletonDataset(args.val_data, args.val_labels, label_map=label_map)
    return export_cli.run_quantize(args, family=FAMILY, train_set=calib, val_set=val)


def cmd_demo(args: argparse.Namespace) -> int:
    """Synthetic data → tiny ST-GCN on CPU → evaluation → ONNX, each step as from the command
    line; the last line reports the validation accuracy."""
    start = time.perf_counter()
    out = Path(args.out)
    data, run = out / "data", out / "run"
    per_class = args.samples_per_class
    skeleton_synth.synthesize(
        data, skeleton_synth.SynthSettings(train_per_class=per_class,
                                           val_per_class=max(4, per_class // 4), max_frames=64),
    )  # fmt: skip
    common = ["--device", args.device, "--workers", str(args.workers),
              "--log-level", args.log_level]  # fmt: skip
    steps = [
        ["train", *common, "--output-dir", str(run), "--network", "st_gcn_tiny",
         "--train-data", str(data / "train_data.npy"),
         "--train-labels", str(data / "train_label.pkl"), "--val-data", str(data / "val_data.npy"),
         "--val-labels", str(data / "val_label.pkl"), "--label-map", str(data / "label_map.json"),
         "--end-epoch", str(args.epochs), "--lr-base", "0.05", "--lr-schedule", "cosine",
         "--batch-size", "16", "--random-move", "--no-tensorboard", "--no-auto-resume"],
        ["evaluate", *common, "--output-dir", str(run / "eval"),
         "--checkpoint", str(run / "best.pth"),
         "--data", str(data / "val_data.npy"), "--labels", str(data / "val_label.pkl")],
        ["export", "--checkpoint", str(run / "best.pth"), "--onnx", str(out / "st_gcn_tiny.onnx")],
    ]  # fmt: skip
    failed = run_steps("train_nvpose.py", main, steps)
    if failed:
        return failed
    scores = json.loads((run / "eval" / "metrics.json").read_text(encoding="utf-8"))
    accuracy = 100 * scores["clip_top1"]
    print(f"demo done in {time.perf_counter() - start:.0f} s; validation accuracy {accuracy:.1f}%")
    return 0


COMMANDS = command_table(
    cmd_synth, cmd_convert, cmd_train, cmd_evaluate, cmd_inference, cmd_explain, cmd_quantize,
    cmd_demo,
)  # fmt: skip
# TAO pose_classification spec keys per subcommand (-e spec.yaml, key=value): train/tao_specs.py
SCRIPT = FamilyScript(get_args_parser, COMMANDS, skeleton_spec_map, known_keys=SKELETON_KEYS)
parse_args = SCRIPT.parse_args  # argv -> namespace (command line > spec > defaults)
main = SCRIPT.main  # argv -> exit code


if __name__ == "__main__":
    raise SystemExit(main())
