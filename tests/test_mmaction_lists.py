"""MMAction2 rawframe folders (img_/x_/y_ images) and annotation lists (data/video/mmaction_lists.py)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from data.video.dataset import VideoClipDataset
from data.video.splits import VideoRecord, load_split
from data.video.stores import is_complete_video, open_store
from tests.video_fixtures import make_flow, make_frames, make_video


def _rawframes(folder, n: int = 6, *, flow: str | None = "{}_{:05}.jpg"):
    """``img_00001.jpg ...`` (1-based) and ``n - 1`` flow pairs; returns the frames written."""
    folder.mkdir(parents=True)
    frames = make_frames(n, 32, 40)
    for i, frame in enumerate(frames, 1):
        cv2.imwrite(
            str(folder / f"img_{i:05}.jpg"), frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 98]
        )
    u, v = make_flow(n - 1, 32, 40, seed=1), make_flow(n - 1, 32, 40, seed=2)
    for i in range(n - 1) if flow else []:
        cv2.imwrite(str(folder / flow.format("x", i + 1)), u[i])
        cv2.imwrite(str(folder / flow.format("y", i + 1)), v[i])
    return frames, u


@pytest.mark.parametrize("flow_tmpl", ["{}_{:05}.jpg", "flow_{}_{:05}.jpg"])
def test_rawframe_folder_reads_rgb_and_flow_apart(tmp_path, flow_tmpl) -> None:
    frames, u = _rawframes(tmp_path / "v", flow=flow_tmpl)
    store = open_store(tmp_path / "v")
    assert store.kind == "mmaction" and is_complete_video(tmp_path / "v")
    assert store.num_frames("rgb") == 6 and store.num_frames("u") == store.num_frames("v") == 5
    rgb = store.read([0, 5]).astype(int)
    assert np.abs(rgb - frames[[0, 5]]).mean() < 3  # img_00001 is frame 0 (start_index 1)
    assert np.abs(store.read([4], "u")[0].astype(int) - u[4]).mean() < 3  # x_00005
    dataset = VideoClipDataset([VideoRecord(tmp_path / "v", 0, "v")], modality="flow",
                               clip_length=3, mode="center")  # fmt: skip
    assert tuple(dataset[0][0].shape) == (2, 3, 32, 40)


def test_rawframes_without_flow(tmp_path) -> None:
    _rawframes(tmp_path / "v", flow=None)
    store = open_store(tmp_path / "v")
    assert store.num_frames("rgb") == 6 and store.num_frames("u") == 0


def _lists(root, rows_train: list[str], rows_val: list[str]):
    lists = root / "lists"
    lists.mkdir()
    (lists / "hmdb51_train_split_1_rawframes.txt").write_text("\n".join(rows_train) + "\n")
    (lists / "hmdb51_val_split_1_rawframes.txt").write_text("\r\n".join(rows_val) + "\r\n")
    return lists


def test_rawframe_lists_become_a_split(tmp_path, caplog) -> None:
    data = tmp_path / "rawframes"
    for name in ("walk/a", "walk/b", "run/c"):
        _rawframes(data / name)
    lists = _lists(tmp_path, ["walk/a 6 0", "run/c 6 1"], ["walk/b 6 0", "run/gone 9 1"])
    (lists / "label_map.txt").write_text("walk\nrun\n")
    split = load_split(data, lists)
    assert split.class_names == ["walk", "run"]
    assert [(r.name, r.label) for r in split.train] == [("walk/a", 0), ("run/c", 1)]
    assert [r.name for r in split.val] == ["walk/b"] and split.missing == ["run/gone"]
    assert "run/gone" in caplog.text
    assert open_store(split.train[0].path).kind == "mmaction"


def test_video_lists_become_a_split(tmp_path) -> None:
    for name in ("x/1.mp4", "y/2.mp4"):
        make_video(tmp_path / "videos" / name, make_frames(4, 32, 32))
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "kinetics400_train_list_videos.txt").write_text("x/1.mp4 0\n")
    (lists / "kinetics400_val_list_videos.txt").write_text("y/2.mp4 2\n")
    split = load_split(tmp_path / "videos", lists)
    assert split.class_names == ["class_0", "class_1", "class_2"]
    assert [(r.path.name, r.label) for r in split.train + split.val] == [("1.mp4", 0), ("2.mp4", 2)]
    assert open_store(split.val[0].path).num_frames() == 4


@pytest.mark.parametrize(
    "line", ["walk/a 6 0 3", "walk/a 0", "x.mp4 1 2", "walk/a six 0", "x.mp4 -1"]
)
def test_bad_list_lines_name_file_and_line(tmp_path, line) -> None:
    lists = _lists(tmp_path, ["walk/a 6 0", line], ["walk/a 6 0"])
    with pytest.raises(ValueError, match=r"hmdb51_train_split_1_rawframes.txt:2: "):
        load_split(tmp_path, lists)
