"""Augmentation presets: one draw per clip, shared by its frames and streams; flow flip negates u."""

import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from data.video import transforms as T
from tests.conftest import requires_cuda

ALL_ON = T.SRTGAugment(p_clip=1.0, p_op=1.0)


def still_clip(
    frames: int = 4, channels: int = 3, height: int = 40, width: int = 52, seed: int = 0
):
    """A clip whose frames are all the same random image: any per-frame draw would show."""
    generator = torch.Generator().manual_seed(seed)
    image = torch.randint(
        0, 256, (1, channels, height, width), dtype=torch.uint8, generator=generator
    )
    return image.expand(frames, -1, -1, -1).contiguous()


def frames_identical(clip_cthw: torch.Tensor) -> bool:
    return all(torch.equal(clip_cthw[:, t], clip_cthw[:, 0]) for t in range(clip_cthw.shape[1]))


def test_v2_transforms_share_parameters_across_frames():
    # the claim the presets rely on: v2 treats the T dimension of (T, C, H, W) as a batch
    clip = still_clip()
    pipeline = v2.Compose(
        [v2.RandomResizedCrop(24), v2.RandomHorizontalFlip(), v2.ColorJitter(0.4, 0.4, 0.4, 0.1)]
    )
    for seed in range(5):
        torch.manual_seed(seed)
        out = pipeline(tv_tensors.Video(clip))
        assert all(torch.equal(out[t], out[0]) for t in range(len(out)))


@pytest.mark.parametrize("crop_type", sorted(T.CROP_TYPES))
def test_train_preset_identical_across_frames_different_across_clips(crop_type):
    preset = T.ClipTrainPreset(crop_size=24, short_side=32, crop_type=crop_type, srtg=ALL_ON)
    clip = still_clip()
    outputs = []
    for seed in range(4):
        torch.manual_seed(seed)
        out = preset(clip)
        assert out.shape == (3, 4, 24, 24) and out.dtype == torch.float32
        assert frames_identical(out)
        outputs.append(out)
    assert all(not torch.equal(outputs[0], other) for other in outputs[1:])


@pytest.mark.parametrize("op", T.SRTG_OPS, ids=lambda op: op.__name__)
def test_each_srtg_op_is_one_draw_per_clip_and_changes_it(op):
    clip = still_clip(height=32, width=32).float() / 255
    torch.manual_seed(0)
    out = op(clip)
    assert out.shape == clip.shape
    assert all(torch.equal(out[t], out[0]) for t in range(len(out)))
    assert not torch.allclose(out, clip)


def test_srtg_probabilities():
    clip = still_clip(height=16, width=16).float() / 255
    assert torch.equal(T.SRTGAugment(p_clip=0.0)(clip.clone()), clip)
    assert torch.equal(T.SRTGAugment(p_clip=1.0, p_op=0.0)(clip.clone()), clip)
    calls = {"a": 0, "b": 0}

    def counting(name):
        def op(c):
            calls[name] += 1
            return c

        return op

    torch.manual_seed(0)
    augment = T.SRTGAugment(ops=(counting("a"), counting("b")))
    for _ in range(2000):
        augment(clip)
    # each op runs with p = 0.8 · 0.4 = 0.32 per clip
    assert 560 < calls["a"] < 720 and 560 < calls["b"] < 720


def test_hflip_clip_negates_flow_u_only():
    flow = still_clip(channels=2, seed=1)
    flipped = T.hflip_clip(flow, "flow")
    assert torch.equal(flipped[:, 0], 255 - flow[:, 0].flip(-1))
    assert torch.equal(flipped[:, 1], flow[:, 1].flip(-1))
    rgb = still_clip(seed=2)
    assert torch.equal(T.hflip_clip(rgb, "rgb"), rgb.flip(-1))


def test_flow_flip_is_negation_after_normalisation():
    flow = still_clip(channels=2, height=24, width=24, seed=3)
    keep = T.ClipTrainPreset(crop_size=24, short_side=24, crop_type="no_crop", hflip_prob=0.0)
    flip = T.ClipTrainPreset(crop_size=24, short_side=24, crop_type="no_crop", hflip_prob=1.0)
    plain, mirrored = keep(flow), flip(flow)
    torch.testing.assert_close(mirrored[0], -plain[0].flip(-1))
    torch.testing.assert_close(mirrored[1], plain[1].flip(-1))


def test_joint_streams_share_crop_and_flip():
    base = still_clip(channels=1, height=40, width=60, seed=4)
    rgb, flow = base.expand(-1, 3, -1, -1), base.expand(-1, 2, -1, -1)
    preset = T.ClipTrainPreset(
        crop_size=16, short_side=20, crop_type="multi_scale_crop", rgb_mean=(0.5,), rgb_std=(0.5,)
    )
    flips = set()
    for seed in range(12):
        torch.manual_seed(seed)
        rgb_out, flow_out = preset(rgb, flow)
        assert rgb_out.shape == (3, 4, 16, 16) and flow_out.shape == (2, 4, 16, 16)
        torch.testing.assert_close(flow_out[1], rgb_out[0])  # v is never negated
        negated = torch.allclose(flow_out[0], -rgb_out[0], atol=1e-6)
        assert negated or torch.allclose(flow_out[0], rgb_out[0], atol=1e-6)
        flips.add(negated)
    assert flips == {True, False}


