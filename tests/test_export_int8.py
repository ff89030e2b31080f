"""INT8 static quantization calibrated on a tiny dataset, and the FP32 vs INT8 comparison."""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np
import onnx
import pytest
import torch
from torch.utils.data import Dataset

from export import cli, export_onnx, read_metadata
from export.ort_runtime import OrtClassifier
from export.quantize import DatasetCalibrationReader, compare_accuracy, quantize_int8
from network import build_model

SHAPE = (3, 24, 24)


class _Images(Dataset):
    """Deterministic random images of 3 classes; the class shifts the mean, so it is learnable."""

    def __init__(self, count: int) -> None:
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int):
        generator = torch.Generator().manual_seed(index)
        target = index % 3
        return torch.randn(SHAPE, generator=generator) + 0.5 * target, target, index


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("gesturenet_tiny", num_classes=3)
    path = tmp_path_factory.mktemp("int8") / "fp32.onnx"
    export_onnx(model, path, SHAPE, metadata={"labels": ["a", "b", "c"]})
    return path


def test_calibration_reader_draws_distinct_items() -> None:
    reader = DatasetCalibrationReader(_Images(20), ["input"], num_samples=7, batch_size=3, seed=1)
    batches = list(iter(reader.get_next, None))
    assert [b["input"].shape[0] for b in batches] == [3, 3, 1]
    assert len(set(reader.indices.tolist())) == 7
    reader.rewind()
    assert reader.get_next()["input"].shape == (3, *SHAPE)


@pytest.mark.parametrize(("fmt", "op"), [("qoperator", "QLinearConv"), ("qdq", "QuantizeLinear")])
def test_int8_model_is_close_to_fp32(fp32, tmp_path, fmt: str, op: str) -> None:
    reader = DatasetCalibrationReader(_Images(24), ["input"], num_samples=16, batch_size=4)
    int8 = quantize_int8(fp32, tmp_path / f"{fmt}.onnx", reader, quant_format=fmt)
    assert Counter(n.op_type for n in onnx.load(str(int8)).graph.node)[op] > 0
    meta = read_metadata(int8)
    assert meta["labels"] == ["a", "b", "c"] and meta["quantization"]["format"] == fmt
    x = np.stack([_Images(8)[i][0].numpy() for i in range(8)])
    reference, quantized = OrtClassifier(fp32).logits(x), OrtClassifier(int8).logits(x)
    scale = np.abs(reference).max()
    assert np.abs(quantized - reference).max() <= 0.1 * scale + 1e-3


def test_accuracy_comparison(fp32, tmp_path) -> None:
    reader = DatasetCalibrationReader(_Images(12), ["input"], num_samples=8, batch_size=4)
    int8 = quantize_int8(fp32, tmp_path / "int8.onnx", reader)
    scores = compare_accuracy(fp32, int8, _Images(12), batch_size=4)
    assert 0 <= scores["fp32_video_top1"] <= 100 and 0 <= scores["int8_video_top1"] <= 100
    assert scores["points_lost"] == pytest.approx(
        scores["fp32_video_top1"] - scores["int8_video_top1"]
    )


def test_quantize_command(fp32, tmp_path, capsys) -> None:
    parser = argparse.ArgumentParser()
    cli.add_quantize_arguments(parser)
    target = tmp_path / "cmd.int8.onnx"
    args = parser.parse_args(
        [
            "--onnx",
            str(fp32),
            "--int8",
            str(target),
            "--calib-samples",
            "6",
            "--calib-batch-size",
            "3",
        ]
    )
    assert cli.run_quantize(args, family="gesture", train_set=_Images(10), val_set=_Images(6)) == 0
    out = capsys.readouterr().out
    assert target.is_file() and "6 calibration items" in out and "lost" in out
    assert cli.run_quantize(args, family="video", train_set=_Images(10)) == 2
    assert "a gesture model, not video" in capsys.readouterr().err
