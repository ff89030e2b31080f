"""ST-GCN: parameter counts of the reference, shapes, gradients, graph-conv equivalence."""

from __future__ import annotations

import pytest
import torch

from network import build_model, get_entry, list_models
from network.stgcn import GraphConv, pointwise_conv

# (kwargs, parameters) from shared/reference/skeleton.md §4
REFERENCE_COUNTS = [
    ({}, 3_100_938),
    ({"graph_strategy": "uniform"}, 2_640_442),
    ({"graph_strategy": "distance"}, 2_870_690),
    ({"graph_layout": "openpose", "num_classes": 400}, 3_177_140),
    ({"graph_layout": "openpose", "num_classes": 5}, 3_075_625),
    ({"graph_layout": "ntu-rgb+d", "num_classes": 60}, 3_098_832),
    ({"graph_layout": "coco", "num_classes": 60}, 3_088_704),
]


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("kwargs", "expected"), REFERENCE_COUNTS)
def test_parameter_count_equals_reference(kwargs: dict, expected: int) -> None:
    model = build_model("st_gcn", **{"num_classes": 6, **kwargs})
    assert count(model) == expected
    assert get_entry("st_gcn").family == "skeleton" and get_entry("st_gcn").input_layout == "NCTVM"


def test_tiny_variant_is_registered_and_small() -> None:
    tiny = list_models(family="skeleton", tag="tiny")
    assert "st_gcn_tiny" in tiny
    assert count(build_model("st_gcn_tiny")) < 100_000


@pytest.mark.parametrize("persons", [1, 2])
@pytest.mark.parametrize("name", list_models(family="skeleton", tag="tiny"))
def test_forward_backward(name: str, persons: int) -> None:
    torch.manual_seed(0)
    model = build_model(name, num_classes=5, graph_layout="openpose", dropout=0.1)
    x = torch.randn(3, 3, 20, 18, persons)
    logits = model(x)
    assert logits.shape == (3, 5) and torch.isfinite(logits).all()
    logits.logsumexp(1).sum().backward()
    if any(pname.endswith(".alpha") for pname, _ in model.named_parameters()):
        # CTR-GCN's refinement convolutions sit behind alpha, 0 at init as in the reference:
        # they receive gradient once one step has moved alpha.
        torch.optim.SGD(model.parameters(), lr=0.1).step()
        model.zero_grad()
        model(x).logsumexp(1).sum().backward()
    for pname, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), pname
        assert parameter.grad.abs().sum() > 0, pname
    assert model.forward_features(x).shape == (3, model.num_features)


def test_persons_are_averaged() -> None:
    """Two identical persons give the same logits as one (mean over M)."""
    torch.manual_seed(0)
    model = build_model("st_gcn_tiny").eval()
    x = torch.randn(2, 3, 16, 34, 1)
    torch.testing.assert_close(model(x.repeat(1, 1, 1, 1, 2)), model(x), atol=1e-5, rtol=1e-5)


def test_graph_conv_equals_reference_einsum() -> None:
    torch.manual_seed(0)
    conv = GraphConv(4, 6, num_partitions=3)
    x = torch.randn(2, 4, 5, 7)
    a = torch.rand(3, 7, 7)
    y = conv.conv(x).view(2, 3, 6, 5, 7)
    expected = torch.einsum("nkctv,kvw->nctw", y, a)
    torch.testing.assert_close(conv(x, a), expected, atol=1e-5, rtol=1e-5)
    cl = x.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(conv(cl, a), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("stride", [(1, 1), (2, 1), (3, 2)])
@pytest.mark.parametrize("channels_last", [True, False])
def test_pointwise_conv_is_the_1x1_convolution(stride, channels_last) -> None:
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(5, 7, kernel_size=1, stride=stride)
    x = torch.randn(2, 5, 9, 6)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    out = pointwise_conv(conv, x)
    torch.testing.assert_close(out, conv(x), atol=1e-5, rtol=1e-5)
    assert out.is_contiguous(memory_format=torch.channels_last)  # whatever the input was


def test_training_and_eval_layouts_give_the_same_numbers() -> None:
    """Training runs the temporal convolution on contiguous memory, inference channels-last."""
    torch.manual_seed(0)
    model = build_model("st_gcn_tiny", num_classes=4).eval()
    x = torch.randn(2, 3, 12, 34, 1)
    expected = model(x)
    for module in model.modules():  # training layout, without batch statistics or dropout
        module.training = not isinstance(module, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d)
    torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=1e-5)


def test_reset_classifier_and_edge_importance_switch() -> None:
    model = build_model("st_gcn_tiny", edge_importance_weighting=False)
    assert len(model.edge_importance) == 0
    model.reset_classifier(11)
    assert model(torch.randn(1, 3, 8, 34, 1)).shape == (1, 11)


def test_reference_adjacency_in_state_dict(tmp_path) -> None:
    """A stored A (reference checkpoints) loads only into the matching graph; weights-only."""
    legacy = build_model("st_gcn_tiny", graph_legacy=True)
    state = {**legacy.state_dict(), "A": legacy.A.clone()}
    path = tmp_path / "ref.pth"
    torch.save(state, path)
    loaded = torch.load(path, weights_only=True)
    build_model("st_gcn_tiny", graph_legacy=True).load_state_dict(loaded)
    message = "A is the graph --graph-layout nvidia --graph-strategy spatial --graph-legacy"
    with pytest.raises(ValueError, match=message):
        build_model("st_gcn_tiny").load_state_dict(dict(loaded))
