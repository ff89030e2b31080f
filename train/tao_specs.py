"""TAO spec keys of the three families and the ActRec flags they set (``train.config`` targets).

Sources (facts only; the key lists are written out here):

- video, ActionRecognitionNet: TAO 3/4 layout ``model_config`` / ``train_config`` /
  ``dataset_config`` (seed documents 000 and 001, TAO's ``-e -r -k`` CLI with top-level overrides
  ``model=``, ``test_dataset_dir=`` ...), and the TAO 5 layout ``model`` / ``dataset`` / ``train`` /
  ``evaluate`` / ``inference`` / ``export`` (tao_pytorch_backend 5.0-5.5 ``default_config.py``);
- skeleton, PoseClassificationNet (seed 002, TAO 5 layout);
- gesture, GestureNet ``train_spec.json`` (seed 003; ``dataset`` is the TAO tutorial's section).

Each ``*_spec_map(command, spec)`` gives the keys one subcommand uses; ``*_KEYS`` all keys of the
family, so that a key of another subcommand (``evaluate.checkpoint`` while training) is not
reported as unknown. ``results_dir`` follows TAO: in the TAO 5 layout a top-level ``results_dir``
means ``<results_dir>/<task>`` unless the task's own ``<task>.results_dir`` is set; in the TAO 3/4
video layout it (like ``output_dir`` and ``-r``) is the run directory itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from data.skeleton.convert import ConvertSettings
from network import list_models
from train.config import Ignored, SpecTarget, square_shape

__all__ = [
    "GESTURE_SPEC_MAP",
    "SKELETON_KEYS",
    "VIDEO_KEYS",
    "family_tables",
    "markdown_tables",
    "skeleton_spec_map",
    "video_spec_map",
]

SpecMap = dict[str, SpecTarget]

TAO_SCHEDULES = {"MultiStep": "multistep", "AutoReduce": "plateau"}
TAO_MODALITIES = {"rgb": "rgb", "of": "flow", "joint": "joint"}
EVAL_MODES = {"center": "center", "conv": "conv"}  # TAO's "all" (every clip) is not offered
GPU = Ignored("the device is --device (or CUDA_VISIBLE_DEVICES); several GPUs run under torchrun")
ENCRYPTION = Ignored("TAO's model encryption key; ActRec checkpoints are plain files")
WANDB = Ignored("Weights & Biases logging; ActRec writes TensorBoard, metrics.csv and plots")
CUDNN = Ignored("cuDNN flags; ActRec keeps torch's defaults (seeded, not forced deterministic)")
PRETRAINED_CLASSES = Ignored(
    "the loader reads the class count from the checkpoint's head and builds a fresh head"
)


def _prefixed(prefix: str, keys: Mapping[str, SpecTarget]) -> SpecMap:
    return {f"{prefix}.{key}": target for key, target in keys.items()}


def _task_dir(task: str) -> tuple[str, Any]:
    """TAO 5: a top-level ``results_dir`` holds one folder per task."""
    return ("output_dir", lambda root: str(Path(str(root)) / task))


_GPU_KEYS: SpecMap = dict.fromkeys(("gpu_id", "gpu_ids", "num_gpus", "num_nodes"), GPU)


def _gpu_keys(prefix: str) -> SpecMap:
    return _prefixed(prefix, _GPU_KEYS)


# ----------------------------------------------------------------------------- video
_VIDEO_MODEL: SpecMap = {
    "model_type": ("modality", TAO_MODALITIES),
    "backbone": "backbone",
    "input_type": "input_type",
    "rgb_seq_length": "clip_length",
    "of_seq_length": "flow_clip_length",
    "rgb_pretrained_model_path": "rgb_pretrained",
    "rgb_pretrained_num_classes": PRETRAINED_CLASSES,
    "of_pretrained_model_path": "of_pretrained",
    "of_pretrained_num_classes": PRETRAINED_CLASSES,
    "joint_pretrained_model_path": "pretrained",
    "num_fc": "num_fc",
    "sample_strategy": "sample_strategy",
    "sample_rate": "frame_interval",
    "dropout_ratio": "dropout",
}
_VIDEO_MODEL_TAO5: SpecMap = {
    "input_height": "clip_size",
    "input_width": "clip_size",  # ActRec crops square clips: both must agree
    "imagenet_pretrained": Ignored("TAO-internal ImageNet start; give --pretrained instead"),
}
# Evaluation and inference use these too (how a clip is read and normalised).
_VIDEO_CLIP_DATA: SpecMap = {
    "label_map": "label_map",
    "augmentation_config.rgb_input_mean": "rgb_mean",
    "augmentation_config.rgb_input_std": "rgb_std",
    "augmentation_config.of_input_mean": "of_mean",
    "augmentation_config.of_input_std": "of_std",
    "augmentation_config.val_center_crop": "val_center_crop",
    "augmentation_config.crop_smaller_edge": "short_side",
}
_VIDEO_TRAIN_DATA: SpecMap = {
    "train_dataset_dir": "data",
    "val_dataset_dir": "val_data",
    "batch_size": "batch_size",
    "workers": "workers",
    "clips_per_video": "clips_per_video",
    "augmentation_config.train_crop_type": "train_crop",
    "augmentation_config.scales": "crop_scales",
    "augmentation_config.horizontal_flip_prob": "flip_prob",
}
_VIDEO_OPTIM: SpecMap = {
    "lr": "lr_base",
    "momentum": "momentum",
    "weight_decay": "weight_decay",
    "lr_scheduler": ("lr_schedule", TAO_SCHEDULES),
    "lr_steps": "lr_steps",
    "lr_decay": "lr_factor",
    "lr_monitor": "plateau_monitor",
    "patience": "plateau_patience",
    "min_lr": "min_lr",
}
_VIDEO_TRAIN_TAO4: SpecMap = {
    "epochs": "end_epoch",
    "checkpoint_interval": "checkpoint_interval",
    "clip_grad_norm": ("clip_grad", lambda value: float(value) or None),  # 0.0: no clipping
}
_VIDEO_TRAIN_TAO5: SpecMap = {
    "num_epochs": "end_epoch",
    "checkpoint_interval": "checkpoint_interval",
    "validation_interval": "eval_interval",
    "clip_grad_norm": ("clip_grad", lambda value: float(value) or None),
    "seed": "random_seed",
    "resume_training_checkpoint_path": "resume",
    "results_dir": "output_dir",
    "cudnn.benchmark": CUDNN,
    "cudnn.deterministic": CUDNN,
    **dict.fromkeys(("gpu_ids", "num_gpus", "num_nodes"), GPU),
}
# TAO 3/4 subcommands take these as top-level key=value arguments (seed 000).
_VIDEO_TAO4_CLI: dict[str, SpecMap] = {
    "train": {"gpu_ids": GPU, "resume_training_checkpoint_path": "resume"},
    "evaluate": {
        "model": "checkpoint",
        "gpu_id": GPU,
        "batch_size": "batch_size",
        "test_dataset_dir": "val_data",
        "video_eval_mode": ("eval_mode", EVAL_MODES),
        "video_num_segments": "segments",
    },
    "inference": {
        "model": "checkpoint",
        "gpu_id": GPU,
        "batch_size": "batch_size",
        "inference_dataset_dir": "videos",
        "video_inf_mode": ("eval_mode", EVAL_MODES),
        "video_num_segments": "segments",
    },
    "export": {"model": "checkpoint", "gpu_id": GPU, "output_file": "onnx"},
}
_VIDEO_TAO5_TASKS: dict[str, SpecMap] = {
    "evaluate": {
        "checkpoint": "checkpoint",
        "test_dataset_dir": "val_data",
        "batch_size": "batch_size",
        "video_eval_mode": ("eval_mode", EVAL_MODES),
        "video_num_segments": "segments",
        "results_dir": "output_dir",
        **_GPU_KEYS,
    },
    "inference": {
        "checkpoint": "checkpoint",
        "inference_dataset_dir": "videos",
        "batch_size": "batch_size",
        "video_inf_mode": ("eval_mode", EVAL_MODES),
        "video_num_segments": "segments",
        "results_dir": "output_dir",
        **_GPU_KEYS,
    },
    "export": {
        "checkpoint": "checkpoint",
        "onnx_file": "onnx",
        "results_dir": Ignored("export writes only the ONNX file (export.onnx_file, --onnx)"),
        "batch_size": Ignored("the exported batch axis is dynamic (--dynamic-batch)"),
        **_GPU_KEYS,
    },
}
VIDEO_COMMANDS = ("train", "evaluate", "inference", "export")
_TAO5_SECTIONS = ("model", "dataset", "train", "evaluate", "inference", "export")


def is_tao5_layout(spec: Mapping[str, Any]) -> bool:
    """TAO 5 video specs have ``model``/``dataset``/``train`` sections (TAO 3/4: ``*_config``)."""
    return any(isinstance(spec.get(section), Mapping) for section in _TAO5_SECTIONS)


def video_spec_map(command: str, spec: Mapping[str, Any]) -> SpecMap:
    """The keys ``train_hmdb.py <command>`` uses, in both layouts (a spec mixing them is checked
    by ``train.config``: two keys giving one flag different values are refused)."""
    keys: SpecMap = {}
    for model, dataset, train, tao5 in (
        ("model_config", "dataset_config", "train_config", False),
        ("model", "dataset", "train", True),
    ):
        keys |= _prefixed(model, _VIDEO_MODEL | (_VIDEO_MODEL_TAO5 if tao5 else {}))
        keys |= _prefixed(dataset, _VIDEO_CLIP_DATA)
        if command == "train":
            keys |= _prefixed(dataset, _VIDEO_TRAIN_DATA)
            keys |= _prefixed(train, _VIDEO_TRAIN_TAO5 if tao5 else _VIDEO_TRAIN_TAO4)
            keys |= _prefixed(f"{train}.optim", _VIDEO_OPTIM)
        if not tao5:
            keys["dataset_config.output_shape"] = ("clip_size", square_shape)
    keys |= _VIDEO_TAO4_CLI.get(command, {})
    keys |= _prefixed(command, _VIDEO_TAO5_TASKS.get(command, {}))
    keys |= _video_top_level(command, spec)
    return keys


def _video_top_level(command: str, spec: Mapping[str, Any]) -> SpecMap:
    section = spec.get(command)
    own_dir = isinstance(section, Mapping) and section.get("results_dir") is not None
    if not is_tao5_layout(spec):
        results: SpecTarget = "output_dir"  # TAO 3/4: -r / results_dir is the run folder
    elif command == "export":
        results = Ignored("export writes only the ONNX file (export.onnx_file, --onnx)")
    elif own_dir:
        results = Ignored(f"{command}.results_dir is the folder of this task")
    else:
        results = _task_dir(command)
    return {
        "results_dir": results,
        "output_dir": "output_dir",  # the TAO 3/4 tutorial's name
        "encryption_key": ENCRYPTION,
        "key": ENCRYPTION,
        "wandb": WANDB,
    }


def _all_keys(spec_map: Any, commands: tuple[str, ...]) -> frozenset[str]:
    layouts = ({}, {"model": {}})
    return frozenset(key for c in commands for s in layouts for key in spec_map(c, s))


VIDEO_KEYS = _all_keys(video_spec_map, VIDEO_COMMANDS)


# ----------------------------------------------------------------------------- skeleton
TAO_POSE_MODELS = {"ST-GCN": "st_gcn"}


def _pose_network(name: Any) -> str:
    """TAO's ``ST-GCN`` or a registered skeleton network name (``st_gcn_tiny``)."""
    registered = list_models(family="skeleton")
    network = TAO_POSE_MODELS.get(name, name)
    if network not in registered:
        raise ValueError(f"expected one of {', '.join([*TAO_POSE_MODELS, *registered])}")
    return network


