"""GestureNet hand-gesture classification (TAO GestureNet re-implementation, seed 003).

Commands (paths are examples)::

    # a synthetic set in the annotation format, with dataset_config.json / _experiment_config.json
    python train_gesture.py synth --out data/gesture
    # crop hands, split users, write data.json (TAO dataset_convert)
    python train_gesture.py convert --dataset_spec data/gesture/dataset_config.json \\
        --experiment_spec data/gesture/dataset_experiment_config.json \\
        --k_folds 0 --output_filename data/gesture/data.json --experiment_name v1
    # two-stage training (top_training, then finetuning) from TAO's JSON train spec
    python train_gesture.py train -e configs/gesture/train_spec.json \\
        dataset.data_path=data/gesture/data.json output_experiments_fld=results/gesture
    # accuracy, per-class precision/recall/F1 and confusion.png on the kpi_set
    python train_gesture.py evaluate -e configs/gesture/train_spec.json \\
        --model results/gesture/model/model.pth
    # per-image predictions with scores (predictions.json, predictions.csv, results.txt)
    python train_gesture.py inference --model results/gesture/model/model.pth \\
        --data_json data/gesture/data.json --data_type kpi_set --results_dir results/gesture/infer
    # ONNX, input "input" (N, 3, 160, 160) with a dynamic batch, output "fc_pred"
    python train_gesture.py export -m results/gesture/model/model.pth -o gesturenet.onnx
    # ONNX Runtime on crops; INT8 calibrated on train_set crops; TensorRT engine (GPU)
    python train_gesture.py onnx-infer --onnx gesturenet.onnx \\
        --input data/gesture/extracted/data/id01
    python train_gesture.py quantize --onnx gesturenet.onnx --data_json data/gesture/data.json
    python train_gesture.py trt-engine --onnx gesturenet.onnx --precision fp16
    # synth -> convert -> train -> evaluate -> export on the CPU in a few minutes
    python train_gesture.py demo --out /tmp/gesture_demo
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from data.gesture import convert as gesture_convert
from data.gesture import synthetic as gesture_synth
from data.gesture.annotation import GESTURE_CLASSES
from data.gesture.dataset import (
    GestureAugment,
    GestureCropDataset,
    class_counts,
    images_of,
    load_data_json,
)
from network import build_model, list_models
from network.gesturenet import freeze_all_but_last
from safeio.atomic import atomic_write_bytes
from train.args import OPTIMIZERS, common_parser
from train.runner import FamilyScript, command_parser, command_table, run_steps, set_defaults
from train.tao_specs import GESTURE_SPEC_MAP
from train.validation import (
    device,
    fraction,
    log_level,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    printable,
    probability,
)

log = logging.getLogger("train_gesture")

FAMILY = "gesture"
STAGE_NAMES = ("top_training", "finetuning")
FINAL_MODEL = "model.pth"
DEFAULT_IMAGE_SIZE = (160, 160)


# TAO GestureNet train_spec.json keys: train/tao_specs.py (seed 003, the tutorial's dataset).
SPEC_MAP = GESTURE_SPEC_MAP

_BOOL = argparse.BooleanOptionalAction

# Defaults of one subcommand that differ from ``train.args.common_parser``'s; each subcommand gets
# its own parent parser, so a default set here cannot reach another subcommand.
COMMAND_DEFAULTS: dict[str, dict[str, Any]] = {
    # The kernel regulariser replaces weight decay; the engine's TAO-style default is off here.
    "train": {"weight_decay": 0.0, "workers": 2, "batch_size": 64, "random_seed": 108},
}


def get_args_parser() -> argparse.ArgumentParser:
    parser, commands = command_parser("GestureNet hand-gesture classification", __doc__)
    gesture_synth.add_arguments(commands.add_parser("synth", help="write a synthetic set"))
    gesture_convert.add_arguments(commands.add_parser("convert", help="TAO dataset_convert"))
    train = commands.add_parser("train", parents=[common_parser()], help="two-stage training")
    _add_model_arguments(train)
    _add_data_arguments(train)
    _add_stage_arguments(train)
    evaluate = commands.add_parser("evaluate", parents=[common_parser()], help="kpi_set metrics")
    _add_model_arguments(evaluate)
    _add_data_arguments(evaluate)
    _add_checkpoint_input(evaluate)
    evaluate.add_argument("--eval-data-json", default=None, help="default: --data_json")
    evaluate.add_argument("--evaluation-exp-name", default="evaluation", help="results subfolder")
    inference = commands.add_parser("inference", parents=[common_parser()], help="predictions")
    _add_model_arguments(inference)
    _add_data_arguments(inference)
    _add_checkpoint_input(inference)
    inference.add_argument("--results_dir", "--results-dir", default=None, help="output folder")
    inference.add_argument(
        "--render", default=None, metavar="DIR",
        help="also write DIR/contact_sheet.png: the crops with predicted (and true) labels",
    )  # fmt: skip
    _add_deploy_commands(commands)
    demo = commands.add_parser("demo", help="synth -> convert -> train -> evaluate -> export")
    _add_demo_arguments(demo)
    set_defaults(commands, COMMAND_DEFAULTS)
    return parser


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model (None: the network's default)")
    group.add_argument("--network", default="gesturenet", choices=list_models(family=FAMILY))
    group.add_argument("--base-model", default="resnet_vanilla", choices=["resnet_vanilla"])
    group.add_argument(
        "--num-layers", type=positive_int, default=None, help="6 10 12 18 26 34 50 101 152"
    )
    group.add_argument("--gray-scale-input", action=_BOOL, default=None)
    group.add_argument("--use-batch-norm", action=_BOOL, default=None)
    group.add_argument("--kernel-regularizer-type", choices=["l1", "l2", "none"], default=None)
    group.add_argument("--kernel-regularizer-factor", type=non_negative_float, default=None)
    group.add_argument("--dropout", type=fraction, default=None, help="before the classifier")
    group.add_argument(
        "--image-height", type=positive_int, default=None, help="default 160 (or stored)"
    )
    group.add_argument(
        "--image-width", type=positive_int, default=None, help="default 160 (or stored)"
    )
    group.add_argument("--data-format", choices=["channels_first"], default="channels_first")
    group.add_argument("--add-new-head", action=_BOOL, default=True, help="fresh classifier")


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--data_json", "--data-json", dest="data_json", default=None)
    group.add_argument("--data_type", "--data-type", dest="data_type", default="kpi_set")
    group.add_argument("--image_root_path", "--image-root-path", default=None, help="data.json's")
    group.add_argument("--classes", nargs="+", default=list(GESTURE_CLASSES), help="index order")
    group.add_argument(
        "--num-classes", type=positive_int, default=None, help="checked against --classes"
    )
    group.add_argument(
        "--fold", type=non_negative_int, default=None, help="k-fold split of data.json"
    )
    group.add_argument("--save-weights-path", default="model", help="final model subfolder")
    group.add_argument("--augment", action=_BOOL, default=True, help="train-time augmentation")
    group.add_argument("--horizontal-flip", action=_BOOL, default=True)
    group.add_argument("--rotation-range", type=non_negative_float, default=5.0)
    group.add_argument("--brightness-range", type=non_negative_float, nargs=2, default=[0.5, 1.5])
    group.add_argument("--gamma-prob", type=probability, default=0.5)
    group.add_argument("--occlusion-prob", type=probability, default=0.5)


def _add_stage_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("two-stage training (TAO trainer section)")
    group.add_argument(
        "--loss-fn", default="categorical_crossentropy", choices=["categorical_crossentropy"]
    )
    group.add_argument("--use-class-weights", action=_BOOL, default=False, help="weighted loss")
    group.add_argument("--top-stage-order", type=int, default=1)
    group.add_argument(
        "--top-epochs", type=non_negative_int, default=5, help="0 skips top_training"
    )
    group.add_argument(
        "--top-unfreeze", type=non_negative_int, default=3, help="layers below the head trained"
    )
    group.add_argument("--top-optimizer", choices=OPTIMIZERS, default="rmsprop")
    group.add_argument(
        "--top-lr", type=positive_float, default=1e-3, help="constant LR of top_training"
    )
    group.add_argument("--finetune-stage-order", type=int, default=2)
    group.add_argument(
        "--finetune-epochs", type=non_negative_int, default=50, help="0 skips finetuning"
    )
    group.add_argument("--finetune-unfreeze", type=non_negative_int, default=100)
    group.add_argument("--finetune-optimizer", choices=OPTIMIZERS, default="sgd")
    group.add_argument("--finetune-lr", type=positive_float, default=3e-4, help="initial_lrate")
    group.add_argument(
        "--decay-step-size", type=positive_float, default=33.0, help="percent of progress"
    )
    group.add_argument("--lr-drop-rate", type=positive_float, default=0.5)
    group.add_argument("--enable-checkpointing", action=_BOOL, default=True)


def _add_checkpoint_input(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-m", "--model", default=None, help="default: <output-dir>/model/model.pth")


def _key_parent() -> list[argparse.ArgumentParser]:
    """TAO's ``-k <key>`` of ``gesturenet export``: accepted, as ActRec files are not encrypted."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("-k", "--key", default=None, help="TAO's encryption key: ignored")
    return [parent]


