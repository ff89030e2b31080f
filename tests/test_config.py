"""Spec files, key=value overrides, precedence (CLI > spec > defaults) and args.yaml."""

from __future__ import annotations

import argparse
import json

import pytest
import yaml

from train.args import common_parser
from train.config import (
    KEY_NOTE,
    Ignored,
    SpecError,
    add_spec_arguments,
    load_spec,
    log_spec_notes,
    parse_override,
    resolve_args,
    spec_table,
    square_shape,
    write_resolved_args,
)

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


# ----------------------------------------------------------------------------- checks and notes
def _spec_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_spec_arguments(parser)
    parser.add_argument("--clip-size", type=int, default=112)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--label-map", default=None)
    parser.add_argument("--lr-schedule", default="multistep")
    return parser


CHECKED = {
    "model.input_height": "clip_size",
    "model.input_width": "clip_size",
    "model": "checkpoint",
    "dataset.label_map": "label_map",
    "optim.lr_scheduler": ("lr_schedule", {"MultiStep": "multistep", "AutoReduce": "plateau"}),
    "encryption_key": Ignored("not encrypted"),
}


def test_notes_unknown_keys_with_hints_and_known_keys_of_other_commands(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("encryption_key: k\nmodel: {input_heigth: 3}\nevaluate: {checkpoint: c}\n")
    args = resolve_args(_spec_parser(), ["-e", str(path), "-k", "x"], CHECKED,
                        known_keys={"evaluate.checkpoint"})  # fmt: skip
    notes = {message: level for level, message in args.spec_notes}
    assert notes[f"{path}: unknown spec key model.input_heigth (did you mean model.input_height?)"]
    assert notes[f"{path}: encryption_key is accepted and ignored: not encrypted"] == 20
    assert KEY_NOTE in notes and not any("evaluate" in note for note in notes)
    with pytest.raises(SpecError, match=r"unknown spec keys \(--strict-spec\): model.input_heigth"):
        resolve_args(_spec_parser(), ["-e", str(path), "--strict-spec"], CHECKED)


def test_log_spec_notes_logs_and_drops_them(caplog):
    args = argparse.Namespace(spec_notes=[(30, "x: unknown spec key a.b")])
    with caplog.at_level("INFO", logger="train.config"):
        log_spec_notes(args)
    assert caplog.records[0].levelname == "WARNING" and "a.b" in caplog.records[0].message
    assert not hasattr(args, "spec_notes")


def test_conflicts_choices_and_sections(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("model: {input_height: 3, input_width: 4}\n")
    with pytest.raises(SpecError, match=r"input_height .3. and model.input_width .4. disagree"):
        resolve_args(_spec_parser(), ["-e", str(path)], CHECKED)
    # a key=value override wins over the spec key it disagrees with
    args = resolve_args(_spec_parser(), ["-e", str(path), "model.input_width=3"], CHECKED)
    assert args.clip_size == 3
    # a scalar override beside a section of the same name (TAO 3/4 model= vs TAO 5 model:)
    args = resolve_args(_spec_parser(), ["-e", str(path), "model=m.pth", "model.input_width=3"],
                        CHECKED)  # fmt: skip
    assert args.checkpoint == "m.pth" and args.spec["model"]["input_height"] == 3
    with pytest.raises(
        SpecError, match=r"optim.lr_scheduler: 'Cosine' is not one of MultiStep, Auto"
    ):
        resolve_args(_spec_parser(), ["optim.lr_scheduler=Cosine"], CHECKED)
    path.write_text("dataset: {label_map: {walk: 0, sit: 1}}\n")  # a mapping value stays whole
    assert resolve_args(_spec_parser(), ["-e", str(path)], CHECKED).label_map == {
        "walk": 0,
        "sit": 1,
    }


def test_spec_map_may_depend_on_the_spec_and_shapes_are_checked(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("size: [64, 64]\n")
    spec_map = lambda spec: {"size": ("clip_size", square_shape)}  # noqa: E731
    assert resolve_args(_spec_parser(), ["-e", str(path)], spec_map).clip_size == 64
    for bad in ("112", "[64, 32]"):
        with pytest.raises(SpecError, match=r"size: bad value .* \(expected"):
            resolve_args(_spec_parser(), ["-e", str(path), f"size={bad}"], spec_map)
    assert spec_table({"a": "clip_size", "b": Ignored("why")}) == [
        ("a", "--clip-size"),
        ("b", "ignored: why"),
    ]