_POSE_SHARED: SpecMap = {
    "model.model_type": ("network", _pose_network),
    "model.pretrained_model_path": "pretrained",
    "model.input_channels": "in_channels",
    "model.dropout": "dropout",
    "model.graph_layout": "graph_layout",
    "model.graph_strategy": "graph_strategy",
    "model.graph_legacy": "graph_legacy",  # ActRec's: the reference's truncated hop distances
    "model.edge_importance_weighting": "edge_importance_weighting",
    "dataset.num_classes": "num_classes",
    "dataset.label_map": "label_map",
    "dataset.batch_size": "batch_size",
    "dataset.num_workers": "workers",
}
_POSE_TRAIN: SpecMap = {
    "dataset.train_dataset.data_path": "train_data",
    "dataset.train_dataset.label_path": "train_labels",
    "dataset.val_dataset.data_path": "val_data",
    "dataset.val_dataset.label_path": "val_labels",
    "dataset.random_choose": "random_choose",
    "dataset.random_move": "random_move",
    "dataset.window_size": "window_size",
    "train.results_dir": "output_dir",
    "train.num_epochs": "end_epoch",
    "train.checkpoint_interval": "checkpoint_interval",
    "train.validation_interval": "eval_interval",
    "train.seed": "random_seed",
    "train.grad_clip": ("clip_grad", lambda value: float(value) or None),  # 0.0: no clipping
    "train.resume_training_checkpoint_path": "resume",
    "train.cudnn.benchmark": CUDNN,
    "train.cudnn.deterministic": CUDNN,
    **_gpu_keys("train"),
    **_prefixed(
        "train.optim",
        {
            "optimizer_type": ("optimizer", {"torch.optim.SGD": "sgd"}),
            "nesterov": "nesterov",
            **_VIDEO_OPTIM,  # the pose optim section has the video keys and these two
        },
    ),
}
_POSE_TASKS: dict[str, SpecMap] = {
    "train": _POSE_TRAIN,
    "evaluate": {
        "evaluate.checkpoint": "checkpoint",
        "evaluate.test_dataset.data_path": "data",
        "evaluate.test_dataset.label_path": "labels",
        "evaluate.results_dir": "output_dir",
        **_gpu_keys("evaluate"),
    },
    "inference": {
        "inference.checkpoint": "checkpoint",
        "inference.test_dataset.data_path": "data",
        "inference.test_dataset.label_path": Ignored("inference reads no labels"),
        "inference.output_file": "output_file",
        "inference.results_dir": "output_dir",
        **_gpu_keys("inference"),
    },
    "export": {
        "export.checkpoint": "checkpoint",
        "export.onnx_file": "onnx",
        "export.results_dir": Ignored("export writes only the ONNX file (export.onnx_file)"),
        **_gpu_keys("export"),
    },
    "convert": {
        **{f"dataset_convert.{name}": name for name in ConvertSettings.__dataclass_fields__},
        "dataset_convert.data": "data",
        "dataset_convert.results_dir": "output_dir",
    },
}
# TAO's task folder under a top-level results_dir, per ActRec subcommand.
_POSE_TASK_DIRS = {"convert": "dataset_convert"}
SKELETON_COMMANDS = tuple(_POSE_TASKS)


