"""TensorRT engines: clear refusals without TensorRT/GPU; FP32/FP16/INT8 builds where they exist."""

from __future__ import annotations

import argparse
import importlib.util

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from export import cli, export_onnx
from export.ort_runtime import OrtClassifier
from export.tensorrt_engine import BatchProfile, TensorRTUnavailable, require_tensorrt
from network import build_model
from tests.conftest import requires_cuda

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
requires_tensorrt = pytest.mark.skipif(not HAS_TENSORRT, reason="the tensorrt package is missing")
SHAPE = (3, 24, 24)


def _parse(add, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add(parser)
    return parser.parse_args(argv)


def test_batch_profile_order() -> None:
    assert BatchProfile() == BatchProfile(min=1, opt=4, max=16)  # the TAO converter example
    with pytest.raises(ValueError, match="min <= opt <= max"):
        BatchProfile(min=4, opt=2, max=8)


@pytest.mark.skipif(
    torch.cuda.is_available() and HAS_TENSORRT, reason="TensorRT and a GPU are present"
)
def test_commands_refuse_in_one_line_without_tensorrt(tmp_path, capsys) -> None:
    with pytest.raises(TensorRTUnavailable):
        require_tensorrt()
    args = _parse(cli.add_trt_arguments, ["--onnx", str(tmp_path / "m.onnx")])
    assert cli.run_trt(args, family="gesture") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ("CUDA GPU" in err or "tensorrt" in err)
    args = _parse(cli.add_ort_arguments, ["--engine", str(tmp_path / "m.engine"), "--input", "x"])
    assert cli.run_ort(args, family="gesture") == 2
    assert capsys.readouterr().err.startswith("error: ")


class _Images(Dataset):
    def __len__(self) -> int:
        return 16

    def __getitem__(self, index: int):
        return torch.randn(SHAPE, generator=torch.Generator().manual_seed(index)), index % 3, index


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("trt") / "g.onnx"
    export_onnx(build_model("gesturenet_tiny", num_classes=3), path, SHAPE)
    return path


@requires_cuda
@requires_tensorrt
@pytest.mark.parametrize(
    ("precision", "tolerance"), [("fp32", 1e-3), ("fp16", 5e-2), ("int8", 0.3)]
)
def test_engine_matches_onnx_runtime(onnx_file, tmp_path, precision: str, tolerance: float) -> None:
    from export.tensorrt_engine import TrtClassifier

    engine = tmp_path / f"g.{precision}.engine"
    argv = ["--onnx", str(onnx_file), "--engine", str(engine), "--precision", precision,
            "--max-batch", "8", "--calib-cache", str(tmp_path / "cal.bin"),
            "--calib-samples", "16", "--calib-batch-size", "4"]  # fmt: skip
    assert (
        cli.run_trt(_parse(cli.add_trt_arguments, argv), family="gesture", calib_set=_Images()) == 0
    )
    if precision == "int8":
        assert (tmp_path / "cal.bin").stat().st_size > 0
    x = np.stack([_Images()[i][0].numpy() for i in range(10)])  # > max batch: split in two
    reference = OrtClassifier(onnx_file).logits(x)
    got = TrtClassifier(engine).logits(x)
    assert got.shape == reference.shape
    assert np.abs(got - reference).max() <= tolerance * max(1.0, np.abs(reference).max())
