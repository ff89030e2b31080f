"""INT8 static quantization with ONNX Runtime, calibrated on training data, and its accuracy cost.

The calibration set is ``N`` items drawn without replacement from a dataset of
``(inputs, target, sample_id)`` items (already preprocessed as at evaluation), fed through an
``onnxruntime.quantization.CalibrationDataReader``. The format is QOperator by default: on this
machine's CPU it ran faster than QDQ (see benchmarks/deploy.py and the deployment notes).

Before calibration, a 3D convolution on few input channels (a video stem: 3 RGB channels, kernel
3×7×7, stride 1×2×2) is folded into an equivalent pointwise-in-time convolution on more channels
(:func:`fold_stem_convs`): ONNX Runtime's int8 convolution has a fast path (MLAS's symmetric
indirect convolution, no im2col) only for a multiple of 4 input channels, and without it r3d_18's
stem took 190 of 700 ms CPU per 16×112² window on this machine; folded, about 40 ms.
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
from onnx import helper, numpy_helper
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
    "fold_stem_convs",
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


# ----------------------------------------------------------------------------- stem folding
SYM_CHANNEL_ALIGN = 4  # MLAS's symmetric int8 convolution needs a multiple of 4 input channels


def fold_stem_convs(model: onnx.ModelProto) -> int:
    """Fold each 3D ``Conv`` on a graph input whose channel count is not a multiple of 4.

    A ``Conv`` with kernel ``(kt, kh, kw)``, stride ``(1, s, s)`` on ``(N, C, T, H, W)`` becomes
    ``Pad`` (its padding, and channels up to a multiple of 4 where needed), ``kt`` time-shifted
    ``Slice`` s concatenated on the channels, a space-to-depth by ``s`` (``Reshape``,
    ``Transpose``, ``Reshape``) and a ``Conv`` with kernel ``(1, ceil(kh/s), ceil(kw/s))``,
    stride 1 on ``(N, C·kt·s², T', H'', W'')``: the same sums with zero weights for the padded
    taps. The model is changed in place; returns how many convolutions were folded.
    """
    graph_inputs = {value.name: value for value in model.graph.input}
    weights = {init.name: init for init in model.graph.initializer}
    nodes, replaced = [], []
    for node in model.graph.node:
        geometry = _stem_geometry(node, graph_inputs, weights)
        if geometry is not None:
            replaced.append(node.input[1])
            nodes.extend(_fold_stem(model, node, weights[node.input[1]], *geometry))
        nodes.append(node)
    if not replaced:
        return 0
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    used = {name for node in nodes for name in node.input}
    for name in set(replaced) - used:  # the unfolded weights, once nothing reads them
        model.graph.initializer.remove(weights[name])
    return len(replaced)


def _attribute(node: onnx.NodeProto, name: str, default: Any) -> Any:
    found = [helper.get_attribute_value(a) for a in node.attribute if a.name == name]
    return found[0] if found else default


def _stem_geometry(
    node: onnx.NodeProto, graph_inputs: dict, weights: dict
) -> tuple[tuple[int, int, int], list[int]] | None:
    """``((C, H, W), pads)`` of a foldable stem ``Conv`` (static C, H, W), else None."""
    if node.op_type != "Conv" or node.input[0] not in graph_inputs or node.input[1] not in weights:
        return None
    kernel = list(weights[node.input[1]].dims[2:])
    dims = graph_inputs[node.input[0]].type.tensor_type.shape.dim
    static = [d.dim_value if d.HasField("dim_value") else 0 for d in dims]
    strides = list(_attribute(node, "strides", [1] * len(kernel)))
    if (
        len(kernel) != 3
        or len(static) != 5
        or 0 in (static[1], static[3], static[4])
        or static[1] % SYM_CHANNEL_ALIGN == 0
        or _attribute(node, "group", 1) != 1
        or any(d != 1 for d in _attribute(node, "dilations", [1, 1, 1]))
        or _attribute(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
        or strides[0] != 1
        or strides[1] != strides[2]
        or strides[1] > min(kernel[1:])  # a space-to-depth wider than the kernel: not a stem
    ):
        return None  # fmt: skip
    pads = list(_attribute(node, "pads", [0] * 6))
    channels, height, width = static[1], static[3], static[4]
    if (
        min(_space_pads(height, kernel[1], strides[1], pads[1], pads[4])) < 0
        or min(_space_pads(width, kernel[2], strides[2], pads[2], pads[5])) < 0
    ):
        return None
    return (channels, height, width), pads


def _space_pads(size: int, kernel: int, stride: int, begin: int, end: int) -> tuple[int, int]:
    """Padding (begin, end) that makes a side a whole number of ``stride`` blocks covering every
    tap of the folded kernel (end < 0: the original conv ignores rows the fold would need)."""
    out = (size + begin + end - kernel) // stride + 1
    folded = -(-kernel // stride)
    return begin, stride * (out + folded - 1) - size - begin


def _folded_weight(weight: np.ndarray, channels: int, stride: int) -> np.ndarray:
    """``(O, C, kt, kh, kw)`` -> ``(O, kt·channels·s², 1, ceil(kh/s), ceil(kw/s))``, channel
    index ``((t·channels + c)·s + row)·s + column`` as the folded input lays them out."""
    out, old, time_taps, kh, kw = weight.shape
    rows, columns = -(-kh // stride), -(-kw // stride)
    padded = np.zeros((out, channels, time_taps, rows * stride, columns * stride), weight.dtype)
    padded[:, :old, :, :kh, :kw] = weight
    blocks = padded.reshape(out, channels, time_taps, rows, stride, columns, stride)
    return blocks.transpose(0, 2, 1, 4, 6, 3, 5).reshape(out, -1, 1, rows, columns)


def _fold_stem(
    model: onnx.ModelProto,
    node: onnx.NodeProto,
    weight_init: onnx.TensorProto,
    shape: tuple[int, int, int],
    pads: list[int],
) -> list[onnx.NodeProto]:
    """The nodes that fold ``node``'s input; ``node`` and the model's initializers are updated."""
    channels, height, width = shape
    weight = numpy_helper.to_array(weight_init)
    time_taps, kh, kw = weight.shape[2:]
    stride = list(_attribute(node, "strides", [1, 1, 1]))[1]
    per_channel = time_taps * stride * stride
    wide = channels
    while wide * per_channel % SYM_CHANNEL_ALIGN:
        wide += 1
    top, bottom = _space_pads(height, kh, stride, pads[1], pads[4])
    left, right = _space_pads(width, kw, stride, pads[2], pads[5])
    prefix = f"{node.name or node.output[0]}/fold"
    constants: list[onnx.TensorProto] = []

    def constant(name: str, values: list[int]) -> str:
        if not any(c.name == f"{prefix}/{name}" for c in constants):
            constants.append(
                numpy_helper.from_array(np.asarray(values, np.int64), f"{prefix}/{name}")
            )
        return f"{prefix}/{name}"

    padding = [0, 0, pads[0], top, left, 0, wide - channels, pads[3], bottom, right]
    new = [helper.make_node("Pad", [node.input[0], constant("pads", padding)], [f"{prefix}/pad"])]
    taps = []
    for tap in range(time_taps):
        end = tap - (time_taps - 1) or np.iinfo(np.int64).max
        args = [new[0].output[0], constant(f"start{tap}", [tap]), constant(f"end{tap}", [end]),
                constant("time_axis", [2])]  # fmt: skip
        new.append(helper.make_node("Slice", args, [f"{prefix}/tap{tap}"]))
        taps.append(new[-1].output[0])
    new.append(helper.make_node("Concat", taps, [f"{prefix}/taps"], axis=1))
    rows, columns = (height + top + bottom) // stride, (width + left + right) // stride
    blocks = [0, 0, 0, rows, stride, columns, stride]
    new += [
        helper.make_node("Reshape", [new[-1].output[0], constant("blocks_shape", blocks)],
                         [f"{prefix}/blocks"]),
        helper.make_node("Transpose", [f"{prefix}/blocks"], [f"{prefix}/depth"],
                         perm=[0, 1, 4, 6, 2, 3, 5]),
        helper.make_node("Reshape", [f"{prefix}/depth",
                                     constant("input_shape", [0, wide * per_channel, -1, rows, columns])],
                         [f"{prefix}/input"]),
    ]  # fmt: skip
    folded = _folded_weight(weight, wide, stride)
    model.graph.initializer.append(numpy_helper.from_array(folded, f"{weight_init.name}/folded"))
    model.graph.initializer.extend(constants)
    node.input[0], node.input[1] = new[-1].output[0], f"{weight_init.name}/folded"
    _set_ints(node, kernel_shape=list(folded.shape[2:]), strides=[1, 1, 1], pads=[0] * 6,
              dilations=[1, 1, 1])  # fmt: skip
    return new


def _set_ints(node: onnx.NodeProto, **values: list[int]) -> None:
    kept = [a for a in node.attribute if a.name not in values]
    del node.attribute[:]
    node.attribute.extend(kept + [helper.make_attribute(k, v) for k, v in values.items()])


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

    The model's stem convolutions are folded (:func:`fold_stem_convs`) and the model is
    pre-processed (shape inference, graph optimisation), as ONNX Runtime recommends; the metadata of the FP32 file is kept, with the quantization settings added.
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
        folded, prepared = Path(work) / "folded.onnx", Path(work) / "prepared.onnx"
        quantized = Path(work) / "int8.onnx"
        source = onnx.load(str(fp32_path))
        stems = fold_stem_convs(source)
        if stems:
            onnx.save(source, str(folded))
        del source
        quant_pre_process(
            str(folded if stems else fp32_path), str(prepared), skip_symbolic_shape=True
        )
        with _quiet_quantizer():
            _quantize(prepared, quantized, reader, quant_format, calibration, per_channel)
        proto = onnx.load(str(quantized))
        metadata["quantization"] = {
            "format": quant_format,
            "calibration": calibration,
            "per_channel": per_channel,
            "folded_stem_convs": stems,
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