def test_streams_of_different_size_are_rejected():
    with pytest.raises(ValueError, match="differ in size"):
        T.ClipEvalPreset(crop_size=8, short_side=8)(still_clip(), still_clip(channels=2, width=30))


def test_multi_scale_crop_uses_the_13_offsets_and_snaps():
    seen = set()
    torch.manual_seed(0)
    for _ in range(400):
        box = T.multi_scale_crop_box(128, 128, (112, 112), 128, scales=(0.5,))
        assert box[2:] == (64, 64)
        seen.add(box[:2])
    assert seen == {(oy * 16, ox * 16) for ox, oy in T.CROP_OFFSETS}
    # int(128 · 0.86) = 110 is within 3 px of 112: snapped
    assert T.multi_scale_crop_box(128, 128, (112, 112), 128, scales=(0.86,))[2:] == (112, 112)


def test_random_and_center_crop_boxes_follow_the_short_side():
    torch.manual_seed(0)
    for _ in range(50):
        top, left, h, w = T.random_crop_box(256, 340, (112, 112), 128, ())
        assert (h, w) == (224, 224)  # 112 px of a 128-short-side frame, in source pixels
        assert 0 <= top <= 256 - 224 and 0 <= left <= 340 - 224
    assert T.center_crop_box(128, 170, (112, 112), 128) == (8, 29, 112, 112)
    assert T.full_frame_box(128, 170, (112, 112), 128) == (0, 0, 128, 170)


def test_eval_preset_is_deterministic_and_normalises():
    gray = torch.full((2, 3, 30, 40), 128, dtype=torch.uint8)
    out = T.ClipEvalPreset(crop_size=None)(gray)
    expected = (128 / 255 - torch.tensor(T.IMAGENET_MEAN)) / torch.tensor(T.IMAGENET_STD)
    torch.testing.assert_close(out[:, 0, 0, 0], expected)
    preset = T.ClipEvalPreset(crop_size=16, short_side=20)
    clip = still_clip(seed=5)
    assert torch.equal(preset(clip), preset(clip))
    assert T.ClipEvalPreset(crop_size=16, short_side=20, center_crop=False)(clip).shape[-2:] == (
        16,
        16,
    )


def test_size_override_keeps_field_of_view():
    preset = T.ClipEvalPreset(crop_size=32, short_side=40)
    clip = still_clip(height=80, width=80, seed=6)
    big, small = preset(clip), preset(clip, size=(16, 16))
    assert small.shape == (3, 4, 16, 16)
    # same region of the frame at half the resolution
    half = torch.nn.functional.avg_pool2d(big, 2)
    assert (half - small).abs().mean() < 0.1


def test_bad_preset_arguments():
    with pytest.raises(ValueError, match="crop_type"):
        T.ClipTrainPreset(crop_type="zoom")
    with pytest.raises(ValueError, match="short_side"):
        T.ClipTrainPreset(crop_size=112, short_side=100)
    with pytest.raises(ValueError, match=r"C = 3 or 2"):
        T.ClipEvalPreset(crop_size=None)(torch.zeros(2, 4, 8, 8, dtype=torch.uint8))


def test_batch_augment_one_draw_per_clip_and_2d_stacking():
    clip = still_clip(height=32, width=44)
    batch = torch.stack([clip, clip, clip])
    preset = T.ClipTrainPreset(crop_size=16, short_side=20, srtg=ALL_ON)
    torch.manual_seed(0)
    out = T.BatchAugment(preset)(batch)
    assert out.shape == (3, 3, 4, 16, 16)
    assert all(frames_identical(c) for c in out)
    assert not torch.equal(out[0], out[1]) and not torch.equal(out[1], out[2])
    eval_preset = T.ClipEvalPreset(crop_size=16, short_side=20)
    out3d = T.BatchAugment(eval_preset)(batch)
    out2d = T.BatchAugment(eval_preset, input_dims=2)(batch)
    assert out2d.shape == (3, 12, 16, 16)
    for c in range(3):
        for t in range(4):
            assert torch.equal(out2d[:, c * 4 + t], out3d[:, c, t])  # channel-major


def test_batch_augment_joint_tuple():
    rgb = torch.stack([still_clip(height=24, width=24)] * 2)
    flow = torch.stack([still_clip(channels=2, height=24, width=24)] * 2)
    rgb_out, flow_out = T.BatchAugment(T.ClipTrainPreset(crop_size=16, short_side=20))((rgb, flow))
    assert rgb_out.shape == (2, 3, 4, 16, 16) and flow_out.shape == (2, 2, 4, 16, 16)


