"""Regenerate the README's "See it work" pictures (docs/see_it_work/*.png) from real runs.

Every picture comes out of the family scripts' own commands on tiny synthetic data, on CPU::

    python benchmarks/see_it_work.py --work /tmp/see_it_work     # a few minutes on 2 cores

Video: synth -> train r3d_tiny -> evaluate (per_class.png) -> inference --render (a frame of the
annotated mp4, the timeline) -> explain (the Grad-CAM strip). Skeleton: synth -> train
st_gcn_tiny -> inference --render (a frame of a skeleton video) -> explain (joint importance).
Gesture: the demo's tiny GestureNet -> inference --render (the contact sheet). Pictures wider
than 720 pixels are scaled down so the docs stay small.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import av
import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import train_gesture  # noqa: E402
import train_hmdb  # noqa: E402
import train_nvpose  # noqa: E402

DOCS = ROOT / "docs" / "see_it_work"
MAX_WIDTH = 720


def _run(main, argv: list[str]) -> None:
    print("$", " ".join(argv), flush=True)
    if main(argv) != 0:
        raise SystemExit(f"failed: {' '.join(argv)}")


def _save(image, name: str) -> None:
    """An RGB array or a PNG path, written to docs/see_it_work/<name> (width <= MAX_WIDTH)."""
    if isinstance(image, Path):
        image = cv2.imread(str(image), cv2.IMREAD_COLOR)[..., ::-1]
    if image.shape[1] > MAX_WIDTH:
        height = round(image.shape[0] * MAX_WIDTH / image.shape[1])
        image = cv2.resize(image, (MAX_WIDTH, height), interpolation=cv2.INTER_AREA)
    DOCS.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(DOCS / name), image[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"-> {DOCS / name} ({(DOCS / name).stat().st_size // 1024} KiB)")


def _frame(video: Path, index: int):
    with av.open(str(video)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == index:
                return frame.to_ndarray(format="rgb24")
    raise ValueError(f"{video}: no frame {index}")


def video(work: Path) -> None:
    videos, run = work / "videos", work / "video_run"
    classes = ["move_left", "move_right", "grow", "shrink"]
    _run(
        train_hmdb.main,
        [
            "synth",
            "--out",
            str(videos),
            "--classes",
            *classes,
            "--videos-per-class",
            "8",
            "--frames",
            "24",
            "--size",
            "96x72",
        ],
    )
    clip = ["--clip-length", "8", "--clip-size", "64", "--short-side", "72"]
    _run(
        train_hmdb.main,
        [
            "train",
            "--data",
            str(videos),
            "--network",
            "r3d_tiny",
            *clip,
            "--flip-prob",
            "0",
            "--batch-size",
            "8",
            "--optimizer",
            "adamw",
            "--lr-base",
            "0.003",
            "--end-epoch",
            "8",
            "--workers",
            "0",
            "--no-tensorboard",
            "--no-auto-resume",
            "--output-dir",
            str(run),
        ],
    )
    checkpoint = str(run / "best.pth")
    _run(
        train_hmdb.main,
        [
            "evaluate",
            "--checkpoint",
            checkpoint,
            "--workers",
            "0",
            "--output-dir",
            str(work / "eval"),
        ],
    )
    _save(work / "eval" / "per_class.png", "per_class.png")
    source = videos / "move_left" / "move_left_007.mp4"
    _run(
        train_hmdb.main,
        [
            "inference",
            "--checkpoint",
            checkpoint,
            "--videos",
            str(source),
            "--workers",
            "0",
            "--render",
            str(work / "rendered"),
        ],
    )
    _save(_frame(work / "rendered" / "move_left_007.mp4", 12), "annotated_frame.png")
    _save(work / "rendered" / "move_left_007_timeline.png", "timeline.png")
    _run(
        train_hmdb.main,
        [
            "explain",
            "--checkpoint",
            checkpoint,
            "--video",
            str(source),
            "--workers",
            "0",
            "--out",
            str(work / "explain"),
        ],
    )
    _save(work / "explain" / "move_left_007_gradcam.png", "gradcam.png")


def skeleton(work: Path) -> None:
    data, run = work / "poses", work / "pose_run"
    _run(
        train_nvpose.main,
        [
            "synth",
            "--output-dir",
            str(data),
            "--train-per-class",
            "12",
            "--val-per-class",
            "3",
            "--max-frames",
            "48",
        ],
    )
    _run(
        train_nvpose.main,
        [
            "train",
            "--output-dir",
            str(run),
            "--network",
            "st_gcn_tiny",
            "--train-data",
            str(data / "train_data.npy"),
            "--train-labels",
            str(data / "train_label.pkl"),
            "--label-map",
            str(data / "label_map.json"),
            "--end-epoch",
            "4",
            "--lr-base",
            "0.05",
            "--batch-size",
            "16",
            "--workers",
            "0",
            "--no-tensorboard",
            "--no-auto-resume",
        ],
    )
    checkpoint = str(run / "best.pth") if (run / "best.pth").exists() else str(run / "latest.pth")
    val = ["--checkpoint", checkpoint, "--data", str(data / "val_data.npy"), "--workers", "0"]
    _run(
        train_nvpose.main,
        [
            "inference",
            *val,
            "--output-dir",
            str(work / "pose_out"),
            "--render",
            str(work / "skeletons"),
        ],
    )
    _save(_frame(work / "skeletons" / "sequence_0000.mp4", 10), "skeleton_frame.png")
    _run(train_nvpose.main, ["explain", *val, "--out", str(work / "pose_explain")])
    _save(work / "pose_explain" / "sequence_0000_joints.png", "joint_importance.png")


def gesture(work: Path) -> None:
    out = work / "gesture"
    _run(train_gesture.main, ["demo", "--out", str(out), "--epochs", "3"])
    _run(
        train_gesture.main,
        [
            "inference",
            "--model",
            str(out / "run" / "model" / "model.pth"),
            "--data_json",
            str(out / "data.json"),
            "--data_type",
            "kpi_set",
            "--workers",
            "0",
            "--results_dir",
            str(out / "inference"),
            "--render",
            str(out / "sheet"),
        ],
    )
    sheet = cv2.imread(str(out / "sheet" / "contact_sheet.png"), cv2.IMREAD_COLOR)[..., ::-1]
    _save(sheet[: 2 * (128 + 34)], "contact_sheet.png")  # the first two rows of tiles


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/see_it_work"))
    parser.add_argument("--only", choices=("video", "skeleton", "gesture"), nargs="*")
    args = parser.parse_args(argv)
    shutil.rmtree(args.work, ignore_errors=True)
    for part in args.only or ("video", "skeleton", "gesture"):
        {"video": video, "skeleton": skeleton, "gesture": gesture}[part](args.work / part)
    return 0


if __name__ == "__main__":
    sys.exit(main())
