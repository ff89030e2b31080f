"""pyskl/MMAction2 skeleton pickles and NTU RGB+D .skeleton files, built here in their exact
structure: reading, splits, padding, score channel, refusals, and `train --data x.pkl --split`."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

import train_nvpose
from data.skeleton.dataset import SkeletonDataset
from data.skeleton.formats import read_ntu_folder, read_ntu_skeleton, read_pyskl
from safeio.safe_pickle import UnsafePickleError

TRAIN_SUBJECT, VAL_SUBJECT = 1, 3  # NTU60 cross-subject: 1 trains, 3 validates


def _annotation(index: int, *, subject: int, two_d: bool = False) -> dict:
    rng = np.random.default_rng(index)
    label = index % 3
    persons, frames = 1 + index % 2, 10 + index
    channels = 2 if two_d else 3
    annotation = {
        "frame_dir": f"S001C001P{subject:03d}R001A{label + 1:03d}_{index}",
        "label": label,
        "img_shape": (1080, 1920),
        "original_shape": (1080, 1920),
        "total_frames": frames,
        "keypoint": (rng.normal(size=(persons, frames, 25, channels)) + label).astype(np.float32),
    }
    if two_d:
        annotation["keypoint_score"] = rng.random((persons, frames, 25)).astype(np.float32)
    return annotation


def _pyskl(path, *, two_d: bool = False, drop: str | None = None):
    annotations = [_annotation(i, subject=TRAIN_SUBJECT, two_d=two_d) for i in range(8)]
    annotations += [_annotation(8 + i, subject=VAL_SUBJECT, two_d=two_d) for i in range(4)]
    value = {
        "split": {
            "xsub_train": [a["frame_dir"] for a in annotations[:8]],
            "xsub_val": [a["frame_dir"] for a in annotations[8:]],
        },
        "annotations": annotations,
    }
    if drop:
        value.pop(drop)
    with open(path, "wb") as handle:
        pickle.dump(value, handle, protocol=2)  # mmcv.dump's protocol
    return path


def test_read_pyskl_split_padding_and_labels(tmp_path) -> None:
    source = read_pyskl(_pyskl(tmp_path / "ntu60_3danno.pkl"), split="xsub_val")
    assert source.names[0].startswith("S001C001P003") and len(source.names) == 4
    assert source.labels == [2, 0, 1, 2]
    assert source.data.shape == (4, 3, 21, 25, 2)  # longest 21 frames, at most 2 persons
    first = source.data[0]  # annotation 8: 1 person, 18 frames
    keypoint = _annotation(8, subject=VAL_SUBJECT)["keypoint"]
    np.testing.assert_array_equal(first[:, :18, :, 0], keypoint[0].transpose(2, 0, 1))
    assert not first[:, 18:].any() and not first[..., 1].any()
    assert source.data[1:3].shape == (2, 3, 21, 25, 2)


def test_keypoint_score_is_one_more_channel(tmp_path) -> None:
    path = _pyskl(tmp_path / "2d.pkl", two_d=True)
    assert read_pyskl(path).data.shape[1] == 2
    source = read_pyskl(path, split="xsub_train", keypoint_score=True)
    assert source.data.shape[1] == 3
    score = _annotation(0, subject=TRAIN_SUBJECT, two_d=True)["keypoint_score"]
    np.testing.assert_array_equal(source.data[0][2, :10, :, 0], score[0])
    with pytest.raises(ValueError, match="needs 'keypoint_score'"):
        read_pyskl(_pyskl(tmp_path / "3d.pkl"), keypoint_score=True)


def test_wrong_structure_names_file_and_key(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"no_ann\.pkl: missing key 'annotations'"):
        read_pyskl(_pyskl(tmp_path / "no_ann.pkl", drop="annotations"))
    with pytest.raises(ValueError, match=r"no_split\.pkl: missing key 'split'"):
        read_pyskl(_pyskl(tmp_path / "no_split.pkl", drop="split"), split="xsub_train")
    with pytest.raises(ValueError, match="no split 'xsub_trian'; it has xsub_train, xsub_val"):
        read_pyskl(_pyskl(tmp_path / "ok.pkl"), split="xsub_trian")
    value = {"annotations": [{"frame_dir": "a", "label": 0}]}
    (tmp_path / "bad.pkl").write_bytes(pickle.dumps(value))
    with pytest.raises(ValueError, match=r"bad\.pkl: annotation 0 lacks key 'keypoint'"):
        read_pyskl(tmp_path / "bad.pkl")
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"annotations": [os.system]}))
    with pytest.raises(UnsafePickleError, match="refusing to load"):
        read_pyskl(tmp_path / "evil.pkl")


def _train(argv, out):
    return train_nvpose.main([
        "train", *argv, "--graph-layout", "ntu-rgb+d", "--network", "st_gcn_tiny",
        "--end-epoch", "2", "--batch-size", "4", "--workers", "0", "--device", "cpu",
        "--output-dir", str(out), "--no-tensorboard", "--no-plots", "--no-auto-resume",
        "--lr-steps", "1",
    ])  # fmt: skip


def test_train_on_a_pyskl_pickle_with_splits(tmp_path) -> None:
    data = _pyskl(tmp_path / "ntu60_3danno.pkl")
    argv = ["--data", str(data), "--split", "xsub_train", "--val-split", "xsub_val"]
    assert _train(argv, tmp_path / "run") == 0
    metrics = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert len(metrics) == 3  # header + 2 epochs, validated on the 4 xsub_val samples
    assert SkeletonDataset(data, split="xsub_val").labels == [2, 0, 1, 2]
    assert train_nvpose.main([
        "evaluate", "--checkpoint", str(tmp_path / "run" / "best.pth"), "--data", str(data),
        "--split", "xsub_val", "--output-dir", str(tmp_path / "eval"), "--device", "cpu",
        "--workers", "0",
    ]) == 0  # fmt: skip
    assert "Total accuracy" in (tmp_path / "eval" / "evaluation.txt").read_text()
    assert train_nvpose.main([
        "inference", "--checkpoint", str(tmp_path / "run" / "best.pth"), "--data", str(data),
        "--split", "xsub_val", "--output-dir", str(tmp_path / "inf"), "--device", "cpu",
        "--workers", "0",
    ]) == 0  # fmt: skip
    assert len((tmp_path / "inf" / "actions.txt").read_text().splitlines()) == 4


def test_train_refuses_a_wrong_pickle_in_one_line(tmp_path, capsys) -> None:
    data = _pyskl(tmp_path / "x.pkl", drop="annotations")
    assert _train(["--data", str(data), "--split", "xsub_train"], tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert "x.pkl: missing key 'annotations'" in err and "Traceback" not in err


def _ntu_text(frames: list[list[np.ndarray]]) -> str:
    """NTU .skeleton text: frame count; per frame the body count, per body its 10-value line,
    the joint count and 25 lines of 12 values (x, y, z first)."""
    lines = [str(len(frames))]
    for bodies in frames:
        lines.append(str(len(bodies)))
        for number, joints in enumerate(bodies):
            lines.append(f"7205759403792{number} 0 1 1 1 1 0 0.1 0.2 2")
            lines.append("25")
            for x, y, z in joints:
                lines.append(f"{x} {y} {z} 250.1 200.2 900.3 500.4 0.1 0.2 0.3 0.4 2")
    return "\n".join(lines) + "\n"


def test_ntu_skeleton_files(tmp_path) -> None:
    rng = np.random.default_rng(0)
    frames = [[rng.normal(size=(25, 3)).round(6) for _ in range(1 + f % 3)] for f in range(5)]
    folder = tmp_path / "nturgb+d_skeletons"
    folder.mkdir()
    (folder / "S001C002P001R001A005.skeleton").write_text(_ntu_text(frames))
    (folder / "S001C001P003R002A010.skeleton").write_text(_ntu_text(frames[:3]))
    one = read_ntu_skeleton(folder / "S001C002P001R001A005.skeleton")
    assert one.shape == (3, 5, 25, 2)
    np.testing.assert_allclose(one[:, 2, :, 1], frames[2][1].T, rtol=1e-6)  # third body dropped
    assert not one[:, 0, :, 1].any()  # frame 0 has one body
    source = read_ntu_folder(folder)
    assert source.labels == [9, 4] and source.data.shape == (2, 3, 5, 25, 2)
    assert read_ntu_folder(folder, split="xsub_train").names == ["S001C002P001R001A005"]
    assert read_ntu_folder(folder, split="xview_val").names == ["S001C001P003R002A010"]
    (folder / "S001C001P001R001A001.skeleton").write_text("2\n1\nbody\n25\n1 2 3\n")
    with pytest.raises(ValueError, match=r"A001\.skeleton: line 5: expected 12 numbers, got 3"):
        read_ntu_folder(folder)
