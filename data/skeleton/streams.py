"""Input streams of skeleton networks: joint, bone, joint motion, bone motion (pyskl's GenSkeFeat).

On a ``(C, T, V, M)`` sequence:

- ``j``: the joints as stored.
- ``b``: each joint minus its parent (pyskl ``JointToBone``); the root's bone is zero. pyskl's own
  (joint, parent) pairs for ``ntu-rgb+d``, ``openpose`` and ``coco`` (``BONE_PAIRS``); on other
  layouts the parent is the neighbour one hop nearer the layout's center.
- ``jm`` / ``bm``: the frame difference ``x[t+1] − x[t]`` of the joints / bones (pyskl
  ``ToMotion``); the last frame's motion is zero.

On 2D layouts with a keypoint score as third channel (``openpose``, ``coco`` with C = 3) the score
channel is not differenced: bones carry the mean score of the joint and its parent, motion the
mean score of the two frames (0 on the last frame), as pyskl does.

pyskl computes the streams before padding a sequence; ActRec's arrays are zero-padded at the end
(TAO ``.npy``, ``PaddedSequences``), so trailing all-zero frames of a person count as padding: the
motion is zero from that person's last real frame on (``motion(pad(x)) == pad(motion(x))``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from network.graph import LAYOUTS, Layout, get_layout, hop_distance

__all__ = [
    "BONE_PAIRS",
    "SCORE_LAYOUTS",
    "STREAMS",
    "StreamDataset",
    "bone_parents",
    "compute_stream",
    "joint_to_bone",
    "to_motion",
    "with_stream",
]

STREAMS = ("j", "b", "jm", "bm")
# pyskl JointToBone (joint, parent) pairs, 0-based; the root pairs with itself.
BONE_PAIRS: dict[str, tuple[tuple[int, int], ...]] = {
    # pyskl 'nturgb+d' (root: spine shoulder 20); the parents of the ntu-rgb+d graph.
    "ntu-rgb+d": ((0, 1), (1, 20), (2, 20), (3, 2), (4, 20), (5, 4), (6, 5), (7, 6), (8, 20),
                  (9, 8), (10, 9), (11, 10), (12, 0), (13, 12), (14, 13), (15, 14), (16, 0),
                  (17, 16), (18, 17), (19, 18), (21, 22), (20, 20), (22, 7), (23, 24), (24, 11)),
    # pyskl 'openpose' (root: the nose 0, the neck hangs from it; hips from the shoulders).
    "openpose": ((0, 0), (1, 0), (2, 1), (3, 2), (4, 3), (5, 1), (6, 5), (7, 6), (8, 2), (9, 8),
                 (10, 9), (11, 5), (12, 11), (13, 12), (14, 0), (15, 0), (16, 14), (17, 15)),
    # pyskl 'coco' (root: the nose 0; shoulders and hips hang from the nose directly).
    "coco": ((0, 0), (1, 0), (2, 0), (3, 1), (4, 2), (5, 0), (6, 0), (7, 5), (8, 6), (9, 7),
             (10, 8), (11, 0), (12, 0), (13, 11), (14, 12), (15, 13), (16, 14)),
}  # fmt: skip
# 2D layouts whose third channel is a keypoint score (pyskl: openpose, coco).
SCORE_LAYOUTS = frozenset({"openpose", "coco"})


def _builtin(layout: Layout) -> bool:
    return LAYOUTS.get(layout.name) == layout


def bone_parents(layout: str | Path | Layout) -> np.ndarray:
    """(V,) parent of each joint (the root is its own parent)."""
    layout = get_layout(layout)
    if _builtin(layout) and layout.name in BONE_PAIRS:
        parents = np.arange(layout.num_joints)
        for joint, parent in BONE_PAIRS[layout.name]:
            parents[joint] = parent
        return parents
    distance = hop_distance(layout.num_joints, layout.edges, layout.num_joints)[layout.center]
    parents = np.arange(layout.num_joints)
    for i, j in layout.edges:  # first edge in the layout's order that leads one hop inward
        for child, parent in ((i, j), (j, i)):
            if distance[parent] == distance[child] - 1 and parents[child] == child:
                parents[child] = parent
    return parents


def _has_score(layout: Layout, channels: int) -> bool:
    return _builtin(layout) and layout.name in SCORE_LAYOUTS and channels == 3


def joint_to_bone(x: np.ndarray, parents: np.ndarray, *, score: bool = False) -> np.ndarray:
    """(C, T, V, M) joints → bones ``x[:, :, v] − x[:, :, parent[v]]``; with ``score`` the third
    channel is the mean of the two joints' scores."""
    bone = x - x[:, :, parents]
    if score:
        bone[2] = (x[2] + x[2][:, parents]) / 2
    return bone.astype(np.float32, copy=False)


