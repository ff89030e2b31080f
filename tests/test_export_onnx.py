"""ONNX export: every tiny network of every family exports and matches PyTorch in ONNX Runtime."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from export import ExportReport, ParityError, export_onnx, read_metadata
from export.checkpoint_info import input_shape_for
from network import build_model, get_entry, list_models

# Small inputs: every tiny network accepts them, and they keep the suite fast on 2 cores.
SMALL_ARGS = {"clip_length": 4, "crop_size": 16, "seq_length": 16, "image_size": 32}
EXPECTED_INPUTS = {"video": ["input_rgb"], "skeleton": ["input"], "gesture": ["input"]}
# Recurrent and pooling operators that must survive the export as single ONNX nodes.
EXPECTED_OPS = {
    "srtg_r3d_tiny": {"LSTM"},
    "srtg_r2plus1d_tiny": {"LSTM"},
    "mtnet_tiny": {"GRU", "TopK"},
}


def _export(name: str, tmp_path, **kwargs) -> tuple[nn.Module, ExportReport]:
    model = build_model(name, num_classes=5, **kwargs)
    fixed = get_entry(name).constraints.fixed  # mvit_tiny: its positional grid's clip only
    args = (
        SMALL_ARGS
        if fixed is None
        else {**SMALL_ARGS, "clip_length": fixed[0], "crop_size": fixed[1]}
    )
    shapes = input_shape_for(get_entry(name).family, args, model)
    return model, export_onnx(model, tmp_path / f"{name}.onnx", shapes)


def _op_counts(path) -> Counter:
    return Counter(node.op_type for node in onnx.load(str(path)).graph.node)


def _close(report: ExportReport) -> bool:
    """Float32 agreement relative to the logits' size (SRTG's paper gating makes them tiny)."""
    return report.max_abs_diff <= 1e-6 + 1e-4 * report.output_scale


@pytest.mark.parametrize("name", list_models(tag="tiny"))
def test_tiny_network_exports_with_parity(name: str, tmp_path) -> None:
    _, report = _export(name, tmp_path)
    entry = get_entry(name)
    assert report.path.is_file() and report.output_names == ["fc_pred"]
    expected = ["input_rgb", "input_of"] if entry.input_layout == "joint" else None
    assert report.input_names == (expected or EXPECTED_INPUTS[entry.family])
    assert _close(report), report.summary()
    session = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    assert [i.shape[0] for i in session.get_inputs()] == ["batch"] * len(report.input_names)
    assert session.get_outputs()[0].shape == ["batch", 5]
    assert EXPECTED_OPS.get(name, set()) <= set(_op_counts(report.path))


@pytest.mark.skipif("srtg_r3d_tiny" not in list_models(), reason="srtg_r3d_tiny not registered")
def test_srtg_gate_exports_argmin_and_lstm(tmp_path) -> None:
    _, report = _export("srtg_r3d_tiny", tmp_path, gates=True, recalibration="residual")
    ops = _op_counts(report.path)
    assert ops["LSTM"] > 0 and ops["ArgMin"] > 0 and ops["Where"] > 0, ops
    assert _close(report)
    assert report.tracer_warnings == []  # no Python branch on data: the gate is in the graph


def test_dynamic_time_is_checked_at_another_length(tmp_path) -> None:
    model = build_model("r3d_tiny", num_classes=3).eval()
    report = export_onnx(model, tmp_path / "t.onnx", (3, 4, 16, 16), dynamic_time=True)
    session = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[:3] == ["batch", 3, "time"]
    x = np.random.default_rng(0).standard_normal((1, 3, 6, 16, 16)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(session.run(None, {"input_rgb": x})[0], expected, atol=1e-4)


class _Tiny(nn.Module):
    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 4, 3)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).mean(dim=(2, 3)))


def test_metadata_round_trip(tmp_path) -> None:
    extra = {"labels": ["thumbs_up", "fist"], "normalization": {"mean": [0.5], "std": [0.5]}}
    report = export_onnx(_Tiny(), tmp_path / "m.onnx", (3, 8, 8), metadata=extra)
    meta = read_metadata(report.path)
    assert meta["labels"] == ["thumbs_up", "fist"]
    assert meta["normalization"] == {"mean": [0.5], "std": [0.5]}
    assert meta["input_shape"] == [[3, 8, 8]] and meta["input_names"] == ["input"]
    assert meta["network"] == "_Tiny" and meta["opset"] == 17
    assert onnx.load(str(report.path)).opset_import[0].version == 17


def test_wrong_input_shape_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"input shape \[\[5, 8, 8\]\] does not fit network _Tiny"):
        export_onnx(_Tiny(), tmp_path / "m.onnx", (5, 8, 8))
    with pytest.raises(ValueError, match="positive"):
        export_onnx(_Tiny(), tmp_path / "m.onnx", (3, 0, 8))
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


class _DriftsAfterTracing(_Tiny):
    """Changes its output after each call, so the traced graph cannot match it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return super().forward(x) * self.calls


def test_parity_failure_keeps_the_previous_file(tmp_path) -> None:
    target = tmp_path / "m.onnx"
    target.write_bytes(b"previous")
    with pytest.raises(ParityError, match="differs from PyTorch"):
        export_onnx(_DriftsAfterTracing(), target, (3, 8, 8))
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_video_flow_and_joint_input_names(tmp_path) -> None:
    flow = _Tiny(in_channels=2)
    flow.network_family = "video"
    report = export_onnx(flow, tmp_path / "of.onnx", (2, 8, 8), modality="of")
    assert report.input_names == ["input_of"]
