"""ST-GCN (Yan et al. 2018) as NVIDIA TAO PoseClassificationNet defines it.

Input ``(N, C, T, V, M)``: sequences, coordinates, frames, joints, persons (any M). Output logits
``(N, num_classes)``. Module and parameter names follow the reference (``data_bn``,
``st_gcn_networks.i.gcn.conv``, ``.tcn``, ``.residual``, ``edge_importance.i``, ``fcn``), so
reference state dicts load after their ``model.`` prefix is stripped.

The graph convolution runs in channels-last memory: the 1×1 convolution writes ``(N, T, V, K·C)``
and the partition/joint mixing is one matrix product with ``A`` reshaped to ``(W, V·K)``, with no
permuted copies and no loop over partitions or joints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from network.base import Classifier
from network.graph import Graph, Layout, find_graph, graph_flags
from network.registry import register_variant

__all__ = ["STGCN", "GraphConv", "STGCNBlock", "fold_batch_norm", "mix_joints", "pointwise_conv"]

TEMPORAL_KERNEL = 9  # fixed in the reference; must be odd so padding keeps T

# Block widths and temporal strides: one row per network variant.
STAGES: dict[str, tuple[tuple[int, int], ...]] = {
    # The reference: 4×64, 3×128 (stride 2 on entry), 3×256 (stride 2 on entry).
    "st_gcn": ((64, 1),) * 4 + ((128, 2),) + ((128, 1),) * 2 + ((256, 2),) + ((256, 1),) * 2,
    # Tests and demos: same structure (stride 2 entries, residual convs), narrow and shallow.
    "st_gcn_tiny": ((16, 1), (32, 2), (32, 1)),
}


def pointwise_conv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """A 1×1 ``conv`` (any stride) as one matrix product over channels-last memory.

    (N, C, T, V) → (N, C', ⌈T/s⌉, ⌈V/s'⌉), channels-last. Where ``x`` is channels-last, its
    (N·T·V, C) rows feed the product as they lie (the native 1×1 convolution of channels-last
    input took a slow im2col path: a fifth of ST-GCN's time); the result is the same numbers.
    """
    stride_t, stride_v = conv.stride
    if stride_t > 1 or stride_v > 1:
        x = x[:, :, ::stride_t, ::stride_v]
    if x.is_contiguous():
        return _planes_product(x, conv.weight.flatten(1), conv.bias)
    out = nn.functional.linear(x.permute(0, 2, 3, 1), conv.weight.flatten(1), conv.bias)
    return out.permute(0, 3, 1, 2)


def _planes_product(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """``pointwise_conv`` of contiguous (N, C, T, V) input: each sample's (C, T·V) plane enters
    the product transposed, where ``linear`` first copied the whole input to channels-last (a
    training step of st_gcn, whose blocks return contiguous memory, 1.04-1.05× faster)."""
    n, c, t, v = x.shape
    planes = x.view(n, c, t * v).mT  # (N, T·V, C) without a copy
    weight = weight.t().expand(n, c, weight.shape[0])
    if bias is None:
        out = torch.bmm(planes, weight)
    else:
        out = torch.baddbmm(bias.expand(n, t * v, bias.shape[0]), planes, weight)
    return out.view(n, t, v, -1).permute(0, 3, 1, 2)


def mix_joints(y: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
    """The partition/joint mixing of a graph convolution: (N, T, V, K·C) channels-last rows →
    (N, C, T, W) channels-last, ``out[n, c, t, w] = Σ_k Σ_v A[k, v, w] · y[n, t, v, k·C + c]``.

    One batched matrix product over (N·T) with ``A`` reshaped to (W, V·K): no permuted copies,
    no loop over partitions or joints. ``bmm`` on the broadcast ``A`` rather than ``matmul``:
    matmul folded (N·T, V·K, C) into one product through a transposed copy, and its forward and
    backward passes took twice the CPU time (a training step of st_gcn: 1.10× faster).
    """
    n, t, v, kc = y.shape
    k, _, w = adjacency.shape
    channels = kc // k
    mixing = adjacency.permute(2, 1, 0).reshape(w, v * k)  # [w, (v, k)] = A[k, v, w]
    rows = y.reshape(n * t, v * k, channels)
    out = torch.bmm(mixing.expand(n * t, w, v * k), rows)  # (N·T, W, C)
    return out.view(n, t, w, channels).permute(0, 3, 1, 2)


class GraphConv(nn.Module):
    """1×1 convolution to K partitions, then mixing joints with A: (N, C, T, V) → (N, C', T, W).

    Both steps run on channels-last memory (``pointwise_conv``, ``mix_joints``); the output is
    channels-last. ``conv`` keeps the reference's parameter names and shapes."""

    def __init__(self, in_channels: int, out_channels: int, num_partitions: int) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.conv = nn.Conv2d(in_channels, out_channels * num_partitions, kernel_size=1)

    def forward(self, x: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        y = pointwise_conv(self.conv, x).permute(0, 2, 3, 1)  # (N, T, V, K·C'), contiguous
        return mix_joints(y, adjacency)


class STGCNBlock(nn.Module):
    """``ReLU(tcn(gcn(x, A)) + residual(x))``; (N, C, T, V) → (N, C', ⌈T/stride⌉, V)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_partitions: int,
        *,
        stride: int = 1,
        dropout: float = 0.0,
        residual: bool = True,
    ) -> None:
        super().__init__()
        pad = (TEMPORAL_KERNEL - 1) // 2
        self.gcn = GraphConv(in_channels, out_channels, num_partitions)
        self.tcn = nn.Sequential(
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, (TEMPORAL_KERNEL, 1), (stride, 1), (pad, 0)),
            nn.BatchNorm2d(out_channels),
            nn.Dropout(dropout),
        )
        if not residual:
            self.residual = None
        elif in_channels == out_channels and stride == 1:
            self.residual = nn.Identity()
        else:
            self.residual = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=(stride, 1)),
                nn.BatchNorm2d(out_channels),
            )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self._inference(x, adjacency)
        # The (9×1) convolution's backward pass ran at 0.53-0.66 of the GEMM peak on
        # channels-last memory and 0.63-0.82 on contiguous memory (its forward pass is faster
        # channels-last): one copy here made a training step 1.22× faster.
        out = self.tcn(self.gcn(x, adjacency).contiguous())
        if isinstance(self.residual, nn.Sequential):
            out = out + self.residual[1](pointwise_conv(self.residual[0], x))
        elif self.residual is not None:
            out = out + x
        return self.relu(out)

    def _inference(self, x: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        """The same function with the BatchNorms after convolutions folded into them (running
        statistics) and the residual added in place: two passes over the activations fewer."""
        norm, relu, conv, norm_after = self.tcn[0], self.tcn[1], self.tcn[2], self.tcn[3]
        out = relu(norm(self.gcn(x, adjacency)))
        weight, bias = fold_batch_norm(conv, norm_after)
        out = nn.functional.conv2d(out, weight, bias, conv.stride, conv.padding)
        if isinstance(self.residual, nn.Sequential):
            weight, bias = fold_batch_norm(self.residual[0], self.residual[1])
            stride_t = self.residual[0].stride[0]
            rows = x[:, :, ::stride_t].permute(0, 2, 3, 1)
            out += nn.functional.linear(rows, weight.flatten(1), bias).permute(0, 3, 1, 2)
        elif self.residual is not None:
            out += x
        return out.relu_()


def fold_batch_norm(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of ``norm(conv(x))`` as one convolution, with ``norm``'s running
    statistics (inference); the modules are not changed."""
    scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(norm.running_mean)
    weight = conv.weight * scale.view(-1, *([1] * (conv.weight.dim() - 1)))
    return weight, (bias - norm.running_mean) * scale + norm.bias


class STGCN(Classifier):
    """Spatial-temporal graph convolutional network on (N, C, T, V, M) skeleton sequences."""

    blocks_name = "st_gcn_networks"  # the graph blocks' attribute, as in ST-GCN++ and CTR-GCN

    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int = 3,
        graph_layout: str | Path | Layout = "nvidia",
        graph_strategy: str = "spatial",
        graph_legacy: bool = False,
        edge_importance_weighting: bool = True,
        dropout: float = 0.0,
        stages: tuple[tuple[int, int], ...] = STAGES["st_gcn"],
    ) -> None:
        super().__init__()
        graph = Graph(graph_layout, graph_strategy, legacy=graph_legacy)
        self.graph = graph
        self.num_classes = num_classes
        # Not persistent: A follows the configured graph; a stored A is checked on load.
        self.register_buffer("A", torch.from_numpy(graph.A), persistent=False)
        k, v, _ = graph.A.shape
        self.data_bn = nn.BatchNorm1d(in_channels * v)
        blocks, width = [], in_channels
        for index, (out_channels, stride) in enumerate(stages):
            first = index == 0  # the reference's first block: no residual, no dropout
            blocks.append(
                STGCNBlock(
                    width,
                    out_channels,
                    k,
                    stride=stride,
                    dropout=0.0 if first else dropout,
                    residual=not first,
                )
            )
            width = out_channels
        self.st_gcn_networks = nn.ModuleList(blocks)
        self.edge_importance = nn.ParameterList(
            [nn.Parameter(torch.ones(k, v, v)) for _ in blocks] if edge_importance_weighting else []
        )
        self.num_features = width
        self.fcn = nn.Conv2d(width, num_classes, kernel_size=1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, T, V, M) → (N, F) features pooled over time, joints and persons."""
        n, c, t, v, m = x.shape
        x = x.permute(0, 4, 3, 1, 2).reshape(n * m, v * c, t)  # BN channel = v·C + c
        x = self.data_bn(x)
        x = x.view(n, m, v, c, t).permute(0, 1, 3, 4, 2).reshape(n * m, c, t, v)
        x = x.contiguous(memory_format=torch.channels_last)
        for index, block in enumerate(self.st_gcn_networks):
            adjacency = self.A * self.edge_importance[index] if self.edge_importance else self.A
            x = block(x, adjacency)
        return x.mean(dim=(2, 3)).view(n, m, -1).mean(dim=1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """(N, F) → (N, num_classes); the reference has no dropout before the classifier."""
        return self.fcn(features[:, :, None, None]).flatten(1)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.fcn = nn.Conv2d(self.num_features, num_classes, kernel_size=1).to(self.A.device)

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *args: Any) -> None:
        _check_stored_adjacency(self, state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args)


def _check_stored_adjacency(module: STGCN, state_dict: dict[str, Any], prefix: str) -> None:
    """Accept a reference checkpoint's persistent ``A`` only if it equals the configured graph."""
    stored = state_dict.pop(prefix + "A", None)
    if stored is None:
        return
    if stored.shape != module.A.shape or not torch.allclose(
        stored.to(module.A), module.A, atol=1e-6
    ):
        match = find_graph(stored.detach().cpu().float().numpy(), prefer=_graph_kwargs(module))
        where = f"the graph {graph_flags(match)}" if match else "no graph ActRec builds"
        raise ValueError(
            f"the checkpoint's adjacency A is {where}, not the configured {module.graph}; "
            "build the network with that graph (train_nvpose.py adopts it from --pretrained)"
        )


def _graph_kwargs(module: STGCN) -> dict[str, Any]:
    graph = module.graph
    return {"graph_layout": graph.layout, "graph_strategy": graph.strategy,
            "graph_legacy": graph.legacy}  # fmt: skip


# Registered variants: name (its STAGES row) -> (default dropout, tags, docstring).
VARIANTS: dict[str, tuple[float, tuple[str, ...], str]] = {
    "st_gcn": (0.5, ("tao",), "ST-GCN as in TAO PoseClassificationNet (3.1 M parameters for "
               "nvidia, 6 classes)."),
    "st_gcn_tiny": (0.0, ("tiny",), "Three narrow blocks (16, 32 stride 2, 32) for tests and "
                    "the demo."),
}  # fmt: skip


for _name, (_dropout, _tags, _doc) in VARIANTS.items():
    register_variant(
        _name, STGCN, family="skeleton", input_layout="NCTVM", doc=_doc, tags=_tags,
        fixed={"stages": STAGES[_name]}, defaults={"num_classes": 6, "dropout": _dropout},
    )  # fmt: skip
