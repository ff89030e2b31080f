"""TAO command lines and specs run as written, and what a user reads names real things.

- ``-r results_dir`` is accepted by ``export`` (all three scripts) and is ``convert``'s output
  folder (TAO's ``dataset_convert`` results); TAO's ``export_*.yaml`` specs with ``-e -r -k`` run.
- TAO 3/4 video specs give an ``rgb`` model's pretrained file as ``rgb_pretrained_model_path``.
- ``splits_used/`` lists each video by its real file name (``grow_000.webm``, not ``.avi``).
- NTU RGB+D data (``SsssCcccPpppRrrrAaaa`` names, label = action − 1) gets the NTU action names;
  MMAction2 ``label_map_*.txt`` files are label maps; the graph layout follows the joint count;
  skeleton ``inference`` writes ``predictions.csv`` with each sample's id.
"""

from __future__ import annotations

import argparse
import csv
import pickle

import numpy as np
import pytest
import torch

import train_gesture
import train_hmdb
import train_nvpose
from data.skeleton.dataset import (
    layout_for_joints,
    ntu_class_names,
    ntu_label_map,
    read_label_map,
)
from data.video.records import SplitResult, VideoRecord
from data.video.splits import load_split, write_split_lists
from network import build_model
from train.checkpoint import make_checkpoint

EXPORT_SPEC = """model_config:
  model_type: rgb
  backbone: resnet18
  rgb_seq_length: 8
  input_type: 3d
dataset_config:
  label_map: {a: 0, b: 1}
  output_shape: [32, 32]
  augmentation_config:
    rgb_input_mean: [0.5]
    rgb_input_std: [0.5]
"""


# ----------------------------------------------------------------------------- -r
@pytest.mark.parametrize("script", [train_hmdb, train_nvpose, train_gesture])
def test_export_accepts_tao_results_dir(script):
    args = script.parse_args(["export", "-r", "res", "-k", "nvidia_tao", "-m", "x.pth"])
    assert args.results_dir == "res" and args.checkpoint == "x.pth"


def test_convert_takes_r_as_its_output_folder():
    args = train_nvpose.parse_args(["convert", "-r", "res", "--data", "poses.json"])
    assert args.output_dir == "res"


@pytest.mark.slow
def test_tao_export_spec_runs_as_written(tmp_path):
    """``export -e export_rgb.yaml -r results -k key model=... output_file=...`` (TAO 3/4)."""
    model = build_model("r3d_tiny", num_classes=2)
    args = {"clip_length": 8, "clip_size": 32, "modality": "rgb"}
    torch.save(make_checkpoint(model, args=args, family="video", class_names=["a", "b"]),
               tmp_path / "rgb.pth")  # fmt: skip
    (tmp_path / "export_rgb.yaml").write_text(EXPORT_SPEC)
    code = train_hmdb.main(["export", "-e", str(tmp_path / "export_rgb.yaml"), "-r",
                            str(tmp_path / "results"), "-k", "nvidia_tao",
                            f"model={tmp_path / 'rgb.pth'}",
                            f"output_file={tmp_path / 'rgb.onnx'}"])  # fmt: skip
    assert code == 0 and (tmp_path / "rgb.onnx").is_file()


# ----------------------------------------------------------------------------- pretrained
def _train_args(tmp_path, **model_config) -> argparse.Namespace:
    spec = tmp_path / "train_rgb.yaml"
    lines = "".join(f"  {key}: {value}\n" for key, value in model_config.items())
    spec.write_text(f"model_config:\n  model_type: rgb\n{lines}")
    return train_hmdb.parse_args(["train", "-e", str(spec), "--network", "tao_r3d_tiny"])


def test_rgb_pretrained_model_path_is_a_single_stream_models_pretrained_file(tmp_path):
    args = _train_args(tmp_path, rgb_pretrained_model_path="pre.pth")
    kwargs = train_hmdb.network_kwargs("tao_r3d_tiny", args, num_classes=2)
    assert args.pretrained == "pre.pth" and "rgb_pretrained" not in kwargs
    build_model("tao_r3d_tiny", **kwargs)  # no "does not take argument(s) rgb_pretrained"


def test_two_pretrained_files_for_one_stream_are_refused(tmp_path):
    args = _train_args(tmp_path, rgb_pretrained_model_path="a.pth")
    args.pretrained = "b.pth"
    with pytest.raises(ValueError, match="name two files for the one stream of tao_r3d_tiny"):
        train_hmdb.network_kwargs("tao_r3d_tiny", args, num_classes=2)


