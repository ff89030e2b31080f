"""Checkpoints are recognised by their tensors' names and shapes, not by their wrapper.

- A ``{'epoch', 'state_dict'}`` file of an ``nn.DataParallel`` torchvision/ActRec ``r3d_18``
  (``module.`` keys, 122 tensors) is no SRTG file: its 3×3×3 residual kernels are named
  ``layerI.J.convK.0.weight``, where the SRTG code writes ``convK.0.0.weight``. It loads.
- A TAO PoseClassificationNet (ST-GCN) Lightning checkpoint is rebuilt for evaluate, inference and
  export with the graph its stored adjacency ``A`` is. Facts from TAO's ``st_gcn.py`` (run side by
  side with ActRec): its ``ST_GCN(ntu-rgb+d, spatial, 4 classes)`` state dict has 172 tensors,
  ActRec's ``st_gcn`` 171 plus the persistent ``A`` (3, 25, 25), every shape equal; TAO's ``A``
  is ActRec's ``graph_legacy`` graph (non-zero entries per partition 25 / 40 / 8, ``A[0][20, 20]``
  = 1/5, ``A[0][0, 0]`` = 1/4); the rebuilt model's logits equal TAO's to 3.6e-7 (max |logit|
  1.36) on random (6, 3, 32, 25, 2) input with perturbed weights and BN statistics.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import train_nvpose
from network import build_model
from network.foreign import foreign_model
from network.graph import Graph
from network.tao import is_tao_pose_checkpoint, tao_pose_network
from network.weights import load_pretrained
from tests.reference_manifests import srtg_names

TORCHVISION_R3D_18_TENSORS = 122


def _meta_state(name: str, **kwargs) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return build_model(name, **kwargs).state_dict()


def _dataparallel_file(state: dict, **extra) -> dict:
    return {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}, **extra}


@pytest.mark.parametrize("extra", [{}, {"optimizer": {"state": {}, "param_groups": []}}])
def test_a_dataparallel_r3d_18_file_loads_into_r3d_18(extra):
    state = _meta_state("r3d_18", num_classes=5)
    assert len(state) == TORCHVISION_R3D_18_TENSORS
    with torch.device("meta"):
        model = build_model("r3d_18", num_classes=5)
    report = load_pretrained(model, _dataparallel_file(state, **extra), log=False)
    assert report.complete and not report.refused and not report.head
    assert len(report.loaded) == TORCHVISION_R3D_18_TENSORS
    assert report.origin == "torchvision-named state dict of an nn.DataParallel/DDP model, epoch 3"


def test_an_srtg_r3d_file_is_still_named_srtg():
    """The SRTG code's own kernel names (one Sequential deeper) keep it an SRTG file."""
    state = _meta_state("r3d_18", num_classes=5)
    srtg = {srtg_names(name, tensor.shape): tensor for name, tensor in state.items()}
    with torch.device("meta"):
        model = build_model("r3d_18", num_classes=5)
    with pytest.raises(ValueError, match="SRTG save_checkpoint file, epoch 3") as caught:
        load_pretrained(model, _dataparallel_file(srtg, optimizer={}), log=False)
    assert "--network srtg_r3d_18 --no-sr-blocks" in str(caught.value)


# ----------------------------------------------------------------------------- TAO ST-GCN
def tao_pose_file(path, network: str = "st_gcn_tiny", *, label_map=None, seed: int = 0):
    """A TAO Lightning checkpoint of an ST-GCN on ntu-rgb+d (TAO's legacy graph, A stored) and
    the model that wrote it (ActRec's module names are TAO's)."""
    torch.manual_seed(seed)
    model = build_model(network, num_classes=4, graph_layout="ntu-rgb+d", graph_legacy=True)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
        for name, buffer in model.named_buffers():
            if name.endswith("running_var"):
                buffer.uniform_(0.5, 1.5)
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    state["model.A"] = model.A.clone()
    checkpoint = {"epoch": 9, "pytorch-lightning_version": "2.0.0", "state_dict": state}
    if label_map:
        spec = {"model": {"graph_layout": "ntu-rgb+d"}, "dataset": {"label_map": label_map}}
        checkpoint["hyper_parameters"] = {"experiment_spec": spec}
    torch.save(checkpoint, path)
    return model.eval()


