"""Stem folding before INT8 quantization: the folded FP32 graph computes the same numbers, the
quantized graph keeps its input and stays close to FP32, and what cannot be folded is left alone."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnxruntime.quantization import CalibrationDataReader
from torch import nn

from export import export_onnx, read_metadata
from export.ort_runtime import OrtClassifier
from export.quantize import fold_stem_convs, quantize_int8
from network import build_model


def _conv_model(tmp_path, conv: nn.Conv3d, shape: tuple[int, ...], *, dynamic_time: bool = False):
    """``conv`` and a flatten (export wants ``(N, K)`` outputs), exported to ONNX (input ``x``)
    with a dynamic batch (and time) axis."""
    path = tmp_path / "conv.onnx"
    export_onnx(nn.Sequential(conv, nn.Flatten()).eval(), path, shape, input_names=["x"], output_names=["y"],
                dynamic_time=dynamic_time)  # fmt: skip
    return path


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.mark.parametrize(
    ("channels", "kernel", "stride", "padding", "size"),
    [
        (3, (3, 7, 7), (1, 2, 2), (1, 3, 3), (8, 32, 32)),  # r3d_18 / mc3_18
        (3, (1, 7, 7), (1, 2, 2), (0, 3, 3), (5, 30, 34)),  # r(2+1)d: a spatial stem
        (3, (3, 3, 3), (1, 1, 1), (1, 1, 1), (4, 9, 11)),  # stride 1: channels padded to 4
        (2, (5, 7, 7), (1, 3, 3), (2, 3, 3), (7, 29, 31)),  # stride 3, odd sizes
        (1, (3, 4, 4), (1, 2, 2), (0, 1, 2), (6, 16, 17)),  # even kernel, asymmetric sizes
    ],
)
def test_folded_conv_computes_the_same(tmp_path, channels, kernel, stride, padding, size) -> None:
    torch.manual_seed(0)
    conv = nn.Conv3d(channels, 8, kernel, stride=stride, padding=padding, bias=True)
    model = onnx.load(str(_conv_model(tmp_path, conv, (channels, *size))))
    folded = onnx.load(str(tmp_path / "conv.onnx"))
    assert fold_stem_convs(folded) == 1
    onnx.checker.check_model(folded)
    conv_node = next(n for n in folded.graph.node if n.op_type == "Conv")
    weight = next(i for i in folded.graph.initializer if i.name == conv_node.input[1])
    assert weight.dims[1] % 4 == 0 and weight.dims[2] == 1  # channels for MLAS, time folded
    x = np.random.default_rng(0).standard_normal((2, channels, *size)).astype(np.float32)
    np.testing.assert_allclose(_run(folded, x), _run(model, x), atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        reference = conv(torch.from_numpy(x)).flatten(1).numpy()
    np.testing.assert_allclose(_run(folded, x), reference, atol=1e-4, rtol=1e-4)


def test_dynamic_time_is_kept(tmp_path) -> None:
    torch.manual_seed(0)
    conv = nn.Conv3d(3, 8, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3))
    folded = onnx.load(str(_conv_model(tmp_path, conv, (3, 6, 20, 20), dynamic_time=True)))
    assert fold_stem_convs(folded) == 1
    for frames in (3, 6, 11):
        x = np.random.default_rng(frames).standard_normal((1, 3, frames, 20, 20)).astype(np.float32)
        with torch.no_grad():
            reference = conv(torch.from_numpy(x)).flatten(1).numpy()
        np.testing.assert_allclose(_run(folded, x), reference, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    ("conv", "why"),
    [
        (nn.Conv3d(4, 8, 3, padding=1), "4 channels: MLAS's fast path already applies"),
        (nn.Conv3d(3, 6, 3, padding=1, groups=3), "grouped"),
        (nn.Conv3d(3, 8, 3, stride=(2, 2, 2), padding=1), "strided in time"),
        (nn.Conv3d(3, 8, 3, dilation=2, padding=2), "dilated"),
        # a hostile file: the fold would need a (8, 3, 3, 4096, 4096) weight, tens of GB
        (nn.Conv3d(3, 8, 3, stride=(1, 4096, 4096)), "stride wider than the kernel"),
    ],
)
def test_what_is_not_folded(tmp_path, conv: nn.Conv3d, why: str) -> None:
    model = onnx.load(str(_conv_model(tmp_path, conv, (conv.in_channels, 6, 12, 12))))
    before = model.SerializeToString()
    assert fold_stem_convs(model) == 0, why
    assert model.SerializeToString() == before


class _Windows(CalibrationDataReader):
    def __init__(self, batches: list[np.ndarray]) -> None:
        self.items = iter(batches)

    def get_next(self):
        batch = next(self.items, None)
        return None if batch is None else {"input_rgb": batch}


def test_int8_r3d_stem_is_folded_and_close_to_fp32(tmp_path) -> None:
    torch.manual_seed(0)
    model = build_model("r3d_tiny", num_classes=5)
    fp32 = tmp_path / "r3d.onnx"
    export_onnx(model, fp32, (3, 8, 32, 32), input_names=["input_rgb"])
    rng = np.random.default_rng(0)
    windows = [rng.standard_normal((1, 3, 8, 32, 32)).astype(np.float32) for _ in range(12)]
    int8 = quantize_int8(fp32, tmp_path / "r3d.int8.onnx", _Windows(windows[:8]))
    assert read_metadata(int8)["quantization"]["folded_stem_convs"] == 1
    graph = onnx.load(str(int8)).graph
    ops = Counter(n.op_type for n in graph.node)
    assert ops["Conv"] == 0 and ops["QLinearConv"] == sum(
        isinstance(m, nn.Conv3d) for m in model.modules()
    )
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim][1:] == [3, 8, 32, 32]
    x = np.concatenate(windows[8:])
    reference, quantized = OrtClassifier(fp32).logits(x), OrtClassifier(int8).logits(x)
    assert np.abs(quantized - reference).max() <= 0.1 * np.abs(reference).max() + 1e-3
