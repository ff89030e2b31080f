"""ST-GCN++ (Duan et al., PYSKL 2022): pyskl's ``STGCN`` with ``gcn_adaptive='init'``,
``gcn_with_res=True``, ``tcn_type='mstcn'`` (MMAction2's ``stgcnpp`` configs build the same).

Input ``(N, C, T, V, M)``; output logits ``(N, num_classes)``. Each of the ten blocks is
``ReLU(mstcn(unit_gcn(x)) + residual(x))``:

- ``unit_gcn``: a learnable adjacency ``A`` (3, V, V) initialised with pyskl's spatial graph,
  a 1×1 convolution to 3 partitions, ``einsum('nkctv,kvw->nctw')``, BN, plus a 1×1 conv + BN
  shortcut when the width changes, then ReLU.
- ``mstcn``: six branches (3×1 convolutions with dilation 1-4, a 3×1 max pool, a strided 1×1),
  concatenated, BN-ReLU-1×1 "transform", BN, dropout.

The data BN normalises per joint and coordinate (pyskl ``data_bn_type='VC'``); persons run as a
batch and are averaged after the head's pooling (pyskl ``GCNHead``). Module names equal pyskl's
(``data_bn``, ``gcn.i.gcn.A``, ``gcn.i.tcn.branches.j``, ``gcn.i.residual.conv``); the head's
``fc_cls`` is our ``fc``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from network.gcn_blocks import (
    STAGES,
    GCNClassifier,
    TemporalConv,
    block_residual,
    reference_adjacency,
    stage_plan,
)
from network.graph import Layout, get_layout
from network.registry import register_model

__all__ = ["MultiScaleTCN", "STGCNPlusPlus", "STGCNPlusPlusBlock", "UnitGCN"]

# pyskl mstcn ``ms_cfg``: (kernel, dilation) temporal convolutions, a max pool, a strided 1×1.
MSTCN_BRANCHES: tuple[tuple[str, int, int], ...] = (
    ("conv", 3, 1),
    ("conv", 3, 2),
    ("conv", 3, 3),
    ("conv", 3, 4),
    ("max", 3, 1),
    ("1x1", 1, 1),
)


class UnitGCN(nn.Module):
    """pyskl ``unit_gcn`` (adaptive 'init', with_res): (N, C, T, V) → (N, C', T, V)."""

    def __init__(self, in_channels: int, out_channels: int, adjacency: torch.Tensor) -> None:
        super().__init__()
        self.num_subsets = adjacency.shape[0]
        self.A = nn.Parameter(adjacency.clone())
        self.conv = nn.Conv2d(in_channels, out_channels * self.num_subsets, 1)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU()
        self.down: nn.Module = nn.Identity()
        if in_channels != out_channels:
            self.down = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, t, v = x.shape
        res = self.down(x)
        y = self.conv(x).view(n, self.num_subsets, -1, t, v)
        y = torch.einsum("nkctv,kvw->nctw", y, self.A)
        return self.act(self.bn(y) + res)


def _mstcn_branch(kind: str, kernel: int, dilation: int, c_in: int, c_out: int, stride: int):
    if kind == "1x1":
        return nn.Conv2d(c_in, c_out, kernel_size=1, stride=(stride, 1))
    head = [nn.Conv2d(c_in, c_out, kernel_size=1), nn.BatchNorm2d(c_out), nn.ReLU()]
    if kind == "max":
        return nn.Sequential(*head, nn.MaxPool2d((kernel, 1), stride=(stride, 1), padding=(1, 0)))
    conv = TemporalConv(c_out, c_out, kernel, stride=stride, dilation=dilation, norm=False)
    return nn.Sequential(*head, conv)


class MultiScaleTCN(nn.Module):
    """pyskl ``mstcn``: (N, C, T, V) → (N, C', ⌈T/stride⌉, V). The first branch takes the
    channels left over by ``C' // 6``."""

    def __init__(
        self, in_channels: int, out_channels: int, *, stride: int = 1, dropout: float = 0.0
    ) -> None:
        super().__init__()
        count = len(MSTCN_BRANCHES)
        mid = out_channels // count
        first = out_channels - mid * (count - 1)
        self.branches = nn.ModuleList(
            _mstcn_branch(kind, k, d, in_channels, first if i == 0 else mid, stride)
            for i, (kind, k, d) in enumerate(MSTCN_BRANCHES)
        )
        width = mid * (count - 1) + first
        self.transform = nn.Sequential(
            nn.BatchNorm2d(width), nn.ReLU(), nn.Conv2d(width, out_channels, 1)
        )
        self.bn = nn.BatchNorm2d(out_channels)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.cat([branch(x) for branch in self.branches], dim=1)
        return self.drop(self.bn(self.transform(out)))


class STGCNPlusPlusBlock(nn.Module):
    """``ReLU(tcn(gcn(x)) + residual(x))``: (N, C, T, V) → (N, C', ⌈T/stride⌉, V)."""

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
        self.gcn = UnitGCN(in_channels, out_channels, adjacency)
        self.tcn = MultiScaleTCN(out_channels, out_channels, stride=stride, dropout=dropout)
        self.residual = block_residual(in_channels, out_channels, stride, first)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.tcn(self.gcn(x))
        if self.residual is not None:
            out = out + self.residual(x)
        return self.relu(out)


class STGCNPlusPlus(GCNClassifier):
    """ST-GCN++ on (N, C, T, V, M) skeleton sequences (pyskl ``stgcn++``)."""

    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int = 3,
        graph_layout: str | Path | Layout = "coco",
        dropout: float = 0.0,
        tcn_dropout: float = 0.0,
        stages: tuple[tuple[int, int], ...] = STAGES["full"],
    ) -> None:
        super().__init__()
        self.graph_layout = get_layout(graph_layout)
        adjacency = torch.tensor(reference_adjacency(self.graph_layout))  # on the default device
        # not in the state dict (pyskl's STGCN has no top-level A): each block learns its own
        self.register_buffer("A", adjacency, persistent=False)
        self.in_channels = in_channels
        self.data_bn = nn.BatchNorm1d(in_channels * adjacency.shape[1])
        self.gcn = nn.ModuleList(
            STGCNPlusPlusBlock(
                c_in,
                c_out,
                adjacency,
                stride=stride,
                first=index == 0,
                dropout=0.0 if index == 0 else tcn_dropout,
            )
            for index, (c_in, c_out, stride) in enumerate(stage_plan(stages, in_channels))
        )
        self._init_head(stages[-1][0], num_classes, dropout)

    def blocks_forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.gcn:
            x = block(x)
        return x


# Registered variants: name -> (STAGES row, tags, docstring).
VARIANTS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "stgcnpp": ("full", ("pyskl",), "ST-GCN++ as pyskl's stgcn++ configs (1.39 M parameters, "
                "coco, 60 classes)."),
    "stgcnpp_tiny": ("tiny", ("tiny",), "Three narrow ST-GCN++ blocks (16, 32 stride 2, 32) for "
                     "tests and demos."),
}  # fmt: skip


def _register(name: str, stages: str, tags: tuple[str, ...], doc: str) -> None:
    def build(
        *,
        num_classes: int = 60,
        in_channels: int = 3,
        graph_layout: str = "coco",
        dropout: float = 0.0,
        tcn_dropout: float = 0.0,
    ) -> STGCNPlusPlus:
        return STGCNPlusPlus(
            num_classes=num_classes,
            in_channels=in_channels,
            graph_layout=graph_layout,
            dropout=dropout,
            tcn_dropout=tcn_dropout,
            stages=STAGES[stages],
        )

    build.__name__ = build.__qualname__ = name
    build.__doc__ = doc
    register_model(name, family="skeleton", input_layout="NCTVM", tags=tags)(build)


for _name, _variant in VARIANTS.items():
    _register(_name, *_variant)
