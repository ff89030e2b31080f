"""X3D equal to PySlowFast's: architecture facts, PySlowFast and MMAction2 names loading strictly,
a worked output of PySlowFast's own code on seeded weights, ONNX parity, training (multigrid)."""

from __future__ import annotations

import math

import pytest
import torch
from test_engine_toys import make_args
from torch import nn
from torch.utils.data import Dataset

from network import build_model, get_entry
from network.summary import summarize
from network.weights import PretrainedLoadError, load_pretrained
from train.engine import fit
from train.history import read_metrics
from train.input_shapes import check_clip_shapes

# ----------------------------------------------------------------------------- reference facts
# PySlowFast configs/Kinetics/X3D_{XS,S,M,L}.yaml built by video_model_builder.X3D (400 classes):
# stage widths, blocks per stage, parameters, state_dict entries (num_batches_tracked included).
REFERENCE = {
    "x3d_xs": ((24, 48, 96, 192), (3, 5, 11, 7), 3_794_322, 568),
    "x3d_s": ((24, 48, 96, 192), (3, 5, 11, 7), 3_794_322, 568),
    "x3d_m": ((24, 48, 96, 192), (3, 5, 11, 7), 3_794_322, 568),
    "x3d_l": ((24, 48, 96, 192), (5, 10, 25, 15), 6_153_432, 1146),
}
# (frames, crop) of DATA.NUM_FRAMES/TRAIN_CROP_SIZE, and GMACs counted there (network.summary);
# the X3D paper's Table 3 gives 0.60 / 1.96 / 4.73 / 18.37 GFLOPs (multiply-adds) at these sizes.
TRAIN_INPUT = {
    "x3d_xs": ((4, 160), 0.605),
    "x3d_s": ((13, 160), 1.963),
    "x3d_m": ((16, 224), 4.732),
    "x3d_l": ((16, 312), 18.368),
}
# PySlowFast's model zoo (6.2 and 24.8 GFLOPs) counts X3D-M and X3D-L at their test crops
TEST_INPUT = {"x3d_m": ((16, 256), 6.181), "x3d_l": ((16, 356), 24.764)}
# A few PySlowFast model_state names (s1 stem, s2..s5 stages, head) and their shapes in X3D-XS
PYSLOWFAST_SHAPES = {
    "s1.pathway0_stem.conv_xy.weight": (24, 3, 1, 3, 3),
    "s1.pathway0_stem.conv.weight": (24, 1, 5, 1, 1),
    "s2.pathway0_res0.branch1.weight": (24, 24, 1, 1, 1),
    "s2.pathway0_res0.branch2.a.weight": (54, 24, 1, 1, 1),
    "s2.pathway0_res0.branch2.b.weight": (54, 1, 3, 3, 3),
    "s2.pathway0_res0.branch2.se.fc1.weight": (8, 54, 1, 1, 1),
    "s2.pathway0_res0.branch2.c.weight": (24, 54, 1, 1, 1),
    "s5.pathway0_res6.branch2.b.weight": (432, 1, 3, 3, 3),
    "s5.pathway0_res0.branch2.se.fc2.bias": (432,),
    "head.conv_5.weight": (432, 192, 1, 1, 1),
    "head.lin_5.weight": (2048, 432, 1, 1, 1),
    "head.projection.weight": (400, 2048),
}
# PySlowFast's X3D-XS (its code, run beside ActRec) on seeded_pyslowfast_state(400) and
# seeded_clip(): head.projection logits of the first 6 classes, eval mode.
PYSLOWFAST_XS_LOGITS = [
    [0.332104, 2.281568, 3.741096, -2.953377, -4.599382, -2.428773],
    [0.333011, 2.281968, 3.743027, -2.954367, -4.599383, -2.423446],
]
PYSLOWFAST_XS_ARGMAX = [381, 381]


# ----------------------------------------------------------------------------- reference names
_BLOCK_PARTS = {  # ActRec block module -> PySlowFast (resnet_helper.ResBlock / X3DTransform)
    "downsample.conv": "branch1",
    "downsample.bn": "branch1_bn",
    "conv1.conv": "branch2.a",
    "conv1.bn": "branch2.a_bn",
    "conv2.conv": "branch2.b",
    "conv2.bn": "branch2.b_bn",
    "se_module.fc1": "branch2.se.fc1",
    "se_module.fc2": "branch2.se.fc2",
    "conv3.conv": "branch2.c",
    "conv3.bn": "branch2.c_bn",
}
_MODULES = {  # stem_helper.X3DStem and head_helper.X3DHead
    "conv1_s.conv": "s1.pathway0_stem.conv_xy",
    "conv1_t.conv": "s1.pathway0_stem.conv",
    "conv1_t.bn": "s1.pathway0_stem.bn",
    "conv5.conv": "head.conv_5",
    "conv5.bn": "head.conv_5_bn",
    "lin5": "head.lin_5",
    "fc": "head.projection",
}


