"""Skeleton datasets: label files, the restricted unpickler, reference feeder semantics."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
import torch

from data.skeleton.dataset import (
    SkeletonDataset,
    auto_pad,
    load_labels,
    random_choose,
    random_move,
    random_rotate_scale,
)
from safeio.safe_pickle import UnsafePickleError, safe_load, safe_loads


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_unpickler_refuses_code(tmp_path) -> None:
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps((["a"], [_Exploit()])))
    with pytest.raises(UnsafePickleError, match=r"evil\.pkl.*refusing to load .*system"):
        safe_load(path)


@pytest.mark.parametrize("value", [{"a": 1}, {1, 2}, b"raw", np.int64(3)])
def test_unpickler_refuses_other_types(value) -> None:
    with pytest.raises(UnsafePickleError):
        safe_loads(pickle.dumps([value]))


def test_unpickler_accepts_tao_labels_and_reports_truncation() -> None:
    data = pickle.dumps((["x.json", "y.json"], [3, 1]), protocol=2)
    assert safe_loads(data) == (["x.json", "y.json"], [3, 1])
    assert safe_loads(pickle.dumps([1.5, None, True, ("t",)])) == [1.5, None, True, ("t",)]
    with pytest.raises(UnsafePickleError, match="not a readable pickle"):
        safe_loads(data[:-5], "labels.pkl")


def test_label_formats(tmp_path) -> None:
    names, ids = ["a", "b", "c"], [2, 0, 1]
    (tmp_path / "l.pkl").write_bytes(pickle.dumps((names, ids)))
    (tmp_path / "l.json").write_text(json.dumps({"names": names, "labels": ids}))
    (tmp_path / "l.csv").write_text("name,label\na,walk\nb,sit\nc,jump\n")
    label_map = {"sit": 0, "jump": 1, "walk": 2}
    for suffix in ("pkl", "json", "csv"):
        assert load_labels(tmp_path / f"l.{suffix}", label_map) == (names, ids)
    (tmp_path / "bad.csv").write_text("a,fly\n")
    with pytest.raises(ValueError, match="unknown class 'fly'"):
        load_labels(tmp_path / "bad.csv", label_map)


def test_auto_pad_never_crops_and_random_choose(tmp_path) -> None:
    x = np.arange(2 * 6 * 3 * 1, dtype=np.float32).reshape(2, 6, 3, 1) + 1
    padded = auto_pad(x, 10)
    assert padded.shape == (2, 10, 3, 1) and (padded[:, :6] == x).all() and not padded[:, 6:].any()
    assert auto_pad(x, 4) is x  # window_size without random_choose only pads
    rng = np.random.default_rng(0)
    assert random_choose(x, 6, rng) is x
    starts = set()
    for _ in range(200):
        crop = random_choose(x, 4, rng)
        start = int(np.argwhere(x[0, :, 0, 0] == crop[0, 0, 0, 0])[0, 0])
        np.testing.assert_array_equal(crop, x[:, start : start + 4])
        starts.add(start)
    assert starts == {0, 1, 2}  # randint(0, T - size) inclusive
    offsets = {int(np.argmax(random_choose(x, 8, rng)[0, :, 0, 0] > 0)) for _ in range(200)}
    assert offsets == {0, 1, 2}


def test_random_move_changes_xy_only() -> None:
    rng = np.random.default_rng(1)
    x = np.random.default_rng(2).normal(size=(3, 12, 5, 2)).astype(np.float32)
    moved = random_move(x, rng)
    np.testing.assert_array_equal(moved[2], x[2])
    # per frame: an affine map of (x, y) with rotation·scale, same for every joint and person
    for t in (0, 11):
        src = x[:2, t].reshape(2, -1).T
        dst = moved[:2, t].reshape(2, -1).T
        design = np.hstack([src, np.ones((len(src), 1))])
        solution, *_ = np.linalg.lstsq(design, dst, rcond=None)
        np.testing.assert_allclose(design @ solution, dst, atol=1e-4)
        linear = solution[:2].T
        scale = np.sqrt(abs(np.linalg.det(linear)))
        assert (
            0.89 < scale < 1.11 and abs(np.degrees(np.arctan2(linear[1, 0], linear[0, 0]))) <= 10.01
        )
        assert np.all(np.abs(solution[2]) <= 0.2001)


def test_rotate_scale_keeps_missing_joints_at_zero() -> None:
    x = np.ones((3, 4, 5, 1), dtype=np.float32)
    x[:, :, 2] = 0
    out = random_rotate_scale(x, np.random.default_rng(0), max_degrees=30, max_scale=0.2)
    assert not out[:, :, 2].any()
    norms = np.linalg.norm(out[:, :, 0], axis=0) / np.sqrt(3)
    assert np.all((norms > 0.79) & (norms < 1.21))


def test_dataset_items_and_bad_samples(tmp_path) -> None:
    data = np.random.default_rng(0).normal(size=(4, 3, 10, 34, 1)).astype(np.float32)
    data[2, 0, 3, 3, 0] = np.nan
    np.save(tmp_path / "d.npy", data)
    (tmp_path / "l.pkl").write_bytes(pickle.dumps((list("abcd"), [0, 1, 2, 1])))
    dataset = SkeletonDataset(
        tmp_path / "d.npy", tmp_path / "l.pkl", window_size=16, random_choose=True,
        random_move=True, rotate_3d=10, scale_3d=0.1,
    )  # fmt: skip
    assert len(dataset) == 3 and dataset.skipped == 1
    x, target, sample_id = dataset[2]
    assert isinstance(x, torch.Tensor) and x.shape == (3, 16, 34, 1) and x.dtype == torch.float32
    assert (target, sample_id) == (1, 3)
    plain = SkeletonDataset(tmp_path / "d.npy", window_size=16)
    np.testing.assert_array_equal(plain[0][0][:, :10].numpy(), data[0])
    assert plain[0][1] == -1
    with pytest.raises(ValueError, match=r"outside \[0, 2\)"):
        SkeletonDataset(tmp_path / "d.npy", tmp_path / "l.pkl", num_classes=2)
    (tmp_path / "short.pkl").write_bytes(pickle.dumps((["a"], [0])))
    with pytest.raises(ValueError, match="1 labels for 4 samples"):
        SkeletonDataset(tmp_path / "d.npy", tmp_path / "short.pkl")
    np.save(tmp_path / "flat.npy", np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"flat\.npy: expected \(N, C, T, V, M\)"):
        SkeletonDataset(tmp_path / "flat.npy")


def test_random_choose_without_a_window_is_refused() -> None:
    with pytest.raises(ValueError, match="random_choose needs a window_size > 0"):
        SkeletonDataset(np.zeros((2, 3, 8, 5, 1), np.float32), random_choose=True)
