"""The dataset converter on hand-made annotations: box arithmetic, splits, filters, sampling."""

import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from data.gesture.annotation import make_annotation, parse_annotation
from data.gesture.convert import (
    convert,
    crop_box,
    filter_entries,
    kfold_users,
    sample_by_class_weights,
    split_users,
)

W, H = 40, 30


# --- box arithmetic ---------------------------------------------------------------------------


def test_square_box_takes_the_longer_side_about_the_centre() -> None:
    # 10 × 4 box at (10, 10): centre (15, 12) → 10 × 10 square from (10, 7) to (20, 17).
    assert crop_box((10, 10, 10, 4), (W, H), square=True, enlarge_ratio=1.0) == (10, 7, 20, 17)


def test_enlarge_scales_about_the_centre() -> None:
    # 10 × 4 box at (10, 10) × 1.2 → 12 × 4.8 about (15, 12): x 9..21, y 9.6..14.4 → 10..14.
    assert crop_box((10, 10, 10, 4), (W, H), square=False, enlarge_ratio=1.2) == (9, 10, 21, 14)
    # squared then enlarged: 12 × 12 about (15, 12): 9..21, 6..18.
    assert crop_box((10, 10, 10, 4), (W, H), square=True, enlarge_ratio=1.2) == (9, 6, 21, 18)


def test_clip_to_the_image() -> None:
    # 20 × 20 box at (30, 20) reaches past the 40 × 30 image: clipped to (30, 20)-(40, 30).
    assert crop_box((30, 20, 20, 20), (W, H), square=True, enlarge_ratio=1.0) == (30, 20, 40, 30)
    # enlarged 2× about (5, 5): -5..15 → 0..15.
    assert crop_box((0, 0, 10, 10), (W, H), square=True, enlarge_ratio=2.0) == (0, 0, 15, 15)


def test_annotation_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text(json.dumps(make_annotation("x.png", "ok", (4, 6, 10, 12), (W, H))))
    parsed = parse_annotation(path)
    assert parsed.label == "ok" and parsed.image_size == (W, H)
    assert np.allclose(parsed.box, (4, 6, 10, 12))


# --- users, filters, sampling, folds -----------------------------------------------------------


def test_split_is_user_disjoint_and_uses_the_fraction() -> None:
    users = [f"u{i}" for i in range(10)]
    train, val, kpi = split_users(
        users, ["u0", "u1"], val_fraction=0.25, predefined_validation=None, seed=1
    )
    assert kpi == ["u0", "u1"] and len(val) == 2 and len(train) == 6
    assert not (set(train) & set(val)) and not ((set(train) | set(val)) & set(kpi))
    assert set(train) | set(val) | set(kpi) == set(users)


def test_predefined_validation_users() -> None:
    train, val, _ = split_users(
        ["a", "b", "c"], [], val_fraction=0.5, predefined_validation=["b"], seed=0
    )
    assert (train, val) == (["a", "c"], ["b"])
    with pytest.raises(ValueError, match="both validation and kpi"):
        split_users(["a", "b"], ["b"], val_fraction=0, predefined_validation=["b"], seed=0)


def test_kfolds_partition_the_users() -> None:
    folds = kfold_users([f"u{i}" for i in range(7)], 3, seed=0)
    assert sorted(len(f) for f in folds) == [2, 2, 3]
    assert sorted(u for f in folds for u in f) == sorted(f"u{i}" for i in range(7))
    with pytest.raises(ValueError, match="k_folds"):
        kfold_users(["a", "b"], 3, seed=0)


def _entry(cls: str, **meta: str) -> dict:
    return {"class": cls, "metadata": meta, "user_id": "u", "set": "data"}


def test_filters_per_class_and_star() -> None:
    entries = [
        _entry("ok", location="outdoor"),
        _entry("ok", location="indoor"),
        _entry("fist", location="outdoor"),
        _entry("fist", location="indoor", light="dark"),
    ]
    star = filter_entries(entries, {"*": [{"location": "outdoor"}]})
    assert [e["metadata"]["location"] for e in star] == ["indoor", "indoor"]
    per_class = filter_entries(entries, {"fist": [{"location": "indoor", "light": "dark"}]})
    assert len(per_class) == 3 and entries[3] not in per_class
    assert filter_entries(entries, {"*": [{}]}) == entries  # the tutorial's "no filter"


