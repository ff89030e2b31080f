"""Split parsers on small hand-written split files; missing videos are counted, never dropped."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from data.video.splits import (
    SplitError,
    detect_split_format,
    find_videos,
    folder_split,
    hmdb51_split,
    load_split,
    srtg_csv_split,
    ucf101_split,
)


def prepare_dirs(data: Path, videos: dict[str, list[str]], layout: str = "sqlite") -> Path:
    """Empty but complete-looking prepared videos (what find_videos checks)."""
    for class_name, names in videos.items():
        for name in names:
            if layout == "sqlite":
                video = data / "jpg" / class_name / name
                video.mkdir(parents=True)
                (video / "frames.db").touch()
            else:
                (data / class_name / name / "rgb").mkdir(parents=True)
    return data


def names(records) -> list[str]:
    return sorted(r.name for r in records)


@pytest.mark.parametrize("layout", ["sqlite", "frames"])
def test_find_videos_skips_partial_and_incomplete(tmp_path, layout):
    data = prepare_dirs(tmp_path, {"run": ["a", "b"], "walk": ["c"]}, layout)
    root = data / "jpg" if layout == "sqlite" else data
    (root / "run" / ".d.partial").mkdir()
    (root / "walk" / "incomplete").mkdir()
    (root / "notes").mkdir()
    found = find_videos(data)
    assert {c: sorted(v) for c, v in found.items()} == {"run": ["a", "b"], "walk": ["c"]}


def write_hmdb(splits: Path) -> Path:
    splits.mkdir()
    (splits / "brush_hair_test_split1.txt").write_text(
        "April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1 \n"
        "Blonde_being_brushed_brush_hair_f_nm_np2_ri_med_0.avi 2 \n"
        "unused_brush_hair_0.avi 0 \n\n"
    )
    (splits / "kick_test_split1.txt").write_text(
        "Kill_Bill_Vol._2_kick_f_cm_np1_le_bad_0.avi 1\r\n"
        "gone_kick_0.avi 2\r\n"
        "gone_kick_1.avi 1\r\n"
    )
    (splits / "kick_test_split2.txt").write_text("gone_kick_0.avi 1\n")
    return splits


def test_hmdb51_split_ids_dots_and_missing(tmp_path, caplog):
    data = prepare_dirs(
        tmp_path / "data",
        {
            "brush_hair": [
                "April_09_brush_hair_u_nm_np1_ba_goo_0",
                "Blonde_being_brushed_brush_hair_f_nm_np2_ri_med_0",
                "unused_brush_hair_0",
            ],
            "kick": ["Kill_Bill_Vol._2_kick_f_cm_np1_le_bad_0"],
        },
    )
    splits = write_hmdb(tmp_path / "splits")
    with caplog.at_level(logging.WARNING, logger="data.video.splits"):
        result = hmdb51_split(data, splits, split=1)
    assert result.class_names == ["brush_hair", "kick"]
    assert names(result.train) == [
        "brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0",
        "kick/Kill_Bill_Vol._2_kick_f_cm_np1_le_bad_0",
    ]
    assert names(result.val) == ["brush_hair/Blonde_being_brushed_brush_hair_f_nm_np2_ri_med_0"]
    assert {r.label for r in result.train} == {0, 1}
    assert result.train[0].path.is_dir()
    assert sorted(result.missing) == ["kick/gone_kick_0", "kick/gone_kick_1"]
    assert "2 entries" in caplog.text and "gone_kick_0" in caplog.text


def test_hmdb51_other_split_and_errors(tmp_path):
    data = prepare_dirs(tmp_path / "data", {"kick": ["gone_kick_0"]})
    splits = write_hmdb(tmp_path / "splits")
    result = hmdb51_split(data, splits, split=2)
    assert result.class_names == ["kick"] and names(result.train) == ["kick/gone_kick_0"]
    with pytest.raises(SplitError, match=r"no \*_test_split3\.txt"):
        hmdb51_split(data, splits, split=3)
    with pytest.raises(SplitError, match="1, 2 or 3"):
        hmdb51_split(data, splits, split=4)
    (splits / "kick_test_split3.txt").write_text("a.avi 7\n")
    with pytest.raises(SplitError, match=r"kick_test_split3.txt:1"):
        hmdb51_split(data, splits, split=3)


def test_ucf101_lists_and_case_mismatch(tmp_path):
    data = prepare_dirs(
        tmp_path / "data",
        {
            "ApplyEyeMakeup": ["v_ApplyEyeMakeup_g08_c01", "v_ApplyEyeMakeup_g01_c01"],
            "HandstandPushups": ["v_HandStandPushups_g08_c01"],
        },
        layout="frames",
    )
    lists = tmp_path / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_text("2 HandStandPushups\n1 ApplyEyeMakeup\n")
    (lists / "trainlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\n"
        "HandStandPushups/v_HandStandPushups_g08_c01.avi 2\n"
    )
    (lists / "testlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\nHandStandPushups/v_missing.avi\n"
    )
    result = ucf101_split(data, lists, split=1)
    assert result.class_names == ["ApplyEyeMakeup", "HandStandPushups"]
    assert [(r.name, r.label) for r in sorted(result.train, key=lambda r: r.name)] == [
        ("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01", 0),
        ("HandStandPushups/v_HandStandPushups_g08_c01", 1),
    ]
    assert names(result.val) == ["ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01"]
    assert result.missing == ["HandStandPushups/v_missing"]
    assert detect_split_format(lists) == "ucf101"
    with pytest.raises(SplitError, match=r"testlist02\.txt"):
        (lists / "trainlist02.txt").write_text("")
        ucf101_split(data, lists, split=2)


def test_srtg_csv_uses_split_column_and_timed_folders(tmp_path):
    # A parent folder named "train..." must not matter (upstream defect 18).
    data = prepare_dirs(
        tmp_path / "training_data",
        {"abseiling": ["abc_000010_000020", "def"], "air drumming": ["ghi"]},
    )
    csv_file = tmp_path / "training_data" / "kinetics_val.csv"
    csv_file.write_text(
        "label,youtube_id,time_start,time_end,split\n"
        "air drumming,ghi,,,train\n"
        "abseiling,abc,10.0,20.0,train\n"
        "abseiling,def,,,val\n"
        "abseiling,zzz,,,test\n"
    )
    result = srtg_csv_split(data, csv_file)
    assert result.class_names == ["abseiling", "air drumming"]
    assert names(result.train) == ["abseiling/abc_000010_000020", "air drumming/ghi"]
    assert names(result.val) == ["abseiling/def"]
    assert result.missing == ["abseiling/zzz"]
    assert detect_split_format(csv_file) == "csv"


def test_srtg_csv_id_column_default_split_and_errors(tmp_path):
    data = prepare_dirs(tmp_path / "data", {"dive": ["01"]})
    train_csv = tmp_path / "diving48_train.csv"
    train_csv.write_text("label,id\ndive,01\n")
    assert names(load_split(data, train_csv).train) == ["dive/01"]
    bad = tmp_path / "bad.csv"
    bad.write_text("label,name\ndive,01\n")
    with pytest.raises(SplitError, match=r"bad\.csv.*columns"):
        srtg_csv_split(data, bad)
    bad.write_text("label,id,split\ndive,01,later\n")
    with pytest.raises(SplitError, match=r"bad\.csv:2"):
        srtg_csv_split(data, bad)


def test_folder_split_stratified_and_deterministic(tmp_path):
    data = prepare_dirs(
        tmp_path / "data",
        {"a": [f"a{i}" for i in range(10)], "b": [f"b{i}" for i in range(5)], "c": ["c0"]},
    )
    first = folder_split(data, val_fraction=0.2, seed=3)
    assert first.class_names == ["a", "b", "c"]
    val_per_class = {c: sum(r.name.startswith(c + "/") for r in first.val) for c in "abc"}
    assert val_per_class == {"a": 2, "b": 1, "c": 0}
    assert len(first.train) + len(first.val) == 16 and not first.missing
    assert not {r.name for r in first.train} & {r.name for r in first.val}
    again = folder_split(data, val_fraction=0.2, seed=3)
    assert again.train == first.train and again.val == first.val
    seeds = {tuple(names(folder_split(data, 0.2, seed=s).val)) for s in range(6)}
    assert len(seeds) > 1
    assert load_split(data).class_names == ["a", "b", "c"]
    with pytest.raises(SplitError, match="val_fraction"):
        folder_split(data, val_fraction=1.0)


def test_missing_data_root_and_unknown_split_folder(tmp_path):
    with pytest.raises(SplitError, match="not found"):
        find_videos(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SplitError, match="not a split"):
        detect_split_format(tmp_path / "empty")
