"""DDP on 2 CPU processes (gloo): a stalled rank is named within --dist-timeout instead of hanging
the job, and BatchNorm statistics are per rank (DDP(2) then differs from one process at the same
global batch; without BatchNorm they agree, tests/test_distributed.py)."""

from __future__ import annotations

import os
import time

import pytest
import torch
import torch.multiprocessing as mp
from test_engine_toys import CLASS_NAMES, ToyClassifier, ToyDataset, free_port, make_args

from train.distributed import DistributedTimeoutError, cleanup_distributed, init_distributed
from train.engine import fit
from train.history import read_metrics
from train.runner import run_command

# fork where there is one: the children inherit the imported modules (spawn re-imports torch).
METHOD = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
TIMEOUT_MINUTES = 0.1  # 6 s
STALL_FILE = "stalled_at"


class _StallingModel(ToyClassifier):
    """Rank 1 stops answering before its second epoch (as a hung data loader would) and writes
    the moment it stalled into ``STALL_FILE`` beside the run directory."""

    def __init__(self, stall_file: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.stall_file = stall_file

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        if epoch == 1 and int(os.environ["RANK"]) == 1:
            with open(self.stall_file, "w") as file:
                file.write(repr(time.time()))
            time.sleep(120)


def _join(rank: int, port: int) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE="2",
    )
    torch.set_num_threads(1)
    init_distributed("cpu", TIMEOUT_MINUTES)


def _stall_worker(rank: int, port: int, output_dir: str, results) -> None:
    _join(rank, port)
    args = make_args(output_dir, "--end-epoch", "3", "--dist-timeout", str(TIMEOUT_MINUTES))
    model = _StallingModel(f"{output_dir}.{STALL_FILE}", dropout=0.0)
    try:
        fit(model, ToyDataset(16), None, args, family="video", class_names=CLASS_NAMES)
        results.put((rank, "finished", time.time()))
    except DistributedTimeoutError as error:
        results.put((rank, str(error), time.time()))


def test_a_stalled_rank_is_named_within_the_timeout(tmp_path):
    context = mp.get_context(METHOD)
    results = context.SimpleQueue()
    port = free_port()
    workers = [
        context.Process(target=_stall_worker, args=(rank, port, str(tmp_path / "run"), results))
        for rank in range(2)
    ]
    started = time.monotonic()
    for worker in workers:
        worker.start()
    try:
        workers[0].join(timeout=90)
        elapsed = time.monotonic() - started
        assert workers[0].exitcode == 0 and not results.empty()
        rank, message, named_at = results.get()
    finally:
        for worker in workers:
            worker.kill()
            worker.join()
    assert rank == 0
    assert message.startswith("rank 1 did not answer within 0.1 min (--dist-timeout)"), message
    assert "\n" not in message
    stalled_at = float((tmp_path / f"run.{STALL_FILE}").read_text())
    # named within 1.2x the timeout of the stall (6 s timeout + 1 s check-in = 1.17x), with 0.5 s
    # for rank 0 to reach its next collective on a loaded machine
    print(f"stall named {named_at - stalled_at:.2f} s after it began")
    assert named_at - stalled_at < 1.2 * TIMEOUT_MINUTES * 60 + 0.5
    assert elapsed < 60
    # epoch 1 was committed before the stall; a restart resumes from it
    assert [row["epoch"] for row in read_metrics(tmp_path / "run")] == [1]


def test_the_runner_reports_a_stall_in_one_line_with_exit_code_1(caplog):
    def stalled(_args):
        raise DistributedTimeoutError("rank 3 did not answer within 10 min (--dist-timeout)")

    assert run_command(stalled, make_args("unused")) == 1
    assert "rank 3 did not answer" in caplog.text


def _bn_worker(rank: int, port: int, output_dir: str) -> None:
    _join(rank, port)
    _train_bn(output_dir, batch_size=2)
    cleanup_distributed()


def _train_bn(output_dir, batch_size: int) -> None:
    torch.manual_seed(0)
    flags = ("--end-epoch", "1", "--no-auto-resume", "--batch-size", str(batch_size))
    fit(ToyClassifier(batch_norm=True, dropout=0.0), ToyDataset(24, noise=0.0), None,
        make_args(output_dir, *flags), family="video", class_names=CLASS_NAMES)  # fmt: skip


def test_batch_norm_statistics_are_per_rank(tmp_path):
    # Same global batch (2 ranks x 2 = 4 clips), same data and weights: only the BatchNorm
    # statistics differ (over 2 clips per rank instead of 4), and so does the training loss.
    mp.start_processes(
        _bn_worker, args=(free_port(), str(tmp_path / "ddp")), nprocs=2, start_method=METHOD
    )
    _train_bn(tmp_path / "single", batch_size=4)
    ddp, single = read_metrics(tmp_path / "ddp")[0], read_metrics(tmp_path / "single")[0]
    assert ddp["train_loss"] != pytest.approx(single["train_loss"], rel=1e-4)


def test_only_collective_timeouts_count_as_a_stall():
    from train.distributed import _is_collective_timeout

    gloo = "[gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting 3000ms for recv operation"
    assert _is_collective_timeout(RuntimeError(gloo))
    assert _is_collective_timeout(RuntimeError("Watchdog caught collective operation timeout"))
    assert not _is_collective_timeout(RuntimeError("DataLoader timed out after 5 seconds"))


@pytest.mark.parametrize(("minutes", "seconds"), [(0.05, 1.0), (0.5, 3.0), (10, 30.0), (30, 30.0)])
def test_the_check_in_takes_a_tenth_of_the_timeout_within_1_to_30_s(minutes, seconds):
    import datetime

    from train.distributed import check_in_seconds

    assert check_in_seconds(datetime.timedelta(minutes=minutes)) == seconds