def _add_deploy_commands(commands: argparse._SubParsersAction) -> None:
    """export and onnx-infer from ``export.cli``; quantize and trt-engine with its options plus
    the data.json crops that INT8 calibration needs."""
    from export import cli

    cli.add_subcommands(
        commands, family=FAMILY, names=("export", "onnx-infer"), parents=_key_parent
    )
    quantize = commands.add_parser("quantize", help="INT8 ONNX calibrated on train_set crops")
    cli.add_quantize_arguments(quantize)
    trt = commands.add_parser("trt-engine", help="TensorRT engine (GPU)")
    cli.add_trt_arguments(trt)
    for parser in (quantize, trt):
        group = parser.add_argument_group("calibration data")
        group.add_argument("--data_json", "--data-json", dest="data_json", default=None)
        group.add_argument("--data_type", "--data-type", default="kpi_set", help="compared set")
        group.add_argument("--image_root_path", "--image-root-path", default=None)
        group.add_argument("--classes", nargs="+", default=list(GESTURE_CLASSES))
        group.add_argument("--fold", type=non_negative_int, default=None)
        group.add_argument("--log-level", type=log_level, default="INFO")


def _add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, default=Path("results/gesture_demo"), help="working folder"
    )
    parser.add_argument(
        "--num-users", type=positive_int, default=gesture_synth.SynthConfig.num_users
    )
    parser.add_argument(
        "--images-per-class", type=positive_int, default=gesture_synth.SynthConfig.images_per_class
    )
    parser.add_argument("--image-size", type=positive_int, default=64, help="network input side")
    parser.add_argument("--epochs", type=positive_int, default=20, help="finetuning epochs")
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument("--device", type=device, default="cpu")
    # Small convolutions gain little from more threads, and one avoids oversubscribing a CPU
    # shared with other processes (measured: 2 threads were 8× slower on a loaded 2-core box).
    parser.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads")
    parser.add_argument("--log-level", type=log_level, default="INFO")


