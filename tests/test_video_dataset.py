"""VideoClipDataset: which frames each mode reads, output layouts, multigrid shapes, bad videos,
DataLoader workers over SQLite stores."""

import logging

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from data.video.dataset import VideoClipDataset, VideoReadError
from data.video.splits import VideoRecord
from data.video.stores import open_store
from data.video.transforms import ClipEvalPreset, ClipTrainPreset
from safeio.excluded import ExcludedItem, ExcludingCollate
from tests.video_fixtures import make_flow, make_framedb, make_frames, make_tao_folder

N = 12  # RGB frames per video; flow has N - 1


def raw(*clips, size=None):
    """Identity transform: the uint8 (T, C, H, W) clips as read."""
    return clips if len(clips) > 1 else clips[0]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    records = []
    for i in range(3):
        frames = make_frames(N, 32, 40, seed=i)
        u, v = make_flow(N - 1, 32, 40, seed=10 + i), make_flow(N - 1, 32, 40, seed=20 + i)
        make_framedb(root / f"db{i}", frames, u=u, v=v)
        records.append(VideoRecord(root / f"db{i}", label=i, name=f"c{i}/db{i}"))
    return records


def expected(record, indices, stream="rgb"):
    store = open_store(record.path)
    if stream == "rgb":
        return torch.from_numpy(store.read(indices, "rgb")).permute(0, 3, 1, 2)
    return torch.from_numpy(np.stack((store.read(indices, "u"), store.read(indices, "v")), 1))


def test_center_mode_reads_the_tao_centre_clip(videos):
    data = VideoClipDataset(videos, clip_length=4, sample_rate=2, mode="center", transform=raw)
    assert len(data) == 3
    clip, target, sample_id = data[1]
    # start = int((12 - 8 + 1) / 2) = 2
    assert torch.equal(clip, expected(videos[1], [2, 4, 6, 8]))
    assert (target, sample_id) == (1, 1)


def test_conv_mode_one_item_per_segment(videos):
    data = VideoClipDataset(videos, clip_length=4, mode="conv", num_segments=3, transform=raw)
    assert len(data) == 9
    # tick = (12 - 4 + 1) / 3 = 3 -> starts 1, 4, 7
    for k, start in enumerate([1, 4, 7]):
        clip, target, sample_id = data[3 * 2 + k]
        assert torch.equal(clip, expected(videos[2], range(start, start + 4)))
        assert (target, sample_id) == (2, 2)


def test_random_interval_center_middles(videos):
    data = VideoClipDataset(
        videos, clip_length=4, strategy="random_interval", mode="center", transform=raw
    )
    # int(3/2 + 3·x) = 1, 4, 7, 10
    assert torch.equal(data[0][0], expected(videos[0], [1, 4, 7, 10]))


def test_train_mode_length_and_ids(videos):
    data = VideoClipDataset(videos, clip_length=4, clips_per_video=2, transform=raw)
    assert len(data) == 6
    assert [data[i][2] for i in range(6)] == [0, 0, 1, 1, 2, 2]
    assert [data[i][1] for i in range(6)] == [0, 0, 1, 1, 2, 2]


def test_short_video_loops(videos):
    data = VideoClipDataset(videos, clip_length=16, mode="center", transform=raw)
    assert torch.equal(data[0][0], expected(videos[0], [*range(12), 0, 1, 2, 3]))


def test_flow_and_joint_are_aligned_in_time(videos):
    flow = VideoClipDataset(videos, modality="flow", clip_length=4, mode="center", transform=raw)
    # flow has 11 frames: start int((11 - 4 + 1) / 2) = 4
    assert torch.equal(flow[0][0], expected(videos[0], [4, 5, 6, 7], "flow"))
    joint = VideoClipDataset(
        videos, modality="joint", clip_length=2, flow_clip_length=4, mode="center", transform=raw
    )
    rgb, of = joint[0][0]
    # the longer (flow) clip is sampled over the 11 common frames, RGB is its centred sub-window
    assert torch.equal(of, expected(videos[0], [4, 5, 6, 7], "flow"))
    assert torch.equal(rgb, expected(videos[0], [5, 6]))


@pytest.mark.parametrize(
    ("modality", "input_dims", "shapes"),
    [
        ("rgb", 3, [(3, 4, 16, 16)]),
        ("rgb", 2, [(12, 16, 16)]),
        ("flow", 3, [(2, 4, 16, 16)]),
        ("flow", 2, [(8, 16, 16)]),
        ("joint", 3, [(3, 4, 16, 16), (2, 4, 16, 16)]),
        ("joint", 2, [(12, 16, 16), (8, 16, 16)]),
    ],
)
def test_output_shapes(videos, modality, input_dims, shapes):
    preset = ClipTrainPreset(crop_size=16, short_side=20, srtg=True)
    data = VideoClipDataset(
        videos, modality=modality, clip_length=4, input_dims=input_dims, transform=preset
    )
    inputs, _, _ = data[0]
    inputs = inputs if isinstance(inputs, tuple) else (inputs,)
    assert [tuple(x.shape) for x in inputs] == shapes
    assert all(x.dtype == torch.float32 for x in inputs)


def test_2d_stacking_is_channel_major(videos):
    preset = ClipEvalPreset(crop_size=16, short_side=20)
    kwargs = {"clip_length": 4, "mode": "center", "transform": preset}
    clip3d = VideoClipDataset(videos, **kwargs)[0][0]
    clip2d = VideoClipDataset(videos, input_dims=2, **kwargs)[0][0]
    for c in range(3):
        for t in range(4):
            assert torch.equal(clip2d[c * 4 + t], clip3d[c, t])


