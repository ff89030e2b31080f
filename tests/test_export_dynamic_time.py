"""ONNX export with a dynamic clip length: every tiny 3D video network, exported at one T, gives
PyTorch's logits in ONNX Runtime at other T (MTNet's frame selection and the SRTG gates included)."""

from __future__ import annotations

import inspect
import warnings

import pytest
import torch

from export import export_onnx
from export.checkpoint_info import input_shape_for
from export.onnx_export import parity_check
from network import build_model, list_models
from network.mtnet import halve_spatially, temporal_cossim_pool

EXPORT_ARGS = {"clip_length": 4, "crop_size": 32}
# T ≤ 2 (MTNet's poolings keep every frame), and lengths at which its deeper poolings select
OTHER_LENGTHS = (1, 6, 16)
# Build options that change the traced graph: the SRTG gates (residual recalibration keeps the
# logits far from 0, so the comparison means something) and SoftPool in MTNet's lateral branch.
EXTRA_OPTIONS = [
    ("srtg_r3d_tiny", {"gates": True, "recalibration": "residual"}),
    ("srtg_r2plus1d_tiny", {"gates": True, "recalibration": "residual"}),
    ("mtnet_tiny", {"lateral_pool": "soft"}),
]
CASES = [(name, {}) for name in list_models(family="video", tag="tiny")] + [
    case for case in EXTRA_OPTIONS if case[0] in list_models()
]


# torchvision's transformers fix T in the trace: MViT's positional grid takes one clip only, and
# Swin3D computes its padding and window sizes from T in Python (the trace keeps those numbers)
FIXED_TIME = {"mvit_tiny", "swin3d_tiny"}


def _case_id(case: tuple[str, dict]) -> str:
    name, options = case
    return "-".join([name, *(f"{key}={value}" for key, value in options.items())])


def _frozen_shape_warnings(messages: list[str]) -> list[str]:
    """Tracer warnings other than halve_spatially's test of H and W, which every export keeps
    fixed (only N and T are dynamic), so freezing that test is right."""
    source, first = inspect.getsourcelines(halve_spatially)
    spatial_test = {f"mtnet.py:{line}" for line in range(first, first + len(source))}
    return [message for message in messages if message.split(": ", 1)[0] not in spatial_test]


@pytest.mark.parametrize(("name", "options"), CASES, ids=map(_case_id, CASES))
def test_exported_graph_follows_the_clip_length(name: str, options: dict, tmp_path) -> None:
    if name in FIXED_TIME:
        pytest.skip(f"{name}: the traced graph fixes the clip length (FIXED_TIME)")
    torch.manual_seed(0)
    model = build_model(name, num_classes=5, **options).eval()
    shapes = input_shape_for("video", EXPORT_ARGS, model)
    if any(len(shape) != 4 for shape in shapes):
        pytest.skip(f"{name} stacks frames into channels (N, C·T, H, W): its first conv fixes T")
    report = export_onnx(model, tmp_path / "model.onnx", shapes, dynamic_time=True)
    assert _frozen_shape_warnings(report.tracer_warnings) == []
    generator = torch.Generator().manual_seed(1)
    for length in OTHER_LENGTHS:
        inputs = [torch.randn(2, c, length, *hw, generator=generator) for c, _, *hw in shapes]
        parity = parity_check(model, report.path, inputs, report.input_names)
        # 1e-4 relative to the logits' size: SRTG's paper recalibration makes them ~1e-7
        assert parity.max_abs_diff <= 1e-4 * parity.output_scale, f"T={length}: {parity}"


@pytest.mark.filterwarnings("ignore:`torch.jit.trace` is deprecated:FutureWarning")
def test_cossim_pool_traced_at_one_length_is_exact_at_every_length() -> None:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", torch.jit.TracerWarning)  # nothing frozen at T = 8
        traced = torch.jit.trace(temporal_cossim_pool, torch.randn(2, 3, 8, 2, 2))
    for length in range(1, 12):
        x = torch.randn(2, 3, length, 2, 2)
        expected = temporal_cossim_pool(x)
        assert expected.shape[2] == (length if length <= 2 else length // 2)
        assert torch.equal(traced(x), expected), length


@pytest.mark.parametrize("length", [1, 2])
def test_cossim_pool_keeps_clips_of_two_frames_or_fewer(length: int) -> None:
    x = torch.randn(2, 3, length, 4, 4)
    assert torch.equal(temporal_cossim_pool(x), x)
