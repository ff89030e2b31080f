"""Text inputs written by other tools: a UTF-8 BOM or CRLF line ends read like plain files."""

from __future__ import annotations

from pathlib import Path

import pytest

from data.video.splits import hmdb51_split, srtg_csv_split, ucf101_split

BOM = "\ufeff"


def prepared(data: Path, videos: dict[str, list[str]]) -> Path:
    for class_name, names in videos.items():
        for name in names:
            video = data / "jpg" / class_name / name
            video.mkdir(parents=True)
            (video / "frames.db").touch()
    return data


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_hmdb_split_with_bom_keeps_first_video(tmp_path, newline):
    data = prepared(tmp_path / "data", {"run": ["a", "b", "c"]})
    splits = tmp_path / "splits"
    splits.mkdir()
    text = newline.join(["a.avi 1", "b.avi 2", "c.avi 1"]) + newline
    (splits / "run_test_split1.txt").write_bytes((BOM + text).encode("utf-8"))
    result = hmdb51_split(data, splits, 1)
    assert sorted(r.name for r in result.train) == ["run/a", "run/c"]
    assert [r.name for r in result.val] == ["run/b"]


def test_ucf_lists_with_bom_and_crlf(tmp_path):
    data = prepared(tmp_path / "data", {"Run": ["v_Run_g01_c01", "v_Run_g02_c01"]})
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "classInd.txt").write_bytes(f"{BOM}1 Run\r\n".encode())
    (lists / "trainlist01.txt").write_bytes(f"{BOM}Run/v_Run_g01_c01.avi 1\r\n".encode())
    (lists / "testlist01.txt").write_bytes(f"{BOM}Run/v_Run_g02_c01.avi\r\n".encode())
    result = ucf101_split(data, lists, 1)
    assert result.class_names == ["Run"]
    assert [r.name for r in result.train] == ["Run/v_Run_g01_c01"]
    assert [r.name for r in result.val] == ["Run/v_Run_g02_c01"]


def test_srtg_csv_with_bom_and_crlf(tmp_path):
    data = prepared(tmp_path / "data", {"jump": ["x1", "x2"]})
    csv_file = tmp_path / "labels.csv"
    csv_file.write_bytes(f"{BOM}label,id,split\r\njump,x1,train\r\njump,x2,val\r\n".encode())
    result = srtg_csv_split(data, csv_file)
    assert [r.name for r in result.train] == ["jump/x1"]
    assert [r.name for r in result.val] == ["jump/x2"]


# ----------------------------------------------------------------------------- labels
FORGED = "walk\nresults.txt : run 1.0000\x1b[2J\r"


def test_printable_escapes_control_characters_only():
    from train.validation import printable

    assert printable("brush_hair") == "brush_hair"
    assert printable("café 走る") == "café 走る"
    escaped = printable(FORGED)
    assert "\n" not in escaped and "\r" not in escaped and "\x1b" not in escaped
    assert escaped == "walk\\nresults.txt : run 1.0000\\x1b[2J\\r"


def test_onnx_labels_are_printed_escaped():
    from export.metadata import MetadataView

    view = MetadataView.__new__(MetadataView)
    view.metadata = {"labels": ["sit", FORGED]}
    assert view.label(0) == "sit"
    assert "\n" not in view.label(1) and "\x1b" not in view.label(1)
    assert view.label(7) == "7"


def test_reports_print_class_names_escaped():
    import numpy as np

    from train.metrics import EvalResult, per_class_report, tao_report

    result = EvalResult(
        clip_top1=0.5, clip_top5=1.0, video_top1=0.5, video_top5=1.0,
        per_class_accuracy=np.array([1.0, 0.0]), mean_class_accuracy=0.5,
        confusion=np.array([[1, 0], [1, 0]]), num_clips=2, num_videos=2, loss=float("nan"),
    )  # fmt: skip
    for report in (tao_report(result, ["sit", FORGED]), per_class_report(result, ["sit", FORGED])):
        assert "\x1b" not in report and "\r" not in report
        assert not any(line.startswith("results.txt") for line in report.splitlines())