# --- shared helpers -------------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    """One training stage of the TAO trainer section."""

    name: str
    order: int
    epochs: int
    optimizer: str
    lr: float
    num_layers_unfreeze: int
    decay_step_size: float | None  # None: a constant LR
    lr_drop_rate: float = 1.0
    checkpointing: bool = True


# Stage field -> the suffix of its per-stage flag (``--top-<suffix>``, ``--finetune-<suffix>``)
STAGE_FLAGS = {"order": "stage_order", "epochs": "epochs", "optimizer": "optimizer", "lr": "lr",
               "num_layers_unfreeze": "unfreeze"}  # fmt: skip


def step_annealing(decay_step_size: float, lr_drop_rate: float) -> Callable[[float], float]:
    """TAO fine-tuning schedule: ``lr_drop_rate ** floor(100 · progress / decay_step_size)``
    with progress = step / total steps in [0, 1] (with 33 and 0.5 the LR halves at 33 %, 66 %,
    99 %)."""
    if decay_step_size <= 0:
        raise ValueError(f"decay_step_size must be > 0, got {decay_step_size}")

    def factor(progress: float) -> float:
        return lr_drop_rate ** math.floor(100.0 * progress / decay_step_size + 1e-9)

    return factor


def _stage(args: argparse.Namespace, name: str, prefix: str, **extra: Any) -> Stage:
    """The stage ``name`` from its ``--<prefix>-*`` flags (order, epochs, optimizer, lr, unfreeze)."""
    flags = {key: getattr(args, f"{prefix}_{flag}") for key, flag in STAGE_FLAGS.items()}
    return Stage(name=name, **flags, **extra)


