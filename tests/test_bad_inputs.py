"""Bad input a user can fix, over every family script and entry point: one line, exit code 2.

Each case runs ``main([...])`` in-process (a few run as subprocesses) in an empty working folder
and asserts: the exit code, exactly one error line (printed or logged), the flag or file named in
it, no traceback, and nothing written outside the case's output folder (``{out}``). Most cases
stop at parse time; the rest read small broken files made once per module.

Failure messages start with TRACEBACK, HANG, GARBAGE (not one line, or the flag/file not named)
or EXIT, so a run can be tallied by category.
"""

from __future__ import annotations

import csv
import importlib
import json
import logging
import os
import pickle
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from network import build_model
from tests.conftest import ROOT
from train.checkpoint import atomic_save, make_checkpoint

SCRIPTS = {"video": "train_hmdb", "skeleton": "train_nvpose", "gesture": "train_gesture"}
# A case taking longer than this (seconds) counts as a hang: they all stop before any work.
HANG_SECONDS = 60
PRINTED_ERROR = re.compile(r"(^|: )error: ")


@dataclass(frozen=True)
class Case:
    """``argv`` may name the module's files as ``{name}`` (see ``files``) and ``{out}``."""

    id: str
    script: str
    argv: tuple[str, ...]
    needle: str  # must appear in the error line ({name} placeholders allowed)
    code: int = 2
    xfail: str | None = None  # the part of issue 12 another helper has not landed yet


# ----------------------------------------------------------------------------- the table
# Flags of the shared parser: (value(s), the flag named in the error).
COMMON_FLAG_CASES = [
    (["--batch-size", "0"], "--batch-size"),
    (["--batch-size", "-4"], "--batch-size"),
    (["--batch-size", "abc"], "--batch-size"),
    (["--batch-size", "2.5"], "--batch-size"),
    (["--batch-size"], "--batch-size"),
    (["--eval-batch-size", "0"], "--eval-batch-size"),
    (["--workers", "-1"], "--workers"),
    (["--random-seed", "-5"], "--random-seed"),
    (["--log-level", "LOUD"], "--log-level"),
    (["--device", "cuda:99"], "--device"),
    (["--device", "tpu"], "--device"),
    (["--device", "banana"], "--device"),
    (["--no-such-flag"], "--no-such-flag"),
]
TRAIN_FLAG_CASES = [
    (["--momentum", "1.5"], "--momentum"),
    (["--momentum", "-0.1"], "--momentum"),
    (["--label-smoothing", "2"], "--label-smoothing"),
    (["--lr-base", "-1"], "--lr-base"),
    (["--lr-base", "nan"], "--lr-base"),
    (["--lr-base", "inf"], "--lr-base"),
    (["--weight-decay", "-1"], "--weight-decay"),
    (["--lr-steps", "20", "10"], "--lr-steps"),
    (["--lr-steps", "5", "5"], "--lr-steps"),
    (["--lr-steps", "-3"], "--lr-steps"),
    (["--lr-factor", "0"], "--lr-factor"),
    (["--accum-steps", "0"], "--accum-steps"),
    (["--clip-grad", "0"], "--clip-grad"),
    (["--warmup-epochs", "-1"], "--warmup-epochs"),
    (["--warmup-start-factor", "2"], "--warmup-start-factor"),
    (["--end-epoch", "-1"], "--end-epoch"),
    (["--end-epoch", "0"], "--end-epoch"),
    (["--log-interval", "0"], "--log-interval"),
    (["--eval-interval", "0"], "--eval-interval"),
    (["--checkpoint-interval", "0"], "--checkpoint-interval"),
    (["--optimizer", "adamax"], "--optimizer"),
    (["--lr-schedule", "cosinus"], "--lr-schedule"),
    (["--plateau-patience", "-1"], "--plateau-patience"),
    (["--min-lr", "-1"], "--min-lr"),
    (["--backbone-lr-mult", "-1"], "--backbone-lr-mult"),
]
HMDB_FLAG_CASES = [
    (["--clip-length", "0"], "--clip-length"),
    (["--clip-size", "0"], "--clip-size"),
    (["--clip-size", "-112"], "--clip-size"),
    (["--short-side", "0"], "--short-side"),
    (["--frame-interval", "0"], "--frame-interval"),
    (["--clips-per-video", "0"], "--clips-per-video"),
    (["--flip-prob", "1.5"], "--flip-prob"),
    (["--crop-scales", "0"], "--crop-scales"),
    (["--rgb-mean", "0.5", "0.5"], "--rgb-mean"),
    (["--rgb-std", "0.2", "0.2", "0.2", "0.2"], "--rgb-std"),
    (["--rgb-std", "0", "0", "0"], "--rgb-std"),
    (["--of-mean", "1", "2", "3"], "--of-mean"),
    (["--val-fraction", "1.0"], "--val-fraction"),
    (["--split", "0"], "--split"),
    (["--segments", "0"], "--segments"),
    (["--dropout", "1.5"], "--dropout"),
    (["--num-fc", "0"], "--num-fc"),
    (["--modality", "depth"], "--modality"),
    (["--train-crop", "nope"], "--train-crop"),
    (["--eval-mode", "nope"], "--eval-mode"),
]
NVPOSE_FLAG_CASES = [
    (["--network", "st_gcnx"], "--network"),
    (["--num-classes", "0"], "--num-classes"),
    (["--in-channels", "0"], "--in-channels"),
    (["--dropout", "-0.5"], "--dropout"),
    (["--scale-3d", "1.5"], "--scale-3d"),
]
GESTURE_FLAG_CASES = [
    (["--network", "resnet9000"], "--network"),
    (["--image-height", "0"], "--image-height"),
    (["--gamma-prob", "2"], "--gamma-prob"),
    (["--occlusion-prob", "-1"], "--occlusion-prob"),
    (["--top-epochs", "-1"], "--top-epochs"),
    (["--finetune-lr", "0"], "--finetune-lr"),
    (["--decay-step-size", "0"], "--decay-step-size"),
    (["--num-layers", "0"], "--num-layers"),
]
EXPORT_FLAG_CASES = [
    ("export", ["--checkpoint", "{video_ckpt}", "--opset", "0"], "--opset"),
    ("export", ["--checkpoint", "{video_ckpt}", "--input-shape", "3,0,16,16"], "--input-shape"),
    ("onnx-infer", ["--onnx", "{video_onnx}", "--input", "x", "--stride", "0"], "--stride"),
    ("onnx-infer", ["--onnx", "{video_onnx}", "--input", "x", "--num-segments", "0"], "--num-segments"),
    ("onnx-infer", ["--onnx", "{video_onnx}", "--input", "x", "--mode", "wild"], "--mode"),
    ("trt-engine", ["--onnx", "{video_onnx}", "--min-batch", "0"], "--min-batch"),
    ("trt-engine", ["--onnx", "{video_onnx}", "--precision", "int4"], "--precision"),
]  # fmt: skip
# Broken checkpoint files: (file, what the line must name).
BAD_CHECKPOINTS = ["garbage", "empty", "evil", "truncated", "folder", "missing", "wrong_shape",
                   "unknown_kwargs"]  # fmt: skip
