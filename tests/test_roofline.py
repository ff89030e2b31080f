"""benchmarks/roofline.py: FLOP counts, the rows it measures, a tiny run end to end."""

from __future__ import annotations

import argparse

import torch
from torch import nn

from benchmarks import roofline
from network import get_entry


def test_flops_are_those_of_the_matrix_products() -> None:
    linear = nn.Linear(4, 8)
    assert roofline.count_gflop(lambda: linear(torch.randn(5, 4))) * 1e9 == 2 * 5 * 4 * 8
    step = roofline.training_step(linear, torch.randn(5, 4))
    # forward and the weight gradient; the input needs no gradient
    assert roofline.count_gflop(step) * 1e9 == 2 * 2 * 5 * 4 * 8


def test_in_place_products_count_as_their_out_of_place_form() -> None:
    # CTR-GCN accumulates its partitions with baddbmm_, which flop_registry does not list
    a, b, acc = torch.randn(3, 6, 5), torch.randn(3, 5, 7), torch.zeros(3, 6, 7)
    assert roofline.count_gflop(lambda: acc.baddbmm_(a, b)) * 1e9 == 2 * 3 * 6 * 5 * 7


def test_rows_cover_the_full_skeleton_networks_and_the_references() -> None:
    names = roofline.default_models()
    assert "st_gcn" in names and {"gesturenet", "r3d_18"} <= set(names)
    assert all("tiny" not in get_entry(name).tags for name in names)


def test_fraction_of_peak() -> None:
    row = roofline.Row("net", "inference", gflop=30.0, seconds=0.5, peak_gflops=100.0)
    assert row.gflops == 60.0 and row.fraction == 0.6


def test_a_tiny_network_runs_end_to_end(capsys) -> None:
    args = argparse.Namespace(batch_size=1, repeats=1, compile=False, gemm_size=128, clock="cpu")
    rows = roofline.measure("st_gcn_tiny", args)
    assert [row.mode for row in rows] == ["inference", "train step"]
    assert rows[1].gflop > 2 * rows[0].gflop > 0  # a step: forward + backward
    assert all(row.seconds > 0 and row.peak_gflops > 0 for row in rows)
    roofline.print_rows(rows)
    assert "st_gcn_tiny" in capsys.readouterr().out