def plan_stages(args: argparse.Namespace) -> list[Stage]:
    """The stages to run, by ``stage_order``; a stage with 0 epochs is skipped."""
    top = _stage(args, "top_training", "top", decay_step_size=None)
    finetune = _stage(
        args, "finetuning", "finetune", decay_step_size=args.decay_step_size,
        lr_drop_rate=args.lr_drop_rate, checkpointing=args.enable_checkpointing,
    )  # fmt: skip
    stages = [top, finetune]
    for stage in stages:
        if stage.epochs < 0:
            raise ValueError(f"{stage.name}: train_epochs must be >= 0")
        if stage.epochs == 0:
            log.info("%s: 0 epochs, stage skipped", stage.name)
    return sorted((s for s in stages if s.epochs > 0), key=lambda s: s.order)


def _stage_args(args: argparse.Namespace, stage: Stage) -> argparse.Namespace:
    stage_args = copy.copy(args)
    stage_args.end_epoch = stage.epochs
    stage_args.optimizer = stage.optimizer
    stage_args.lr_base = stage.lr
    stage_args.lr_schedule = "constant"
    stage_args.warmup_epochs = 0.0
    stage_args.pretrained = None  # loaded once, before the first stage
    stage_args.resume = None  # each stage auto-resumes from <output-dir>/<stage>/latest.pth
    stage_args.finetune = False
    if not stage.checkpointing:
        stage_args.checkpoint_interval = stage.epochs  # only the final model_epoch file
    return stage_args


def _image_size(args: argparse.Namespace, stored: dict[str, Any] | None = None) -> tuple[int, int]:
    """(H, W): the flags, else the size stored in the checkpoint's args, else 160 × 160."""
    stored = stored or {}
    height = args.image_height or stored.get("image_height") or DEFAULT_IMAGE_SIZE[0]
    width = args.image_width or stored.get("image_width") or DEFAULT_IMAGE_SIZE[1]
    return int(height), int(width)


def _model_kwargs(args: argparse.Namespace, num_classes: int) -> dict[str, Any]:
    return {
        "num_classes": num_classes,
        "num_layers": args.num_layers,
        "gray_scale_input": args.gray_scale_input,
        "use_batch_norm": args.use_batch_norm,
        "kernel_regularizer_type": args.kernel_regularizer_type,
        "kernel_regularizer_factor": args.kernel_regularizer_factor,
        "dropout": args.dropout,
    }


def _image_root(args: argparse.Namespace, data_json: Path, document: dict) -> Path:
    if args.image_root_path:
        return Path(args.image_root_path)
    stored = document.get("image_root_path")
    return Path(stored) if stored else Path(data_json).parent


