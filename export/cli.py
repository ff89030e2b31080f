"""Deployment subcommands shared by the family scripts (``train_hmdb.py``, ``train_nvpose.py``,
``train_gesture.py``)::

    python train_hmdb.py export --checkpoint run/best.pth --onnx r3d.onnx
    python train_hmdb.py onnx-infer --onnx r3d.onnx --input video.mp4 --mode stream --stride 4
    python train_hmdb.py quantize --onnx r3d.onnx --int8 r3d.int8.onnx --calib-samples 64 ...
    python train_hmdb.py trt-engine --onnx r3d.onnx --engine r3d.fp16.engine --precision fp16
    python train_hmdb.py onnx-infer --engine r3d.fp16.engine --input frames_dir/

Each subcommand is a pair ``add_<x>_arguments(parser)`` / ``run_<x>(args, family=...) -> int``;
``add_subcommands(subparsers, family)`` adds export, onnx-infer and trt-engine at once. Quantize
and INT8 engines need calibration data, which only the family script can build: it passes
datasets of ``(inputs, target, sample_id)`` items, preprocessed as at evaluation.
Errors a user can fix (a missing file, a checkpoint of another family, a wrong shape, no
TensorRT) end the command with exit code 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from export.checkpoint_info import check_layout, input_shape_for, normalization_of, preprocess_for
from export.inputs import VideoOptions, read_items, video_paths
from export.metadata import MetadataView
from export.onnx_export import ExportReport, ParityError, export_onnx
from export.ort_runtime import OrtClassifier, softmax
from export.tensorrt_engine import TensorRTUnavailable
from train.validation import non_negative_int, positive_float, positive_int, printable

__all__ = [
    "add_export_arguments",
    "add_ort_arguments",
    "add_quantize_arguments",
    "add_subcommands",
    "add_trt_arguments",
    "export_checkpoint",
    "render_onnx_video",
    "run_export",
    "run_ort",
    "run_quantize",
    "run_trt",
]

logger = logging.getLogger(__name__)

USER_ERRORS = (FileNotFoundError, ValueError, ParityError, TensorRTUnavailable, KeyError)
EXIT_USER_ERROR = 2


def _shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.replace("x", ",").split(",") if d.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"bad shape {text!r}; expected e.g. 3,16,112,112"
        ) from None
    if not dims:
        raise argparse.ArgumentTypeError("empty shape")
    if min(dims) <= 0:
        raise argparse.ArgumentTypeError(f"bad shape {text!r}: every size must be > 0")
    return dims


def _fail(error: BaseException) -> int:
    message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USER_ERROR


def _guarded(run: Callable[[], int]) -> int:
    try:
        return run()
    except USER_ERRORS as error:
        return _fail(error)


# ----------------------------------------------------------------------------- export
def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("ONNX export (TAO's -m/-o/-t/--input_dims names work too)")
    # not required here: a spec (-e) may give it; run_export says so when it is missing
    group.add_argument(
        "--checkpoint", "-m", "--model", default=None, help="checkpoint written by training"
    )
    group.add_argument(
        "--network", default=None, help="a TAO-trained checkpoint's network (default: read from it)"
    )
    group.add_argument(
        "--onnx", "-o", "--output", default=None, help="output file (default: <checkpoint>.onnx)"
    )
    group.add_argument(
        "--input-shape",
        "--input_dims",
        "--input-dims",
        type=_shape,
        action="append",
        default=None,
        help="input shape without the batch, e.g. 3,16,112,112 (repeat for the joint model's "
        "flow input); default: from the checkpoint's arguments",
    )
    group.add_argument("--dynamic-batch", action=argparse.BooleanOptionalAction, default=True)
    group.add_argument(
        "--dynamic-time",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="also leave T free (TensorRT engines still fix T at the exported length)",
    )
    group.add_argument("--opset", "-t", type=positive_int, default=17)
    group.add_argument("--atol", type=positive_float, default=1e-3, help="parity tolerance (fp32)")
    group.add_argument(
        "-r",
        "--results-dir",
        "--results_dir",
        dest="results_dir",
        default=None,
        help="TAO's results folder: accepted so TAO export commands run as written; export "
        "writes only the ONNX file (--onnx, default <checkpoint>.onnx as TAO)",
    )


def export_checkpoint(
    checkpoint: str | Path,
    onnx_path: str | Path | None = None,
    *,
    family: str,
    input_shape: Sequence[Sequence[int]] | None = None,
    dynamic_batch: bool = True,
    dynamic_time: bool = False,
    opset: int = 17,
    atol: float = 1e-3,
    network: str | None = None,
) -> ExportReport:
    """Rebuild the network of ``checkpoint`` (``train.checkpoint.load_model``) and export it."""
    from network import get_entry
    from train.checkpoint import load_model

    model = load_model(checkpoint, family=family, network=network)
    args = model.train_args
    layout = get_entry(model.network_name).input_layout
    shapes = (
        [tuple(s) for s in input_shape] if input_shape else input_shape_for(family, args, model)
    )
    check_layout(model.network_name, layout, shapes)
    preprocess = preprocess_for(family, args, shapes, layout)
    metadata = {
        "labels": getattr(model, "class_names", None),
        "preprocess": preprocess,
        "normalization": normalization_of(family, preprocess),
        "family": family,
        "checkpoint": str(checkpoint),
    }
    modality = preprocess.get("modality") if family == "video" else None
    target = Path(onnx_path) if onnx_path else Path(checkpoint).with_suffix(".onnx")
    return export_onnx(
        model, target, shapes, dynamic_batch=dynamic_batch, dynamic_time=dynamic_time,
        opset=opset, metadata=metadata, atol=atol,
        modality="of" if modality in ("of", "flow") else None,
    )  # fmt: skip


def run_export(args: argparse.Namespace, *, family: str) -> int:
    """``export --checkpoint X --onnx out.onnx``: prints the report with the parity figure."""

    def run() -> int:
        if not args.checkpoint:
            raise ValueError("export needs --checkpoint (-m), or export.checkpoint in the spec")
        if getattr(args, "results_dir", None):
            logger.info("-r %s: export writes only the ONNX file", args.results_dir)
        report = export_checkpoint(
            args.checkpoint, args.onnx, family=family, input_shape=args.input_shape,
            dynamic_batch=args.dynamic_batch, dynamic_time=args.dynamic_time,
            opset=args.opset, atol=args.atol, network=getattr(args, "network", None),
        )  # fmt: skip
        print(report.summary())
        for warning in report.tracer_warnings:
            print(f"tracer warning: {warning}")
        return 0

    return _guarded(run)


# ----------------------------------------------------------------------------- inference
def add_ort_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("ONNX Runtime / TensorRT inference")
    source = group.add_mutually_exclusive_group(required=True)
    source.add_argument("--onnx", help="exported ONNX file (FP32 or INT8)")
    source.add_argument("--engine", help="TensorRT engine built by trt-engine (GPU)")
    group.add_argument(
        "--input", nargs="+", required=True,
        help="video files / frame folders, skeleton .npy / deepstream .json, or images",
    )  # fmt: skip
    group.add_argument("--mode", choices=("center", "conv", "stream"), default="center",
                       help="video: centre clip, conv segments, or a sliding window")  # fmt: skip
    group.add_argument(
        "--num-segments", type=positive_int, default=10, help="video conv mode: clips"
    )
    group.add_argument(
        "--stride", type=positive_int, default=1, help="video stream mode: window stride"
    )
    group.add_argument(
        "--threads", type=positive_int, default=None, help="ONNX Runtime intra-op threads"
    )
    group.add_argument("--results", default=None, help="also write the printed lines here")
    add_render_arguments(parser)


def add_render_arguments(parser: argparse.ArgumentParser) -> None:
    """``--render DIR`` and its settings (video models): ``inference`` and ``onnx-infer``."""
    group = parser.add_argument_group("annotated videos (--render, video models)")
    group.add_argument(
        "--render", default=None, metavar="DIR",
        help="also write <video>.mp4 (top-3 classes of the window covering each frame) and "
        "<video>_timeline.png per video into DIR",
    )  # fmt: skip
    group.add_argument(
        "--render-stride", type=positive_int, default=None,
        help="frames between rendered windows (default: half a window)",
    )  # fmt: skip
    group.add_argument(
        "--render-max-side", type=positive_int, default=720, help="long side of the rendered video"
    )


def _open_classifier(args: argparse.Namespace) -> Any:
    if args.engine:
        from export.tensorrt_engine import TrtClassifier

        return TrtClassifier(args.engine)
    return OrtClassifier(args.onnx, threads=args.threads)


def _format(
    classifier: Any, name: str, logits: np.ndarray, details: list[str], mode: str
) -> list[str]:
    """TAO-style lines: stream ``<frames> : <label> <prob>``; others ``<name> : [labels]``."""
    probs = softmax(logits.astype(np.float64))
    best = probs.argmax(axis=1)
    if mode == "stream":
        return [
            f"{printable(d)} : {printable(classifier.label(int(b)))} {p[b]:.4f}"
            for d, b, p in zip(details, best, probs)
        ]
    if len(best) == 1:
        label = printable(classifier.label(int(best[0])))
        return [f"{printable(name)} : {label} {probs[0, best[0]]:.4f}"]
    mean = probs.mean(axis=0)
    labels = [classifier.label(int(b)) for b in best]
    top = int(mean.argmax())
    name, label = printable(name), printable(classifier.label(top))
    return [f"{name} : {labels}", f"{name} : mean {label} {mean[top]:.4f}"]


def run_ort(args: argparse.Namespace, *, family: str) -> int:
    """Classify every ``--input`` with an ONNX file (ONNX Runtime) or an engine (TensorRT)."""

    def run() -> int:
        if args.render and family != "video":
            raise ValueError("--render draws annotated videos: only for video models")
        classifier = _open_classifier(args)
        _check_family(classifier, family)
        options = VideoOptions(mode=args.mode, num_segments=args.num_segments, stride=args.stride)
        lines: list[str] = []
        for path in args.input:
            for item in read_items(family, path, classifier.metadata, options):
                for line in _format(classifier, item.name, classifier.logits(*item.inputs),
                                    item.details, args.mode if family == "video" else ""):  # fmt: skip
                    print(line, flush=True)
                    lines.append(line)
        if args.results:
            Path(args.results).write_text("\n".join(lines) + "\n")
        if args.render:
            _render_all([p for given in args.input for p in video_paths(Path(given))], classifier,
                        args)  # fmt: skip
        return 0

    return _guarded(run)


def _render_all(paths: list[Path], classifier: Any, args: argparse.Namespace) -> None:
    """``render_onnx_video`` for each of ``paths``; an unreadable video is named, skipped and
    counted, as the classification lines do, instead of ending the run."""
    from data.video.dataset import VideoReadError
    from data.video.ffmpeg_io import VideoDecodeError
    from data.video.framestore import FrameStoreError

    failed = 0
    for path in paths:
        try:
            render_onnx_video(classifier, path, args)
        except (ValueError, VideoReadError, FrameStoreError, VideoDecodeError) as error:
            failed += 1
            logger.warning("not rendered: %s", error)
    if failed:
        logger.warning("%d of %d videos not rendered", failed, len(paths))


def render_onnx_video(classifier: Any, path: Path, args: argparse.Namespace) -> None:
    """``--render``: the annotated copy and timeline of ``train_hmdb.py inference --render``
    (export.annotate) from the exported model's windows, whatever ``--mode`` printed."""
    from export.annotate import render_video
    from export.inputs import render_windows, window_batches

    pre = dict(classifier.metadata.get("preprocess") or {})
    video = render_windows(path, pre, args.render_stride)
    logits = np.concatenate([classifier.logits(*x) for x in window_batches(video.dataset)])
    names = [classifier.label(i) for i in range(logits.shape[1])]
    mp4, png = render_video(
        video.store, video.windows, softmax(logits.astype(np.float64)), names, args.render,
        video.name, max_side=args.render_max_side,
    )  # fmt: skip
    logger.info("rendered %s (%d windows) and %s", mp4, len(video.windows), png)