def test_class_weight_sampling_reaches_the_target_shares() -> None:
    entries = [_entry("a")] * 60 + [_entry("b")] * 20 + [_entry("c")] * 7
    sampled = sample_by_class_weights(entries, {"a": 0.5, "b": 0.5}, "average", seed=0)
    counts = Counter(e["class"] for e in sampled)
    assert counts == {"a": 40, "b": 40, "c": 7}  # total of a and b kept, c untouched
    over = Counter(
        e["class"] for e in sample_by_class_weights(entries, {"a": 1, "b": 1}, "oversample", 0)
    )
    under = Counter(
        e["class"] for e in sample_by_class_weights(entries, {"a": 1, "b": 1}, "undersample", 0)
    )
    assert (over["a"], over["b"]) == (60, 60) and (under["a"], under["b"]) == (20, 20)
    assert sampled == sample_by_class_weights(entries, {"a": 0.5, "b": 0.5}, "average", seed=0)


# --- the whole command on a hand-made set ------------------------------------------------------


def _write_image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.full((H, W, 3), 50, np.uint8)
    image[10:20, 10:20] = 200
    cv2.imwrite(str(path), image)


def _make_set(root: Path) -> None:
    """6 users × 2 classes × 2 frames, outdoor for u5, plus 5 bad annotations."""
    set_dir = root / "original" / "data"
    ann = set_dir / "annotation"
    ann.mkdir(parents=True)
    for u in range(6):
        for cls in ("ok", "fist"):
            for frame in range(2):
                image = set_dir / f"u{u}" / f"u{u}_{cls}" / f"{frame:06d}.png"
                _write_image(image)
                meta = {"location": "outdoor" if u == 5 else "indoor"}
                data = make_annotation(
                    f"/elsewhere/original/data/u{u}/u{u}_{cls}/{frame:06d}.png",
                    cls,
                    (10, 10, 10, 6),
                    (W, H),
                    meta,
                )
                (ann / f"u{u}_{cls}_{frame}.json").write_text(json.dumps(data))
    _write_image(set_dir / "u0" / "bad" / "x.png")
    bad = {
        "unknown_class": make_annotation(
            str(set_dir / "u0/bad/x.png"), "wave", (1, 1, 5, 5), (W, H)
        ),
        "zero_area": make_annotation(str(set_dir / "u0/bad/x.png"), "ok", (1, 1, 0, 5), (W, H)),
        "outside": make_annotation(str(set_dir / "u0/bad/x.png"), "ok", (45, 1, 5, 5), (W, H)),
        "missing": make_annotation(str(set_dir / "u0/bad/none.png"), "ok", (1, 1, 5, 5), (W, H)),
    }
    for name, data in bad.items():
        (ann / f"{name}.json").write_text(json.dumps(data))
    (ann / "broken.json").write_text("{not json")


def _specs(root: Path, **experiment: object) -> tuple[Path, Path]:
    dataset = {
        "mount_dir_path": str(root),
        "kpi_users": ["u0"],
        "bbox_enlarge_ratio": 1.0,
        "convert_bbox_square": True,
        "classes": ["ok", "fist"],
    }
    exp = {
        "set_list": {"train_val": ["data"], "kpi": ["data"]},
        "uid_list": {
            "uid_name": "user_id",
            "predefined_val_users": False,
            "val_fraction": 0.25,
            "validation": [],
            "kpi": ["u1"],
        },
        "image_feature_filter": {"train_val": {"*": [{"location": "outdoor"}]}, "kpi": {}},
        "sampling": {"sampling_mode": "average", "use_class_weights": False, "class_weights": {}},
    }
    exp.update(experiment)
    paths = (root / "dataset_config.json", root / "experiment.json")
    for path, spec in zip(paths, (dataset, exp)):
        path.write_text(json.dumps(spec))
    return paths


def test_convert_end_to_end(tmp_path: Path) -> None:
    _make_set(tmp_path)
    dataset_spec, experiment_spec = _specs(tmp_path)
    out = tmp_path / "out" / "data.json"
    data = convert(dataset_spec, experiment_spec, 0, out, "v1")
    assert json.loads(out.read_text())["experiment_name"] == "v1"
    assert data["summary"]["kept"] == 24
    assert sum(data["summary"]["skipped"].values()) == 5
    assert set(data["users"]["kpi"]) == {"u0", "u1"}
    users = {
        k: {e["user_id"] for e in data[k]["images"]}
        for k in ("train_set", "validation_set", "kpi_set")
    }
    assert users["kpi_set"] == {"u0", "u1"} and len(data["kpi_set"]["images"]) == 8
    assert not (users["train_set"] & users["validation_set"])
    all_images = data["train_set"]["images"] + data["validation_set"]["images"]
    assert all(e["metadata"]["location"] == "indoor" for e in all_images)  # u5 filtered out
    entry = data["kpi_set"]["images"][0]
    assert entry["bbox_coordinates"] == [[10, 8], [20, 8], [10, 18], [20, 18]]
    crop = cv2.imread(str(tmp_path / entry["bbox_path"]))
    assert crop.shape == (10, 10, 3)
    assert not list(out.parent.glob(".*tmp"))


