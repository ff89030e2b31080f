"""Video networks against their references: torchvision, the SRTG paper (B7), TAO, MTNet."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet18
from torchvision.models import video as tv_video

from network import build_model
from network.mtnet import MTConv, temporal_cossim_pool
from network.resnet2d import init_from_imagenet
from network.softpool import soft_pool3d
from network.srtg import SqueezeRecursion, cycle_consistent
from network.summary import count_macs, main, summarize
from network.weights import load_pretrained


def _meta_params(name: str, **kwargs) -> float:
    with torch.device("meta"):
        model = build_model(name, num_classes=400, **kwargs)
    return sum(p.numel() for p in model.parameters())


# --- torchvision equivalence -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reference"),
    [
        ("r3d_18", tv_video.r3d_18),
        ("r2plus1d_18", tv_video.r2plus1d_18),
        ("mc3_18", tv_video.mc3_18),
    ],
)
def test_equals_torchvision(name, reference):
    torch.manual_seed(0)
    theirs = reference(weights=None).eval()
    ours = build_model(name).eval()
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    report = load_pretrained(ours, theirs.state_dict(), log=False)
    assert (report.mismatched, report.missing, report.unexpected) == ([], [], [])
    clip = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(clip), theirs(clip), rtol=1e-4, atol=1e-6)


# --- SRTG: sizes from shared/reference/video.md B7 (400 classes) -------------------------------


@pytest.mark.parametrize(
    ("name", "plain_millions", "srtg_millions"),
    [
        ("srtg_r3d_18", 33.37, 44.54),
        ("srtg_r3d_50", 36.72, 56.90),
        ("srtg_r2plus1d_18", 31.51, 42.68),
        ("srtg_r2plus1d_50", 34.86, 55.04),
    ],
)
def test_srtg_parameter_counts_match_paper_table(name, plain_millions, srtg_millions):
    assert round(_meta_params(name) / 1e6, 2) == srtg_millions
    assert round(_meta_params(name, sr_blocks=False) / 1e6, 2) == plain_millions


def test_srtg_macs_match_paper_table():
    assert round(summarize("srtg_r3d_18", frames=16, size=224).macs_per_clip / 1e9, 2) == 25.32


def test_sr_block_lstm_size():
    channels = 64
    block = SqueezeRecursion(channels)
    assert sum(p.numel() for p in block.parameters()) == 16 * channels**2 + 16 * channels == 66_560


# --- SRTG: the temporal cycle-consistency gate --------------------------------------------------


def test_cycle_consistency_accepts_consistent_and_rejects_shuffled_sequences():
    torch.manual_seed(0)
    sequence = torch.randn(4, 6, 16)
    noisy = sequence + 0.01 * torch.randn_like(sequence)
    assert cycle_consistent(sequence, noisy).all()
    shuffled = noisy[:, torch.tensor([1, 0, 2, 3, 5, 4])]
    assert not cycle_consistent(sequence, shuffled).any()
    mixed = torch.stack([noisy[0], shuffled[1], noisy[2], shuffled[3]])
    assert cycle_consistent(sequence, mixed).tolist() == [True, False, True, False]


def test_cycle_consistency_is_or_of_both_directions():
    first = torch.tensor([[[0.0], [1.0], [2.0]]])
    # second→first holds (each second[j] is nearest to first[j]) but first→second fails at i=2
    second = torch.tensor([[[0.0], [1.4], [4.0]]])
    distances = (first.unsqueeze(2) - second.unsqueeze(1)).square().sum(-1)
    assert distances.argmin(2).tolist() == [[0, 1, 1]]
    assert distances.argmin(1).tolist() == [[0, 1, 2]]
    assert cycle_consistent(first, second).tolist() == [True]


def _memoryless_lstm(block: SqueezeRecursion, gain: float) -> None:
    """LSTM whose output follows its input frame by frame, h_t ≈ gain · x_t for small x_t."""
    lstm, channels = block.recurrent, block.recurrent.hidden_size
    with torch.no_grad():
        for layer in range(lstm.num_layers):
            layer_gain = gain if layer == lstm.num_layers - 1 else 1.0
            getattr(lstm, f"weight_ih_l{layer}").zero_()[2 * channels : 3 * channels].copy_(
                layer_gain * torch.eye(channels)
            )
            getattr(lstm, f"weight_hh_l{layer}").zero_()
            getattr(lstm, f"bias_hh_l{layer}").zero_()
            gate_bias = torch.tensor([4.0, -4.0, 0.0, 4.0]).repeat_interleave(channels)
            getattr(lstm, f"bias_ih_l{layer}").copy_(gate_bias)  # input, forget, cell, output


def _distinct_frames(batch: int, channels: int, frames: int) -> torch.Tensor:
    """(N, C, T, 4, 4): frame t is 0.3 on channel t, 0 elsewhere."""
    x = torch.zeros(batch, channels, frames, 4, 4)
    for t in range(frames):
        x[:, t, t] = 0.3
    return x


def test_open_gate_recalibrates_and_trains_every_lstm_parameter():
    block = SqueezeRecursion(8, gates=True)
    _memoryless_lstm(block, gain=1.0)
    x = _distinct_frames(2, 8, 4).requires_grad_()
    out = block(x)
    assert block.last_pass_fraction.item() == 1.0
    assert not torch.allclose(out, x)
    (out * torch.randn_like(out)).sum().backward()
    for name, param in block.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_closed_gate_passes_input_unchanged_and_blocks_lstm_gradient():
    block = SqueezeRecursion(8, gates=True)
    _memoryless_lstm(block, gain=-1.0)  # output anti-correlated with the input: inconsistent
    x = _distinct_frames(2, 8, 4)
    out = block(x)
    assert block.last_pass_fraction.item() == 0.0
    assert torch.equal(out, x)
    out.sum().backward()
    assert all(p.grad is None or not p.grad.any() for p in block.parameters())


def test_gates_follow_epoch_and_report_pass_fraction():
    model = build_model("srtg_r3d_tiny", num_classes=3, gates=True, gates_from_epoch=2).eval()
    clip = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        model(clip)
    assert model.gate_pass_fraction() is None  # gates not yet enabled: plain SR
    model.set_epoch(2)
    with torch.no_grad():
        model(clip)
    fraction = model.gate_pass_fraction()
    assert fraction is not None and 0.0 <= fraction <= 1.0
    state = model.state_dict()
    fresh = build_model("srtg_r3d_tiny", num_classes=3, gates=True, gates_from_epoch=2)
    fresh.load_state_dict(state)  # the enabled state travels with the checkpoint
    assert all(bool(block.gate_enabled) for block in fresh.gated_blocks())


def test_residual_recalibration_keeps_activation_scale():
    """Part E bug 26: x·h shrinks features block after block; x·(1+h) keeps them near plain."""
    clip = torch.randn(2, 3, 8, 32, 32)
    stds = {}
    for option in ({"sr_blocks": False}, {"recalibration": "paper"}, {"recalibration": "residual"}):
        torch.manual_seed(0)
        model = build_model("srtg_r3d_tiny", **option).eval()
        with torch.no_grad():
            stds[next(iter(option.values()))] = model.forward_features(clip).std().item()
    assert stds["paper"] < stds[False] / 20
    assert stds[False] / 3 < stds["residual"] < stds[False] * 3


# --- TAO 3D and 2D ResNets ---------------------------------------------------------------------


def test_tao_r3d_output_grid():
    """A9: stem and pool stride 2 in T, H, W, then only H and W: 32×224² → 8×7×7 (16 frames
    → 4 after the stem, as TAO's ResNet3d; here 8×64² → 2×2²)."""
    model = build_model("tao_r3d_tiny").eval()
    with torch.no_grad():
        assert model.forward_features(torch.randn(1, 3, 8, 64, 64)).shape[2:] == (2, 2, 2)
    summary = summarize("tao_r3d_18", frames=32, size=224)
    assert summary.output_shape == (1, 400)


def test_resnet2d_checks_stacked_channels():
    model = build_model("resnet2d_tiny", num_frames=4, in_channels=2)
    with pytest.raises(ValueError, match="2 channels × 4 frames"):
        model(torch.randn(1, 12, 32, 32))


def test_resnet2d_imagenet_init_averages_and_rescales_conv1():
    imagenet = resnet18(weights=None).state_dict()
    model = build_model("resnet2d_18", num_frames=4, num_classes=10)
    report = init_from_imagenet(model, imagenet)
    assert report.head == ["fc.weight", "fc.bias"] and not report.mismatched
    expected = imagenet["conv1.weight"].mean(dim=1, keepdim=True).repeat(1, 12, 1, 1) / 4
    torch.testing.assert_close(model.conv1.weight, expected)
    torch.testing.assert_close(model.layer4[1].conv2.weight, imagenet["layer4.1.conv2.weight"])
    tao = build_model("resnet2d_18", num_frames=4)
    init_from_imagenet(tao, imagenet, rescale=False)
    torch.testing.assert_close(tao.conv1.weight, expected * 4)


# --- MTNet --------------------------------------------------------------------------------------


def test_temporal_cossim_pool_by_hand():
    # frame directions 0°, 0°, 30°, 90°, 180°, 225°: d = cos²Δ = 1, .75, .25, 0, .5,
    # m = .875, .5, .125, .25 → the 3 largest are m0, m1, m3 → frames 1, 2, 4
    angles = torch.tensor([0.0, 0.0, 30.0, 90.0, 180.0, 225.0]) * math.pi / 180
    x = torch.stack([angles.cos(), angles.sin()]).view(1, 2, 6, 1, 1).repeat(2, 1, 1, 3, 3)
    torch.testing.assert_close(temporal_cossim_pool(x), x[:, :, [1, 2, 4]])
    assert temporal_cossim_pool(x[:, :, :2]).shape[2] == 2


def test_soft_pool_is_softmax_weighted_and_stable():
    window = torch.tensor([1.0, 2.0, 3.0, 4.0])
    x = window.view(1, 1, 1, 2, 2)
    expected = (window.softmax(0) * window).sum()
    torch.testing.assert_close(soft_pool3d(x, (1, 2, 2)).flatten(), expected.view(1))
    big = soft_pool3d(x * 1000, (1, 2, 2))
    assert torch.isfinite(big).all() and big.item() == pytest.approx(4000.0)


def test_mtconv_lateral_branch_own_norm_soft_pool_and_no_needless_resize(monkeypatch):
    torch.manual_seed(0)
    short, long = torch.randn(2, 56, 4, 8, 8), torch.randn(2, 8, 2, 4, 4)
    calls = []
    interpolate = F.interpolate
    monkeypatch.setattr(F, "interpolate", lambda *a, **k: calls.append(1) or interpolate(*a, **k))
    outputs = {}
    for pool in ("avg", "soft"):
        torch.manual_seed(1)
        conv = MTConv(64, 64, 3, padding=1, lateral_pool=pool).eval()
        assert conv.norm_short2long is not conv.norm_long
        with torch.no_grad():
            outputs[pool] = conv((short, long))
    assert calls == []  # (4,8,8) → pool (4,4,4) → cossim (2,4,4) == long's (2,4,4)
    assert outputs["avg"][1].shape == (2, 8, 2, 4, 4)
    assert not torch.allclose(outputs["avg"][1], outputs["soft"][1])
    torch.testing.assert_close(outputs["avg"][0], outputs["soft"][0])


@pytest.mark.parametrize(("name", "millions"), [("mtnet_xs", 21.84), ("mtnet_m_g8", 13.27)])
def test_mtnet_parameter_counts_match_paper_table(name, millions):
    """B7's counts, less the lateral norms that we add (the reference shares the long path's)."""
    with torch.device("meta"):
        model = build_model(name)
    lateral_norms = sum(p.numel() for n, p in model.named_parameters() if "norm_short2long" in n)
    total = sum(p.numel() for p in model.parameters())
    assert round((total - lateral_norms) / 1e6, 2) == millions


# --- Two-stream model ---------------------------------------------------------------------------


def test_joint_from_two_checkpoints_with_other_class_counts(tmp_path):
    torch.manual_seed(0)
    rgb = build_model("r3d_tiny", num_classes=7)
    flow = build_model("resnet2d_tiny", num_classes=5, in_channels=2, num_frames=4)
    torch.save({"model": rgb.state_dict(), "epoch": 3}, tmp_path / "rgb.pth")
    flow_state = {f"module.{key}": value for key, value in flow.state_dict().items()}
    torch.save({"state_dict": flow_state}, tmp_path / "flow.pth")
    joint = build_model(
        "joint_tiny",
        num_classes=3,
        of_network="resnet2d_tiny",
        of_frames=4,
        rgb_pretrained=str(tmp_path / "rgb.pth"),
        of_pretrained=str(tmp_path / "flow.pth"),
    ).eval()
    assert torch.equal(joint.rgb.layer4[0].conv2[0].weight, rgb.layer4[0].conv2[0].weight)
    assert torch.equal(joint.flow.conv1.weight, flow.conv1.weight)
    assert joint.rgb.fc.out_features == joint.flow.fc.out_features == 3
    assert isinstance(joint.fc1, nn.Linear) and joint.fc1.in_features == 6
    with torch.no_grad():
        logits = joint(torch.randn(2, 3, 4, 32, 32), torch.randn(2, 8, 32, 32))
    assert logits.shape == (2, 3)


# --- Summary tool -------------------------------------------------------------------------------


def test_meta_mac_count_equals_a_real_forward():
    model = build_model("srtg_r3d_tiny", num_classes=4).eval()
    real, _ = count_macs(model, (torch.randn(1, 3, 8, 32, 32),))
    assert real == summarize("srtg_r3d_tiny", frames=8, size=32, num_classes=4).macs_per_clip
    assert real > 16 * 8 * 16 * 16 * 3 * 3 * 7 * 7  # at least the stem conv's MACs


def test_summary_cli_prints_a_table(capsys):
    assert main(["r3d_tiny", "joint_tiny", "--frames", "8", "--size", "32"]) == 0
    out = capsys.readouterr().out
    assert "| r3d_tiny | 0.96 |" in out and "| joint_tiny |" in out
    assert main([]) == 2
