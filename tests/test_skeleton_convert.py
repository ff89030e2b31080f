"""deepstream-bodypose-3d JSON conversion: normalisation, windows, gaps, labels, bad input."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from data.safe_pickle import safe_load
from data.skeleton_convert import (
    ConvertSettings,
    convert,
    normalize_pose,
    read_deepstream_json,
    split_at_gaps,
    window_bounds,
)

V = 34


def pose(offset: float, *, root_conf: float = 0.9, missing: tuple[int, ...] = ()) -> list[float]:
    """Joint j at (offset + j, 2j, 1000 + 3j) with confidence 0.9; ``missing`` joints at 0."""
    values = []
    for j in range(V):
        conf = 0.0 if j in missing else (root_conf if j == 0 else 0.9)
        values += [offset + j, 2.0 * j, 1000.0 + 3 * j, conf]
    return values


def frames_json(frame_nums: list[int], object_id: int = 7, **kwargs) -> list[dict]:
    return [
        {
            "num_frames_in_batch": 1,
            "batches": [
                {
                    "batch_id": 0,
                    "frame_num": n,
                    "objects": [
                        {"object_id": object_id, "pose3d": pose(n, **kwargs), "pose25d": pose(n)}
                    ],
                }
            ],
        }
        for n in frame_nums
    ]


def test_normalisation_per_pose_type() -> None:
    raw = pose(100.0, missing=(5,))
    three = normalize_pose(raw, ConvertSettings(pose_type="3dbp", focal_length=1000.0))
    assert three.shape == (3, V)
    np.testing.assert_allclose(three[:, 1], [1 / 1000, 2 / 1000, 3 / 1000], rtol=1e-6)
    assert not three[:, 0].any() and not three[:, 5].any()
    image = normalize_pose(
        raw, ConvertSettings(pose_type="25dbp", input_width=200, input_height=100)
    )
    np.testing.assert_allclose(image[:, 2], [102 / 200 - 0.5, 4 / 100 - 0.5, 1006.0], rtol=1e-6)
    assert not image[:, 5].any()
    flat = normalize_pose(raw, ConvertSettings(pose_type="2dbp", input_width=200, input_height=100))
    np.testing.assert_allclose(flat, image[:2])
    assert normalize_pose(pose(0.0, root_conf=0.0), ConvertSettings()) is None  # unknown root


@pytest.mark.parametrize(
    ("frames", "expected"),
    [(250, [100, 100, 100, 100, 50]), (120, [100, 70, 20]), (8, []), (100, [100, 50])],
)
def test_windows_match_reference(frames: int, expected: list[int]) -> None:
    assert [b - a for a, b in window_bounds(frames, ConvertSettings())] == expected


def test_overlap_edge_cases() -> None:
    no_overlap = ConvertSettings(sequence_length=10, sequence_overlap=0.0, sequence_length_min=1)
    assert window_bounds(25, no_overlap) == [(0, 10), (10, 20), (20, 25)]
    dense = ConvertSettings(sequence_length=10, sequence_overlap=0.99, sequence_length_min=10)
    assert window_bounds(12, dense) == [(0, 10), (1, 11), (2, 12)]  # step ≥ 1, never stuck
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            ConvertSettings(sequence_overlap=bad)
    with pytest.raises(ValueError, match="sequence_length_max"):
        ConvertSettings(sequence_length=400)


def test_gap_splitting() -> None:
    assert split_at_gaps([0, 1, 2, 10, 11, 40], max_gap=5) == [(0, 3), (3, 5), (5, 6)]
    assert split_at_gaps([0, 3, 6], max_gap=3) == [(0, 3)]
    assert split_at_gaps([], max_gap=3) == []


def test_convert_writes_arrays_manifest_and_training_set(tmp_path) -> None:
    frames = frames_json(list(range(30)) + list(range(60, 75)))
    frames += frames_json(list(range(12)), object_id=9)
    source = tmp_path / "poses.json"
    source.write_text(json.dumps(frames))
    (tmp_path / "labels.csv").write_text(
        "object_id,class,start_frame,end_frame\n7,walk,0,29\n7,sit,60,80\n9,jump,,\n"
    )
    settings = ConvertSettings(sequence_length=20, sequence_length_max=24, max_gap=5)
    rows = convert(source, tmp_path / "out", settings, labels=tmp_path / "labels.csv")
    spans = [(r["object_id"], r["first_frame"], r["last_frame"]) for r in rows]
    assert spans == [(7, 0, 19), (7, 10, 29), (7, 20, 29), (7, 60, 74), (9, 0, 11)]
    out = tmp_path / "out"
    per_object = np.load(out / "object_7.npy")
    assert per_object.shape == (4, 3, 24, V, 1) and per_object.dtype == np.float32
    assert not per_object[0, :, 20:].any() and per_object[0, :, 19, 1].any()  # zero padding
    assert len(json.loads((out / "manifest.json").read_text())) == 5
    assert (out / "manifest.csv").read_text().splitlines()[0].startswith("source,object_id")
    names, ids = safe_load(out / "labels.pkl")
    assert ids == [0, 0, 0, 1, 2] and len(names) == 5
    assert json.loads((out / "label_map.json").read_text()) == {"walk": 0, "sit": 1, "jump": 2}
    assert np.load(out / "train_data.npy").shape == (5, 3, 24, V, 1)
    assert pickle.loads((out / "labels.pkl").read_bytes())[1] == ids


def test_dropped_root_frames_are_counted(tmp_path, caplog) -> None:
    frames = frames_json(list(range(15))) + frames_json([15, 16], root_conf=0.0)
    (tmp_path / "p.json").write_text(json.dumps(frames))
    rows = convert(tmp_path / "p.json", tmp_path / "o", ConvertSettings())
    assert [r["num_frames"] for r in rows] == [15]
    assert "dropped 2 3D poses" in caplog.text


def test_malformed_input_names_file_and_position(tmp_path) -> None:
    path = tmp_path / "broken.json"
    text = json.dumps(frames_json([0, 1]))
    path.write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match=r"broken\.json: malformed JSON at line 1 column \d+"):
        read_deepstream_json(path)
    path.write_text(json.dumps([{"num_frames_in_batch": 2, "batches": [{}]}]))
    with pytest.raises(ValueError, match="declares 2 frames but holds 1"):
        read_deepstream_json(path)
    frames = frames_json([0])
    frames[0]["batches"][0]["objects"][0]["pose3d"] = [0.0] * 40
    path.write_text(json.dumps(frames))
    with pytest.raises(ValueError, match="10 joints, expected num_joints=34"):
        convert(path, tmp_path / "o", ConvertSettings())
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"no \.json files"):
        convert(tmp_path / "empty", tmp_path / "o2", ConvertSettings())
