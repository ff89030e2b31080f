"""Self-describing ONNX files: what a deployment needs to feed the network, stored in the file.

Each entry of ``metadata_props`` holds one JSON value under an ``actrec.`` key, so any ONNX tool
shows them and ``read_metadata`` gives the Python values back::

    labels          ["walk", "run", ...]          class names in logit order
    input_shape     [[3, 16, 112, 112]]           per input, without the batch axis
    input_names     ["input_rgb"]                 TAO tensor names
    normalization   {"mean": [...], "std": [...]} applied after x/255
    network         "r3d_18"                      registry name
    network_kwargs  {"num_classes": 51, ...}      builder kwargs
    family          "video" | "skeleton" | "gesture"
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnx

from train.validation import printable

__all__ = ["KEY_PREFIX", "MetadataView", "parse_metadata", "read_metadata", "write_metadata"]

KEY_PREFIX = "actrec."


def write_metadata(model: onnx.ModelProto, metadata: dict[str, Any]) -> None:
    """Store every ``metadata`` value as JSON in ``model.metadata_props`` (replacing old keys)."""
    keep = [p for p in model.metadata_props if p.key.removeprefix(KEY_PREFIX) not in metadata]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key = KEY_PREFIX + key
        entry.value = json.dumps(value, sort_keys=True, default=str)


def read_metadata(path_or_model: str | Path | onnx.ModelProto) -> dict[str, Any]:
    """The ``actrec.*`` metadata of an ONNX file (or loaded model) as Python values.

    From a path this parses the whole file (external data files are not read); where an ONNX
    Runtime session is open, ``parse_metadata(session.get_modelmeta().custom_metadata_map)``
    avoids that second parse.
    """
    if isinstance(path_or_model, onnx.ModelProto):
        model = path_or_model
    else:
        path = Path(path_or_model)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such ONNX file")
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as error:  # protobuf DecodeError and friends
            raise ValueError(f"{path}: not an ONNX file ({type(error).__name__})") from None
    return parse_metadata({prop.key: prop.value for prop in model.metadata_props})


def parse_metadata(props: dict[str, str]) -> dict[str, Any]:
    """The ``actrec.*`` entries of raw ``metadata_props`` (key → JSON text) as Python values."""
    result: dict[str, Any] = {}
    for key, value in props.items():
        if not key.startswith(KEY_PREFIX):
            continue
        try:
            result[key.removeprefix(KEY_PREFIX)] = json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(f"metadata {key!r} is not valid JSON: {error}") from None
    return result


class MetadataView:
    """What an exported classifier (ONNX Runtime or TensorRT) derives from its ``metadata``."""

    metadata: dict[str, Any]

    @property
    def labels(self) -> list[str] | None:
        return self.metadata.get("labels")

    @property
    def input_shapes(self) -> list[tuple[int, ...]]:
        """Per input, without the batch axis."""
        return [tuple(shape) for shape in self.metadata.get("input_shape", [])]

    @property
    def family(self) -> str | None:
        return self.metadata.get("family")

    def label(self, index: int) -> str:
        """The class name of logit ``index`` (the index itself without labels), escaped for
        printing: a label from the file cannot start a new line or send terminal sequences."""
        if self.labels and 0 <= index < len(self.labels):
            return printable(self.labels[index])
        return str(index)
