"""Released weights load completely into the network the loader names, or are refused with one
table (issue 11): SRTG, TAO and torchvision files built from the reference key/shape manifests
(tests/reference_manifests.py), full-size on the meta device, tiny ones with real values."""

from __future__ import annotations

import logging

import pytest
import torch
import torchvision.models.video as tv_video

from network import build_model
from network.weights import PretrainedLoadError, load_pretrained, read_checkpoint
from tests.reference_manifests import srtg_names, srtg_resnet, tao_joint, tao_names, tao_resnet


def _meta(name: str, **kwargs) -> torch.nn.Module:
    with torch.device("meta"):
        return build_model(name, **kwargs)


def _tensors(manifest: dict) -> dict[str, torch.Tensor]:
    return {name: torch.empty(shape, device="meta") for name, shape in manifest.items()}


def srtg_file(state: dict) -> dict:
    """SRTG's save_checkpoint: epoch, a DataParallel state_dict, the optimiser state."""
    wrapped = {f"module.{name}": value for name, value in state.items()}
    return {"epoch": 40, "state_dict": wrapped, "optimizer": {"state": {}, "param_groups": []}}


def tao_file(state: dict) -> dict:
    """TAO's Lightning checkpoint: the network under ``model.``."""
    wrapped = {f"model.{name}": value for name, value in state.items()}
    return {
        "epoch": 3,
        "global_step": 30,
        "pytorch-lightning_version": "2.1.0",
        "state_dict": wrapped,
    }


