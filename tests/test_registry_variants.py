"""register_variant: one builder per variant from the network's own keyword constructor."""

import inspect

import pytest
from torch import nn

from network import build_model, get_entry, registry
from network.registry import ModelArgumentError, register_variant
from network.video_resnet import BasicBlock, Bottleneck


@pytest.fixture
def scratch_registry(monkeypatch):
    """Toy variants go into a copy of the registry (registry-wide tests never see them)."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


class _Toy(nn.Module):
    def __init__(self, *, num_classes: int, width: int = 4, depth: int = 1) -> None:
        super().__init__()
        self.settings = (num_classes, width, depth)


def test_a_variant_builder_takes_the_constructor_keywords_but_the_fixed_ones():
    signature = inspect.signature(get_entry("gesturenet_tiny").builder)
    assert list(signature.parameters) == [
        "num_classes", "num_layers", "gray_scale_input", "use_batch_norm",
        "kernel_regularizer_type", "kernel_regularizer_factor", "dropout",
    ]  # fmt: skip
    assert signature.parameters["num_layers"].default == 10  # the variant's, not GestureNet's 18
    assert signature.parameters["kernel_regularizer_factor"].default == 1e-4
    assert all(p.kind is p.KEYWORD_ONLY for p in signature.parameters.values())
    assert inspect.signature(get_entry("st_gcn").builder).parameters["dropout"].default == 0.5
    assert get_entry("r3d_18").builder.__name__ == "r3d_18"


def test_the_fixed_architecture_cannot_be_passed():
    with pytest.raises(ModelArgumentError, match="stages"):
        build_model("st_gcn_tiny", stages=((8, 1),))
    with pytest.raises(TypeError, match="depths"):
        get_entry("mtnet_tiny").builder(depths=(1, 1, 1, 1))


def test_register_variant_builds_with_fixed_and_default_values(scratch_registry):
    build = register_variant(
        "_toy_variant_test", _Toy, family="video", input_layout="NCTHW", doc="toy",
        fixed={"depth": 3}, defaults={"num_classes": 5},
    )  # fmt: skip
    assert build().settings == (5, 4, 3)
    assert build(width=8, num_classes=2).settings == (2, 8, 3)
    assert build.__doc__ == "toy"
    assert get_entry("_toy_variant_test").builder is build


def test_register_variant_refuses_unknown_and_undefaulted_keywords(scratch_registry):
    with pytest.raises(TypeError, match="no argument"):
        register_variant("_toy_bad_1", _Toy, family="video", input_layout="NCTHW", doc="",
                         fixed={"height": 2})  # fmt: skip
    with pytest.raises(TypeError, match="num_classes"):
        register_variant("_toy_bad_2", _Toy, family="video", input_layout="NCTHW", doc="")


def test_only_the_bottleneck_expands():
    assert BasicBlock.out_planes(64, 4) == 64
    assert Bottleneck.out_planes(64, 4) == 256
