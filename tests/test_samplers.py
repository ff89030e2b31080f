"""Every sampler against indices computed by hand (TAO worked examples, shared/reference/video.md)."""

import numpy as np
import pytest

from data.video import samplers


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_conv_starts_tao_worked_examples():
    assert samplers.conv_starts(128, 32, 1, 10) == [4, 14, 24, 33, 43, 53, 63, 72, 82, 92]
    assert samplers.conv_starts(40, 32, 1, 10) == [0, 1, 2, 3, 4, 4, 5, 6, 7, 8]


def test_conv_short_video_has_one_looping_start():
    # N <= T·r - 1: one start, 0, and the clip wraps around the video
    assert samplers.conv_starts(31, 32, 1, 10) == [0]
    clip = samplers.conv_clip(10, 4, 3, 10, segment=7)
    assert clip.tolist() == [0, 3, 6, 9]
    clip = samplers.conv_clip(5, 4, 2, 3, segment=2)
    assert clip.tolist() == [0, 2, 4, 1]


def test_conv_clip_uses_sample_rate():
    # N=100, T=8, r=2 -> tick = (100-16+1)/5 = 17 -> starts 8, 25, 42, 59, 76
    assert samplers.conv_starts(100, 8, 2, 5) == [8, 25, 42, 59, 76]
    assert samplers.conv_clip(100, 8, 2, 5, segment=1).tolist() == list(range(25, 41, 2))


def test_center_tao_worked_example():
    assert samplers.consecutive_center(128, 32, 1).tolist() == list(range(48, 80))


def test_center_with_rate_and_short_video():
    # N=50, T=8, r=3: start = int((50-24+1)/2) = 13
    assert samplers.consecutive_center(50, 8, 3).tolist() == [13, 16, 19, 22, 25, 28, 31, 34]
    # N=5, T=8: start would be negative -> 0, then loop
    assert samplers.consecutive_center(5, 8, 1).tolist() == [0, 1, 2, 3, 4, 0, 1, 2]


def test_consecutive_train_start_range_is_inclusive_and_never_wraps():
    # N=10, T=4, r=2: starts 0..2 inclusive; TAO's bug 31 also allowed 3 -> last index 9 wraps
    starts = set()
    generator = rng(1)
    for _ in range(300):
        clip = samplers.consecutive_train(10, 4, 2, generator)
        assert clip.tolist() == list(range(clip[0], clip[0] + 8, 2))
        starts.add(int(clip[0]))
    assert starts == {0, 1, 2}


def test_consecutive_train_loops_short_videos():
    clip = samplers.consecutive_train(3, 7, 1, rng())
    assert clip.tolist() == [0, 1, 2, 0, 1, 2, 0]


def test_random_interval_test_tao_worked_example():
    assert samplers.random_interval_test(128, 32).tolist() == list(range(2, 128, 4))
    # N=10, T=4: step 2.5 -> int(1.25), int(3.75), int(6.25), int(8.75)
    assert samplers.random_interval_test(10, 4).tolist() == [1, 3, 6, 8]


def test_random_interval_train_one_frame_per_segment():
    generator = rng(2)
    seen = np.zeros((4, 3), dtype=bool)
    for _ in range(200):
        clip = samplers.random_interval_train(13, 4, generator)  # segments of 13 // 4 = 3 frames
        segments = clip // 3
        assert segments.tolist() == [0, 1, 2, 3]
        seen[np.arange(4), clip % 3] = True
    assert seen.all()  # every frame of every segment is reachable


def test_random_interval_train_short_video_sorted_repeats():
    clip = samplers.random_interval_train(3, 8, rng(3))
    assert len(clip) == 8
    assert (np.diff(clip) >= 0).all()
    assert clip.min() >= 0 and clip.max() <= 2


def test_random_interval_conv_interleaved():
    # N=40, T=8 -> segment 5; S=5 phases int(5/5*(k+0.5)) = 0,1,2,3,4
    for k in range(5):
        assert samplers.random_interval_conv(40, 8, 5, k).tolist() == list(range(k, 40, 5))


def test_sample_indices_dispatch():
    assert samplers.sample_indices(128, clip_length=32, mode="center").tolist() == list(
        range(48, 80)
    )
    clip = samplers.sample_indices(128, clip_length=32, mode="conv", segment=3)
    assert clip[0] == 33
    clip = samplers.sample_indices(128, clip_length=32, strategy="random_interval", mode="center")
    assert clip[:3].tolist() == [2, 6, 10]
    with pytest.raises(ValueError, match="Generator"):
        samplers.sample_indices(128, clip_length=32, mode="train")
    with pytest.raises(ValueError, match="unknown sampling"):
        samplers.sample_indices(128, clip_length=32, mode="all")


def test_joint_consecutive_centred_subwindow():
    long = samplers.consecutive_center(128, 10, 2)  # start int(109/2) = 54
    assert long.tolist() == list(range(54, 74, 2))
    short = samplers.joint_indices(long, 3, strategy="consecutive", train=True)
    assert short.tolist() == [60, 62, 64]  # offset (10-3)//2 = 3


def test_joint_random_interval_inside_segments():
    long = samplers.random_interval_test(127, 10)
    short = samplers.joint_indices(long, 3, strategy="random_interval", train=False)
    assert short.tolist() == long[[1, 5, 8]].tolist()  # middles int(5/3 + 10/3·x) = 1, 5, 8
    generator = rng(4)
    for _ in range(50):
        short = samplers.joint_indices(
            long, 3, strategy="random_interval", train=True, rng=generator
        )
        positions = [long.tolist().index(i) for i in short]
        assert [p // 3 for p in positions] == [0, 1, 2]


def test_joint_short_longer_than_long_is_an_error():
    with pytest.raises(ValueError, match="longer"):
        samplers.joint_indices(np.arange(3), 5, strategy="consecutive", train=False)


def test_split_item_index():
    assert samplers.split_item_index(7, 3) == (2, 1)
    assert samplers.split_item_index(0, 10) == (0, 0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least one frame"):
        samplers.consecutive_center(0, 4, 1)
    with pytest.raises(ValueError, match="clip_length"):
        samplers.consecutive_center(10, 0, 1)


def test_worker_generator_follows_torch_seed():
    import torch

    torch.manual_seed(11)
    a = samplers.worker_generator().integers(0, 1 << 30, size=4)
    torch.manual_seed(11)
    b = samplers.worker_generator().integers(0, 1 << 30, size=4)
    torch.manual_seed(12)
    c = samplers.worker_generator().integers(0, 1 << 30, size=4)
    assert a.tolist() == b.tolist() != c.tolist()