def skeleton_spec_map(command: str, spec: Mapping[str, Any]) -> SpecMap:
    """The keys ``train_nvpose.py <command>`` uses."""
    keys = dict(_POSE_SHARED) | _POSE_TASKS.get(command, {})
    task = _POSE_TASK_DIRS.get(command, command)
    section = spec.get(task)
    own_dir = isinstance(section, Mapping) and section.get("results_dir") is not None
    if command in _POSE_TASKS and command != "export":
        keys["results_dir"] = (
            Ignored(f"{task}.results_dir is the folder of this task")
            if own_dir
            else _task_dir(task)
        )
    else:
        keys["results_dir"] = Ignored("this command writes no run folder")
    keys["encryption_key"] = ENCRYPTION
    keys["wandb"] = WANDB
    keys["gen_trt_engine"] = Ignored("TAO deploy's engine builder; use the trt-engine subcommand")
    return keys


SKELETON_KEYS = _all_keys(skeleton_spec_map, SKELETON_COMMANDS)


# ----------------------------------------------------------------------------- gesture
def _class_list(classes: Any) -> list[str]:
    """TAO's ``{"thumbs_up": 0, ...}`` map (or a list) → names in index order."""
    if isinstance(classes, Mapping):
        return [name for name, _ in sorted(classes.items(), key=lambda item: int(item[1]))]
    if isinstance(classes, list):
        return [str(name) for name in classes]
    raise ValueError("expected {class: index} or a list of class names")


