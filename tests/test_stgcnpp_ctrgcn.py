"""ST-GCN++ and CTR-GCN equal pyskl's STGCN (stgcn++ settings) and CTRGCN.

Facts written down from pyskl (kennymckormick/pyskl, ``models/gcns``, ``utils/graph.py``) and
checked by running its code beside ours (MMAction2's ports give the same): on the same weights
the logits agree to 0.0 (float32) on coco, nturgb+d and openpose, and pyskl/MMAction2 state dicts
load 692/692 (ST-GCN++) and 823/823 (CTR-GCN) tensors. The worked outputs below are pyskl's own
on deterministic weights (``_fill``) and inputs (``_sequence``), with pyskl's STGCN/CTRGCN built
with base_channels=16, num_stages=3, inflate_stages=down_stages=[2] (our tiny variants).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from network import build_model, get_entry, list_models
from network.gcn_blocks import inward_edges, reference_adjacency
from network.graph import LAYOUTS
from network.weights import PretrainedLoadError, load_pretrained

# (network, kwargs) -> parameters; pyskl backbone 1,377,596 / 1,431,252 + GCNHead 256·60 + 60
PARAMETERS = {
    ("stgcnpp", "coco"): 1_393_016,
    ("ctrgcn", "ntu-rgb+d"): 1_446_672,
}
# state-dict tensors (num_batches_tracked included; CTR-GCN's persistent backbone ``A`` too)
STATE_TENSORS = {"stgcnpp": 692, "ctrgcn": 823}
# key -> shape, pyskl's names after ``backbone.`` (``cls_head.fc_cls`` -> ``fc``)
KEYS = {
    "stgcnpp": {
        "data_bn.weight": (51,),  # V·C, coco 17 joints × 3
        "gcn.0.gcn.A": (3, 17, 17),
        "gcn.0.gcn.conv.weight": (192, 3, 1, 1),
        "gcn.0.gcn.down.0.weight": (64, 3, 1, 1),
        "gcn.0.tcn.branches.0.0.weight": (14, 64, 1, 1),  # 64 − 5·10: the first branch
        "gcn.0.tcn.branches.3.3.conv.weight": (10, 10, 3, 1),
        "gcn.0.tcn.branches.5.weight": (10, 64, 1, 1),
        "gcn.0.tcn.transform.2.weight": (64, 64, 1, 1),
        "gcn.4.residual.conv.weight": (128, 64, 1, 1),
        "gcn.9.tcn.bn.weight": (256,),
        "fc.weight": (60, 256),
    },
    "ctrgcn": {
        "A": (3, 25, 25),
        "data_bn.weight": (150,),  # M·V·C, 2 persons × 25 joints × 3
        "net.0.gcn1.A": (3, 25, 25),
        "net.0.gcn1.alpha": (1,),
        "net.0.gcn1.convs.0.conv1.weight": (8, 3, 1, 1),  # R = 8 for C ≤ 16
        "net.1.gcn1.convs.2.conv4.weight": (64, 8, 1, 1),  # R = 64 // 8
        "net.4.gcn1.down.0.weight": (128, 64, 1, 1),
        "net.0.tcn1.branches.0.3.conv.weight": (16, 16, 5, 1),
        "net.0.tcn1.branches.2.4.weight": (16,),  # the BN after the max pool
        "net.0.tcn1.branches.3.0.weight": (16, 64, 1, 1),  # 64 − 3·16, strided 1×1
        "net.7.residual.conv.weight": (256, 128, 1, 1),
        "fc.weight": (60, 256),
    },
}
# pyskl's logits (N=2, 4 classes) for the tiny configurations on _fill weights and _sequence
WORKED = {
    "stgcnpp_tiny": ("coco", 17, [0.326854, 0.705132, 0.668961, 0.25689,
                                  0.327122, 0.705248, 0.668865, 0.256632]),
    "ctrgcn_tiny": ("ntu-rgb+d", 25, [-1.374737, -0.28026, 0.962105, 1.751375,
                                      -1.374619, -0.279964, 0.962429, 1.751563]),
}  # fmt: skip
NEW = ("stgcnpp", "stgcnpp_tiny", "ctrgcn", "ctrgcn_tiny")


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _fill(state: dict[str, torch.Tensor]) -> None:
    """Deterministic values by sorted name (BN scales and variances around 0.75)."""
    with torch.no_grad():
        for k, (name, t) in enumerate(sorted(state.items())):
            if not t.is_floating_point():
                continue
            base = torch.sin(torch.arange(t.numel(), dtype=torch.float64) * 0.37 + k)
            scale = name.endswith(("running_var", "bn.weight")) or (
                ".bn" in name and name.endswith("weight")
            )
            t.copy_((0.75 + 0.25 * base if scale else 0.2 * base).reshape(t.shape).to(t.dtype))


def _sequence(shape: tuple[int, ...]) -> torch.Tensor:
    values = torch.sin(torch.arange(math.prod(shape), dtype=torch.float64) * 0.11)
    return values.reshape(shape).float()


def test_registered_with_tiny_variants() -> None:
    for name in NEW:
        entry = get_entry(name)
        assert entry.family == "skeleton" and entry.input_layout == "NCTVM"
    assert {"stgcnpp_tiny", "ctrgcn_tiny"} <= set(list_models(family="skeleton", tag="tiny"))


@pytest.mark.parametrize(("key", "expected"), PARAMETERS.items())
def test_parameter_counts_equal_pyskl(key: tuple[str, str], expected: int) -> None:
    name, layout = key
    with torch.device("meta"):
        model = build_model(name, num_classes=60, graph_layout=layout)
    assert _count(model) == expected
    assert len(model.state_dict()) == STATE_TENSORS[name]


@pytest.mark.parametrize("name", ["stgcnpp", "ctrgcn"])
def test_key_names_and_shapes_are_pyskl_s(name: str) -> None:
    layout = "coco" if name == "stgcnpp" else "ntu-rgb+d"
    with torch.device("meta"):
        state = build_model(name, num_classes=60, graph_layout=layout).state_dict()
    for key, shape in KEYS[name].items():
        assert tuple(state[key].shape) == shape, key


def test_pyskl_spatial_graph_facts() -> None:
    coco = reference_adjacency("coco")
    np.testing.assert_array_equal(coco[0], np.eye(17))
    # inward (parent feeds child, one parent each) and outward (children feed the parent, mean)
    assert coco[1][5, 7] == 1.0 and coco[1][:, 0].sum() == 0  # the nose has no parent
    assert coco[2][5, 0] == coco[2][1, 0] == 0.25  # nose: children 1, 2, 5, 6 in pyskl's coco
    ntu = reference_adjacency("ntu-rgb+d")
    assert ntu[2][21, 7] == ntu[2][22, 7] == 0.5  # pyskl: hand tip and thumb both on the hand
    assert ntu[2][1, 20] == 0.25  # spine shoulder: spine mid, neck, both shoulders
    # openpose: pointing ActRec's edges at the center gives pyskl's (= yysijie's) inward list
    assert inward_edges(LAYOUTS["openpose"]) == LAYOUTS["openpose"].edges
    for layout in LAYOUTS:  # every layout: three partitions, columns of in/out sum to 1 or 0
        a = reference_adjacency(layout)
        sums = a[1:].sum(axis=1)
        assert a.shape[0] == 3 and set(np.round(np.unique(sums), 6)) <= {0.0, 1.0}


@pytest.mark.parametrize("name", WORKED)
def test_worked_output_equals_pyskl(name: str) -> None:
    layout, joints, expected = WORKED[name]
    model = build_model(name, num_classes=4, graph_layout=layout).eval()
    _fill(model.state_dict())
    with torch.no_grad():
        logits = model(_sequence((2, 3, 12, joints, 2)))
    torch.testing.assert_close(logits.flatten(), torch.tensor(expected), atol=2e-6, rtol=0)


def _recognizer_state(model: torch.nn.Module, head: str) -> dict[str, torch.Tensor]:
    """The model's tensors under pyskl/MMAction2 recognizer names."""
    return {
        (f"cls_head.{head}." + key[3:] if key.startswith("fc.") else f"backbone.{key}"): value
        for key, value in model.state_dict().items()
    }


