"""Live speed: can a 30 fps 320×240 stream be classified as it plays, window every 8 frames?

    python benchmarks/live.py                                   # the three models, 3 runtimes
    python benchmarks/live.py --models r3d_18 --runtimes ort-int8 --seconds 30
    python benchmarks/live.py --tiny --seconds 2                # smoke run (tiny networks)

Each row is one ``export.live.run_live`` run (the code behind ``train_hmdb.py live``) on a
synthetic source paced at 30 fps (``--realtime``): a 320×240 H.264 file of a moving square for
the video and gesture models, an in-memory stream of 34-joint poses for the skeleton model.
Models have random weights (speed only): r3d_18 on 16×112² windows, st_gcn on 300-frame
windows of (3, 34, 1) poses, GestureNet on one 160×160 frame per window; ``--stride 8`` frames
between windows, i.e. 3.75 windows/s are due. Runtimes: PyTorch FP32 (the checkpoint),
ONNX Runtime FP32 (``export``) and INT8 (``quantize``, calibrated on windows of the source).

Columns: model latency p50/p95 (ms per call), end-to-end delay p50 and its median over the
first and last quarter of the run (equal when the model keeps up, growing when it does not),
windows/s achieved, skipped windows and dropped frames. "delay flat" (the issue's "keeps up":
no growing delay, drops reported): the delay grew by at most one window period from the first to
the last quarter; "every window": besides, no window was skipped. "reader CPU ms/s": CPU time of the reader
thread (decoding, per-frame preprocessing) per second of stream. INT8 rows: share of
``AGREEMENT_WINDOWS`` windows across the source where INT8 and FP32 (ONNX Runtime both) pick the
same class, and the largest probability difference (random weights: probabilities are near
uniform, so this checks the graph, not the accuracy of a trained model).

ONNX Runtime's threads do not spin between calls, as in ``live``; ``--spinning`` lets them.
r3d_18 at 16×112² is 40.7 GMAC per window: at this machine's MLAS u8s8 AVX2 rate (59-70 GMAC/s
a core, a large MatMulInteger on the shared machine; the INT8 model runs at 58-70) that is at
least 290-345 ms on 2 cores, more than the 267 ms between windows at ``--stride 8``
(``--stride 12``: 400 ms, above that bound).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.timing import benchmark_parser, collect_rows, markdown_table
from export import live
from export.cli import export_checkpoint
from export.ort_runtime import OrtClassifier, softmax
from export.quantize import quantize_int8
from export.render import write_mp4
from network import build_model
from train.checkpoint import atomic_save, make_checkpoint

FPS, WIDTH, HEIGHT = 30, 320, 240
RUNTIMES = ("pytorch-fp32", "ort-fp32", "ort-int8")


@dataclass(frozen=True)
class Model:
    family: str
    network: str
    tiny: str
    train_args: dict  # what fixes the input shape, as a training run would store it


MODELS = {
    "r3d_18": Model("video", "r3d_18", "r3d_tiny", {"clip_length": 16, "clip_size": 112}),
    "st_gcn": Model("skeleton", "st_gcn", "st_gcn_tiny", {"seq_length": 300, "num_person": 1}),
    "gesturenet": Model(
        "gesture", "gesturenet", "gesturenet_tiny", {"image_height": 160, "image_width": 160}
    ),
}
TINY_ARGS = {"r3d_18": {"clip_length": 4, "clip_size": 16}, "st_gcn": {"seq_length": 12}}
CALIBRATION_WINDOWS = 4
AGREEMENT_WINDOWS = 12  # INT8 vs FP32 windows, spread over the source


class PoseStream:
    """``count`` frames of 34 joints (x, y, z) for one person, swaying: an in-memory skeleton
    source with the ``export.live`` source interface."""

    name, live = "synthetic poses", True

    def __init__(self, count: int, joints: int = 34) -> None:
        self.count, self.base = count, np.random.default_rng(0).standard_normal((3, joints, 1))

    def frames(self) -> Iterator[tuple[float, np.ndarray]]:
        for i in range(self.count):
            yield i / FPS, (self.base + 0.1 * np.sin(i / 5)).astype(np.float32)

    def close(self) -> None:
        pass


def write_source(path: Path, seconds: float) -> Path:
    """A 320×240, 30 fps H.264 file: a white square crossing a grey background."""
    frames = []
    for i in range(round(seconds * FPS)):
        image = np.full((HEIGHT, WIDTH, 3), 64, np.uint8)
        x = 4 * i % (WIDTH - 40)
        image[100:140, x : x + 40] = 255
        frames.append(image)
    write_mp4(path, frames, FPS, max_side=None)
    return path


def _source(model: Model, video: Path, seconds: float) -> live.FrameSource:
    if model.family == "skeleton":
        return PoseStream(round(seconds * FPS))
    return live.VideoSource(str(video))


def source_windows(
    inputs: live.WindowInputs, source: live.FrameSource, stride: int, count: int
) -> list[np.ndarray]:
    """The first ``count`` network inputs ``(1, ...)`` of ``source``, ``stride`` frames apart."""
    frames = []
    for _, frame in source.frames():
        frames.append(inputs.frame(frame))
        if len(frames) >= inputs.length + (count - 1) * stride:
            break
    source.close()
    starts = range(0, len(frames) - inputs.length + 1, stride)
    return [inputs.window(frames[s : s + inputs.length])[0] for s in starts]


def _calibration(inputs: live.WindowInputs, source: live.FrameSource, name: str, stride: int):
    """An ONNX Runtime calibration reader over the first windows of the source itself."""
    from onnxruntime.quantization import CalibrationDataReader

    batches = source_windows(inputs, source, stride, CALIBRATION_WINDOWS)

    class Windows(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(batches)

        def get_next(self):
            batch = next(self.items, None)
            return None if batch is None else {name: batch}

    return Windows()


@dataclass(frozen=True)
class Agreement:
    """INT8 against FP32 (both ONNX Runtime) on windows of the source."""

    windows: int
    top1: float  # fraction of windows with the same top-1 class
    max_prob_diff: float  # largest |p_int8 - p_fp32| over windows and classes


def agreement(fp32: str, int8: str, windows: list[np.ndarray]) -> Agreement:
    """How closely the INT8 file reproduces the FP32 file's probabilities on ``windows``."""
    runs = [OrtClassifier(path) for path in (fp32, int8)]
    probs = [[softmax(run.logits(w)[0].astype(np.float64)) for w in windows] for run in runs]
    (p32, p8) = (np.stack(p) for p in probs)
    same = float(np.mean(p32.argmax(1) == p8.argmax(1)))
    return Agreement(len(windows), same, float(np.abs(p32 - p8).max()))