def test_convert_kfolds_and_sampling_rate(tmp_path: Path) -> None:
    _make_set(tmp_path)
    dataset_spec, experiment_spec = _specs(tmp_path, image_feature_filter={})
    spec = json.loads(dataset_spec.read_text())
    dataset_spec.write_text(json.dumps({**spec, "sampling_rate": 2}))
    data = convert(dataset_spec, experiment_spec, 2, tmp_path / "data.json", "folds")
    assert data["summary"]["kept"] == 12  # every 2nd frame of each recording
    folds = data["folds"]
    assert len(folds) == 2
    val_users = [set(f["users"]["validation"]) for f in folds]
    assert not (val_users[0] & val_users[1]) and val_users[0] | val_users[1] == {
        "u2",
        "u3",
        "u4",
        "u5",
    }
    for fold in folds:
        assert not set(fold["users"]["train"]) & set(fold["users"]["validation"])


# --- hostile annotations -----------------------------------------------------------------------


def _files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    "user_id", ["../../x", "../../../escaped", "/ABSOLUTE/x", "..", ".", "", "a/../../b", "u\x00v"]
)
def test_crop_paths_stay_inside_the_output_folder(tmp_path: Path, user_id: str) -> None:
    root = tmp_path / "mount"
    _make_set(root)
    ann = root / "original" / "data" / "annotation"
    image = root / "original" / "data" / "u2" / "u2_ok" / "000000.png"
    user_id = user_id.replace("/ABSOLUTE", str(tmp_path / "elsewhere"))
    data = make_annotation(str(image), "ok", (10, 10, 10, 6), (W, H), {"user_id": user_id})
    (ann / "hostile.json").write_text(json.dumps(data))
    dataset_spec, experiment_spec = _specs(root)
    before = _files_under(tmp_path)
    result = convert(dataset_spec, experiment_spec, 0, root / "data.json", "v1")
    written = _files_under(tmp_path) - before
    crops = root / "extracted"
    assert written - {root / "data.json"} and all(
        p.resolve().is_relative_to(crops.resolve()) for p in written - {root / "data.json"}
    )
    assert not (tmp_path / "elsewhere").exists()
    entries = [
        e for key in ("train_set", "validation_set", "kpi_set") for e in result[key]["images"]
    ]
    hostile = [e for e in entries if e["bbox_path"].endswith("hostile.png")]
    for entry in hostile:  # the entry may be filtered into no set; if present, it is inside
        assert (root / entry["bbox_path"]).resolve().is_relative_to(crops.resolve())
        assert entry["user_id"] == user_id  # the split still sees the user as annotated


@pytest.mark.parametrize(
    "box", [(float("nan"), 10, 10, 6), (10, 10, float("inf"), 6), (1e308, 10, 10, 6),
            (10, 10, 10, -1e308), (10, float("-inf"), 10, 6)],
)  # fmt: skip
def test_a_non_finite_or_absurd_box_is_skipped_and_counted(tmp_path: Path, caplog, box) -> None:
    _make_set(tmp_path)
    ann = tmp_path / "original" / "data" / "annotation"
    image = tmp_path / "original" / "data" / "u2" / "u2_ok" / "000000.png"
    data = make_annotation(str(image), "ok", (10, 10, 10, 6), (W, H))
    data["completions"][0]["result"][1]["value"].update(
        dict(zip(("x", "y", "width", "height"), box))
    )
    (ann / "absurd.json").write_text(json.dumps(data))  # NaN/Infinity: Python's JSON extension
    result = convert(*_specs(tmp_path), 0, tmp_path / "data.json", "v1")
    assert result["summary"]["kept"] == 24
    assert sum(result["summary"]["skipped"].values()) == 6
    assert "absurd.json" in caplog.text


def test_a_huge_image_size_is_skipped(tmp_path: Path, caplog) -> None:
    _make_set(tmp_path)
    ann = tmp_path / "original" / "data" / "annotation"
    image = tmp_path / "original" / "data" / "u2" / "u2_ok" / "000000.png"
    data = make_annotation(str(image), "ok", (10, 10, 10, 6), (W, H))
    data["completions"][0]["result"][1]["original_width"] = float("inf")
    (ann / "inf_width.json").write_text(json.dumps(data))
    result = convert(*_specs(tmp_path), 0, tmp_path / "data.json", "v1")
    assert result["summary"]["kept"] == 24 and "inf_width.json" in caplog.text
