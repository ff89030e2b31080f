"""Raw video files as frame stores (data/video/videofile.py): the same frames as ``prepare`` writes."""

from __future__ import annotations

import gc
import multiprocessing
import pickle
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from data.video import videofile
from data.video.dataset import VideoClipDataset
from data.video.ffmpeg_io import ffmpeg_exe, read_video
from data.video.framestore import FrameStoreError
from data.video.prepare import Job, Options, prepare_video
from data.video.splits import VideoRecord
from data.video.stores import open_store
from tests.video_fixtures import make_frames, make_video, make_zero_frame_video

N = 36  # frames per test video
OPTIONS = Options(
    layout="sqlite", height=None, short_side=None, quality=95, image_format="png",
    flow=False, flow_method="dis", flow_bound=None, overwrite=True,
)  # fmt: skip


def _ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", *args], check=True)


def _bar_positions(frames: np.ndarray) -> np.ndarray:
    """x of the red bar per frame (make_frames moves it one step per frame)."""
    red = (frames[..., 0].astype(int) - frames[..., 1].astype(int)).mean(axis=-2) > 120
    return (red * np.arange(red.shape[-1])).sum(axis=-1) / red.sum(axis=-1)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    """The same 36 frames as H.264 mp4 (B-frames, keyframe every 8), variable-frame-rate mp4,
    XviD AVI, VP9 webm, mkv, and a mov whose display matrix rotates it by 90 degrees."""
    root = tmp_path_factory.mktemp("videos")
    source = make_video(root / "source.mp4", make_frames(N, 48, 64), fps=10)
    out = {"source": source}
    encode = {
        "mp4": ["-c:v", "libx264", "-g", "8", "-bf", "2"],
        "avi": ["-c:v", "mpeg4", "-vtag", "XVID", "-bf", "2", "-g", "8", "-q:v", "2"],
        "webm": ["-c:v", "libvpx-vp9", "-g", "8", "-crf", "20", "-b:v", "0"],
        "mkv": ["-c:v", "libx264", "-g", "8"],
    }
    for suffix, args in encode.items():
        out[suffix] = root / f"clip.{suffix}"
        _ffmpeg("-i", str(source), *args, str(out[suffix]))
    # 10 fps for 12 frames, then 25 fps: frame k is still source frame k.
    out["vfr"] = root / "vfr.mp4"
    _ffmpeg("-i", str(source), "-vf", "setpts='if(lt(N,12),N*0.1,1.2+(N-12)*0.04)/TB'",
            "-fps_mode", "passthrough", "-enc_time_base", "1/1000", "-c:v", "libx264",
            "-g", "8", str(out["vfr"]))  # fmt: skip
    out["mov"] = root / "rotated.mov"
    _ffmpeg("-display_rotation", "90", "-i", str(out["mp4"]), "-c", "copy", str(out["mov"]))
    return out


def _prepared(video: Path) -> Path:
    target = video.parent / "prepared" / video.name.replace(".", "_")
    outcome = prepare_video(Job(video, target, video.name), OPTIONS)
    assert outcome.status == "written", outcome.reason
    return target


@pytest.mark.parametrize("kind", ["mp4", "vfr", "avi", "webm", "mkv", "mov"])
def test_raw_clip_equals_prepared_clip(videos, kind: str) -> None:
    raw, prepared = open_store(videos[kind]), open_store(_prepared(videos[kind]))
    assert type(raw).__name__ == "VideoFileStore" and raw.encoded is False
    assert raw.num_frames() == prepared.num_frames() == N
    clip = [5, 7, 9, 11, 13, 15, 17, 19]
    a, b = raw.read(clip).astype(int), prepared.read(clip).astype(int)
    assert a.shape == b.shape
    assert np.abs(a - b).mean() < 3.0  # JPEG loss (quality 95, 4:2:0 chroma at the sharp bar)
    shifted = prepared.read([i + 1 for i in clip]).astype(int)
    assert np.abs(a - shifted).mean() > 3 * np.abs(a - b).mean()  # one frame off is far worse
    assert np.array_equal(raw.read(range(N)), read_video(videos[kind]))  # ffmpeg's own frames


@pytest.mark.parametrize("kind", ["mp4", "vfr", "avi", "webm"])
def test_frame_k_is_source_frame_k_in_any_order(videos, kind: str) -> None:
    store = open_store(videos[kind])
    wanted = [30, 2, 2, 17, 35, 0, 9]
    expected = _bar_positions(make_frames(N, 48, 64)[wanted])
    assert np.abs(_bar_positions(store.read(wanted)) - expected).max() <= 0.5  # frames: 1-2 px


def test_rotation_is_applied(videos) -> None:
    frames = open_store(videos["mov"]).read([0, 20])
    upright = open_store(videos["mp4"]).read([0, 20])
    assert frames.shape == (2, 64, 48, 3)
    assert np.array_equal(frames, np.rot90(upright, 1, axes=(1, 2)))  # ffmpeg's autorotate


