"""Spec files, key=value overrides, precedence (CLI > spec > defaults) and args.yaml."""

from __future__ import annotations

import argparse
import json

import pytest
import yaml

from train.args import common_parser
from train.config import SpecError, load_spec, parse_override, resolve_args, write_resolved_args

SPEC_MAP = {
    "train_config.optim.lr": "lr_base",
    "train_config.optim.lr_steps": "lr_steps",
    "train_config.optim.lr_scheduler": ("lr_schedule", lambda name: {"MultiStep": "multistep",
                                                                      "AutoReduce": "plateau"}[name]),
    "train_config.num_epochs": "end_epoch",
    "dataset_config.batch_size": "batch_size",
    "model_config.rgb_seq_length": "clip_length",
}  # fmt: skip

TAO_SPEC = """
model_config:
  rgb_seq_length: 3
  backbone: resnet_18
train_config:
  optim:
    lr: 1e-3
    lr_scheduler: AutoReduce
    lr_steps: [5, 15]
  num_epochs: 20
dataset_config:
  batch_size: 32
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(parents=[common_parser()])
    parser.add_argument("--clip-length", type=int, default=16)
    return parser


def _with_subcommand() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("train", parents=[common_parser()]).add_argument("--clip-length", type=int)
    return parser


@pytest.fixture
def spec_file(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(TAO_SPEC)
    return path


def test_defaults_without_spec():
    args = resolve_args(_parser(), [], SPEC_MAP)
    assert args.lr_base == 0.01 and args.clip_length == 16 and args.spec is None


def test_spec_values_become_defaults_and_are_typed(spec_file):
    args = resolve_args(_parser(), ["-e", str(spec_file)], SPEC_MAP)
    assert args.lr_base == pytest.approx(1e-3)  # YAML reads "1e-3" as a string
    assert args.lr_steps == [5, 15] and args.end_epoch == 20 and args.batch_size == 32
    assert args.lr_schedule == "plateau" and args.clip_length == 3
    assert args.spec["model_config"]["backbone"] == "resnet_18"


def test_command_line_beats_override_beats_spec(spec_file):
    argv = ["-e", str(spec_file), "model_config.rgb_seq_length=32", "dataset_config.batch_size=8",
            "--batch-size", "4", "train_config.optim.lr_steps=[1, 2, 3]"]  # fmt: skip
    args = resolve_args(_parser(), argv, SPEC_MAP)
    assert args.clip_length == 32
    assert args.batch_size == 4
    assert args.lr_steps == [1, 2, 3]
    assert args.spec["model_config"]["rgb_seq_length"] == 32


def test_override_by_dest_and_flag_values_are_not_overrides(spec_file):
    argv = ["--output-dir", "runs/a=b", "batch_size=6", "-e", str(spec_file)]
    args = resolve_args(_parser(), argv, SPEC_MAP)
    assert args.output_dir == "runs/a=b" and args.batch_size == 6


def test_subcommand_parser(spec_file):
    args = resolve_args(
        _with_subcommand(), ["train", "-e", str(spec_file), "--end-epoch", "2"], SPEC_MAP
    )
    assert args.command == "train" and args.clip_length == 3 and args.end_epoch == 2


def test_json_spec(tmp_path):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"train_config": {"num_epochs": 7}}))
    assert resolve_args(_parser(), ["-e", str(path)], SPEC_MAP).end_epoch == 7


@pytest.mark.parametrize(
    ("text", "message"),
    [("a: [1, 2", "not a valid spec"), ("- 1\n- 2\n", "a spec must be a mapping")],
)
def test_bad_spec_files_name_the_file(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"bad\.yaml: {message}"):
        load_spec(path)
    with pytest.raises(FileNotFoundError, match=r"missing\.yaml"):
        load_spec(tmp_path / "missing.yaml")


def test_unknown_override_and_bad_choice_are_errors(spec_file):
    with pytest.raises(SpecError, match="unknown override 'no_such_key'"):
        resolve_args(_parser(), ["no_such_key=3"], SPEC_MAP)
    bad = {"train_config.optim.lr_scheduler": "optimizer"}
    with pytest.raises(SpecError, match=r"lr_scheduler: 'AutoReduce' is not one of sgd, adamw"):
        resolve_args(_parser(), ["-e", str(spec_file)], bad)


def test_yaml_typed_override_values():
    assert parse_override("a.b=32") == ("a.b", 32)
    assert parse_override("a=[1, 2]") == ("a", [1, 2])
    assert parse_override("flag=false") == ("flag", False)
    assert parse_override("path=/x/y=z") == ("path", "/x/y=z")


def test_args_yaml_round_trip(tmp_path, spec_file):
    args = resolve_args(_parser(), ["-e", str(spec_file), "--lr-steps", "3", "4"], SPEC_MAP)
    args.handler = print  # callables (sub-command functions) are left out
    path = write_resolved_args(args, tmp_path / "run")
    written = yaml.safe_load(path.read_text())
    assert written["lr_steps"] == [3, 4] and written["clip_length"] == 3
    assert "handler" not in written and written["experiment_spec"] == str(spec_file)


def test_spec_boolean_for_a_no_flag_is_a_single_value(tmp_path):
    """``--x/--no-x`` flags (nargs=0) take a spec boolean as is: ``false`` must not become ``[False]``."""
    import argparse

    from train.config import resolve_args

    spec = tmp_path / "spec.yaml"
    spec.write_text("model:\n  edge_importance: false\n", encoding="utf-8")
    parser = argparse.ArgumentParser()
    parser.add_argument("-e", "--experiment-spec")
    parser.add_argument("--edge-importance", action=argparse.BooleanOptionalAction, default=True)
    args = resolve_args(parser, ["-e", str(spec)], {"model.edge_importance": "edge_importance"})
    assert args.edge_importance is False