_STAGE = {
    "stage_order": "{stage}_stage_order",
    "loss_fn": "loss_fn",
    "train_epochs": "{stage}_epochs",
    "num_layers_unfreeze": "{stage}_unfreeze",
    "optimizer": "{stage}_optimizer",
    "initial_lrate": "{stage}_lr",
}
GESTURE_SPEC_MAP: SpecMap = {
    "random_seed": "random_seed",
    "batch_size": "batch_size",
    "output_experiments_fld": "output_dir",
    "save_weights_path": "save_weights_path",
    "trainer.num_workers": "workers",
    "trainer.use_class_weights": "use_class_weights",
    **{
        f"trainer.{section}.{key}": dest.format(stage=stage)
        for section, stage in (("top_training", "top"), ("finetuning", "finetune"))
        for key, dest in _STAGE.items()
    },
    "trainer.finetuning.decay_step_size": "decay_step_size",
    "trainer.finetuning.lr_drop_rate": "lr_drop_rate",
    "trainer.finetuning.enable_checkpointing": "enable_checkpointing",
    "model.network": "network",
    "model.base_model": "base_model",
    "model.num_layers": "num_layers",
    "model.weights_init": "pretrained",
    "model.gray_scale_input": "gray_scale_input",
    "model.data_format": "data_format",
    "model.image_height": ("image_height", int),
    "model.image_width": ("image_width", int),
    "model.use_batch_norm": "use_batch_norm",
    "model.kernel_regularizer_type": "kernel_regularizer_type",
    "model.kernel_regularization_factor": "kernel_regularizer_factor",  # the tutorial's name
    "model.Kernel_regularizer_factor": "kernel_regularizer_factor",  # the docs table's name
    "model.dropout": "dropout",
    "model.add_new_head": "add_new_head",
    "dataset.data_path": "data_json",
    "dataset.image_root_path": "image_root_path",
    "dataset.classes": ("classes", _class_list),
    "dataset.num_classes": "num_classes",
    "dataset.fold": "fold",
    "dataset.augmentation.horizontal_flip": "horizontal_flip",
    "dataset.augmentation.rotation_range": "rotation_range",
    "dataset.augmentation.brightness_range": "brightness_range",
    "dataset.augmentation.gamma_aug.probability": "gamma_prob",
    "dataset.augmentation.occlusion_aug.probability": "occlusion_prob",
    "evaluator.evaluation_exp_name": "evaluation_exp_name",
    "evaluator.data_path": "eval_data_json",
}


