"""GestureNet: depth tables, forward/backward, freezing for two-stage training, the regulariser."""

import pytest
import torch
from torch import nn

from network import build_model, get_entry, list_models
from network.gesturenet import BLOCK_TABLE, count_weighted_layers, freeze_all_but_last


@pytest.mark.parametrize("num_layers", sorted(BLOCK_TABLE))
def test_every_depth_builds_with_its_layer_count(num_layers: int) -> None:
    model = build_model("gesturenet_tiny", num_layers=num_layers, num_classes=6)
    assert count_weighted_layers(model) == num_layers
    assert len(model.layer_groups()) == num_layers
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 6)


def test_full_width_resnet18_matches_the_torchvision_parameter_count() -> None:
    # Same topology as torchvision resnet18 (11,689,512 params with 1000 classes) minus its FC.
    model = build_model("gesturenet", num_layers=18, num_classes=1000)
    assert sum(p.numel() for p in model.parameters()) == 11_689_512


@pytest.mark.parametrize("name", list_models(family="gesture"))
def test_registered_gesture_models_train(name: str) -> None:
    entry = get_entry(name)
    assert entry.input_layout == "NCHW"
    model = build_model(name, num_classes=4, num_layers=6, dropout=0.2)
    model.train()
    logits = model(torch.randn(2, 3, 48, 48))
    assert logits.shape == (2, 4) and torch.isfinite(logits).all()
    (logits.sum() + model.regularization_loss()).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_gray_scale_and_no_batch_norm() -> None:
    model = build_model("gesturenet_tiny", gray_scale_input=True, use_batch_norm=False)
    assert model.stem.conv.in_channels == 1 and model.stem.conv.bias is not None
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert model(torch.randn(2, 1, 40, 40)).shape == (2, 6)


@pytest.mark.parametrize(("kind", "power"), [("l1", 1), ("l2", 2)])
def test_regularization_loss_is_factor_times_kernel_norm(kind: str, power: int) -> None:
    model = build_model(
        "gesturenet_tiny", num_layers=6, kernel_regularizer_type=kind, kernel_regularizer_factor=0.5
    )
    convs = [m.weight for m in model.modules() if isinstance(m, nn.Conv2d)]
    expected = 0.5 * sum(w.detach().abs().pow(power).sum() for w in convs)
    assert torch.allclose(model.regularization_loss(), expected)
    none = build_model("gesturenet_tiny", kernel_regularizer_type="none")
    assert none.regularization_loss().item() == 0.0


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="num_layers"):
        build_model("gesturenet_tiny", num_layers=20)
    with pytest.raises(ValueError, match="kernel_regularizer_type"):
        build_model("gesturenet_tiny", kernel_regularizer_type="l3")


def _trainable_names(model: nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_freezing_leaves_exactly_the_last_layers_trainable() -> None:
    model = build_model("gesturenet_tiny", num_layers=18)
    params = freeze_all_but_last(model, 3)
    # 18 layers: stem, 16 block convs, fc. The last 3 below fc: both convs of blocks[7] and the
    # second conv of blocks[6], which carries that block's projection shortcut (same sum).
    expected = {n for n, _ in model.named_parameters() if n.startswith(("fc.", "blocks.7."))}
    expected |= {n for n, _ in model.named_parameters() if n.startswith("blocks.6.units.1.")}
    expected |= {n for n, _ in model.named_parameters() if n.startswith("blocks.6.shortcut.")}
    assert _trainable_names(model) == expected
    assert len(params) == len(expected)


def test_freeze_zero_trains_the_head_only_and_large_unfreezes_all() -> None:
    model = build_model("gesturenet_tiny", num_layers=10)
    freeze_all_but_last(model, 0)
    assert _trainable_names(model) == {"fc.weight", "fc.bias"}
    freeze_all_but_last(model, 100)
    assert _trainable_names(model) == {n for n, _ in model.named_parameters()}


def test_frozen_batch_norm_keeps_its_statistics_in_train_mode() -> None:
    model = build_model("gesturenet_tiny", num_layers=6)
    freeze_all_but_last(model, 1)
    model.train()
    before = model.stem.norm.running_mean.clone()
    model(torch.randn(4, 3, 32, 32) * 5 + 3)
    assert torch.equal(model.stem.norm.running_mean, before)
    assert not model.stem.norm.training
    last_bn = model.blocks[-1].units[-1].norm
    assert last_bn.training


def test_reset_classifier() -> None:
    model = build_model("gesturenet_tiny")
    model.reset_classifier(3)
    assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 3)
