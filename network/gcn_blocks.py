"""Pieces shared by the pyskl-family graph networks (ST-GCN++, CTR-GCN).

- :func:`reference_adjacency`: pyskl's ``Graph(layout, mode='spatial')``, the three partitions
  ``[I, norm(inward), norm(outward)]`` (K = 3, V, V), built for any ActRec layout.
- :class:`TemporalConv` (pyskl ``unit_tcn``): a (k × 1) temporal convolution, BN, dropout.
- :class:`GCNClassifier`: the data BN in front, the blocks, and pyskl's ``GCNHead`` (mean over
  frames and joints, then over persons, dropout, linear).

Module names follow pyskl's, so a pyskl/MMAction2 ``state_dict`` loads once ``backbone.`` is
stripped and the head is renamed (``network.weights``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from network.base import Classifier
from network.graph import LAYOUTS, Layout, get_layout, hop_distance

__all__ = [
    "REFERENCE_EDGES",
    "STAGES",
    "GCNClassifier",
    "TemporalConv",
    "inward_edges",
    "reference_adjacency",
    "stage_plan",
]

# pyskl's own edge lists ("inward": (child, parent), 0-based) where its graph differs from the
# ActRec layout of the same joints; other layouts orient ActRec's edges (``inward_edges``).
REFERENCE_EDGES: dict[str, tuple[tuple[int, int], ...]] = {
    # pyskl/MMAction2 'coco': nose-rooted tree, hips to shoulders, shoulders to the nose.
    "coco": ((15, 13), (13, 11), (16, 14), (14, 12), (11, 5), (12, 6), (9, 7), (7, 5),
             (10, 8), (8, 6), (5, 0), (6, 0), (1, 0), (3, 1), (2, 0), (4, 2)),
    # pyskl/MMAction2 'nturgb+d': hand tip and thumb both attach to the hand.
    "ntu-rgb+d": ((0, 1), (1, 20), (2, 20), (3, 2), (4, 20), (5, 4), (6, 5), (7, 6), (8, 20),
                  (9, 8), (10, 9), (11, 10), (12, 0), (13, 12), (14, 13), (15, 14), (16, 0),
                  (17, 16), (18, 17), (19, 18), (21, 7), (22, 7), (23, 11), (24, 11)),
}  # fmt: skip

# Block widths and temporal strides (pyskl: base 64, inflate and stride 2 at stages 5 and 8).
STAGES: dict[str, tuple[tuple[int, int], ...]] = {
    # The reference: 4×64, 128 (stride 2), 2×128, 256 (stride 2), 2×256.
    "full": ((64, 1),) * 4 + ((128, 2),) + ((128, 1),) * 2 + ((256, 2),) + ((256, 1),) * 2,
    # Tests and demos: the same kinds of blocks (widening, stride 2, identity residual).
    "tiny": ((16, 1), (32, 2), (32, 1)),
}


def inward_edges(layout: Layout) -> tuple[tuple[int, int], ...]:
    """(child, parent) pairs: pyskl's list for its layouts, else each ActRec edge pointed at the
    center (the end farther from the center by shortest path is the child; ties keep the order
    the layout writes)."""
    if layout.name in REFERENCE_EDGES and LAYOUTS.get(layout.name) == layout:
        return REFERENCE_EDGES[layout.name]
    to_center = hop_distance(layout.num_joints, layout.edges, layout.num_joints)[:, layout.center]
    return tuple((j, i) if to_center[j] > to_center[i] else (i, j) for i, j in layout.edges)


def _normalize_columns(adjacency: np.ndarray) -> np.ndarray:
    degree = adjacency.sum(axis=0)
    inverse = np.divide(1.0, degree, out=np.zeros_like(degree), where=degree > 0)
    return adjacency * inverse[None, :]


def reference_adjacency(layout: str | Path | Layout) -> np.ndarray:
    """(3, V, V) float32: identity, column-normalised inward and outward adjacency (pyskl's
    ``spatial`` mode). ``A[k][v, w]`` is the weight with which joint ``v`` feeds joint ``w``."""
    layout = get_layout(layout)
    v = layout.num_joints
    inward = np.zeros((v, v))
    for child, parent in inward_edges(layout):
        inward[parent, child] = 1.0  # pyskl edge2mat: A[j, i] = 1 for the pair (i, j)
    parts = (np.eye(v), _normalize_columns(inward), _normalize_columns(inward.T.copy()))
    return np.stack(parts).astype(np.float32)


def stage_plan(stages: tuple[tuple[int, int], ...], in_channels: int) -> list[tuple[int, int, int]]:
    """(in, out, stride) per block from a ``STAGES`` row."""
    plan, width = [], in_channels
    for out_channels, stride in stages:
        plan.append((width, out_channels, stride))
        width = out_channels
    return plan


class TemporalConv(nn.Module):
    """pyskl ``unit_tcn``: Conv2d (k × 1, stride, dilation, "same" padding) → BN → dropout.

    (N, C, T, V) → (N, C', ⌈T/stride⌉, V); ``norm=False`` leaves out the BN (pyskl's norm=None).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 9,
        *,
        stride: int = 1,
        dilation: int = 1,
        norm: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        pad = (kernel_size + (kernel_size - 1) * (dilation - 1) - 1) // 2
        self.conv = nn.Conv2d(
            in_channels, out_channels, (kernel_size, 1), (stride, 1), (pad, 0), (dilation, 1)
        )
        self.bn = nn.BatchNorm2d(out_channels) if norm else nn.Identity()
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.bn(self.conv(x)))


