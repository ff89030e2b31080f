"""Checkpoints: atomic writes survive a crash mid-save, weights-only loading, RNG round trip,
rebuilding a registered model and refusing another family's checkpoint."""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import time

import numpy as np
import pytest
import torch
from test_engine_toys import ToyClassifier

from safeio import atomic
from train import checkpoint as ckpt


def _state(value: float) -> dict:
    model = ToyClassifier()
    with torch.no_grad():
        model.fc.weight.fill_(value)
    return ckpt.make_checkpoint(model, epoch=3, step=30, args={"lr_base": 0.1}, family="video")


def test_checkpoint_has_the_contract_keys_and_loads_weights_only(tmp_path):
    path = ckpt.atomic_save(_state(1.0), tmp_path / "latest.pth")[0]
    state = ckpt.load_checkpoint(path)
    assert set(ckpt.CHECKPOINT_KEYS) <= set(state)
    torch.load(path, weights_only=True)  # no pickled code anywhere in the file
    assert state["epoch"] == 3 and state["network"] == "ToyClassifier"


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "latest.pth"
    ckpt.atomic_save(_state(1.0), path)

    def crash(_fd):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        ckpt.atomic_save(_state(2.0), path)
    monkeypatch.undo()
    assert torch.all(ckpt.load_checkpoint(path)["model"]["fc.weight"] == 1.0)
    assert [p.name for p in tmp_path.iterdir()] == ["latest.pth"]  # temp file removed


def _save_forever(path: str, ready) -> None:
    big = {"model": {"w": torch.zeros(2_000_000)}, "step": 0}
    while True:
        big["model"]["w"].fill_(big["step"])
        ckpt.atomic_save(big, path)
        big["step"] += 1
        ready.set()


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_process_killed_while_saving_leaves_a_loadable_latest(tmp_path):
    path = tmp_path / "latest.pth"
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    context = mp.get_context(method)
    ready = context.Event()
    process = context.Process(target=_save_forever, args=(str(path), ready), daemon=True)
    process.start()
    try:
        assert ready.wait(timeout=60), "no checkpoint written"  # one complete save exists
        time.sleep(0.2 + random.random() * 0.3)  # land somewhere inside a later save
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.join()
    state = ckpt.load_checkpoint(path)
    assert state["step"] >= 0 and torch.all(state["model"]["w"] == state["step"])


def test_rng_states_round_trip_through_a_weights_only_file(tmp_path):
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    np.random.standard_normal()  # leave a cached gaussian in NumPy's state
    path = ckpt.atomic_save({"model": {}, "rng": ckpt.capture_rng()}, tmp_path / "rng.pth")[0]
    expected = (random.random(), np.random.standard_normal(), torch.rand(1))
    random.seed(99), np.random.seed(99), torch.manual_seed(99)
    ckpt.restore_rng(ckpt.load_checkpoint(path)["rng"])
    assert (random.random(), np.random.standard_normal()) == expected[:2]
    assert torch.equal(torch.rand(1), expected[2])


def test_unreadable_checkpoint_gives_a_clear_error(tmp_path):
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"broken\.pth: not a readable checkpoint"):
        ckpt.load_checkpoint(bad)


def _tiny_registered():
    from network import build_model, list_models

    names = list_models(tag="tiny")
    if not names:
        pytest.skip("no tiny model registered yet")
    name = names[0]
    return build_model(name, num_classes=3)


def test_load_model_rebuilds_a_registered_network_and_checks_the_family(tmp_path):
    model = _tiny_registered()
    family = model.network_family
    path = tmp_path / "model.pth"
    ckpt.atomic_save(ckpt.make_checkpoint(model, family=family, class_names=["a", "b", "c"]), path)
    rebuilt = ckpt.load_model(path, family=family)
    assert type(rebuilt) is type(model) and rebuilt.class_names == ["a", "b", "c"]
    for key, value in model.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[key], value)
    other = "skeleton" if family != "skeleton" else "video"
    with pytest.raises(ValueError, match=f"family '{family}'"):
        ckpt.load_model(path, family=other)
