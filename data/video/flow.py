"""Optical flow between consecutive frames (OpenCV DIS or Farneback) as u/v grayscale images.

Mapping to uint8 (``flow_to_uv``):

* default, TAO's ``max_rad_grayscale`` (reference A5), kept so our u/v images are interchangeable
  with TAO-prepared ones: ``max_rad = max(1, max |flow|)`` over the pixels of **this** flow frame,
  ``u = uint8(fx / max_rad * 127.999 + 128)`` (truncating cast; zero flow -> 128), same for v.
  Because ``max_rad`` changes per frame, magnitudes are not comparable across frames (upstream
  defect 36).
* ``bound=B`` (``prepare --flow-bound B``): the same formula with a fixed radius, each component
  clipped to ``[-B, B]`` pixels first, so one grey level means the same motion in every frame.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator

import cv2
import numpy as np

FlowFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


@functools.cache
def _dis() -> cv2.DISOpticalFlow:
    return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)


def dis_flow(prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    """DIS flow ``(H, W, 2)`` float32 (x, y) in pixels between two ``(H, W)`` uint8 images."""
    return _dis().calc(prev, nxt, None)


def farneback_flow(prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    """Farneback flow ``(H, W, 2)`` float32 with OpenCV's commonly used settings."""
    return cv2.calcOpticalFlowFarneback(
        prev, nxt, None, pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5,
        poly_sigma=1.2, flags=0,
    )  # fmt: skip


FLOW_METHODS: dict[str, FlowFn] = {"dis": dis_flow, "farneback": farneback_flow}


def flow_to_uv(flow: np.ndarray, bound: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(H, W, 2)`` flow -> ``(u, v)`` uint8 ``(H, W)`` images (see the module docstring)."""
    flow = flow.astype(np.float32, copy=False)
    if bound is None:
        radius = max(1.0, float(np.sqrt((flow**2).sum(axis=-1)).max(initial=0.0)))
    else:
        radius = float(bound)
        flow = np.clip(flow, -radius, radius)
    scaled = flow / radius * 127.999 + 128.0
    return scaled[..., 0].astype(np.uint8), scaled[..., 1].astype(np.uint8)


class FlowStream:
    """Incremental version of :func:`iter_flow_uv` for a loop that also writes the RGB frames:
    ``push(frame)`` returns ``(u, v)`` for the pair ending at ``frame``, or None for the first."""

    def __init__(self, *, method: str = "dis", bound: float | None = None) -> None:
        if method not in FLOW_METHODS:
            raise ValueError(f"unknown flow method {method!r}; choose from {list(FLOW_METHODS)}")
        self.compute = FLOW_METHODS[method]
        self.bound = bound
        self.prev: np.ndarray | None = None

    def push(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        prev, self.prev = self.prev, gray
        return None if prev is None else flow_to_uv(self.compute(prev, gray), self.bound)


def iter_flow_uv(
    frames: Iterable[np.ndarray], *, method: str = "dis", bound: float | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """For RGB frames ``(H, W, 3)`` yield ``(u, v)`` for each consecutive pair (N-1 pairs)."""
    stream = FlowStream(method=method, bound=bound)
    for frame in frames:
        uv = stream.push(frame)
        if uv is not None:
            yield uv