def prepare(
    name: str, args: argparse.Namespace, work: Path, video: Path
) -> tuple[dict[str, dict], Agreement | None]:
    """Checkpoint, FP32 and INT8 ONNX files of ``name``: ``open_classifier`` keyword sets, and
    the INT8 file's agreement with FP32 on ``AGREEMENT_WINDOWS`` windows across the source."""
    model = MODELS[name]
    torch.manual_seed(0)
    network = build_model(model.tiny if args.tiny else model.network, num_classes=args.classes)
    train_args = TINY_ARGS.get(name, model.train_args) if args.tiny else model.train_args
    if args.tiny and model.family == "gesture":
        train_args = {"image_height": 32, "image_width": 32}
    labels = [f"class {i}" for i in range(args.classes)]
    checkpoint = work / f"{name}.pth"
    state = make_checkpoint(network, args=train_args, family=model.family, class_names=labels)
    atomic_save(state, checkpoint)
    report = export_checkpoint(checkpoint, work / f"{name}.onnx", family=model.family)
    int8, agreed = work / f"{name}.int8.onnx", None
    if "ort-int8" in args.runtimes:
        fp32 = live.open_classifier(family=model.family, onnx=str(report.path))
        inputs = live.window_inputs(model.family, fp32.metadata)
        reader = _calibration(inputs, _source(model, video, 60), report.input_names[0], args.stride)
        quantize_int8(report.path, int8, reader)
        spread = max(1, round(args.seconds * FPS) - inputs.length) // AGREEMENT_WINDOWS
        windows = source_windows(
            inputs, _source(model, video, args.seconds), max(1, spread), AGREEMENT_WINDOWS
        )
        agreed = agreement(str(report.path), str(int8), windows)
    files = {
        "pytorch-fp32": {"checkpoint": str(checkpoint)},
        "ort-fp32": {"onnx": str(report.path)},
        "ort-int8": {"onnx": str(int8)},
    }
    return files, agreed


