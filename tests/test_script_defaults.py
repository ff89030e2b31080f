"""The three family scripts have one shape, and a subcommand's defaults are its own.

argparse copies a parent parser's Action objects into every child by reference, so one parent
shared by several subcommands makes ``set_defaults`` on one of them change the others (this once
gave ``train_nvpose.py train`` the demo's 12 epochs, ``./demo_nvpose``, WARNING and 0 workers).
"""

from __future__ import annotations

import argparse
import importlib
import inspect

import pytest

from train.args import common_parser

SCRIPTS = ["train_hmdb", "train_nvpose", "train_gesture"]


def subcommands(module) -> dict[str, argparse.ArgumentParser]:
    parser = module.get_args_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def effective_defaults(parser: argparse.ArgumentParser) -> dict[str, object]:
    """What ``parse_args`` fills in for flags not given: the action defaults (argparse applies
    them before the parser-level ``set_defaults`` values, which only fill dests without one)."""
    defaults = {a.dest: a.default for a in parser._actions if a.dest != "help"}
    return {**parser._defaults, **defaults}


COMMON_DEFAULTS = {
    a.dest: a.default for a in common_parser()._actions if a.dest is not argparse.SUPPRESS
}


@pytest.mark.parametrize("script", SCRIPTS)
def test_no_action_is_shared_between_subcommands(script):
    owners: dict[int, str] = {}
    for name, sub in subcommands(importlib.import_module(script)).items():
        for action in sub._actions:
            other = owners.setdefault(id(action), name)
            assert other == name, f"{script}: {action.dest} is shared by {other} and {name}"


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_subcommand_has_its_declared_defaults(script):
    """A subcommand built on the shared flags has their defaults, changed only by its own entry
    of the script's ``COMMAND_DEFAULTS``."""
    module = importlib.import_module(script)
    declared = getattr(module, "COMMAND_DEFAULTS", {})
    checked = 0
    for name, sub in subcommands(module).items():
        actual = effective_defaults(sub)
        if not {"batch_size", "random_seed"} <= set(actual):  # not built on the shared flags
            assert name not in declared
            continue
        own = declared.get(name, {})
        expected = {d: own.get(d, COMMON_DEFAULTS[d]) for d in actual if d in COMMON_DEFAULTS}
        assert {d: actual[d] for d in expected} == expected, f"{script} {name}"
        assert set(own) <= set(actual), f"{script} {name}: declares defaults of unknown flags"
        checked += 1
    assert checked >= 3


def test_nvpose_train_does_not_take_the_demo_defaults():
    import train_nvpose

    args = train_nvpose.parse_args(["train"])
    common = {d: COMMON_DEFAULTS[d] for d in ("output_dir", "log_level", "workers")}
    assert {d: getattr(args, d) for d in common} == common
    assert (args.end_epoch, args.lr_base, args.lr_steps, args.batch_size, args.nesterov) == (
        70, 0.1, [10, 60], 16, True,
    )  # fmt: skip
    demo = train_nvpose.parse_args(["demo"])
    assert (demo.epochs, demo.out, demo.log_level, demo.workers) == (
        12,
        "demo_nvpose",
        "WARNING",
        0,
    )
    evaluate = train_nvpose.parse_args(["evaluate"])
    assert evaluate.batch_size == COMMON_DEFAULTS["batch_size"]


def test_gesture_train_defaults_stay_in_train():
    import train_gesture

    train = train_gesture.parse_args(["train"])
    assert (train.weight_decay, train.workers, train.batch_size, train.random_seed) == (
        0.0, 2, 64, 108,
    )  # fmt: skip
    evaluate = train_gesture.parse_args(["evaluate"])
    for dest in ("workers", "batch_size", "random_seed"):
        assert getattr(evaluate, dest) == COMMON_DEFAULTS[dest]


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_scripts_have_one_shape(script):
    module = importlib.import_module(script)
    assert set(subcommands(module)) >= {"train", "evaluate", "inference", "export", "demo"}
    for name, command in module.COMMANDS.items():
        assert name in subcommands(module)
        if command.__module__ == script:  # the script's own commands, not data/ modules' run
            assert command.__name__ == "cmd_" + name.replace("-", "_")
            assert list(inspect.signature(command).parameters) == ["args"]
            assert inspect.signature(command).return_annotation in (int, "int")
    for func in ("get_args_parser", "parse_args", "main"):
        assert callable(getattr(module, func))
    assert list(inspect.signature(module.main).parameters) == ["argv"]