def block_residual(
    in_channels: int, out_channels: int, stride: int, first: bool
) -> nn.Module | None:
    """pyskl's block shortcut: none for the first block, identity when the shape is kept, else a
    strided 1×1 ``unit_tcn``."""
    if first:
        return None
    if in_channels == out_channels and stride == 1:
        return nn.Identity()
    return TemporalConv(in_channels, out_channels, 1, stride=stride)


class GCNClassifier(Classifier):
    """Skeleton network body shared by ST-GCN++ and CTR-GCN.

    Subclasses set ``self.data_bn``, ``self.graph_layout`` (a Layout), ``self.A`` and the block
    list, and implement ``blocks_forward`` ((N·M, C, T, V) → (N·M, F, T', V)).
    ``num_person`` > 0 means the data BN spans persons (pyskl ``MVC``): inputs with fewer persons
    are zero-padded to it, as pyskl's ``FormatGCNInput`` pads them.
    """

    num_person = 0

    def _init_head(self, width: int, num_classes: int, dropout: float) -> None:
        self.num_classes = num_classes
        self.num_features = width
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(width, num_classes)
        _init_classifier(self.fc)

    @property
    def graph(self) -> _GraphView:
        """The layout and adjacency (``graph.layout.name``, ``graph.A``) that tools read."""
        return _GraphView(self.graph_layout, self.A)

    def _normalize_input(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, T, V, M) → (N·M, C, T, V) through the data BN (per joint and coordinate, and per
        person with ``num_person``)."""
        n, c, t, v, m = x.shape
        if self.num_person:
            if m > self.num_person:
                raise ValueError(f"{m} persons per sample; this network takes {self.num_person}")
            if m < self.num_person:
                x = torch.cat([x, x.new_zeros(n, c, t, v, self.num_person - m)], dim=4)
                m = self.num_person
        groups = n if self.num_person else n * m  # BN channel (m·V +) v·C + c
        x = self.data_bn(x.permute(0, 4, 3, 1, 2).reshape(groups, -1, t))
        return x.reshape(n, m, v, c, t).permute(0, 1, 3, 4, 2).reshape(n * m, c, t, v)

    def blocks_forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, T, V, M) → (N, F): blocks on every person, mean over T and V, then over M."""
        n = x.shape[0]
        x = self.blocks_forward(self._normalize_input(x))
        return x.mean(dim=(2, 3)).reshape(n, -1, x.shape[1]).mean(dim=1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """(N, F) → (N, num_classes): dropout (pyskl GCNHead default 0), linear."""
        return self.fc(self.dropout(features))

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes, device=self.fc.weight.device)
        _init_classifier(self.fc)


def _init_classifier(layer: nn.Linear) -> None:
    """pyskl ``GCNHead.init_weights``: ``normal_init(fc_cls, std=0.01)`` (zero bias)."""
    nn.init.normal_(layer.weight, 0.0, 0.01)
    nn.init.zeros_(layer.bias)


class _GraphView:
    """What export and the scripts read from ``model.graph``: ``layout`` and ``A``."""

    def __init__(self, layout: Layout, adjacency: torch.Tensor) -> None:
        self.layout = layout
        self.A = adjacency

    def __repr__(self) -> str:
        return (
            f"Graph(layout={self.layout.name!r}, mode='spatial (pyskl)', A={tuple(self.A.shape)})"
        )
