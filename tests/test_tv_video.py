"""torchvision's video models registered from torchvision's builders: weight files load by name,
the wrappers compute what torchvision computes, clip shapes they cannot take are refused."""

from __future__ import annotations

import pytest
import torch
import torchvision.models.video as tv_video
from test_engine_toys import make_args
from torchvision.models.video.swin_transformer import SwinTransformer3d

from network import build_model, get_entry, list_models
from network.summary import count_flops
from network.tv_video import MODELS, _mvit_tiny, _swin3d_tiny
from network.weights import load_pretrained
from train.engine import fit
from train.input_shapes import check_clip_shapes

# torchvision's weight metadata (num_params, and _ops: GFLOPs at 16×224²) and weight files
PUBLISHED = {
    "s3d": (8_320_048, 17.979, "s3d-d76dad2f.pth"),
    "mvit_v1_b": (36_610_672, 70.599, "mvit_v1_b-dbeb1030.pth"),
    "mvit_v2_s": (34_537_744, 64.224, "mvit_v2_s-ae3be167.pth"),
    "swin3d_t": (28_158_070, 43.882, "swin3d_t-7615ae03.pth"),
    "swin3d_s": (49_816_678, 82.841, "swin3d_s-da41c237.pth"),
    "swin3d_b": (88_048_984, 140.667, "swin3d_b_1k-24f7c7c6.pth"),
}
# state_dict entries of the torchvision models (= the weight files' keys)
ENTRIES = {
    "s3d": 464,
    "mvit_v1_b": 313,
    "mvit_v2_s": 397,
    "swin3d_t": 185,
    "swin3d_s": 353,
    "swin3d_b": 353,
}
# torchvision's top-level modules, adopted by the wrappers under the same names
TOP_LEVEL = {
    "s3d": ["features", "avgpool", "classifier"],
    "mvit_v2_s": ["conv_proj", "pos_encoding", "blocks", "norm", "head"],
    "swin3d_t": ["patch_embed", "pos_drop", "features", "norm", "avgpool", "head"],
}


def _meta(builder, **kwargs):
    with torch.device("meta"):
        return builder(**kwargs)


BIG = {"mvit_v1_b", "swin3d_s", "swin3d_b"}  # seconds each on CPU: slow-marked


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=[pytest.mark.slow] if n in BIG else []) for n in PUBLISHED]
)
def test_torchvision_state_dict_loads_strictly_and_counts_match(name):
    params, gflops, _ = PUBLISHED[name]
    reference = _meta(getattr(tv_video, name))
    model = _meta(build_model, name=name)
    assert list(model.state_dict()) == list(reference.state_dict())
    assert len(model.state_dict()) == ENTRIES[name]
    report = load_pretrained(model, reference.state_dict(), log=False)
    assert report.complete and len(report.loaded) == ENTRIES[name]
    assert sum(p.numel() for p in model.parameters()) == params
    frames, height, width = get_entry(name).constraints.reference
    flops = count_flops(model.eval(), (torch.empty(1, 3, frames, height, width, device="meta"),))
    assert flops / 2e9 == pytest.approx(gflops, abs=1e-3)


@pytest.mark.parametrize("name", sorted(TOP_LEVEL))
def test_wrappers_adopt_torchvision_modules(name):
    assert [n for n, _ in _meta(build_model, name=name).named_children()] == TOP_LEVEL[name]


@pytest.mark.parametrize(
    ("name", "reference", "clip"),
    [
        ("mvit_tiny", _mvit_tiny, (2, 3, 8, 32, 32)),
        ("swin3d_tiny", _swin3d_tiny, (2, 3, 5, 37, 45)),
    ],
)
def test_tiny_wrappers_compute_what_torchvision_computes(name, reference, clip):
    torch.manual_seed(0)
    source = reference(num_classes=5).eval()
    model = build_model(name, num_classes=5).eval()
    load_pretrained(model, source.state_dict(), log=False)
    x = torch.randn(clip)
    with torch.no_grad():
        torch.testing.assert_close(model(x), source(x), rtol=0, atol=0)


