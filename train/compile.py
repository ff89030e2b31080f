"""``--compile``: ``torch.compile`` with a fallback to eager execution.

``torch.compile`` compiles lazily: at the first call, at each new input shape or mode (train or
eval), and, by default, the backward graph at the first backward pass. ``compile_model`` wraps a
model so that a failure to compile (no C compiler, an operator inductor cannot lower, a bug in a
backend) logs one warning and the run goes on eagerly with the very same module and parameters,
instead of ending. Where this torch has the switch (``force_non_lazy_backward_lowering``), the
backward graph is compiled together with the forward one, so its failures surface, and are
caught, at the same call.

The wrapper keeps the module as ``_orig_mod``, as ``torch.compile``'s own wrapper does, so
``train.checkpoint.unwrap_model`` and checkpoints see the plain module.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

try:  # the switch that compiles the backward graph with the forward one (absent in old torch)
    from torch._functorch import config as _functorch_config
except ImportError:  # pragma: no cover - depends on the torch build
    _functorch_config = None

__all__ = ["CompiledModel", "compile_model"]

log = logging.getLogger(__name__)


class CompiledModel(nn.Module):
    """Calls ``compiled`` (``torch.compile(module)``) until it fails once, ``module`` after that.

    ``failure`` is None while the compiled path works, else the one-line reason it stopped.
    Attributes the wrapper lacks (DDP's ``no_sync``, ``network_name``) come from ``module``.
    """

    def __init__(self, module: nn.Module, compiled: Callable[..., Any]) -> None:
        super().__init__()
        self._orig_mod = module
        self.__dict__["_compiled"] = compiled  # not a submodule: its parameters are module's
        self.__dict__["failure"] = None

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.failure is None:
            try:
                with _backward_compiled_with_forward():
                    return self._compiled(*args, **kwargs)
            except Exception as error:  # any compile failure: run eagerly
                self._fall_back(error)
        return self._orig_mod(*args, **kwargs)

    def _fall_back(self, error: Exception) -> None:
        self.__dict__["failure"] = f"{type(error).__name__}: {_first_line(error)}"
        log.warning("--compile: torch.compile failed (%s); running eagerly", self.failure)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "_orig_mod":
                raise
            return getattr(self._orig_mod, name)


def compile_model(
    model: nn.Module, enabled: bool = True, *, backend: str = "inductor"
) -> nn.Module:
    """``model`` wrapped to run compiled (``CompiledModel``) when ``enabled``, else ``model``.

    Where ``torch.compile`` itself refuses (a Python version it does not support), one warning
    and ``model`` unchanged. ``backend`` is ``torch.compile``'s (tests use ``aot_eager``)."""
    if not enabled:
        return model
    try:
        compiled = torch.compile(model, backend=backend)
    except Exception as error:  # refused up front: run eagerly
        log.warning("--compile: torch.compile is unavailable (%s); running eagerly",
                    _first_line(error))  # fmt: skip
        return model
    return CompiledModel(model, compiled)


@contextlib.contextmanager
def _backward_compiled_with_forward() -> Iterator[None]:
    config = _functorch_config
    if config is None or not hasattr(config, "force_non_lazy_backward_lowering"):
        yield  # older torch: a backward that fails to compile raises in backward()
        return
    with config.patch(force_non_lazy_backward_lowering=True):
        yield


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
