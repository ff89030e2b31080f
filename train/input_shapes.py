"""Refuse, before training starts, a clip shape or multigrid schedule the network cannot take.

A video network's registry entry says which (T, H, W) clips it takes
(``network.registry.InputConstraints``: torchvision's MViT only 16×224², S3D at least 13×209²).
:func:`check_clip_shapes` checks the run's base clip (``--clip-length``, ``--clip-size``) and,
with ``--long-cycles``/``--short-cycles``, every shape the multigrid sampler would draw, and
raises one ``ValueError`` line naming the network, the shape and the flags.
"""

from __future__ import annotations

import argparse

from torch import nn

from network.registry import get_entry, list_models
from train.multigrid import cycle_shapes, long_cycle_shapes

__all__ = ["check_clip_shapes", "run_clip_shapes"]


def run_clip_shapes(
    frames: int, size: int, *, long_cycles: bool, short_cycles: bool
) -> list[tuple[tuple[int, int, int], str]]:
    """Every (T, H, W) a run draws, with where it comes from: the base clip, then the
    multigrid long-cycle and short-cycle shapes (``train.multigrid``'s rules)."""
    shapes = [((frames, size, size), "--clip-length/--clip-size")]
    if not (long_cycles or short_cycles):
        return shapes
    longs = long_cycle_shapes(1, frames, size)
    longs = longs if long_cycles else longs[-1:]  # short cycles alone: around the base shape
    for long_shape in longs:
        for shape in cycle_shapes(long_shape, short_cycles=short_cycles, base_size=size):
            flag = "--short-cycles" if shape.size != long_shape.size else "--long-cycles"
            shapes.append((shape.clip_shape, f"the multigrid {flag} shape"))
    return shapes


def _networks(model: nn.Module, args: argparse.Namespace) -> list[tuple[str, int | None]]:
    """(registered name, clip length) of the network, or of each stream of a joint model."""
    name = getattr(model, "network_name", None)
    if name is None or name not in list_models():
        return []
    if get_entry(name).input_layout != "joint":
        return [(name, args.clip_length)]
    streams = [(getattr(model, "rgb", None), args.clip_length)]
    streams.append((getattr(model, "flow", None), getattr(args, "flow_clip_length", None)))
    return [
        (stream.network_name, frames or args.clip_length)
        for stream, frames in streams
        if getattr(stream, "network_name", None) in list_models()
    ]


def check_clip_shapes(model: nn.Module, args: argparse.Namespace) -> None:
    """Raise ``ValueError`` (one line) when the network cannot take a clip shape of the run."""
    size = getattr(args, "clip_size", None)
    if getattr(args, "clip_length", None) is None or size is None:
        return  # not a video run
    long_cycles = bool(getattr(args, "long_cycles", False))
    short_cycles = bool(getattr(args, "short_cycles", False))
    for name, frames in _networks(model, args):
        constraints = get_entry(name).constraints
        for shape, source in run_clip_shapes(
            frames, size, long_cycles=long_cycles, short_cycles=short_cycles
        ):
            problem = constraints.problem(shape)
            if problem:
                raise ValueError(f"--network {name} {problem} (from {source})")
