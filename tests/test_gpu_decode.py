"""The loader's batch paths: uint8 clips finished per batch, and the device path (JPEG bytes
decoded and augmented per batch; run with device="cpu" here, on CUDA where there is one)."""

import argparse
import logging

import numpy as np
import pytest
import torch

from data.video import gpu_decode
from data.video.dataset import VideoClipDataset
from data.video.framestore import FrameDBWriter, FrameStore, encode_image
from data.video.splits import VideoRecord
from data.video.stores import open_store
from data.video.transforms import ClipEvalPreset, ClipTrainPreset
from tests.conftest import requires_cuda
from tests.video_fixtures import make_flow, make_framedb, make_tao_folder
from train.distributed import DistInfo
from train.loaders import FinishedBatches, build_eval_loader, build_train_loader

H, W = 48, 64


def smooth_frames(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, size=(n, H // 8, W // 8, 3)).astype(np.float32)
    return np.stack([np.asarray(__import__("cv2").resize(f, (W, H)), np.uint8) for f in coarse])


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpu_videos")
    records = []
    for i in range(3):
        u, v = make_flow(7, H, W, seed=10 + i), make_flow(7, H, W, seed=20 + i)
        make_framedb(root / f"db{i}", smooth_frames(8, i), u=u, v=v)
        records.append(VideoRecord(root / f"db{i}", label=i, name=f"db{i}"))
    return records


def dataset(records, deliver, **kwargs):
    preset = kwargs.pop("transform", None) or ClipTrainPreset(crop_size=16, short_side=20)
    return VideoClipDataset(records, clip_length=4, transform=preset, deliver=deliver, **kwargs)


def finished(ds, indices, seed=0):
    torch.manual_seed(seed)
    items = [ds[i] for i in indices]
    batch = (ds.collate_fn or torch.utils.data.default_collate)(items)
    if ds.batch_finisher is None:
        return batch, []
    return ds.batch_finisher.finish_batch(batch, "cpu")


@pytest.mark.parametrize("modality", ["rgb", "flow", "joint"])
@pytest.mark.parametrize("input_dims", [3, 2])
def test_the_three_deliveries_agree(videos, modality, input_dims):
    outputs = {}
    for deliver in ("float", "uint8", "encoded"):
        ds = dataset(videos, deliver, modality=modality, input_dims=input_dims, exact_decode=True)
        (inputs, targets, ids), dropped = finished(ds, [0, 1, 2, 1])
        assert not dropped and targets.tolist() == [0, 1, 2, 1] and ids.tolist() == [0, 1, 2, 1]
        outputs[deliver] = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    for a, b in zip(outputs["float"], outputs["uint8"]):
        torch.testing.assert_close(a, b)  # same draws, same kernels: equal
    for a, b in zip(outputs["float"], outputs["encoded"]):
        assert a.shape == b.shape
        assert (a - b).abs().max() < 2.5 / 255 / 0.225  # the same filter in float: rounding


def test_uint8_items_are_small_and_photometric_presets_finish_in_workers(videos):
    item = dataset(videos, "uint8")[0][0]
    assert item.dtype == torch.uint8 and item.shape == (3, 4, 16, 16) and item.is_contiguous()
    srtg = dataset(
        videos, "uint8", transform=ClipTrainPreset(crop_size=16, short_side=20, srtg=True)
    )
    assert srtg.deliver == "float" and srtg.batch_finisher is None


def test_default_decode_is_scaled_and_exact_decode_is_full_size(videos, monkeypatch):
    seen = []
    original = FrameStore.read

    def spy(self, indices, stream="rgb", *, min_short_side=None):
        seen.append(min_short_side)
        return original(self, indices, stream, min_short_side=min_short_side)

    monkeypatch.setattr(FrameStore, "read", spy)
    # the whole frame squashed to 16 x 16: both sides must stay >= 16, so 48 x 64 -> 24 x 32
    preset = ClipEvalPreset(crop_size=16, short_side=20, center_crop=False)
    clip = dataset(videos, "float", mode="center", transform=preset)[0][0]
    exact = dataset(videos, "float", mode="center", transform=preset, exact_decode=True)[0][0]
    assert seen == [16, None]
    assert clip.shape == exact.shape
    assert (clip - exact).abs().mean() < 2 / 255 / 0.225  # DCT scaling ~ an area resize
    seen.clear()
    dataset(videos, "float")[(0, (4, 8, 8))]  # multigrid: half the crop, half the short side
    assert seen == [10]


def corrupt_store(root, name, bad_frame=2):
    frames = smooth_frames(6, 7)
    with FrameDBWriter(root / name) as writer:
        for k, frame in enumerate(frames):
            data = encode_image(frame)
            writer.add_encoded("rgb", data[: len(data) // 3] if k == bad_frame else data, W, H)
    return VideoRecord(root / name, label=5, name=name)


def test_device_path_names_an_undecodable_frame_and_skips_the_clip(videos, tmp_path, caplog):
    bad = corrupt_store(tmp_path, "broken")
    ds = dataset([*videos, bad], "encoded", mode="center")
    with caplog.at_level(logging.WARNING):
        (inputs, targets, ids), dropped = finished(ds, [0, 3, 1])
    assert inputs.shape[0] == 2 and targets.tolist() == [0, 1] and ids.tolist() == [0, 1]
    assert len(dropped) == 1 and dropped[0][0] == 3 and "broken" in dropped[0][1]
    assert ds.batch_finisher.skipped == 1
    assert "broken" in caplog.text and "frame 2" in caplog.text


def test_device_failure_falls_back_to_the_cpu_decoder(videos, monkeypatch, caplog):
    ds = dataset(videos, "encoded", mode="center")
    expected, _ = finished(ds, [0, 1])

    def failing(data, device, gray):
        raise RuntimeError("nvjpeg: unsupported")

    monkeypatch.setattr(gpu_decode, "_decode_jpegs", failing)
    with caplog.at_level(logging.WARNING):
        (inputs, _, _), dropped = finished(ds, [0, 1])
    assert not dropped and ds.batch_finisher.skipped == 0
    torch.testing.assert_close(inputs, expected[0], atol=1e-3, rtol=0)  # cv2 vs torchvision
    assert "failed to decode on cpu" in caplog.text and "rgb frame 2" in caplog.text  # 1st


class SelfDecodingStore(FrameStore):
    """A store without encoded frames (as raw video files): the device path must use read()."""

    encoded = False
    kind = "test"

    def __init__(self, path):
        super().__init__(path)
        self.inner = open_store(path)

    def num_frames(self, stream="rgb"):
        return self.inner.num_frames(stream)

    def read(self, indices, stream="rgb", *, min_short_side=None):
        return self.inner.read(indices, stream)

    def read_encoded(self, indices, stream="rgb"):
        raise AssertionError("read_encoded on a store with encoded=False")


def test_stores_without_jpeg_bytes_are_decoded_in_the_worker(videos, tmp_path):
    class Raw(VideoClipDataset):
        def open_video(self, video):
            return SelfDecodingStore(self.records[video].path)

    preset = ClipEvalPreset(crop_size=16, short_side=20)
    kwargs = {"clip_length": 4, "mode": "center", "transform": preset}
    raw = Raw(videos, deliver="encoded", **kwargs)
    assert raw[0][0].streams[0].frames is not None
    png = make_tao_folder(tmp_path / "png", smooth_frames(8, 0))
    png_item = VideoClipDataset([VideoRecord(png, 0, "png")], deliver="encoded", **kwargs)[0][0]
    assert png_item.streams[0].frames is not None  # PNG: decoded in the worker
    (inputs, _, _), _ = finished(raw, [0, 1])
    (reference, _, _), _ = finished(VideoClipDataset(videos, deliver="encoded", **kwargs), [0, 1])
    torch.testing.assert_close(inputs, reference, atol=0.05, rtol=0)


def loader_args(**overrides):
    values = {"workers": 0, "random_seed": 0, "batch_size": 2, "eval_batch_size": None}
    return argparse.Namespace(**{**values, **overrides})


def test_loaders_finish_batches_in_the_main_process(videos, tmp_path):
    info = DistInfo(0, 1, 0, torch.device("cpu"))
    train = build_train_loader(dataset(videos, "uint8"), loader_args(), info)
    assert isinstance(train, FinishedBatches) and len(train) == 1  # 3 clips: a lone one dropped
    batches = list(train)
    assert batches[0][0].dtype == torch.float32 and batches[0][0].shape == (2, 3, 4, 16, 16)
    assert train.sampler is train.loader.sampler  # the engine re-seeds through these
    bad = corrupt_store(tmp_path, "broken")
    evaluation = build_eval_loader(
        dataset([*videos, bad], "encoded", mode="center"), loader_args(batch_size=4), info
    )
    (_, _, ids), excluded = next(iter(evaluation))
    assert ids.tolist() == [0, 1, 2] and [e.sample_id for e in excluded] == [3]
    assert (
        build_train_loader(dataset(videos, "float"), loader_args(), info).__class__.__name__
        == "DataLoader"
    )


@requires_cuda
def test_device_path_on_cuda_matches_cpu(videos):
    ds = dataset(videos, "encoded", modality="joint")
    torch.manual_seed(0)
    batch = ds.collate_fn([ds[i] for i in range(3)])
    (cpu, _, _), _ = ds.batch_finisher.finish_batch(batch, "cpu")
    (cuda, _, _), _ = ds.batch_finisher.finish_batch(batch, "cuda")
    for a, b in zip(cpu, cuda):
        assert b.device.type == "cuda"
        assert (a - b.cpu()).abs().mean() < 0.02  # nvJPEG's IDCT differs slightly