def test_swin3d_tiny_is_torchvision_swin_transformer():
    assert isinstance(_swin3d_tiny(), SwinTransformer3d)
    assert {"mvit_tiny", "swin3d_tiny"} <= set(list_models(tag="tiny"))


@pytest.mark.slow  # one full-size S3D forward (~10 s on 2 cores)
def test_s3d_forward_head_is_torchvision_forward():
    """S3D's head pools windows, then averages: forward_head ∘ forward_features is its forward."""
    torch.manual_seed(0)
    reference = tv_video.s3d(num_classes=4).eval()
    model = build_model("s3d", num_classes=4).eval()
    load_pretrained(model, reference.state_dict(), log=False)
    x = torch.randn(1, 3, 13, 209, 209)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (1, 1024, 1, 1, 1)
        torch.testing.assert_close(model.forward_head(features), reference(x), rtol=0, atol=0)
        model.reset_classifier(7)
        assert model(x).shape == (1, 7)


# ----------------------------------------------------------------------------- clip shapes
def _runs(name: str, shape: tuple[int, int, int]) -> bool:
    model = _meta(build_model, name=name).eval()
    try:
        model(torch.empty(1, 3, *shape, device="meta"))
    except RuntimeError:
        return False
    return True


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("s3d", (13, 209, 209)),
        ("s3d", (12, 224, 224)),
        ("s3d", (16, 208, 224)),
        ("mvit_v2_s", (16, 224, 224)),
        ("mvit_v2_s", (8, 224, 224)),
        ("mvit_v1_b", (16, 160, 160)),
        ("swin3d_t", (3, 37, 45)),
    ],
)
def test_declared_constraints_match_the_torchvision_code(name, shape):
    """What the registry refuses is exactly what torchvision's code cannot run (on meta)."""
    assert (get_entry(name).constraints.problem(shape) is None) == _runs(name, shape)


@pytest.mark.parametrize(
    ("name", "flags", "message"),
    [
        ("mvit_v2_s", ["--clip-length", "8", "--clip-size", "112"], "takes only 16×224×224"),
        ("s3d", ["--clip-length", "8", "--clip-size", "224"], "at least 13×209×209"),
        (
            "mvit_v2_s",
            ["--clip-length", "16", "--clip-size", "224", "--long-cycles"],
            "multigrid --long-cycles shape",
        ),
        (
            "s3d",
            ["--clip-length", "16", "--clip-size", "224", "--short-cycles"],
            "multigrid --short-cycles shape",
        ),
    ],
)
def test_a_clip_shape_the_network_cannot_take_is_one_line_before_training(
    tmp_path, name, flags, message
):
    model = _meta(build_model, name=name)
    args = make_args(tmp_path / "run", *flags)
    with pytest.raises(ValueError, match=message) as error:
        fit(model, [], None, args, family="video", class_names=["a"])
    assert "\n" not in str(error.value) and f"--network {name}" in str(error.value)
    assert not (tmp_path / "run").exists()  # refused before the run directory is made


def test_shapes_the_networks_take_pass(tmp_path):
    for name, flags in [
        ("mvit_v2_s", ["--clip-length", "16", "--clip-size", "224"]),
        ("s3d", ["--clip-length", "16", "--clip-size", "224"]),
        ("swin3d_t", ["--clip-length", "4", "--clip-size", "32", "--long-cycles"]),
    ]:
        check_clip_shapes(_meta(build_model, name=name), make_args(tmp_path, *flags))


def test_every_registered_torchvision_entry_has_a_reference_clip():
    for name in MODELS:
        assert get_entry(name).constraints.reference is not None


# ----------------------------------------------------------------------------- export
@pytest.mark.parametrize("name", ["swin3d_tiny", pytest.param("mvit_tiny", marks=pytest.mark.slow)])
def test_onnx_export_parity(tmp_path, name):
    from export import export_onnx

    model = build_model(name, num_classes=5).eval()
    frames, height, width = get_entry(name).constraints.reference
    report = export_onnx(model, tmp_path / f"{name}.onnx", (3, frames, height, width))
    assert report.max_abs_diff < 1e-4
