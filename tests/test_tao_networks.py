"""TAO ActionRecognitionNet: ``tao_r3d_*`` are TAO's 3D ResNets, and TAO-trained checkpoints
load for evaluate / inference / export (issue 11). Reference names and shapes:
tests/reference_manifests.py."""

from __future__ import annotations

import pytest
import torch

from network import build_model
from network.tao import tao_network
from network.weights import PretrainedLoadError, load_pretrained
from tests.reference_manifests import tao_joint, tao_names, tao_resnet
from train.checkpoint import load_model


def _meta(name: str, **kwargs) -> torch.nn.Module:
    with torch.device("meta"):
        return build_model(name, **kwargs)


@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152])
@pytest.mark.parametrize("input_type", ["3d", "2d"])
def test_every_tao_depth_has_tao_names_and_shapes(depth, input_type):
    channels = 2 if input_type == "3d" else 3 * 4
    manifest = tao_resnet(depth, input_type=input_type, in_channels=channels, num_classes=7)
    state = {name: torch.empty(shape, device="meta") for name, shape in manifest.items()}
    name = f"tao_r3d_{depth}" if input_type == "3d" else f"resnet2d_{depth}"
    kwargs = {"in_channels": 2} if input_type == "3d" else {"num_frames": 4}
    model = _meta(name, num_classes=7, **kwargs)
    report = load_pretrained(model, state, log=False)
    assert report.complete and not report.head and len(report.loaded) == len(model.state_dict())


def test_tao_r3d_has_four_frames_after_its_stem():
    """TAO's stem max-pool strides T by 2 too: 16 frames → 8 (conv) → 4 (pool), 6.6 GMACs."""
    model = _meta("tao_r3d_18")
    after_stem = model.stem_pool(model.stem(torch.empty(1, 3, 16, 112, 112, device="meta")))
    assert tuple(after_stem.shape) == (1, 64, 4, 28, 28)
    assert tuple(model(torch.empty(1, 3, 16, 112, 112, device="meta")).shape) == (1, 400)


def _tao_checkpoint(model: torch.nn.Module, path, **extra) -> None:
    """``model`` saved as TAO saves it: TAO names, a Lightning checkpoint, ``model.`` prefix."""
    state = {f"model.{tao_names(k)}": v for k, v in model.state_dict().items()}
    torch.save(
        {"epoch": 2, "pytorch-lightning_version": "2.1.0", "state_dict": state, **extra}, path
    )


def test_tao_3d_checkpoint_with_its_spec_loads_for_evaluation(tmp_path):
    torch.manual_seed(0)
    source = build_model("tao_r3d_18", num_classes=3, in_channels=2).eval()
    spec = {
        "model": {"model_type": "of", "input_type": "3d", "of_seq_length": 8},
        "dataset": {"label_map": {"walk": 1, "fall": 0, "sit": 2}, "output_shape": [112, 112]},
    }
    path = tmp_path / "ar_model_latest.pth"
    _tao_checkpoint(source, path, hyper_parameters={"experiment_spec": spec})
    model = load_model(path, family="video")
    assert model.network_name == "tao_r3d_18" and model.class_names == ["fall", "walk", "sit"]
    assert model.train_args == {"modality": "flow", "clip_length": 8, "clip_size": 112}
    clip = torch.randn(1, 2, 8, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(clip), source(clip), rtol=0, atol=0)
    with pytest.raises(ValueError, match="TAO ActionRecognitionNet checkpoint; this command"):
        load_model(path, family="skeleton")


def test_tao_2d_joint_checkpoint_without_spec_is_read_from_its_tensors(tmp_path, caplog):
    torch.manual_seed(0)
    source = build_model(
        "joint", num_classes=4, rgb_network="resnet2d_18", of_network="resnet2d_18",
        rgb_frames=3, of_frames=5, num_fc=16,
    ).eval()  # fmt: skip
    path = tmp_path / "joint.pth"
    _tao_checkpoint(source, path)
    model = load_model(path, family="video")
    assert model.network_kwargs == {
        "num_classes": 4, "rgb_network": "resnet2d_18", "of_network": "resnet2d_18",
        "num_fc": 16, "rgb_frames": 3, "of_frames": 5,
    }  # fmt: skip
    assert model.train_args == {"modality": "joint", "clip_length": 3, "flow_clip_length": 5}
    assert model.class_names == ["class_0", "class_1", "class_2", "class_3"]
    assert "no label_map stored" in caplog.text
    rgb, flow = torch.randn(1, 9, 64, 64), torch.randn(1, 10, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(rgb, flow), source(rgb, flow), rtol=0, atol=0)


def test_network_flag_overrides_and_is_checked():
    state = {
        name: torch.empty(shape)
        for name, shape in tao_resnet(18, input_type="2d", in_channels=6, num_classes=2).items()
    }
    name, kwargs, args = tao_network({}, state, "x.pth")
    assert (name, kwargs, args) == (
        "resnet2d_18",
        {"num_classes": 2, "in_channels": 3, "num_frames": 2},
        {"modality": "rgb", "clip_length": 2},
    )
    spec = {"hyper_parameters": {"model_config": {"model_type": "of"}}}  # TAO 4 layout
    assert tao_network(spec, state, "x.pth")[1]["num_frames"] == 3  # 6 = 2 channels × 3
    name, kwargs, _ = tao_network({}, state, "x.pth", network="resnet2d_34")
    with pytest.raises(PretrainedLoadError, match="into resnet2d_34"):
        load_pretrained(_meta(name, **kwargs), state)


def test_tao_joint_3d_manifest_reads_as_tao_r3d_streams():
    manifest = tao_joint(50, input_type="3d", rgb_frames=16, of_frames=16, num_classes=5, num_fc=64)
    state = {name: torch.empty(shape) for name, shape in manifest.items()}
    name, kwargs, args = tao_network({}, state, "joint.pth")
    assert name == "joint" and kwargs["rgb_network"] == kwargs["of_network"] == "tao_r3d_50"
    assert args == {"modality": "joint"}


def test_encrypted_tao_checkpoint_is_one_line_for_evaluate(tmp_path):
    path = tmp_path / "ar_model.tlt"
    path.write_bytes(b"\x01\x02not a torch file" * 4)
    with pytest.raises(ValueError, match="must be decrypted with TAO first"):
        load_model(path, family="video")


def test_tao_checkpoint_exports_to_onnx(tmp_path):
    pytest.importorskip("onnxruntime")
    from export.cli import export_checkpoint

    torch.manual_seed(0)
    source = build_model("resnet2d_18", num_classes=3, num_frames=2).eval()
    path = tmp_path / "rgb.pth"
    _tao_checkpoint(source, path)
    report = export_checkpoint(
        path, tmp_path / "rgb.onnx", family="video", input_shape=[(6, 64, 64)]
    )
    assert report.max_abs_diff < 1e-3 and (tmp_path / "rgb.onnx").is_file()


def test_tao_file_into_another_network_names_the_tao_network():
    manifest = tao_resnet(34, input_type="2d", in_channels=2 * 8, num_classes=4)
    state = {name: torch.empty(shape, device="meta") for name, shape in manifest.items()}
    with pytest.raises(PretrainedLoadError) as caught:
        load_pretrained(_meta("r3d_18", num_classes=4), state)
    assert "TAO state dict" in str(caught.value)
    assert "--network resnet2d_34 --modality flow --clip-length 8" in str(caught.value)
