"""Non-strict loading of pretrained weights, with one report table.

``load_pretrained(model, "r3d_18-b3b3357e.pth")`` copies every tensor whose (prefix-stripped,
possibly renamed) name and shape match the model, inflates 2D kernels into 3D ones where only the
time axis is missing, and logs a table of what was loaded, shape-mismatched, missing (left at its
initialisation) and unexpected (in the file but not in the model). Files are always read with
``torch.load(weights_only=True)``, so a checkpoint cannot run code.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

import torch
from torch import nn

__all__ = ["LoadReport", "inflate_kernel", "load_pretrained", "read_state_dict"]

logger = logging.getLogger(__name__)

# wrapper prefixes removed from every key: DDP/DataParallel, torch.compile
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
# removed only when every key carries it: Lightning (TAO) modules hold the network as ``model``
LIGHTNING_PREFIX = "model."
# checkpoint dict keys under which a state_dict may sit, tried in order
STATE_DICT_KEYS = ("model", "state_dict", "model_state_dict")
# renames tried, in order, for a checkpoint name that the model lacks
RENAMES = (
    # torchvision 2D ResNet -> torchvision video ResNet (to inflate ImageNet weights)
    (re.compile(r"^conv1\."), "stem.0."),
    (re.compile(r"^bn1\."), "stem.1."),
    (re.compile(r"^(layer\d+\.\d+\.)conv(\d)\."), r"\1conv\2.0."),
    (re.compile(r"^(layer\d+\.\d+\.)bn(\d)\."), r"\1conv\2.1."),
    # the SRTG/MTNet reference code's recurrent cells -> ours
    (re.compile(r"\.sar\.lstm\."), ".sr.recurrent."),
    (re.compile(r"\.(sr_short|sr_long)\.op\."), r".\1.recurrent."),
)


@dataclass
class LoadReport:
    """What ``load_pretrained`` did; ``shapes`` maps a name to (checkpoint shape, model shape)."""

    source: str
    loaded: list[str] = field(default_factory=list)
    inflated: list[str] = field(default_factory=list)
    renamed: dict[str, str] = field(default_factory=dict)  # model name -> checkpoint name
    mismatched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)

    def table(self) -> str:
        """One row per inflated / shape-mismatched / missing / unexpected tensor; loaded counted."""
        rows = [("inflated", name) for name in self.inflated]
        rows += [("shape-mismatched", name) for name in self.mismatched]
        rows += [("missing", name) for name in self.missing]
        rows += [("unexpected", name) for name in self.unexpected]
        width = max([len(name) for _, name in rows] + [len("tensor")])
        lines = [
            f"pretrained weights from {self.source}: {len(self.loaded)} loaded "
            f"({len(self.inflated)} inflated, {len(self.renamed)} renamed), "
            f"{len(self.mismatched)} shape-mismatched, {len(self.missing)} missing, "
            f"{len(self.unexpected)} unexpected",
            f"{'status':<17}{'tensor':<{width}}  checkpoint → model shape",
        ]
        for status, name in rows:
            source_shape, model_shape = self.shapes.get(name, ((), ()))
            shapes = f"{list(source_shape)} → {list(model_shape)}" if name in self.shapes else ""
            lines.append(f"{status:<17}{name:<{width}}  {shapes}")
        return "\n".join(lines)


def _strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    stripped = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix) :], True
        stripped[key] = value
    if stripped and all(key.startswith(LIGHTNING_PREFIX) for key in stripped):
        stripped = {key[len(LIGHTNING_PREFIX) :]: value for key, value in stripped.items()}
    return stripped


def read_state_dict(source: str | PathLike | dict) -> dict[str, torch.Tensor]:
    """A flat name → tensor dict from a file or dict, unwrapped and with wrapper prefixes removed.

    Accepts a bare state_dict or a checkpoint dict holding one under "model" / "state_dict".
    """
    if isinstance(source, str | PathLike):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"pretrained weights not found: {path}")
        state = torch.load(path, map_location="cpu", weights_only=True)
    else:
        state = source
    for key in STATE_DICT_KEYS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        raise ValueError(f"{source}: expected a state_dict or a checkpoint dict holding one")
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    return _strip_prefixes(tensors)


def inflate_kernel(kernel: torch.Tensor, target_shape: torch.Size) -> torch.Tensor | None:
    """(O, I, kh, kw) → (O, I, kt, kh, kw): repeat over time and divide by kt; None if no fit."""
    if kernel.ndim != 4 or len(target_shape) != 5:
        return None
    if tuple(kernel.shape) != (*target_shape[:2], *target_shape[3:]):
        return None
    frames = target_shape[2]
    return kernel.unsqueeze(2).repeat(1, 1, frames, 1, 1) / frames


def _renamed(name: str) -> str:
    for pattern, replacement in RENAMES:
        name = pattern.sub(replacement, name)
    return name


def load_pretrained(
    model: nn.Module,
    source: str | PathLike | dict,
    *,
    inflate: bool = True,
    log: bool = True,
) -> LoadReport:
    """Copy the matching tensors of ``source`` into ``model`` in place; return the report.

    A checkpoint name that is not in the model is tried renamed by ``RENAMES`` (a 2D torchvision
    ResNet's ``conv1`` → ``stem.0`` etc.; the SRTG reference code's ``sar.lstm`` → ``sr.recurrent``). With ``inflate``, a 2D kernel whose other
    dimensions fit a 3D model kernel is repeated over time and divided by the temporal size.
    """
    state = read_state_dict(source)
    target = model.state_dict()
    report = LoadReport(source=str(source) if not isinstance(source, dict) else "<state_dict>")
    updates: dict[str, torch.Tensor] = {}
    for checkpoint_name, tensor in state.items():
        name = checkpoint_name
        if name not in target and _renamed(name) in target:
            name = _renamed(name)
            report.renamed[name] = checkpoint_name
        if name not in target:
            report.unexpected.append(checkpoint_name)
            continue
        wanted = target[name].shape
        report.shapes[name] = (tuple(tensor.shape), tuple(wanted))
        if tensor.shape == wanted:
            updates[name] = tensor
        elif inflate and (inflated := inflate_kernel(tensor, wanted)) is not None:
            updates[name] = inflated
            report.inflated.append(name)
        else:
            report.mismatched.append(name)
            continue
        report.loaded.append(name)
    report.missing = [n for n in target if n not in updates and n not in report.mismatched]
    with torch.no_grad():
        for name, tensor in updates.items():
            target[name].copy_(tensor.to(target[name].dtype))
    if log:
        logger.info("%s", report.table())
    return report
