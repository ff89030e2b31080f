"""One exit-code policy for every family script: 0 ok, 1 diverged, 2 bad input; seeded first."""

import argparse

import torch

from data.video.framestore import FrameStoreError
from train.engine import NonFiniteLossError
from train.runner import (
    FamilyScript,
    command_parser,
    command_table,
    run_command,
    run_steps,
    set_defaults,
)


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


def test_a_demo_stops_at_its_first_failing_step(caplog):
    ran = []

    def main(argv):
        ran.append(argv[0])
        return 2 if argv[0] == "train" else 0

    steps = [["synth"], ["train", "--epochs", "1"], ["export"]]
    assert run_steps("train_x.py", main, steps) == 2
    assert ran == ["synth", "train"]
    assert "demo: step 'train' failed with exit code 2" in caplog.text
    assert run_steps("train_x.py", main, [["synth"], ["export"]]) == 0


def test_a_family_script_reads_the_spec_table_of_its_subcommand(tmp_path):
    def get_parser():
        parser = argparse.ArgumentParser()
        commands = parser.add_subparsers(dest="command", required=True)
        for name in ("train", "evaluate"):
            sub = commands.add_parser(name)
            sub.add_argument("-e", "--experiment-spec", dest="experiment_spec")
            sub.add_argument("--batch-size", type=int, default=1)
        return parser

    def tables(command, spec):  # train reads train.batch_size, evaluate evaluate.batch_size
        return {f"{command}.batch_size": "batch_size"}

    spec = tmp_path / "spec.yaml"
    spec.write_text("train: {batch_size: 8}\nevaluate: {batch_size: 3}\n", encoding="utf-8")
    script = FamilyScript(get_parser, {"train": lambda a: a.batch_size}, tables)
    assert script.parse_args(["train", "-e", str(spec)]).batch_size == 8
    assert script.parse_args(["evaluate", "-e", str(spec)]).batch_size == 3
    assert script.main(["train", "-e", str(spec), "--batch-size", "5"]) == 5


def test_command_table_names_commands_after_their_functions() -> None:
    def cmd_trt_engine(args):
        return 0

    def run(args):
        return 1

    assert command_table(cmd_trt_engine, synth=run) == {"trt-engine": cmd_trt_engine, "synth": run}
    try:
        command_table(run)
    except ValueError as error:
        assert "cmd_<command>" in str(error)
    else:
        raise AssertionError("a function not named cmd_<command> was accepted")


def test_set_defaults_reaches_only_the_named_subcommand() -> None:
    parser, commands = command_parser("toy", "epilog")
    for name in ("train", "evaluate"):
        commands.add_parser(name).add_argument("--lr", type=float, default=0.1)
    set_defaults(commands, {"train": {"lr": 0.5}})
    assert parser.parse_args(["train"]).lr == 0.5
    assert parser.parse_args(["evaluate"]).lr == 0.1


def test_a_demo_times_each_finished_step():
    def main(argv):
        sum(range(200_000))  # some CPU time
        return 2 if argv[0] == "train" else 0

    seconds = {}
    assert run_steps("train_x.py", main, [["synth"], ["prepare"], ["train"]], seconds) == 2
    assert list(seconds) == ["synth", "prepare"]  # the failed step is not timed
    assert all(wall >= 0 and cpu >= 0 for wall, cpu in seconds.values())
