"""CTR-GCN (Chen et al., ICCV 2021) as pyskl's ``CTRGCN`` (MMAction2's ``projects/ctrgcn``).

Input ``(N, C, T, V, M)``; output logits ``(N, num_classes)``. Ten blocks, each
``ReLU(tcn1(gcn1(x)) + residual(x))``:

- ``gcn1`` (``unit_ctrgcn``): per partition k of the learnable ``A`` (3, V, V) a channel-wise
  topology refinement ``CTRGC``: ``conv1``/``conv2`` (C → R, mean over time), ``tanh`` of their
  pairwise joint differences, ``conv4`` (R → C') scaled by the learnable ``alpha`` (initialised
  to 0) plus ``A[k]``, applied to ``conv3(x)`` per channel; the partitions are summed, BN, plus a
  1×1 conv + BN shortcut when the width changes, ReLU. R = 8 for C ≤ 16, else C // 8.
- ``tcn1`` (pyskl ``MSTCN`` as in MS-G3D): two 5×1 temporal convolutions (dilation 1 and 2), a
  3×1 max pool with BN, a strided 1×1 with BN (this one takes the remaining channels),
  concatenated, ReLU, dropout.

The data BN spans persons (pyskl ``MVC``: BatchNorm1d over M·V·C), so the network takes
``num_person`` persons (2, as pyskl's ``FormatGCNInput``); fewer are zero-padded. Module names
equal pyskl's (``A``, ``data_bn``, ``net.i.gcn1.convs.k.conv1``, ``net.i.tcn1.branches.j``).
"""

from __future__ import annotations

import torch
from torch import nn

from network.gcn_blocks import GCNBlock, GCNClassifier, TemporalConv, branch_widths, unit_shortcut

__all__ = ["CTRGC", "CTRGCN", "MSTCN", "CTRGCNBlock", "UnitCTRGCN"]

TCN_KERNEL = 5  # pyskl CTRGCNBlock defaults: kernel 5, dilations (1, 2)
TCN_DILATIONS = (1, 2)
REL_REDUCTION = 8


def _conv_init(conv: nn.Conv2d) -> None:
    """pyskl ``conv_init``: Kaiming normal (fan_out), zero bias."""
    nn.init.kaiming_normal_(conv.weight, mode="fan_out")
    nn.init.zeros_(conv.bias)


def _bn_init(bn: nn.BatchNorm2d, scale: float) -> None:
    nn.init.constant_(bn.weight, scale)
    nn.init.zeros_(bn.bias)


def _init_convs_and_norms(module: nn.Module) -> None:
    """pyskl's unit init: every convolution ``conv_init``, every BN at weight 1, bias 0."""
    for child in module.modules():
        if isinstance(child, nn.Conv2d):
            _conv_init(child)
        elif isinstance(child, nn.BatchNorm2d):
            _bn_init(child, 1.0)


class CTRGC(nn.Module):
    """One partition's refinement: (N, C, T, V), A (V, V), alpha → (N, C', T, V)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        rel = 8 if in_channels <= 16 else in_channels // REL_REDUCTION
        self.conv1 = nn.Conv2d(in_channels, rel, kernel_size=1)
        self.conv2 = nn.Conv2d(in_channels, rel, kernel_size=1)
        self.conv3 = nn.Conv2d(in_channels, out_channels, kernel_size=1)
        self.conv4 = nn.Conv2d(rel, out_channels, kernel_size=1)
        self.tanh = nn.Tanh()

    def forward(self, x: torch.Tensor, adjacency: torch.Tensor, alpha: torch.Tensor):
        x1, x2, x3 = self.conv1(x).mean(-2), self.conv2(x).mean(-2), self.conv3(x)
        relation = self.tanh(x1.unsqueeze(-1) - x2.unsqueeze(-2))  # (N, R, V, V)
        topology = self.conv4(relation) * alpha + adjacency[None, None]  # (N, C', V, V)
        return torch.einsum("ncuv,nctu->nctv", topology, x3)


class UnitCTRGCN(nn.Module):
    """pyskl ``unit_ctrgcn``: the sum over partitions, BN, shortcut, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, adjacency: torch.Tensor) -> None:
        super().__init__()
        self.num_subset = adjacency.shape[0]
        self.convs = nn.ModuleList(CTRGC(in_channels, out_channels) for _ in range(self.num_subset))
        self.down = unit_shortcut(in_channels, out_channels)
        self.A = nn.Parameter(adjacency.clone())
        self.alpha = nn.Parameter(torch.zeros(1))
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.convs[0](x, self.A[0], self.alpha)
        for k in range(1, self.num_subset):
            y = y + self.convs[k](x, self.A[k], self.alpha)
        return self.relu(self.bn(y) + self.down(x))

    def init_weights(self) -> None:
        """pyskl: Kaiming convolutions, BN at 1, the output BN at 1e-6."""
        _init_convs_and_norms(self)
        _bn_init(self.bn, 1e-6)


class MSTCN(nn.Module):
    """pyskl ``MSTCN`` (residual=False): (N, C, T, V) → (N, C', ⌈T/stride⌉, V)."""

    def __init__(
        self, in_channels: int, out_channels: int, *, stride: int = 1, dropout: float = 0.0
    ) -> None:
        super().__init__()
        mid, rest = branch_widths(out_channels, len(TCN_DILATIONS) + 2)
        branches: list[nn.Module] = [
            nn.Sequential(
                nn.Conv2d(in_channels, mid, kernel_size=1), nn.BatchNorm2d(mid), nn.ReLU(),
                TemporalConv(mid, mid, TCN_KERNEL, stride=stride, dilation=dilation),
            )
            for dilation in TCN_DILATIONS
        ]  # fmt: skip
        branches.append(
            nn.Sequential(
                nn.Conv2d(in_channels, mid, kernel_size=1), nn.BatchNorm2d(mid), nn.ReLU(),
                nn.MaxPool2d((3, 1), stride=(stride, 1), padding=(1, 0)), nn.BatchNorm2d(mid),
            )
        )  # fmt: skip
        branches.append(
            nn.Sequential(
                nn.Conv2d(in_channels, rest, kernel_size=1, stride=(stride, 1)),
                nn.BatchNorm2d(rest),
            )
        )
        self.branches = nn.ModuleList(branches)
        self.act = nn.ReLU()
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.cat([branch(x) for branch in self.branches], dim=1)
        return self.drop(self.act(out))

    def init_weights(self) -> None:
        """pyskl: Kaiming convolutions, BN at 1."""
        _init_convs_and_norms(self)


class CTRGCNBlock(GCNBlock):
    """pyskl ``CTRGCNBlock``: ``ReLU(tcn1(gcn1(x)) + residual(x))``, (N, C, T, V) →
    (N, C', ⌈T/stride⌉, V); both units get pyskl's init."""

    units = (("gcn1", UnitCTRGCN), ("tcn1", MSTCN))


class CTRGCN(GCNClassifier):
    """CTR-GCN on (N, C, T, V, M) skeleton sequences (pyskl ``CTRGCN``): keyword arguments as
    :class:`GCNClassifier`, ``graph_layout`` "ntu-rgb+d" and ``num_person`` 2 by default."""

    block = CTRGCNBlock
    blocks_name = "net"
    default_layout = "ntu-rgb+d"
    num_person = 2
    persistent_adjacency = True  # as pyskl's (``backbone.A``)


CTRGCN.register_variants(
    "ctrgcn", "CTR-GCN",
    "CTR-GCN as pyskl's CTRGCN configs (1.45 M parameters, ntu-rgb+d, 60 classes).",
)  # fmt: skip