def test_uint8_resize_preset_feeds_batch_augment():
    clip = still_clip(height=30, width=50)
    resized = T.UInt8ResizePreset(size=(20, 24))(clip)
    assert resized.shape == (4, 3, 20, 24) and resized.dtype == torch.uint8


@requires_cuda
def test_batch_augment_on_cuda_matches_layout():
    batch = torch.stack([still_clip(height=32, width=44)] * 2).cuda()
    flow = torch.stack([still_clip(channels=2, height=32, width=44)] * 2).cuda()
    preset = T.ClipTrainPreset(crop_size=16, short_side=20, srtg=ALL_ON)
    rgb_out, flow_out = T.BatchAugment(preset, input_dims=2)((batch, flow))
    assert rgb_out.device.type == "cuda" and rgb_out.shape == (2, 12, 16, 16)
    assert flow_out.shape == (2, 8, 16, 16)
    assert torch.isfinite(rgb_out).all()


# ----------------------------------------------------------------------------- batch paths
def smooth_clip(frames: int = 3, channels: int = 3, height: int = 40, width: int = 52, seed=0):
    """Smooth random images (interpolation differences stay small on them)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand((frames, channels, height // 4, width // 4), generator=generator)
    fine = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear")
    return (fine * 255).round().to(torch.uint8)


@pytest.mark.parametrize("crop_type", sorted(T.CROP_TYPES))
@pytest.mark.parametrize("channels", [3, 2])
def test_augment_batch_matches_clip_by_clip(crop_type, channels):
    preset = T.ClipTrainPreset(crop_size=16, short_side=20, crop_type=crop_type, hflip_prob=0.5)
    clips = [smooth_clip(channels=channels, seed=s) for s in range(6)]
    torch.manual_seed(0)
    draws = [preset.draw(40, 52) for _ in clips]
    assert {d.flip for d in draws} == {True, False}
    batched = T.augment_batch(preset, clips, draws)
    one_by_one = torch.stack(
        [preset.finish(preset.geometry(c, d), d) for c, d in zip(clips, draws)]
    )
    assert batched.shape == one_by_one.shape == (6, channels, 3, 16, 16)
    std = preset.norm["rgb" if channels == 3 else "flow"][1].view(1, -1, 1, 1, 1)
    grey_levels = ((batched - one_by_one) * std * 255).abs()
    assert grey_levels.max() < 1.5  # the same filter: float here, uint8 (rounded) there
    torch.manual_seed(0)
    assert T.BatchAugment(preset)(torch.stack(clips)).shape == batched.shape


def test_srtg_apply_batch_equals_clip_by_clip():
    batch = smooth_clip(frames=2, height=16, width=20).float().div(255).expand(4, -1, -1, -1, -1)
    batch = batch + 0.1 * torch.rand(batch.shape)  # clips differ
    torch.manual_seed(1)
    draws = [ALL_ON.draw(16, 20) for _ in range(4)]
    batched = ALL_ON.apply_batch(batch.clone(), draws)
    one_by_one = torch.stack([ALL_ON.apply(c.clone(), d) for c, d in zip(batch, draws)])
    torch.testing.assert_close(batched, one_by_one, atol=1e-5, rtol=0)
    torch.manual_seed(1)
    assert torch.equal(ALL_ON(batch[0].clone()), ALL_ON.apply(batch[0].clone(), draws[0]))


def test_batch_finish_equals_the_presets_finish():
    preset = T.ClipTrainPreset(crop_size=16, short_side=20)
    torch.manual_seed(0)
    uint8 = [preset(smooth_clip(seed=s), finish=False)[0] for s in range(3)]
    assert uint8[0].dtype == torch.uint8 and uint8[0].shape == (3, 3, 16, 16)
    draw = T.ClipDraw(None, None)
    expected = torch.stack([preset.finish(c, draw) for c in uint8])
    uint8 = [T.uint8_layout(c) for c in uint8]
    torch.testing.assert_close(T.BatchFinish(preset)(torch.stack(uint8)), expected)
    flat = T.BatchFinish(preset, input_dims=2)(torch.stack(uint8))
    assert torch.equal(flat, T.to_input_dims(T.BatchFinish(preset)(torch.stack(uint8)), 2))
    with pytest.raises(ValueError, match="uint8"):
        T.BatchFinish(preset)(torch.stack(uint8).float())


def test_decode_short_side_follows_the_output_size():
    train = T.ClipTrainPreset(crop_size=112, short_side=128)
    assert train.decode_short_side() == 128
    assert train.decode_short_side((56, 56)) == 64  # multigrid scales the short side
    assert (
        T.ClipTrainPreset(crop_size=112, short_side=128, crop_type="no_crop").decode_short_side()
        == 112
    )
    assert T.ClipEvalPreset(crop_size=None).decode_short_side() is None