def test_reads_seek_instead_of_decoding_from_the_start(videos, monkeypatch) -> None:
    decoded = []
    original = videofile._Reader.decode

    def counting(self):
        for frame in original(self):
            decoded.append(frame.pts)
            yield frame

    monkeypatch.setattr(videofile._Reader, "decode", counting)
    store = open_store(videos["mp4"])
    store.num_frames()
    decoded.clear()
    store.read([33, 34, 35])
    assert len(decoded) <= 12  # from the keyframe at 32 (plus decoder delay), not 36 frames
    decoded.clear()
    store.read([1, 2])  # backwards: a seek to frame 0
    assert len(decoded) <= 8


def test_min_short_side_downscales_on_the_fly(videos) -> None:
    store = open_store(videos["mp4"])
    full, small = store.read([3, 4]), store.read([3, 4], min_short_side=24)
    assert small.shape == (2, 24, 32, 3)
    expected = cv2.resize(full[0], (32, 24), interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(small[0].astype(int) - expected).mean() < 4
    assert store.read([3], min_short_side=100).shape == (1, 48, 64, 3)  # never upscaled
    assert open_store(videos["mov"]).read([3], min_short_side=24).shape == (1, 32, 24, 3)


def test_truncated_file_counts_the_frames_ffmpeg_decodes(videos, tmp_path) -> None:
    for kind in ("mp4", "avi", "mkv"):
        data = videos[kind].read_bytes()
        cut = tmp_path / f"cut.{kind}"
        cut.write_bytes(data[: len(data) * 2 // 3])
        store = open_store(cut)
        try:
            expected = len(read_video(cut))
        except Exception:  # ffmpeg cannot read it either
            with pytest.raises(FrameStoreError, match=str(cut)):
                store.num_frames()
            continue
        assert store.num_frames() == expected
        assert store.read(range(expected)).shape[0] == expected


def _read_in_child(store) -> np.ndarray:
    return store.read([4, 5, 6])


def test_store_pickles_and_works_after_fork(videos) -> None:
    store = open_store(videos["mp4"])
    before = store.read([4, 5, 6])  # the parent holds an open reader now
    copy = pickle.loads(pickle.dumps(store))
    assert np.array_equal(copy.read([4, 5, 6]), before)
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert np.array_equal(pool.apply(_read_in_child, (store,)), before)
    assert np.array_equal(store.read([4, 5, 6]), before)


def test_bad_files_are_named(tmp_path, videos) -> None:
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video at all" * 10)
    with pytest.raises(FrameStoreError, match=f"{garbage}: cannot open the video"):
        open_store(garbage).num_frames()
    empty = make_zero_frame_video(tmp_path / "empty.avi")
    with pytest.raises(FrameStoreError, match=f"{empty}: no video frame"):
        open_store(empty).num_frames()
    with pytest.raises(FrameStoreError, match="prepare --flow"):
        open_store(videos["mp4"]).read([0], "u")
    with pytest.raises(FrameStoreError, match="no encoded frame images"):
        open_store(videos["mp4"]).read_encoded([0])


def test_dataset_skips_and_counts_a_bad_video(tmp_path, videos) -> None:
    garbage = tmp_path / "b" / "broken.mp4"
    garbage.parent.mkdir()
    garbage.write_bytes(b"\x00" * 500)
    records = [VideoRecord(garbage, 0, "b/broken"), VideoRecord(videos["mp4"], 1, "a/clip")]
    dataset = VideoClipDataset(records, clip_length=4, mode="train", skip_bad=True)
    _, label, video = dataset[0]
    assert (label, video) == (1, 1) and dataset.bad_reads == 1
    strict = VideoClipDataset(records, clip_length=4, mode="train")
    with pytest.raises(Exception, match=str(garbage)):
        strict[0]


def test_a_mostly_missing_file_is_refused_by_both_readers(videos, tmp_path) -> None:
    whole = tmp_path / "faststart.mp4"  # the frame count is at the front, the frames cut off
    _ffmpeg("-i", str(videos["mp4"]), "-c", "copy", "-movflags", "+faststart", str(whole))
    data = whole.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # 9 of 36 frames decode (ffmpeg: the same)
    with pytest.raises(FrameStoreError, match=f"{cut}: truncated, decoded"):
        open_store(cut).num_frames()
    outcome = prepare_video(Job(cut, tmp_path / "prepared" / "cut", "cut.mp4"), OPTIONS)
    assert outcome.status == "failed" and "truncated" in outcome.reason


def _collect_garbage(worker_id: int) -> None:
    gc.collect()


def test_dataloader_workers_fork_after_the_parent_read(videos) -> None:
    from torch.utils.data import DataLoader

    records = [VideoRecord(videos[k], i, k) for i, k in enumerate(("mp4", "avi", "webm", "mkv"))]
    dataset = VideoClipDataset(records, clip_length=4, mode="center")
    # A garbage collection in each worker frees whatever parent garbage it inherited.
    loader = DataLoader(dataset, batch_size=2, num_workers=2, multiprocessing_context="fork",
                        worker_init_fn=_collect_garbage)  # fmt: skip
    gc.disable()  # what the parent leaves as garbage is inherited by the workers
    try:
        for path in videos.values():  # more files than MAX_OPEN_READERS: readers evicted
            open_store(path).read([0, 30])
        first = dataset[0][0]  # the parent holds open readers with decoder threads
        batches = list(loader)
    finally:
        gc.enable()
    assert [tuple(b[2].tolist()) for b in batches] == [(0, 1), (2, 3)]
    assert (batches[0][0][0] - first).abs().max() == 0