@pytest.mark.parametrize(("name", "head"), [("stgcnpp_tiny", "fc_cls"), ("ctrgcn_tiny", "fc")])
def test_pyskl_and_mmaction2_files_load_strictly(name: str, head: str, tmp_path) -> None:
    torch.manual_seed(0)
    source = build_model(name, num_classes=4).eval()
    _fill(source.state_dict())
    path = tmp_path / "epoch_16.pth"
    torch.save({"meta": {"epoch": 16}, "state_dict": _recognizer_state(source, head)}, path)
    model = build_model(name, num_classes=4).eval()
    report = load_pretrained(model, path, log=False)
    assert report.complete and len(report.loaded) == len(source.state_dict())
    assert "pyskl/MMAction2" in report.origin
    x = torch.randn(2, 3, 10, source.A.shape[-1], 2)
    torch.testing.assert_close(model(x), source(x), atol=0, rtol=0)
    broken = _recognizer_state(source, head)
    broken.pop(next(k for k in broken if k.endswith("tcn.bn.weight") or "tcn1" in k))
    torch.save({"state_dict": broken}, tmp_path / "broken.pth")
    with pytest.raises(PretrainedLoadError, match="missing"):
        load_pretrained(build_model(name, num_classes=4), tmp_path / "broken.pth", log=False)


