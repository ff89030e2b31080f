"""``benchmarks/gpu_check.py --cpu-smoke``: the GPU check's CPU subset runs every step it can here
and reports the CUDA-only ones as skipped with a reason, so the script cannot rot unnoticed."""

from __future__ import annotations

import json

import pytest

from benchmarks import gpu_check


@pytest.mark.slow
def test_cpu_smoke_runs_every_step(tmp_path):
    assert gpu_check.main(["--cpu-smoke", "--out", str(tmp_path), "--budget-s", "240"]) == 0
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    status = {step["step"].split(".")[0]: step for step in report["steps"]}
    assert sorted(status, key=int) == [str(n) for n in sorted(gpu_check.STEPS)]
    assert {n: s["status"] for n, s in status.items() if s["status"] != "ok"} == {
        "2": "skipped",
        "7": "skipped",
    }
    assert "CUDA" in status["2"]["detail"] and "GPU" in status["7"]["detail"]
    modes = {(r["network"], r["mode"]): r for r in status["3"]["rows"]}
    assert modes[("r3d_tiny", "fp32")]["vs_fp32"] == 1.0
    assert modes[("srtg_r3d_tiny", "fp16+scaler")]["status"] == "skipped"
    assert "resumed" in status["5"]["detail"] and "parity" in status["5"]["detail"]
    text = (tmp_path / "gpu_check.txt").read_text()
    assert text.startswith("ActRec GPU check") and "decode-only" in text


def test_a_failing_step_is_reported_and_the_others_run(tmp_path, monkeypatch):
    def broken(ctx):
        raise RuntimeError("first line\nthe last line names the error")

    monkeypatch.setitem(gpu_check.STEPS, 2, ("broken", broken))
    assert gpu_check.main(["--cpu-smoke", "--out", str(tmp_path), "--steps", "1", "2", "7"]) == 1
    steps = json.loads((tmp_path / "gpu_check.json").read_text())["steps"]
    assert [s["status"] for s in steps] == ["ok", "failed", "skipped"]
    assert steps[1]["detail"] == "the last line names the error"


def test_error_line_prefers_the_child_error_over_torchrun_noise():
    output = "x\nValueError: --data: folder not found\n====\nChildFailedError:\nerror_file: <N/A>\n"
    assert gpu_check.error_line(output) == "ValueError: --data: folder not found"
