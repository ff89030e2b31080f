"""Pieces shared by the pyskl-family graph networks (ST-GCN++, CTR-GCN).

- :func:`reference_adjacency`: pyskl's ``Graph(layout, mode='spatial')``, the three partitions
  ``[I, norm(inward), norm(outward)]`` (K = 3, V, V), built for any ActRec layout.
- :class:`TemporalConv` (pyskl ``unit_tcn``): a (k × 1) temporal convolution, BN.
- :class:`GCNBlock`: ``ReLU(tcn(gcn(x)) + residual(x))`` around a network's two units.
- :class:`GCNClassifier`: the data BN in front, the blocks, and pyskl's ``GCNHead`` (mean over
  frames and joints, then over persons, dropout, linear); ``register_variants`` registers a
  network's reference and tiny builders.

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
from network.registry import register_variant
from network.stgcn import pointwise_conv

__all__ = [
    "REFERENCE_EDGES",
    "STAGES",
    "GCNBlock",
    "GCNClassifier",
    "PointwiseConv",
    "TemporalConv",
    "block_residual",
    "branch_widths",
    "inward_edges",
    "reference_adjacency",
    "run_branches",
    "stage_plan",
    "unit_shortcut",
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


class PointwiseConv(nn.Conv2d):
    """A 1×1 ``nn.Conv2d`` (same parameters and names) run as matrix products: (N, C, T, V) →
    (N, C', ⌈T/s⌉, V) in the memory format of ``x``. The native 1×1 convolution took im2col
    paths: half of ST-GCN++'s time."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1) -> None:
        super().__init__(in_channels, out_channels, kernel_size=1, stride=(stride, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not x.is_contiguous():  # channels-last rows (network.stgcn)
            return pointwise_conv(self, x)
        x = x[:, :, :: self.stride[0]]
        n, _, t, v = x.shape
        out = torch.matmul(self.weight.flatten(1), x.flatten(2)) + self.bias[:, None]
        return out.view(n, -1, t, v)


def run_branches(branches: nn.ModuleList, x: torch.Tensor) -> list[torch.Tensor]:
    """Each branch (a module, or a ``nn.Sequential`` whose first module is its 1×1 head) on
    ``x``; the stride-1 :class:`PointwiseConv` heads of all branches run as one matrix product
    over channels-last rows (separately, their narrow products ran at a fraction of the peak)."""
    heads = [branch[0] if isinstance(branch, nn.Sequential) else branch for branch in branches]
    merged = [isinstance(head, PointwiseConv) and head.stride == (1, 1) for head in heads]
    chosen = [head for head, merge in zip(heads, merged) if merge]
    weight = torch.cat([head.weight.flatten(1) for head in chosen])
    bias = torch.cat([head.bias for head in chosen])
    rows = nn.functional.linear(x.permute(0, 2, 3, 1), weight, bias).permute(0, 3, 1, 2)
    # dense parts: BatchNorm on a channel slice of channels-last rows took a slow strided path
    parts = iter(
        part.contiguous(memory_format=torch.channels_last)
        for part in rows.split([head.out_channels for head in chosen], dim=1)
    )
    outputs = []
    for branch, merge in zip(branches, merged):
        if not merge:
            outputs.append(branch(x))
        elif isinstance(branch, nn.Sequential):
            outputs.append(branch[1:](next(parts)))
        else:
            outputs.append(next(parts))
    return outputs


class TemporalConv(nn.Module):
    """pyskl ``unit_tcn`` as these networks use it (dropout 0, so none): Conv2d (k × 1, stride,
    dilation, "same" padding) → BN.

    (N, C, T, V) → (N, C', ⌈T/stride⌉, V); ``norm=False`` leaves out the BN (pyskl's norm=None).
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, *,
        stride: int = 1, dilation: int = 1, norm: bool = True,
    ) -> None:  # fmt: skip
        super().__init__()
        pad = (kernel_size + (kernel_size - 1) * (dilation - 1) - 1) // 2
        self.conv = (
            PointwiseConv(in_channels, out_channels, stride=stride)
            if kernel_size == 1
            else nn.Conv2d(
                in_channels, out_channels, (kernel_size, 1), (stride, 1), (pad, 0), (dilation, 1)
            )
        )
        self.bn = nn.BatchNorm2d(out_channels) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


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


def unit_shortcut(in_channels: int, out_channels: int) -> nn.Module:
    """The graph units' ``down``: identity, or 1×1 conv + BN when the width changes."""
    if in_channels == out_channels:
        return nn.Identity()
    return nn.Sequential(PointwiseConv(in_channels, out_channels), nn.BatchNorm2d(out_channels))


def branch_widths(out_channels: int, count: int) -> tuple[int, int]:
    """pyskl's multi-scale TCN split of C' over ``count`` branches: (C' // count, what is left
    for the one branch that takes the remainder)."""
    mid = out_channels // count
    return mid, out_channels - mid * (count - 1)


class GCNBlock(nn.Module):
    """``ReLU(tcn(gcn(x)) + residual(x))``: (N, C, T, V) → (N, C', ⌈T/stride⌉, V).

    Subclasses set ``units``: pyskl's attribute names and classes of the graph unit
    (``gcn(C, C', A)``) and the temporal unit (``tcn(C', C', stride=, dropout=)``). Units with an
    ``init_weights`` method get it after the block is built, temporal first (pyskl's
    ``CTRGCNBlock``).
    """

    units: tuple[tuple[str, type[nn.Module]], tuple[str, type[nn.Module]]]

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        adjacency: torch.Tensor,
        *,
        stride: int = 1,
        first: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        (gcn_name, gcn_unit), (tcn_name, tcn_unit) = self.units
        gcn = gcn_unit(in_channels, out_channels, adjacency)
        tcn = tcn_unit(out_channels, out_channels, stride=stride, dropout=dropout)
        self.add_module(gcn_name, gcn)
        self.add_module(tcn_name, tcn)
        self.residual = block_residual(in_channels, out_channels, stride, first)
        self.relu = nn.ReLU()
        for unit in (tcn, gcn):
            if hasattr(unit, "init_weights"):
                unit.init_weights()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (gcn, _), (tcn, _) = self.units
        out = self.get_submodule(tcn)(self.get_submodule(gcn)(x))
        if self.residual is not None:
            out = out + self.residual(x)
        return self.relu(out)


class GCNClassifier(Classifier):
    """Skeleton network body shared by ST-GCN++ and CTR-GCN: data BN, blocks, pyskl's GCNHead.

    Subclasses set ``block`` (a :class:`GCNBlock`), ``blocks_name`` (pyskl's name of the block
    list), ``default_layout``, ``num_person`` and ``persistent_adjacency`` (whether ``A`` is in the
    state dict, as pyskl's ``backbone.A`` of CTR-GCN). ``num_person`` > 0 means the data BN spans
    persons (pyskl ``MVC``): inputs with fewer persons are zero-padded to it, as pyskl's
    ``FormatGCNInput`` pads them; 0 means per joint and coordinate (pyskl ``VC``).
    """

    block: type[GCNBlock]
    blocks_name: str
    default_layout: str
    num_person = 0
    persistent_adjacency = False
    memory_format = torch.channels_last  # of the blocks' activations

    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int = 3,
        graph_layout: str | Path | Layout | None = None,
        num_person: int | None = None,
        dropout: float = 0.0,
        tcn_dropout: float = 0.0,
        stages: tuple[tuple[int, int], ...] = STAGES["full"],
    ) -> None:
        """``graph_layout`` and ``num_person`` default to the class's; ``dropout`` is the head's,
        ``tcn_dropout`` every block's but the first."""
        super().__init__()
        self.graph_layout = get_layout(
            self.default_layout if graph_layout is None else graph_layout
        )
        adjacency = torch.tensor(reference_adjacency(self.graph_layout))  # on the default device
        self.register_buffer("A", adjacency, persistent=self.persistent_adjacency)
        self.in_channels = in_channels
        self.num_person = self.num_person if num_person is None else num_person
        self.data_bn = nn.BatchNorm1d(max(self.num_person, 1) * in_channels * adjacency.shape[1])
        blocks = nn.ModuleList(
            self.block(
                c_in,
                c_out,
                adjacency,
                stride=stride,
                first=index == 0,
                dropout=0.0 if index == 0 else tcn_dropout,
            )
            for index, (c_in, c_out, stride) in enumerate(stage_plan(stages, in_channels))
        )
        self.add_module(self.blocks_name, blocks)
        self.num_classes = num_classes
        self.num_features = stages[-1][0]
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.num_features, num_classes)
        _init_classifier(self.fc)

    @classmethod
    def register_variants(cls, name: str, label: str, doc: str) -> None:
        """Register ``name`` (``STAGES["full"]``, tag "pyskl", docstring ``doc``) and
        ``name_tiny`` (``STAGES["tiny"]``, three narrow ``label`` blocks). Builders default to 60
        classes and the class's layout and person count; a count of 0 (data BN per joint, any
        number of persons) is fixed, not a builder argument."""
        tiny = f"Three narrow {label} blocks (16, 32 stride 2, 32) for tests and demos."
        persons = {"num_person": cls.num_person}
        fixed, defaults = ({}, persons) if cls.num_person else (persons, {})
        for variant, stages, tag, text in (
            (name, "full", "pyskl", doc),
            (f"{name}_tiny", "tiny", "tiny", tiny),
        ):
            register_variant(
                variant, cls, family="skeleton", input_layout="NCTVM", doc=text, tags=(tag,),
                fixed={"stages": STAGES[stages], **fixed},
                defaults={"num_classes": 60, "graph_layout": cls.default_layout, **defaults},
            )  # fmt: skip

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
        x = x.reshape(n, m, v, c, t).permute(0, 1, 3, 4, 2).reshape(n * m, c, t, v)
        return x.contiguous(memory_format=self.memory_format)

    def blocks_forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N·M, C, T, V) → (N·M, F, T', V) through the blocks."""
        for block in self.get_submodule(self.blocks_name):
            x = block(x)
        return x

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
