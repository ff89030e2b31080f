"""TensorRT engines from exported ONNX files, and inference with them (GPU machines only).

Written against the TensorRT Python API of 8.6 and 10.x (tensor-name I/O, ``execute_async_v3``,
memory-pool workspace limit, ``build_serialized_network``). ``tensorrt`` is imported lazily:
without it, or without a CUDA GPU, every entry point raises :class:`TensorRTUnavailable` with a
one-line reason. Device buffers are torch CUDA tensors, so no pycuda is needed.

Engines get one optimisation profile over the batch axis, like the TAO converter examples
(``-p input_rgb,1x3x32x224x224,4x3x32x224x224,16x3x32x224x224``: min 1, opt 4, max 16). The ONNX
metadata (labels, shapes, preprocessing) is copied to ``<engine>.json`` beside the engine, since
an engine file cannot carry it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from export.metadata import MetadataView, read_metadata
from safeio.atomic import atomic_write_bytes

__all__ = [
    "PRECISIONS",
    "BatchProfile",
    "TensorRTUnavailable",
    "TrtClassifier",
    "build_engine",
    "engine_metadata",
    "make_entropy_calibrator",
    "require_tensorrt",
]

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
GIB = 1 << 30


class TensorRTUnavailable(RuntimeError):
    """TensorRT or a CUDA GPU is missing on this machine."""


def require_tensorrt() -> Any:
    """The ``tensorrt`` module, or a one-line :class:`TensorRTUnavailable`."""
    if not torch.cuda.is_available():
        raise TensorRTUnavailable("TensorRT needs a CUDA GPU and none is visible to torch")
    try:
        import tensorrt
    except ImportError:
        raise TensorRTUnavailable(
            "the tensorrt Python package is not installed (pip install tensorrt)"
        ) from None
    return tensorrt


@dataclass(frozen=True)
class BatchProfile:
    """Batch sizes of the optimisation profile (TAO converter: 1 / 4 / 16)."""

    min: int = 1
    opt: int = 4
    max: int = 16

    def __post_init__(self) -> None:
        if not 1 <= self.min <= self.opt <= self.max:
            raise ValueError(
                f"need 1 <= min <= opt <= max batch, got {self.min}/{self.opt}/{self.max}"
            )


def make_entropy_calibrator(
    batches: Iterable[dict[str, np.ndarray]], cache_path: str | Path, batch_size: int
) -> Any:
    """An ``IInt8EntropyCalibrator2`` over ``batches`` (dicts input name -> (B, ...) float32).

    An existing ``cache_path`` is reused and the data is then not read (as TAO's
    ``--cal_cache_file``); otherwise the cache is written after calibration. Batches with fewer
    than ``batch_size`` items (the last one) are skipped: TensorRT needs a fixed size.
    """
    trt = require_tensorrt()
    cache_path = Path(cache_path)

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._batches: Iterator[dict[str, np.ndarray]] = iter(batches)
            self._device: dict[str, torch.Tensor] = {}  # alive until the next batch

        def get_batch_size(self) -> int:
            return batch_size

        def get_batch(self, names: list[str]) -> list[int] | None:
            for batch in self._batches:
                if len(next(iter(batch.values()))) != batch_size:
                    continue
                self._device = {
                    name: torch.from_numpy(np.ascontiguousarray(batch[name])).cuda()
                    for name in names
                }
                return [int(self._device[name].data_ptr()) for name in names]
            return None

        def read_calibration_cache(self) -> bytes | None:
            if cache_path.is_file():
                logger.info("calibration: using the cache %s", cache_path)
                return cache_path.read_bytes()
            return None

        def write_calibration_cache(self, cache: Any) -> None:
            atomic_write_bytes(cache_path, bytes(cache))
            logger.info("calibration: wrote %s", cache_path)

    return EntropyCalibrator()


def _parse_onnx(trt: Any, builder: Any, trt_logger: Any, onnx_path: Path) -> Any:
    # Explicit batch is required in 8.x and the only mode (flag deprecated) in 10.x.
    flag = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)
    network = builder.create_network(0 if flag is None else 1 << int(flag))
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ValueError(f"{onnx_path}: TensorRT cannot parse the ONNX file: {errors}")
    return network, parser


def _add_profile(
    builder: Any, network: Any, config: Any, batch: BatchProfile, shapes: list[list[int]]
) -> Any:
    """Profile min/opt/max over the batch; other dynamic axes take the exported size."""
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        dims = list(tensor.shape)
        rest = [d if d > 0 else shapes[i][k] for k, d in enumerate(dims[1:])]
        sizes = (batch.min, batch.opt, batch.max) if dims[0] < 0 else (dims[0],) * 3
        profile.set_shape(tensor.name, *[(b, *rest) for b in sizes])
    config.add_optimization_profile(profile)
    return profile


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    *,
    precision: str = "fp16",
    batch: BatchProfile = BatchProfile(),
    workspace_gib: float = 2.0,
    calibrator: Any = None,
) -> Path:
    """Build and serialise an engine for ``onnx_path``; ``int8`` needs ``calibrator``.

    FP16 is also allowed in INT8 engines, so layers without INT8 kernels fall back to FP16.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "int8" and calibrator is None:
        raise ValueError("an INT8 engine needs a calibrator (calibration data or cache)")
    trt = require_tensorrt()
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    metadata = read_metadata(onnx_path)
    trt_logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(trt_logger)
    network, _parser = _parse_onnx(trt, builder, trt_logger, onnx_path)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * GIB))
    profile = _add_profile(builder, network, config, batch, metadata.get("input_shape", []))
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calibrator
        config.set_calibration_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"{onnx_path}: TensorRT failed to build the engine (see its log)")
    atomic_write_bytes(engine_path, bytes(serialized))
    metadata["tensorrt"] = {
        "precision": precision,
        "batch_profile": asdict(batch),
        "workspace_gib": workspace_gib,
        "version": trt.__version__,
        "onnx": str(onnx_path),
    }
    atomic_write_bytes(_sidecar(engine_path), json.dumps(metadata, indent=2).encode())
    return engine_path


