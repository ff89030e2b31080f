"""Unit checks behind issue 19 sections 1-3 (the end-to-end cases are in test_bad_inputs.py):
the restricted unpickler's array budget, label and path checks of annotation lists, YAML
aliases, NTU counts, printable names and the batch memory estimate."""

from __future__ import annotations

import pickle
import resource

import numpy as np
import pytest

from data.skeleton.formats import read_ntu_skeleton, read_pyskl
from data.video.mmaction_lists import mmaction_split, read_annotation_list
from safeio.limits import MAX_UNNAMED_CLASSES, check_label_range, derived_class_count
from safeio.safe_pickle import UnsafePickleError, safe_loads
from safeio.text import printable
from tests.hostile_files import BOMB_SHAPE, _billion_laughs, _pickle_bomb
from train.config import load_spec
from train.validation import check_batch_memory, clip_batch_bytes


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ----------------------------------------------------------------------------- safe_pickle
@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_arrays_round_trip_as_plain_ndarrays(protocol: int) -> None:
    value = {"k": [np.arange(6, dtype=np.float32).reshape(2, 3), np.zeros((2, 2), np.float16)],
             "f": np.zeros((3, 4), order="F"), "e": np.zeros((0, 3)), "s": np.float32(3.5),
             "t": np.array(["x", "yy"]), "b": np.arange(3, dtype=">i4")}  # fmt: skip
    out = safe_loads(pickle.dumps(value, protocol=protocol), "x.pkl", arrays=True)
    assert type(out["k"][0]) is np.ndarray and out["k"][0].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert out["f"].flags.f_contiguous and out["e"].shape == (0, 3) and out["s"] == 3.5
    assert out["t"].tolist() == ["x", "yy"] and out["b"].tolist() == [0, 1, 2]


def test_an_array_larger_than_the_file_is_refused_before_allocation() -> None:
    data = _pickle_bomb()  # claims 2 GiB in a few hundred bytes
    before = _peak_mib()
    with pytest.raises(UnsafePickleError, match=r"bomb\.pkl: a numpy array claims shape") as info:
        safe_loads(data, "bomb.pkl", arrays=True)
    assert _peak_mib() - before < 100
    assert str(BOMB_SHAPE) in str(info.value)


def test_one_buffer_set_into_many_arrays_is_refused() -> None:
    """Memo references let one 400 kB bytes object fill many arrays: the total is capped."""
    array = np.zeros(100_000, np.float32)
    reduce_ = array.__reduce__()
    state = reduce_[2]

    class Shared:
        def __reduce__(self):
            return (reduce_[0], reduce_[1], state)

    data = pickle.dumps([Shared() for _ in range(50)], protocol=2)
    assert len(data) < 2 * array.nbytes  # the raw bytes are written once, then referenced
    with pytest.raises(UnsafePickleError, match="more than the file can hold"):
        safe_loads(data, "shared.pkl", arrays=True)


def test_object_arrays_and_cycles() -> None:
    with pytest.raises(UnsafePickleError, match="dtype object is not allowed"):
        safe_loads(pickle.dumps(np.array([1, "a"], dtype=object)), "o.pkl", arrays=True)
    loop: list = []
    loop.append(loop)
    assert safe_loads(pickle.dumps(loop))[0][0] is not None  # no hang on a self-reference


def test_pyskl_keypoints_are_not_copied(tmp_path) -> None:
    keypoint = np.arange(2 * 5 * 3 * 2, dtype=np.float32).reshape(2, 5, 3, 2)  # (M, T, V, C)
    annotation = {"frame_dir": "a", "label": 1, "keypoint": keypoint}
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps({"annotations": [annotation] * 200}))  # 200 references
    source = read_pyskl(path)
    first = source.data.samples[0]
    assert all(sample is first for sample in source.data.samples)  # one view, shared
    np.testing.assert_array_equal(source.data[3], keypoint.transpose(3, 1, 2, 0))


# ----------------------------------------------------------------------------- labels, paths
def test_class_counts() -> None:
    assert derived_class_count([0, 4, 2], "x.pkl") == 5
    assert derived_class_count([MAX_UNNAMED_CLASSES - 1], "x") == MAX_UNNAMED_CLASSES
    assert derived_class_count(list(range(1500)), "x") == 1500  # as many samples as classes
    with pytest.raises(ValueError, match=r"x\.pkl:s1: label 1000000000 would make"):
        derived_class_count([0, 10**9], "x.pkl", ["s0", "s1"])
    with pytest.raises(ValueError, match=r"l\.txt:7: label 3 is outside the 3 classes"):
        check_label_range([0, 3], 3, "l.txt", ["6", "7"])
    check_label_range([-1, 2], 3, "unlabelled")


