"""The model registry: one dict of builders, looked up by exact name.

Every network of every family (video, skeleton, gesture) registers here, so training, export,
the summary tool and the tests treat them alike::

    from network import build_model, list_models
    model = build_model("srtg_r3d_50", num_classes=51)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

__all__ = [
    "InputConstraints",
    "ModelArgumentError",
    "ModelEntry",
    "UnknownModelError",
    "build_model",
    "get_entry",
    "list_models",
    "register_model",
    "register_variant",
]


class UnknownModelError(KeyError, ValueError):
    """A name that is not registered (a KeyError for lookups; a ValueError, i.e. bad input, for
    the scripts' one-line errors). The message suggests the closest names."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ModelArgumentError(TypeError, ValueError):
    """Keyword arguments the network's builder does not take."""


Shape3d = tuple[int, int, int]


def _shape(shape: Shape3d) -> str:
    return "×".join(str(size) for size in shape)


@dataclass(frozen=True)
class InputConstraints:
    """The clip shapes (T, H, W) a video network takes, checked before training starts.

    reference: the clip its reference code trains and counts FLOPs on (a fact, not a limit).
    fixed: the only shape it takes (e.g. a positional embedding of fixed size); minimum: the
    smallest T, H and W (e.g. a fixed pooling window). ``reason`` says why, in the refusal.
    """

    reference: Shape3d | None = None
    fixed: Shape3d | None = None
    minimum: Shape3d | None = None
    reason: str = ""

    def problem(self, shape: Shape3d) -> str | None:
        """Why a (T, H, W) clip cannot go through the network; ``None`` when it can."""
        why = f" ({self.reason})" if self.reason else ""
        if self.fixed is not None and tuple(shape) != self.fixed:
            return f"takes only {_shape(self.fixed)} clips{why}, not {_shape(shape)}"
        if self.minimum is not None and any(s < m for s, m in zip(shape, self.minimum)):
            return f"needs clips of at least {_shape(self.minimum)}{why}, not {_shape(shape)}"
        return None


@dataclass(frozen=True)
class ModelEntry:
    """A registered builder and what callers need to know to feed it.

    family: "video", "skeleton" or "gesture".
    input_layout: "NCTHW" (3D video), "NCHW" (images, or 2D video with frames stacked
        channel-major as (N, C·T, H, W)), "NCTVM" (skeletons) or "joint" (an (rgb, flow) pair).
    """

    name: str
    builder: Callable[..., nn.Module]
    family: str
    input_layout: str
    tags: tuple[str, ...] = field(default=())
    constraints: InputConstraints = field(default=InputConstraints())


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str,
    *,
    family: str,
    input_layout: str,
    tags: tuple[str, ...] = (),
    constraints: InputConstraints | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator storing ``builder`` under ``name``; a second registration of a name raises.
    ``constraints``: the clip shapes a video network takes (default: any)."""

    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model name {name!r} is already registered")
        _REGISTRY[name] = ModelEntry(
            name, builder, family, input_layout, tuple(tags), constraints or InputConstraints()
        )
        return builder

    return decorator


def register_variant(
    name: str,
    network: type[nn.Module],
    *,
    family: str,
    input_layout: str,
    doc: str,
    tags: Iterable[str] = (),
    fixed: Mapping[str, Any] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> Callable[..., nn.Module]:
    """Register ``name``: ``network`` built with the variant's ``fixed`` keywords (its architecture).

    The builder takes every other keyword of ``network``'s constructor, keyword-only, with the
    names and annotations of that signature; ``defaults`` replace the constructor's own defaults
    for this variant (a constructor argument without a default must get one here).
    """
    fixed, defaults = dict(fixed or {}), dict(defaults or {})
    own = inspect.signature(network).parameters
    strange = sorted((set(fixed) | set(defaults)) - set(own))
    if strange:
        raise TypeError(f"{network.__name__} takes no argument(s) {', '.join(strange)}")
    parameters = [
        param.replace(kind=param.KEYWORD_ONLY, default=defaults.get(key, param.default))
        for key, param in own.items()
        if key not in fixed
    ]
    undefaulted = [param.name for param in parameters if param.default is param.empty]
    if undefaulted:
        raise TypeError(f"variant {name!r} needs a default for {', '.join(undefaulted)}")
    signature = inspect.Signature(parameters, return_annotation=network.__name__)

    def build(**kwargs: Any) -> nn.Module:
        signature.bind(**kwargs)  # a keyword the variant does not take is a TypeError here
        return network(**fixed, **{**defaults, **kwargs})

    build.__signature__ = signature  # type: ignore[attr-defined]
    build.__name__ = build.__qualname__ = name
    build.__module__ = network.__module__
    build.__doc__ = doc
    return register_model(name, family=family, input_layout=input_layout, tags=tuple(tags))(build)


def get_entry(name: str) -> ModelEntry:
    """The registry entry of ``name``; unknown names raise with the closest known ones."""
    if name not in _REGISTRY:
        import difflib

        close = difflib.get_close_matches(name, _REGISTRY, n=5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownModelError(f"unknown model {name!r}.{hint} See network.list_models().")
    return _REGISTRY[name]


def list_models(family: str | None = None, tag: str | None = None) -> list[str]:
    """Sorted registered names, optionally only one family's or those carrying ``tag``."""
    return sorted(
        entry.name
        for entry in _REGISTRY.values()
        if (family is None or entry.family == family) and (tag is None or tag in entry.tags)
    )


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build ``name`` with keyword arguments; ``None`` values fall back to the builder's defaults.

    The returned module carries ``network_name`` and ``network_kwargs`` (the kwargs actually
    passed), which checkpoints store so a model can be rebuilt from its file alone.
    """
    entry = get_entry(name)
    given = {key: value for key, value in kwargs.items() if value is not None}
    signature = inspect.signature(entry.builder)
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    unknown = [key for key in given if key not in signature.parameters]
    if unknown and not accepts_any:
        raise ModelArgumentError(
            f"model {name!r} does not take argument(s) {', '.join(sorted(unknown))}"
        )
    model = entry.builder(**given)
    model.network_name = name
    model.network_kwargs = dict(given)
    model.network_family = entry.family
    return model
