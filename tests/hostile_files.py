"""Files crafted to hurt (issue 19, sections 1-3): small files that claim huge sizes, labels far
beyond the class count, YAML alias bombs, list entries that leave their data root, names that
carry terminal escapes, and a damaged H.264 video.

``make_hostile(folder)`` writes them all and returns ``{name: path}``; ``tests/test_bad_inputs.py``
runs the family scripts on them in child processes with a memory limit.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from tests.video_fixtures import make_frames, make_video

# The claimed keypoint array of the pickle bomb: 1 × 8388608 × 64 × 1 float32 = 2 GiB.
BOMB_SHAPE = (1, 8388608, 64, 1)
HUGE_LABEL = 10**9
NTU_FRAMES = 99999999999999
# A class folder whose name would forge a result line and colour the terminal.
FORGED_CLASS = "gr\x1b[31mow\nFORGED RESULT grow 1.00"
DAMAGED_BYTES = 4000


class _Reduce:
    """Pickles as ``function(*arguments)``, whatever the function."""

    def __init__(self, function, *arguments) -> None:
        self.function, self.arguments = function, arguments

    def __reduce__(self):
        return self.function, self.arguments


def _pyskl(keypoint, label: int = 0) -> dict:
    annotation = {"frame_dir": "a", "label": label, "total_frames": 4, "keypoint": keypoint}
    return {"split": {"xsub_train": ["a"], "xsub_val": ["a"]}, "annotations": [annotation]}


def _pickle_bomb() -> bytes:
    """A pyskl pickle whose keypoint is ``_reconstruct(ndarray, BOMB_SHAPE, 'f4')``: numpy
    allocates the claimed shape before any data is read."""
    reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]
    return pickle.dumps(_pyskl(_Reduce(reconstruct, np.ndarray, BOMB_SHAPE, "f4")), protocol=2)


def _billion_laughs(levels: int = 9, *, under_unknown_key: bool) -> str:
    """A YAML alias bomb: 9 ** ``levels`` strings once expanded, a few hundred bytes on disk."""
    lines = ['    a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, levels + 1):
        lines.append(f"    a{level}: &a{level} [{','.join([f'*a{level - 1}'] * 9)}]")
    if under_unknown_key:  # TAO specs ignore unknown keys with a warning
        return "no_such_section:\n  anchors:\n" + "\n".join(lines) + f"\n  bomb: *a{levels}\n"
    return "train_config:\n  anchors:\n" + "\n".join(lines) + f"\n  optim:\n    lr: *a{levels}\n"


def _ntu_skeleton(frames: int) -> str:
    joint = " ".join(["0.1"] * 12)
    body = "72057594037930000 0 1 1 1 1 0 0.1 0.1 2\n25\n" + (joint + "\n") * 25
    return f"{frames}\n1\n{body}"


def _damaged_video(path: Path) -> Path:
    """40 noisy 96×64 frames as H.264, then 4000 bytes in the middle overwritten."""
    rng = np.random.default_rng(5)
    frames = make_frames(40, 64, 96)
    noise = rng.integers(0, 60, frames.shape, dtype=np.uint8)
    make_video(path, np.clip(frames.astype(np.int16) + noise, 0, 255).astype(np.uint8))
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + DAMAGED_BYTES] = rng.integers(0, 256, DAMAGED_BYTES, np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


def _mmaction_root(folder: Path, train_lines: list[str], val_lines: list[str]) -> Path:
    """``folder/data/grow/grow_000.mp4`` and lists ``folder/lists/x_{train,val}_split_1_videos``."""
    make_video(folder / "data" / "grow" / "grow_000.mp4", make_frames(8, 32, 32))
    lists = folder / "lists"
    lists.mkdir(parents=True, exist_ok=True)
    (lists / "x_train_split_1_videos.txt").write_text("\n".join(train_lines) + "\n")
    (lists / "x_val_split_1_videos.txt").write_text("\n".join(val_lines) + "\n")
    return folder


def make_hostile(folder: Path) -> dict[str, Path]:
    """Every hostile file of sections 1-3 under ``folder``; ``{name: path}``."""
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    files["pickle_bomb"] = folder / "bomb.pkl"
    files["pickle_bomb"].write_bytes(_pickle_bomb())
    files["huge_label_pkl"] = folder / "huge_label.pkl"
    keypoint = np.zeros((1, 4, 25, 3), np.float32)
    files["huge_label_pkl"].write_bytes(pickle.dumps(_pyskl(keypoint, HUGE_LABEL)))
    for name, unknown in (("yaml_bomb_value", False), ("yaml_bomb_unknown", True)):
        files[name] = folder / f"{name}.yaml"
        files[name].write_text(_billion_laughs(under_unknown_key=unknown))
    files["ntu_huge"] = folder / "ntu" / "S001C001P001R001A001.skeleton"
    files["ntu_huge"].parent.mkdir()
    files["ntu_huge"].write_text(_ntu_skeleton(NTU_FRAMES))
    ok = ["grow/grow_000.mp4 0"]
    roots = {
        "mm_huge_label": ["grow/grow_000.mp4 999999999"],
        "mm_escape": ["../../new/escape/outside_video.mp4 0"],
        "mm_absolute": ["/etc/passwd.mp4 1"],
    }
    for name, lines in roots.items():
        files[name] = _mmaction_root(folder / name, ok, lines)
    (folder / "new" / "escape").mkdir(parents=True)  # the escape target exists, outside the root
    make_video(folder / "new" / "escape" / "outside_video.mp4", make_frames(8, 32, 32))
    files["one_frame"] = folder / "one_frame" / "grow" / "single.mp4"
    make_video(files["one_frame"], make_frames(1, 32, 32))
    files["forged"] = folder / "forged" / FORGED_CLASS / "v.mp4"
    make_video(files["forged"], make_frames(8, 32, 32))
    files["damaged"] = _damaged_video(folder / "damaged" / "grow" / "hurt.mp4")
    files.update(make_listed(folder, files["one_frame"]))
    return files


# ----------------------------------------------------------------------------- the cases
def hostile_cases(files: dict[str, Path], checkpoint: Path) -> dict[str, list[str]]:
    """``{case id: [script, *argv]}`` over :func:`make_hostile`'s files (``{out}``: the case's
    output folder)."""
    out = ["--output-dir", "{out}", "--workers", "0", "--device", "cpu"]
    nvpose = ["train_nvpose", "train", *out, "--network", "st_gcn_tiny", "--end-epoch", "1",
              "--no-tensorboard", "--no-plots"]  # fmt: skip
    pyskl = ["--split", "xsub_train", "--val-split", "xsub_val"]
    hmdb = ["train_hmdb", "train", *out, "--network", "r3d_tiny", "--clip-length", "4",
            "--end-epoch", "1", "--no-tensorboard", "--no-plots", "--batch-size", "2"]  # fmt: skip
    small = ["--clip-size", "16", "--short-side", "18"]
    evaluate = ["train_hmdb", "evaluate", "--checkpoint", str(checkpoint), *out]
    infer = ["train_hmdb", "inference", "--checkpoint", str(checkpoint), *out]

    def lists(name: str) -> list[str]:
        return ["--data", str(files[name] / "data"), "--splits", str(files[name] / "lists")]

    damaged = ["--val-data", str(files["damaged"].parent.parent)]
    listed = ["--data", str(files["listed"])]
    return {
        "pyskl-ndarray-bomb": [*nvpose, "--data", str(files["pickle_bomb"]), *pyskl],
        "pyskl-label-1e9": [*nvpose, "--data", str(files["huge_label_pkl"]), *pyskl],
        "mmaction-label-999999999": [*hmdb, *small, *lists("mm_huge_label")],
        "yaml-bomb-value": ["train_hmdb", "train", "-e", str(files["yaml_bomb_value"]), *out],
        "yaml-bomb-unknown-key": [
            "train_hmdb",
            "train",
            "-e",
            str(files["yaml_bomb_unknown"]),
            *out,
        ],
        "ntu-frame-count": [*nvpose, "--data", str(files["ntu_huge"])],
        "clip-size-100000": [
            *hmdb,
            "--data",
            str(files["one_frame"].parent.parent),
            "--clip-size",
            "100000",
        ],
        "segments-10000-one-frame": [
            *infer,
            "--videos",
            str(files["one_frame"]),
            "--eval-mode",
            "conv",
            "--segments",
            "10000",
        ],
        "mmaction-escape": [*hmdb, *small, *lists("mm_escape")],
        "mmaction-absolute": [*hmdb, *small, *lists("mm_absolute")],
        "inference-forged-name": [*infer, "--videos", str(files["forged"].parent.parent)],
        "damaged-evaluate": [*evaluate, *damaged],
        "damaged-evaluate-strict": [*evaluate, *damaged, "--strict"],
        "missing-evaluate": [*evaluate, *listed, "--splits", str(files["missing_lists"])],
        "missing-evaluate-strict": [
            *evaluate,
            *listed,
            "--splits",
            str(files["missing_lists"]),
            "--strict",
        ],
        "loop-evaluate-strict": [
            *evaluate,
            *listed,
            "--splits",
            str(files["loop_lists"]),
            "--strict",
        ],
    }


def make_listed(folder: Path, one_frame: Path) -> dict[str, Path]:
    """Three readable videos and a symlink loop under ``folder/listed/grow``; UCF101-style lists
    naming the three plus the loop (``loop_lists``) or plus a video that is not there
    (``missing_lists``)."""
    import shutil

    videos = folder / "listed" / "grow"
    videos.mkdir(parents=True)
    for index in range(3):
        shutil.copy(one_frame, videos / f"ok{index}.mp4")
    (videos / "loop_v.mp4").symlink_to("loop_v.mp4")
    found = {"listed": folder / "listed"}
    for name, bad in (("loop_lists", "loop_v"), ("missing_lists", "gone_v")):
        found[name] = folder / name
        found[name].mkdir()
        (found[name] / "classInd.txt").write_text("1 grow\n")
        (found[name] / "trainlist01.txt").write_text("grow/ok0.avi 1\n")
        listed = [f"grow/{video}.avi\n" for video in ("ok0", "ok1", "ok2", bad)]
        (found[name] / "testlist01.txt").write_text("".join(listed))
    return found


def _run_one(script: str, argv: list[str], work: Path) -> dict:
    """Run ``script.main(argv)`` in ``work``; what it printed, logged, returned and wrote."""
    import contextlib
    import importlib
    import io
    import logging
    import os
    import resource
    import time

    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logging.getLogger().addHandler(handler)
    stdout, stderr = io.StringIO(), io.StringIO()
    os.chdir(work)
    started = time.monotonic()
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = importlib.import_module(script).main(argv)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:  # reported, so the parent sees which case broke
        import traceback

        code, stderr = "raised", io.StringIO(traceback.format_exc())
    finally:
        logging.getLogger().removeHandler(handler)
    return {
        "work": str(work),
        "code": code,
        "seconds": time.monotonic() - started,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "stdout": stdout.getvalue(),
        "stderr": stderr.getvalue(),
        "warnings": [r.getMessage() for r in records if r.levelno == logging.WARNING],
        "errors": [r.getMessage() for r in records if r.levelno >= logging.ERROR],
        "written": sorted(str(p.relative_to(work)) for p in work.rglob("*")),
    }


def main() -> None:
    """``python -m tests.hostile_files CASES.json RESULTS.json LIMIT_BYTES``: run every case in
    this one process (imports paid once) under an address-space limit; one result per case."""
    import importlib
    import json
    import resource
    import sys

    cases, results, limit = json.loads(Path(sys.argv[1]).read_text()), sys.argv[2], sys.argv[3]
    resource.setrlimit(resource.RLIMIT_AS, (int(limit), int(limit)))
    for script in sorted({script for script, *_ in cases.values()}):
        importlib.import_module(script)  # import time is not a case's time
    done = {}
    for case, (script, work, *argv) in cases.items():
        done[case] = _run_one(script, argv, Path(work))
        Path(results).write_text(json.dumps(done))  # what finished survives a crash


if __name__ == "__main__":
    main()
