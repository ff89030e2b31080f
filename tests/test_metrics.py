"""Evaluation numbers on hand-made score matrices, the TAO printout and the confusion files."""

import csv
import math
import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from train.metrics import (
    EvalShardSampler,
    ScoreAccumulator,
    per_class_report,
    precision_recall_f1,
    save_confusion,
    tao_report,
)


def test_center_mode_one_clip_per_video():
    acc = ScoreAccumulator(3)
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 0.5], [0.0, 0.0, 5.0]])
    acc.update(logits[:2], torch.tensor([0, 1]), torch.tensor([10, 11]), loss=torch.tensor(0.5))
    acc.update(logits[2:], torch.tensor([2, 2]), torch.tensor([12, 13]), loss=1.5)
    result = acc.result()
    assert result.clip_top1 == result.video_top1 == 0.75
    assert result.clip_top5 == result.video_top5 == 1.0  # K=3 < 5: top-5 covers every class
    np.testing.assert_allclose(result.per_class_accuracy, [1.0, 1.0, 0.5])
    assert result.mean_class_accuracy == pytest.approx(2.5 / 3)
    np.testing.assert_array_equal(result.confusion, [[1, 0, 0], [0, 1, 0], [1, 0, 1]])
    assert (result.num_clips, result.num_videos) == (4, 4)
    assert result.loss == pytest.approx(1.0)


# Conv mode: segments of three videos spread over three batches, scores given as probabilities.
# Video 0 (class 0): clip votes 0, 1, 1 (a majority vote says 1), the average says 0.
# Video 1 (class 1): clip votes 1, 2, 1, the average says 2. Video 2 (class 2): 2 segments, 2.
CONV_BATCHES = [
    ([[0.9, 0.1, 0.0], [0.2, 0.5, 0.3], [0.3, 0.3, 0.4]], [0, 1, 2], [0, 1, 2]),
    ([[0.4, 0.6, 0.0], [0.1, 0.2, 0.7]], [0, 1], [0, 1]),
    ([[0.2, 0.2, 0.6], [0.4, 0.6, 0.0], [0.1, 0.5, 0.4]], [2, 0, 1], [2, 0, 1]),
]


def _conv_accumulator(from_logits):
    acc = ScoreAccumulator(3, from_logits=from_logits)
    for probs, targets, ids in CONV_BATCHES:
        scores = torch.tensor(probs)
        acc.update(torch.log(scores + 1e-12) if from_logits else scores, targets, ids)
    return acc


@pytest.mark.parametrize("from_logits", [False, True])
def test_conv_mode_averages_segments_across_batches(from_logits):
    result = _conv_accumulator(from_logits).result()
    assert result.clip_top1 == pytest.approx(5 / 8)
    assert result.video_top1 == pytest.approx(2 / 3)
    np.testing.assert_allclose(result.per_class_accuracy, [1.0, 0.0, 1.0])
    assert result.mean_class_accuracy == pytest.approx(2 / 3)
    np.testing.assert_array_equal(result.confusion, [[1, 0, 0], [0, 0, 1], [0, 0, 1]])
    assert (result.num_clips, result.num_videos) == (8, 3)
    assert math.isnan(result.loss)
    ids, probs = _conv_accumulator(from_logits).video_scores()
    np.testing.assert_array_equal(ids, [0, 1, 2])
    np.testing.assert_allclose(probs[0], [1.7 / 3, 1.3 / 3, 0.0], atol=1e-6)
    np.testing.assert_allclose(probs[2], [0.25, 0.25, 0.5], atol=1e-6)


def test_top5_with_more_classes_counts_rank():
    acc = ScoreAccumulator(7)
    scores = torch.arange(7.0).repeat(3, 1)  # class 6 scores highest
    acc.update(scores, [1, 2, 6], [0, 1, 2])  # class 1 ranks 6th, class 2 5th
    result = acc.result()
    assert result.clip_top1 == pytest.approx(1 / 3)
    assert result.clip_top5 == pytest.approx(2 / 3)
    assert result.video_top5 == pytest.approx(2 / 3)
    assert np.isnan(result.per_class_accuracy[0])  # no videos of class 0: not in the mean
    assert result.mean_class_accuracy == pytest.approx(1 / 3)