def _real_frames(x: np.ndarray) -> np.ndarray:
    """(M,) frames up to each person's last frame with a non-zero value (trailing zeros: padding)."""
    used = np.abs(x).sum(axis=(0, 2)) > 0  # (T, M)
    last = np.where(used.any(axis=0), x.shape[1] - np.argmax(used[::-1], axis=0), 0)
    return last


def to_motion(x: np.ndarray, *, score: bool = False) -> np.ndarray:
    """(C, T, V, M) → frame differences ``x[:, t+1] − x[:, t]``, zero from each person's last real
    frame on; with ``score`` the third channel is the mean score of the two frames."""
    motion = np.zeros_like(x, dtype=np.float32)
    motion[:, :-1] = x[:, 1:] - x[:, :-1]
    if score:
        motion[2, :-1] = (x[2, :-1] + x[2, 1:]) / 2
    for person, frames in enumerate(_real_frames(x)):
        motion[:, max(frames - 1, 0) :, :, person] = 0
    return motion


def compute_stream(
    x: np.ndarray, stream: str, layout: str | Path | Layout, *, score: bool | None = None
) -> np.ndarray:
    """The ``stream`` ("j", "b", "jm", "bm") of a (C, T, V, M) sequence on ``layout``.

    ``score`` None: the third channel is a keypoint score on openpose/coco with C = 3.
    """
    if stream not in STREAMS:
        raise ValueError(f"unknown stream {stream!r}: choose one of {', '.join(STREAMS)}")
    layout = get_layout(layout)
    if x.ndim != 4 or x.shape[2] != layout.num_joints:
        raise ValueError(
            f"a {stream} stream needs (C, T, V, M) sequences with V = {layout.num_joints} "
            f"joints ({layout.name}), got shape {tuple(x.shape)}"
        )
    x = np.asarray(x, dtype=np.float32)
    score = _has_score(layout, x.shape[0]) if score is None else score
    if stream == "j":
        return x
    if stream in ("b", "bm"):
        x = joint_to_bone(x, bone_parents(layout), score=score)
    return to_motion(x, score=score) if stream.endswith("m") else x


class StreamDataset(Dataset):
    """A skeleton dataset whose items' sequences are turned into ``stream`` (after the dataset's
    own cropping and augmentation). Other attributes (``shape``, ``labels``, ...) are the wrapped
    dataset's."""

    def __init__(self, dataset: Dataset, stream: str, layout: str | Path | Layout) -> None:
        if stream not in STREAMS:
            raise ValueError(f"unknown stream {stream!r}: choose one of {', '.join(STREAMS)}")
        self.dataset = dataset
        self.stream = stream
        self.layout = get_layout(layout)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: Any) -> Any:
        item = self.dataset[index]
        if not isinstance(item, tuple):  # an excluded item passes as it is
            return item
        x, *rest = item
        out = compute_stream(x.numpy(), self.stream, self.layout)
        return (torch.from_numpy(np.ascontiguousarray(out)), *rest)

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.dataset, name)


def with_stream(dataset: Dataset, stream: str | None, layout: str | Path | Layout) -> Dataset:
    """``dataset`` itself for the joint stream (or None), else a :class:`StreamDataset`."""
    if stream in (None, "j"):
        return dataset
    return StreamDataset(dataset, stream, layout)
