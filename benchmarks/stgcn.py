"""ST-GCN speed on CPU: inference sequences/s and training-step time, our model against the
reference's block code.

    python benchmarks/stgcn.py                       # batch 16, T=300, V=34 (nvidia), M=1
    python benchmarks/stgcn.py --batch-size 4 --frames 100 --repeats 3
    python benchmarks/stgcn.py --train --no-onnx     # adds the training-step table
    python benchmarks/stgcn.py --train --no-inference --batch-size 4 --repeats 3 --clock cpu

Rows: ``baseline`` (written here, the reference's per-block code: 1×1 conv, ``einsum
('nkctv,kvw->nctw')`` on contiguous tensors), ``eager`` (network.stgcn, channels-last graph
convolution) and ``onnxruntime`` (our model exported with opset 17). All rows share one set of
weights; the outputs are compared before timing.

Each row runs under two malloc settings, each in its own process: ``glibc`` (the defaults, as the
reference code runs) and ``actrec`` (``train.malloc.reuse_large_buffers``, which every
``train_nvpose.py`` command applies). ``vs baseline`` compares with the baseline as the reference
runs (glibc); ``same malloc`` with the baseline under the row's own setting, which isolates the
network code. Target: eager ≥ 2× baseline.

``--train`` adds a table of training steps (cross-entropy, backward, SGD with momentum; dropout
0.5 as TAO trains) of the baseline and of our model, in alternating rounds under each malloc
setting; ``vs baseline`` is the baseline's step time over ours in the same process (≥ 1: ours
is at least as fast).
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.roofline import CLOCKS
from benchmarks.timing import interleaved_median
from network import build_model
from network.stgcn import STGCN
from train.malloc import reuse_large_buffers


class BaselineGraphConv(nn.Module):
    """The reference graph convolution: view to (N, K, C, T, V) and one einsum."""

    def __init__(self, conv: nn.Conv2d, num_partitions: int) -> None:
        super().__init__()
        self.conv = conv
        self.num_partitions = num_partitions

    def forward(self, x: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        n, kc, t, v = x.size()
        x = x.view(n, self.num_partitions, kc // self.num_partitions, t, v)
        return torch.einsum("nkctv,kvw->nctw", x, adjacency).contiguous()


class Baseline(nn.Module):
    """Our model's weights run block by block in the reference's contiguous layout."""

    def __init__(self, model: STGCN) -> None:
        super().__init__()
        self.model = model
        k = model.A.shape[0]
        self.gcns = nn.ModuleList(BaselineGraphConv(b.gcn.conv, k) for b in model.st_gcn_networks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reference's forward: residual taken first, contiguous NCHW throughout."""
        m = self.model
        n, c, t, v, persons = x.size()
        x = x.permute(0, 4, 3, 1, 2).contiguous().view(n * persons, v * c, t)
        x = m.data_bn(x)
        x = x.view(n, persons, v, c, t).permute(0, 1, 3, 4, 2).contiguous()
        x = x.view(n * persons, c, t, v)
        for index, (block, gcn) in enumerate(zip(m.st_gcn_networks, self.gcns)):
            adjacency = m.A * m.edge_importance[index]
            res = 0 if block.residual is None else block.residual(x)
            x = block.relu(block.tcn(gcn(x, adjacency)) + res)
        x = nn.functional.avg_pool2d(x, x.size()[2:]).view(n, persons, -1, 1, 1).mean(dim=1)
        return m.fcn(x).view(n, -1)


def onnx_runner(model: STGCN, x: torch.Tensor, work: Path) -> Callable[[], object] | str:
    """ONNX Runtime on ``model`` exported by ``export_onnx`` into ``work``, or why not."""
    try:
        from export import export_onnx
        from export.ort_runtime import OrtClassifier
    except ImportError as error:
        return f"onnx / onnxruntime not available ({error})"
    report = export_onnx(model, work / "st_gcn.onnx", tuple(x.shape[1:]))
    classifier = OrtClassifier(report.path, threads=torch.get_num_threads())
    return partial(classifier.logits, x.numpy())


MALLOC_SETTINGS = ("glibc", "actrec")
BASELINE = "baseline (reference einsum)"


def _set_up_process(args: argparse.Namespace) -> None:
    """The malloc setting, the thread count and the seed of this measuring process."""
    if args.malloc == "actrec" and not reuse_large_buffers():
        raise RuntimeError("the actrec malloc setting needs glibc")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)


