"""train_hmdb.py and onnx-infer on raw video folders (``videos/<class>/<video>.mp4``), no prepare."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest

import train_hmdb
from data.video.splits import find_videos, load_split
from export import cli

CLASSES = ["move_left", "move_right", "grow"]
CLIP = ["--clip-length", "4", "--clip-size", "32", "--short-side", "36"]
FAST = ["--workers", "0", "--no-tensorboard", "--no-plots", "--log-interval", "1"]


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Synthetic mp4 class folders, HMDB split files that name ``<video>.avi`` (as HMDB51's
    do), the same videos prepared, and a model trained 1 epoch on the raw files."""
    root = tmp_path_factory.mktemp("raw")
    videos, data, splits = root / "videos", root / "data", root / "splits"
    synth = ["synth", "--out", str(videos), "--classes", *CLASSES, "--videos-per-class", "4"]
    assert train_hmdb.main([*synth, "--frames", "10", "--size", "48x36", "--workers", "1"]) == 0
    splits.mkdir()
    for file in (videos / "splits").iterdir():
        (splits / file.name).write_text(file.read_text().replace(".mp4 ", ".avi "))
    shutil.rmtree(videos / "splits")
    prepare = ["prepare", "--videos", str(videos), "--out", str(data), "--short-side", "36"]
    assert train_hmdb.main([*prepare, "--workers", "1"]) == 0
    run = root / "run"
    train = ["train", "--data", str(videos), "--splits", str(splits), "--network", "r3d_tiny"]
    optim = ["--batch-size", "4", "--end-epoch", "1", "--lr-base", "0.01"]
    assert train_hmdb.main([*train, *CLIP, *optim, *FAST, "--output-dir", str(run)]) == 0
    return {"videos": videos, "data": data, "splits": splits, "run": run}


def test_raw_and_prepared_roots_give_the_same_split(raw) -> None:
    files = find_videos(raw["videos"])
    assert sorted(files) == sorted(CLASSES)
    assert all(p.suffix == ".mp4" for vids in files.values() for p in vids.values())
    from_raw = load_split(raw["videos"], raw["splits"])
    from_prepared = load_split(raw["data"], raw["splits"])
    assert not from_raw.missing and not from_prepared.missing
    for subset in ("train", "val"):
        names = [r.name for r in getattr(from_raw, subset)]
        assert names == [r.name for r in getattr(from_prepared, subset)] and names
        assert [r.label for r in getattr(from_raw, subset)] == [
            r.label for r in getattr(from_prepared, subset)
        ]


def test_evaluate_on_raw_videos(raw, tmp_path) -> None:
    out = tmp_path / "eval"
    evaluate = ["evaluate", "--checkpoint", str(raw["run"] / "best.pth"), "--data"]
    assert train_hmdb.main([*evaluate, str(raw["videos"]), "--output-dir", str(out),
                            "--eval-mode", "conv", "--segments", "2", "--workers", "0"]) == 0  # fmt: skip
    assert json.loads((out / "metrics.json").read_text())["video_top1"] >= 0


def _infer(raw, path: Path, jsonl: Path) -> tuple[int, list[dict]]:
    argv = ["inference", "--checkpoint", str(raw["run"] / "best.pth"), "--videos", str(path)]
    code = train_hmdb.main([*argv, "--jsonl", str(jsonl), "--workers", "0"])
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()] if code == 0 else []
    return code, rows


def test_inference_labels_a_file_a_class_folder_and_a_root(raw, tmp_path) -> None:
    one = raw["videos"] / "grow" / "grow_000.mp4"
    code, rows = _infer(raw, one, tmp_path / "one.jsonl")
    assert code == 0 and [r["video"] for r in rows] == [str(one)] and rows[0]["label"] in CLASSES
    code, rows = _infer(raw, raw["videos"] / "grow", tmp_path / "class.jsonl")
    assert code == 0 and len(rows) == 4
    code, rows = _infer(raw, raw["videos"], tmp_path / "all.jsonl")
    assert code == 0 and len(rows) == 12


def test_inference_of_an_unreadable_file_is_one_line(raw, tmp_path, capsys) -> None:
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 300)
    code, _ = _infer(raw, bad, tmp_path / "bad.jsonl")
    assert code == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "Traceback" not in err


def test_onnx_infer_reads_a_video_file_and_a_folder(raw, tmp_path, capsys) -> None:
    onnx = tmp_path / "m.onnx"
    export = ["export", "--checkpoint", str(raw["run"] / "best.pth"), "--onnx", str(onnx)]
    assert train_hmdb.main(export) == 0
    folder = tmp_path / "clips"
    folder.mkdir()
    for name in ("grow_000", "grow_001"):
        shutil.copy(raw["videos"] / "grow" / f"{name}.mp4", folder)
    (folder / "z_broken.mkv").write_bytes(b"nope" * 50)
    capsys.readouterr()
    parser = argparse.ArgumentParser()
    cli.add_ort_arguments(parser)
    args = parser.parse_args(["--onnx", str(onnx), "--input", str(folder), "--mode", "conv",
                              "--num-segments", "2"])  # fmt: skip
    assert cli.run_ort(args, family="video") == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" : ")[0] for line in lines] == [str(folder / "grow_000.mp4")] * 2 + [
        str(folder / "grow_001.mp4")
    ] * 2
    args = parser.parse_args(["--onnx", str(onnx), "--input", str(folder / "z_broken.mkv")])
    assert cli.run_ort(args, family="video") == 2
    assert "z_broken.mkv: cannot open the video" in capsys.readouterr().err
