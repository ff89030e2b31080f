"""Distributed helpers, and DDP with 2 CPU processes (gloo) equal to 1 process, same global batch."""

from __future__ import annotations

import os

import pytest
import torch
import torch.multiprocessing as mp
from test_engine_toys import CLASS_NAMES, ToyClassifier, ToyDataset, free_port, make_args

from train.checkpoint import load_checkpoint
from train.distributed import (
    cleanup_distributed,
    get_rank,
    get_world_size,
    init_distributed,
    is_main_process,
    reduce_across_processes,
)
from train.engine import fit
from train.history import read_metrics

GLOBAL_BATCH = 4
FLAGS = ("--end-epoch", "2", "--lr-steps", "1", "--no-auto-resume", "--weight-decay", "1e-3")


def test_single_process_fallbacks():
    info = init_distributed("cpu")
    assert (info.rank, info.world_size, info.distributed) == (0, 1, False)
    assert get_rank() == 0 and get_world_size() == 1 and is_main_process()
    assert reduce_across_processes(2.5) == 2.5
    tensor = torch.tensor([1.0, 2.0])
    assert reduce_across_processes(tensor, op="sum") is tensor


def _train(output_dir, batch_size: int) -> None:
    torch.manual_seed(0)
    model = ToyClassifier(dropout=0.0)  # no BN, no dropout: per-rank randomness would differ
    args = make_args(output_dir, *FLAGS, "--batch-size", str(batch_size))
    fit(
        model,
        ToyDataset(24, noise=0.0),
        ToyDataset(10, seed=1, clips_per_video=2, noise=0.0),
        args,
        family="video",
        class_names=CLASS_NAMES,
    )


def _worker(rank: int, world_size: int, port: int, output_dir: str, results) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
    )
    torch.set_num_threads(1)
    info = init_distributed("cpu")
    results.put((rank, float(reduce_across_processes(float(rank + 1), op="sum"))))
    _train(output_dir, GLOBAL_BATCH // world_size)
    assert info.distributed
    cleanup_distributed()


def test_ddp_two_cpu_processes_equal_one_process(tmp_path):
    # fork where there is one: the children inherit the imported modules (spawn re-imports torch).
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    results = mp.get_context(method).SimpleQueue()
    args = (2, free_port(), str(tmp_path / "ddp"), results)
    mp.start_processes(_worker, args=args, nprocs=2, join=True, start_method=method)
    assert sorted(results.get() for _ in range(2)) == [(0, 3.0), (1, 3.0)]
    _train(tmp_path / "single", GLOBAL_BATCH)
    ddp_rows, single_rows = read_metrics(tmp_path / "ddp"), read_metrics(tmp_path / "single")
    assert len(ddp_rows) == len(single_rows) == 2
    for ddp, single in zip(ddp_rows, single_rows):
        for key in (
            "lr",
            "train_loss",
            "train_top1",
            "val_loss",
            "val_video_top1",
            "val_num_clips",
        ):
            assert ddp[key] == pytest.approx(single[key], rel=1e-5, abs=1e-6), key
    ddp_state = load_checkpoint(tmp_path / "ddp" / "latest.pth")["model"]
    single_state = load_checkpoint(tmp_path / "single" / "latest.pth")["model"]
    for key, value in single_state.items():
        torch.testing.assert_close(ddp_state[key], value, rtol=1e-5, atol=1e-6)
    assert not (tmp_path / "ddp" / "tensorboard").exists()  # only rank 0 writes, and no TB here
