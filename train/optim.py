"""Optimisers and their parameter groups (weight-decay filtering, fine-tune LR multipliers).

Each group carries ``lr_mult`` (its LR is ``lr_base × lr_mult × schedule``); the schedule in
``train.schedule`` sets the group LRs at every step.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

__all__ = [
    "OPTIMIZER_BUILDERS",
    "build_optimizer",
    "classifier_parameter_names",
    "parameter_groups",
]


def _sgd(groups: list[dict], args: argparse.Namespace) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        groups,
        lr=args.lr_base,
        momentum=args.momentum,
        nesterov=args.nesterov and args.momentum > 0,
    )


def _adamw(groups: list[dict], args: argparse.Namespace) -> torch.optim.Optimizer:
    return torch.optim.AdamW(groups, lr=args.lr_base)


def _adam(groups: list[dict], args: argparse.Namespace) -> torch.optim.Optimizer:
    return torch.optim.Adam(groups, lr=args.lr_base)


def _rmsprop(groups: list[dict], args: argparse.Namespace) -> torch.optim.Optimizer:
    return torch.optim.RMSprop(groups, lr=args.lr_base, momentum=args.momentum)


# --optimizer name -> builder(groups, args); weight decay lives in each group.
OPTIMIZER_BUILDERS: dict[str, Callable[[list[dict], argparse.Namespace], torch.optim.Optimizer]] = {
    "sgd": _sgd,  # momentum, optional Nesterov
    "adamw": _adamw,  # decoupled weight decay
    "adam": _adam,  # L2 weight decay added to the gradient
    "rmsprop": _rmsprop,  # with --momentum
}


def classifier_parameter_names(model: nn.Module) -> set[str]:
    """Names of the parameters of the final classifier (what ``--finetune`` trains at full LR).

    A model may name its head modules in ``head_prefixes``; otherwise the head is the last
    ``nn.Linear`` (or 1×1 convolution) registered, the layer ``reset_classifier`` replaces.
    """
    prefixes = tuple(getattr(model, "head_prefixes", ()))
    if not prefixes:
        last = None
        for name, module in model.named_modules():
            if isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d) and (
                isinstance(module, nn.Linear) or all(k == 1 for k in module.kernel_size)
            ):
                last = name
        prefixes = (last,) if last is not None else ()
    return {
        name
        for name, _ in model.named_parameters()
        if any(name == p or name.startswith(p + ".") for p in prefixes)
    }


def parameter_groups(
    model: nn.Module,
    args: argparse.Namespace,
    param_groups: Sequence[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Optimizer groups with ``lr_mult`` and ``weight_decay``; frozen parameters are left out.

    ``param_groups`` (from a family script) wins; else ``--finetune`` puts the backbone at
    ``--backbone-lr-mult`` (< 1) and the classifier at 1. With ``--no-norm-bias-decay``, 1-D
    parameters (biases, normalisation scales) get no weight decay.
    """
    if param_groups is not None:
        groups = [dict(group) for group in param_groups]
        for group in groups:
            group["params"] = [p for p in group["params"] if p.requires_grad]
    elif args.finetune:
        head = classifier_parameter_names(model)
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        groups = [
            {"params": [p for n, p in named if n not in head], "lr_mult": args.backbone_lr_mult},
            {"params": [p for n, p in named if n in head], "lr_mult": 1.0},
        ]
    else:
        groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
    groups = [g for g in _split_no_decay(groups, args) if g["params"]]
    if not groups:
        raise ValueError("the model has no trainable parameters (all frozen?)")
    return groups


def _split_no_decay(groups: Iterable[dict[str, Any]], args: argparse.Namespace) -> list[dict]:
    out = []
    for group in groups:
        group.setdefault("lr_mult", 1.0)
        group.setdefault("weight_decay", args.weight_decay)
        if args.norm_bias_decay:
            out.append(group)
            continue
        decay = {**group, "params": [p for p in group["params"] if p.ndim > 1]}
        no_decay = {**group, "params": [p for p in group["params"] if p.ndim <= 1]}
        no_decay["weight_decay"] = 0.0
        out.extend([decay, no_decay])
    return out


def build_optimizer(
    groups: list[dict[str, Any]], args: argparse.Namespace
) -> torch.optim.Optimizer:
    """The ``--optimizer`` over ``groups`` (from :func:`parameter_groups`)."""
    return OPTIMIZER_BUILDERS[args.optimizer](groups, args)