FOREIGN = {"video": "skeleton_ckpt", "skeleton": "gesture_ckpt", "gesture": "video_ckpt"}


def _flag_cases() -> list[Case]:
    cases = []
    for family, script in SCRIPTS.items():
        train = ["train", "--output-dir", "{out}"]
        for argv, flag in COMMON_FLAG_CASES + TRAIN_FLAG_CASES:
            cases.append(Case(f"{family}-train{''.join(argv)}", script, (*train, *argv), flag))
        for command in ("evaluate", "inference"):
            for argv, flag in COMMON_FLAG_CASES[:3] + COMMON_FLAG_CASES[6:10]:
                cases.append(Case(f"{family}-{command}{''.join(argv)}", script,
                                  (command, "--output-dir", "{out}", *argv), flag))  # fmt: skip
        for command, argv, flag in EXPORT_FLAG_CASES:
            cases.append(
                Case(f"{family}-{command}{''.join(argv[2:])}", script, (command, *argv), flag)
            )
    extra = {"video": HMDB_FLAG_CASES, "skeleton": NVPOSE_FLAG_CASES, "gesture": GESTURE_FLAG_CASES}
    for family, table in extra.items():
        for argv, flag in table:
            cases.append(Case(f"{family}-train{''.join(argv)}", SCRIPTS[family],
                              ("train", "--output-dir", "{out}", *argv), flag))  # fmt: skip
    return cases


# Spec values TAO would refuse: (dotted key, value); the line names the key.
BAD_SPEC_VALUES = {
    "video": [("model_config.model_type", "bogus"), ("train_config.optim.lr_scheduler", "Cosine"),
              ("dataset_config.output_shape", 112), ("dataset_config.batch_size", 0)],
    "skeleton": [("train.optim.lr_scheduler", "Cosine"), ("dataset.batch_size", -1),
                 ("model.model_type", "bogus")],
    "gesture": [("trainer.top_training.optimizer", "bogus"), ("batch_size", 0)],
}  # fmt: skip


# Cases whose fix belongs to another part of issue 12 and has not landed (id -> reason).
SPEC_XFAIL: dict[str, str] = {}


def _spec_name(key: str) -> str:
    return f"spec_{key.replace('.', '_')}.json"