def _check_family(classifier: MetadataView, family: str) -> None:
    """A model exported by another family's script is refused (files without metadata pass)."""
    if classifier.family not in (None, family):
        raise ValueError(f"{classifier.path}: a {classifier.family} model, not {family}")


# ----------------------------------------------------------------------------- INT8
def add_quantize_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("INT8 quantization (ONNX Runtime)")
    group.add_argument("--onnx", required=True, help="FP32 ONNX file from export")
    group.add_argument("--int8", default=None, help="output (default: <onnx stem>.int8.onnx)")
    _add_calibration_arguments(group)
    group.add_argument("--quant-format", choices=("qoperator", "qdq"), default="qoperator")
    group.add_argument(
        "--calibration", choices=("minmax", "entropy", "percentile"), default="minmax"
    )
    group.add_argument("--per-channel", action=argparse.BooleanOptionalAction, default=True)
    group.add_argument("--compare", action=argparse.BooleanOptionalAction, default=True,
                       help="FP32 vs INT8 accuracy on the validation set")  # fmt: skip
    group.add_argument("--seed", type=non_negative_int, default=0, help="calibration sample draw")


def run_quantize(
    args: argparse.Namespace, *, family: str, train_set: Dataset, val_set: Dataset | None = None
) -> int:
    """Calibrate on ``--calib-samples`` items of ``train_set``; compare on ``val_set``."""
    from export.quantize import DatasetCalibrationReader, compare_accuracy, quantize_int8

    def run() -> int:
        fp32 = Path(args.onnx)
        classifier = OrtClassifier(fp32)
        _check_family(classifier, family)
        reader = DatasetCalibrationReader(
            train_set, classifier.input_names, num_samples=args.calib_samples,
            batch_size=args.calib_batch_size, seed=args.seed,
        )  # fmt: skip
        target = Path(args.int8) if args.int8 else fp32.with_name(f"{fp32.stem}.int8.onnx")
        quantize_int8(fp32, target, reader, quant_format=args.quant_format,
                      calibration=args.calibration, per_channel=args.per_channel)  # fmt: skip
        print(f"wrote {target} ({args.quant_format}, {len(reader.indices)} calibration items)")
        if args.compare and val_set is not None:
            scores = compare_accuracy(fp32, target, val_set, batch_size=args.calib_batch_size)
            print(
                f"FP32 top-1 {scores['fp32_video_top1']:.2f}  INT8 top-1 "
                f"{scores['int8_video_top1']:.2f}  lost {scores['points_lost']:+.2f} points"
            )
        return 0

    return _guarded(run)


