"""ONNX export with TAO tensor names, metadata, onnx.checker and a parity check against PyTorch.

We use the TorchScript exporter (``torch.onnx.export(..., dynamo=False)``), not dynamo:
- it writes the requested opset 17 (on torch 2.14 the dynamo exporter starts at opset 18 and
  down-converts, and has no ONNX function for ``aten._cdist_forward``, which a gate might use);
- it maps ``nn.LSTM``/``nn.GRU`` to single ONNX ``LSTM``/``GRU`` nodes, which ONNX Runtime and
  TensorRT run fast, and exports the SRTG gate (``ArgMin``, ``Where``) and MTNet's
  cosine-similarity pooling (``TopK``, ``GatherElements``) as graph operators;
- it is the same code path on every torch from 2.4 to 2.14 (``dynamo=False`` is passed only
  where the keyword exists).

Tracing records one path through Python control flow; the tracer warnings that say so are kept
in the report and logged, and the parity check at another batch size catches a frozen shape.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import onnx
import torch
from torch import nn

from export.metadata import write_metadata

__all__ = [
    "ExportReport",
    "Parity",
    "ParityError",
    "default_input_names",
    "export_onnx",
    "parity_check",
]

logger = logging.getLogger(__name__)

# Input tensor names per family, as the TAO deployables name them (video: by modality).
VIDEO_INPUT_NAMES = {"rgb": "input_rgb", "of": "input_of", "flow": "input_of"}
SINGLE_INPUT_NAME = "input"
JOINT_INPUT_NAMES = ("input_rgb", "input_of")
# The time axis of a 4-D input (C, T, H, W) or (C, T, V, M), counted with the batch axis.
TIME_AXIS = 2
PARITY_BATCH = 3  # differs from the export batch, so a frozen batch dimension is caught
# Exporter warnings that say nothing here: any LSTM exported at batch != 1 is flagged (the
# parity check at PARITY_BATCH tests exactly that case), and torch >= 2.9 calls the TorchScript
# exporter "legacy" (chosen on purpose, see the module docstring).
KNOWN_WARNINGS = ("with a variable length with LSTM", "legacy TorchScript-based ONNX export")
TORCH_DIR = Path(torch.__file__).resolve().parent


class ParityError(RuntimeError):
    """The exported graph disagrees with PyTorch beyond the tolerance."""


@dataclass
class ExportReport:
    """What was written and how closely ONNX Runtime reproduces PyTorch."""

    path: Path
    input_names: list[str]
    output_names: list[str]
    input_shapes: list[tuple[int, ...]]
    opset: int
    max_abs_diff: float
    output_scale: float  # max |logit| in the parity check
    seconds: float
    file_bytes: int
    metadata: dict[str, Any]
    tracer_warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        shapes = ", ".join(f"{n}: {list(s)}" for n, s in zip(self.input_names, self.input_shapes))
        return (
            f"wrote {self.path} ({self.file_bytes / 1e6:.2f} MB, opset {self.opset}, "
            f"{self.seconds:.1f} s); inputs {shapes}; outputs {', '.join(self.output_names)}; "
            f"max |onnx - torch| = {self.max_abs_diff:.3g}"
        )


def normalize_shapes(input_shape: Sequence[int] | Sequence[Sequence[int]]) -> list[tuple[int, ...]]:
    """``(C, T, H, W)`` or ``[(C, T, H, W), (C', T, H, W)]`` → a list of int tuples."""
    if not input_shape:
        raise ValueError("input_shape is empty")
    shapes = [input_shape] if isinstance(input_shape[0], int) else list(input_shape)
    result = []
    for shape in shapes:
        dims = tuple(int(d) for d in shape)  # type: ignore[union-attr]
        if not dims or any(d <= 0 for d in dims):
            raise ValueError(f"input shape {list(dims)} must be positive sizes without the batch")
        result.append(dims)
    return result


def default_input_names(
    model: nn.Module, shapes: list[tuple[int, ...]], modality: str | None = None
) -> list[str]:
    """TAO names: video ``input_rgb``/``input_of`` (joint: both), others ``input``.

    The video modality comes from ``modality`` or, for 3-D inputs, from the channel count (2 = of).
    """
    family = getattr(model, "network_family", None)
    if len(shapes) == 2 and family in (None, "video"):
        return list(JOINT_INPUT_NAMES)
    if len(shapes) > 1:
        return [f"{SINGLE_INPUT_NAME}_{i}" for i in range(len(shapes))]
    if family != "video":
        return [SINGLE_INPUT_NAME]
    if modality is None:
        modality = "of" if len(shapes[0]) == 4 and shapes[0][0] == 2 else "rgb"
    if modality not in VIDEO_INPUT_NAMES:
        raise ValueError(f"unknown video modality {modality!r}; expected rgb or of")
    return [VIDEO_INPUT_NAMES[modality]]


def random_inputs(
    shapes: list[tuple[int, ...]], batch: int, *, time_scale: int = 1, device: torch.device
) -> list[torch.Tensor]:
    """Standard-normal inputs ``(batch, *shape)``; ``time_scale`` stretches axis T of 4-D shapes."""
    generator = torch.Generator().manual_seed(batch * 1000 + time_scale)
    tensors = []
    for shape in shapes:
        full = [batch, *shape]
        if len(shape) == 4:
            full[TIME_AXIS] *= time_scale
        tensors.append(torch.randn(full, generator=generator).to(device))
    return tensors


def _dynamic_axes(
    input_names: list[str],
    output_names: Sequence[str],
    shapes: list[tuple[int, ...]],
    *,
    dynamic_batch: bool,
    dynamic_time: bool,
) -> dict[str, dict[int, str]]:
    axes: dict[str, dict[int, str]] = {}
    for name, shape in zip(input_names, shapes):
        entry = {0: "batch"} if dynamic_batch else {}
        if dynamic_time:
            if len(shape) != 4:
                raise ValueError(f"dynamic_time needs a (C, T, ...) input; {name} is {list(shape)}")
            entry[TIME_AXIS] = "time"
        if entry:
            axes[name] = entry
    if dynamic_batch:
        axes.update({name: {0: "batch"} for name in output_names})
    return axes


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _check_forward(model: nn.Module, inputs: list[torch.Tensor], shapes: list) -> None:
    """Run the network once so a wrong input shape fails with a clear message."""
    try:
        with torch.no_grad():
            output = model(*inputs)
    except (RuntimeError, ValueError, IndexError) as error:
        name = getattr(model, "network_name", type(model).__name__)
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise ValueError(
            f"input shape {[list(s) for s in shapes]} does not fit network {name}: {first_line}"
        ) from error
    if not isinstance(output, torch.Tensor) or output.ndim != 2:
        raise ValueError(f"the network must return logits (N, num_classes); got {output!r:.80}")


def _torch_onnx_export(
    model: nn.Module,
    inputs: list[torch.Tensor],
    path: Path,
    *,
    input_names: list[str],
    output_names: Sequence[str],
    dynamic_axes: dict[str, dict[int, str]],
    opset: int,
) -> list[str]:
    """TorchScript export of ``model`` to ``path``; returns the tracer warnings."""
    extra = {}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        extra["dynamo"] = False
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always", torch.jit.TracerWarning)
        torch.onnx.export(
            model,
            tuple(inputs),
            str(path),
            input_names=input_names,
            output_names=list(output_names),
            dynamic_axes=dynamic_axes or None,
            opset_version=opset,
            do_constant_folding=True,
            **extra,
        )
    found = []
    for item in caught:
        message = str(item.message)
        if _is_torch_internal(item.filename) or any(text in message for text in KNOWN_WARNINGS):
            continue
        if issubclass(item.category, torch.jit.TracerWarning):
            found.append(f"{Path(item.filename).name}:{item.lineno}: {message}")
        else:
            warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)
    return sorted(set(found))


def _is_torch_internal(filename: str) -> bool:
    """Warnings raised inside torch itself (e.g. nn.LSTM's own input checks) say nothing about
    the model's code."""
    return Path(filename).resolve().is_relative_to(TORCH_DIR)


class Parity(NamedTuple):
    max_abs_diff: float  # max |ONNX Runtime - PyTorch| over the logits
    output_scale: float  # max |PyTorch logits|, to judge the difference against


def parity_check(
    model: nn.Module, path: str | Path, inputs: Sequence[torch.Tensor], input_names: Sequence[str]
) -> Parity:
    """Compare PyTorch and ONNX Runtime (CPU) logits on ``inputs``."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {name: t.detach().cpu().float().numpy() for name, t in zip(input_names, inputs)}
    onnx_out = session.run(None, feed)[0]
    with torch.no_grad():
        torch_out = model(*inputs).float().cpu().numpy()
    if onnx_out.shape != torch_out.shape:
        raise ParityError(f"ONNX output shape {onnx_out.shape} != PyTorch {torch_out.shape}")
    if not torch_out.size:
        return Parity(0.0, 0.0)
    return Parity(float(np.max(np.abs(onnx_out - torch_out))), float(np.max(np.abs(torch_out))))


def _base_metadata(
    model: nn.Module, shapes: list, names: list[str], output_names: Sequence[str], opset: int
) -> dict[str, Any]:
    return {
        "network": getattr(model, "network_name", type(model).__name__),
        "network_kwargs": getattr(model, "network_kwargs", {}),
        "family": getattr(model, "network_family", None),
        "input_shape": [list(s) for s in shapes],
        "input_names": names,
        "output_names": list(output_names),
        "opset": opset,
        "torch_version": torch.__version__,
    }


def _verify(
    model: nn.Module,
    path: Path,
    shapes: list[tuple[int, ...]],
    names: list[str],
    *,
    export_inputs: list[torch.Tensor],
    dynamic_batch: bool,
    dynamic_time: bool,
    device: torch.device,
) -> Parity:
    """Parity on fresh inputs: at another batch size / doubled T when those axes are dynamic
    (which also shows that nothing was frozen at the traced shape), else at the export shape."""
    if not (dynamic_batch or dynamic_time):
        return parity_check(model, path, export_inputs, names)
    batch = PARITY_BATCH if dynamic_batch else export_inputs[0].shape[0]
    other = random_inputs(shapes, batch, time_scale=2 if dynamic_time else 1, device=device)
    return parity_check(model, path, other, names)


def _make_readable(path: Path) -> None:
    """mkstemp creates 0600 files; give the result the usual permissions (umask)."""
    umask = os.umask(0)
    os.umask(umask)
    path.chmod(0o666 & ~umask)


def export_onnx(
    model: nn.Module,
    path: str | Path,
    input_shape: Sequence[int] | Sequence[Sequence[int]],
    *,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] = ("fc_pred",),
    dynamic_batch: bool = True,
    dynamic_time: bool = False,
    opset: int = 17,
    metadata: dict[str, Any] | None = None,
    atol: float = 1e-3,
    modality: str | None = None,
) -> ExportReport:
    """Export ``model`` to ONNX at ``path`` and check it against PyTorch.

    input_shape: one input's shape without the batch axis, e.g. ``(3, 16, 112, 112)``, or a list
        of shapes for multi-input models (the joint model: ``[(3, T, H, W), (2, T, H, W)]``).
    metadata: extra JSON-able entries (``labels``, ``normalization``, ...) stored in the file;
        network name, kwargs, family and shapes are added from the model.
    The file is written atomically: a failed check (onnx.checker, or a max absolute difference
    above ``atol`` in fp32) leaves any previous file at ``path`` untouched and raises.
    """
    start = time.perf_counter()
    path = Path(path)
    shapes = normalize_shapes(input_shape)
    names = list(input_names) if input_names else default_input_names(model, shapes, modality)
    if len(names) != len(shapes):
        raise ValueError(f"{len(names)} input names for {len(shapes)} input shapes")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    export_batch = 2 if dynamic_batch else 1  # not 1, so no batch-1 special case is traced
    inputs = random_inputs(shapes, export_batch, device=device)
    axes = _dynamic_axes(
        names, output_names, shapes, dynamic_batch=dynamic_batch, dynamic_time=dynamic_time
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with _eval_mode(model):
            _check_forward(model, inputs, shapes)
            tracer_warnings = _torch_onnx_export(
                model, inputs, tmp, input_names=names, output_names=output_names,
                dynamic_axes=axes, opset=opset,
            )  # fmt: skip
            for message in tracer_warnings:
                logger.warning("tracer: %s", message)
            proto = onnx.load(str(tmp))
            full_metadata = _base_metadata(model, shapes, names, output_names, opset)
            full_metadata.update(metadata or {})
            write_metadata(proto, full_metadata)
            onnx.checker.check_model(proto, full_check=True)
            onnx.save(proto, str(tmp))
            parity = _verify(
                model, tmp, shapes, names, export_inputs=inputs, dynamic_batch=dynamic_batch,
                dynamic_time=dynamic_time, device=device,
            )  # fmt: skip
        dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
        diff = parity.max_abs_diff
        logger.info("parity: max |onnx - torch| = %.3g (atol %.0e)", diff, atol)
        if diff > atol and dtype == torch.float32:
            raise ParityError(
                f"{path}: ONNX Runtime differs from PyTorch by {diff:.3g} > atol {atol:g}"
            )
        _make_readable(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return ExportReport(
        path=path, input_names=names, output_names=list(output_names), input_shapes=shapes,
        opset=opset, max_abs_diff=diff, output_scale=parity.output_scale,
        seconds=time.perf_counter() - start, file_bytes=path.stat().st_size,
        metadata=full_metadata, tracer_warnings=tracer_warnings,
    )  # fmt: skip
