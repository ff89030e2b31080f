"""TAO spec files in all three families: both video layouts, the joint spec, unknown keys (warned
after logging starts, refused by --strict-spec), bad values (one line, exit 2), TAO's -e/-r/-k CLI
and the docs table of every key's handling.

The key lists below are written from the seed documents (TAO 3/4 ActionRecognitionNet, TAO
PoseClassificationNet, GestureNet) and from tao_pytorch_backend 5.0-5.5 ``default_config.py``
(action_recognition, pose_classification, core/common_config).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

import train_gesture
import train_hmdb
import train_nvpose
from network import build_model
from tests.video_fixtures import make_flow, make_frames, make_tao_folder
from train.checkpoint import load_checkpoint
from train.tao_specs import family_tables, markdown_tables

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--workers", "0", "--no-tensorboard", "--no-plots", "--device", "cpu"]

# Seed 000 example spec (TAO 3/4) plus every documented key of its tables.
TAO4_VIDEO = {
    "output_dir": "runs/tao4",  # the tutorial's (seed 001) top-level name
    "encryption_key": "nvidia_tao",
    "model_config": {
        "model_type": "rgb", "backbone": "resnet18", "rgb_seq_length": 3, "input_type": "3d",
        "sample_strategy": "consecutive", "sample_rate": 2, "dropout_ratio": 0.0,
        "rgb_pretrained_model_path": None, "rgb_pretrained_num_classes": 0,
        "of_seq_length": 10, "of_pretrained_model_path": None, "of_pretrained_num_classes": 0,
        "joint_pretrained_model_path": None, "num_fc": 64,
    },
    "train_config": {
        "optim": {"lr": 0.001, "momentum": 0.9, "weight_decay": 0.0001, "lr_scheduler": "MultiStep",
                  "lr_steps": [5, 15, 20], "lr_decay": 0.1, "lr_monitor": "val_loss",
                  "patience": 1, "min_lr": 0.0001},
        "epochs": 20, "checkpoint_interval": 1, "clip_grad_norm": 0.0,
    },
    "dataset_config": {
        "train_dataset_dir": "/data/train", "val_dataset_dir": "/data/test",
        "label_map": {"fall_floor": 0, "ride_bike": 1},
        "output_shape": [224, 224], "batch_size": 32, "workers": 8, "clips_per_video": 5,
        "augmentation_config": {
            "train_crop_type": "no_crop", "scales": [1.0], "horizontal_flip_prob": 0.5,
            "rgb_input_mean": [0.5], "rgb_input_std": [0.5], "of_input_mean": [0.5],
            "of_input_std": [0.5], "val_center_crop": False, "crop_smaller_edge": 256,
        },
    },
}  # fmt: skip

# tao_pytorch_backend 5.x ExperimentConfig: every field of model/dataset/train/evaluate/
# inference/export (and the common results_dir, encryption_key, wandb).
TAO5_VIDEO = {
    "results_dir": "runs/tao5",
    "encryption_key": None,
    "wandb": {"enable": False, "project": "TAO Toolkit"},
    "model": {
        "model_type": "rgb", "backbone": "resnet_18", "input_type": "3d", "of_seq_length": 10,
        "of_pretrained_model_path": None, "of_pretrained_num_classes": 0, "rgb_seq_length": 8,
        "rgb_pretrained_model_path": None, "rgb_pretrained_num_classes": 0, "num_fc": 64,
        "joint_pretrained_model_path": None, "sample_strategy": "consecutive", "sample_rate": 1,
        "imagenet_pretrained": False, "dropout_ratio": 0.5, "input_width": 160,
        "input_height": 160,
    },
    "dataset": {
        "train_dataset_dir": "/data/train", "val_dataset_dir": "/data/test",
        "label_map": {"walk": 0, "sits": 1}, "batch_size": 4, "workers": 2, "clips_per_video": 1,
        "augmentation_config": {
            "train_crop_type": "random_crop", "scales": [1], "horizontal_flip_prob": 0.5,
            "rgb_input_mean": [0.485, 0.456, 0.406], "rgb_input_std": [0.229, 0.224, 0.225],
            "of_input_mean": [0.5], "of_input_std": [0.5], "val_center_crop": False,
            "crop_smaller_edge": 180,
        },
    },
    "train": {
        "num_gpus": 1, "gpu_ids": [0], "num_nodes": 1, "seed": 1234,
        "cudnn": {"benchmark": False, "deterministic": True},
        "num_epochs": 12, "checkpoint_interval": 2, "validation_interval": 1,
        "resume_training_checkpoint_path": None, "results_dir": None, "clip_grad_norm": 0.0,
        "optim": {"lr": 5e-4, "momentum": 0.9, "weight_decay": 5e-4, "lr_scheduler": "AutoReduce",
                  "lr_monitor": "val_loss", "patience": 1, "min_lr": 1e-4, "lr_steps": [15, 25],
                  "lr_decay": 0.1},
    },
    "evaluate": {"num_gpus": 1, "gpu_ids": [0], "num_nodes": 1, "checkpoint": "ckpt.pth",
                 "results_dir": None, "test_dataset_dir": "/data/test", "batch_size": 1,
                 "video_eval_mode": "conv", "video_num_segments": 10, "gpu_id": 0},
    "inference": {"num_gpus": 1, "gpu_ids": [0], "num_nodes": 1, "checkpoint": "ckpt.pth",
                  "results_dir": None, "inference_dataset_dir": "/data/infer", "batch_size": 1,
                  "video_inf_mode": "center", "video_num_segments": 1, "gpu_id": 0},
    "export": {"checkpoint": "ckpt.pth", "results_dir": None, "onnx_file": "model.onnx",
               "gpu_id": 0, "batch_size": 1},
}  # fmt: skip

# tao_pytorch_backend 5.x pose_classification ExperimentConfig (seed 002 lists the same fields).
TAO5_POSE = {
    "results_dir": "runs/pose",
    "encryption_key": None,
    "model": {"model_type": "ST-GCN", "pretrained_model_path": None, "input_channels": 3,
              "dropout": 0.5, "graph_layout": "nvidia", "graph_strategy": "spatial",
              "edge_importance_weighting": True},
    "dataset": {"train_dataset": {"data_path": "t.npy", "label_path": "t.pkl"},
                "val_dataset": {"data_path": "v.npy", "label_path": "v.pkl"},
                "num_classes": 6, "label_map": {"sitting": 0, "standing": 1},
                "random_choose": False, "random_move": False, "window_size": -1,
                "batch_size": 16, "num_workers": 1},
    "train": {"num_gpus": 1, "gpu_ids": [0], "num_nodes": 1, "seed": 1234,
              "cudnn": {"benchmark": False, "deterministic": True},
              "num_epochs": 70, "checkpoint_interval": 5, "validation_interval": 1,
              "resume_training_checkpoint_path": None, "results_dir": None, "grad_clip": 0.0,
              "optim": {"optimizer_type": "torch.optim.SGD", "lr": 0.1, "momentum": 0.9,
                        "nesterov": True, "weight_decay": 0.0001, "lr_scheduler": "MultiStep",
                        "lr_monitor": "val_loss", "patience": 1, "min_lr": 0.0001,
                        "lr_steps": [10, 60], "lr_decay": 0.1}},
    "evaluate": {"num_gpus": 1, "gpu_ids": [0], "num_nodes": 1, "checkpoint": "c.pth",
                 "results_dir": None, "test_dataset": {"data_path": "v.npy", "label_path": "v.pkl"}},
    "inference": {"num_gpus": 1, "gpu_ids": [0], "num_nodes": 1, "checkpoint": "c.pth",
                  "results_dir": None, "output_file": "out.txt",
                  "test_dataset": {"data_path": "v.npy", "label_path": None}},
    "export": {"results_dir": None, "checkpoint": "c.pth", "onnx_file": "m.onnx", "gpu_id": 0},
    "dataset_convert": {"results_dir": None, "data": "poses.json", "pose_type": "3dbp",
                        "num_joints": 34, "input_width": 1920, "input_height": 1080,
                        "focal_length": 1200.0, "sequence_length_max": 300,
                        "sequence_length_min": 10, "sequence_length": 100,
                        "sequence_overlap": 0.5},
}  # fmt: skip

SCRIPTS = {"video": train_hmdb, "skeleton": train_nvpose, "gesture": train_gesture}


def _write(tmp_path: Path, spec: dict, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    text = json.dumps(spec) if name.endswith(".json") else yaml.safe_dump(spec)
    path.write_text(text, encoding="utf-8")
    return path


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# ----------------------------------------------------------------------------- video layouts
def test_tao4_video_spec_sets_network_clip_lr_epochs_and_output(tmp_path):
    spec = _write(tmp_path, TAO4_VIDEO)
    args = train_hmdb.parse_args(["train", "-e", str(spec), "--strict-spec"])
    assert train_hmdb.resolve_network(args) == "tao_r3d_18"
    assert (args.modality, args.clip_length, args.flow_clip_length) == ("rgb", 3, 10)
    assert (args.clip_size, args.short_side, args.frame_interval) == (224, 256, 2)
    assert (args.lr_base, args.lr_steps, args.lr_factor, args.end_epoch) == (
        0.001,
        [5, 15, 20],
        0.1,
        20,
    )
    assert (args.lr_schedule, args.clip_grad, args.min_lr) == ("multistep", None, 0.0001)
    assert args.output_dir == "runs/tao4"  # TAO 3/4: the run folder itself
    assert (args.data, args.val_data, args.clips_per_video) == ("/data/train", "/data/test", 5)
    assert args.label_map == {"fall_floor": 0, "ride_bike": 1}
    assert (args.train_crop, args.rgb_mean, args.val_center_crop) == ("no_crop", [0.5], False)
    # -r (TAO's results_dir flag) beats the spec; a spec results_dir is the run folder too
    args = train_hmdb.parse_args(["train", "-e", str(spec), "-r", str(tmp_path / "r")])
    assert args.output_dir == str(tmp_path / "r")
    spec = _write(tmp_path, {**TAO4_VIDEO, "output_dir": None, "results_dir": "runs/x"})
    assert train_hmdb.parse_args(["train", "-e", str(spec)]).output_dir == "runs/x"


def test_tao5_video_spec_sets_network_clip_lr_epochs_and_output(tmp_path):
    spec = _write(tmp_path, TAO5_VIDEO)
    args = train_hmdb.parse_args(["train", "-e", str(spec), "--strict-spec"])
    assert train_hmdb.resolve_network(args) == "tao_r3d_18"
    assert (args.clip_length, args.clip_size, args.short_side, args.dropout) == (8, 160, 180, 0.5)
    assert (args.lr_base, args.lr_schedule, args.plateau_patience, args.end_epoch) == (
        5e-4, "plateau", 1, 12,
    )  # fmt: skip
    assert (args.random_seed, args.checkpoint_interval, args.batch_size) == (1234, 2, 4)
    assert args.output_dir == str(Path("runs/tao5") / "train")  # TAO 5: results_dir/<task>
    assert args.label_map == {"walk": 0, "sits": 1}
    evaluate = train_hmdb.parse_args(["evaluate", "-e", str(spec), "--strict-spec"])
    assert (evaluate.checkpoint, evaluate.val_data, evaluate.batch_size) == (
        "ckpt.pth", "/data/test", 1,
    )  # fmt: skip
    assert (evaluate.eval_mode, evaluate.segments) == ("conv", 10)
    assert evaluate.output_dir == str(Path("runs/tao5") / "evaluate")
    own = {**TAO5_VIDEO, "train": {**TAO5_VIDEO["train"], "results_dir": "elsewhere"}}
    args = train_hmdb.parse_args(["train", "-e", str(_write(tmp_path, own))])
    assert args.output_dir == "elsewhere"  # train.results_dir beats the top-level one
    export = train_hmdb.parse_args(["export", "-e", str(spec), "--strict-spec"])
    assert (export.checkpoint, export.onnx) == ("ckpt.pth", "model.onnx")


def test_input_type_defaults_to_2d_as_tao_and_backbones_are_checked(tmp_path):
    args = train_hmdb.parse_args(["train", "model.backbone=resnet_34"])
    assert train_hmdb.resolve_network(args) == "resnet2d_34"
    code = train_hmdb.main(["train", "model.backbone=i3d", "--data", str(tmp_path)])
    assert code == 2


# ----------------------------------------------------------------------------- joint
def test_tao4_joint_spec_builds_the_two_stream_model(tmp_path):
    spec = {
        "model_config": {"model_type": "joint", "backbone": "resnet18", "input_type": "2d",
                         "rgb_seq_length": 3, "of_seq_length": 10, "num_fc": 16},
    }  # fmt: skip
    args = train_hmdb.parse_args(["train", "-e", str(_write(tmp_path, spec)), "--strict-spec"])
    name = train_hmdb.resolve_network(args)
    assert (name, args.rgb_network, args.of_network) == ("joint", "resnet2d_18", "resnet2d_18")
    model = build_model(name, **train_hmdb.network_kwargs(name, args, 2))
    assert model.fc1.out_features == 16
    assert model.rgb.conv1.in_channels == 9 and model.flow.conv1.in_channels == 20
    assert train_hmdb.input_dims_of(name, args) == 2


@pytest.fixture
def tao_videos(tmp_path: Path) -> Path:
    """TAO layout root/<class>/<video>/{rgb,u,v}: 3 classes × 3 videos of 8 frames."""
    root = tmp_path / "videos"
    for index, cls in enumerate(("bend", "fall", "walk")):
        for video in range(3):
            seed = 10 * index + video
            make_tao_folder(
                root / cls / f"v{video}",
                make_frames(8, 36, 40, seed=seed),
                u=make_flow(8, 36, 40, seed=seed),
                v=make_flow(8, 36, 40, seed=seed + 100),
                image_format="jpg",
            )
    return root


def test_tao5_joint_spec_with_pretrained_streams_trains(tao_videos, tmp_path):
    """Streams start from their pretrained files (lr 0 keeps them), label_map picks 2 of 3
    classes in its order, results_dir/train is the run folder."""
    streams, params = {}, []
    for stream, channels in (("rgb", 3), ("of", 2)):
        torch.manual_seed(len(stream))
        net = build_model("resnet2d_tiny", num_classes=2, in_channels=channels, num_frames=4)
        streams[stream] = net.state_dict()
        params = [name for name, _ in net.named_parameters()]
        torch.save(streams[stream], tmp_path / f"{stream}.pth")
    spec = {
        "results_dir": str(tmp_path / "results"),
        "model": {"model_type": "joint", "backbone": "resnet_tiny", "input_type": "2d",
                  "rgb_seq_length": 4, "of_seq_length": 4, "num_fc": 8,
                  "rgb_pretrained_model_path": str(tmp_path / "rgb.pth"),
                  "of_pretrained_model_path": str(tmp_path / "of.pth"),
                  "input_height": 32, "input_width": 32, "dropout_ratio": 0.0},
        "dataset": {"train_dataset_dir": str(tao_videos), "val_dataset_dir": str(tao_videos),
                    "label_map": {"walk": 0, "bend": 1}, "batch_size": 2, "workers": 0,
                    "augmentation_config": {"crop_smaller_edge": 36}},
        "train": {"num_epochs": 1, "optim": {"lr": 0.0, "weight_decay": 0.0, "momentum": 0.0}},
    }  # fmt: skip
    path = _write(tmp_path, spec)
    assert train_hmdb.main(["train", "-e", str(path), "--strict-spec", *FAST]) == 0
    run = tmp_path / "results" / "train"
    state = load_checkpoint(run / "latest.pth")
    assert state["network"] == "joint" and state["class_names"] == ["walk", "bend"]
    weights = state["model"]
    assert len(params) > 4
    for stream, prefix in (("rgb", "rgb."), ("of", "flow.")):
        for key in params:  # lr 0: every parameter is still the pretrained one
            assert torch.equal(weights[prefix + key], streams[stream][key]), (stream, key)
    # TAO 5 evaluate section: checkpoint, test set and mode from the spec, results_dir/evaluate
    spec["evaluate"] = {
        "checkpoint": str(run / "latest.pth"),
        "test_dataset_dir": str(tao_videos),
        "video_eval_mode": "conv",
        "video_num_segments": 2,
        "batch_size": 2,
    }
    path = _write(tmp_path, spec)
    evaluate = ["evaluate", "-e", str(path), "--strict-spec", "--workers", "0", "--device", "cpu"]
    assert train_hmdb.main(evaluate) == 0
    metrics = json.loads((tmp_path / "results" / "evaluate" / "metrics.json").read_text())
    # label_map: walk and bend only (fall left out), 2 conv segments per video
    assert (metrics["num_videos"], metrics["num_clips"]) == (6, 12)


# ----------------------------------------------------------------------------- unknown keys
MISSPELT = [
    ("video", {"train": {"num_epoch": 3}}, "train.num_epoch (did you mean train.num_epochs?)"),
    ("video", {"model_config": {"rgb_seq_lenght": 8}},
     "model_config.rgb_seq_lenght (did you mean model_config.rgb_seq_length?)"),
    ("skeleton", {"train": {"num_epoch": 3}}, "train.num_epoch (did you mean train.num_epochs?)"),
    ("gesture", {"trainer": {"top_trainig": {"train_epochs": 2}}},
     "trainer.top_trainig (did you mean trainer.top_training?)"),
]  # fmt: skip


@pytest.mark.parametrize(("family", "spec", "named"), MISSPELT)
def test_unknown_keys_warned_once_logging_is_up(tmp_path, capfd, family, spec, named):
    path = _write(tmp_path, spec, "spec.json" if family == "gesture" else "spec.yaml")
    # no data given: the command stops (exit 2) after logging is set up and the notes are out
    SCRIPTS[family].main(["train", "-e", str(path), "--output-dir", str(tmp_path / "o")])
    err = capfd.readouterr().err
    warned = [line for line in _lines(err) if "unknown spec key" in line]
    assert len(warned) == 1 and named in warned[0]
    assert "WARNING train.config:" in warned[0]  # the logging format: logging was set up


@pytest.mark.parametrize(("family", "spec", "named"), MISSPELT)
def test_strict_spec_refuses_unknown_keys(tmp_path, capfd, family, spec, named):
    path = _write(tmp_path, spec, "spec.json" if family == "gesture" else "spec.yaml")
    out = tmp_path / "o"
    code = SCRIPTS[family].main(
        ["train", "-e", str(path), "--strict-spec", "--output-dir", str(out)]
    )
    err = _lines(capfd.readouterr().err)
    assert code == 2 and len(err) == 1, err
    assert "--strict-spec" in err[0] and named in err[0] and str(path) in err[0]
    assert not out.exists()


@pytest.mark.parametrize(
    ("family", "spec", "command"),
    [
        ("video", TAO4_VIDEO, "train"),
        ("video", TAO5_VIDEO, "train"),
        ("video", TAO5_VIDEO, "evaluate"),
        ("video", TAO5_VIDEO, "inference"),
        ("skeleton", TAO5_POSE, "train"),
        ("skeleton", TAO5_POSE, "evaluate"),
        ("skeleton", TAO5_POSE, "convert"),
        ("gesture", yaml.safe_load((ROOT / "configs/gesture/train_spec.json").read_text()), "train"),
        ("skeleton", yaml.safe_load((ROOT / "configs/nvpose/experiment_nvidia.yaml").read_text()),
         "train"),
    ],
)  # fmt: skip
def test_every_documented_key_is_known(tmp_path, family, spec, command):
    """Full TAO specs (every documented key) pass --strict-spec: no key is unknown."""
    path = _write(tmp_path, spec)
    parse = {"video": train_hmdb.parse_args, "skeleton": train_nvpose.parse_args}.get(
        family, train_gesture.parse_args
    )
    args = parse([command, "-e", str(path), "--strict-spec"])
    assert not [note for level, note in args.spec_notes if "unknown" in note]


# ----------------------------------------------------------------------------- bad values
BAD_VALUES = [
    (train_hmdb, "model_config.model_type=bogus", "model_config.model_type: 'bogus' is not one of rgb, of, joint"),
    (train_hmdb, "train_config.optim.lr_scheduler=Cosine",
     "train_config.optim.lr_scheduler: 'Cosine' is not one of MultiStep, AutoReduce"),
    (train_hmdb, "dataset_config.output_shape=112", "dataset_config.output_shape: bad value 112 (expected [height, width]"),
    (train_hmdb, "model.input_type=4d", "model.input_type: '4d' is not one of 2d, 3d"),
    (train_hmdb, "model.dropout_ratio=0.1", None),  # the spec's input_width 160, height 112
    (train_nvpose, "train.optim.lr_scheduler=Cosine",
     "train.optim.lr_scheduler: 'Cosine' is not one of MultiStep, AutoReduce"),
    (train_nvpose, "model.model_type=bogus", "model.model_type: bad value 'bogus' (expected one of ST-GCN, ctrgcn, ctrgcn_tiny, st_gcn, st_gcn_tiny, stgcnpp"),
    (train_nvpose, "model.graph_strategy=bogus", "model.graph_strategy: 'bogus' is not one of"),
    (train_gesture, "trainer.finetuning.optimizer=lbfgs", "trainer.finetuning.optimizer: 'lbfgs' is not one of"),
]  # fmt: skip


@pytest.mark.parametrize(("script", "override", "message"), BAD_VALUES)
def test_bad_values_are_one_line_naming_key_and_allowed(tmp_path, capfd, script, override, message):
    sizes = {"model": {"input_width": 160, "input_height": 112 if message is None else 160}}
    spec = _write(tmp_path, sizes if script is train_hmdb else {})
    code = script.main(["train", "-e", str(spec), override, "--output-dir", str(tmp_path / "o")])
    err = _lines(capfd.readouterr().err)
    assert code == 2 and len(err) == 1, err
    assert (message or "model.input_height (112) and model.input_width (160) disagree") in err[0]


# ----------------------------------------------------------------------------- TAO CLI shape
def test_tao_cli_e_r_k_and_top_level_overrides(tmp_path, capfd):
    spec = _write(tmp_path, TAO4_VIDEO)
    results = tmp_path / "results"
    argv = ["train", "-e", str(spec), "-r", str(results), "-k", "nvidia_tao", "--data", "/no/data"]
    assert train_hmdb.main(argv) == 2  # no data; the notes were logged first
    err = capfd.readouterr().err
    assert "-k/--key is accepted for TAO compatibility and ignored" in err
    assert "encryption_key is accepted and ignored" in err
    args = train_hmdb.parse_args(argv)
    assert args.output_dir == str(results) and args.key == "nvidia_tao"
    # seed 000: evaluate -e spec -k key model=... test_dataset_dir=... video_eval_mode=...
    evaluate = train_hmdb.parse_args([
        "evaluate", "--experiment_spec_file", str(spec), "--key", "k", "model=/m/rgb_only_model.tlt",
        "batch_size=1", "test_dataset_dir=/data/test", "video_eval_mode=conv",
        "video_num_segments=3", "gpu_id=0",
    ])  # fmt: skip
    assert (evaluate.checkpoint, evaluate.batch_size, evaluate.val_data) == (
        "/m/rgb_only_model.tlt", 1, "/data/test",
    )  # fmt: skip
    assert (evaluate.eval_mode, evaluate.segments) == ("conv", 3)
    infer = train_hmdb.parse_args(
        [
            "inference",
            "-e",
            str(spec),
            "model=m.pth",
            "inference_dataset_dir=/d",
            "video_inf_mode=center",
        ]
    )
    assert (infer.checkpoint, infer.videos, infer.eval_mode) == ("m.pth", "/d", "center")
    export = train_hmdb.parse_args(
        ["export", "-e", str(spec), "-k", "k", "model=m.pth", "output_file=o.onnx"]
    )
    assert (export.checkpoint, export.onnx) == ("m.pth", "o.onnx")
    # a TAO 3/4 model=... beside a TAO 5 model: section is the checkpoint, the section stays
    tao5 = _write(tmp_path, TAO5_VIDEO, "tao5.yaml")
    evaluate = train_hmdb.parse_args(["evaluate", "-e", str(tao5), "model=x.pth"])
    assert evaluate.checkpoint == "x.pth" and evaluate.clip_length == 8


def test_pose_results_dir_is_per_task(tmp_path):
    spec = _write(tmp_path, TAO5_POSE)
    assert train_nvpose.parse_args(["train", "-e", str(spec)]).output_dir == str(
        Path("runs/pose") / "train"
    )
    assert train_nvpose.parse_args(["convert", "-e", str(spec)]).output_dir == str(
        Path("runs/pose") / "dataset_convert"
    )
    args = train_nvpose.parse_args(
        ["train", "-e", str(spec), "-k", "key", "train.optim.optimizer_type=torch.optim.SGD"]
    )
    assert args.optimizer == "sgd" and args.nesterov is True and args.end_epoch == 70


# ----------------------------------------------------------------------------- docs
def test_docs_table_lists_every_key_and_its_handling():
    text = (ROOT / "docs" / "TAO_SPECS.md").read_text(encoding="utf-8")
    assert markdown_tables() in text, "docs/TAO_SPECS.md is stale: python -m train.tao_specs"
    tables = family_tables()
    assert {"video", "skeleton", "gesture"} == set(tables)
