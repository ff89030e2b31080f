"""How close each network runs to this CPU's matrix-multiply roofline.

    python benchmarks/roofline.py                          # every skeleton network, GestureNet, r3d_18
    python benchmarks/roofline.py --models st_gcn --repeats 3
    python benchmarks/roofline.py --malloc glibc           # without ActRec's malloc setting
    python benchmarks/roofline.py --compile                # torch.compile'd rows as well

The peak is measured here, in this process with these threads: a ``GEMM_SIZE``² fp32 matrix
product (``2·n³`` FLOP). Each network's FLOPs are counted by ``torch.utils.flop_counter`` on one
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.timing import interleaved_median
from network import build_model, get_entry, list_models
from train.malloc import reuse_large_buffers

GEMM_SIZE = 2048
SKELETON_FRAMES = 300
# Non-skeleton rows: network -> (batch size, input shape without batch).
OTHER_MODELS: dict[str, tuple[int, tuple[int, ...]]] = {
    "gesturenet": (16, (3, 160, 160)),  # the deployed gesture input
    "r3d_18": (8, (3, 16, 112, 112)),  # the classic video clip, for reference
}
SKELETON_BATCH = 16
PEAK = "gemm peak"


@dataclass
class Row:
    network: str
    mode: str  # "inference" or "train step", with " compiled" when torch.compile ran it
    gflop: float  # per call
    seconds: float  # median per call
    peak_gflops: float  # the GEMM in the same rounds

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
    if name in OTHER_MODELS:
        batch, shape = OTHER_MODELS[name]
    else:
        batch, shape = SKELETON_BATCH, (3, SKELETON_FRAMES, model.A.shape[-1], 1)
    return torch.randn(batch_size or batch, *shape)


def gemm(size: int = GEMM_SIZE) -> tuple[float, Callable[[], object]]:
    """(GFLOP per call, call) of one fp32 ``size``² matrix product into a preallocated output."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    out = torch.empty(size, size)
    return 2 * size**3 / 1e9, lambda: torch.mm(a, b, out=out)


def count_gflop(run: Callable[[], object]) -> float:
    """GFLOP of the matrix products and convolutions that ``run`` executes."""
    with FlopCounterMode(display=False) as counter:
        run()
    return counter.get_total_flops() / 1e9


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
        if args.compile:
            compiled = torch.compile(model) if train else _compiled_eval(model)
            runs[mode + " compiled"] = make(compiled, x)
        gflop = count_gflop(runs[mode])
        seconds = interleaved_median({PEAK: peak, **runs}, args.repeats)
        rows += [Row(name, key, gflop, seconds[key], peak_gflop / seconds[PEAK]) for key in runs]
    return rows


def _compiled_eval(model: nn.Module) -> nn.Module:
    model.eval()
    return torch.compile(model)


def print_header() -> None:
    print(f"{'network':<14} {'mode':<20} {'GFLOP':>8} {'s/call':>8} {'GFLOP/s':>8} "
          f"{'peak':>6} {'of peak':>8}")  # fmt: skip


def print_rows(rows: list[Row]) -> None:
    for row in rows:
        print(f"{row.network:<14} {row.mode:<20} {row.gflop:8.1f} {row.seconds:8.3f} "
              f"{row.gflops:8.1f} {row.peak_gflops:6.0f} {row.fraction:8.2f}", flush=True)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=None, help="default: see the docstring")
    parser.add_argument("--batch-size", type=int, default=None, help="override every row's batch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--malloc", choices=("actrec", "glibc"), default="actrec",
                        help="actrec: train.malloc.reuse_large_buffers, as every script runs")  # fmt: skip
    parser.add_argument("--compile", action="store_true", help="add torch.compile'd rows")
    parser.add_argument("--gemm-size", type=int, default=GEMM_SIZE, help="the peak's matrix side")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.malloc == "actrec" and not reuse_large_buffers():
        print("roofline: the actrec malloc setting needs glibc", file=sys.stderr)
        return 2
    print(f"{torch.get_num_threads()} threads, malloc {args.malloc}, "
          f"peak: {args.gemm_size}² fp32 matrix product in the same rounds", flush=True)  # fmt: skip
    print_header()
    for name in args.models or default_models():
        print_rows(measure(name, args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
