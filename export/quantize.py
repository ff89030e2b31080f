"""INT8 static quantization with ONNX Runtime, calibrated on training data, and its accuracy cost.

The calibration set is ``N`` items drawn without replacement from a dataset of
``(inputs, target, sample_id)`` items (already preprocessed as at evaluation), fed through an
``onnxruntime.quantization.CalibrationDataReader``. The format is QOperator by default: on this
machine's CPU it ran faster than QDQ (see benchmarks/deploy.py and the deployment notes).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process
from torch.utils.data import Dataset
from tqdm import tqdm

from export.metadata import read_metadata, write_metadata
from export.ort_runtime import OrtClassifier

__all__ = [
    "CALIBRATION_METHODS",
    "QUANT_FORMATS",
    "DatasetCalibrationReader",
    "compare_accuracy",
    "evaluate_onnx",
    "quantize_int8",
]

logger = logging.getLogger(__name__)

QUANT_FORMATS = {"qoperator": QuantFormat.QOperator, "qdq": QuantFormat.QDQ}
CALIBRATION_METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}


def _as_arrays(inputs: Any) -> list[np.ndarray]:
    items = inputs if isinstance(inputs, tuple | list) else (inputs,)
    return [np.asarray(t.numpy() if isinstance(t, torch.Tensor) else t, np.float32) for t in items]


def batches_of(
    dataset: Dataset, indices: Sequence[int], batch_size: int
) -> Iterator[tuple[list[np.ndarray], np.ndarray, np.ndarray]]:
    """``(inputs per tensor (B, ...), targets (B,), sample_ids (B,))`` over ``indices``."""
    for begin in range(0, len(indices), batch_size):
        items = [dataset[int(i)] for i in indices[begin : begin + batch_size]]
        arrays = [_as_arrays(inputs) for inputs, _, _ in items]
        stacked = [np.stack(parts) for parts in zip(*arrays)]
        targets = np.asarray([int(target) for _, target, _ in items])
        ids = np.asarray([int(sample_id) for _, _, sample_id in items])
        yield stacked, targets, ids


class DatasetCalibrationReader(CalibrationDataReader):
    """Feeds ``num_samples`` random dataset items, ``batch_size`` at a time, to the calibrator."""

    def __init__(
        self,
        dataset: Dataset,
        input_names: Sequence[str],
        *,
        num_samples: int,
        batch_size: int = 1,
        seed: int = 0,
    ) -> None:
        size = len(dataset)  # type: ignore[arg-type]
        if size == 0:
            raise ValueError("the calibration dataset is empty")
        if num_samples < 1:
            raise ValueError(f"--calib-samples must be >= 1, got {num_samples}")
        if num_samples > size:
            logger.warning("calibration: %d samples asked, the dataset has %d", num_samples, size)
        rng = np.random.default_rng(seed)
        self.indices = np.sort(rng.choice(size, size=min(num_samples, size), replace=False))
        self.input_names = list(input_names)
        self.dataset, self.batch_size = dataset, batch_size
        self._batches: Iterator | None = None
        self._progress = tqdm(total=len(self.indices), desc="calibration", unit="item")

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._batches is None:
            self._batches = batches_of(self.dataset, self.indices, self.batch_size)
        batch = next(self._batches, None)
        if batch is None:
            self._progress.close()
            return None
        inputs, _, _ = batch
        self._progress.update(len(inputs[0]))
        return dict(zip(self.input_names, inputs))

    def rewind(self) -> None:
        self._batches = None


# ONNX Runtime's quantizer logs these on the root logger for every int64 shape tensor and every
# 1-D BatchNorm weight it rightly leaves in float; hundreds of lines that say nothing to a user.
QUANTIZER_NOISE = ("Inference failed or unsupported type to quantize", "is out-of-range for weight")


class _DropQuantizerNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(text in str(record.msg) for text in QUANTIZER_NOISE)


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    root, noise = logging.getLogger(), _DropQuantizerNoise()
    root.addFilter(noise)
    try:
        yield
    finally:
        root.removeFilter(noise)


def quantize_int8(
    fp32_path: str | Path,
    int8_path: str | Path,
    reader: CalibrationDataReader,
    *,
    quant_format: str = "qoperator",
    calibration: str = "minmax",
    per_channel: bool = True,
) -> Path:
    """Static INT8 quantization of ``fp32_path`` (U8 activations, S8 weights) to ``int8_path``.

    The model is pre-processed (shape inference, graph optimisation) first, as ONNX Runtime
    recommends; the metadata of the FP32 file is kept, with the quantization settings added.
    """
    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    if quant_format not in QUANT_FORMATS or calibration not in CALIBRATION_METHODS:
        raise ValueError(
            f"quant_format must be one of {sorted(QUANT_FORMATS)} and calibration one of "
            f"{sorted(CALIBRATION_METHODS)}"
        )
    metadata = read_metadata(fp32_path)
    int8_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=int8_path.parent, prefix=".quantize.") as work:
        prepared, quantized = Path(work) / "prepared.onnx", Path(work) / "int8.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        with _quiet_quantizer():
            _quantize(prepared, quantized, reader, quant_format, calibration, per_channel)
        proto = onnx.load(str(quantized))
        metadata["quantization"] = {
            "format": quant_format,
            "calibration": calibration,
            "per_channel": per_channel,
        }
        write_metadata(proto, metadata)
        onnx.save(proto, str(quantized))
        os.replace(quantized, int8_path)
    return int8_path


def _quantize(
    source: Path,
    target: Path,
    reader: CalibrationDataReader,
    quant_format: str,
    calibration: str,
    per_channel: bool,
) -> None:
    quantize_static(
        str(source), str(target), reader, quant_format=QUANT_FORMATS[quant_format],
        per_channel=per_channel, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        calibrate_method=CALIBRATION_METHODS[calibration],
    )  # fmt: skip


def evaluate_onnx(
    paths: Sequence[str | Path],
    dataset: Dataset,
    *,
    batch_size: int = 8,
    threads: int | None = None,
    num_classes: int | None = None,
) -> list[Any]:
    """``train.metrics.EvalResult`` of each ONNX classifier in ``paths`` on ``dataset``.

    One pass over the dataset: every batch is read and preprocessed once and fed to all of them.
    """
    from train.metrics import ScoreAccumulator

    classifiers = [OrtClassifier(path, threads=threads) for path in paths]
    indices = np.arange(len(dataset))  # type: ignore[arg-type]
    accumulators: list[ScoreAccumulator] = []
    for inputs, targets, ids in tqdm(
        batches_of(dataset, indices, batch_size),
        total=-(-len(indices) // batch_size),
        desc="evaluate " + " / ".join(Path(path).name for path in paths),
    ):
        for position, classifier in enumerate(classifiers):
            logits = classifier.logits(*inputs)
            if len(accumulators) <= position:
                accumulators.append(ScoreAccumulator(num_classes or logits.shape[1]))
            accumulators[position].update(logits, targets, ids)
    if not accumulators:
        raise ValueError("the validation dataset is empty")
    return [accumulator.result() for accumulator in accumulators]


def compare_accuracy(
    fp32_path: str | Path, int8_path: str | Path, dataset: Dataset, *, batch_size: int = 8
) -> dict[str, float]:
    """Clip/video top-1 of FP32 and INT8 on ``dataset`` and the points lost (FP32 - INT8)."""
    fp32, int8 = evaluate_onnx([fp32_path, int8_path], dataset, batch_size=batch_size)
    return {
        "fp32_clip_top1": 100 * fp32.clip_top1,
        "int8_clip_top1": 100 * int8.clip_top1,
        "fp32_video_top1": 100 * fp32.video_top1,
        "int8_video_top1": 100 * int8.video_top1,
        "points_lost": 100 * (fp32.video_top1 - int8.video_top1),
    }
