"""The benchmark scripts: the shared timer, and tiny end-to-end runs that print their tables."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks import timing

ROOT = Path(__file__).resolve().parents[1]


def test_each_timed_call_follows_settling_calls_of_the_same_runtime(monkeypatch) -> None:
    monkeypatch.setattr(timing, "SETTLE_SECONDS", 0.02)
    calls: list[str] = []

    def runtime(name: str, seconds: float):
        def run() -> None:
            calls.append(name)
            time.sleep(seconds)

        return run

    medians = timing.interleaved_median(
        {"slow": runtime("slow", 0.012), "fast": runtime("fast", 0.001)}, repeats=3, warmup=0
    )
    assert medians["fast"] < medians["slow"]
    assert 0.01 <= medians["slow"] < 0.1
    # per round: settling calls of "slow" then its timed call, then the same for "fast"
    groups = [(name, len(list(run))) for name, run in itertools.groupby(calls)]
    assert [name for name, _ in groups] == ["slow", "fast"] * 3
    assert all(length >= 2 for _, length in groups)  # ≥ 1 settling call before each timed one
    assert all(length >= 3 for name, length in groups if name == "slow")  # ≥ 20 ms of settling


def _run(*argv: str) -> str:
    done = subprocess.run(
        [sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.slow
def test_stgcn_benchmark_runs_each_malloc_setting_in_its_own_process() -> None:
    out = _run("benchmarks/stgcn.py", "--batch-size", "1", "--frames", "16", "--repeats", "1",
               "--threads", "1", "--no-onnx")  # fmt: skip
    rows = [line.split() for line in out.splitlines() if line.startswith(("baseline", "eager"))]
    assert [(row[0], row[-4]) for row in rows] == [
        ("baseline", "glibc"), ("eager", "glibc"), ("baseline", "actrec"), ("eager", "actrec"),
    ]  # fmt: skip
    assert rows[0][-2:] == ["1.00x", "1.00x"] and rows[2][-1] == "1.00x"


@pytest.mark.slow
def test_stgcn_training_table_on_the_cpu_clock() -> None:
    out = _run("benchmarks/stgcn.py", "--train", "--no-inference", "--batch-size", "1",
               "--frames", "16", "--repeats", "1", "--threads", "1", "--clock", "cpu",
               "--malloc", "actrec")  # fmt: skip
    assert "cpu clock" in out.splitlines()[0]
    rows = [line.split() for line in out.splitlines() if line.startswith(("baseline", "eager"))]
    assert [(row[0], row[-3]) for row in rows] == [("baseline", "actrec"), ("eager", "actrec")]
    assert rows[0][-1] == "1.00x" and float(rows[1][-2]) > 0


@pytest.mark.slow
def test_deploy_benchmark_table_for_gesturenet() -> None:
    out = _run("benchmarks/deploy.py", "--models", "gesturenet", "--threads", "1", "--repeats",
               "1", "--throughput-repeats", "1", "--warmup", "0")  # fmt: skip
    table = out[out.rindex("| network |") :].splitlines()
    runtimes = [line.split("|")[2].strip() for line in table[2:]]
    assert runtimes == ["pytorch eager", "ort fp32", "ort int8 qoperator"]
    eager = table[2].split("|")
    assert eager[4].strip() == "1.00" and eager[7].strip() == "1.00"  # ratios to itself


def test_markdown_table_aligns_columns_and_collect_rows_prints_each_batch(capsys) -> None:
    table = timing.markdown_table(["a", "b"], "lr", [["x", "1.0"], ["y", "2.0"]])
    assert table == "| a | b |\n|---|---:|\n| x | 1.0 |\n| y | 2.0 |"
    rows = timing.collect_rows(
        1, "k-test-", lambda work: ([str(work.is_dir())], ["b", "c"]), lambda r: ",".join(r)
    )
    assert rows == ["True", "b", "c"]
    assert capsys.readouterr().out.splitlines() == ["True", "True,b,c"]