# ----------------------------------------------------------------------------- TensorRT
def add_trt_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("TensorRT engine (GPU)")
    group.add_argument("--onnx", required=True, help="FP32 ONNX file from export")
    group.add_argument("--engine", default=None, help="output (default: <onnx>.<precision>.engine)")
    group.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp16")
    group.add_argument("--min-batch", type=positive_int, default=1)
    group.add_argument("--opt-batch", type=positive_int, default=4)
    group.add_argument("--max-batch", type=positive_int, default=16)
    group.add_argument(
        "--workspace-gib", type=positive_float, default=2.0, help="builder workspace"
    )
    group.add_argument("--calib-cache", default=None,
                       help="INT8 calibration cache; reused when it exists")  # fmt: skip
    _add_calibration_arguments(group)


def _add_calibration_arguments(group: argparse._ArgumentGroup) -> None:
    """INT8 calibration data, the same for ONNX Runtime and TensorRT."""
    group.add_argument("--calib-samples", type=positive_int, default=128,
                       help="training items drawn for calibration")  # fmt: skip
    group.add_argument("--calib-batch-size", type=positive_int, default=8)


def run_trt(args: argparse.Namespace, *, family: str, calib_set: Dataset | None = None) -> int:
    """Build an engine; INT8 calibrates on ``calib_set`` unless ``--calib-cache`` exists."""
    from export.tensorrt_engine import (
        BatchProfile,
        build_engine,
        make_entropy_calibrator,
        require_tensorrt,
    )

    def run() -> int:
        require_tensorrt()
        onnx_path = Path(args.onnx)
        engine = Path(args.engine or onnx_path.with_suffix(f".{args.precision}.engine"))
        calibrator = None
        if args.precision == "int8":
            cache = Path(args.calib_cache or onnx_path.with_suffix(".calib.bin"))
            calibrator = make_entropy_calibrator(
                _calibration_batches(args, calib_set, onnx_path, cache), cache,
                args.calib_batch_size,
            )  # fmt: skip
        batch = BatchProfile(min=args.min_batch, opt=args.opt_batch, max=args.max_batch)
        build_engine(onnx_path, engine, precision=args.precision, batch=batch,
                     workspace_gib=args.workspace_gib, calibrator=calibrator)  # fmt: skip
        print(f"wrote {engine} ({args.precision}, batch {batch.min}/{batch.opt}/{batch.max})")
        return 0

    return _guarded(run)