# ----------------------------------------------------------------------------- splits_used
def test_splits_used_lists_real_file_names(tmp_path):
    root = tmp_path / "videos"
    records = []
    for name, suffix in [("grow_000", ".webm"), ("grow_001", ".mp4")]:
        path = root / "grow" / f"{name}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not decoded here")
        records.append(VideoRecord(path=path, label=0, name=f"grow/{name}"))
    folder = tmp_path / "prepared" / "grow" / "a.b"  # a prepared folder: a dot in its name
    folder.mkdir(parents=True)
    split = SplitResult(train=records, val=[VideoRecord(folder, 0, "grow/a.b")],
                        class_names=["grow"])  # fmt: skip
    lists = write_split_lists(split, tmp_path / "splits_used")
    assert (lists / "trainlist01.txt").read_text().split() == [
        "grow/grow_000.webm", "1", "grow/grow_001.mp4", "1"]  # fmt: skip
    assert (lists / "testlist01.txt").read_text().split() == ["grow/a.b"]
    back = load_split(root, lists)
    assert [r.path for r in back.train] == [r.path for r in records]


# ----------------------------------------------------------------------------- skeleton names
NTU = [f"S001C001P00{i}R001A{a:03d}" for i, a in enumerate([1, 2, 3, 61, 1, 2])]


def test_ntu_class_names_ship_with_actrec():
    names = ntu_class_names(120)
    assert len(names) == 120 and len(set(names)) == 120
    assert (names[0], names[59], names[60], names[119]) == (
        "drink water", "walking apart from each other", "put on headphone",
        "finger-guessing game (playing rock-paper-scissors)")  # fmt: skip
    assert ntu_class_names(60) == names[:60]


def test_ntu_label_map_needs_ntu_names_and_labels():
    labels = [0, 1, 2, 60, 0, 1]
    found = ntu_label_map(NTU, labels)
    assert len(found) == 61 and found["put on headphone"] == 60
    assert ntu_label_map(NTU, [1, 1, 2, 60, 0, 1]) is None  # a label that is not action - 1
    assert ntu_label_map(["clip_0", "clip_1"], [0, 1]) is None


def test_mmaction_label_map_text_files(tmp_path):
    path = tmp_path / "label_map_ntu60.txt"
    path.write_text("drink water\neat meal/snack\n\n")
    assert read_label_map(path) == {"drink water": 0, "eat meal/snack": 1}
    path.write_text("a\na\n")
    with pytest.raises(ValueError, match="class names repeated"):
        read_label_map(path)


def test_the_layout_follows_the_joint_count():
    assert layout_for_joints(25, "x.npy") == "ntu-rgb+d"
    assert layout_for_joints(34, "x.npy") == "nvidia"
    with pytest.raises(
        ValueError, match=r"17 joints per pose fit the graph layouts human3\.6m, coco"
    ):
        layout_for_joints(17, "x.npy")
    with pytest.raises(ValueError, match="23 joints per pose fit no built-in graph layout"):
        layout_for_joints(23, "x.npy")


@pytest.mark.slow
def test_ntu_data_trains_with_ntu_names_and_inference_names_samples(tmp_path):
    """25 joints and no --graph-layout: ntu-rgb+d; NTU-named samples: NTU action names."""
    data = np.random.default_rng(0).normal(size=(6, 3, 12, 25, 2)).astype(np.float32)
    np.save(tmp_path / "data.npy", data)
    with open(tmp_path / "labels.pkl", "wb") as handle:
        pickle.dump((NTU, [0, 1, 2, 60, 0, 1]), handle)
    common = ["--workers", "0", "--device", "cpu"]
    assert train_nvpose.main(["train", "--network", "st_gcn_tiny", "--train-data",
                              str(tmp_path / "data.npy"), "--train-labels",
                              str(tmp_path / "labels.pkl"), "--output-dir", str(tmp_path / "run"),
                              "--end-epoch", "1", "--batch-size", "3", "--no-tensorboard",
                              "--no-plots", *common]) == 0  # fmt: skip
    state = torch.load(tmp_path / "run" / "latest.pth", weights_only=True)
    assert state["class_names"] == ntu_class_names(61)
    assert state["network_kwargs"]["graph_layout"] == "ntu-rgb+d"
    assert train_nvpose.main(["inference", "--checkpoint", str(tmp_path / "run" / "latest.pth"),
                              "--data", str(tmp_path / "data.npy"), "--output-dir",
                              str(tmp_path / "inf"), *common]) == 0  # fmt: skip
    with open(tmp_path / "inf" / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    actions = (tmp_path / "inf" / "actions.txt").read_text().splitlines()
    assert [row["sample"] for row in rows] == [str(i) for i in range(6)]  # .npy: row numbers
    assert [row["class"] for row in rows] == actions
    assert all(name in ntu_class_names(61) for name in actions)
    assert all(0 < float(row["score"]) <= 1 for row in rows)
