"""Input streams (joint, bone, joint motion, bone motion) equal pyskl's GenSkeFeat.

Facts from pyskl ``pipelines/pose_related.py`` (JointToBone, ToMotion), checked by running that
code beside ours on random (M, T, V, C) keypoints: every stream equal to 0.0 on ntu-rgb+d (3D),
coco (2D with and without the score) and openpose.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data.skeleton.dataset import SkeletonDataset
from data.skeleton.streams import (
    BONE_PAIRS,
    STREAMS,
    StreamDataset,
    bone_parents,
    compute_stream,
    with_stream,
)
from network.graph import LAYOUTS, Layout


def _sequence(channels: int, frames: int, joints: int, persons: int, seed: int = 0) -> np.ndarray:
    return (
        np.random.default_rng(seed)
        .standard_normal((channels, frames, joints, persons))
        .astype(np.float32)
    )


def test_pyskl_bone_pairs_are_the_facts() -> None:
    # pyskl nturgb+d: the root pairs with itself; hand tip -> thumb -> hand (22 -> 23 -> 8, 1-based)
    ntu = dict(BONE_PAIRS["ntu-rgb+d"])
    assert ntu[20] == 20 and ntu[21] == 22 and ntu[22] == 7 and ntu[23] == 24 and ntu[24] == 11
    coco = dict(BONE_PAIRS["coco"])  # hips and shoulders hang from the nose in pyskl's coco
    assert coco[11] == 0 and coco[12] == 0 and coco[5] == 0 and coco[0] == 0
    openpose = dict(BONE_PAIRS["openpose"])  # root: the nose; the neck hangs from it
    assert openpose[0] == 0 and openpose[1] == 0 and openpose[8] == 2
    assert [len(BONE_PAIRS[n]) for n in ("ntu-rgb+d", "openpose", "coco")] == [25, 18, 17]


def test_ntu_parents_are_the_graph_parents_toward_the_center() -> None:
    """pyskl's NTU pairs are the ntu-rgb+d tree's parents: the derivation used for layouts pyskl
    lacks gives them back."""
    ntu = LAYOUTS["ntu-rgb+d"]
    renamed = Layout("my-ntu", ntu.num_joints, ntu.edges, ntu.center)
    np.testing.assert_array_equal(bone_parents(renamed), bone_parents("ntu-rgb+d"))


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_layout_has_a_parent_one_hop_inward(layout: str) -> None:
    parents = bone_parents(layout)
    spec = LAYOUTS[layout]
    assert len(parents) == spec.num_joints
    roots = [v for v in range(spec.num_joints) if parents[v] == v]
    assert len(roots) == 1
    edges = {frozenset(e) for e in spec.edges}
    if layout not in BONE_PAIRS:  # derived: parents are graph neighbours, root = center
        assert roots == [spec.center]
        assert all(frozenset((v, p)) in edges for v, p in enumerate(parents) if v != p)


def test_bone_and_motion_worked_values_3d() -> None:
    """ntu-rgb+d 3D: every channel differenced; motion zero on the last frame."""
    x = _sequence(3, 4, 25, 1)
    bone = compute_stream(x, "b", "ntu-rgb+d")
    np.testing.assert_allclose(bone[:, :, 0], x[:, :, 0] - x[:, :, 1])  # spine base - spine mid
    np.testing.assert_array_equal(bone[:, :, 20], 0)  # the root
    np.testing.assert_allclose(bone[:, :, 21], x[:, :, 21] - x[:, :, 22])
    motion = compute_stream(x, "jm", "ntu-rgb+d")
    np.testing.assert_allclose(motion[:, :3], x[:, 1:] - x[:, :3])
    np.testing.assert_array_equal(motion[:, 3], 0)
    np.testing.assert_allclose(
        compute_stream(x, "bm", "ntu-rgb+d")[:, :3], bone[:, 1:] - bone[:, :3]
    )
    np.testing.assert_array_equal(compute_stream(x, "j", "ntu-rgb+d"), x)


def test_score_channel_is_averaged_on_2d_layouts() -> None:
    x = _sequence(3, 3, 17, 2)
    x[2] = np.abs(x[2])
    bone = compute_stream(x, "b", "coco")
    np.testing.assert_allclose(bone[:2, :, 9], x[:2, :, 9] - x[:2, :, 7])  # wrist - elbow
    np.testing.assert_allclose(bone[2, :, 9], (x[2, :, 9] + x[2, :, 7]) / 2)
    np.testing.assert_allclose(bone[2, :, 0], x[2, :, 0])  # the root keeps its score
    motion = compute_stream(x, "jm", "coco")
    np.testing.assert_allclose(motion[2, :2], (x[2, :2] + x[2, 1:]) / 2)
    np.testing.assert_array_equal(motion[2, 2], 0)
    # without a score (C = 2), or forced off, every channel is a difference
    np.testing.assert_allclose(compute_stream(x[:2], "b", "coco")[1, :, 9], x[1, :, 9] - x[1, :, 7])
    np.testing.assert_allclose(
        compute_stream(x, "b", "coco", score=False)[2, :, 9], x[2, :, 9] - x[2, :, 7]
    )


@pytest.mark.parametrize("stream", STREAMS)
def test_trailing_zero_padding_commutes_with_the_stream(stream: str) -> None:
    """pyskl computes streams before padding: the motion of a padded sequence stops at each
    person's last real frame."""
    x = _sequence(3, 6, 18, 2)
    padded = np.zeros((3, 10, 18, 2), np.float32)
    padded[:, :6, :, 0] = x[..., 0]
    padded[:, :4, :, 1] = x[:, :4, :, 1]  # the second person leaves earlier
    got = compute_stream(padded, stream, "openpose")
    np.testing.assert_allclose(got[:, :6, :, 0], compute_stream(x, stream, "openpose")[..., 0])
    np.testing.assert_allclose(
        got[:, :4, :, 1], compute_stream(x[:, :4], stream, "openpose")[..., 1]
    )
    np.testing.assert_array_equal(got[:, 6:, :, 0], 0)
    np.testing.assert_array_equal(got[:, 4:, :, 1], 0)


def test_bad_stream_and_shape_are_one_line_errors() -> None:
    with pytest.raises(ValueError, match="unknown stream 'x'"):
        compute_stream(_sequence(3, 2, 25, 1), "x", "ntu-rgb+d")
    with pytest.raises(ValueError, match="V = 17 joints"):
        compute_stream(_sequence(3, 2, 25, 1), "b", "coco")


def test_stream_dataset_wraps_items_and_keeps_attributes(tmp_path) -> None:
    data = np.stack([_sequence(3, 5, 25, 2, seed) for seed in range(3)])
    path = tmp_path / "x.npy"
    np.save(path, data)
    base = SkeletonDataset(path)
    assert with_stream(base, "j", "ntu-rgb+d") is base
    wrapped = with_stream(base, "bm", "ntu-rgb+d")
    assert isinstance(wrapped, StreamDataset) and len(wrapped) == 3
    assert wrapped.shape == base.shape and wrapped.labels == base.labels
    x, target, sample = wrapped[1]
    expected = compute_stream(data[1], "bm", "ntu-rgb+d")
    assert isinstance(x, torch.Tensor) and (target, sample) == (-1, 1)
    np.testing.assert_allclose(x.numpy(), expected)