COMPLETE = [
    # (file, ActRec network, build kwargs, origin)
    (srtg_file(_tensors(srtg_resnet(18, sr=True))), "srtg_r3d_18", {}, "SRTG save_checkpoint"),
    (srtg_file(_tensors(srtg_resnet(50, sr=True))), "srtg_r3d_50", {}, "SRTG save_checkpoint"),
    (_tensors(srtg_resnet(18, "2plus1d", sr=True)), "srtg_r2plus1d_18", {}, "SRTG state dict"),
    (
        srtg_file(_tensors(srtg_resnet(50, sr=False))),
        "srtg_r3d_50",
        {"sr_blocks": False},
        "SRTG save_checkpoint",
    ),
    (
        srtg_file(_tensors(srtg_resnet(18, "2plus1d", sr=False))),
        "srtg_r2plus1d_18",
        {"sr_blocks": False},
        "SRTG save_checkpoint",
    ),
    (tao_file(_tensors(tao_resnet(18))), "tao_r3d_18", {"num_classes": 5}, "TAO PyTorch Lightning"),
    (
        _tensors(tao_resnet(152, in_channels=2)),
        "tao_r3d_152",
        {"num_classes": 5, "in_channels": 2},
        "TAO state dict",
    ),
    (
        tao_file(_tensors(tao_resnet(50, input_type="2d", in_channels=48))),
        "resnet2d_50",
        {"num_classes": 5, "num_frames": 16},
        "TAO PyTorch Lightning",
    ),
    (
        tao_file(_tensors(tao_joint(18, input_type="3d", rgb_frames=16, of_frames=16, num_classes=5, num_fc=64))),
        "joint",
        {"num_classes": 5, "rgb_network": "tao_r3d_18", "of_network": "tao_r3d_18"},
        "TAO PyTorch Lightning",
    ),
    (
        tao_file(_tensors(tao_joint(34, input_type="2d", rgb_frames=3, of_frames=5, num_classes=4, num_fc=32))),
        "joint",
        {"num_classes": 4, "rgb_network": "resnet2d_34", "of_network": "resnet2d_34",
         "rgb_frames": 3, "of_frames": 5, "num_fc": 32},
        "TAO PyTorch Lightning",
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("source", "network", "kwargs", "origin"),
    COMPLETE,
    ids=[f"{row[3].split()[0]}-{row[1]}-{index}" for index, row in enumerate(COMPLETE)],
)
def test_reference_files_load_completely(source, network, kwargs, origin):
    report = load_pretrained(_meta(network, **kwargs), source, log=False)
    assert (report.missing, report.unexpected, report.mismatched, report.head) == ([], [], [], [])
    assert report.origin.startswith(origin)
    assert len(report.loaded) == len(read_checkpoint(source).tensors)


@pytest.mark.parametrize("name", ["r3d_18", "r2plus1d_18", "mc3_18"])
def test_torchvision_files_load_completely(name):
    with torch.device("meta"):
        theirs = getattr(tv_video, name)(weights=None).state_dict()
    report = load_pretrained(_meta(name), theirs, log=False)
    assert report.complete and not report.head and report.origin == "torchvision-named state dict"


# --- real values: renamed reference files give the same outputs ----------------------------------


def _renamed_copy(name: str, rename, **kwargs) -> tuple[torch.nn.Module, dict]:
    torch.manual_seed(0)
    source = build_model(name, **kwargs).eval()
    with torch.no_grad():  # non-trivial BN statistics, so a misplaced tensor shows
        for module in source.modules():
            if isinstance(module, torch.nn.BatchNorm3d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return source, rename(source.state_dict())


def test_tao_names_load_with_equal_outputs():
    source, theirs = _renamed_copy(
        "tao_r3d_tiny", lambda sd: {tao_names(k): v for k, v in sd.items()}, num_classes=3
    )
    assert "fc_cls.weight" in theirs and "layer1.0.bn2.weight" in theirs
    target = build_model("tao_r3d_tiny", num_classes=3).eval()
    report = load_pretrained(target, tao_file(theirs), log=False)
    assert report.complete and report.renamed["fc.weight"] == "fc_cls.weight"
    clip = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(target(clip), source(clip), rtol=0, atol=0)


def test_srtg_conv3dsimple_names_load_with_equal_outputs():
    source, theirs = _renamed_copy(
        "srtg_r3d_tiny", lambda sd: {srtg_names(k, v.shape): v for k, v in sd.items()}
    )
    assert "layer1.0.conv1.0.0.weight" in theirs and "layer1.0.sar.lstm.weight_ih_l0" in theirs
    target = build_model("srtg_r3d_tiny").eval()
    report = load_pretrained(target, srtg_file(theirs), log=False)
    assert (
        report.complete and report.renamed["layer1.0.conv1.0.weight"] == "layer1.0.conv1.0.0.weight"
    )
    clip = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(target(clip), source(clip), rtol=0, atol=0)


def test_mtnet_norm_long_fills_norm_short2long():
    """SRTG's MTConv normalises its lateral branch with norm_long: copied into norm_short2long."""

    def to_srtg(state):
        return {srtg_names(k, v.shape): v for k, v in state.items() if "norm_short2long" not in k}

    source, theirs = _renamed_copy("mtnet_tiny", to_srtg, num_classes=4)
    with torch.no_grad():  # what SRTG computes: the lateral branch through norm_long
        state = source.state_dict()
        for name, value in state.items():
            if ".norm_short2long." in name:
                value.copy_(state[name.replace("norm_short2long", "norm_long")])
    target = build_model("mtnet_tiny", num_classes=4).eval()
    report = load_pretrained(target, srtg_file(theirs), log=False)
    copied = [name for name in target.state_dict() if ".norm_short2long." in name]
    assert report.complete and sorted(report.copied) == sorted(copied) and copied
    clip = torch.randn(1, 3, 8, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(target(clip), source(clip), rtol=0, atol=0)


# --- refusals -----------------------------------------------------------------------------------


def test_srtg_plain_file_into_sr_network_names_the_flags():
    """SRTG's get_symbol builds plain r3d_50 for srtg_r3d_50: no recurrent tensors."""
    model = _meta("srtg_r3d_50")
    with pytest.raises(PretrainedLoadError) as caught:
        load_pretrained(model, srtg_file(_tensors(srtg_resnet(50, sr=False))))
    message = str(caught.value)
    assert "128 missing" in message and "no recurrent (SR) weights" in message
    assert "it loads completely with: --network srtg_r3d_50 --no-sr-blocks" in message
    assert message.endswith("--pretrained-partial loads what matches anyway")


def test_srtg_r3d_never_loads_silently_into_torchvision_r3d():
    """Names and shapes all match (after the Conv3DSimple rename), the stem pool does not."""
    source = srtg_file(_tensors(srtg_resnet(18, sr=False)))
    with pytest.raises(PretrainedLoadError) as caught:
        load_pretrained(_meta("r3d_18"), source)
    message = str(caught.value)
    assert "0 missing, 0 unexpected" in message and "3×3×3 stem max-pool" in message
    assert "--network srtg_r3d_18 --no-sr-blocks" in message
    with pytest.raises(PretrainedLoadError, match="SRTG state dict"):  # its 3×3×3 kernel names tell
        load_pretrained(_meta("r3d_18"), _tensors(srtg_resnet(18, sr=False)))
    plain = _meta("r2plus1d_18")  # SRTG's r2plus1d names equal torchvision's: the file format tells
    with pytest.raises(PretrainedLoadError, match="srtg_r2plus1d_18 --no-sr-blocks"):
        load_pretrained(plain, srtg_file(_tensors(srtg_resnet(18, "2plus1d", sr=False))))


def test_srtg_bottleneck_file_into_torchvision_r3d_50_is_refused():
    with pytest.raises(PretrainedLoadError, match="srtg_r3d_50 --no-sr-blocks") as caught:
        load_pretrained(_meta("r3d_50"), _tensors(srtg_resnet(50, sr=False)))
    assert "SRTG state dict" in str(caught.value) and "shape-mismatched" in str(caught.value)


def test_srtg_mtnet_s_saved_as_mtnet_xs_names_mtnet_s():
    """SRTG's get_symbol builds MTNet_s for mtnet_xs."""
    with torch.device("meta"):
        state = build_model("mtnet_s").state_dict()
    theirs = {srtg_names(k, v.shape): v for k, v in state.items() if "norm_short2long" not in k}
    with pytest.raises(PretrainedLoadError, match="it loads completely with: --network mtnet_s"):
        load_pretrained(_meta("mtnet_xs"), srtg_file(theirs))


def test_partial_flag_loads_what_matches(caplog):
    source = srtg_file(_tensors(srtg_resnet(18, sr=False)))
    with caplog.at_level(logging.WARNING, logger="network.weights"):
        report = load_pretrained(_meta("srtg_r3d_18"), source, partial=True)
    assert len(report.missing) == 64 and len(report.loaded) == 122
    assert "loaded partially (--pretrained-partial)" in caplog.text


def test_another_familys_checkpoint_is_refused(tmp_path):
    skeleton = build_model("st_gcn_tiny", num_classes=3)
    path = tmp_path / "stgcn.pth"
    torch.save(
        {"model": skeleton.state_dict(), "network": "st_gcn_tiny", "family": "skeleton"}, path
    )
    with pytest.raises(PretrainedLoadError, match=r"a skeleton checkpoint .*r3d_tiny is a video"):
        load_pretrained(build_model("r3d_tiny"), path)


def test_foreign_state_dict_is_refused_with_the_table():
    gesture = build_model("gesturenet_tiny").state_dict()
    with pytest.raises(PretrainedLoadError) as caught:
        load_pretrained(build_model("r3d_tiny", num_classes=3), gesture)
    assert "0 loaded" in str(caught.value) and "unexpected" in str(caught.value)


def test_encrypted_tao_models_are_one_line(tmp_path):
    etlt = tmp_path / "model.etlt"
    etlt.write_bytes(b"\x13\x37encrypted-bytes" * 8)
    with pytest.raises(ValueError, match="encrypted TAO models must be decrypted with TAO first"):
        load_pretrained(build_model("r3d_tiny"), etlt)
    tlt = tmp_path / "model.tlt"  # TAO PyTorch: a torch file whose state is encrypted bytes
    torch.save({"state_dict": b"\x00" * 64, "state_dict_encrypted": True, "epoch": 1}, tlt)
    with pytest.raises(ValueError, match=r"model\.tlt: an encrypted TAO model") as caught:
        load_pretrained(build_model("r3d_tiny"), tlt)
    assert "\n" not in str(caught.value)
    other = tmp_path / "notes.pth"
    other.write_text("not weights")
    with pytest.raises(ValueError, match="not a PyTorch checkpoint"):
        load_pretrained(build_model("r3d_tiny"), other)


# --- through the script: a refused file is exit code 2 with the table in the log --------------


@pytest.fixture(scope="module")
def hmdb_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    import train_hmdb

    root = tmp_path_factory.mktemp("hmdb_pretrained")
    videos, data = root / "videos", root / "data"
    synth = [
        "synth",
        "--out",
        str(videos),
        "--classes",
        "move_left",
        "grow",
        "--videos-per-class",
        "2",
    ]
    assert train_hmdb.main([*synth, "--frames", "8", "--size", "40x32"]) == 0
    prepare = ["prepare", "--videos", str(videos), "--out", str(data), "--short-side", "32"]
    assert train_hmdb.main([*prepare, "--workers", "1"]) == 0
    return {"data": str(data), "splits": str(videos / "splits")}


@pytest.mark.parametrize("case", ["another-family", "srtg-plain", "encrypted"])
def test_train_hmdb_refuses_with_exit_code_2(hmdb_data, tmp_path, caplog, case):
    import train_hmdb

    if case == "another-family":
        path, network, expected = tmp_path / "stgcn.pth", "r3d_tiny", "a skeleton checkpoint"
        stgcn = build_model("st_gcn_tiny", num_classes=3).state_dict()
        torch.save({"model": stgcn, "network": "st_gcn_tiny", "family": "skeleton"}, path)
    elif case == "srtg-plain":  # SRTG's get_symbol: a plain r3d under an srtg_* name
        path, network = tmp_path / "srtg_r3d_tiny_ep-0040.pth", "srtg_r3d_tiny"
        expected = "it loads completely with: --network srtg_r3d_tiny --no-sr-blocks"
        plain = build_model("srtg_r3d_tiny", sr_blocks=False, num_classes=2).state_dict()
        torch.save(srtg_file({srtg_names(k, v.shape): v for k, v in plain.items()}), path)
    else:
        path, network = tmp_path / "ar_model.etlt", "r3d_tiny"
        expected = "encrypted TAO models must be decrypted with TAO first"
        path.write_bytes(b"\x07encrypted" * 16)
    argv = [
        "train", "--data", hmdb_data["data"], "--splits", hmdb_data["splits"],
        "--network", network, "--clip-length", "4", "--clip-size", "32", "--batch-size", "2",
        "--end-epoch", "1", "--workers", "0", "--no-tensorboard", "--no-plots",
        "--output-dir", str(tmp_path / "run"), "--pretrained", str(path),
    ]  # fmt: skip
    assert train_hmdb.main(argv) == 2
    assert expected in caplog.text
    if case == "srtg-plain":  # the same file trains with the flag the table names
        caplog.clear()
        argv[argv.index("--output-dir") + 1] = str(tmp_path / "run2")
        assert train_hmdb.main([*argv, "--no-sr-blocks"]) == 0
        assert "0 missing, 0 unexpected" in caplog.text


def test_train_hmdb_evaluates_and_labels_a_tao_checkpoint(hmdb_data, tmp_path, capsys):
    import train_hmdb

    model = build_model("resnet2d_18", num_classes=2, num_frames=4)
    spec = {
        "model": {"model_type": "rgb", "input_type": "2d", "rgb_seq_length": 4},
        "dataset": {"label_map": {"grow": 0, "move_left": 1}, "output_shape": [32, 32]},
    }
    path = tmp_path / "ar_model_latest.pth"
    state = {f"model.{tao_names(k)}": v for k, v in model.state_dict().items()}
    torch.save(
        {"epoch": 1, "state_dict": state, "hyper_parameters": {"experiment_spec": spec}}, path
    )
    data = ["--data", hmdb_data["data"], "--splits", hmdb_data["splits"], "--workers", "0"]
    assert train_hmdb.main(["evaluate", "--checkpoint", str(path), *data]) == 0
    assert "video top-1" in capsys.readouterr().out
    videos = ["--videos", hmdb_data["data"], "--workers", "0"]
    assert train_hmdb.main(["inference", "--checkpoint", str(path), *videos]) == 0
    labels = [
        line.rsplit(" : ", 1)[1] for line in capsys.readouterr().out.splitlines() if " : [" in line
    ]
    assert len(labels) == 4 and set(labels) <= {"['grow']", "['move_left']"}  # the spec's names