def _spec_cases() -> list[Case]:
    cases = []
    for family, script in SCRIPTS.items():
        for name in ("missing_yaml", "bad_yaml", "list_yaml"):
            cases.append(Case(f"{family}-spec-{name}", script,
                              ("train", "-e", f"{{{name}}}", "--output-dir", "{out}"),
                              f"{{{name}}}"))  # fmt: skip
        for key, _ in BAD_SPEC_VALUES[family]:
            cases.append(Case(f"{family}-spec-value-{key}", script,
                              ("train", "-e", "{spec_dir}/" + _spec_name(key),
                               "--output-dir", "{out}"), key.rsplit(".", 1)[-1],
                              xfail=SPEC_XFAIL.get(key)))  # fmt: skip
        cases.append(Case(f"{family}-unknown-override", script,
                          ("train", "no_such_key=3", "--output-dir", "{out}"), "no_such_key"))  # fmt: skip
    return cases


def _checkpoint_cases() -> list[Case]:
    """Every command that reads a checkpoint, with every kind of broken or foreign file."""
    commands = {
        "video": [("evaluate", ["--checkpoint", "{ckpt}", "--data", "{out}"]),
                  ("inference", ["--checkpoint", "{ckpt}", "--videos", "{out}"]),
                  ("export", ["--checkpoint", "{ckpt}", "--onnx", "{out}/m.onnx"])],
        "skeleton": [("evaluate", ["--checkpoint", "{ckpt}", "--data", "{skeleton_npy}",
                                   "--labels", "{skeleton_pkl}"]),
                     ("inference", ["--checkpoint", "{ckpt}", "--data", "{skeleton_npy}"]),
                     ("export", ["--checkpoint", "{ckpt}", "--onnx", "{out}/m.onnx"])],
        "gesture": [("evaluate", ["--model", "{ckpt}", "--data_json", "{gesture_json}"]),
                    ("inference", ["--model", "{ckpt}", "--data_json", "{gesture_json}"]),
                    ("export", ["--checkpoint", "{ckpt}", "--onnx", "{out}/m.onnx"])],
    }  # fmt: skip
    cases = []
    for family, runs in commands.items():
        for command, argv in runs:
            for bad in [*BAD_CHECKPOINTS, FOREIGN[family]]:
                name = bad if bad in FOREIGN.values() else f"{bad}_{family}"
                filled = tuple(a.replace("{ckpt}", f"{{{name}}}") for a in argv)
                extra = () if command == "export" else ("--output-dir", "{out}", "--workers", "0")
                cases.append(Case(f"{family}-{command}-{bad}", SCRIPTS[family],
                                  (command, *filled, *extra), f"{{{name}}}"))  # fmt: skip
    return cases