def pyslowfast_name(name: str) -> str:
    """ActRec X3D name -> PySlowFast's (written from the reference's module tree)."""
    module, _, leaf = name.rpartition(".")
    if module in _MODULES:
        return f"{_MODULES[module]}.{leaf}"
    layer, block, part = module.split(".", 2)
    return (
        f"s{int(layer.removeprefix('layer')) + 1}.pathway0_res{block}.{_BLOCK_PARTS[part]}.{leaf}"
    )


def pyslowfast_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model``'s tensors under PySlowFast's names and shapes (lin_5 a 1×1×1 convolution)."""
    state = {}
    for name, tensor in model.state_dict().items():
        theirs = pyslowfast_name(name)
        state[theirs] = tensor[..., None, None, None] if theirs == "head.lin_5.weight" else tensor
    return state


def seeded_fill(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Deterministic values by sorted name: BN scales and variances in [0.5, 1.5), the rest
    N(0, 0.1²) (biases N(0, 0.05²)); the same rule filled the reference model."""
    generator = torch.Generator().manual_seed(0)
    filled = {}
    for name in sorted(state):
        tensor = state[name]
        if not tensor.dtype.is_floating_point:
            filled[name] = tensor
        elif name.endswith(("running_var", "bn.weight")):
            filled[name] = torch.rand(tensor.shape, generator=generator) + 0.5
        else:
            scale = 0.1 if tensor.ndim > 1 else 0.05
            filled[name] = torch.randn(tensor.shape, generator=generator) * scale
    return filled


def seeded_clip() -> torch.Tensor:
    return torch.randn(2, 3, 4, 160, 160, generator=torch.Generator().manual_seed(1))


# ----------------------------------------------------------------------------- architecture
@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_architecture_equals_pyslowfast_configs(name):
    widths, depths, params, entries = REFERENCE[name]
    with torch.device("meta"):
        model = build_model(name)
    assert [len(getattr(model, f"layer{i}")) for i in range(1, 5)] == list(depths)
    assert [getattr(model, f"layer{i}")[0].conv3.conv.out_channels for i in range(1, 5)] == list(
        widths
    )
    assert sum(p.numel() for p in model.parameters()) == params
    assert len(model.state_dict()) == entries
    # squeeze-excitation on blocks 0, 2, 4, …; channelwise 3×3×3 (one group per channel)
    stage = model.layer3
    assert [hasattr(block.se_module, "fc1") for block in stage] == [
        i % 2 == 0 for i in range(11 if name != "x3d_l" else 25)
    ]
    assert all(block.conv2.conv.groups == block.conv2.conv.in_channels for block in stage)


@pytest.mark.parametrize(
    "name", ["x3d_xs", "x3d_s", "x3d_m", pytest.param("x3d_l", marks=pytest.mark.slow)]
)
def test_macs_at_the_reference_clip(name):
    (frames, size), gmacs = TRAIN_INPUT[name]
    assert get_entry(name).constraints.reference == (frames, size, size)
    summary = summarize(name, frames=frames, size=size)
    assert summary.macs_per_clip / 1e9 == pytest.approx(gmacs, abs=1e-3)
    if name in TEST_INPUT:
        (frames, size), gmacs = TEST_INPUT[name]
        summary = summarize(name, frames=frames, size=size)
        assert summary.macs_per_clip / 1e9 == pytest.approx(gmacs, abs=1e-3)


# ----------------------------------------------------------------------------- checkpoints
def test_pyslowfast_names_and_shapes():
    with torch.device("meta"):
        state = pyslowfast_state(build_model("x3d_xs"))
    for name, shape in PYSLOWFAST_SHAPES.items():
        assert tuple(state[name].shape) == shape, name


