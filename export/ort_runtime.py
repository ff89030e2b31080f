"""ONNX Runtime inference for exported classifiers, with the metadata stored in the file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from export.metadata import MetadataView, parse_metadata

__all__ = ["OrtClassifier", "create_session", "softmax"]


def create_session(
    path: str | Path,
    *,
    threads: int | None = None,
    providers: Sequence[str] | None = None,
    spinning: bool = True,
) -> Any:
    """An ``onnxruntime.InferenceSession`` with all graph optimisations (CPU by default).

    ``spinning=False``: the intra-op threads sleep as soon as a call ends instead of spinning
    for the next one (what a process that does other work between calls wants)."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such ONNX file")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(
            str(path), sess_options=options, providers=list(providers or ["CPUExecutionProvider"])
        )
    except Exception as error:  # onnxruntime's own types: InvalidProtobuf, Fail, NoSuchFile
        detail = str(error).strip().splitlines()[0] if str(error).strip() else "unreadable"
        raise ValueError(f"{path}: not a usable ONNX file ({detail})") from None


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax."""
    shifted = logits - logits.max(axis=axis, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=axis, keepdims=True)


class OrtClassifier(MetadataView):
    """An exported classifier: ``logits(*inputs)`` on batched float32 arrays.

    ``input_names``, ``input_shapes`` (without batch), ``labels`` and the rest of the metadata
    come from the ONNX file.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        threads: int | None = None,
        providers: Sequence[str] | None = None,
        spinning: bool = True,
    ) -> None:
        self.path = Path(path)
        self.session = create_session(path, threads=threads, providers=providers, spinning=spinning)
        self.metadata = parse_metadata(self.session.get_modelmeta().custom_metadata_map)
        self.input_names = [node.name for node in self.session.get_inputs()]
        self.output_name = self.session.get_outputs()[0].name

    def logits(self, *inputs: np.ndarray) -> np.ndarray:
        """``(N, num_classes)`` logits for inputs shaped ``(N, *input_shape)``."""
        if len(inputs) != len(self.input_names):
            raise ValueError(
                f"{self.path}: expects {len(self.input_names)} input(s) "
                f"{self.input_names}, got {len(inputs)}"
            )
        self._check_shapes(inputs)
        feed = {
            name: np.ascontiguousarray(x, dtype=np.float32)
            for name, x in zip(self.input_names, inputs)
        }
        return self.session.run([self.output_name], feed)[0]

    def _check_shapes(self, inputs: Sequence[np.ndarray]) -> None:
        for name, x, shape in zip(self.input_names, inputs, self.input_shapes):
            if tuple(x.shape[1:]) != shape and not self._dynamic_time(x.shape[1:], shape):
                raise ValueError(
                    f"{self.path}: input {name} must be (N, {', '.join(map(str, shape))}), "
                    f"got {tuple(x.shape)}"
                )

    def _dynamic_time(self, got: tuple[int, ...], expected: tuple[int, ...]) -> bool:
        """With a dynamic time axis only T (axis 1 without the batch) may differ."""
        if len(got) != len(expected) or len(got) != 4:
            return False
        declared = self.session.get_inputs()[0].shape
        return isinstance(declared[2], str) and got[0] == expected[0] and got[2:] == expected[2:]