def _runtime_cases() -> list[Case]:
    skeleton_train = ("train", "--output-dir", "{out}", "--workers", "0", "--device", "cpu",
                      "--network", "st_gcn_tiny", "--end-epoch", "1", "--no-tensorboard",
                      "--no-plots")  # fmt: skip
    good = ("--train-data", "{skeleton_npy}", "--train-labels", "{skeleton_pkl}")
    gesture = ("--output-dir", "{out}", "--workers", "0", "--device", "cpu")
    cases = [
        # video
        Case("video-unknown-network", "train_hmdb",
             ("train", "--output-dir", "{out}", "--network", "r3d_18x"), "did you mean"),
        Case("video-missing-data", "train_hmdb",
             ("train", "--output-dir", "{out}", "--network", "r3d_tiny", "--data", "{missing}"),
             "{missing}"),
        Case("video-train-no-data", "train_hmdb",
             ("train", "--output-dir", "{out}", "--network", "r3d_tiny"), "--data"),
        Case("video-bad-split-folder", "train_hmdb",
             ("train", "--output-dir", "{out}", "--network", "r3d_tiny", "--data", "{out}",
              "--splits", "{missing}"), "{missing}"),
        Case("video-inference-empty-folder", "train_hmdb",
             ("inference", "--checkpoint", "{video_ckpt}", "--videos", "{empty_dir}",
              "--output-dir", "{out}"), "{empty_dir}"),
        Case("video-onnx-infer-empty-mp4", "train_hmdb",
             ("onnx-infer", "--onnx", "{video_onnx}", "--input", "{empty_mp4}"), "{empty_mp4}"),
        Case("video-onnx-infer-text-mp4", "train_hmdb",
             ("onnx-infer", "--onnx", "{video_onnx}", "--input", "{text_mp4}"), "{text_mp4}"),
        Case("video-onnx-infer-noise-mp4", "train_hmdb",
             ("onnx-infer", "--onnx", "{video_onnx}", "--input", "{noise_mp4}"), "{noise_mp4}"),
        Case("video-onnx-infer-missing-input", "train_hmdb",
             ("onnx-infer", "--onnx", "{video_onnx}", "--input", "{missing}"), "{missing}"),
        Case("video-onnx-infer-garbage-onnx", "train_hmdb",
             ("onnx-infer", "--onnx", "{garbage_onnx}", "--input", "{empty_mp4}"),
             "{garbage_onnx}"),
        Case("video-onnx-infer-missing-onnx", "train_hmdb",
             ("onnx-infer", "--onnx", "{missing}", "--input", "{empty_mp4}"), "{missing}"),
        Case("video-onnx-infer-skeleton-onnx", "train_hmdb",
             ("onnx-infer", "--onnx", "{skeleton_onnx}", "--input", "{empty_mp4}"),
             "{skeleton_onnx}"),
        Case("video-quantize-garbage-onnx", "train_hmdb",
             ("quantize", "--onnx", "{garbage_onnx}", "--data", "{out}", "--output-dir", "{out}"),
             "{garbage_onnx}"),
        # skeleton
        Case("skeleton-train-missing-data", "train_nvpose",
             (*skeleton_train, "--train-data", "{missing}", "--train-labels", "{skeleton_pkl}"),
             "{missing}"),
        Case("skeleton-train-no-data", "train_nvpose", skeleton_train, "--train-data"),
        Case("skeleton-train-text-npy", "train_nvpose",
             (*skeleton_train, "--train-data", "{text_npy}", "--train-labels", "{skeleton_pkl}"),
             "{text_npy}"),
        Case("skeleton-train-evil-labels", "train_nvpose",
             (*skeleton_train, "--train-data", "{skeleton_npy}", "--train-labels", "{evil_pkl}"),
             "{evil_pkl}"),
        Case("skeleton-train-bad-label-map", "train_nvpose",
             (*skeleton_train, *good, "--label-map", "{list_json}"), "{list_json}"),
        *[Case(f"skeleton-train-pretrained-{bad}", "train_nvpose",
               (*skeleton_train, *good, "--pretrained", f"{{{bad}}}"), f"{{{bad}}}")
          for bad in ("garbage_skeleton", "evil_skeleton", "empty_skeleton", "video_ckpt")],
        *[Case(f"skeleton-train-resume-{bad}", "train_nvpose",
               (*skeleton_train, *good, "--resume", f"{{{bad}}}"), f"{{{bad}}}")
          for bad in ("garbage_skeleton", "evil_skeleton", "video_ckpt")],
        Case("skeleton-evaluate-25-joints", "train_nvpose",
             ("evaluate", "--checkpoint", "{skeleton_ckpt}", "--data", "{skeleton_25_npy}",
              "--labels", "{skeleton_pkl}", "--output-dir", "{out}", "--workers", "0"),
             "{skeleton_25_npy}"),
        Case("skeleton-inference-25-joints", "train_nvpose",
             ("inference", "--checkpoint", "{skeleton_ckpt}", "--data", "{skeleton_25_npy}",
              "--output-dir", "{out}", "--workers", "0"), "{skeleton_25_npy}"),
        Case("skeleton-convert-missing", "train_nvpose",
             ("convert", "--data", "{missing}", "--output-dir", "{out}"), "{missing}"),
        Case("skeleton-convert-garbage-json", "train_nvpose",
             ("convert", "--data", "{garbage_json}", "--output-dir", "{out}"), "{garbage_json}"),
        Case("skeleton-onnx-infer-text-npy", "train_nvpose",
             ("onnx-infer", "--onnx", "{skeleton_onnx}", "--input", "{text_npy}"), "{text_npy}"),
        Case("skeleton-quantize-garbage-onnx", "train_nvpose",
             ("quantize", "--onnx", "{garbage_onnx}", "--train-data", "{skeleton_npy}"),
             "{garbage_onnx}"),
        # gesture
        Case("gesture-convert-missing-spec", "train_gesture",
             ("convert", "--dataset_spec", "{missing}", "--experiment_spec", "{missing}",
              "--output_filename", "{out}/data.json"), "{missing}"),
        Case("gesture-convert-garbage-spec", "train_gesture",
             ("convert", "--dataset_spec", "{garbage_json}", "--experiment_spec",
              "{garbage_json}", "--output_filename", "{out}/data.json"), "{garbage_json}"),
        Case("gesture-convert-list-spec", "train_gesture",
             ("convert", "--dataset_spec", "{list_json}", "--experiment_spec", "{list_json}",
              "--output_filename", "{out}/data.json"), "{list_json}"),
        Case("gesture-train-missing-json", "train_gesture",
             ("train", *gesture, "--data_json", "{missing}"), "{missing}"),
        Case("gesture-train-garbage-json", "train_gesture",
             ("train", *gesture, "--data_json", "{garbage_json}"), "{garbage_json}"),
        Case("gesture-train-no-set", "train_gesture",
             ("train", *gesture, "--data_json", "{list_json}"), "{list_json}"),
        Case("gesture-train-bbox-not-an-image", "train_gesture",
             ("train", *gesture, "--data_json", "{gesture_json}", "--network", "gesturenet_tiny",
              "--image-height", "24", "--image-width", "24"), "not_image.png"),
        Case("gesture-train-num-classes", "train_gesture",
             ("train", *gesture, "--data_json", "{gesture_json}", "--num-classes", "3"),
             "num_classes"),
        Case("gesture-evaluate-bbox-not-an-image", "train_gesture",
             ("evaluate", *gesture, "--model", "{gesture_ckpt}", "--data_json", "{gesture_json}"),
             "not_image.png"),
    ]  # fmt: skip
    return cases


