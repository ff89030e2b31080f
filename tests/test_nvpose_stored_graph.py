"""A TAO ST-GCN checkpoint stores its adjacency ``A``: train_nvpose adopts the graph that
reproduces it (and logs it) or refuses a contradicting flag; a network never computes silently
with another partition. Sequences that do not fit a checkpoint's network are one line, exit 2."""

from __future__ import annotations

import logging
import pickle

import numpy as np
import pytest
import torch
import yaml

import train_nvpose
from network import build_model


def _tao_checkpoint(path, layout: str, legacy: bool) -> None:
    """A TAO PyTorch Lightning file: ``state_dict`` with ``model.`` prefixes and ``model.A``."""
    model = build_model("st_gcn_tiny", num_classes=3, graph_layout=layout, graph_legacy=legacy)
    state = {f"model.{key}": value for key, value in model.state_dict().items()}
    state["model.A"] = model.A.clone()
    torch.save({"epoch": 4, "pytorch-lightning_version": "2.0.0", "state_dict": state}, path)


@pytest.fixture(scope="module")
def ntu_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ntu")
    rng = np.random.default_rng(0)
    np.save(root / "data.npy", rng.normal(size=(6, 3, 8, 25, 1)).astype(np.float32))
    with open(root / "labels.pkl", "wb") as handle:
        pickle.dump(([f"s{i}" for i in range(6)], [i % 3 for i in range(6)]), handle)
    _tao_checkpoint(root / "tao.ckpt", "ntu-rgb+d", legacy=True)
    return root


def _train(root, out, *flags):
    return train_nvpose.main([
        "train", "--network", "st_gcn_tiny", "--train-data", str(root / "data.npy"),
        "--train-labels", str(root / "labels.pkl"), "--val-data", str(root / "data.npy"),
        "--val-labels", str(root / "labels.pkl"), "--pretrained", str(root / "tao.ckpt"),
        "--output-dir", str(out), "--end-epoch", "1", "--batch-size", "3", "--workers", "0",
        "--device", "cpu", "--no-tensorboard", "--no-plots", "--no-auto-resume", *flags,
    ])  # fmt: skip


def test_unset_graph_flags_take_the_checkpoint_graph(ntu_data, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    assert _train(ntu_data, tmp_path / "run", "--graph-layout", "ntu-rgb+d") == 0
    assert "is the graph --graph-layout ntu-rgb+d --graph-strategy spatial --graph-legacy" in (
        caplog.text
    )
    saved = yaml.safe_load((tmp_path / "run" / "args.yaml").read_text())
    assert saved["graph_legacy"] is True and saved["graph_strategy"] == "spatial"


def test_a_contradicting_flag_is_refused(ntu_data, tmp_path, capsys):
    code = _train(ntu_data, tmp_path / "run", "--graph-layout", "ntu-rgb+d", "--no-graph-legacy")
    assert code == 2
    err = capsys.readouterr().err
    assert "tao.ckpt: its adjacency A is the graph" in err and "drop --graph-legacy" in err
    assert "Traceback" not in err
    assert not (tmp_path / "run" / "latest.pth").exists()


@pytest.mark.parametrize("command", ["evaluate", "inference"])
@pytest.mark.parametrize(("joints", "channels", "message"),
                         [(34, 3, "34 joints per pose, but the network's graph layout 'ntu-rgb+d' "
                           "has 25"), (25, 2, "2 channels per joint, but the network takes 3")])  # fmt: skip
def test_sequences_that_do_not_fit_the_checkpoint(
    ntu_data, tmp_path_factory, capsys, command, joints, channels, message
):
    run = tmp_path_factory.getbasetemp() / "fit_run"
    if not (run / "best.pth").exists():
        assert _train(ntu_data, run, "--graph-layout", "ntu-rgb+d") == 0
    data = tmp_path_factory.mktemp("bad") / "data.npy"
    np.save(data, np.zeros((6, channels, 8, joints, 1), np.float32))
    argv = [command, "--checkpoint", str(run / "best.pth"), "--data", str(data),
            "--output-dir", str(data.parent / "out"), "--device", "cpu", "--workers", "0"]  # fmt: skip
    if command == "evaluate":
        argv += ["--labels", str(ntu_data / "labels.pkl")]
    capsys.readouterr()
    assert train_nvpose.main(argv) == 2
    err = capsys.readouterr().err
    assert f"{data}: {message}" in err and "Traceback" not in err