def measure(args: argparse.Namespace) -> list[tuple[str, float]]:
    """(path, seq/s) of each row in this process, after checking that the outputs agree."""
    _set_up_process(args)
    model = build_model("st_gcn", graph_layout=args.layout, num_classes=6).eval()
    baseline = Baseline(model).eval()
    v = model.A.shape[1]
    x = torch.randn(args.batch_size, 3, args.frames, v, args.persons)
    with torch.inference_mode():
        error = (model(x) - baseline(x)).abs().max().item()
    if error > 1e-4:
        raise RuntimeError(f"eager and baseline disagree: max |difference| = {error:.2e}")

    def eager(net: nn.Module) -> Callable[[], object]:
        def run() -> object:
            with torch.inference_mode():
                return net(x)

        return run

    rows = {BASELINE: eager(baseline), "eager (network.stgcn)": eager(model)}
    with tempfile.TemporaryDirectory(prefix="stgcn-bench-") as work:
        runner = "skipped" if args.no_onnx else onnx_runner(model, x, Path(work))
        if callable(runner):
            rows["onnxruntime (opset 17)"] = runner
        else:
            print(f"onnxruntime: {runner}", file=sys.stderr)
        seconds = interleaved_median(rows, args.repeats, clock=CLOCKS[args.clock])
    return [(name, args.batch_size / seconds[name]) for name in rows]


def measure_train(args: argparse.Namespace) -> list[tuple[str, float]]:
    """(path, seconds per training step) of the baseline and our model, alternating rounds."""
    _set_up_process(args)
    ours = build_model("st_gcn", graph_layout=args.layout, num_classes=6, dropout=0.5).train()
    reference = build_model("st_gcn", graph_layout=args.layout, num_classes=6, dropout=0.5)
    baseline = Baseline(reference.train()).train()
    x = torch.randn(args.batch_size, 3, args.frames, ours.A.shape[1], args.persons)
    y = torch.randint(0, 6, (args.batch_size,))

    def training_step(net: nn.Module) -> Callable[[], object]:
        optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

        def run() -> None:
            loss = nn.functional.cross_entropy(net(x), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        return run

    rows = {BASELINE: training_step(baseline), "eager (network.stgcn)": training_step(ours)}
    seconds = interleaved_median(rows, args.repeats, clock=CLOCKS[args.clock])
    return [(name, seconds[name]) for name in rows]


def measure_in_child(
    args: argparse.Namespace, malloc: str, what: Callable = measure
) -> list[tuple[str, float]]:
    """``what`` in a fresh interpreter: malloc settings are per process and cannot be undone."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(what, argparse.Namespace(**{**vars(args), "malloc": malloc})).result()


def print_train_table(args: argparse.Namespace) -> None:
    print(f"training step, batch {args.batch_size}, T={args.frames}, {args.layout}, dropout 0.5, "
          f"{args.clock} clock")  # fmt: skip
    print(f"{'path':<30} {'malloc':<7} {'s/step':>7} {'vs baseline':>12}")
    for malloc in args.malloc:
        rows = measure_in_child(args, malloc, measure_train)
        reference = dict(rows)[BASELINE]
        for name, seconds in rows:
            print(f"{name:<30} {malloc:<7} {seconds:7.3f} {reference / seconds:11.2f}x", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--layout", default="nvidia")
    parser.add_argument("--persons", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-onnx", action="store_true")
    parser.add_argument("--clock", choices=CLOCKS, default="wall",
                        help="cpu: process CPU seconds, robust on a busy machine")  # fmt: skip
    parser.add_argument("--malloc", choices=MALLOC_SETTINGS, nargs="+", default=MALLOC_SETTINGS)
    parser.add_argument("--train", action="store_true", help="add the training-step table")
    parser.add_argument("--no-inference", action="store_true", help="skip the inference table")
    args = parser.parse_args(argv)
    if args.train:
        print_train_table(args)
    if args.no_inference:
        return 0
    results = {malloc: measure_in_child(args, malloc) for malloc in args.malloc}
    reference = dict(results.get("glibc", next(iter(results.values()))))[BASELINE]
    threads = args.threads or torch.get_num_threads()
    print(f"batch {args.batch_size}, T={args.frames}, {args.layout}, M={args.persons}, "
          f"{threads} threads")  # fmt: skip
    print(f"{'path':<30} {'malloc':<7} {'seq/s':>7} {'vs baseline':>12} {'same malloc':>12}")
    for malloc, rows in results.items():
        same = dict(rows)[BASELINE]
        for name, rate in rows:
            print(f"{name:<30} {malloc:<7} {rate:7.2f} {rate / reference:11.2f}x "
                  f"{rate / same:11.2f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
