"""Deployment speed on CPU: PyTorch eager vs ONNX Runtime FP32 vs ONNX Runtime INT8.

    python benchmarks/deploy.py                              # the three issue models, 2 threads
    python benchmarks/deploy.py --models st_gcn --repeats 5 --threads 4
    python benchmarks/deploy.py --int8-formats qoperator qdq # compare the two INT8 formats

Rows: one per network and runtime. Columns: latency at batch 1 (median ms per call) and
throughput at batch 16 (items/s), each with its ratio to eager and to ONNX Runtime FP32.
Targets (issue 7): ORT FP32 ≥ 1.2× eager; INT8 ≥ 1.8× FP32. The INT8 models here are calibrated
on random inputs, which is enough for speed; accuracy is measured by ``train_<family>.py
quantize`` on the real (synthetic) validation sets.

Every model is exported with the project's ``export_onnx`` (parity checked) before timing. The
process uses the malloc setting of the family scripts (``train.malloc.reuse_large_buffers``), and
every timed call follows an untimed one of the same runtime (``benchmarks/timing.py``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.timing import (
    benchmark_parser,
    collect_rows,
    interleaved_median,
    markdown_table,
)
from export import export_onnx
from export.ort_runtime import OrtClassifier
from export.quantize import QUANT_FORMATS, quantize_int8
from network import build_model

# network name -> input shape without batch (issue 7: r3d_18 16×112×112, ST-GCN 300×34, 160×160)
MODELS = {
    "r3d_18": (3, 16, 112, 112),
    "st_gcn": (3, 300, 34, 1),
    "gesturenet": (3, 160, 160),
}
LATENCY_BATCH, THROUGHPUT_BATCH = 1, 16
CALIBRATION_BATCHES = 4


@dataclass
class Row:
    network: str
    runtime: str
    latency_ms: float  # batch 1, median per call
    throughput: float  # batch 16, items per second


def _inputs(shape: tuple[int, ...], batch: int) -> np.ndarray:
    return np.random.default_rng(batch).standard_normal((batch, *shape)).astype(np.float32)


def bench_network(name: str, args: argparse.Namespace, work: Path) -> list[Row]:
    shape = MODELS[name]
    torch.manual_seed(0)
    model = build_model(name, num_classes=args.num_classes).eval()
    report = export_onnx(model, work / f"{name}.onnx", shape)
    print(f"# {report.summary()}", flush=True)

    def eager(x: np.ndarray) -> object:
        with torch.inference_mode():
            return model(torch.from_numpy(x))

    runs = {
        "pytorch eager": eager,
        "ort fp32": OrtClassifier(report.path, threads=args.threads).logits,
    }
    for fmt in args.int8_formats:
        reader = _calibration_reader(report.input_names[0], shape)
        path = quantize_int8(report.path, work / f"{name}.{fmt}.onnx", reader, quant_format=fmt)
        runs[f"ort int8 {fmt}"] = OrtClassifier(path, threads=args.threads).logits
    latency = _median_per_call(runs, _inputs(shape, LATENCY_BATCH), args.repeats, args.warmup)
    big = _median_per_call(runs, _inputs(shape, THROUGHPUT_BATCH), args.throughput_repeats, 1)
    return [
        Row(name, runtime, 1000 * latency[runtime], THROUGHPUT_BATCH / big[runtime])
        for runtime in runs
    ]


def _median_per_call(
    runs: dict[str, Callable[[np.ndarray], object]], x: np.ndarray, repeats: int, warmup: int
) -> dict[str, float]:
    return interleaved_median(
        {name: partial(run, x) for name, run in runs.items()}, repeats, warmup
    )


def _calibration_reader(input_name: str, shape: tuple[int, ...]):
    from onnxruntime.quantization import CalibrationDataReader

    batches = [{input_name: _inputs(shape, 2 + i)} for i in range(CALIBRATION_BATCHES)]

    class RandomReader(CalibrationDataReader):
        """Random-normal calibration batches: enough for speed (see the module docstring)."""

        def __init__(self) -> None:
            self.batches = iter(batches)

        def get_next(self):
            return next(self.batches, None)

    return RandomReader()


def format_table(rows: list[Row]) -> str:
    """Markdown table with ratios to eager and to ORT FP32 of the same network."""
    header = ["network", "runtime", "latency b1 (ms)", "×eager", "×fp32", "throughput b16 (/s)",
              "×eager", "×fp32"]  # fmt: skip
    base = {(r.network, r.runtime): r for r in rows}
    cells = []
    for row in rows:
        eager, fp32 = base[(row.network, "pytorch eager")], base.get((row.network, "ort fp32"), row)
        latency, throughput = row.latency_ms, row.throughput
        cells.append([
            row.network, row.runtime, f"{latency:.1f}", f"{eager.latency_ms / latency:.2f}",
            f"{fp32.latency_ms / latency:.2f}", f"{throughput:.1f}",
            f"{throughput / eager.throughput:.2f}", f"{throughput / fp32.throughput:.2f}",
        ])  # fmt: skip
    return markdown_table(header, "llrrrrrr", cells)


def get_args_parser() -> argparse.ArgumentParser:
    parser = benchmark_parser(__doc__, MODELS)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls at batch 1")
    parser.add_argument("--throughput-repeats", type=int, default=2, help="timed calls at batch 16")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--num-classes", type=int, default=51)
    parser.add_argument(
        "--int8-formats", nargs="+", choices=sorted(QUANT_FORMATS), default=["qoperator"]
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    rows = collect_rows(
        args.threads, "deploy-bench-",
        lambda work: (bench_network(name, args, work) for name in args.models), format_table,
    )  # fmt: skip
    print(f"\ntorch {torch.__version__}, {args.threads} threads, CPU")
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