def test_ctrgcn_pads_persons_and_refuses_more() -> None:
    model = build_model("ctrgcn_tiny", num_classes=3).eval()
    x = torch.randn(2, 3, 8, 25, 1)
    padded = torch.cat([x, torch.zeros_like(x)], dim=4)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(padded))  # pyskl FormatGCNInput: zero person
    with pytest.raises(ValueError, match="3 persons per sample; this network takes 2"):
        model(torch.randn(1, 3, 8, 25, 3))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "layout"), [("stgcnpp_tiny", "coco"), ("ctrgcn_tiny", "ntu-rgb+d")]
)
def test_engine_trains_them(name: str, layout: str, tmp_path) -> None:
    """A short CPU run of ``train_nvpose.py train``: the training loss falls."""
    import csv

    import train_nvpose

    data, run = tmp_path / "data", tmp_path / "run"
    assert train_nvpose.main([
        "synth", "--output-dir", str(data), "--classes", "standing", "sitting", "walking",
        "--layout", layout, "--train-per-class", "8", "--val-per-class", "2",
        "--min-frames", "16", "--max-frames", "16",
    ]) == 0  # fmt: skip
    assert train_nvpose.main([
        "train", "--device", "cpu", "--workers", "0", "--no-tensorboard", "--no-plots",
        "--log-level", "WARNING", "--output-dir", str(run), "--network", name,
        "--graph-layout", layout, "--end-epoch", "6", "--batch-size", "8", "--lr-base", "0.05",
        "--lr-schedule", "cosine", "--train-data", str(data / "train_data.npy"),
        "--train-labels", str(data / "train_label.pkl"),
        "--label-map", str(data / "label_map.json"), "--no-auto-resume",
    ]) == 0  # fmt: skip
    with (run / "metrics.csv").open() as handle:
        losses = [float(row["train_loss"]) for row in csv.DictReader(handle)]
    assert len(losses) == 6 and losses[-1] < 0.8 * losses[0], losses


def _pyskl_ctrgc(part, x: torch.Tensor, adjacency: torch.Tensor, alpha: torch.Tensor):
    """pyskl's ``CTRGC.forward`` for one partition, with plain convolutions."""
    conv = torch.nn.functional.conv2d
    x1 = conv(x, part.conv1.weight, part.conv1.bias).mean(-2)
    x2 = conv(x, part.conv2.weight, part.conv2.bias).mean(-2)
    x3 = conv(x, part.conv3.weight, part.conv3.bias)
    relation = torch.tanh(x1.unsqueeze(-1) - x2.unsqueeze(-2))
    topology = conv(relation, part.conv4.weight, part.conv4.bias) * alpha + adjacency[None, None]
    return torch.einsum("ncuv,nctu->nctv", topology, x3)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_ctrgcn_refines_all_partitions_as_pyskl_does_one_by_one(memory_format) -> None:
    """The batched refinement (mean before conv1/conv2, one product per conv kind, the
    partitions accumulated in place) is pyskl's sum over partitions, in float64 to rounding."""
    from network.ctrgcn import refine

    torch.manual_seed(0)
    unit = build_model("ctrgcn_tiny", num_classes=3).double().net[1].gcn1  # 16 -> 32 channels
    torch.nn.init.constant_(unit.alpha, 0.7)  # pyskl starts at 0: the refinement would vanish
    x = torch.randn(2, 16, 7, 25, dtype=torch.float64).contiguous(memory_format=memory_format)
    expected = sum(
        _pyskl_ctrgc(part, x, unit.A[k], unit.alpha) for k, part in enumerate(unit.convs)
    )
    got = refine(list(unit.convs), x, unit.A, unit.alpha)
    torch.testing.assert_close(got, expected, atol=1e-12, rtol=0)
