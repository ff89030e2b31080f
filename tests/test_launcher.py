"""The real launcher: torchrun agents with c10d rendezvous (as scripts/slurm/multi_node.sbatch
starts them, one per node) and torchrun's restarts after a killed worker.

Each run trains tests/launch_toy.py (the toy classifier through the one engine) and is compared
with one process trained in this test at the same global batch: final weights equal.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from launch_toy import train
from test_engine_toys import free_port

from train.checkpoint import load_checkpoint
from train.history import read_metrics

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TARGET = str(ROOT / "tests" / "launch_toy.py")
GLOBAL_BATCH = 4
LAUNCH_SECONDS = 240


def _torchrun(*flags: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *flags]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _final_weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "latest.pth")["model"]


def _assert_same_weights(run: Path, reference: Path) -> float:
    got, want = _final_weights(run), _final_weights(reference)
    assert got.keys() == want.keys()
    for key, value in want.items():
        torch.testing.assert_close(got[key], value, rtol=1e-5, atol=1e-6)
    return max(float((got[key] - want[key]).abs().max()) for key in want)


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    """One process, global batch, no launcher: the reference run."""
    run = tmp_path_factory.mktemp("single") / "run"
    train(str(run), GLOBAL_BATCH)
    return run


def test_two_nodes_joined_by_c10d_rendezvous_train_as_one_process(tmp_path, single):
    run, port = tmp_path / "two_nodes", free_port()
    rendezvous = ["--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d",
                  "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "actrec-test"]  # fmt: skip
    nodes = [
        subprocess.Popen(
            _torchrun(*rendezvous, TARGET, str(run), str(GLOBAL_BATCH)),
            env=_env(),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        outputs = [node.communicate(timeout=LAUNCH_SECONDS)[0] for node in nodes]
    finally:
        for node in nodes:
            node.kill()
    assert [node.returncode for node in nodes] == [0, 0], outputs
    assert [row["epoch"] for row in read_metrics(run)] == [1, 2, 3]
    _assert_same_weights(run, single)


def test_a_killed_worker_is_restarted_and_resumes_to_the_same_weights(tmp_path, single):
    run = tmp_path / "restarted"
    kill = ["1", "1", "2"]  # rank 1, epoch 1 (the second), its second step
    launcher = _torchrun("--standalone", "--nproc-per-node", "2", "--max-restarts", "1")
    done = subprocess.run(
        [*launcher, TARGET, str(run), str(GLOBAL_BATCH), *kill],
        env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=LAUNCH_SECONDS,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "restarted.killed").read_text() == "rank 1 killed at epoch 1 step 2"
    assert [row["epoch"] for row in read_metrics(run)] == [1, 2, 3]
    _assert_same_weights(run, single)
