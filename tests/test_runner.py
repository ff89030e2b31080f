"""One exit-code policy for every family script: 0 ok, 1 diverged, 2 bad input; seeded first."""

import argparse

import torch

from data.video.framestore import FrameStoreError
from train.engine import NonFiniteLossError
from train.runner import run_command


def test_outcomes_map_to_exit_codes(caplog):
    args = argparse.Namespace(random_seed=None)
    assert run_command(lambda a: None, args) == 0
    assert run_command(lambda a: 3, args) == 3

    def diverged(_):
        raise NonFiniteLossError("loss is nan at epoch 2, step 7")

    def bad_input(_):
        raise FrameStoreError("/data/x/frames.db: not a frame database")

    assert run_command(diverged, args) == 1
    assert run_command(bad_input, args) == 2
    assert "frames.db: not a frame database" in caplog.text


def test_the_seed_is_applied_before_the_command():
    def draw(_):
        return int(torch.randint(0, 2**30, ()))

    args = argparse.Namespace(random_seed=7)
    assert run_command(draw, args) == run_command(draw, args)


def test_a_worker_error_is_its_own_one_line(caplog):
    from torch.utils.data import DataLoader, Dataset

    class Broken(Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, index):
            raise ValueError(f"/data/crop_{index}.png: bbox_path is not a readable image")

    def load(_):
        list(DataLoader(Broken(), num_workers=1))

    assert run_command(load, argparse.Namespace(random_seed=None)) == 2
    (record,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert record.getMessage() == "/data/crop_0.png: bbox_path is not a readable image"


def test_a_message_exit_is_a_bad_input(capsys):
    def stop(_):
        raise SystemExit("error: train needs --data")

    assert run_command(stop, argparse.Namespace(random_seed=None)) == 2
    assert capsys.readouterr().err == "error: train needs --data\n"