def test_index_with_shape_scales_rate_and_size(videos):
    data = VideoClipDataset(videos, clip_length=4, mode="center", transform=raw)
    # T = 2 -> rate 1 · 4 // 2 = 2 -> start int((12 - 4 + 1) / 2) = 4
    assert torch.equal(data[(0, (2, 32, 40))][0], expected(videos[0], [4, 6]))
    shaped = VideoClipDataset(
        videos, clip_length=4, mode="center", transform=ClipEvalPreset(crop_size=16, short_side=20)
    )
    inputs, target, sample_id = shaped[(2, (2, 8, 8))]
    assert inputs.shape == (3, 2, 8, 8) and (target, sample_id) == (2, 2)


def test_other_layouts_and_inference_labels(tmp_path):
    frames = make_frames(N, 32, 40, seed=5)
    legacy = make_framedb(tmp_path / "legacy", frames, legacy=True)
    tao = make_tao_folder(
        tmp_path / "tao", frames, u=make_flow(N - 1, 32, 40), v=make_flow(N - 1, 32, 40, seed=2)
    )
    records = [VideoRecord(legacy, -1, "legacy"), VideoRecord(tao, -1, "tao")]
    data = VideoClipDataset(records, clip_length=4, mode="center", transform=raw)
    for i in range(2):
        clip, target, _ = data[i]
        assert clip.shape == (4, 3, 32, 40) and target == -1
    # JPEG in the DB vs PNG in the folders: the same frames up to compression, in the same order
    jpeg, png = data[0][0].float(), data[1][0].float()
    assert (jpeg - png).abs().mean() < 6 < (jpeg - png.flip(0)).abs().mean()
    flow = VideoClipDataset(records[1:], modality="flow", clip_length=4, transform=raw)
    assert flow[0][0].shape == (4, 2, 32, 40)


def test_bad_video_raises_with_path_or_is_substituted_in_training(videos, tmp_path, caplog):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "frames.db").write_bytes(b"this is not a database")
    records = [videos[0], VideoRecord(broken, 7, "x/broken"), videos[2]]
    strict = VideoClipDataset(records, clip_length=4, mode="center", transform=raw)
    with pytest.raises(VideoReadError, match="broken"):
        strict[1]
    lenient = VideoClipDataset(records, clip_length=4, transform=raw, skip_bad=True)
    with caplog.at_level(logging.WARNING):
        clip, target, sample_id = lenient[1]
    assert (target, sample_id) == (2, 2)  # training: the next video, with its own label and id
    assert clip.shape == (4, 3, 32, 40)
    assert lenient.bad_reads == 1 and "broken" in caplog.text
    # Evaluation never substitutes: the item is excluded, named and counted.
    center = VideoClipDataset(records, clip_length=4, mode="center", transform=raw, skip_bad=True)
    assert torch.equal(center[2][0], expected(videos[2], range(4, 8)))
    excluded = center[1]
    assert isinstance(excluded, ExcludedItem)
    assert (excluded.sample_id, excluded.name) == (1, "x/broken")
    assert "broken" in excluded.reason and center.bad_reads == 1


def test_flow_modality_without_flow_is_a_clear_error(tmp_path):
    make_framedb(tmp_path / "rgbonly", make_frames(6, 16, 16))
    data = VideoClipDataset(
        [VideoRecord(tmp_path / "rgbonly", 0, "a")], modality="flow", clip_length=2
    )
    with pytest.raises(VideoReadError, match=r"rgbonly.*no flow frames"):
        data[0]


def test_bad_arguments(videos):
    with pytest.raises(ValueError, match="modality"):
        VideoClipDataset(videos, modality="depth", clip_length=4)
    with pytest.raises(ValueError, match="mode"):
        VideoClipDataset(videos, mode="all", clip_length=4)
    with pytest.raises(ValueError, match="at least one"):
        VideoClipDataset([], clip_length=4)
    with pytest.raises(IndexError):
        VideoClipDataset(videos, clip_length=4, mode="center")[3]
    with pytest.raises(ValueError, match="input_dims=2"):
        VideoClipDataset(videos, clip_length=4, input_dims=2, transform=raw)[0]


def test_dataloader_workers_over_sqlite(videos, tmp_path):
    broken = VideoRecord(tmp_path / "missing", 0, "x/missing")
    records = [*videos, broken]
    center = VideoClipDataset(records, clip_length=4, mode="center", transform=raw, skip_bad=True)
    loader = DataLoader(center, batch_size=2, num_workers=2, collate_fn=ExcludingCollate())
    batches = list(loader)
    in_process = [center[i][0] for i in range(len(videos))]
    assert torch.equal(torch.cat([b[0][0] for b in batches]), torch.stack(in_process))
    assert [e.sample_id for b in batches for e in b[1]] == [len(videos)]
    assert center.bad_reads == 1  # counted inside a worker, seen here

    train = VideoClipDataset(videos[:1], clip_length=4, clips_per_video=8, transform=raw)
    torch.manual_seed(0)
    first, second = list(DataLoader(train, batch_size=4, num_workers=2))
    # worker 0 made the first batch, worker 1 the second: different random streams
    assert not torch.equal(first[0], second[0])
    torch.manual_seed(0)
    again = list(DataLoader(train, batch_size=4, num_workers=2))
    assert torch.equal(again[0][0], first[0])  # and reproducible from the seed