def test_tao_st_gcn_layout_is_read_from_the_tensors():
    tensors = _meta_state("st_gcn", num_classes=4, graph_layout="ntu-rgb+d", graph_legacy=True)
    tensors["A"] = torch.from_numpy(Graph("ntu-rgb+d", "spatial", legacy=True).A)
    assert len(tensors) == 172 and is_tao_pose_checkpoint(tensors)
    assert [int((tensors["A"][k] > 0).sum()) for k in range(3)] == [25, 40, 8]
    assert float(tensors["A"][0][20, 20]) == pytest.approx(0.2)
    name, kwargs, args = tao_pose_network({}, tensors, "x.pth")
    assert name == "st_gcn"
    assert kwargs == {"num_classes": 4, "in_channels": 3, "edge_importance_weighting": True,
                      "graph_layout": "ntu-rgb+d", "graph_strategy": "spatial",
                      "graph_legacy": True}  # fmt: skip
    assert args == {"seq_length": 300, "num_person": 2}  # TAO's export input for NTU


def test_tao_st_gcn_checkpoint_is_rebuilt_with_its_graph(tmp_path):
    source = tao_pose_file(tmp_path / "tao.pth", label_map={"a": 0, "b": 1, "c": 2, "d": 3})
    model = foreign_model(tmp_path / "tao.pth", family="skeleton")
    assert model.network_name == "st_gcn_tiny" and model.class_names == ["a", "b", "c", "d"]
    assert model.graph.legacy and model.graph.layout.name == "ntu-rgb+d"
    x = torch.randn(2, 3, 16, 25, 2)
    with torch.no_grad():
        torch.testing.assert_close(model(x), source(x), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match=r"TAO PoseClassificationNet .* needs a 'video' model"):
        foreign_model(tmp_path / "tao.pth", family="video")


@pytest.fixture(scope="module")
def tao_pose(tmp_path_factory):
    root = tmp_path_factory.mktemp("tao_pose")
    model = tao_pose_file(root / "tao.pth")
    x = np.random.default_rng(0).normal(size=(4, 3, 16, 25, 2)).astype(np.float32)
    np.save(root / "data.npy", x)
    import pickle

    with open(root / "labels.pkl", "wb") as handle:
        pickle.dump(([f"s{i}" for i in range(4)], [0, 1, 2, 3]), handle)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).argmax(1).tolist()
    return root, expected


@pytest.mark.slow
def test_evaluate_inference_export_accept_a_tao_st_gcn_checkpoint(tao_pose, tmp_path):
    root, expected = tao_pose
    common = ["--checkpoint", str(root / "tao.pth"), "--data", str(root / "data.npy"),
              "--device", "cpu", "--workers", "0"]  # fmt: skip
    assert train_nvpose.main(["evaluate", *common, "--labels", str(root / "labels.pkl"),
                              "--output-dir", str(tmp_path / "eval")]) == 0  # fmt: skip
    assert train_nvpose.main(["inference", *common, "--output-dir", str(tmp_path / "inf")]) == 0
    lines = (tmp_path / "inf" / "actions.txt").read_text().splitlines()
    assert [line.split()[-1] for line in lines] == [f"class_{i}" for i in expected]
    onnx = tmp_path / "tao.onnx"
    assert train_nvpose.main(["export", "--checkpoint", str(root / "tao.pth"), "--onnx", str(onnx),
                              "--input-shape", "3,16,25,2"]) == 0  # fmt: skip
    assert onnx.is_file()
