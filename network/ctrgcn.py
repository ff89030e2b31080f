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

from network.gcn_blocks import (
    GCNBlock,
    GCNClassifier,
    PointwiseConv,
    TemporalConv,
    branch_widths,
    run_branches,
    unit_shortcut,
)

__all__ = ["CTRGC", "CTRGCN", "MSTCN", "CTRGCNBlock", "UnitCTRGCN", "refine", "topologies"]

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
    """One partition's refinement: (N, C, T, V), A (V, V), alpha → (N, C', T, V).

    :class:`UnitCTRGCN` runs the partitions together from these parameters (``refine``); this
    forward pass is pyskl's, one partition at a time."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        rel = 8 if in_channels <= 16 else in_channels // REL_REDUCTION
        self.conv1 = PointwiseConv(in_channels, rel)
        self.conv2 = PointwiseConv(in_channels, rel)
        self.conv3 = PointwiseConv(in_channels, out_channels)
        self.conv4 = PointwiseConv(rel, out_channels)
        self.tanh = nn.Tanh()

    def forward(
        self, x: torch.Tensor, adjacency: torch.Tensor, alpha: torch.Tensor
    ) -> torch.Tensor:
        return refine([self], x, adjacency[None], alpha)


def _stacked(convs: list[nn.Conv2d], dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of 1×1 ``convs`` stacked along ``dim`` (0 or 1): (K, C', C) or (C', K, C)."""
    weight = torch.stack([conv.weight.flatten(1) for conv in convs], dim)
    return weight, torch.stack([conv.bias for conv in convs], dim)


def _batches(x: torch.Tensor) -> list[torch.Tensor]:
    """(N, C', K, A, B) → per partition (N·C', A, B) matrices, views."""
    return [part.flatten(0, 1) for part in x.unbind(2)]


def topologies(
    parts: list[CTRGC], x: torch.Tensor, adjacency: torch.Tensor, alpha: torch.Tensor
) -> torch.Tensor:
    """Every partition's channel-wise topology ``conv4(tanh(x1_u − x2_v))·alpha + A[k]``:
    (N, C, T, V), A (K, V, V) → (N, C', K, U, V). conv1/conv2 run on the mean over time (a 1×1
    convolution commutes with it: T times fewer FLOPs), all partitions in one product."""
    n, _, _, v = x.shape
    k = len(parts)
    weight, bias = _stacked([p.conv1 for p in parts] + [p.conv2 for p in parts], 0)
    queries = nn.functional.linear(x.mean(2).transpose(1, 2), weight.flatten(0, 1), bias.flatten())
    q1, q2 = queries.view(n, v, 2, k, -1).permute(2, 0, 3, 4, 1)  # each (N, K, R, V)
    relation = torch.tanh(q1.unsqueeze(-1) - q2.unsqueeze(-2))  # (N, K, R, U, V)
    weight, bias = _stacked([p.conv4 for p in parts], 0)  # (K, C', R), (K, C')
    topology = torch.matmul(weight, relation.flatten(3)) + bias[..., None]  # (N, K, C', U·V)
    topology = topology.view(n, k, -1, v, v) * alpha + adjacency[:, None]
    return topology.transpose(1, 2).contiguous()


def refine(
    parts: list[CTRGC], x: torch.Tensor, adjacency: torch.Tensor, alpha: torch.Tensor
) -> torch.Tensor:
    """Σ_k CTRGC_k(x, A[k], alpha) over the partitions ``parts`` at once: (N, C, T, V), A (K, V, V)
    → (N, C', T, V), contiguous. pyskl's per-partition code up to float rounding, with no einsum
    copies: conv3 of all partitions is one product, and the per-channel joint mixing adds the
    partitions up in place."""
    n, _, t, v = x.shape
    topology = topologies(parts, x, adjacency, alpha)  # (N, C', K, U, V)
    channels, k = topology.shape[1:3]
    weight, bias = _stacked([p.conv3 for p in parts], 1)  # rows (c, k): batches of (n, c) below
    # (N, C'·K, T·V) straight from channels-last rows: a permuted copy of a (N, T, V, C'·K)
    # product cost twice the product itself
    features = torch.bmm(weight.flatten(0, 1).expand(n, -1, -1), x.flatten(2))
    # unbind, not indexing: its backward pass stacks the gradients instead of writing each
    # into a zero-filled tensor of the whole size
    rows, mixings = _batches(features.view(n, channels, k, t, v)), _batches(topology)
    out = torch.bmm(rows[0], mixings[0])  # (N·C', T, V)
    for part in range(1, k):  # out[n, c] = Σ_k x3[n, c, k] (T, U) @ topology[n, c, k] (U, V)
        out.baddbmm_(rows[part], mixings[part])
    # conv3's bias through the mixing: Σ_k b[c, k] · Σ_u topology[n, c, k, u, v], for every t
    out += (bias[None, :, :, None] * topology.sum(3)).sum(2).view(n * channels, 1, v)
    return out.view(n, channels, t, v)


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
        y = refine(list(self.convs), x, self.A, self.alpha)
        y = y.contiguous(memory_format=torch.channels_last)  # the blocks' memory format
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
                PointwiseConv(in_channels, mid), nn.BatchNorm2d(mid), nn.ReLU(),
                TemporalConv(mid, mid, TCN_KERNEL, stride=stride, dilation=dilation),
            )
            for dilation in TCN_DILATIONS
        ]  # fmt: skip
        branches.append(
            nn.Sequential(
                PointwiseConv(in_channels, mid), nn.BatchNorm2d(mid), nn.ReLU(),
                nn.MaxPool2d((3, 1), stride=(stride, 1), padding=(1, 0)), nn.BatchNorm2d(mid),
            )
        )  # fmt: skip
        branches.append(
            nn.Sequential(
                PointwiseConv(in_channels, rest, stride=stride),
                nn.BatchNorm2d(rest),
            )
        )
        self.branches = nn.ModuleList(branches)
        self.act = nn.ReLU()
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.cat(run_branches(self.branches, x), dim=1)
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
