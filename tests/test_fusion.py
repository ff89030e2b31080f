"""Score fusion (pyskl's multi-stream ensemble, MMAction2 report_accuracy.py --coefficients)."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
from torch import nn

import train_nvpose
from train.args import common_parser
from train.fusion import (
    FusionInput,
    check_fusion_weights,
    evaluate_fusion,
    fuse_scores,
    fused_result,
)


def test_fuse_scores_is_the_weighted_sum_over_shared_samples() -> None:
    a = {0: np.array([0.7, 0.3]), 1: np.array([0.4, 0.6]), 2: np.array([0.5, 0.5])}
    b = {0: np.array([0.2, 0.8]), 1: np.array([0.9, 0.1])}
    fused, left_out = fuse_scores([a, b], [2.0, 1.0])
    assert left_out == [2]
    np.testing.assert_allclose(fused[0], [1.6, 1.4])  # 2·(0.7, 0.3) + (0.2, 0.8)
    np.testing.assert_allclose(fused[1], [1.7, 1.3])
    result = fused_result(fused, {0: 1, 1: 0}, 2)
    assert result.video_top1 == pytest.approx(0.5) and result.num_videos == 2


def test_fusion_weights_are_checked() -> None:
    assert check_fusion_weights(["a", "b"], None) == [1.0, 1.0]
    assert check_fusion_weights(["a", "b"], [2, 1]) == [2.0, 1.0]
    with pytest.raises(ValueError, match="3 weights for 2 checkpoints"):
        check_fusion_weights(["a", "b"], [1, 1, 1])
    with pytest.raises(ValueError, match="finite"):
        check_fusion_weights(["a"], [float("nan")])


class _Fixed(nn.Module):
    """Logits looked up by the sample's first value (the sample id)."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("logits", logits)
        self.class_names = ["a", "b", "c"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits[x[:, 0].long()]


class _Rows(torch.utils.data.Dataset):
    def __init__(self, labels: list[int]) -> None:
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return torch.tensor([float(index)]), self.labels[index], index


def _args() -> argparse.Namespace:
    return common_parser().parse_args(["--device", "cpu", "--workers", "0", "--batch-size", "2"])


def test_evaluate_fusion_equals_the_weighted_mean_softmax(tmp_path) -> None:
    torch.manual_seed(0)
    labels = [0, 1, 2, 1, 0]
    joint, bone = torch.randn(5, 3) * 2, torch.randn(5, 3) * 2
    inputs = [
        FusionInput(name, _Fixed(logits), _Rows(labels), dict(enumerate(labels)))
        for name, logits in (("j.pth", joint), ("b.pth", bone))
    ]
    result, singles = evaluate_fusion(
        inputs, [2.0, 1.0], _args(), class_names=["a", "b", "c"], output_dir=tmp_path
    )
    fused = 2 * joint.softmax(1) + bone.softmax(1)
    expected = (fused.argmax(1).numpy() == np.array(labels)).mean()
    assert result.video_top1 == pytest.approx(expected)
    assert singles[0].video_top1 == pytest.approx(
        (joint.argmax(1).numpy() == np.array(labels)).mean()
    )
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert [s["weight"] for s in metrics["fusion"]] == [2.0, 1.0]
    assert (tmp_path / "confusion.csv").is_file()


def test_different_class_lists_are_refused() -> None:
    labels = [0, 1]
    first = _Fixed(torch.zeros(2, 3))
    second = _Fixed(torch.zeros(2, 3))
    second.class_names = ["a", "c", "b"]
    inputs = [FusionInput(n, m, _Rows(labels), dict(enumerate(labels)))
              for n, m in (("x.pth", first), ("y.pth", second))]  # fmt: skip
    with pytest.raises(ValueError, match=r"y\.pth: its classes"):
        evaluate_fusion(inputs, [1, 1], _args(), class_names=["a", "b", "c"])


@pytest.mark.slow
def test_nvpose_evaluate_fuses_stream_checkpoints(tmp_path, capsys) -> None:
    """Two streams of ST-GCN++ trained by the script, fused by ``evaluate``."""
    data = tmp_path / "data"
    assert train_nvpose.main([
        "synth", "--output-dir", str(data), "--classes", "standing", "sitting", "--layout", "coco",
        "--train-per-class", "4", "--val-per-class", "2", "--min-frames", "16",
        "--max-frames", "16",
    ]) == 0  # fmt: skip
    common = ["--device", "cpu", "--workers", "0", "--no-tensorboard", "--no-plots",
              "--log-level", "WARNING"]  # fmt: skip
    runs = {}
    for stream in ("j", "b"):
        runs[stream] = tmp_path / stream
        assert train_nvpose.main([
            "train", *common, "--output-dir", str(runs[stream]), "--network", "stgcnpp_tiny",
            "--graph-layout", "coco", "--stream", stream, "--end-epoch", "1",
            "--batch-size", "4", "--train-data", str(data / "train_data.npy"),
            "--train-labels", str(data / "train_label.pkl"),
            "--label-map", str(data / "label_map.json"), "--no-auto-resume",
        ]) == 0  # fmt: skip
        saved = torch.load(runs[stream] / "latest.pth", weights_only=True)
        assert saved["args"]["stream"] == stream
    val = ["--data", str(data / "val_data.npy"), "--labels", str(data / "val_label.pkl")]
    out = tmp_path / "fused"
    assert train_nvpose.main([
        "evaluate", *common, "--output-dir", str(out), *val, "--checkpoint",
        str(runs["j"] / "latest.pth"), str(runs["b"] / "latest.pth"), "--fusion-weights", "2", "1",
    ]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "(j, weight 2)" in printed and "(b, weight 1)" in printed and "fused accuracy" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_videos"] == 4 and len(metrics["fusion"]) == 2
    # one weight for two checkpoints, and a stream that contradicts the checkpoint: one line
    assert train_nvpose.main([
        "evaluate", *common, *val, "--checkpoint", str(runs["j"] / "latest.pth"),
        str(runs["b"] / "latest.pth"), "--fusion-weights", "1",
    ]) == 2  # fmt: skip
    assert train_nvpose.main([
        "evaluate", *common, *val, "--checkpoint", str(runs["b"] / "latest.pth"),
        "--stream", "jm",
    ]) == 2  # fmt: skip
    assert "trained on the 'b' stream" in capsys.readouterr().err


@pytest.mark.slow
def test_hmdb_evaluate_fuses_rgb_and_flow_checkpoints(tmp_path, capsys) -> None:
    """Two-stream late fusion of an RGB and a flow checkpoint by ``train_hmdb.py evaluate``."""
    import train_hmdb

    videos, data = tmp_path / "videos", tmp_path / "data"
    assert train_hmdb.main([
        "synth", "--out", str(videos), "--classes", "move_left", "move_right",
        "--videos-per-class", "3", "--frames", "10", "--size", "48x36",
    ]) == 0  # fmt: skip
    assert train_hmdb.main([
        "prepare", "--videos", str(videos), "--out", str(data), "--short-side", "36", "--flow",
        "--workers", "1",
    ]) == 0  # fmt: skip
    runs = {}
    for modality in ("rgb", "flow"):
        runs[modality] = tmp_path / modality
        assert train_hmdb.main([
            "train", "--data", str(data), "--splits", str(videos / "splits"), "--network",
            "r3d_tiny", "--modality", modality, "--clip-length", "4", "--clip-size", "32",
            "--short-side", "36", "--batch-size", "4", "--end-epoch", "1", "--workers", "0",
            "--no-tensorboard", "--no-plots", "--output-dir", str(runs[modality]),
        ]) == 0  # fmt: skip
    out = tmp_path / "fused"
    assert train_hmdb.main([
        "evaluate", "--data", str(data), "--workers", "0", "--output-dir", str(out),
        "--checkpoint", str(runs["rgb"] / "best.pth"), str(runs["flow"] / "best.pth"),
        "--fusion-weights", "1", "1.5",
    ]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "(weight 1.5)" in printed and "fused video top-1" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert [s["weight"] for s in metrics["fusion"]] == [1.0, 1.5]
    assert metrics["num_videos"] == metrics["fusion"][0]["num_samples"] > 0
