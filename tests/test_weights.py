"""Non-strict pretrained loading: prefixes, checkpoint dicts, the report table, inflation."""

from __future__ import annotations

import pickle

import pytest
import torch
import torch.nn.functional as F
from torchvision.models import resnet18

from network import build_model
from network.weights import inflate_kernel, load_pretrained, read_state_dict


def _tiny(**kwargs):
    torch.manual_seed(0)
    return build_model("r3d_tiny", **kwargs)


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {"model": {f"module.{k}": v for k, v in sd.items()}, "epoch": 4},
        lambda sd: {"state_dict": {f"model.{k}": v for k, v in sd.items()}},  # Lightning
        lambda sd: {f"module._orig_mod.{k}": v for k, v in sd.items()},  # DDP + compile
    ],
    ids=["plain", "ddp-checkpoint", "lightning", "compiled"],
)
def test_prefixes_and_checkpoint_dicts(tmp_path, wrap):
    source = _tiny(num_classes=4)
    path = tmp_path / "weights.pth"
    torch.save(wrap(source.state_dict()), path)
    target = build_model("r3d_tiny", num_classes=4)
    report = load_pretrained(target, path, log=False)
    assert (report.mismatched, report.missing, report.unexpected) == ([], [], [])
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_report_table_lists_every_kind(caplog):
    state = _tiny(num_classes=7).state_dict()
    del state["layer4.0.conv2.0.weight"]
    state["extra.weight"] = torch.zeros(2)
    target = build_model("r3d_tiny", num_classes=3)
    before = target.layer1[0].conv1[0].weight.clone()
    with caplog.at_level("INFO", logger="network.weights"):
        report = load_pretrained(target, state, partial=True)
    assert report.head == ["fc.weight", "fc.bias"] and report.mismatched == []
    assert report.missing == ["layer4.0.conv2.0.weight"]
    assert report.unexpected == ["extra.weight"]
    assert len(report.loaded) == len(state) - 3
    assert not torch.equal(target.layer1[0].conv1[0].weight, before)
    table = caplog.text
    assert "2 head replaced, 0 shape-mismatched, 1 missing, 1 unexpected" in table
    assert "head replaced    fc.weight" in table and "[7, 128] → [3, 128]" in table
    assert "missing          layer4.0.conv2.0.weight" in table
    assert "unexpected       extra.weight" in table and "loaded partially" in table


def test_inflated_kernel_on_a_still_clip_equals_the_2d_conv():
    torch.manual_seed(0)
    kernel = torch.randn(4, 3, 3, 3)
    inflated = inflate_kernel(kernel, torch.Size([4, 3, 5, 3, 3]))
    image = torch.randn(1, 3, 8, 8)
    still_clip = image.unsqueeze(2).repeat(1, 1, 5, 1, 1)
    out3d = F.conv3d(still_clip, inflated)  # valid in T: one output frame
    torch.testing.assert_close(out3d[:, :, 0], F.conv2d(image, kernel), rtol=1e-5, atol=1e-5)
    assert inflate_kernel(kernel, torch.Size([4, 2, 5, 3, 3])) is None


def test_imagenet_resnet_inflates_into_tao_r3d_with_torchvision_names():
    imagenet = resnet18(weights=None).state_dict()
    model = build_model("tao_r3d_18", num_classes=5)
    report = load_pretrained(model, imagenet, log=False)
    assert report.renamed["stem.0.weight"] == "conv1.weight"
    assert "stem.0.weight" in report.inflated and "layer2.0.conv1.0.weight" in report.inflated
    assert report.head == ["fc.weight", "fc.bias"] and report.mismatched == []
    assert report.unexpected == [] and report.missing == []
    stem = model.stem[0].weight  # (64, 3, 5, 7, 7)
    torch.testing.assert_close(stem.sum(dim=2), imagenet["conv1.weight"])
    torch.testing.assert_close(model.layer1[0].conv1[1].weight, imagenet["layer1.0.bn1.weight"])


def test_files_are_read_with_weights_only(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as handle:
        pickle.dump({"model": {"w": torch.zeros(1)}, "hook": print}, handle, protocol=2)
    with pytest.raises(pickle.UnpicklingError):
        read_state_dict(path)
    with pytest.raises(FileNotFoundError, match=r"missing\.pth"):
        read_state_dict(tmp_path / "missing.pth")