def test_ties_rank_like_argmax():
    acc = ScoreAccumulator(3)
    acc.update(torch.zeros(3, 3), [0, 1, 2], [0, 1, 2])  # constant scores: argmax says class 0
    result = acc.result()
    assert result.clip_top1 == result.video_top1 == pytest.approx(1 / 3)
    np.testing.assert_array_equal(result.confusion, [[1, 0, 0], [1, 0, 0], [1, 0, 0]])


def test_bad_input_is_rejected_clearly():
    acc = ScoreAccumulator(3)
    with pytest.raises(ValueError, match=r"shape \(B, 3\)"):
        acc.update(torch.zeros(2, 4), [0, 1], [0, 1])
    with pytest.raises(ValueError, match="no clips"):
        acc.result()
    acc.update(torch.zeros(2, 3), [0, 1], [5, 5])
    with pytest.raises(ValueError, match="different targets"):
        acc.result()
    unknown = ScoreAccumulator(3)
    unknown.update(torch.zeros(1, 3), [-1], [0])
    with pytest.raises(ValueError, match="video_scores"):
        unknown.result()


def _hmdb5_result():
    """TAO tutorial example: fall_floor 29/30, ride_bike 30/30."""
    acc = ScoreAccumulator(2)
    targets = [0] * 30 + [1] * 30
    scores = torch.tensor([[1.0, 0.0] if t == 0 else [0.0, 1.0] for t in targets])
    scores[0] = torch.tensor([0.0, 1.0])
    acc.update(scores, targets, list(range(60)))
    return acc.result()


def test_tao_report_matches_the_tao_printout():
    expected = (
        "*******************************\n"
        "fall_floor    96.67\n"
        "ride_bike     100.0\n"
        "*******************************\n"
        "Total accuracy: 98.333\n"
        "Average class accuracy: 98.333"
    )
    assert tao_report(_hmdb5_result(), ["fall_floor", "ride_bike"]) == expected
    with pytest.raises(ValueError, match="class names"):
        tao_report(_hmdb5_result(), ["only_one"])


def test_save_confusion_writes_csv_and_png(tmp_path):
    csv_path, png_path = save_confusion(_hmdb5_result(), ["fall_floor", "ride_bike"], tmp_path)
    with csv_path.open() as handle:
        rows = list(csv.reader(handle))
    assert rows == [
        ["true \\ predicted", "fall_floor", "ride_bike"],
        ["fall_floor", "29", "1"],
        ["ride_bike", "0", "30"],
    ]
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_precision_recall_f1_and_report():
    confusion = np.array([[3, 1, 0], [0, 0, 0], [1, 0, 0]])
    precision, recall, f1 = precision_recall_f1(confusion)
    np.testing.assert_allclose(precision[[0, 1]], [0.75, 0.0])
    assert np.isnan(precision[2])  # class 2 never predicted
    np.testing.assert_allclose(recall[[0, 2]], [0.75, 0.0])
    assert np.isnan(recall[1])  # class 1 never present
    np.testing.assert_allclose(f1[[0, 2]], [0.75, 0.0])
    report = per_class_report(_hmdb5_result(), ["fall_floor", "ride_bike"])
    lines = report.splitlines()
    assert lines[0].split() == ["class", "precision", "recall", "f1", "support"]
    assert lines[1].split() == ["fall_floor", "100.00", "96.67", "98.31", "30"]
    assert lines[2].split() == ["ride_bike", "96.77", "100.00", "98.36", "30"]
    assert lines[3].split()[:2] == ["macro", "avg"]