def _calibration_batches(
    args: argparse.Namespace, calib_set: Dataset | None, onnx_path: Path, cache: Path
) -> Iterator[dict[str, np.ndarray]]:
    """Calibration batches, read lazily (none when the cache exists: TensorRT then reads it)."""
    if cache.is_file():
        return iter(())
    if calib_set is None:
        raise ValueError(f"INT8 needs calibration data (training set) or an existing {cache}")
    from export.quantize import DatasetCalibrationReader

    names = OrtClassifier(onnx_path).input_names
    reader = DatasetCalibrationReader(
        calib_set, names, num_samples=args.calib_samples, batch_size=args.calib_batch_size
    )
    return iter(reader.get_next, None)


# ----------------------------------------------------------------------------- wiring
def add_subcommands(
    subparsers: Any,
    *,
    family: str,
    parents: Callable[[], Sequence[argparse.ArgumentParser]] = tuple,
    names: Sequence[str] = ("export", "onnx-infer", "trt-engine"),
) -> None:
    """Add ``names`` of ``export``, ``onnx-infer`` and ``trt-engine`` (FP32/FP16; INT8 from a
    cache) with ``func`` defaults taking ``args``. Scripts add ``quantize`` themselves (it needs
    datasets), and a ``trt-engine`` of their own where INT8 calibrates on their data.

    ``parents`` makes fresh parent parsers for each subcommand: argparse shares a parent's
    actions by reference, so one parent for several subcommands would share their defaults."""
    commands = {
        "export": (
            add_export_arguments,
            run_export,
            "export a checkpoint to ONNX (with parity check)",
        ),
        "onnx-infer": (add_ort_arguments, run_ort, "classify with an ONNX file or TensorRT engine"),
        "trt-engine": (add_trt_arguments, run_trt, "build a TensorRT engine (GPU)"),
    }
    for name in names:
        add, run, help_text = commands[name]
        sub = subparsers.add_parser(
            name, parents=list(parents()), help=help_text, description=help_text
        )
        add(sub)
        sub.set_defaults(func=lambda args, run=run: run(args, family=family))