def _trained_model_dataset(
    args: argparse.Namespace,
    model: nn.Module,
    class_names: Sequence[str],
    stored: dict,
    data_json: str | Path,
    *,
    labelled_only: bool = True,
) -> GestureCropDataset:
    """``--data_type`` of ``data_json`` at the input size and channels the trained model takes."""
    return _crop_dataset(
        args,
        Path(data_json),
        args.data_type,
        class_names,
        image_size=_image_size(args, stored),
        gray_scale=model.in_channels == 1,
        labelled_only=labelled_only,
    )


def _crop_dataset(
    args: argparse.Namespace,
    data_json: Path,
    set_name: str,
    class_names: Sequence[str],
    *,
    image_size: tuple[int, int],
    gray_scale: bool,
    train: bool = False,
    labelled_only: bool = True,
) -> GestureCropDataset:
    """One set of data.json; ``labelled_only`` drops (with a warning) images whose class is not
    in ``class_names``, which training and evaluation cannot score."""
    document = load_data_json(data_json)
    entries = images_of(document, data_json, set_name, fold=args.fold)  # kpi_set has no folds
    if labelled_only:
        known = [e for e in entries if e.get("class") in class_names]
        if len(known) < len(entries):
            log.warning(
                "%s %s: %d images of classes outside %s dropped",
                data_json,
                set_name,
                len(entries) - len(known),
                list(class_names),
            )
        entries = known
    augment = None
    if train and args.augment:
        augment = GestureAugment(
            horizontal_flip=args.horizontal_flip,
            rotation_range=args.rotation_range,
            brightness_range=tuple(args.brightness_range),
            gamma_prob=args.gamma_prob,
            occlusion_prob=args.occlusion_prob,
        )
    return GestureCropDataset(
        entries,
        image_root=_image_root(args, data_json, document),
        class_names=class_names,
        image_size=image_size,
        gray_scale=gray_scale,
        augment=augment,
    )


def _class_weighted_loss(dataset: GestureCropDataset) -> nn.Module:
    """Cross-entropy weighted ``N / (K · n_c)`` per class (0 for classes without images)."""
    counts = class_counts(dataset.entries, dataset.class_names)
    total, present = sum(counts), sum(1 for c in counts if c)
    weights = [total / (present * c) if c else 0.0 for c in counts]
    log.info("class weights in the loss: %s", dict(zip(dataset.class_names, weights)))
    return nn.CrossEntropyLoss(weight=torch.tensor(weights, dtype=torch.float32))


def _load_trained(args: argparse.Namespace) -> tuple[nn.Module, list[str], dict[str, Any]]:
    """The model of ``--model`` (default ``<output-dir>/<save-weights-path>/model.pth``)."""
    from train.checkpoint import load_model

    path = Path(args.model or Path(args.output_dir) / args.save_weights_path / FINAL_MODEL)
    model = load_model(path, family=FAMILY)
    stored = model.train_args
    class_names = list(getattr(model, "class_names", None) or stored.get("classes") or [])
    return model, class_names, stored


# --- subcommands -----------------------------------------------------------------------------


def cmd_synth(args: argparse.Namespace) -> int:
    return gesture_synth.run(args)


def cmd_convert(args: argparse.Namespace) -> int:
    return gesture_convert.run(args)


def _train_problem(args: argparse.Namespace) -> str | None:
    """Why ``train`` cannot start, or ``None``."""
    if not args.data_json:
        return "train needs --data_json (or dataset.data_path in the spec)"
    if args.num_classes is not None and args.num_classes != len(args.classes):
        return f"num_classes {args.num_classes} does not match the classes {args.classes}"
    return None