def test_eval_shard_sampler_covers_each_item_once():
    shards = [list(EvalShardSampler(11, rank=r, world_size=3)) for r in range(3)]
    assert sorted(i for shard in shards for i in shard) == list(range(11))
    assert [len(EvalShardSampler(11, rank=r, world_size=3)) for r in range(3)] == [4, 4, 3]


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _gather_worker(rank, world_size, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    flat = [clip for probs, targets, ids in CONV_BATCHES for clip in zip(probs, targets, ids)]
    # Unequal counts without ids (EvalShardSampler), then padding repeats clips 0 and 1 on
    # rank 1 (as a DistributedSampler would), removed through the clip ids.
    shards = {"unequal": [[0, 1, 2, 3, 4], [5, 6, 7]], "padded": [[0, 1, 2, 3, 4], [5, 6, 7, 0, 1]]}
    results = {}
    for name, clips in shards.items():
        acc = ScoreAccumulator(3, from_logits=False)
        for clip in clips[rank]:
            probs, target, sample_id = flat[clip]
            clip_ids = [clip] if name == "padded" else None
            acc.update(torch.tensor([probs]), [target], [sample_id], float(clip), clip_ids)
        acc.gather()
        result = acc.result()
        results[name] = [result.video_top1, result.num_clips, result.loss]
    # rank 1 could not read a clip of video 2; rank 0 scored video 2's other clips: gone too
    acc = ScoreAccumulator(3, from_logits=False)
    for clip in shards["unequal"][rank]:
        probs, target, sample_id = flat[clip]
        acc.update(torch.tensor([probs]), [target], [sample_id])
    if rank == 1:
        acc.exclude(2, "c/v2", "c/v2: unreadable")
    acc.gather()
    result = acc.result()
    results["excluded"] = [
        result.num_videos,
        result.num_listed,
        result.num_clips,
        result.coverage(),
    ]
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_gather_across_processes_with_unequal_counts_and_padding(tmp_path):
    # fork: no re-import of torch in the children, which keeps this test fast.
    mp.start_processes(
        _gather_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, start_method="fork"
    )
    for rank in range(2):
        results = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        for name in ("unequal", "padded"):
            assert results[name] == [pytest.approx(2 / 3), 8, 3.5], (rank, name)
        # video 2 had 2 of the 8 clips
        assert results["excluded"] == [2, 3, 6, "videos scored 2 / 3 listed (1 excluded: c/v2)"]


def test_excluded_video_is_left_out_and_the_denominator_stated():
    acc = ScoreAccumulator(2)
    logits = torch.tensor([[3.0, 0.0], [0.0, 3.0], [3.0, 0.0], [0.0, 3.0]])
    # video 7 has one clip scored before its second clip failed: none of its clips count
    acc.update(logits, [0, 1, 1, 0], [5, 6, 7, 8])
    acc.exclude(7, "a/v7", "a/v7: cannot read")
    acc.exclude(9, "b/v9", "b/v9: cannot read")
    acc.exclude(9, "b/v9", "b/v9: cannot read")  # a second clip of the same video: one video
    result = acc.result()
    assert (result.num_videos, result.num_listed, result.num_clips) == (3, 5, 3)
    assert result.video_top1 == pytest.approx(2 / 3)  # 5 and 6 right, 8 wrong; 7 not scored
    assert result.excluded == (("a/v7", "a/v7: cannot read"), ("b/v9", "b/v9: cannot read"))
    assert result.coverage() == "videos scored 3 / 5 listed (2 excluded: a/v7, b/v9)"
    assert result.as_dict()["num_listed"] == 5
    assert tao_report(result, ["x", "y"]).endswith(result.coverage())
    ids, _ = acc.video_scores()
    assert ids.tolist() == [5, 6, 8]


def test_all_videos_excluded_is_a_clear_error():
    acc = ScoreAccumulator(2)
    acc.exclude(0, "a/v0", "unreadable")
    with pytest.raises(ValueError, match="all 1 listed videos were excluded"):
        acc.result()


def test_average_score_averages_logits_not_softmax():
    # Three clips of one video of class 0. One clip is very sure of class 1 (logits 0, 20), two
    # lean to class 0 (5, 0). Mean softmax p(1) = (1 + 2 * 0.0067) / 3 = 0.34 -> class 0;
    # mean logits (3.33, 6.67) -> class 1: the confident clip dominates.
    logits = torch.tensor([[0.0, 20.0], [5.0, 0.0], [5.0, 0.0]])
    prob, score = ScoreAccumulator(2), ScoreAccumulator(2, average="score")
    for acc in (prob, score):
        acc.update(logits, [0, 0, 0], [0, 0, 0])
    p = torch.softmax(logits.double(), 1).mean(0).numpy()
    np.testing.assert_allclose(prob.video_scores()[1][0], p)
    np.testing.assert_allclose(score.video_scores()[1][0], logits.mean(0).numpy(), rtol=1e-6)
    assert prob.result().video_top1 == 1.0
    assert score.result().video_top1 == 0.0
    assert prob.result().clip_top1 == score.result().clip_top1 == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="average"):
        ScoreAccumulator(2, average="vote")
