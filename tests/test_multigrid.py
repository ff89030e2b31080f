"""Multigrid: shape tables, schedules and LR multipliers, epoch coverage, grouped batch norm."""

import argparse
import copy
import itertools
import math

import pytest
import torch
from test_engine_toys import CLASS_NAMES, ShapeDataset, TinyVideoNet, make_args
from torch import nn
from torch.utils.data import DataLoader, Dataset

from train.engine import fit
from train.history import read_metrics
from train.multigrid import (
    BN_BASE_SIZE,
    MultigridBatchSampler,
    MultigridSchedule,
    build_schedule,
    long_cycle_shapes,
    pyslowfast_average_batches,
    resolve_multigrid,
    round_to_multiple,
    short_cycle_shapes,
    sub_batch_norm,
)
from train.precision import forward_model
from train.schedule import LRSchedule


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


# PySlowFast get_long_cycle_schedule with SOLVER.STEPS [0, 94, 154, 196], MAX_EPOCH 239,
# EPOCH_FACTOR 1.5, the default LONG_CYCLE_FACTORS and short cycles (worked out from PySlowFast's
# slowfast/utils/multigrid.py and checked by running it): its SOLVER.STEPS, LRS and MAX_EPOCH.
PYSLOWFAST_STEPS = [0, 73, 110, 142, 158, 205, 228, 248, 259, 291, 308, 322, 329, 343]
PYSLOWFAST_LRS = [8, 4, 2, 1, 0.8, 0.4, 0.2, 0.1, 0.08, 0.04, 0.02, 0.01, 0.01, 0.001]
PYSLOWFAST_MAX_EPOCH = 358
# Long-cycle phase of each of its schedule entries (3 stages × 4 shapes, then the fine-tune),
# with the epoch each entry ends at.
PYSLOWFAST_ENTRY_ENDS = [73, 110, 142, 158, 205, 228, 248, 259, 291, 308, 322, 329, 358]
PYSLOWFAST_ENTRY_PHASES = [0, 1, 2, 3] * 3 + [3]


def _pyslowfast_sampler(frames=8, size=224, **kwargs):
    return MultigridBatchSampler.from_lr_schedule(
        1000,
        lr_steps=[94, 154, 196],
        end_epoch=239,
        base_batch=1,
        base_frames=frames,
        base_size=size,
        long_cycles=True,
        short_cycles=True,
        **kwargs,
    )


@pytest.mark.parametrize(("frames", "size"), [(8, 224), (16, 224), (16, 112)])
def test_pyslowfast_schedule_equals_get_long_cycle_schedule(frames, size):
    sampler = _pyslowfast_sampler(frames, size)
    schedule = sampler.schedule
    assert schedule.end_epoch == PYSLOWFAST_MAX_EPOCH == len(schedule.phases)
    starts = [0, *PYSLOWFAST_ENTRY_ENDS[:-1]]
    for phase, start, end in zip(PYSLOWFAST_ENTRY_PHASES, starts, PYSLOWFAST_ENTRY_ENDS):
        assert set(schedule.phases[start:end]) == {phase}, (start, end)
    # The LR the engine sets (multistep over the schedule's steps × the long-cycle batch
    # factor) equals PySlowFast's relative LR on every epoch of every step interval.
    lr = LRSchedule(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0), lr_base=1.0,
                    total_epochs=schedule.end_epoch, lr_steps=schedule.lr_steps, lr_factor=0.1)  # fmt: skip
    bounds = [*PYSLOWFAST_STEPS, PYSLOWFAST_MAX_EPOCH]
    for relative, (start, end) in zip(PYSLOWFAST_LRS, itertools.pairwise(bounds)):
        for epoch in range(start, end):
            got = lr.lr(epoch + 0.5, batch_scale=sampler.lr_multiplier(epoch))
            assert got == pytest.approx(relative), epoch
    assert schedule.lr_steps == (158, 259, 343)


def test_pyslowfast_keeps_short_cycles_in_the_finetune():
    sampler = _pyslowfast_sampler()
    assert sampler.schedule.finetune_start is None
    for epoch in (340, 350, 357):
        shapes = sampler.epoch_shapes(epoch)
        assert [(s.batch_size, s.size) for s in shapes] == [(4, 112), (2, 158), (1, 224)]


def test_pyslowfast_average_batches():
    assert pyslowfast_average_batches(16, 224, short_cycles=True) == pytest.approx(
        [32 / 3, 16 / 3, 14 / 3, 7 / 3]  # (16 8 8) (8 4 4) (8 4 2) (4 2 1)
    )
    assert pyslowfast_average_batches(16, 224, short_cycles=False) == [8, 4, 2, 1]


def test_pyslowfast_schedule_without_lr_steps_splits_the_whole_run():
    schedule = build_schedule(
        "pyslowfast", lr_steps=[], end_epoch=20, base_frames=8, base_size=32, short_cycles=False
    )
    assert schedule.end_epoch == 30 and len(schedule.phases) == 30
    assert schedule.phases == tuple(sorted(schedule.phases)) and schedule.phases[-1] == 3
    assert schedule.lr_steps == ()  # the empty fine-tune's midpoint is the end


def _run_args(**overrides):
    values = {
        "long_cycles": True, "short_cycles": True, "multigrid_schedule": "pyslowfast",
        "multigrid_epoch_factor": 1.5, "lr_schedule": "multistep", "lr_steps": [94, 154, 196],
        "end_epoch": 239, "clip_length": 8, "clip_size": 224,
    }  # fmt: skip
    values.update(overrides)
    return argparse.Namespace(**values)


def test_resolve_multigrid_stretches_a_copy_of_the_arguments():
    args = _run_args()
    resolved, schedule = resolve_multigrid(args)
    assert (resolved.end_epoch, resolved.lr_steps) == (358, [158, 259, 343])
    assert (args.end_epoch, args.lr_steps) == (239, [94, 154, 196])  # args.yaml keeps these
    assert schedule.end_epoch == 358
    # Short cycles only: PySlowFast multiplies the end epoch and every step by EPOCH_FACTOR.
    short, schedule = resolve_multigrid(_run_args(long_cycles=False))
    assert schedule is None and (short.end_epoch, short.lr_steps) == (358, [141, 231, 294])
    # simple and no multigrid: the arguments as given.
    simple = _run_args(multigrid_schedule="simple")
    resolved, schedule = resolve_multigrid(simple)
    assert resolved is simple and schedule.end_epoch == 239 and schedule.finetune_start == 196
    plain = _run_args(long_cycles=False, short_cycles=False)
    assert resolve_multigrid(plain) == (plain, None)
    with pytest.raises(ValueError, match="clip_size"):
        resolve_multigrid(_run_args(clip_size=None))


def test_engine_trains_the_pyslowfast_epochs(tmp_path):
    data = ShapeDataset(16, frames=4, side=8)
    args = make_args(
        tmp_path, "--long-cycles", "--end-epoch", "2", "--clip-length", "4", "--clip-size", "8",
        "--batch-size", "2", "--bn-base-size", "2", "--no-auto-resume",
    )  # fmt: skip
    summary = fit(TinyVideoNet(), data, None, args, family="video", class_names=CLASS_NAMES)
    assert summary["epoch"] == 3 and len(read_metrics(tmp_path)) == 3  # 2 baseline epochs × 1.5
    assert "end_epoch: 2" in (tmp_path / "args.yaml").read_text()


def _sampler(num_samples=103, **kwargs):
    settings = {
        "schedule_kind": "simple",
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