# ----------------------------------------------------------------------------- docs
def family_tables() -> dict[str, dict[str, dict[str, SpecTarget]]]:
    """family → command → the keys that command uses (for the docs table and its test)."""
    video = {c: video_spec_map(c, {"model": {}}) for c in VIDEO_COMMANDS}
    for command in VIDEO_COMMANDS:  # the TAO 3/4 layout's results_dir is the run folder itself
        video[command]["results_dir (TAO 3/4 layout)"] = video_spec_map(command, {})["results_dir"]
    return {
        "video": video,
        "skeleton": {c: skeleton_spec_map(c, {}) for c in SKELETON_COMMANDS},
        "gesture": {"train, evaluate, inference": dict(GESTURE_SPEC_MAP)},
    }


def _handling(target: SpecTarget) -> str:
    if isinstance(target, Ignored):
        return f"accepted and ignored: {target.reason}"
    dest, convert = (target, None) if isinstance(target, str) else target
    flag = "`--" + dest.replace("_", "-") + "`"
    if isinstance(convert, Mapping):
        return flag + " (" + ", ".join(f"`{k}` → `{v}`" for k, v in convert.items()) + ")"
    if dest == "output_dir" and callable(convert):
        return flag + " = results_dir/<task> (TAO 5)"
    return flag + (" (converted)" if callable(convert) else "")


_TAO4_NAMES = re.compile(r"^(model|dataset|train)_config\.")


def markdown_tables() -> str:
    """One Markdown table per family: key | commands | handling (docs/TAO_SPECS.md)."""
    out = []
    for family, commands in family_tables().items():
        rows: dict[str, dict[str, dict[str, None]]] = {}
        names: dict[str, dict[str, None]] = {}
        for command, keys in commands.items():
            for key, target in keys.items():
                row = _TAO4_NAMES.sub(lambda m: m.group(1) + ".", key) if family == "video" else key
                names.setdefault(row, {})[key] = None
                rows.setdefault(row, {}).setdefault(_handling(target), {})[command] = None
        out += [f"### {family}", "", "| key | commands | handling |", "|---|---|---|"]
        for row in sorted(rows):
            key = " / ".join(f"`{name}`" for name in sorted(names[row], reverse=True))
            for handling, used_by in rows[row].items():
                out.append(f"| {key} | {', '.join(used_by)} | {handling} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(markdown_tables())