@dataclass
class Row:
    model: str
    runtime: str
    summary: live.LiveSummary
    stride: int
    agreement: Agreement | None = None  # INT8 rows: against FP32

    def delay_flat(self) -> bool:
        """Windows were scored and the delay grew by at most one window period."""
        s = self.summary
        grew = (s.delay_ms_end or 0) - (s.delay_ms_start or 0)
        return s.windows > 0 and grew <= 1000 * self.stride / FPS

    def every_window(self) -> bool:
        """The delay stayed flat and no window was skipped."""
        return self.delay_flat() and self.summary.skipped_windows == 0


def run_one(name: str, runtime: str, files: dict, args: argparse.Namespace, video: Path) -> Row:
    model = MODELS[name]
    classifier = live.open_classifier(
        family=model.family, threads=args.threads, spinning=args.spinning, **files[runtime]
    )
    inputs = live.window_inputs(model.family, classifier.metadata)
    schedule = live.Schedule(inputs.length, inputs.rate, args.stride)
    live.warm_up(classifier, inputs)
    summary = live.run_live(
        _source(model, video, args.seconds), classifier, inputs, schedule,
        emit=lambda record: None, realtime=True,
    )  # fmt: skip
    return Row(name, runtime, summary, args.stride)


def _runs(args: argparse.Namespace, work: Path) -> Iterator[list[Row]]:
    """One row per model and runtime, on one source video written into ``work``."""
    video = write_source(work / "source.mp4", args.seconds)
    for name in args.models:
        files, agreed = prepare(name, args, work, video)
        for runtime in args.runtimes:
            row = run_one(name, runtime, files, args, video)
            row.agreement = agreed if runtime == "ort-int8" else None
            yield [row]


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(rows: list[Row]) -> str:
    """Markdown table, one line per model and runtime."""
    header = ["model", "runtime", "latency p50 (ms)", "p95", "delay p50 (ms)", "delay start → end",
              "windows/s (due)", "skipped windows", "dropped frames", "delay flat",
              "every window", "reader CPU ms/s", "INT8 top-1 = FP32", "INT8 max Δp"]  # fmt: skip
    return markdown_table(header, "llrrrrrrrllrrr", [_cells(row) for row in rows])


def _cells(row: Row) -> list[str]:
    s = row.summary
    return [
        row.model, row.runtime, _num(s.latency_ms_p50, 1), _num(s.latency_ms_p95, 1),
        _num(s.delay_ms_p50), f"{_num(s.delay_ms_start)} → {_num(s.delay_ms_end)}",
        f"{_num(s.windows_per_s, 2)} ({FPS / row.stride:.2f})", str(s.skipped_windows),
        str(s.dropped_frames), _yes(row.delay_flat()), _yes(row.every_window()),
        _num(s.reader_cpu_ms_per_s, 1),
        *_agreement_cells(row.agreement),
    ]  # fmt: skip


def _agreement_cells(agreed: Agreement | None) -> list[str]:
    if agreed is None:
        return ["-", "-"]
    return [f"{agreed.top1:.0%} of {agreed.windows}", f"{agreed.max_prob_diff:.4f}"]


def get_args_parser() -> argparse.ArgumentParser:
    parser = benchmark_parser(__doc__, MODELS)
    parser.add_argument("--runtimes", nargs="+", choices=RUNTIMES, default=list(RUNTIMES))
    parser.add_argument("--seconds", type=float, default=20.0, help="stream length per run")
    parser.add_argument("--stride", type=int, default=8, help="frames between windows")
    parser.add_argument("--classes", type=int, default=51)
    parser.add_argument("--tiny", action="store_true", help="tiny networks (a smoke run)")
    parser.add_argument("--spinning", action="store_true",
                        help="let ONNX Runtime's intra-op threads spin between calls")  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    started = time.monotonic()
    rows = collect_rows(args.threads, "live-bench-", partial(_runs, args), format_table)
    print(
        f"\ntorch {torch.__version__}, {args.threads} threads, CPU, {args.seconds:g} s per run, "
        f"stride {args.stride}; {time.monotonic() - started:.0f} s in all"
    )
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
