"""The GestureNet annotation format (shared/reference/gesture.md §4.3): one JSON per image.

::

    {"task_path": "<mount>/original/<set>/<uid>/<recording>/<frame>.png",
     "completions": [{"result": [
        {"type": "choices", "value": {"choices": ["<class name>"]}},
        {"type": "rectanglelabels", "original_width": W, "original_height": H,
         "value": {"x": 100*x1/W, "y": 100*y1/H, "width": 100*w/W, "height": 100*h/H}}]}],
     "metadata": {"user_id": "<uid>", "location": "indoor", ...}}

Boxes are in percent of the image. ``metadata`` (per-image features used by
``image_feature_filter``) is this project's addition; files without it still parse.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "GESTURE_CLASSES",
    "Annotation",
    "AnnotationError",
    "make_annotation",
    "parse_annotation",
]

# The tutorial's class → index map (shared/reference/gesture.md §1).
GESTURE_CLASSES: tuple[str, ...] = ("thumbs_up", "fist", "stop", "ok", "two", "random")


class AnnotationError(ValueError):
    """An annotation file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Annotation:
    """One labelled image. ``box`` is ``(x1, y1, w, h)`` in pixels of the original image."""

    task_path: str
    label: str
    box: tuple[float, float, float, float]
    image_size: tuple[int, int]  # (W, H)
    metadata: dict[str, Any] = field(default_factory=dict)


def make_annotation(
    task_path: str,
    label: str,
    box: tuple[float, float, float, float],
    image_size: tuple[int, int],
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON dict of one image; ``box`` is ``(x1, y1, w, h)`` in pixels."""
    width, height = image_size
    x1, y1, w, h = box
    return {
        "task_path": task_path,
        "completions": [
            {
                "result": [
                    {"type": "choices", "value": {"choices": [label]}},
                    {
                        "type": "rectanglelabels",
                        "original_width": width,
                        "original_height": height,
                        "value": {
                            "x": 100.0 * x1 / width,
                            "y": 100.0 * y1 / height,
                            "width": 100.0 * w / width,
                            "height": 100.0 * h / height,
                        },
                    },
                ]
            }
        ],
        "metadata": dict(metadata or {}),
    }


def _find_result(results: list[dict[str, Any]], kind: str, path: Path) -> dict[str, Any]:
    for result in results:
        if isinstance(result, dict) and result.get("type") == kind:
            return result
    raise AnnotationError(f"{path}: no {kind!r} result in completions[0]")


def parse_annotation(path: Path) -> Annotation:
    """Read one annotation file; raises ``AnnotationError`` naming ``path`` on any defect."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AnnotationError(f"{path}: unreadable JSON ({exc})") from exc
    try:
        results = data["completions"][0]["result"]
        choice = _find_result(results, "choices", path)
        rect = _find_result(results, "rectanglelabels", path)
        width, height = int(rect["original_width"]), int(rect["original_height"])
        value = rect["value"]
        box = (
            float(value["x"]) * width / 100.0,
            float(value["y"]) * height / 100.0,
            float(value["width"]) * width / 100.0,
            float(value["height"]) * height / 100.0,
        )
        label = str(choice["value"]["choices"][0])
        task_path = str(data["task_path"])
    except (KeyError, IndexError, TypeError, ValueError, OverflowError) as exc:
        if isinstance(exc, AnnotationError):
            raise
        raise AnnotationError(f"{path}: malformed annotation ({exc!r})") from exc
    metadata = data.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise AnnotationError(f"{path}: 'metadata' must be an object")
    return Annotation(task_path, label, box, (width, height), metadata)