CASES = _flag_cases() + _spec_cases() + _checkpoint_cases() + _runtime_cases()


# ----------------------------------------------------------------------------- files
class _Evil:
    """Pickles as a call of os.system: the weights-only loader must refuse it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _checkpoint(folder: Path, family: str, **change) -> Path:
    name, args = {
        "video": ("r3d_tiny", {"clip_length": 4, "clip_size": 16, "short_side": 18}),
        "skeleton": ("st_gcn_tiny", {"seq_length": 12, "num_person": 1}),
        "gesture": ("gesturenet_tiny", {"image_height": 24, "image_width": 24}),
    }[family]
    torch.manual_seed(0)
    model = build_model(name, num_classes=3)
    state = make_checkpoint(model, args=args, family=family, class_names=["a", "b", "c"])
    state.update(change)
    path = folder / f"{family}{'_' + '_'.join(change) if change else ''}.pth"
    atomic_save(state, path)
    return path


def _family_files(folder: Path, family: str, marker: Path) -> dict[str, Path]:
    good = _checkpoint(folder, family)
    state = torch.load(good, weights_only=True)
    weights = [k for k, v in state["model"].items() if k.endswith("weight") and v.ndim >= 2]
    wrong = {**state["model"], weights[-1]: state["model"][weights[-1]][:1]}  # one class
    files = {
        f"garbage_{family}": folder / f"garbage_{family}.pth",
        f"empty_{family}": folder / f"empty_{family}.pth",
        f"evil_{family}": folder / f"evil_{family}.pth",
        f"truncated_{family}": folder / f"truncated_{family}.pth",
        f"folder_{family}": folder / f"folder_{family}.pth",
        f"missing_{family}": folder / f"missing_{family}.pth",
        f"wrong_shape_{family}": _checkpoint(folder, family, model=wrong),
        f"unknown_kwargs_{family}": _checkpoint(
            folder, family, network_kwargs={"num_classes": 3, "bogus_kwarg": 1}
        ),
        f"{family}_ckpt": good,
    }
    files[f"garbage_{family}"].write_bytes(b"not a checkpoint at all")
    files[f"empty_{family}"].write_bytes(b"")
    torch.save({"model": _Evil(marker)}, files[f"evil_{family}"])
    files[f"truncated_{family}"].write_bytes(good.read_bytes()[:300])
    files[f"folder_{family}"].mkdir()
    return files


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    from export.cli import export_checkpoint

    folder = tmp_path_factory.mktemp("bad_inputs")
    marker = folder / "PWNED"
    found: dict[str, Path] = {"marker": marker}
    for family in SCRIPTS:
        found.update(_family_files(folder, family, marker))
    for family in ("video", "skeleton"):
        found[f"{family}_onnx"] = folder / f"{family}.onnx"
        export_checkpoint(found[f"{family}_ckpt"], found[f"{family}_onnx"], family=family)
    texts = {"garbage_onnx": b"not onnx", "empty_mp4": b"", "text_mp4": b"just some text\n",
             "noise_mp4": np.random.default_rng(0).bytes(4096), "text_npy": b"not numpy",
             "garbage_json": b"{not json", "list_json": b"[1, 2, 3]",
             "missing_yaml": None, "bad_yaml": b"a: [unclosed\n", "list_yaml": b"- 1\n- 2\n"}  # fmt: skip
    suffixes = {"onnx": ".onnx", "mp4": ".mp4", "npy": ".npy", "json": ".json", "yaml": ".yaml"}
    for name, data in texts.items():
        found[name] = folder / f"{name}{suffixes[name.rsplit('_', 1)[1]]}"
        if data is not None:
            found[name].write_bytes(data)
    found["missing"] = folder / "does_not_exist"
    found["empty_dir"] = folder / "empty_dir"
    found["empty_dir"].mkdir()
    found["skeleton_npy"] = folder / "skeleton.npy"
    np.save(found["skeleton_npy"], np.zeros((4, 3, 12, 34, 1), np.float32))
    found["skeleton_pkl"] = folder / "skeleton.pkl"
    found["skeleton_pkl"].write_bytes(pickle.dumps((["s0", "s1", "s2", "s3"], [0, 1, 2, 0])))
    found["evil_pkl"] = folder / "evil.pkl"
    found["evil_pkl"].write_bytes(pickle.dumps(_Evil(marker)))
    found["gesture_json"] = _gesture_set(folder)
    found["spec_dir"] = folder / "specs"
    found["spec_dir"].mkdir()
    for table in BAD_SPEC_VALUES.values():
        for key, value in table:
            nested: dict = {}
            node = nested
            *parents, leaf = key.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
            (found["spec_dir"] / _spec_name(key)).write_text(json.dumps(nested))
    found["skeleton_25_npy"] = folder / "skeleton_25.npy"
    np.save(found["skeleton_25_npy"], np.zeros((4, 3, 12, 25, 1), np.float32))
    return found


def _gesture_set(folder: Path) -> Path:
    """A data.json whose crops are text files named .png."""
    (folder / "crops").mkdir()
    (folder / "crops" / "not_image.png").write_text("this is not an image")
    entry = {"full_image_path": "x.png", "bbox_path": "crops/not_image.png",
             "bbox_coordinates": [[0, 0], [1, 0], [0, 1], [1, 1]], "class": "fist",
             "user_id": "u", "set": "data", "metadata": {}}  # fmt: skip
    # "fist" is a class of the default --classes, "a" one of the test checkpoints'
    images = [entry, {**entry, "class": "a"}]
    sets = {name: {"images": images} for name in ("train_set", "validation_set", "kpi_set")}
    path = folder / "data.json"
    path.write_text(json.dumps({"image_root_path": str(folder), **sets}))
    return path


# ----------------------------------------------------------------------------- running a case
def _fill(text: str, files: dict[str, Path], out: Path) -> str:
    return re.sub(
        r"\{(\w+)\}", lambda m: str(out if m[1] == "out" else files[m[1]]), text
    )  # fmt: skip


def _listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _error_lines(stderr: str, records: list[logging.LogRecord]) -> list[str]:
    printed = [line for line in stderr.splitlines() if PRINTED_ERROR.search(line)]
    logged = [r.getMessage() for r in records if r.levelno >= logging.ERROR]
    return printed + logged


def _check(case: Case, code: int, stderr: str, records, seconds: float, needle: str) -> None:
    text = stderr + "\n".join(r.getMessage() for r in records)
    assert "Traceback" not in text, f"TRACEBACK: {case.id}\n{text[-3000:]}"
    assert seconds < HANG_SECONDS, f"HANG: {case.id} took {seconds:.0f} s"
    assert code == case.code, f"EXIT: {case.id}: exit code {code}, expected {case.code}\n{text}"
    errors = _error_lines(stderr, records)
    assert len(errors) == 1, f"GARBAGE: {case.id}: {len(errors)} error lines: {errors}"
    assert needle.lower() in errors[0].lower(), f"GARBAGE: {case.id}: {needle!r} not in {errors}"
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", errors[0]), f"GARBAGE: {case.id}: {errors}"


def _marks(case: Case):
    return [pytest.mark.xfail(strict=False, reason=case.xfail)] if case.xfail else []


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=_marks(c)) for c in CASES])
def test_bad_input(case: Case, files, tmp_path, monkeypatch, capsys, caplog) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    argv = [_fill(token, files, out) for token in case.argv]
    before, repo_before = _listing(tmp_path), set(os.listdir(ROOT))
    caplog.set_level(logging.INFO)
    module = importlib.import_module(case.script)
    started = time.monotonic()
    code = module.main(argv)
    seconds = time.monotonic() - started
    stderr = capsys.readouterr().err
    _check(case, code, stderr, caplog.records, seconds, _fill(case.needle, files, out))
    outside = {p for p in _listing(tmp_path) - before if not p.startswith("out")}
    assert not outside, f"GARBAGE: {case.id} wrote outside the output folder: {sorted(outside)}"
    assert set(os.listdir(ROOT)) == repo_before, f"GARBAGE: {case.id} wrote into the repository"
    assert not files["marker"].exists(), f"TRACEBACK: {case.id}: a pickle ran code"


SUBPROCESS_CASES = [
    Case("sub-video-batch-size", "train_hmdb", ("train", "--batch-size", "0"), "--batch-size"),
    Case("sub-skeleton-evil-checkpoint", "train_nvpose",
         ("evaluate", "--checkpoint", "{evil_skeleton}", "--data", "{skeleton_npy}",
          "--output-dir", "{out}"), "{evil_skeleton}"),
    Case("sub-gesture-device", "train_gesture", ("train", "--device", "cuda:99"), "--device"),
    Case("sub-video-unknown-network", "train_hmdb",
         ("train", "--network", "r3d_18x", "--output-dir", "{out}"), "did you mean"),
]  # fmt: skip


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in SUBPROCESS_CASES])
def test_bad_input_as_a_user_runs_it(case: Case, files, tmp_path) -> None:
    out = tmp_path / "out"
    argv = [_fill(token, files, out) for token in case.argv]
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, str(ROOT / f"{case.script}.py"), *argv], cwd=tmp_path,
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    lines = [line for line in completed.stderr.splitlines() if "error" in line.lower()]
    assert "Traceback" not in completed.stderr, f"TRACEBACK: {case.id}\n{completed.stderr}"
    assert completed.returncode == case.code, f"EXIT: {case.id}: {completed.returncode}"
    assert len(lines) == 1, f"GARBAGE: {case.id}: {completed.stderr}"
    assert _fill(case.needle, files, out).lower() in lines[0].lower()
    assert time.monotonic() - started < HANG_SECONDS + 60
    assert not files["marker"].exists()


def test_the_table_is_large_enough() -> None:
    assert len(CASES) + len(SUBPROCESS_CASES) >= 150
    assert len({c.id for c in CASES}) == len(CASES), "case ids must be unique"


# ----------------------------------------------------------------------------- issue 19, 1-3
# Files crafted to hurt (tests/hostile_files.py): every case runs in one child process under an
# address-space limit, so a file that claims gigabytes fails the case instead of taking the
# machine. Per case: exit code, the one error line naming the file or flag, no traceback, time,
# the child's peak RSS after the case, nothing written outside the case's folder.
HOSTILE_LIMIT = 6 * 2**30  # RLIMIT_AS of the child (torch alone maps ~4 GiB of address space)
HOSTILE_RSS_GROWTH_MIB = 600  # a case may not raise the child's peak RSS by more than this
HOSTILE_SECONDS = 60
# case -> (exit code, text the error line (code 2) or a warning (code 0) must contain)
HOSTILE_EXPECTED = {
    "pyskl-ndarray-bomb": (2, "bomb.pkl: a numpy array claims shape (1, 8388608, 64, 1)"),
    "pyskl-label-1e9": (2, "huge_label.pkl:a: label 1000000000"),
    "mmaction-label-999999999": (2, "x_val_split_1_videos.txt:1: label 999999999"),
    "yaml-bomb-value": (2, "yaml_bomb_value.yaml"),
    "yaml-bomb-unknown-key": (2, "yaml_bomb_unknown.yaml"),
    "ntu-frame-count": (2, "A001.skeleton: line 1: 99999999999999 frames"),
    "clip-size-100000": (2, "--clip-size 100000"),
    "segments-10000-one-frame": (0, "--segments 10000"),
    "mmaction-escape": (2, "x_val_split_1_videos.txt:1: entry ../../new/escape"),
    "mmaction-absolute": (2, "x_val_split_1_videos.txt:1: entry /etc/passwd.mp4"),
    "inference-forged-name": (0, ""),
    "damaged-evaluate": (0, "hurt.mp4"),
    "damaged-evaluate-strict": (2, "hurt.mp4"),
    "missing-evaluate": (0, "gone_v"),
    "missing-evaluate-strict": (2, "grow/gone_v"),
    "loop-evaluate-strict": (2, "grow/loop_v"),
}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict[str, dict]:
    """Every hostile case's result (``tests.hostile_files._run_one``), from one child process."""
    from tests.hostile_files import hostile_cases, make_hostile

    folder = tmp_path_factory.mktemp("hostile")
    files = make_hostile(folder / "files")
    checkpoint = folder / "grow.pth"  # r3d_tiny, classes grow, b, c; clips 4 x 16 x 16
    torch.manual_seed(0)
    state = make_checkpoint(build_model("r3d_tiny", num_classes=3), family="video",
                            args={"clip_length": 4, "clip_size": 16, "short_side": 18},
                            class_names=["grow", "b", "c"])  # fmt: skip
    atomic_save(state, checkpoint)
    cases = {}
    for case, (script, *argv) in hostile_cases(files, checkpoint).items():
        work = folder / case
        work.mkdir()
        cases[case] = [script, str(work), *(a.replace("{out}", str(work / "out")) for a in argv)]
    (folder / "cases.json").write_text(json.dumps(cases))
    results = folder / "results.json"
    subprocess.run(
        [sys.executable, "-m", "tests.hostile_files", str(folder / "cases.json"), str(results),
         str(HOSTILE_LIMIT)], cwd=ROOT, timeout=HOSTILE_SECONDS * len(cases), check=False,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    found = json.loads(results.read_text()) if results.is_file() else {}
    baseline = min((r["peak_mib"] for r in found.values()), default=0)
    return {case: {**result, "baseline_mib": baseline} for case, result in found.items()}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(HOSTILE_EXPECTED))
