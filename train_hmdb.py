"""Video action recognition: RGB, optical-flow and two-stream models (2D/3D ResNets, SRTG, MTNet).

Commands (``python train_hmdb.py COMMAND --help`` lists every flag)::

    python train_hmdb.py synth --out data/synth_videos                      # synthetic videos + splits
    python train_hmdb.py prepare --videos data/synth_videos --out data/synth  # -> frames.db per video
    python train_hmdb.py train --data data/synth --splits data/synth_videos/splits \\
        --network r3d_18 --clip-length 16 --clip-size 112 --output-dir runs/r3d18
    python train_hmdb.py evaluate --checkpoint runs/r3d18/best.pth --data data/synth \\
        --splits data/synth_videos/splits --eval-mode conv --segments 10
    python train_hmdb.py inference --checkpoint runs/r3d18/best.pth --videos data/synth/jpg
    python train_hmdb.py inference ... --render annotated/      # <video>.mp4 + <video>_timeline.png
    python train_hmdb.py explain --checkpoint runs/r3d18/best.pth --video v.mp4 --out cam/  # Grad-CAM
    python train_hmdb.py export --checkpoint runs/r3d18/best.pth --onnx r3d18.onnx
    python train_hmdb.py onnx-infer --onnx r3d18.onnx --input data/synth/jpg/<class>/<video>
    python train_hmdb.py quantize --onnx r3d18.onnx --data data/synth --splits ...
    python train_hmdb.py live --source clip.mp4 --onnx r3d18.onnx --realtime   # or URL, /dev/video0, -
    python train_hmdb.py demo --out demo_out                                # everything above, CPU
    torchrun --nproc_per_node 4 train_hmdb.py train ...                     # DDP

A TAO action_recognition spec works too: ``train -e spec.yaml model_config.rgb_seq_length=32``
(command line > spec > defaults; the resolved arguments land in ``<output-dir>/args.yaml``).
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import os
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from data.skeleton.dataset import read_label_map
from data.video import prepare
from data.video import synthetic as synth_video
from data.video.dataset import VideoClipDataset
from data.video.ffmpeg_io import VIDEO_SUFFIXES
from data.video.splits import (
    SplitResult,
    VideoRecord,
    find_videos,
    load_split,
    video_name,
    write_split_lists,
)
from data.video.stores import is_complete_video, open_store
from data.video.transforms import CROP_TYPES, ClipEvalPreset, ClipThreeCropPreset, ClipTrainPreset
from data.video.videofile import is_video_file
from export import cli as export_cli
from export import live as export_live
from export.explain import LAST_STAGE, STAGES
from network import build_model, get_entry, list_models
from train.args import add_multigrid_arguments, common_parser, runtime_parser
from train.config import add_spec_arguments
from train.metrics import AVERAGES
from train.runner import FamilyScript, command_parser, command_table, run_steps
from train.tao_specs import VIDEO_KEYS, video_spec_map
from train.validation import (
    check_batch_memory,
    clip_batch_bytes,
    finite_float,
    fraction,
    non_negative_int,
    positive_float,
    positive_int,
    printable,
    probability,
)

log = logging.getLogger("train_hmdb")

FAMILY = "video"
SELF, CHILDREN = resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN
BOOL = argparse.BooleanOptionalAction
MODALITY_CHANNELS = {"rgb": 3, "flow": 2}
# TAO action_recognition spec keys (TAO 3/4 and TAO 5 layouts): train/tao_specs.py.
SPEC_MAP = video_spec_map("train", {})
# Flags that evaluation and inference take from the checkpoint's training arguments unless given.
FROM_CHECKPOINT = (
    "modality",
    "clip_length",
    "flow_clip_length",
    "clip_size",
    "short_side",
    "val_frame_interval",
    "frame_interval",
    "sample_strategy",
    "rgb_mean",
    "rgb_std",
    "of_mean",
    "of_std",
    "val_center_crop",
    "data",
    "val_data",
    "splits",
    "split",
    "val_fraction",
    "rgb_network",
)


SPLITS_USED = "splits_used"  # in a run directory: the split the run drew (data.video.splits lists)
# TAO names a backbone ("resnet18", "resnet_18") and an input type; our registry names them.
TAO_NETWORK_PREFIX = {"2d": "resnet2d_", "3d": "tao_r3d_"}


# ----------------------------------------------------------------------------- arguments
def _add_split_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    group = parser.add_argument_group("data")
    group.add_argument(
        "--data",
        help="prepared data root (train_hmdb.py prepare --out) or raw videos DATA/<class>/<video>.mp4",
    )
    group.add_argument(
        "--splits",
        default=None,
        help="HMDB51 split folder, UCF101 list folder or SRTG CSV; none: class folders "
        "split by --val-fraction",
    )
    group.add_argument("--split", type=positive_int, default=1, help="official split number (1-3)")
    group.add_argument("--val-fraction", type=fraction, default=0.2)
    group.add_argument(
        "--val-data", default=None, help="TAO layout: a separate prepared validation root"
    )
    group.add_argument(
        "--label-map",
        default=None,
        help="JSON file {class: index} (or a spec's label_map): these classes, in this order; "
        "default: every class folder, sorted",
    )
    return group


def _add_clip_arguments(parser: argparse.ArgumentParser) -> None:
    """Clip shape, sampling and normalisation: what training, evaluation and inference share
    (evaluation and inference default them to the checkpoint's training run)."""
    group = parser.add_argument_group("clips")
    group.add_argument("--modality", choices=("rgb", "flow", "joint"), default="rgb")
    group.add_argument("--clip-length", type=positive_int, default=16, help="frames per clip (T)")
    group.add_argument(
        "--flow-clip-length", type=positive_int, default=None, help="joint: flow frames"
    )
    group.add_argument("--clip-size", type=positive_int, default=112, help="crop height and width")
    group.add_argument(
        "--short-side", type=positive_int, default=None, help="default: clip-size × 8/7"
    )
    group.add_argument("--frame-interval", type=positive_int, default=None, help="both intervals")
    group.add_argument("--val-frame-interval", type=positive_int, default=1)
    group.add_argument(
        "--sample-strategy", choices=("consecutive", "random_interval"), default="consecutive"
    )
    group.add_argument("--val-center-crop", action=BOOL, default=True)
    group.add_argument("--rgb-mean", type=finite_float, nargs="+", default=[0.485, 0.456, 0.406])
    group.add_argument("--rgb-std", type=positive_float, nargs="+", default=[0.229, 0.224, 0.225])
    group.add_argument("--of-mean", type=finite_float, nargs="+", default=[0.5])
    group.add_argument("--of-std", type=positive_float, nargs="+", default=[0.5])
    group.add_argument(
        "--exact-decode",
        action=BOOL,
        default=False,
        help="decode JPEG frames at full size (default: libjpeg DCT scaling to 1/2, 1/4 or 1/8 "
        "where the frame's short side stays >= the short side the crop needs)",
    )
    group.add_argument(
        "--decode-device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="cuda: workers pass JPEG bytes, the batch is decoded (nvJPEG) and augmented on the GPU",
    )


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Training data: splits, clips, training sampling, augmentation, validation views."""
    group = _add_split_arguments(parser)
    _add_clip_arguments(parser)
    group.add_argument("--train-frame-interval", type=positive_int, default=1)
    group.add_argument("--clips-per-video", type=positive_int, default=1)
    group.add_argument("--skip-bad-videos", action=BOOL, default=True)
    _add_augmentation_arguments(parser)
    _add_view_arguments(parser.add_argument_group("validation views"))


def _add_augmentation_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("augmentation")
    group.add_argument("--train-crop", choices=sorted(CROP_TYPES), default="random_crop")
    group.add_argument(
        "--crop-scales", type=positive_float, nargs="+", default=[1.0, 0.875, 0.75, 0.66]
    )
    group.add_argument("--flip-prob", type=probability, default=0.5)
    group.add_argument("--srtg-augment", action=BOOL, default=False, help="SRTG photometric set")


def _add_view_arguments(group: argparse._ArgumentGroup) -> None:
    """Which clips score a video: ``--segments`` clips (conv) × ``--spatial-crops`` crops."""
    group.add_argument("--eval-mode", choices=("center", "conv"), default="center")
    group.add_argument(
        "--segments", type=positive_int, default=10, help="conv mode: clips per video"
    )
    group.add_argument(
        "--spatial-crops",
        type=int,
        choices=(1, 3),
        default=1,
        help="crops per clip: 1 (centre, --short-side) or 3 (left/centre/right, or top/centre/"
        "bottom, full-height crops of a frame resized to --clip-size, as PySlowFast's 3 views)",
    )


def _spec_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    add_spec_arguments(parent)
    return parent


def _add_eval_arguments(parser: argparse.ArgumentParser, *, with_split: bool) -> None:
    """evaluate and inference: the checkpoint, data (evaluate), clips, views, averaging."""
    parser.add_argument(
        "--checkpoint",
        default=None,
        nargs="+" if with_split else None,
        help="a train_hmdb.py checkpoint (.pth); required (or spec); evaluate: several "
        "checkpoints (e.g. RGB and flow) fuse their scores",
    )
    if with_split:
        _add_split_arguments(parser)
        parser.add_argument(
            "--fusion-weights", type=float, nargs="+", default=None,
            help="one weight per --checkpoint: fused score = sum of weight x the video's mean "
            "score (--average); default all 1",
        )  # fmt: skip
    _add_clip_arguments(parser)
    group = parser.add_argument_group("views and scores")
    _add_view_arguments(group)
    group.add_argument(
        "--average",
        choices=AVERAGES,
        default="prob",
        help="a video's score: the mean softmax of its views (prob) or mean logits (score)",
    )
    group.add_argument(
        "--strict",
        action=BOOL,
        default=False,
        help="an unreadable video is an error (default: excluded, named and counted)",
    )
    parser.add_argument("--rgb-network", default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--network", default=None, help="a TAO-trained checkpoint's network (default: read from it)"
    )
    parser.set_defaults(**dict.fromkeys(FROM_CHECKPOINT))


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--network", default=None, help="registered name (default r3d_18)")
    group.add_argument("--backbone", default=None, help="TAO backbone name, e.g. resnet18")
    group.add_argument("--input-type", choices=("2d", "3d"), default=None, help="TAO input type")
    group.add_argument("--dropout", type=fraction, default=None)
    group.add_argument("--num-fc", type=positive_int, default=None, help="joint model hidden width")
    group.add_argument("--rgb-network", default=None, help="joint: RGB stream network")
    group.add_argument("--of-network", default=None, help="joint: flow stream network")
    group.add_argument(
        "--rgb-pretrained", default=None, help="joint: RGB stream checkpoint (rgb: --pretrained)"
    )
    group.add_argument(
        "--of-pretrained", default=None, help="joint: flow stream checkpoint (flow: --pretrained)"
    )
    group.add_argument("--sr-blocks", action=BOOL, default=None, help="SRTG: Squeeze-Recursion")
    group.add_argument("--gates", action=BOOL, default=None, help="SRTG: cycle-consistency gate")
    group.add_argument("--gates-from-epoch", type=non_negative_int, default=None)


def _add_explain_arguments(parser: argparse.ArgumentParser) -> None:
    _add_eval_arguments(parser, with_split=False)
    group = parser.add_argument_group("Grad-CAM")
    group.add_argument("--video", required=True, help="a video file or a prepared video")
    group.add_argument("--target", default=None, help="class name or index (default: predicted)")
    group.add_argument("--out", required=True, help="output folder")
    group.add_argument(
        "--segment", type=non_negative_int, default=None,
        help="explain conv segment k of --segments (default: the centre clip)",
    )  # fmt: skip
    group.add_argument(
        "--layer", choices=STAGES, default=LAST_STAGE,
        help="the stage explained (default: the last; an earlier one keeps more time steps)",
    )  # fmt: skip


def get_args_parser() -> argparse.ArgumentParser:
    parser, commands = command_parser(__doc__.splitlines()[0], __doc__.split("\n", 2)[2])
    synth_video.add_arguments(commands.add_parser("synth", help="write synthetic videos"))
    prepare.add_arguments(commands.add_parser("prepare", help="videos -> frame databases"))
    train = commands.add_parser("train", parents=[common_parser()], help="train a model")
    _add_data_arguments(train)
    _add_model_arguments(train)
    add_multigrid_arguments(train)
    for name, help_text in (("evaluate", "evaluate a checkpoint"), ("inference", "label videos")):
        sub = commands.add_parser(name, parents=[runtime_parser()], help=help_text)
        _add_eval_arguments(sub, with_split=name == "evaluate")
    commands.choices["inference"].add_argument(
        "--videos",
        default=None,
        help="a video file, a prepared video, or a folder of either (required)",
    )
    commands.choices["inference"].add_argument("--top-k", type=positive_int, default=5)
    commands.choices["inference"].add_argument("--jsonl", default=None, help="JSON lines output")
    export_cli.add_render_arguments(commands.choices["inference"])
    explain_help = "Grad-CAM of one clip: where the network looks (an .mp4 and a PNG strip)"
    _add_explain_arguments(
        commands.add_parser("explain", parents=[runtime_parser()], help=explain_help)
    )
    export_cli.add_subcommands(commands, family=FAMILY, parents=lambda: [_spec_parent()])
    quantize = commands.add_parser("quantize", parents=[common_parser()], help="INT8 ONNX")
    export_cli.add_quantize_arguments(quantize)
    _add_split_arguments(quantize)
    live_help = "classify a camera, a stream, a pipe or a growing file, window by window"
    export_live.add_live_arguments(commands.add_parser("live", help=live_help))
    demo = commands.add_parser("demo", help="synth -> prepare -> train -> evaluate -> export")
    demo.add_argument("--out", default="demo_out", help="working folder")
    demo.add_argument("--network", default="r3d_tiny")
    demo.add_argument("--epochs", type=positive_int, default=15)
    demo.add_argument("--workers", type=non_negative_int, default=2)
    demo.add_argument("--videos-per-class", type=positive_int, default=32)
    demo.add_argument("--seed", type=non_negative_int, default=0, help="videos, split, training")
    return parser


# ----------------------------------------------------------------------------- datasets
def _interval(args: argparse.Namespace, subset: str) -> int:
    if args.frame_interval is not None:
        return args.frame_interval
    return args.train_frame_interval if subset == "train" else args.val_frame_interval


def _norm(args: argparse.Namespace) -> dict[str, list[float]]:
    return {
        "rgb_mean": args.rgb_mean,
        "rgb_std": args.rgb_std,
        "flow_mean": args.of_mean,
        "flow_std": args.of_std,
    }


def _short_side(args: argparse.Namespace) -> int:
    return args.short_side or round(args.clip_size * 8 / 7)


def make_dataset(
    records: Sequence[VideoRecord], args: argparse.Namespace, *, subset: str, input_dims: int
) -> VideoClipDataset:
    """``subset`` "train" (random clips, augmentation) or "val" (``--eval-mode`` clips); a batch
    that cannot fit in memory is refused first, and ``--segments`` capped at the clips the
    longest video holds."""
    _check_clip_memory(args, subset)
    if subset != "train":
        _cap_segments(records, args)
    if subset == "train":
        transform = ClipTrainPreset(
            crop_size=args.clip_size,
            short_side=_short_side(args),
            crop_type=args.train_crop,
            scales=args.crop_scales,
            hflip_prob=args.flip_prob,
            srtg=args.srtg_augment,
            **_norm(args),
        )
    elif args.spatial_crops == 3:
        transform = ClipThreeCropPreset(crop_size=args.clip_size, **_norm(args))
    else:
        transform = ClipEvalPreset(
            crop_size=args.clip_size,
            short_side=_short_side(args),
            center_crop=args.val_center_crop,
            **_norm(args),
        )
    return VideoClipDataset(
        records,
        modality=args.modality,
        clip_length=args.clip_length,
        flow_clip_length=args.flow_clip_length,
        sample_rate=_interval(args, subset),
        strategy=args.sample_strategy,
        mode="train" if subset == "train" else args.eval_mode,
        num_segments=args.segments,
        clips_per_video=args.clips_per_video if subset == "train" else 1,
        input_dims=input_dims,
        transform=transform,
        # evaluation and inference exclude and count unreadable videos (--strict: an error)
        skip_bad=getattr(args, "skip_bad_videos", True),
        deliver="encoded" if getattr(args, "decode_device", "cpu") == "cuda" else "uint8",
        exact_decode=getattr(args, "exact_decode", False),
    )


def _check_clip_memory(args: argparse.Namespace, subset: str) -> None:
    """One batch of clips (``train.validation.clip_batch_bytes``) must fit in memory."""
    batch = args.batch_size
    if subset != "train":
        batch = getattr(args, "eval_batch_size", None) or batch
    needed = clip_batch_bytes(batch, args.clip_length, args.clip_size, _short_side(args))
    what = f"--clip-size {args.clip_size}, --clip-length {args.clip_length}, batch {batch}"
    check_batch_memory(needed, what, str(getattr(args, "device", None) or "cpu"))


def _cap_segments(records: Sequence[VideoRecord], args: argparse.Namespace) -> None:
    """``--eval-mode conv``: more segments than the distinct clips of the longest video score
    the same clips again; capped there with a warning (frame counts are read until one video
    holds enough)."""
    if args.eval_mode != "conv" or args.segments <= 1:
        return
    span = (args.clip_length - 1) * _interval(args, "val") + 1
    most = 1
    for record in records:
        try:
            most = max(most, open_store(record.path).num_frames() - span + 1)
        except Exception:  # an unreadable video is excluded when it is read
            continue
        if most >= args.segments:
            return
    log.warning("--segments %d: the longest video holds %d distinct clip(s); using %d",
                args.segments, most, most)  # fmt: skip
    args.segments = most


def load_records(args: argparse.Namespace) -> SplitResult:
    """Train/val records from ``--data`` (+ ``--splits``), or TAO's separate ``--val-data``;
    ``--label-map`` picks and orders the classes."""
    split = _split_records(args)
    return apply_label_map(split, read_label_map(getattr(args, "label_map", None)))


def apply_label_map(split: SplitResult, label_map: dict[str, int] | None) -> SplitResult:
    """Keep the classes of ``label_map`` and label them by its indices (TAO's ``label_map``)."""
    if not label_map:
        return split
    missing = sorted(set(label_map) - set(split.class_names))
    if missing:
        raise ValueError(f"label_map: no videos of class {', '.join(missing)} in the data")
    left_out = sorted(set(split.class_names) - set(label_map))
    if left_out:
        log.warning("label_map leaves out %d classes (not used): %s", len(left_out), left_out)

    def relabel(records: list[VideoRecord]) -> list[VideoRecord]:
        names = split.class_names
        return [
            replace(record, label=label_map[names[record.label]])
            for record in records
            if names[record.label] in label_map
        ]

    order = sorted(label_map, key=label_map.__getitem__)
    return replace(split, train=relabel(split.train), val=relabel(split.val), class_names=order)


def _split_records(args: argparse.Namespace) -> SplitResult:
    if not args.data and not args.val_data:
        raise SystemExit("error: --data (a prepared data root) is required")
    if args.val_data is None:
        return load_split(
            args.data,
            args.splits,
            split=args.split,
            val_fraction=args.val_fraction,
            seed=args.random_seed,
        )
    val_videos = find_videos(args.val_data)
    train_videos = find_videos(args.data) if args.data else {}
    class_names = sorted(train_videos or val_videos)
    labels = {name: index for index, name in enumerate(class_names)}

    def records(videos: dict[str, dict[str, Path]]) -> list[VideoRecord]:
        return [
            VideoRecord(path=path, label=labels[cls], name=f"{cls}/{name}")
            for cls, items in videos.items()
            if cls in labels
            for name, path in items.items()
        ]

    return SplitResult(records(train_videos), records(val_videos), class_names)


# ----------------------------------------------------------------------------- network
def resolve_network(args: argparse.Namespace) -> str:
    """``--network``, else TAO's ``backbone`` + ``input_type`` (resnet18 + 3d -> tao_r3d_18).

    Without ``--network``, ``--modality joint`` (TAO ``model_type: joint``) builds the two-stream
    ``joint`` model whose streams (``--rgb-network``/``--of-network``, set here when not given)
    are that backbone network.
    """
    stream = args.network or (tao_backbone_network(args) if args.backbone else None)
    if args.modality == "joint" and not args.network:
        args.rgb_network = args.rgb_network or stream or "r3d_18"
        args.of_network = args.of_network or stream or "r3d_18"
        return "joint"
    return stream or "r3d_18"


def tao_backbone_network(args: argparse.Namespace) -> str:
    """TAO's ``backbone`` (resnet18, resnet_18) and ``input_type`` (default 2d, as TAO) → a
    registered network; an unknown backbone is one line with the allowed ones."""
    input_type = args.input_type or "2d"
    prefix = TAO_NETWORK_PREFIX[input_type]
    depth = args.backbone.lower().removeprefix("resnet").lstrip("_")
    registered = [name for name in list_models(family=FAMILY) if name.startswith(prefix)]
    if prefix + depth not in registered:
        allowed = ", ".join(f"resnet_{name.removeprefix(prefix)}" for name in registered)
        raise ValueError(
            f"--backbone (spec model backbone): {args.backbone!r} is not one of {allowed} "
            f"(input_type {input_type})"
        )
    return prefix + depth


def single_stream_pretrained(name: str, args: argparse.Namespace) -> None:
    """TAO 3/4 specs name the pretrained file of an ``rgb`` (``of``) model
    ``rgb_pretrained_model_path`` (``of_…``): for a single-stream network that file is
    ``--pretrained``; the other stream's file is not used (a warning, as TAO ignores it)."""
    if get_entry(name).input_layout == "joint":
        return
    own, other = ("of", "rgb") if args.modality == "flow" else ("rgb", "of")
    path = getattr(args, f"{own}_pretrained")
    if getattr(args, f"{other}_pretrained"):
        log.warning("--%s-pretrained is for a joint model's stream; %s has one stream: not used",
                    other, name)  # fmt: skip
    if path and args.pretrained and path != args.pretrained:
        raise ValueError(
            f"--pretrained {args.pretrained} and --{own}-pretrained {path} name two files for "
            f"the one stream of {name}; give one"
        )
    if path:
        log.info("--%s-pretrained %s is the pretrained file of %s", own, path, name)
        args.pretrained = path
    args.rgb_pretrained = args.of_pretrained = None


def network_kwargs(name: str, args: argparse.Namespace, num_classes: int) -> dict[str, Any]:
    """Keyword arguments for ``build_model``: explicit flags always (unknown ones raise),
    input channels and frame counts only where the builder takes them."""
    single_stream_pretrained(name, args)
    explicit = {
        "num_classes": num_classes,
        "dropout": args.dropout,
        "num_fc": args.num_fc,
        "rgb_network": args.rgb_network,
        "of_network": args.of_network,
        "rgb_pretrained": args.rgb_pretrained,
        "of_pretrained": args.of_pretrained,
        "sr_blocks": args.sr_blocks,
        "gates": args.gates,
        "gates_from_epoch": args.gates_from_epoch,
    }
    derived = {
        "in_channels": MODALITY_CHANNELS.get(args.modality),
        "num_frames": args.clip_length,
        "rgb_frames": args.clip_length,
        "of_frames": args.flow_clip_length or args.clip_length,
        "pretrained_partial": args.pretrained_partial or None,  # joint: stream checkpoints
    }
    accepted = inspect.signature(get_entry(name).builder).parameters
    kwargs = {key: value for key, value in explicit.items() if value is not None}
    kwargs.update({key: value for key, value in derived.items() if key in accepted})
    return kwargs


def input_dims_of(name: str, args: argparse.Namespace) -> int:
    """3 for (C, T, H, W) networks, 2 for stacked-frame (C·T, H, W) ones."""
    layout = get_entry(name).input_layout
    if layout == "joint":
        layout = get_entry(args.rgb_network or "r3d_18").input_layout
    return 2 if layout == "NCHW" else 3


def _check_modality(name: str, args: argparse.Namespace) -> None:
    is_joint = get_entry(name).input_layout == "joint"
    if is_joint != (args.modality == "joint"):
        raise SystemExit(
            f"error: network {name!r} needs --modality {'joint' if is_joint else 'rgb or flow'}"
        )


# ----------------------------------------------------------------------------- commands
def cmd_train(args: argparse.Namespace) -> int:
    from train.engine import describe_best, fit

    name = resolve_network(args)
    _check_modality(name, args)
    split = load_records(args)
    dims = input_dims_of(name, args)
    train_set = make_dataset(split.train, args, subset="train", input_dims=dims)
    val_set = make_dataset(split.val, args, subset="val", input_dims=dims) if split.val else None
    model = build_model(name, **network_kwargs(name, args, len(split.class_names)))
    model.class_names = split.class_names
    log.info(
        "%s on %d train / %d val videos, %d classes",
        name,
        len(split.train),
        len(split.val),
        len(split.class_names),
    )
    summary = fit(
        model,
        train_set,
        val_set,
        args,
        family=FAMILY,
        class_names=split.class_names,
        on_run_dir=lambda run_dir: _save_split(split, run_dir),
    )
    log.info("%s", describe_best(summary))
    return 0


def _save_split(split: SplitResult, run_dir: Path) -> None:
    """Write the videos the run trains and validates on to ``<run dir>/splits_used/``
    (UCF101-style lists; ``--splits <run dir>/splits_used`` reproduces the split); called by the
    engine on rank 0 once the run directory is accepted."""
    folder = write_split_lists(split, run_dir / SPLITS_USED)
    log.info("the split this run uses: %s", folder)


def _restore(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The checkpoint's model and its training arguments (data flags not given default to them)."""
    from train.checkpoint import load_model

    if not args.checkpoint:
        raise ValueError(f"{args.command} needs --checkpoint (or the spec's checkpoint / model=)")
    model = load_model(args.checkpoint, family=FAMILY, network=args.network)
    return model, model.train_args


def _data_defaults() -> dict[str, Any]:
    parser = argparse.ArgumentParser()
    _add_data_arguments(parser)
    _add_model_arguments(parser)
    return vars(parser.parse_args([]))


def _fill_from_checkpoint(args: argparse.Namespace, saved: dict[str, Any]) -> argparse.Namespace:
    """Flags left unset (``None``) take the training run's value, else the usual default."""
    defaults = _data_defaults()
    for key in FROM_CHECKPOINT:
        if getattr(args, key, None) is None:
            setattr(args, key, saved.get(key, defaults.get(key)))
    return args


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Clip/video metrics of a checkpoint on its validation split; data, split, clip shape and
    normalisation default to the training run's (``<run dir>/splits_used`` when the run drew
    its split from class folders)."""
    from train.engine import evaluate

    checkpoints = [args.checkpoint] if isinstance(args.checkpoint, str | None) else args.checkpoint
    if len(checkpoints) > 1 or args.fusion_weights is not None:
        return _evaluate_fusion(args, checkpoints)
    args.checkpoint = checkpoints[0]
    args, model, dataset, records, class_names = _evaluation_input(args)
    args.output_dir = args.output_dir or "results"
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    result = evaluate(
        model, dataset, args, class_names=class_names, output_dir=args.output_dir,
        sample_names=[r.name for r in records], dropped=dataset.dropped,
    )  # fmt: skip
    print(
        f"clip top-1 {100 * result.clip_top1:.2f}%  video top-1 {100 * result.video_top1:.2f}%  "
        f"({result.coverage()}; {dataset.per_video} views per video)"
    )
    return 0


def _evaluation_input(args: argparse.Namespace) -> tuple[argparse.Namespace, Any, Any, list, list]:
    """(args filled from the checkpoint, model, validation dataset, records, class names)."""
    model, saved = _restore(args)
    _use_saved_split(args, saved)
    args = _fill_from_checkpoint(args, saved)
    split = load_records(args)
    class_names = list(getattr(model, "class_names", None) or split.class_names)
    records = _relabel(split.val, split.class_names, class_names)
    if not records:
        raise ValueError(f"{args.data}: the split has no validation videos")
    dataset = make_dataset(
        records, args, subset="val", input_dims=input_dims_of(model.network_name, args)
    )
    dataset.dropped = list(split.missing_val)  # listed validation videos that were not found
    return args, model, dataset, records, class_names


def _evaluate_fusion(args: argparse.Namespace, checkpoints: list[str]) -> int:
    """Late fusion (e.g. RGB + flow): each checkpoint on its own clips of the same validation
    videos, then the weighted sum of the videos' scores (``train.fusion``)."""
    from train.fusion import FusionInput, check_fusion_weights, evaluate_fusion

    weights = check_fusion_weights(checkpoints, args.fusion_weights)
    inputs, names = [], None
    for path in checkpoints:
        filled, model, dataset, records, class_names = _evaluation_input(
            argparse.Namespace(**{**vars(args), "checkpoint": path})
        )
        if names is not None and [r.name for r in records] != names:
            raise ValueError(f"{path}: its validation videos differ from {checkpoints[0]}'s")
        names = [r.name for r in records]
        targets = {index: record.label for index, record in enumerate(records)}
        inputs.append(FusionInput(path, model, dataset, targets))
    output_dir = args.output_dir or "results"
    result, singles = evaluate_fusion(inputs, weights, filled, class_names=class_names,
                                      output_dir=output_dir)  # fmt: skip
    for path, weight, single in zip(checkpoints, weights, singles):
        print(f"{printable(path)} (weight {weight:g}): video top-1 {100 * single.video_top1:.2f}%")
    print(f"fused video top-1 {100 * result.video_top1:.2f}% on {result.num_videos} videos")
    return 0


def _use_saved_split(args: argparse.Namespace, saved: dict[str, Any]) -> None:
    """No ``--splits`` given and the training run drew its split from class folders: use the
    lists it saved (``splits_used/`` beside the checkpoint), not a fresh draw."""
    lists = Path(args.checkpoint).parent / SPLITS_USED
    if args.splits or args.val_data or saved.get("splits") or saved.get("val_data"):
        return
    if (lists / "classInd.txt").is_file():
        args.splits, args.split = str(lists), 1
        log.info("validation videos from %s (the split the training run drew)", lists)


def _relabel(
    records: Sequence[VideoRecord], split_classes: Sequence[str], model_classes: Sequence[str]
) -> list[VideoRecord]:
    """``records`` with labels in the model's class order (splits may list classes in another
    order); a class the model does not know is an error naming it."""
    if list(split_classes) == list(model_classes):
        return list(records)
    index = {name: i for i, name in enumerate(model_classes)}
    unknown = sorted({split_classes[r.label] for r in records} - set(index))
    if unknown:
        raise ValueError(
            f"validation classes the checkpoint was not trained on: {', '.join(unknown[:5])}"
        )
    return [replace(r, label=index[split_classes[r.label]]) for r in records]


def _inference_videos(root: Path) -> list[Path]:
    """``root`` itself if it is a prepared video or a video file, else every prepared video and
    video file below it (a folder of videos, a class folder, a data root), sorted.

    The walk does not enter a prepared video (its frame folders can hold thousands of files)
    nor hidden folders (``.name.partial`` leftovers of an interrupted ``prepare``).
    """
    if is_video_file(root):
        return [root]
    found: list[Path] = []
    for folder, subfolders, files in os.walk(root):
        if is_complete_video(Path(folder)):
            found.append(Path(folder))
            subfolders.clear()
            continue
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        videos = (Path(folder, name) for name in files if not name.startswith("."))
        found += [path for path in videos if path.suffix.lower() in VIDEO_SUFFIXES]
    return sorted(found)


def cmd_inference(args: argparse.Namespace) -> int:
    from train.engine import predict

    model, saved = _restore(args)
    args = _fill_from_checkpoint(args, saved)
    if not args.videos:
        raise ValueError("inference needs --videos (or the spec's inference_dataset_dir)")
    videos = _inference_videos(Path(args.videos))
    if not videos:
        raise FileNotFoundError(
            f"{args.videos}: no video files and no prepared videos (frames.db or rgb/) found"
        )
    records = [VideoRecord(path=p, label=-1, name=p.name) for p in videos]
    dims = input_dims_of(model.network_name, args)
    dataset = make_dataset(records, args, subset="val", input_dims=dims)
    scores = predict(model, dataset, args)
    class_names = model.class_names
    excluded = [path for index, path in enumerate(videos) if index not in scores]
    if excluded and len(videos) == 1:
        raise ValueError(f"{excluded[0]}: cannot be read (see the warning above)")
    lines = []
    for index, path in enumerate(videos):
        if index not in scores:
            print(f"{printable(path)} : excluded (unreadable)")
            lines.append(json.dumps({"video": str(path), "label": None, "excluded": True}))
            continue
        probs = scores[index]
        order = probs.argsort()[::-1][: args.top_k]
        print(f"{printable(path)} : {[class_names[int(order[0])]]}")
        topk = [[class_names[int(i)], round(float(probs[i]), 6)] for i in order]
        lines.append(json.dumps({"video": str(path), "label": topk[0][0], "top_k": topk}))
    if args.jsonl:
        Path(args.jsonl).write_text("\n".join(lines) + "\n", encoding="utf-8")
    log.info("labelled %d / %d videos (%d excluded)", len(scores), len(videos), len(excluded))
    if args.render:
        _render_videos(model, [v for i, v in enumerate(videos) if i in scores], args)
    return 0


def _window_indices(num_frames: int, count: int, args: argparse.Namespace) -> list:
    """Frame indices of the ``count`` conv-mode clips of a video (the longer joint stream)."""
    from data.video.samplers import sample_indices

    length = max(args.clip_length, args.flow_clip_length or 0)
    return [
        sample_indices(num_frames, clip_length=length, sample_rate=_interval(args, "val"),
                       strategy=args.sample_strategy, mode="conv", num_segments=count, segment=k)
        for k in range(count)
    ]  # fmt: skip


def _render_videos(model: Any, videos: Sequence[Path], args: argparse.Namespace) -> None:
    """inference --render: per video, an H.264 copy with the top-3 classes of the window that
    covers each frame (windows: conv clips about --render-stride frames apart, with the
    evaluation's crops and streams) and a timeline PNG (export.annotate)."""
    import numpy as np

    from data.video.stores import open_store
    from export import annotate
    from train.engine import predict

    out, dims = Path(args.render), input_dims_of(model.network_name, args)
    span = max(args.clip_length, args.flow_clip_length or 0) * _interval(args, "val")
    stride = args.render_stride or max(1, span // 2)
    for path in videos:
        store = open_store(path)
        streams = ("rgb",) if args.modality == "rgb" else ("rgb", "u")
        num_frames = min(store.num_frames(s) for s in streams)
        count = annotate.window_count(num_frames, span, stride)
        window_args = argparse.Namespace(
            **{**vars(args), "eval_mode": "conv", "segments": count, "average": "prob"}
        )
        record = VideoRecord(path=path, label=-1, name=path.name)
        dataset = make_dataset([record], window_args, subset="val", input_dims=dims)
        scores = predict(model, annotate.WindowItems(dataset), window_args)
        probs = np.stack([scores[k] for k in range(count)])
        mp4, png = annotate.render_video(
            store, _window_indices(num_frames, count, args), probs, model.class_names, out,
            video_name(path),
            max_side=args.render_max_side,
        )  # fmt: skip
        log.info("rendered %s (%d windows) and %s", mp4, count, png)


def cmd_explain(args: argparse.Namespace) -> int:
    """Grad-CAM of one clip of --video (centre clip, or conv --segment k), per input stream:
    ``<video>_gradcam.mp4`` and ``<video>_gradcam.png`` in --out (export.explain)."""
    from export import explain

    model, saved = _restore(args)
    args = _fill_from_checkpoint(args, saved)
    path = Path(args.video)
    if not (is_video_file(path) or is_complete_video(path)):
        raise FileNotFoundError(f"{path}: not a video file nor a prepared video")
    if args.segment is not None:
        args.eval_mode = "conv"
        if args.segment >= args.segments:
            raise ValueError(f"--segment {args.segment}: there are --segments {args.segments}")
    args.spatial_crops = 1
    record = VideoRecord(path=path, label=-1, name=path.name)
    dataset = make_dataset([record], args, subset="val", input_dims=input_dims_of(
        model.network_name, args))  # fmt: skip
    inputs, shown = _explain_inputs(dataset, args.segment or 0, args)
    names = list(model.class_names or [])
    result = explain.grad_cam(
        model.float(), inputs, args.target, class_names=names, layer=args.layer
    )
    fps = _clip_fps(path, _interval(args, "val"))
    mp4, png = explain.write_explanation(args.out, video_name(path), shown, result, names, fps=fps)
    label = names[result.target] if result.target < len(names) else result.target
    print(f"{path} : Grad-CAM for {label} (p={result.probs[result.target]:.3f}) -> {mp4}, {png}")
    return 0


def _explain_inputs(dataset: VideoClipDataset, k: int, args: argparse.Namespace):
    """One clip as model inputs (a batch of one, normalised) and, per stream, the frames the
    network saw as (T, H, W, 3) uint8 RGB (flow colour-coded)."""
    import torch

    from export.explain import flow_to_rgb
    from safeio.excluded import ExcludedItem

    item = dataset[k]
    if isinstance(item, ExcludedItem):
        raise ValueError(item.reason)
    clips = item[0] if isinstance(item[0], tuple) else (item[0],)
    if any(clip.dtype != torch.uint8 for clip in clips):
        raise ValueError("explain needs the uint8 clip path (no photometric augmentation)")
    batch = tuple(clip[None] for clip in clips)
    finish = dataset.batch_finisher
    inputs = finish(batch if len(batch) > 1 else batch[0]) if finish else batch
    streams = {"rgb": ("rgb",), "flow": ("flow",), "joint": ("rgb", "flow")}[args.modality]
    shown = {}
    for stream, clip in zip(streams, clips):
        array = clip.numpy()  # (C, T, H, W) uint8
        shown[stream] = array.transpose(1, 2, 3, 0) if stream == "rgb" else flow_to_rgb(array)
    if args.modality == "flow":  # a flow network's maps are keyed by its one stream
        shown = {"rgb": shown["flow"]}
    return inputs, shown


def _clip_fps(path: Path, interval: int) -> float:
    """The frame rate to show a clip sampled every ``interval`` frames of ``path``."""
    from data.video.stores import open_store
    from export.annotate import store_fps

    return store_fps(open_store(path)) / interval


def cmd_quantize(args: argparse.Namespace) -> int:
    """INT8 calibration and FP32/INT8 comparison, preprocessed as the ONNX file says."""
    from export import read_metadata
    from export.inputs import video_dataset

    preprocess = read_metadata(args.onnx).get("preprocess") or {}
    split = load_records(args)
    calib = video_dataset(split.train, preprocess)
    val = video_dataset(split.val, preprocess) if split.val else None
    return export_cli.run_quantize(args, family=FAMILY, train_set=calib, val_set=val)


def cmd_live(args: argparse.Namespace) -> int:
    """The newest window of a live source through a checkpoint or an ONNX file (export.live)."""
    return export_live.run_command(args, family=FAMILY)


# ----------------------------------------------------------------------------- demo
def cmd_demo(args: argparse.Namespace) -> int:
    """The whole pipeline on the embedded synthetic data, on CPU, in a few minutes; prints the
    seconds each step took and the video-level validation accuracy."""
    out = Path(args.out)
    videos, data, run = out / "videos", out / "data", out / "run"
    started = time.monotonic()
    steps = [
        ["synth", "--out", str(videos), "--videos-per-class", str(args.videos_per_class),
         "--seed", str(args.seed)],
        ["prepare", "--videos", str(videos), "--out", str(data), "--short-side", "64",
         "--workers", str(args.workers)],
        # No flips: the synthetic classes include mirror pairs (left/right, clockwise/anti-).
        ["train", "--data", str(data), "--splits", str(videos / "splits"), "--network",
         args.network, "--clip-length", "8", "--clip-size", "56", "--short-side", "64",
         "--train-frame-interval", "3", "--val-frame-interval", "3", "--flip-prob", "0",
         "--clips-per-video", "2", "--batch-size", "8", "--optimizer", "adamw",
         "--lr-base", "0.003", "--weight-decay", "0.01", "--lr-schedule", "cosine",
         "--warmup-epochs", "1", "--end-epoch", str(args.epochs), "--workers", str(args.workers),
         "--random-seed", str(args.seed), "--output-dir", str(run), "--log-interval", "20",
         "--no-auto-resume", "--channels-last"],
        ["evaluate", "--checkpoint", str(run / "best.pth"), "--data", str(data),
         "--output-dir", str(run / "eval"), "--eval-mode", "conv", "--segments", "4",
         "--channels-last", "--workers", str(args.workers)],
        ["export", "--checkpoint", str(run / "best.pth"), "--onnx", str(out / "model.onnx")],
        ["inference", "--checkpoint", str(run / "best.pth"), "--videos", str(data / "jpg"),
         "--jsonl", str(out / "inference.jsonl"),
         "--workers", str(args.workers)],
    ]  # fmt: skip
    seconds: dict[str, tuple[float, float]] = {}
    failed = run_steps("train_hmdb.py", main, steps, seconds)
    if failed:
        return failed
    scores = json.loads((run / "eval" / "metrics.json").read_text(encoding="utf-8"))
    peak_kib = max(resource.getrusage(who).ru_maxrss for who in (SELF, CHILDREN))
    minutes = (time.monotonic() - started) / 60
    print(
        "demo seconds per step, wall (CPU): "
        + ", ".join(f"{name} {wall:.0f} ({cpu:.0f})" for name, (wall, cpu) in seconds.items())
    )
    print(
        f"demo finished in {minutes:.1f} min, peak RSS {peak_kib / 2**20:.2f} GiB; "
        f"video-level validation accuracy: {100 * scores['video_top1']:.2f}%"
    )
    return 0


COMMANDS = command_table(
    cmd_train, cmd_evaluate, cmd_inference, cmd_explain, cmd_quantize, cmd_live, cmd_demo,
    synth=synth_video.run, prepare=prepare.run,
)  # fmt: skip
# TAO action_recognition spec keys per subcommand (-e spec.yaml, key=value): train/tao_specs.py
SCRIPT = FamilyScript(get_args_parser, COMMANDS, video_spec_map, known_keys=VIDEO_KEYS)
parse_args = SCRIPT.parse_args  # argv -> namespace (command line > spec > defaults)
main = SCRIPT.main  # argv -> exit code


if __name__ == "__main__":
    sys.exit(main())