def test_pyslowfast_checkpoint_loads_strictly_and_computes_the_same():
    torch.manual_seed(0)
    source = build_model("x3d_xs").eval()
    source.load_state_dict(seeded_fill(source.state_dict()))
    checkpoint = {"model_state": pyslowfast_state(source), "epoch": 300, "cfg": "X3D: ..."}
    target = build_model("x3d_xs").eval()
    report = load_pretrained(target, checkpoint, log=False)
    assert len(report.loaded) == len(report.renamed) == 568 and report.complete
    clip = torch.randn(1, 3, 4, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(target(clip), source(clip), rtol=0, atol=0)


def test_worked_output_of_pyslowfast_code():
    model = build_model("x3d_xs").eval()
    with torch.device("meta"):
        names = pyslowfast_state(build_model("x3d_xs"))
    state = seeded_fill({name: torch.empty(t.shape, dtype=t.dtype) for name, t in names.items()})
    load_pretrained(model, {"model_state": state}, log=False)
    with torch.no_grad():
        logits = model(seeded_clip())
    torch.testing.assert_close(logits[:, :6], torch.tensor(PYSLOWFAST_XS_LOGITS), rtol=0, atol=1e-5)
    assert logits.argmax(1).tolist() == PYSLOWFAST_XS_ARGMAX


def test_mmaction2_checkpoint_loads_strictly():
    """MMAction2's X3D recognizer: ``backbone.`` + ActRec's names, ``cls_head.fc1`` (2048, 432)
    without bias, ``cls_head.fc2`` the classifier."""
    torch.manual_seed(0)
    source = build_model("x3d_s").eval()
    state = {}
    for name, tensor in source.state_dict().items():
        head = {"lin5.weight": "cls_head.fc1.weight", "fc.weight": "cls_head.fc2.weight"}
        state[head.get(name, {"fc.bias": "cls_head.fc2.bias"}.get(name, f"backbone.{name}"))] = (
            tensor
        )
    target = build_model("x3d_s", num_classes=400).eval()
    report = load_pretrained(target, {"state_dict": state, "meta": {}}, log=False)
    assert len(report.loaded) == 568 and report.complete
    assert all(
        torch.equal(a, b)
        for a, b in zip(target.state_dict().values(), source.state_dict().values())
    )


def test_new_class_count_replaces_only_the_head_and_a_wrong_depth_is_refused():
    source = build_model("x3d_xs")
    fresh = build_model("x3d_xs", num_classes=51)
    report = load_pretrained(fresh, {"model_state": pyslowfast_state(source)}, log=False)
    assert report.head == ["fc.weight", "fc.bias"] and report.complete
    with pytest.raises(PretrainedLoadError, match="missing"):
        load_pretrained(build_model("x3d_l"), {"model_state": pyslowfast_state(source)}, log=False)


# ----------------------------------------------------------------------------- export, training
def test_onnx_export_parity(tmp_path):
    from export import export_onnx

    model = build_model("x3d_tiny", num_classes=5).eval()
    report = export_onnx(model, tmp_path / "x3d.onnx", (3, 4, 32, 32))
    assert report.max_abs_diff < 1e-4


class ColourClips(Dataset):
    """3-channel clips whose class is the brighter channel; accepts ``(index, (T, H, W))``."""

    def __len__(self) -> int:
        return 24

    def __getitem__(self, item):
        index, (t, h, w) = item if isinstance(item, tuple) else (item, (4, 32, 32))
        label = index % 3
        generator = torch.Generator().manual_seed(index)
        clip = 0.5 * torch.randn(3, t, h, w, generator=generator)
        clip[label] += 2.0
        return clip, label, index


def _train(tmp_path, *flags: str) -> list[float]:
    model = build_model("x3d_tiny", num_classes=3, dropout=0.0)
    args = make_args(
        tmp_path, "--batch-size", "4", "--clip-length", "4", "--clip-size", "32", *flags
    )
    check_clip_shapes(model, args)  # X3D pools globally: every multigrid shape is fine
    fit(model, ColourClips(), None, args, family="video", class_names=["r", "g", "b"])
    return [row["train_loss"] for row in read_metrics(tmp_path)]


def test_engine_trains_x3d_tiny(tmp_path):
    losses = _train(tmp_path, "--end-epoch", "6", "--lr-base", "0.01")
    assert sum(losses[-2:]) / 2 < 0.6 * losses[0], losses


def test_x3d_takes_every_multigrid_shape(tmp_path):
    """PySlowFast trains X3D with long cycles (it rebuilds the model, and so the head's pooling
    window, at every shape); its fixed-window head cannot take short-cycle crops. ActRec's head
    pools globally, so both cycles run."""
    flags = ["--long-cycles", "--short-cycles", "--bn-base-size", "2", "--lr-base", "0.005"]
    losses = _train(tmp_path, "--end-epoch", "4", "--multigrid-schedule", "simple", *flags)
    assert len(losses) == 4 and all(math.isfinite(loss) for loss in losses)
