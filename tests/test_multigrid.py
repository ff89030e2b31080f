"""Multigrid: shape tables, schedule and LR multipliers, epoch coverage, grouped batch norm."""

import copy
import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from train.multigrid import (
    BN_BASE_SIZE,
    MultigridBatchSampler,
    MultigridSchedule,
    long_cycle_shapes,
    round_to_multiple,
    short_cycle_shapes,
    sub_batch_norm,
)
from train.precision import forward_model


def test_long_cycle_shapes_b48_t16_s224():
    shapes = long_cycle_shapes(48, 16, 224)
    assert [(s.batch_size, s.frames, s.size) for s in shapes] == [
        (384, 4, 158),
        (192, 8, 158),
        (96, 8, 224),
        (48, 16, 224),
    ]
    assert shapes[0].clip_shape == (4, 158, 158)


@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        (0, [(768, 4, 112), (384, 4, 158), (384, 4, 158)]),
        (1, [(384, 8, 112), (192, 8, 158), (192, 8, 158)]),
        (2, [(384, 8, 112), (192, 8, 158), (96, 8, 224)]),
        (3, [(192, 16, 112), (96, 16, 158), (48, 16, 224)]),
    ],
)
def test_short_cycle_shapes_b48_t16_s224(phase, expected):
    long_shape = long_cycle_shapes(48, 16, 224)[phase]
    shapes = short_cycle_shapes(long_shape, 224)
    assert [(s.batch_size, s.frames, s.size) for s in shapes] == expected
    # PySlowFast batch multipliers: [4, 2, 1] at the full size, [2, 1, 1] at S/√2.
    factors = [s.batch_size // long_shape.batch_size for s in shapes]
    assert factors == ([4, 2, 1] if long_shape.size == 224 else [2, 1, 1])


def test_sizes_rounded_to_the_requested_multiple():
    assert round_to_multiple(224 / math.sqrt(2)) == 158
    assert round_to_multiple(284 / math.sqrt(2)) == 200
    assert round_to_multiple(113) == 112  # odd sizes become even
    assert round_to_multiple(224 / math.sqrt(2), 32) == 160
    assert round_to_multiple(3, 8) == 8
    shapes = long_cycle_shapes(8, 16, 224, size_multiple=32)
    assert all(s.size % 32 == 0 for s in shapes)
    assert [s.batch_size for s in shapes] == [64, 32, 16, 8]


def test_schedule_splits_each_stage_but_the_last():
    schedule = MultigridSchedule.from_lr_steps([15, 30, 40], 50, phase_weights=[8, 4, 2, 1])
    stage = [0] * 8 + [1] * 4 + [2] * 2 + [3]  # epochs ∝ weights: equal iterations per shape
    short_stage = [0] * 5 + [1] * 3 + [2] + [3]  # 10 epochs: boundaries 5.3, 8, 9.3 rounded
    assert schedule.phases == tuple(stage + stage + short_stage + [3] * 10)
    assert schedule.phase(49) == 3
    assert schedule.phase(120) == 3  # after the end: full shape
    assert schedule.finetune_start == 40
    assert not schedule.is_finetune(39) and schedule.is_finetune(40)


def test_schedule_without_lr_steps_splits_the_whole_run():
    schedule = MultigridSchedule.from_lr_steps([], 15, phase_weights=[8, 4, 2, 1])
    assert schedule.phases == tuple([0] * 8 + [1] * 4 + [2] * 2 + [3])
    assert schedule.finetune_start is None


@pytest.mark.parametrize(
    ("epochs", "phases"),
    [(4, (0, 1, 2, 3)), (5, (0, 0, 1, 2, 3)), (2, (0, 3)), (1, (3,))],
)
def test_short_stages_keep_every_phase_and_always_the_full_shape(epochs, phases):
    assert MultigridSchedule.from_lr_steps([], epochs, [8, 4, 2, 1]).phases == phases


@pytest.mark.parametrize("long_cycles", [True, False])
def test_last_lr_stage_is_a_base_shape_finetune(long_cycles):
    sampler = _sampler(long_cycles=long_cycles)  # lr steps 4, 8; 10 epochs
    assert len(sampler.epoch_shapes(7)) == 3
    for epoch in (8, 9):
        assert sampler.epoch_shapes(epoch) == [long_cycle_shapes(2, 8, 32)[-1]]
        assert sampler.lr_multiplier(epoch) == 1.0


def _sampler(num_samples=103, **kwargs):
    settings = {
        "base_batch": 2,
        "base_frames": 8,
        "base_size": 32,
        "long_cycles": True,
        "short_cycles": True,
        "lr_steps": [4, 8],
        "end_epoch": 10,
        "seed": 3,
    }
    settings.update(kwargs)
    return MultigridBatchSampler.from_lr_schedule(num_samples, **settings)


def test_lr_multiplier_follows_the_long_cycle_batch():
    sampler = _sampler()
    multipliers = {sampler.phase(e): sampler.lr_multiplier(e) for e in range(10)}
    assert multipliers == {0: 8.0, 1: 4.0, 2: 2.0, 3: 1.0}
    # Short cycles change the batch but not the LR (PySlowFast).
    sampler.set_epoch(0)
    assert {s.batch_size for s in sampler.epoch_shapes()} == {32, 16}
    short_only = _sampler(long_cycles=False)
    assert {short_only.lr_multiplier(e) for e in range(10)} == {1.0}
    assert [s.size for s in short_only.epoch_shapes(0)] == [16, 22, 32]


def _epoch(sampler, epoch):
    sampler.set_epoch(epoch)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    return batches


@pytest.mark.parametrize(
    ("long_cycles", "short_cycles"), [(True, False), (False, True), (True, True), (False, False)]
)
@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_every_sample_exactly_once_per_epoch(long_cycles, short_cycles, world_size):
    for epoch in range(10):
        per_rank = [
            _epoch(
                _sampler(
                    long_cycles=long_cycles,
                    short_cycles=short_cycles,
                    rank=rank,
                    world_size=world_size,
                ),
                epoch,
            )
            for rank in range(world_size)
        ]
        assert len({len(batches) for batches in per_rank}) == 1, "ranks differ in batch count"
        indices = [index for batches in per_rank for batch in batches for index, _ in batch]
        assert sorted(indices) == list(range(103)), f"epoch {epoch}"
        for batches in per_rank:
            for batch in batches:
                assert len(batch) >= 2, "a batch of one clip breaks BatchNorm"
                assert len({shape for _, shape in batch}) == 1, "mixed shapes in one batch"


def test_batches_follow_the_shape_cycle_and_epochs_differ():
    sampler = _sampler(num_samples=500)
    first = _epoch(sampler, 0)
    shapes = sampler.epoch_shapes(0)
    for step, batch in enumerate(first[:-1]):
        shape = shapes[step % len(shapes)]
        assert len(batch) == shape.batch_size
        assert batch[0][1] == shape.clip_shape
    second = _epoch(sampler, 1)
    assert [i for b in first for i, _ in b] != [i for b in second for i, _ in b]
    assert _epoch(sampler, 0) == first  # same seed and epoch: same batches


@pytest.mark.parametrize("world_size", [1, 2])
def test_base_batch_of_one_is_not_merged_into_one_big_batch(world_size):
    samplers = [
        _sampler(
            num_samples=7,
            base_batch=1,
            long_cycles=False,
            short_cycles=False,
            rank=rank,
            world_size=world_size,
        )
        for rank in range(world_size)
    ]
    assert [len(sampler) for sampler in samplers] == [7 // world_size] * world_size
    indices = [i for sampler in samplers for batch in _epoch(sampler, 0) for i, _ in batch]
    assert sorted(indices) == list(range(7))


def test_drop_last_keeps_only_full_batches():
    sampler = _sampler(long_cycles=False, short_cycles=False, drop_last=True)
    batches = _epoch(sampler, 0)
    assert len(batches) == 103 // 2
    assert all(len(batch) == 2 for batch in batches)


def test_long_cycles_need_a_schedule_and_ranks_are_checked():
    with pytest.raises(ValueError, match="schedule"):
        MultigridBatchSampler(
            10, base_batch=2, base_frames=8, base_size=32, long_cycles=True, short_cycles=False
        )
    with pytest.raises(ValueError, match="ranks"):
        _sampler(num_samples=1, world_size=2)
    with pytest.raises(ValueError, match="base_batch"):
        _sampler(base_batch=0)


class _ShapeDataset(Dataset):
    """Returns a zero clip of the requested (T, H, W), as VideoClipDataset does."""

    def __len__(self):
        return 40

    def __getitem__(self, item):
        index, (frames, height, width) = item
        return torch.zeros(3, frames, height, width), index % 4, index


def test_dataloader_gets_the_batch_shapes():
    sampler = _sampler(num_samples=40)
    loader = DataLoader(_ShapeDataset(), batch_sampler=sampler)
    for epoch in (0, 9):
        sampler.set_epoch(epoch)
        seen = []
        for clips, _, ids in loader:
            seen.extend(ids.tolist())
            assert tuple(clips.shape[2:]) in {s.clip_shape for s in sampler.epoch_shapes()}
        assert sorted(seen) == list(range(40))


class _TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 4, 1)
        self.bn = nn.BatchNorm3d(4)
        self.fc = nn.Linear(4, 5)

    def forward(self, x, y=None):
        x = x if y is None else x + y
        return self.fc(self.bn(self.conv(x)).mean(dim=(2, 3, 4)))


def forward_in_bn_groups(model, inputs, bn_batch=BN_BASE_SIZE):
    """One call as the engine runs it under multigrid: BN over groups of ``bn_batch`` clips."""
    with sub_batch_norm(model, bn_batch):
        return forward_model(model, inputs)


def test_bn_groups_equal_separate_forwards_of_each_group():
    torch.manual_seed(0)
    model = _TinyNet().train()
    reference = copy.deepcopy(model)
    x = torch.randn(20, 3, 2, 4, 4)
    out = forward_in_bn_groups(model, x, bn_batch=8)
    expected = torch.cat([reference(chunk) for chunk in x.split(8)])
    torch.testing.assert_close(out, expected)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    # Running stats: one update with the mean of the group statistics.
    group_means = torch.stack([c.mean(dim=(0, 2, 3, 4)) for c in model.conv(x).split(8)])
    torch.testing.assert_close(model.bn.running_mean, 0.1 * group_means.mean(0).detach())
    assert int(model.bn.num_batches_tracked) == 1
    assert "forward" not in vars(model.bn)  # the patch is removed after the call


def test_bn_groups_never_normalise_a_single_clip():
    model = nn.Sequential(nn.Flatten(), nn.BatchNorm1d(3)).train()
    x = torch.randn(9, 3)  # groups of 4, 4, 1 → 4, 5 (a group of one clip would raise)
    out = forward_in_bn_groups(model, x, bn_batch=4)
    torch.testing.assert_close(out[4:], nn.functional.batch_norm(x[4:], None, None, training=True))


def test_bn_groups_take_tuple_inputs_and_leave_eval_and_small_batches_alone():
    torch.manual_seed(0)
    model = _TinyNet()
    x, y = torch.randn(12, 3, 2, 4, 4), torch.randn(12, 3, 2, 4, 4)
    assert forward_in_bn_groups(model, (x, y), bn_batch=4).shape == (12, 5)
    small = torch.randn(BN_BASE_SIZE, 3, 2, 4, 4)
    plain = copy.deepcopy(model)
    torch.testing.assert_close(forward_in_bn_groups(model, small), plain(small))
    model.eval()
    plain.eval()
    with sub_batch_norm(model, 4):
        torch.testing.assert_close(model(x), plain(x))
