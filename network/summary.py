"""Parameters, GMACs and output shape of registered video networks.

    python -m network.summary srtg_r3d_50 --frames 16 --size 112
    python -m network.summary --all --frames 16 --size 224 --skip-tag tiny

MACs are counted with forward hooks on Conv1d/2d/3d, Linear, LSTM and GRU (one multiply-add per
weight use; norms, activations and pooling are not counted), per clip. By default the forward pass
runs on the "meta" device, which computes shapes only, so even the largest networks take
milliseconds; ``--device cpu`` runs it for real.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from network.registry import build_model, get_entry, list_models

__all__ = [
    "Summary",
    "build_kwargs",
    "count_flops",
    "count_macs",
    "example_inputs",
    "flops_of",
    "main",
    "reference_rows",
    "summarize",
]


def _conv_macs(module: nn.Module, output: torch.Tensor) -> int:
    return output.numel() * module.in_channels // module.groups * math.prod(module.kernel_size)


def _linear_macs(module: nn.Module, output: torch.Tensor) -> int:
    return output.numel() * module.in_features


def _recurrent_macs(module: nn.Module, output: tuple) -> int:
    sequence = output[0]  # (N, T, D·H) or (T, N, D·H)
    gates = {nn.LSTM: 4, nn.GRU: 3}[type(module)]
    directions = 2 if module.bidirectional else 1
    hidden = module.hidden_size
    inputs = [module.input_size] + [hidden * directions] * (module.num_layers - 1)
    per_step = sum(gates * hidden * (size + hidden) for size in inputs) * directions
    return sequence.shape[0] * sequence.shape[1] * per_step


MAC_COUNTERS: dict[type[nn.Module], Callable[[nn.Module, object], int]] = {
    nn.Conv1d: _conv_macs,
    nn.Conv2d: _conv_macs,
    nn.Conv3d: _conv_macs,
    nn.Linear: _linear_macs,
    nn.LSTM: _recurrent_macs,
    nn.GRU: _recurrent_macs,
}


def count_macs(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[int, object]:
    """(total multiply-adds of one forward pass over the whole batch, the model output)."""
    total = 0

    def hook(module: nn.Module, args: tuple, output: object) -> None:
        nonlocal total
        total += MAC_COUNTERS[type(module)](module, output)

    handles = [
        module.register_forward_hook(hook)
        for module in model.modules()
        if type(module) in MAC_COUNTERS
    ]
    try:
        with torch.no_grad():
            output = model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return total, output


class _FlopCount(TorchDispatchMode):
    """Sums ``torch.utils.flop_counter``'s formulas over the operators that run, in-place ones
    included (``FlopCounterMode`` counts CTR-GCN's ``baddbmm_`` as nothing)."""

    def __init__(self) -> None:
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        formula = _formula(func)
        if formula is None:  # composite operators (linear, matmul in inference mode): their parts
            with self:
                out = func.decompose(*args, **kwargs)
            if out is not NotImplemented:
                return out
        out = func(*args, **kwargs)
        if formula is not None:
            self.flops += formula(*args, **kwargs, out_val=out)
        return out


def _formula(func) -> Callable | None:
    """The flop formula of ``func``; an in-place operator (``baddbmm_``) counts as its
    out-of-place form, which the registry lists alone."""
    packet = func._overloadpacket
    formula = flop_registry.get(packet)
    name = packet.__name__
    if formula is None and name.endswith("_") and hasattr(torch.ops.aten, name[:-1]):
        formula = flop_registry.get(getattr(torch.ops.aten, name[:-1]))
    return formula


def flops_of(run: Callable[[], object]) -> int:
    """FLOPs of the convolutions, matrix products and attention that ``run()`` executes."""
    with _FlopCount() as counter:
        run()
    return counter.flops


def count_flops(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> int:
    """FLOPs of one forward pass as ``torch.utils.flop_counter``'s formulas count them (2 per
    multiply-add of convolutions, matrix products and attention: the transformers' token products
    included, which ``count_macs`` does not see). Half of it equals torchvision's published
    GFLOPS."""
    with torch.no_grad():
        return flops_of(lambda: model(*inputs))


@dataclass(frozen=True)
class Summary:
    name: str
    params: int
    macs_per_clip: int
    output_shape: tuple[int, ...]

    def row(self) -> str:
        return (
            f"| {self.name} | {self.params / 1e6:.2f} | {self.macs_per_clip / 1e9:.2f} "
            f"| {list(self.output_shape)} |"
        )


SKELETON_PERSONS = 2  # skeleton inputs: two persons, as pyskl's FormatGCNInput and NTU RGB+D


def build_kwargs(name: str, frames: int, num_classes: int) -> dict:
    """Builder kwargs so that ``name`` accepts clips of ``frames`` frames (2D stacks need T)."""
    layout = get_entry(name).input_layout
    if layout == "NCHW":
        return {"num_classes": num_classes, "num_frames": frames}
    if layout == "joint":
        return {"num_classes": num_classes, "rgb_frames": frames, "of_frames": frames}
    return {"num_classes": num_classes}


def example_inputs(
    model: nn.Module, name: str, *, frames: int, size: int, batch: int = 1, device="cpu"
) -> tuple[torch.Tensor, ...]:
    """Random inputs in the layout that ``name`` expects: RGB, (rgb, flow) for joint models, or
    (N, 3, frames, V, 2) skeletons on the network's graph (``size`` unused)."""

    def one(layout: str, channels: int) -> torch.Tensor:
        if layout == "NCHW":
            return torch.randn(batch, channels * frames, size, size, device=device)
        return torch.randn(batch, channels, frames, size, size, device=device)

    entry = get_entry(name)
    if entry.input_layout == "NCTVM":  # skeletons: (N, C, T, V, M), M persons (pyskl: 2)
        joints = int(model.A.shape[-1])
        return (torch.randn(batch, 3, frames, joints, SKELETON_PERSONS, device=device),)
    if entry.input_layout == "joint":
        return (
            one(get_entry(model.rgb.network_name).input_layout, 3),
            one(get_entry(model.flow.network_name).input_layout, 2),
        )
    if entry.input_layout not in ("NCHW", "NCTHW"):
        raise ValueError(f"{name}: summary handles video networks, not layout {entry.input_layout}")
    return (one(entry.input_layout, 3),)


def summarize(
    name: str, *, frames: int = 16, size: int = 112, num_classes: int = 400, device: str = "meta"
) -> Summary:
    """Build ``name`` and count its parameters and per-clip MACs on a 1-clip input."""
    with torch.device(device):
        model = build_model(name, **build_kwargs(name, frames, num_classes)).eval()
        inputs = example_inputs(model, name, frames=frames, size=size, device=device)
    macs, output = count_macs(model, inputs)
    params = sum(p.numel() for p in model.parameters())
    return Summary(name, params, macs, tuple(output.shape))


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="registered network names")
    parser.add_argument("--all", action="store_true", help="every registered video network")
    parser.add_argument("--skip-tag", default=None, help="with --all, leave out this tag")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--num-classes", type=int, default=400)
    parser.add_argument("--device", default="meta", help="meta (shapes only), cpu or cuda")
    parser.add_argument(
        "--reference",
        action="store_true",
        help="each video network at the clip its reference code uses (the registry's reference "
        "shape), multiply-adds also counted by torch.utils.flop_counter (attention included)",
    )
    return parser


def reference_rows(names: list[str], num_classes: int = 400) -> list[str]:
    """Markdown rows: network, reference clip, params (M), GMACs (hooks), GMACs (flop counter);
    networks without a reference clip in the registry are left out."""
    rows = [
        "| network | clip T×H×W | params (M) | GMACs | GMACs (flop counter) |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        shape = get_entry(name).constraints.reference
        if shape is None:
            continue
        frames, height, width = shape
        with torch.device("meta"):
            model = build_model(name, **build_kwargs(name, frames, num_classes)).eval()
            clip = torch.empty(1, 3, frames, height, width)
        macs, _ = count_macs(model, (clip,))
        flops = count_flops(model, (clip,))
        params = sum(p.numel() for p in model.parameters())
        rows.append(
            f"| {name} | {frames}×{height}×{width} | {params / 1e6:.2f} | {macs / 1e9:.2f} "
            f"| {flops / 2e9:.2f} |"
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    names = list(args.names)
    if args.all:
        skipped = set(list_models(tag=args.skip_tag)) if args.skip_tag else set()
        names += [n for n in list_models(family="video") if n not in skipped]
    if not names:
        print("give network names or --all; known video networks:", ", ".join(list_models("video")))
        return 2
    if args.reference:
        print("\n".join(reference_rows(names, args.num_classes)))
        return 0
    skeletons = f"skeletons 1×3×{args.frames}×V×{SKELETON_PERSONS}"
    print(
        f"input 1×{args.frames}×{args.size}×{args.size} ({skeletons}), {args.num_classes} classes"
    )
    print("| network | params (M) | GMACs | output |\n|---|---|---|---|")
    for name in names:
        summary = summarize(
            name,
            frames=args.frames,
            size=args.size,
            num_classes=args.num_classes,
            device=args.device,
        )
        print(summary.row(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