def _sidecar(engine_path: Path) -> Path:
    return engine_path.with_name(engine_path.name + ".json")


def engine_metadata(engine_path: str | Path) -> dict[str, Any]:
    """The metadata written beside an engine by :func:`build_engine` (empty if absent)."""
    sidecar = _sidecar(Path(engine_path))
    return json.loads(sidecar.read_text()) if sidecar.is_file() else {}


class TrtClassifier(MetadataView):
    """Runs an engine: ``logits(*inputs)`` on ``(N, ...)`` arrays, split by the profile max batch.

    The same interface as :class:`export.ort_runtime.OrtClassifier` (``input_names``,
    ``metadata``, ``labels``, ``label``), so the inference CLI uses either.
    """

    def __init__(self, engine_path: str | Path) -> None:
        trt = require_tensorrt()
        self.path = Path(engine_path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such TensorRT engine")
        self._logger = trt.Logger(trt.Logger.WARNING)  # must outlive the runtime
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise ValueError(f"{self.path}: not an engine of this TensorRT version/GPU")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.input_names = [n for n in names if is_input[n]]
        self.output_name = next(n for n in names if not is_input[n])
        self.max_batch = self.engine.get_tensor_profile_shape(self.input_names[0], 0)[2][0]
        self.metadata = engine_metadata(self.path)

    def logits(self, *inputs: np.ndarray) -> np.ndarray:
        total = len(inputs[0])
        parts = [
            self._run([x[begin : begin + self.max_batch] for x in inputs])
            for begin in range(0, total, self.max_batch)
        ]
        return np.concatenate(parts)

    def _run(self, inputs: list[np.ndarray]) -> np.ndarray:
        stream = torch.cuda.current_stream()
        device_inputs = [
            torch.from_numpy(np.ascontiguousarray(x, np.float32)).cuda() for x in inputs
        ]
        for name, tensor in zip(self.input_names, device_inputs):
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
        shape = tuple(self.context.get_tensor_shape(self.output_name))
        output = torch.empty(shape, dtype=torch.float32, device="cuda")
        self.context.set_tensor_address(self.output_name, output.data_ptr())
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError(f"{self.path}: TensorRT execution failed")
        stream.synchronize()
        return output.cpu().numpy()