def _lists(root, val_line: str, label_map: str | None = None):
    (root / "data" / "a").mkdir(parents=True)
    (root / "data" / "a" / "v.mp4").write_bytes(b"")
    lists = root / "lists"
    lists.mkdir()
    (lists / "x_train_split_1_videos.txt").write_text("a/v.mp4 0\n")
    (lists / "x_val_split_1_videos.txt").write_text(f"a/v.mp4 0\n{val_line}\n")
    if label_map is not None:
        (lists / "label_map.txt").write_text(label_map)
    return root / "data", lists


@pytest.mark.parametrize("line", ["../../outside.mp4 0", "/etc/passwd.mp4 1", "a/../../x.mp4 0"])
def test_list_entries_stay_in_the_data_root(tmp_path, line: str) -> None:
    data, lists = _lists(tmp_path, line)
    with pytest.raises(ValueError, match=r"x_val_split_1_videos\.txt:2: entry .* leads outside"):
        mmaction_split(data, lists)
    inside = read_annotation_list(lists / "x_train_split_1_videos.txt", data)
    assert inside == [(data / "a" / "v.mp4", 0, "a/v.mp4")]


def test_list_labels_are_checked_against_the_class_count(tmp_path) -> None:
    data, lists = _lists(tmp_path / "one", "a/v.mp4 999999999")
    with pytest.raises(ValueError, match=r"x_val_split_1_videos\.txt:2: label 999999999"):
        mmaction_split(data, lists)
    data, lists = _lists(tmp_path / "two", "a/v.mp4 2", label_map="a\nb\n")
    with pytest.raises(ValueError, match=r":2: label 2 is outside the 2 classes .*label_map\.txt"):
        mmaction_split(data, lists)


# ----------------------------------------------------------------------------- specs, NTU
@pytest.mark.parametrize("unknown", [False, True])
def test_yaml_aliases_are_refused(tmp_path, unknown: bool) -> None:
    spec = tmp_path / "bomb.yaml"
    spec.write_text(_billion_laughs(under_unknown_key=unknown))
    before = _peak_mib()
    with pytest.raises(ValueError, match=r"bomb\.yaml: .*line 4: YAML aliases \(\*a0\)"):
        load_spec(spec)
    assert _peak_mib() - before < 50
    spec.write_text("train_config:\n  optim:\n    lr: 0.1\n")  # no alias: read as before
    assert load_spec(spec) == {"train_config": {"optim": {"lr": 0.1}}}


def test_ntu_counts_are_checked_against_the_file(tmp_path) -> None:
    path = tmp_path / "S001C001P001R001A001.skeleton"
    path.write_text("99999999999999\n0\n0\n")
    with pytest.raises(ValueError, match=r"line 1: 99999999999999 frames, but the file has"):
        read_ntu_skeleton(path)
    path.write_text("2\n0\n0\n")
    assert read_ntu_skeleton(path).shape == (3, 2, 25, 2)


# ----------------------------------------------------------------------------- printing, memory
def test_printable_escapes_forged_lines() -> None:
    name = "gr\x1b[31mow\nFORGED RESULT grow 1.00"
    assert printable(name) == "gr\\x1b[31mow\\nFORGED RESULT grow 1.00"
    assert printable("café/视频.mp4") == "café/视频.mp4"


def test_batch_memory_estimate() -> None:
    # 8 clips of 3 x 16 x 112 x 112 float32 plus 16 frames of 128 x 170 RGB each
    assert clip_batch_bytes(8, 16, 112, 128) == 8 * 3 * 16 * 112 * 112 * 4 + 8 * 16 * 128 * 170 * 3
    check_batch_memory(clip_batch_bytes(8, 16, 112, 128), "--clip-size 112")
    with pytest.raises(ValueError, match=r"--clip-size 100000: one batch needs about .* TB"):
        check_batch_memory(clip_batch_bytes(8, 16, 100000, 114285), "--clip-size 100000")
