"""Registry-wide tests of the video networks: tiny forward/backward, interface, every name builds."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from network import build_model, get_entry, list_models, register_model
from network.summary import build_kwargs, example_inputs, summarize

VIDEO_TINY = list_models(family="video", tag="tiny")
VIDEO_FULL = [name for name in list_models(family="video") if name not in VIDEO_TINY]
NUM_CLASSES = 5


def _tiny(name: str, frames: int = 8) -> nn.Module:
    torch.manual_seed(0)
    return build_model(name, **build_kwargs(name, frames, NUM_CLASSES))


def _inputs(model: nn.Module, name: str, *, frames: int = 8, size: int = 32, batch: int = 2):
    torch.manual_seed(1)
    return example_inputs(model, name, frames=frames, size=size, batch=batch)


def test_every_family_has_tiny_variants():
    prefixes = {"r3d", "r2plus1d", "srtg_r3d", "srtg_r2plus1d", "tao_r3d", "resnet2d", "mtnet"}
    assert {f"{prefix}_tiny" for prefix in prefixes} | {"joint_tiny"} <= set(VIDEO_TINY)


@pytest.mark.parametrize("name", VIDEO_TINY)
def test_tiny_forward_backward_and_interface(name):
    model = _tiny(name).train()
    inputs = _inputs(model, name)
    logits = model(*inputs)
    assert logits.shape == (2, NUM_CLASSES)
    assert torch.isfinite(logits).all()
    nn.functional.cross_entropy(logits, torch.tensor([0, 3])).backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None, f"{name}: no gradient for {param_name}"
        assert torch.isfinite(param.grad).all(), f"{name}: non-finite gradient in {param_name}"

    model.eval()
    with torch.no_grad():
        features = model.forward_features(*inputs)
        assert torch.equal(model.forward_head(features), model(*inputs))
        model.reset_classifier(7)
        assert model(*inputs).shape == (2, 7)
    assert any(isinstance(m, nn.Dropout) for m in model.modules())
    assert model.network_name == name and model.network_family == "video"


@pytest.mark.parametrize("name", [n for n in VIDEO_TINY if get_entry(n).input_layout == "NCTHW"])
def test_odd_clip_sizes_and_channels_last(name):
    if get_entry(name).constraints.problem((5, 37, 45)):
        pytest.skip(f"{name} {get_entry(name).constraints.problem((5, 37, 45))}")
    model = _tiny(name).eval()
    clip = torch.randn(2, 3, 5, 37, 45)
    with torch.no_grad():
        expected = model(clip)
        model = model.to(memory_format=torch.channels_last_3d)
        got = model(clip.to(memory_format=torch.channels_last_3d))
    assert expected.shape == (2, NUM_CLASSES)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("name", "clip_shape"),
    [
        ("r3d_tiny", (2, 2, 4, 32, 32)),
        ("mtnet_tiny", (2, 2, 4, 32, 32)),
        ("resnet2d_tiny", (2, 8, 32, 32)),
    ],
)
def test_flow_input_channels(name, clip_shape):
    model = build_model(name, **build_kwargs(name, 4, NUM_CLASSES), in_channels=2).eval()
    with torch.no_grad():
        assert model(torch.randn(clip_shape)).shape == (2, NUM_CLASSES)


def test_gated_batch_elements_are_independent():
    """The vectorised gate decides per sample: a batch gives what each clip gives alone."""
    model = build_model("srtg_r3d_tiny", num_classes=NUM_CLASSES, gates=True).eval()
    clips = torch.randn(3, 3, 8, 32, 32)
    with torch.no_grad():
        together = model(clips)
        alone = torch.cat([model(clip[None]) for clip in clips])
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", VIDEO_FULL)
def test_every_registered_network_builds(name):
    """Cheap: built on the meta device (no memory, no init cost), parameters counted."""
    with torch.device("meta"):
        model = build_model(name, **build_kwargs(name, 16, 400))
    assert sum(p.numel() for p in model.parameters()) > 1_000_000


@pytest.mark.parametrize("name", ["r2plus1d_50", "srtg_r3d_18", "tao_r3d_18", "mtnet_xs", "joint"])
def test_full_size_shapes_trace_on_meta(name):
    summary = summarize(name, frames=16, size=112, num_classes=400, device="meta")
    assert summary.output_shape == (1, 400)


def test_unknown_and_duplicate_names_raise():
    with pytest.raises(KeyError, match="srtg_r3d_50"):
        build_model("srtg_r3d_5O")
    with pytest.raises(ValueError, match="already registered"):
        register_model("r3d_18", family="video", input_layout="NCTHW")(lambda: nn.Identity())
    with pytest.raises(TypeError, match="num_frame"):
        build_model("r3d_tiny", num_frame=8)
    with pytest.raises(ValueError, match="sr_blocks"):
        build_model("r3d_tiny", gates=True)
