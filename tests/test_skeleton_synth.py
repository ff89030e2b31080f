"""Synthetic skeleton actions: files, formats, remapping, motions that differ."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from data.skeleton.convert import ConvertSettings, convert
from data.skeleton.synthetic import SynthSettings, make_sample, remap_matrix, synthesize
from network.graph import LAYOUTS
from safeio.safe_pickle import safe_load


def test_synthesize_writes_consistent_splits(tmp_path) -> None:
    settings = SynthSettings(
        classes=("standing", "waving"), train_per_class=2, val_per_class=1,
        min_frames=20, max_frames=30,
    )  # fmt: skip
    label_map = synthesize(tmp_path, settings)
    assert label_map == {"standing": 0, "waving": 1}
    data = np.load(tmp_path / "train_data.npy")
    names, labels = safe_load(tmp_path / "train_label.pkl")
    assert data.shape == (4, 3, 30, 34, 1) and labels == [0, 1, 0, 1] and len(names) == 4
    assert np.isfinite(data).all() and not data[:, :, :, 0].any()  # root-relative pelvis
    with (tmp_path / "train_labels.csv").open() as handle:
        assert [row["class"] for row in csv.DictReader(handle)] == ["standing", "waving"] * 2
    rows = convert(
        tmp_path / "train.json", tmp_path / "conv",
        ConvertSettings(sequence_length=30, sequence_length_max=30, sequence_length_min=20),
        labels=tmp_path / "train_labels.csv", label_map=label_map,
    )  # fmt: skip
    assert sorted({row["object_id"] for row in rows}) == [0, 1, 2, 3]
    assert safe_load(tmp_path / "conv" / "labels.pkl")[1] == [0, 1, 0, 1]


def test_json_is_deepstream_format(tmp_path) -> None:
    synthesize(tmp_path, SynthSettings(classes=("walking",), train_per_class=1, val_per_class=1))
    batches = json.loads((tmp_path / "val.json").read_text())
    frame = batches[0]["batches"][0]
    assert batches[0]["num_frames_in_batch"] == 1 and {"frame_num", "objects"} <= frame.keys()
    obj = frame["objects"][0]
    assert len(obj["pose3d"]) == len(obj["pose25d"]) == 136


def test_motions_differ_and_noise_applies() -> None:
    rng = np.random.default_rng(0)
    settings = SynthSettings(noise_mm=0.0, missing_rate=0.0, min_frames=60, max_frames=60)
    sit, _ = make_sample("sitting", settings, rng)
    stand, _ = make_sample("standing", settings, rng)
    # sitting: knees close to pelvis height; standing: far below (camera y points down)
    assert (sit[:, 4, 1] - sit[:, 0, 1]).mean() < 200 < (stand[:, 4, 1] - stand[:, 0, 1]).mean()
    noisy = SynthSettings(missing_rate=0.5, min_frames=60, max_frames=60)
    _, confidence = make_sample("jumping", noisy, rng)
    assert 0.3 < (confidence == 0).mean() < 0.7 and (confidence[:, 0] > 0).all()


@pytest.mark.parametrize("layout", ["openpose", "coco", "human3.6m", "ntu-rgb+d"])
def test_remap_to_named_layouts(layout: str) -> None:
    matrix = remap_matrix(layout)
    assert matrix.shape == (LAYOUTS[layout].num_joints, 34)
    np.testing.assert_allclose(matrix.sum(1), 1.0)


def test_remap_needs_joint_names() -> None:
    with pytest.raises(ValueError, match="no joint names"):
        remap_matrix("ntu_edge")
