"""``train_hmdb.py demo`` (``make demo``) end to end at a toy size: every step runs, the demo
labels every video and reports the seconds of each step and the video-level accuracy."""

from __future__ import annotations

import pytest

import train_hmdb

STEPS = ("synth", "prepare", "train", "evaluate", "export", "inference")


@pytest.mark.slow
def test_demo_runs_every_step_and_reports_their_seconds(tmp_path, capsys):
    out = tmp_path / "demo"
    toy = ["--videos-per-class", "2", "--epochs", "1", "--workers", "0", "--seed", "1"]
    assert train_hmdb.main(["demo", "--out", str(out), *toy]) == 0
    lines = capsys.readouterr().out.splitlines()
    per_step = [line for line in lines if line.startswith("demo seconds per step")]
    assert len(per_step) == 1
    assert [part.split()[0] for part in per_step[0].split(": ", 1)[1].split(", ")] == list(STEPS)
    assert lines[-1].startswith("demo finished in ")
    assert "video-level validation accuracy: " in lines[-1]
    assert (out / "model.onnx").stat().st_size > 0
    # 10 classes x 2 videos: inference labels the training and the validation videos.
    assert len((out / "inference.jsonl").read_text(encoding="utf-8").splitlines()) == 20
