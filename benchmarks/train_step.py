"""Training speed (clips/s) of one optimizer step, per network and numeric mode.

    python benchmarks/train_step.py                       # r3d_18, srtg_r3d_18 at 16×112×112
    python benchmarks/train_step.py --steps 3 --batch-size 2 --modes fp32 channels_last

Modes: ``fp32``; ``amp`` (bf16 autocast, CUDA only, n/a elsewhere); ``channels_last``
(channels_last_3d memory format); ``compile`` (torch.compile). Each step is forward,
cross-entropy, backward and an SGD step through the engine's own helpers (train.precision).
One table, with each mode's speed as a ratio of the fp32 row of the same network; the modes of a
network are timed in alternating rounds (``benchmarks/timing.py``), median per step. The process
uses the training scripts' malloc setting (``train.malloc.reuse_large_buffers``).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.timing import interleaved_median
from network import build_model
from train.malloc import reuse_large_buffers
from train.precision import (
    Precision,
    forward_model,
    move_to_device,
    seconds_between,
    to_channels_last,
)

MODES = ("fp32", "amp", "channels_last", "amp_channels_last", "compile")


@dataclass(frozen=True)
class Mode:
    """Settings of one benchmark row."""

    amp: bool = False
    channels_last: bool = False
    compile: bool = False
    amp_dtype: str = "bf16"  # "fp16" adds the engine's loss scaler (train.precision)


# mode name -> settings
MODE_SETTINGS = {
    "fp32": Mode(),
    "amp": Mode(amp=True),
    "channels_last": Mode(channels_last=True),
    "amp_channels_last": Mode(amp=True, channels_last=True),  # bf16 + channels_last_3d
    "compile": Mode(compile=True),
}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["r3d_18", "srtg_r3d_18"])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--clip-length", type=int, default=16)
    parser.add_argument("--clip-size", type=int, default=112)
    parser.add_argument("--num-classes", type=int, default=51)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per row (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--device", default=None, help="default: cuda if available")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return parser


def make_step(name: str, mode: Mode, args: argparse.Namespace, device: torch.device):
    """One full training step of a fresh ``name`` in ``mode``, as a call that returns when the
    device has finished it."""
    torch.manual_seed(0)
    model = build_model(name, num_classes=args.num_classes).to(device).train()
    if mode.channels_last:
        to_channels_last(model)
    step_model: nn.Module = torch.compile(model) if mode.compile else model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    precision = Precision.from_args(
        argparse.Namespace(amp=mode.amp, amp_dtype=mode.amp_dtype), device
    )
    shape = (args.batch_size, 3, args.clip_length, args.clip_size, args.clip_size)
    inputs = move_to_device(torch.randn(shape), device, channels_last=mode.channels_last)
    targets = torch.randint(0, args.num_classes, (args.batch_size,), device=device)
    criterion = nn.CrossEntropyLoss()

    def step() -> None:
        start = precision.mark()
        with precision.autocast():
            loss = criterion(forward_model(step_model, inputs).float(), targets)
        precision.backward(loss)
        precision.step(optimizer, model.parameters(), None)
        optimizer.zero_grad(set_to_none=True)
        seconds_between(start, precision.mark())  # waits for the device on CUDA

    return step


def step_rate(
    name: str,
    mode: str,
    *,
    batch_size: int,
    clip_length: int = 16,
    clip_size: int = 112,
    steps: int = 5,
    device: str | None = None,
) -> float:
    """Training clips/s of ``name`` in ``mode`` (median of ``steps`` after one warm-up step);
    benchmarks/loader.py puts it beside the loader's clips/s."""
    sizes = {"--batch-size": batch_size, "--clip-length": clip_length, "--clip-size": clip_size}
    args = get_args_parser().parse_args([str(v) for item in sizes.items() for v in item])
    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    seconds = interleaved_median({mode: make_step(name, MODE_SETTINGS[mode], args, target)}, steps)
    return batch_size / seconds[mode]


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    reuse_large_buffers()  # as train_hmdb.py train runs (train.runner)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    title = (
        f"train step, batch {args.batch_size}, {args.clip_length}x{args.clip_size}x"
        f"{args.clip_size}, {device} ({torch.get_num_threads()} threads), torch {torch.__version__}"
    )
    print(title)
    print(f"{'network':<14}{'mode':<15}{'clips/s':>10}{'vs fp32':>9}")
    for name in args.models:
        steps = {}
        for mode_name in args.modes:
            mode = MODE_SETTINGS[mode_name]
            if mode.amp and device.type != "cuda":
                print(f"{name:<14}{mode_name:<15}{'n/a':>10}{'n/a':>9}   (AMP needs CUDA)")
                continue
            steps[mode_name] = make_step(name, mode, args, device)
        seconds = interleaved_median(steps, repeats=args.steps, warmup=args.warmup)
        baseline = args.batch_size / seconds["fp32"] if "fp32" in seconds else None
        for mode_name, median in seconds.items():
            speed = args.batch_size / median
            ratio = f"{speed / baseline:.2f}x" if baseline else "-"
            print(f"{name:<14}{mode_name:<15}{speed:>10.3g}{ratio:>9}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
