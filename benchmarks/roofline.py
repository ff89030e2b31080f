"""How close each network runs to this CPU's matrix-multiply roofline.

    python benchmarks/roofline.py                          # every skeleton network, GestureNet, r3d_18
    python benchmarks/roofline.py --models st_gcn --repeats 3
    python benchmarks/roofline.py --malloc glibc           # without ActRec's malloc setting
    python benchmarks/roofline.py --compile                # torch.compile'd rows as well

The peak is measured here, in this process with these threads: a ``GEMM_SIZE``² fp32 matrix
product (``2·n³`` FLOP). Each network's FLOPs are counted with ``torch.utils.flop_counter``'s formulas on one
forward pass (inference) and on one forward + backward pass (a training step: cross-entropy,
backward, SGD with momentum). Only the matrix products and convolutions count, as in any roofline:
normalisation, activations and the optimiser are work the network does on top, at no FLOPs.

Rows: one per network and mode, with GFLOP per call, seconds per call (median), achieved GFLOP/s
and the fraction of peak. The peak is timed in the same rounds as the networks
(``benchmarks/timing.py``), so load from other processes hits both alike. Skeleton networks are
every registered non-tiny skeleton network at batch 16, T=300 on their default graph; GestureNet
at 160×160 batch 16; r3d_18 at 16×112² batch 8.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.timing import interleaved_median
from network import build_model, get_entry, list_models
from network.summary import flops_of
from train.malloc import reuse_large_buffers

GEMM_SIZE = 2048
SKELETON_FRAMES = 300
# Non-skeleton rows, with their family's (batch size, input shape without batch) below.
OTHER_MODELS = ("gesturenet", "r3d_18")
INPUTS: dict[str, tuple[int, tuple[int, ...]]] = {
    "gesture": (16, (3, 160, 160)),  # the deployed gesture input
    "video": (8, (3, 16, 112, 112)),  # the classic clip (3D networks), for reference
}
SKELETON_BATCH = 16
PEAK = "gemm peak"
# wall: seconds as a user waits; cpu: CPU seconds of the process's threads, which a busy machine
# (other jobs on the cores) changes far less, at the price of counting spinning threads as work.
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


@dataclass
class Row:
    network: str
    mode: str  # "inference" or "train step", with " compiled" when torch.compile ran it
    gflop: float  # per call
    seconds: float  # median per call
    peak_gflops: float  # the GEMM in the same rounds
    compile_seconds: float | None = None  # compiled rows: the first call (compilation) apart

    @property
    def gflops(self) -> float:
        return self.gflop / self.seconds

    @property
    def fraction(self) -> float:
        return self.gflops / self.peak_gflops


def default_models() -> list[str]:
    """Every registered non-tiny skeleton network, then GestureNet and r3d_18."""
    skeleton = [name for name in list_models("skeleton") if "tiny" not in get_entry(name).tags]
    return skeleton + list(OTHER_MODELS)


def model_input(name: str, model: nn.Module, batch_size: int | None) -> torch.Tensor:
    """A random input of the shape the row measures (skeletons: (N, 3, 300, V, 1))."""
    family = get_entry(name).family
    if family == "skeleton":
        batch, shape = SKELETON_BATCH, (3, SKELETON_FRAMES, model.A.shape[-1], 1)
    else:
        batch, shape = INPUTS[family]
    return torch.randn(batch_size or batch, *shape)


def gemm(size: int = GEMM_SIZE) -> tuple[float, Callable[[], object]]:
    """(GFLOP per call, call) of one fp32 ``size``² matrix product into a preallocated output."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    out = torch.empty(size, size)
    return 2 * size**3 / 1e9, lambda: torch.mm(a, b, out=out)


def count_gflop(run: Callable[[], object]) -> float:
    """GFLOP of the matrix products and convolutions that ``run`` executes."""
    return flops_of(run) / 1e9


def inference(model: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    def run() -> object:
        with torch.inference_mode():
            return model(x)

    return run


def training_step(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    y = torch.randint(0, 2, (x.shape[0],))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def run() -> None:
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return run


def measure(name: str, args: argparse.Namespace) -> list[Row]:
    """The inference and training-step rows of one network, each timed against the GEMM."""
    torch.manual_seed(0)
    model = build_model(name, num_classes=2)
    x = model_input(name, model, args.batch_size)
    peak_gflop, peak = gemm(args.gemm_size)
    rows = []
    for mode, make, train in (("inference", inference, False), ("train step", training_step, True)):
        model.train(train)
        runs = {mode: make(model, x)}
        compile_seconds = None
        if args.compile:
            runs[mode + " compiled"] = make(torch.compile(model), x)
            start = time.perf_counter()
            runs[mode + " compiled"]()  # compiles
            compile_seconds = time.perf_counter() - start
        gflop = count_gflop(runs[mode])
        seconds = interleaved_median({PEAK: peak, **runs}, args.repeats, clock=CLOCKS[args.clock])
        rows += [
            Row(name, key, gflop, seconds[key], peak_gflop / seconds[PEAK],
                compile_seconds if key.endswith("compiled") else None)
            for key in runs
        ]  # fmt: skip
    return rows


def print_header() -> None:
    print(f"{'network':<14} {'mode':<20} {'GFLOP':>8} {'s/call':>8} {'GFLOP/s':>8} "
          f"{'peak':>6} {'of peak':>8} {'compile s':>10}")  # fmt: skip


def print_rows(rows: list[Row]) -> None:
    for row in rows:
        compiled = "" if row.compile_seconds is None else f"{row.compile_seconds:10.1f}"
        print(f"{row.network:<14} {row.mode:<20} {row.gflop:8.2f} {row.seconds:8.3f} "
              f"{row.gflops:8.1f} {row.peak_gflops:6.0f} {row.fraction:8.2f} {compiled}",
              flush=True)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=None, help="default: see the docstring")
    parser.add_argument("--batch-size", type=int, default=None, help="override every row's batch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--malloc", choices=("actrec", "glibc"), default="actrec",
                        help="actrec: train.malloc.reuse_large_buffers, as every script runs")  # fmt: skip
    parser.add_argument("--compile", action="store_true", help="add torch.compile'd rows")
    parser.add_argument("--clock", choices=CLOCKS, default="wall", help="see CLOCKS")
    parser.add_argument("--gemm-size", type=int, default=GEMM_SIZE, help="the peak's matrix side")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.malloc == "actrec" and not reuse_large_buffers():
        print("roofline: the actrec malloc setting needs glibc", file=sys.stderr)
        return 2
    print(f"{torch.get_num_threads()} threads, malloc {args.malloc}, {args.clock} clock, "
          f"peak: {args.gemm_size}² fp32 matrix product in the same rounds", flush=True)  # fmt: skip
    print_header()
    for name in args.models or default_models():
        print_rows(measure(name, args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
