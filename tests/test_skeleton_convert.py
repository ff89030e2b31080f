"""deepstream-bodypose-3d JSON conversion: normalisation, windows, gaps, labels, bad input."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from data.skeleton.convert import (
    ConvertSettings,
    convert,
    normalize_pose,
    read_deepstream_json,
    split_at_gaps,
    window_bounds,
)
from safeio.safe_pickle import safe_load

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


@pytest.mark.parametrize(
    ("overlap", "starts"),
    [(0.25, [0, 25, 50, 75, 100, 125, 150]), (0.5, [0, 50, 100, 150]), (1.0, [0, 100]),
     (0.75, [0, 75, 150]), (1.5, [0, 150])],
)  # fmt: skip
def test_sequence_overlap_is_taos_step_fraction(overlap: float, starts: list[int]) -> None:
    # TAO dataset_convert: step = int(sequence_length * sequence_overlap); windows while at
    # least sequence_length_min frames remain (here 180 frames, L = 100, min 10).
    windows = window_bounds(180, ConvertSettings(sequence_overlap=overlap))
    assert [a for a, _ in windows] == starts
    assert all(b == min(a + 100, 180) for a, b in windows)


def test_window_stride_and_refused_overlaps() -> None:
    stride = ConvertSettings(sequence_length=10, window_stride=3, sequence_length_min=10)
    assert window_bounds(16, stride) == [(0, 10), (3, 13), (6, 16)]
    for bad in (0.0, -0.5, 0.005, float("nan")):  # step int(100·x) < 1: TAO loops forever at 0
        with pytest.raises(ValueError, match="TAO loops forever at 0"):
            ConvertSettings(sequence_overlap=bad)
    with pytest.raises(ValueError, match="window_stride 0"):
        ConvertSettings(window_stride=0)
    with pytest.raises(ValueError, match="sequence_length_max"):
        ConvertSettings(sequence_length=400)


def test_convert_flags_refuse_overlap_zero_in_one_line(tmp_path, capsys) -> None:
    import train_nvpose

    (tmp_path / "p.json").write_text(json.dumps(frames_json(list(range(12)))))
    argv = ["convert", "--data", str(tmp_path / "p.json"), "--output-dir", str(tmp_path / "o")]
    assert train_nvpose.main([*argv, "--sequence-overlap", "0"]) == 2
    err = capsys.readouterr().err
    assert "sequence_overlap 0.0" in err and "Traceback" not in err
    assert train_nvpose.main([*argv, "--window-stride", "4", "--sequence-length", "8",
                              "--sequence-length-min", "8"]) == 0  # fmt: skip
    starts = [r["first_frame"] for r in json.loads((tmp_path / "o" / "manifest.json").read_text())]
    assert starts == [0, 4]


def _tao_arrays(frames: list[dict], settings: ConvertSettings) -> dict[int, np.ndarray]:
    """TAO dataset_convert's algorithm, written out independently: per object (first-seen order),
    every pose in file order (frame_num ignored); a joint with confidence 0 is zeros, others
    (p_j - p_0) / focal in Python floats; windows step int(L * overlap)."""
    per_object: dict[int, list] = {}
    for batch in frames:
        for frame in batch["batches"]:
            for person in frame["objects"]:
                p = person["pose3d"]
                joints = []
                for j in range(settings.num_joints):
                    if p[j * 4 + 3] == 0.0:
                        joints.append([0.0, 0.0, 0.0])
                        continue
                    joints.append([(p[j * 4 + d] - p[d]) / settings.focal_length for d in range(3)])
                per_object.setdefault(person["object_id"], []).append(joints)
    step = int(settings.sequence_length * settings.sequence_overlap)
    out = {}
    for object_id, poses in per_object.items():
        rows, start = [], 0
        while len(poses) - start >= settings.sequence_length_min:
            end = min(start + settings.sequence_length, len(poses))
            row = np.zeros((3, settings.sequence_length_max, settings.num_joints, 1), np.float32)
            for f, frame in enumerate(range(start, end)):
                for j in range(settings.num_joints):
                    for d in range(3):
                        row[d, f, j, 0] = poses[frame][j][d]
            rows.append(row)
            start += step
        if rows:
            out[object_id] = np.stack(rows)
    return out


@pytest.mark.parametrize("overlap", [0.25, 0.5, 1.0])
def test_tao_options_give_taos_arrays_bit_for_bit(tmp_path, overlap: float) -> None:
    rng = np.random.default_rng(1)
    frames = frames_json(list(range(0, 40)) + list(range(90, 130)))  # a gap TAO ignores
    frames += frames_json([3, 4, 5] * 5, object_id=2, root_conf=0.0)  # pelvis never seen
    frames += frames_json(list(range(25)), object_id=5, missing=(3, 7))
    for batch in frames:  # irregular coordinates, as real poses are
        for obj in batch["batches"][0]["objects"]:
            noise = rng.normal(scale=50.0, size=len(obj["pose3d"]))
            obj["pose3d"] = [v + float(n) if k % 4 != 3 else v
                             for k, (v, n) in enumerate(zip(obj["pose3d"], noise))]  # fmt: skip
    (tmp_path / "p.json").write_text(json.dumps(frames))
    settings = ConvertSettings(sequence_length=16, sequence_length_max=20, sequence_length_min=4,
                               sequence_overlap=overlap, max_gap=0, keep_unseen_pelvis=True)  # fmt: skip
    convert(tmp_path / "p.json", tmp_path / "o", settings)
    expected = _tao_arrays(frames, settings)
    assert sorted(expected) == [2, 5, 7]
    for object_id, array in expected.items():
        got = np.load(tmp_path / "o" / f"object_{object_id}.npy")
        assert got.dtype == array.dtype and got.shape == array.shape
        assert got.tobytes() == array.tobytes(), object_id


def test_gap_splitting() -> None:
    assert split_at_gaps([0, 1, 2, 10, 11, 40], max_gap=5) == [(0, 3), (3, 5), (5, 6)]
    assert split_at_gaps([0, 1, 2, 10, 11, 40], max_gap=0) == [(0, 6)]  # off, as TAO
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
    kept = convert(tmp_path / "p.json", tmp_path / "k", ConvertSettings(keep_unseen_pelvis=True))
    assert [r["num_frames"] for r in kept] == [17]


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


def _write(tmp_path, frames, name="p.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(frames))  # json writes NaN and Infinity as Python reads them
    return str(path)


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda values: values.__setitem__(4 * 5, float("nan")),  # one seen joint NaN
        lambda values: values.__setitem__(4 * 9 + 1, float("inf")),
        lambda values: values.__setitem__(4 * 2 + 2, 1e306),  # absurd
        lambda values: values.__setitem__(0, float("nan")),  # NaN root: every joint NaN
        lambda values: values.__setitem__(4 * 3 + 3, float("nan")),  # NaN confidence
    ],
)
def test_non_finite_or_absurd_poses_are_dropped_and_counted(tmp_path, caplog, corrupt) -> None:
    frames = frames_json(list(range(14)))
    for frame in (3, 8):
        corrupt(frames[frame]["batches"][0]["objects"][0]["pose3d"])
    path = _write(tmp_path, frames)
    rows = convert(path, tmp_path / "o", ConvertSettings())
    assert [r["num_frames"] for r in rows] == [12]
    assert f"{path}: dropped 2 poses with NaN, infinite or absurd" in caplog.text
    data = np.load(tmp_path / "o" / "data.npy")
    assert np.isfinite(data).all() and np.abs(data).max() < 10


def test_unseen_joints_may_hold_any_value(tmp_path) -> None:
    frames = frames_json(list(range(12)), missing=(4,))
    frames[0]["batches"][0]["objects"][0]["pose3d"][4 * 4] = float("nan")  # unused: conf 0
    rows = convert(_write(tmp_path, frames), tmp_path / "o", ConvertSettings())
    assert [r["num_frames"] for r in rows] == [12]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f[1].update(batches=["x"]), r"p\.json: frame 1: expected an object, got a string"),
        (lambda f: f[2]["batches"][0].update(objects=[7]),
         r"p\.json: frame 2, object 0: expected an object, got a number"),
        (lambda f: f[2]["batches"][0].update(objects={"a": 1}),
         r"p\.json: frame 2: objects is an object, not an array"),
        (lambda f: f[3]["batches"][0]["objects"][0].update(object_id="seven"),
         r"p\.json: frame 3, object 0: object_id 'seven' is a string, not an integer"),
        (lambda f: f[3]["batches"][0].update(frame_num="3"),
         r"p\.json: frame 3: frame_num '3' is a string, not an integer"),
        (lambda f: f[4]["batches"][0]["objects"][0].update(pose3d=["a"] * 136),
         r"p\.json: frame 4, object 0: pose3d must be an array of numbers"),
    ],
)  # fmt: skip
def test_malformed_frames_and_objects_name_file_frame_and_field(tmp_path, change, message):
    frames = frames_json(list(range(6)))
    change(frames)
    with pytest.raises(ValueError, match=message):
        convert(_write(tmp_path, frames), tmp_path / "o", ConvertSettings())


def test_convert_and_inference_exit_2_in_one_line(tmp_path, capsys) -> None:
    import train_nvpose

    frames = frames_json(list(range(12)))
    frames[5]["batches"][0]["objects"][0]["object_id"] = "x7"
    path = _write(tmp_path, frames)
    assert train_nvpose.main(["convert", "--data", path, "--output-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "p.json: frame 5, object 0: object_id 'x7'" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
