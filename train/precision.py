"""Devices and numerics of a step: AMP (bf16, or fp16 with a loss scaler) on GPU, fp32 on CPU,
channels_last(_3d) memory format, gradient clipping, timing and memory readings."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "Mark",
    "Precision",
    "forward_model",
    "move_to_device",
    "seconds_between",
    "to_channels_last",
]

Mark = float | torch.cuda.Event  # Precision.mark(): host seconds, or a recorded CUDA event

log = logging.getLogger(__name__)

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# Tensor rank -> channels-last memory format (4-D images/2-D video, 5-D 3-D video).
CHANNELS_LAST = {4: torch.channels_last, 5: torch.channels_last_3d}


def _grad_scaler(enabled: bool) -> torch.amp.GradScaler:
    return torch.amp.GradScaler("cuda", enabled=enabled)


@dataclass
class Precision:
    """AMP settings of one run; ``scaler`` is enabled only for fp16 on CUDA."""

    device: torch.device
    amp_dtype: torch.dtype | None
    scaler: torch.amp.GradScaler

    @classmethod
    def from_args(cls, args: argparse.Namespace, device: torch.device) -> Precision:
        amp_dtype = None
        if args.amp and device.type == "cuda":
            amp_dtype = AMP_DTYPES[args.amp_dtype]
        elif args.amp:
            log.warning("--amp needs a CUDA device: training in fp32 on %s", device)
        return cls(device, amp_dtype, _grad_scaler(amp_dtype is torch.float16))

    def describe(self) -> str:
        if self.amp_dtype is None:
            return f"fp32 on {self.device}"
        name = "bf16" if self.amp_dtype is torch.bfloat16 else "fp16 + loss scaling"
        return f"AMP {name} on {self.device}"

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def step(
        self,
        optimizer: torch.optim.Optimizer,
        parameters: Iterable[nn.Parameter],
        clip_grad: float | None,
    ) -> bool:
        """Unscale, clip the gradient L2 norm, step; False when the scaler skipped the step."""
        if clip_grad:
            self.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(list(parameters), clip_grad)
        if not self.scaler.is_enabled():
            optimizer.step()
            return True
        scale = self.scaler.get_scale()
        self.scaler.step(optimizer)
        self.scaler.update()
        return self.scaler.get_scale() >= scale

    def mark(self) -> Mark:
        """A point in the device's queued work, without waiting for it: a CUDA event recorded on
        the current stream, else the host time. ``seconds_between`` reads two marks."""
        if self.device.type == "cuda":
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def memory(self) -> str:
        """Peak GPU memory, or peak resident memory of the process on CPU."""
        if self.device.type == "cuda":
            return f"{torch.cuda.max_memory_allocated(self.device) / 2**30:.2f}GiB"
        try:
            import resource  # POSIX only
        except ImportError:
            return "n/a"
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak_bytes = peak if sys.platform == "darwin" else peak * 1024  # macOS: bytes, Linux: KiB
        return f"{peak_bytes / 2**30:.2f}GiB(rss)"


def to_channels_last(model: nn.Module) -> nn.Module:
    """Put 4-D and 5-D parameters in channels_last / channels_last_3d, in place."""
    for parameter in model.parameters():
        memory_format = CHANNELS_LAST.get(parameter.dim())
        if memory_format is not None:
            parameter.data = parameter.data.contiguous(memory_format=memory_format)
    return model


def _iter_tensors(inputs: torch.Tensor | tuple | list) -> Iterator[torch.Tensor]:
    yield from inputs if isinstance(inputs, tuple | list) else (inputs,)


def move_to_device(
    inputs: torch.Tensor | tuple | list, device: torch.device, *, channels_last: bool = False
) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """Inputs (a tensor or a tuple of tensors) on ``device``, channels-last when asked."""
    moved = []
    for tensor in _iter_tensors(inputs):
        tensor = tensor.to(device, non_blocking=True)
        if channels_last and tensor.dim() in CHANNELS_LAST:
            tensor = tensor.contiguous(memory_format=CHANNELS_LAST[tensor.dim()])
        moved.append(tensor)
    return tuple(moved) if isinstance(inputs, tuple | list) else moved[0]


def forward_model(
    model: nn.Module, inputs: torch.Tensor | tuple[torch.Tensor, ...]
) -> torch.Tensor:
    """``model(*inputs)`` for a tuple (multi-input models), ``model(inputs)`` otherwise."""
    return model(*inputs) if isinstance(inputs, tuple) else model(inputs)


def seconds_between(start: Mark, end: Mark) -> float:
    """Seconds of device work between two marks; on CUDA this waits for ``end`` to complete."""
    if isinstance(start, float):
        return end - start
    end.synchronize()
    return start.elapsed_time(end) / 1000.0