def test_hostile_file(case: str, hostile: dict[str, dict]) -> None:
    assert case in hostile, f"HANG: {case} did not finish (the child died or timed out before it)"
    result = hostile[case]
    code, needle = HOSTILE_EXPECTED[case]
    text = result["stderr"] + "\n".join(result["errors"])
    assert "Traceback" not in text, f"TRACEBACK: {case}\n{text[-3000:]}"
    assert result["seconds"] < HOSTILE_SECONDS, f"HANG: {case} took {result['seconds']:.0f} s"
    growth = result["peak_mib"] - result["baseline_mib"]
    assert growth < HOSTILE_RSS_GROWTH_MIB, f"HANG: {case} raised peak RSS by {growth:.0f} MiB"
    assert result["code"] == code, f"EXIT: {case}: {result['code']}, expected {code}\n{text}"
    errors = _error_lines(result["stderr"], []) + result["errors"]
    if code == 2:
        assert len(errors) == 1, f"GARBAGE: {case}: {len(errors)} error lines: {errors}"
        assert needle in errors[0], f"GARBAGE: {case}: {needle!r} not in {errors}"
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", errors[0]), f"GARBAGE: {case}"
    else:
        assert not errors, f"GARBAGE: {case}: {errors}"
        assert any(needle in w for w in result["warnings"]) or not needle, f"GARBAGE: {case}"
    outside = [p for p in result["written"] if not p.startswith("out")]
    assert not outside, f"GARBAGE: {case} wrote outside its output folder: {outside}"


