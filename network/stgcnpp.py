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

import torch
from torch import nn

from network.gcn_blocks import (
    GCNBlock,
    GCNClassifier,
    PointwiseConv,
    TemporalConv,
    branch_widths,
    run_branches,
    unit_shortcut,
)
from network.stgcn import mix_joints

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
        self.conv = PointwiseConv(in_channels, out_channels * self.num_subsets)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU()
        self.down = unit_shortcut(in_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.down(x)
        # einsum("nkctv,kvw->nctw") as one product over channels-last rows
        y = mix_joints(self.conv(x).permute(0, 2, 3, 1), self.A)
        return self.act(self.bn(y) + res)


def _mstcn_branch(kind: str, kernel: int, dilation: int, c_in: int, c_out: int, stride: int):
    if kind == "1x1":
        return PointwiseConv(c_in, c_out, stride=stride)
    head = [PointwiseConv(c_in, c_out), nn.BatchNorm2d(c_out), nn.ReLU()]
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
        mid, first = branch_widths(out_channels, len(MSTCN_BRANCHES))
        self.branches = nn.ModuleList(
            _mstcn_branch(kind, k, d, in_channels, first if i == 0 else mid, stride)
            for i, (kind, k, d) in enumerate(MSTCN_BRANCHES)
        )
        self.transform = nn.Sequential(  # the branches' widths add up to out_channels
            nn.BatchNorm2d(out_channels), nn.ReLU(), PointwiseConv(out_channels, out_channels)
        )
        self.bn = nn.BatchNorm2d(out_channels)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.cat(run_branches(self.branches, x), dim=1)
        return self.drop(self.bn(self.transform(out)))


class STGCNPlusPlusBlock(GCNBlock):
    """pyskl's STGCNBlock with ``unit_gcn`` and ``mstcn``: ``ReLU(tcn(gcn(x)) + residual(x))``,
    (N, C, T, V) → (N, C', ⌈T/stride⌉, V)."""

    units = (("gcn", UnitGCN), ("tcn", MultiScaleTCN))


class STGCNPlusPlus(GCNClassifier):
    """ST-GCN++ on (N, C, T, V, M) skeleton sequences (pyskl ``stgcn++``): keyword arguments as
    :class:`GCNClassifier`, ``graph_layout`` "coco" by default; persons run as a batch."""

    block = STGCNPlusPlusBlock
    blocks_name = "gcn"
    default_layout = "coco"
    num_person = 0  # data BN per joint and coordinate (pyskl 'VC')
    # A is not in the state dict (pyskl's STGCN has no top-level A): each block learns its own.
    persistent_adjacency = False


STGCNPlusPlus.register_variants(
    "stgcnpp", "ST-GCN++",
    "ST-GCN++ as pyskl's stgcn++ configs (1.39 M parameters, coco, 60 classes).",
)  # fmt: skip