def _run_stages(
    model: nn.Module,
    stages: Sequence[Stage],
    datasets: tuple[GestureCropDataset, GestureCropDataset | None],
    args: argparse.Namespace,
    criterion: nn.Module | None,
) -> Path:
    """Each stage: freeze, then ``train.engine.fit`` in ``<output-dir>/<stage>``; returns the last
    stage's run directory."""
    from train.engine import fit

    summary: dict[str, Any] = {}
    for stage in stages:
        trainable = freeze_all_but_last(model, stage.num_layers_unfreeze)
        lr_lambda = None
        if stage.decay_step_size:
            lr_lambda = step_annealing(stage.decay_step_size, stage.lr_drop_rate)
        log.info(
            "stage %s: %d epochs, %s, lr %g, %d trainable tensors",
            stage.name,
            stage.epochs,
            stage.optimizer,
            stage.lr,
            len(trainable),
        )
        summary = fit(
            model,
            datasets[0],
            datasets[1],
            _stage_args(args, stage),
            family=FAMILY,
            class_names=list(args.classes),
            criterion=criterion,
            param_groups=[{"params": trainable}],
            lr_lambda=lr_lambda,
            output_dir=Path(args.output_dir) / stage.name,
        )
    return Path(summary["run_dir"])


def cmd_train(args: argparse.Namespace) -> int:
    """top_training then finetuning on the shared engine; the final model in save_weights_path."""
    from network.weights import load_pretrained
    from train.distributed import is_main_process
    from train.rundir import resolve_run_dir

    if args.resume:
        log.warning("--resume is ignored: each stage resumes from <output-dir>/<stage>/latest.pth")
    problem = _train_problem(args)
    stages = plan_stages(args)
    if problem or not stages:
        log.error("%s", problem or "both stages have 0 epochs: nothing to train")
        return 2
    resolve_run_dir(args, FAMILY, args.network)  # the stages' parent: runs/gesture/<net>-<time>
    class_names = list(args.classes)
    args.image_height, args.image_width = _image_size(args)
    model = build_model(args.network, **_model_kwargs(args, len(class_names)))
    train_set, val_set = (
        _crop_dataset(
            args,
            Path(args.data_json),
            name,
            class_names,
            image_size=(args.image_height, args.image_width),
            gray_scale=model.in_channels == 1,
            train=name == "train_set",
        )
        for name in ("train_set", "validation_set")
    )
    if not len(train_set):
        log.error("%s: the train_set is empty", args.data_json)
        return 2
    if args.pretrained:
        load_pretrained(model, args.pretrained, partial=args.pretrained_partial)
        if args.add_new_head:
            model.reset_classifier(len(class_names))
    criterion = _class_weighted_loss(train_set) if args.use_class_weights else None
    datasets = (train_set, val_set if len(val_set) else None)
    run_dir = _run_stages(model, stages, datasets, args, criterion)
    best = run_dir / "best.pth"
    final = Path(args.output_dir) / args.save_weights_path / FINAL_MODEL
    if is_main_process():
        atomic_write_bytes(final, (best if best.is_file() else run_dir / "latest.pth").read_bytes())
    log.info(
        "final model (%s epoch of %s): %s",
        "best" if best.is_file() else "last",
        stages[-1].name,
        final,
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Accuracy, per-class precision/recall/F1 and the confusion matrix on ``--data_type``."""
    from train.distributed import is_main_process
    from train.engine import evaluate
    from train.evaluation import write_metrics_json
    from train.metrics import per_class_report, precision_recall_f1

    model, class_names, stored = _load_trained(args)
    data_json = args.eval_data_json or args.data_json or stored.get("data_json")
    if not data_json:
        log.error("evaluate needs --data_json (or evaluator.data_path in the spec)")
        return 2
    dataset = _trained_model_dataset(args, model, class_names, stored, data_json)
    out_dir = Path(args.output_dir) / args.evaluation_exp_name
    result = evaluate(model, dataset, args, class_names=class_names, output_dir=out_dir)
    if not is_main_process():
        return 0
    precision, recall, f1 = precision_recall_f1(result.confusion)
    report = per_class_report(result, class_names)
    (out_dir / "per_class.txt").write_text(report + "\n", encoding="utf-8")
    per_class = {
        name: {"precision": _finite(p), "recall": _finite(r), "f1": _finite(f)}
        for name, p, r, f in zip(class_names, precision, recall, f1)
    }
    # the engine's metrics.json, with TAO GestureNet's names and the per-class scores added
    write_metrics_json(result, out_dir / "metrics.json", accuracy=result.clip_top1,
                       num_images=result.num_clips, per_class=per_class)  # fmt: skip
    log.info(
        "%s: accuracy %.4f on %d images\n%s",
        args.data_type,
        result.clip_top1,
        result.num_clips,
        report,
    )
    return 0


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def cmd_inference(args: argparse.Namespace) -> int:
    """Per-image class and scores for ``--data_type`` of ``--data_json``."""
    from train.engine import predict

    model, class_names, stored = _load_trained(args)
    data_json = args.data_json or stored.get("data_json")
    if not data_json:
        log.error("inference needs --data_json")
        return 2
    dataset = _trained_model_dataset(
        args, model, class_names, stored, data_json, labelled_only=False
    )
    scores = predict(model, dataset, args)
    rows = []
    for index, entry in enumerate(dataset.entries):
        probs = scores[index]
        best = int(probs.argmax())
        rows.append(
            {
                "image": entry["full_image_path"],
                "bbox_path": entry["bbox_path"],
                "label": entry.get("class"),
                "predicted_index": best,
                "predicted": class_names[best],
                "score": float(probs[best]),
                "scores": {n: float(p) for n, p in zip(class_names, probs)},
            }
        )
    _write_predictions(
        rows, class_names, Path(args.results_dir or Path(args.output_dir) / "inference")
    )
    if args.render:
        _contact_sheet(dataset, rows, Path(args.render) / "contact_sheet.png")
    return 0


def _contact_sheet(dataset: GestureCropDataset, rows: list[dict[str, Any]], path: Path) -> None:
    """inference --render: every crop with its predicted label and score; where the true class
    is known, right ones framed green, wrong ones red with the true label (export.annotate)."""
    from export.annotate import contact_sheet

    images = [dataset.load(index) for index in range(len(rows))]
    contact_sheet(images, [r["predicted"] for r in rows], [r["score"] for r in rows],
                  [r["label"] for r in rows], path)  # fmt: skip
    wrong = sum(r["label"] is not None and r["label"] != r["predicted"] for r in rows)
    log.info("contact sheet of %d crops (%d wrong) written to %s", len(rows), wrong, path)


def _write_predictions(
    rows: list[dict[str, Any]], class_names: Sequence[str], out_dir: Path
) -> None:
    """predictions.json, predictions.csv and TAO's results.txt (image, class index, score)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "predictions.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    with (out_dir / "predictions.csv").open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(["image", "bbox_path", "label", "predicted", "score", *class_names])
        for row in rows:
            writer.writerow(
                [
                    row["image"],
                    row["bbox_path"],
                    row["label"],
                    row["predicted"],
                    f"{row['score']:.6f}",
                    *(f"{row['scores'][n]:.6f}" for n in class_names),
                ]
            )
    lines = [
        f"{printable(row['image'])} {row['predicted_index']} {row['score']:.6f}" for row in rows
    ]
    (out_dir / "results.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    log.info("wrote %d predictions to %s", len(rows), out_dir)


def _calibration_sets(args: argparse.Namespace) -> tuple[GestureCropDataset, GestureCropDataset]:
    """INT8 calibration (train_set crops) and comparison (``--data_type``) sets, preprocessed at
    the ONNX file's input size."""
    from export import read_metadata

    if not args.data_json:
        raise ValueError("INT8 calibration needs --data_json (its train_set crops)")
    channels, height, width = read_metadata(args.onnx)["input_shape"][0]
    options = {"image_size": (height, width), "gray_scale": channels == 1}
    data_json = Path(args.data_json)
    calib = _crop_dataset(args, data_json, "train_set", args.classes, **options)
    compare = _crop_dataset(args, data_json, args.data_type, args.classes, **options)
    return calib, compare


def cmd_quantize(args: argparse.Namespace) -> int:
    """INT8 ONNX (ONNX Runtime) calibrated on train_set crops; FP32 vs INT8 accuracy."""
    from export.cli import run_quantize

    calib, compare = _calibration_sets(args)
    return run_quantize(args, family=FAMILY, train_set=calib, val_set=compare)


def cmd_trt_engine(args: argparse.Namespace) -> int:
    """A TensorRT engine (GPU); INT8 calibrates on train_set crops when --data_json is given."""
    from export.cli import run_trt

    calib = _calibration_sets(args)[0] if args.data_json else None
    return run_trt(args, family=FAMILY, calib_set=calib)


def _argv(command: str, options: dict[str, object], *switches: str) -> list[str]:
    """``command --flag value ... switches`` as an argv list (values through ``str``)."""
    pairs = [token for flag, value in options.items() for token in (flag, str(value))]
    return [command, *pairs, *switches]


def _demo_steps(args: argparse.Namespace) -> list[list[str]]:
    """The demo's commands; a tiny GestureNet at a small input, one top_training epoch."""
    out, model = args.out, args.out / "run" / "model" / FINAL_MODEL
    # fmt: off
    run_options = {"--device": args.device, "--workers": 0, "--log-level": args.log_level}
    synth = {"--out": out / "set", "--num-users": args.num_users,
             "--images-per-class": args.images_per_class, "--seed": args.seed}
    convert = {"--dataset_spec": out / "set" / "dataset_config.json",
               "--experiment_spec": out / "set" / "dataset_experiment_config.json",
               "--k_folds": 0, "--output_filename": out / "data.json", "--experiment_name": "demo"}
    train = {"--data_json": out / "data.json", "--output-dir": out / "run",
             "--network": "gesturenet_tiny", "--image-height": args.image_size,
             "--image-width": args.image_size, "--batch-size": 32, "--random-seed": args.seed,
             "--top-epochs": 1, "--top-unfreeze": 2, "--top-lr": 3e-3,
             "--finetune-epochs": args.epochs, "--finetune-optimizer": "adam",
             "--finetune-lr": 3e-3, "--log-interval": 100, **run_options}
    evaluate = {"--model": model, "--data_json": out / "data.json", "--data_type": "kpi_set",
                "--output-dir": out / "run", **run_options}
    export = {"--model": model, "--output": out / "gesturenet_tiny.onnx"}
    # fmt: on
    return [
        _argv("synth", synth),
        _argv("convert", convert),
        _argv("train", train, "--no-tensorboard"),
        _argv("evaluate", evaluate),
        _argv("export", export),
    ]


def cmd_demo(args: argparse.Namespace) -> int:
    """synth → convert → train → evaluate → export; the last line reports kpi accuracy."""
    start = time.perf_counter()
    out = args.out
    if args.threads:
        torch.set_num_threads(args.threads)
    steps = _demo_steps(args)
    failed = run_steps("train_gesture.py", main, steps)
    if failed:
        return failed
    seconds = time.perf_counter() - start
    metrics_path = out / "run" / "evaluation" / "metrics.json"
    evaluated = json.loads(metrics_path.read_text(encoding="utf-8"))
    accuracy = evaluated["accuracy"]
    print(
        f"demo: kpi accuracy {100 * accuracy:.2f}% on {evaluated['num_images']} images "
        f"in {seconds:.0f} s"
    )
    return 0


COMMANDS = command_table(
    cmd_synth, cmd_convert, cmd_train, cmd_evaluate, cmd_inference, cmd_quantize, cmd_trt_engine,
    cmd_demo,
)  # fmt: skip
# TAO gesture train spec keys (-e spec.yaml, key=value): train/tao_specs.py
SCRIPT = FamilyScript(get_args_parser, COMMANDS, SPEC_MAP)
parse_args = SCRIPT.parse_args  # argv -> namespace (command line > spec > defaults)
main = SCRIPT.main  # argv -> exit code


if __name__ == "__main__":
    sys.exit(main())