def test_hostile_printed_names_cannot_forge_lines(hostile: dict[str, dict]) -> None:
    printed = hostile["inference-forged-name"]["stdout"]
    assert "\x1b" not in printed and printed.count("\n") == 1, printed  # one video, one line
    assert "gr\\x1b[31mow\\nFORGED RESULT grow 1.00/v.mp4 : " in printed


def test_hostile_counts_in_the_results(hostile: dict[str, dict], tmp_path) -> None:
    """Damaged packets are a column of evaluated.csv; a missing listed video is excluded and
    counted in ``scored / listed``; ``--segments`` is capped at what the video holds."""
    damaged = hostile["damaged-evaluate"]
    assert "videos scored 1 / 1 listed" in damaged["stdout"]
    assert any("hurt.mp4: " in w and "damaged packet" in w for w in damaged["warnings"])
    with (Path(damaged["work"]) / "out" / "evaluated.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1 and int(rows[0]["decode_errors"]) > 0, rows
    missing = hostile["missing-evaluate"]["stdout"]
    assert "videos scored 3 / 4 listed (1 excluded: grow/gone_v)" in missing
    capped = hostile["segments-10000-one-frame"]
    assert any("holds 1 distinct clip" in w for w in capped["warnings"])


# ----------------------------------------------------------------------------- issue 19 §4-6
# Checkpoints by content, TAO command lines, what a user reads (tests/test_tao_command_lines.py
# and tests/test_checkpoint_origin.py hold the cases that now run).
ISSUE19_C_CASES = [
    Case("i19c-layout-ambiguous", "train_nvpose",
         ("train", "--network", "st_gcn_tiny", "--train-data", "{joints17}", "--train-labels",
          "{joints17_labels}", "--output-dir", "{out}", "--device", "cpu", "--workers", "0"),
         "17 joints per pose fit the graph layouts human3.6m, coco"),
    Case("i19c-label-map-txt-repeated", "train_nvpose",
         ("train", "--network", "st_gcn_tiny", "--train-data", "{joints17}", "--train-labels",
          "{joints17_labels}", "--label-map", "{repeated_txt}", "--output-dir", "{out}"),
         "{repeated_txt}: class names repeated"),
    Case("i19c-mmaction-list-names", "train_hmdb",
         ("train", "--data", "{video_root}", "--splits", "{plain_lists}", "--output-dir", "{out}",
          "--device", "cpu", "--workers", "0"), "*_train_split_1_*.txt"),
    Case("i19c-tao-pose-into-video", "train_hmdb",
         ("evaluate", "--checkpoint", "{tao_pose}", "--data", "{video_root}", "--output-dir",
          "{out}", "--device", "cpu", "--workers", "0"), "needs a 'video' model"),
]  # fmt: skip


@pytest.fixture(scope="module")
def issue19_c_files(tmp_path_factory, files) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("issue19_c")
    found = dict(files)
    np.save(root / "j17.npy", np.zeros((2, 3, 8, 17, 1), np.float32))
    with open(root / "j17.pkl", "wb") as handle:
        pickle.dump((["a", "b"], [0, 1]), handle)
    (root / "repeated.txt").write_text("sit\nsit\n")
    lists = root / "lists"
    lists.mkdir()
    (lists / "train.txt").write_text("grow/grow_000.mp4 0\n")
    (lists / "val.txt").write_text("grow/grow_001.mp4 0\n")
    (root / "videos" / "grow").mkdir(parents=True)
    model = build_model("st_gcn_tiny", num_classes=2, graph_layout="ntu-rgb+d", graph_legacy=True)
    state = {f"model.{k}": v for k, v in model.state_dict().items()} | {"model.A": model.A}
    torch.save({"epoch": 1, "pytorch-lightning_version": "2.0.0", "state_dict": state},
               root / "tao_pose.pth")  # fmt: skip
    found |= {"joints17": root / "j17.npy", "joints17_labels": root / "j17.pkl",
              "repeated_txt": root / "repeated.txt", "plain_lists": lists,
              "video_root": root / "videos", "tao_pose": root / "tao_pose.pth"}  # fmt: skip
    return found


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in ISSUE19_C_CASES])
def test_issue19_checkpoints_tao_lines_and_names(
    case: Case, issue19_c_files, tmp_path, monkeypatch, capsys, caplog
) -> None:
    test_bad_input(case, issue19_c_files, tmp_path, monkeypatch, capsys, caplog)
