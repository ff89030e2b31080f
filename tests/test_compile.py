"""--compile: torch.compile where it works, one warning and eager execution where it does not."""

from __future__ import annotations

import logging
import os
import shutil

import pytest
import torch
from torch import nn

import train_gesture
import train_hmdb
import train_nvpose
from train.checkpoint import unwrap_model
from train.compile import CompiledModel, compile_model


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))


def _failing_compile(message: str):
    def compile_(model, *args, **kwargs):
        def run(*inputs):
            raise RuntimeError(message + "\nsecond line of a long inductor error")

        return run

    return compile_


def test_a_failed_compilation_warns_once_and_runs_eagerly(monkeypatch, caplog):
    monkeypatch.setattr(torch, "compile", _failing_compile("C compiler not found"))
    model, x = _net(), torch.randn(5, 4)
    expected = model(x)
    wrapped = compile_model(model)
    with caplog.at_level(logging.WARNING, logger="train.compile"):
        first, second = wrapped(x), wrapped(x)
    warnings = [r.getMessage() for r in caplog.records if r.name == "train.compile"]
    assert len(warnings) == 1
    assert "RuntimeError: C compiler not found" in warnings[0]
    assert "second line" not in warnings[0]
    assert wrapped.failure == "RuntimeError: C compiler not found"
    torch.testing.assert_close(first, expected)
    torch.testing.assert_close(second, expected)


def test_backward_after_the_fallback_trains_the_same_parameters(monkeypatch):
    monkeypatch.setattr(torch, "compile", _failing_compile("boom"))
    model = _net()
    wrapped = compile_model(model)
    wrapped(torch.randn(5, 4)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert list(wrapped.parameters()) == list(model.parameters())


def test_torch_compile_refusing_up_front_returns_the_model(monkeypatch, caplog):
    def refuse(model, *args, **kwargs):
        raise RuntimeError("Python 3.99 is not supported by torch.compile")

    monkeypatch.setattr(torch, "compile", refuse)
    model = _net()
    with caplog.at_level(logging.WARNING, logger="train.compile"):
        assert compile_model(model) is model
    assert "Python 3.99" in caplog.text


def test_disabled_is_the_model_itself():
    model = _net()
    assert compile_model(model, enabled=False) is model


def test_the_wrapper_is_transparent_to_checkpoints_and_attributes(monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda model, *a, **k: model)
    model = _net()
    model.network_name = "toy"
    wrapped = compile_model(model)
    assert isinstance(wrapped, CompiledModel)
    assert unwrap_model(wrapped) is model
    assert wrapped.network_name == "toy"
    wrapped.eval()
    assert not model.training  # one module: modes follow the wrapper
    with pytest.raises(AttributeError):
        wrapped.no_such_attribute  # noqa: B018


@pytest.mark.parametrize(
    ("script", "commands"),
    [
        (train_hmdb, ("train", "evaluate", "inference")),
        (train_nvpose, ("train", "evaluate", "inference")),
        (train_gesture, ("train", "evaluate", "inference")),
    ],
    ids=["hmdb", "nvpose", "gesture"],
)
def test_every_family_command_takes_the_flag(script, commands):
    parser = script.get_args_parser()
    choices = parser._subparsers._group_actions[0].choices
    for command in commands:
        flags = {flag for action in choices[command]._actions for flag in action.option_strings}
        assert {"--compile", "--no-compile"} <= flags, command


@pytest.mark.slow  # imports dynamo and traces: seconds
def test_a_real_torch_compile_trains_like_eager():
    """Dynamo and AOTAutograd for real (the aot_eager backend: no C++ build, seconds)."""
    model = _net()
    x = torch.randn(5, 4)
    expected = model(x)
    expected.sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    wrapped = compile_model(model, backend="aot_eager")
    out = wrapped(x)
    out.sum().backward()
    assert wrapped.failure is None, wrapped.failure
    torch.testing.assert_close(out, expected)
    for grad, param in zip(grads, model.parameters()):
        torch.testing.assert_close(param.grad, grad)


# The first inductor compile on a machine builds its precompiled C++ headers: 6 minutes on a
# loaded 2-core machine (24 s once built), too long for every run of the suite.
@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("ACTREC_TEST_INDUCTOR") != "1", reason="ACTREC_TEST_INDUCTOR=1")
@pytest.mark.skipif(shutil.which("gcc") is None and shutil.which("cc") is None, reason="no cc")
def test_a_tiny_model_really_compiles_with_inductor_and_matches_eager():
    model, x = _net().eval(), torch.randn(5, 4)
    expected = model(x)
    wrapped = compile_model(model)
    with torch.no_grad():
        out = wrapped(x)
    assert wrapped.failure is None, wrapped.failure
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
