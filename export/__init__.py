"""Deployment: ONNX export with parity checks, ONNX Runtime inference and INT8, TensorRT engines.

``export.export_onnx(model, path, input_shape)`` is the one entry point every family script
uses; ``export.cli`` holds the subcommands (export, ort, quantize, trt) the scripts add.
"""

from export.metadata import read_metadata
from export.onnx_export import ExportReport, ParityError, export_onnx

__all__ = ["ExportReport", "ParityError", "export_onnx", "read_metadata"]
