"""Skeleton graphs: every layout × strategy against shared/reference/skeleton.md §2–3."""

from __future__ import annotations

import numpy as np
import pytest

from network.graph import (
    LAYOUTS,
    STRATEGIES,
    Graph,
    Layout,
    find_graph,
    get_layout,
    hop_distance,
    resolve_stored_graph,
)

# layout → (V, edges, center, off-diagonal non-zeros of spatial A[1]/A[2]: legacy, true)
REFERENCE = {
    "nvidia": (34, 35, 0, (62, 8), (37, 33)),
    "openpose": (18, 17, 1, (25, 9), (17, 17)),
    "human3.6m": (17, 17, 8, (27, 7), (17, 17)),
    "ntu-rgb+d": (25, 24, 20, (40, 8), (24, 24)),
    "ntu_edge": (24, 23, 2, (41, 5), (23, 23)),
    "coco": (17, 19, 0, (34, 4), (22, 16)),
}
# The exact A[2] entries [j, i] the reference code produces (truncated distances).
LEGACY_NEARER = {
    "nvidia": [(0, 1), (0, 2), (0, 3), (1, 4), (1, 20), (2, 5), (2, 21), (3, 6)],
    "openpose": [(0, 14), (0, 15), (1, 0), (1, 2), (1, 5), (2, 3), (2, 8), (5, 6), (5, 11)],
    "human3.6m": [(7, 1), (7, 4), (8, 7), (8, 9), (9, 10), (9, 11), (9, 14)],
    "ntu-rgb+d": [(1, 0), (2, 3), (4, 5), (8, 9), (20, 1), (20, 2), (20, 4), (20, 8)],
    "ntu_edge": [(1, 0), (1, 4), (1, 8), (2, 1), (2, 3)],
    "coco": [(0, 1), (0, 2), (1, 3), (2, 4)],
}
K_OF = {"uniform": 1, "distance": 2, "spatial": 3}


def off_diagonal(matrix: np.ndarray) -> int:
    return int(((matrix != 0) & ~np.eye(len(matrix), dtype=bool)).sum())


def test_layout_table_matches_reference() -> None:
    assert set(LAYOUTS) == set(REFERENCE)
    for name, (joints, edges, center, _, _) in REFERENCE.items():
        layout = LAYOUTS[name]
        assert (layout.num_joints, len(layout.edges), layout.center) == (joints, edges, center)
        assert np.isfinite(hop_distance(joints, layout.edges, joints)).all(), "connected"


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_shapes_and_column_sums(layout: str, strategy: str, legacy: bool) -> None:
    a = Graph(layout, strategy, legacy=legacy).A
    v = LAYOUTS[layout].num_joints
    assert a.shape == (K_OF[strategy], v, v) and a.dtype == np.float32
    np.testing.assert_allclose(a.sum(axis=(0, 1)), 1.0, atol=1e-6)  # mean over neighbourhood
    support = (a.sum(0) != 0).astype(int)
    np.testing.assert_allclose(np.diag(a[0]), 1.0 / support.sum(axis=0), atol=1e-6)
    np.testing.assert_array_equal(support, support.T)  # undirected graph
    if strategy == "uniform":
        # D^-1 scaling of a symmetric matrix: symmetric after undoing the column normalisation
        deg = support.sum(0)
        np.testing.assert_allclose(a[0] * deg[None, :], (a[0] * deg[None, :]).T, atol=1e-6)
    if strategy == "distance":
        assert off_diagonal(a[0]) == 0 and np.count_nonzero(np.diag(a[1])) == 0
        assert off_diagonal(a[1]) == 2 * len(LAYOUTS[layout].edges)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_spatial_legacy_and_true_partitions(layout: str) -> None:
    _, _, _, legacy_counts, true_counts = REFERENCE[layout]
    legacy = Graph(layout, "spatial", legacy=True).A
    true = Graph(layout, "spatial").A
    assert (off_diagonal(legacy[1]), off_diagonal(legacy[2])) == legacy_counts
    assert (off_diagonal(true[1]), off_diagonal(true[2])) == true_counts
    assert sorted((int(j), int(i)) for j, i in zip(*np.nonzero(legacy[2]))) == LEGACY_NEARER[layout]
    np.testing.assert_allclose(legacy.sum(0), true.sum(0))  # same edges, other partition


def test_true_partition_follows_center_distance() -> None:
    graph = Graph("nvidia", "spatial")
    depth = graph.center_distance()
    assert depth[[1, 2, 3]].tolist() == [1, 1, 1] and depth[[11, 12, 18, 19, 26, 33]].max() == 5
    j, i = np.nonzero(graph.A[2])
    assert (depth[j] < depth[i]).all()  # A[2]: strictly nearer neighbours
    j, i = np.nonzero(graph.A[1])
    assert (depth[j] >= depth[i]).all()


def test_nvidia_diagonal_values() -> None:
    diagonal = np.unique(np.diag(Graph("nvidia").A[0]))
    np.testing.assert_allclose(diagonal, [1 / 6, 1 / 5, 1 / 4, 1 / 3, 1 / 2], rtol=1e-6)


@pytest.mark.parametrize(("strategy", "k"), [("spatial", 3), ("distance", 2)])
def test_dilation_skips_hops(strategy: str, k: int) -> None:
    graph = Graph("openpose", strategy, max_hop=2, dilation=2)
    assert graph.valid_hop == (0, 2) and graph.A.shape[0] == k
    one_hop = hop_distance(18, LAYOUTS["openpose"].edges, 2) == 1
    assert not graph.A.sum(0)[one_hop].any()


def test_custom_yaml_layout(tmp_path) -> None:
    spec = tmp_path / "arm.yaml"
    spec.write_text("joints: [hip, neck, hand]\nedges: [[hip, neck], [neck, 2]]\ncenter: neck\n")
    graph = Graph(spec, "spatial")
    assert graph.layout.center == 1 and graph.A.shape == (3, 3, 3)
    np.testing.assert_allclose(graph.A.sum(axis=(0, 1)), 1.0, atol=1e-6)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("joints: 3\nedges: [[0, 1], [1, 0]]\ncenter: 0\n", "duplicate"),
        ("joints: 3\nedges: [[0, 5]]\ncenter: 0\n", "not a pair"),
        ("joints: [a, b]\nedges: [[a, c]]\ncenter: a\n", "unknown joint"),
        ("joints: 3\nedges: []\n", "keys"),
    ],
)
def test_bad_yaml_layouts_are_refused(tmp_path, text: str, message: str) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(text)
    with pytest.raises(ValueError, match=message):
        get_layout(spec)


def test_unknown_names_raise() -> None:
    with pytest.raises(ValueError, match="layout"):
        Graph("kinect")
    with pytest.raises(ValueError, match="strategy"):
        Graph("nvidia", "geodesic")
    with pytest.raises(ValueError, match="center"):
        Layout("x", 2, ((0, 1),), center=3)


@pytest.mark.parametrize("layout", ["nvidia", "ntu-rgb+d", "openpose", "coco", "human3.6m"])
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("legacy", [False, True])
def test_find_graph_reproduces_every_stored_adjacency(layout, strategy, legacy) -> None:
    stored = Graph(layout, strategy, legacy=legacy).A
    match = find_graph(stored)
    assert match is not None
    again = Graph(match["graph_layout"], match["graph_strategy"], legacy=match["graph_legacy"])
    np.testing.assert_array_equal(again.A, stored)
    assert find_graph(stored, prefer=match) == match


def test_resolve_stored_graph_switches_or_refuses() -> None:
    legacy_ntu = Graph("ntu-rgb+d", "spatial", legacy=True).A
    # the default (true-hop) partition differs for ntu-rgb+d: the TAO checkpoint's graph wins
    assert not np.array_equal(Graph("ntu-rgb+d", "spatial").A, legacy_ntu)
    requested = {"graph_layout": "ntu-rgb+d", "graph_strategy": None, "graph_legacy": None}
    assert resolve_stored_graph(legacy_ntu, requested) == {
        "graph_layout": "ntu-rgb+d", "graph_strategy": "spatial", "graph_legacy": True,
    }  # fmt: skip
    # nothing given: the layout is found from A too
    assert resolve_stored_graph(legacy_ntu, {})["graph_layout"] == "ntu-rgb+d"
    # an explicit flag that contradicts A is refused with the flags that reproduce it
    explicit = {**requested, "graph_legacy": False}
    with pytest.raises(ValueError, match=r"x.pth: .*--graph-legacy asks for another; drop"):
        resolve_stored_graph(legacy_ntu, explicit, source="x.pth")
    with pytest.raises(ValueError, match="--graph-layout ntu-rgb\\+d --graph-strategy spatial"):
        resolve_stored_graph(legacy_ntu, {"graph_layout": "coco"})
    # an equal graph is kept as configured
    same = {"graph_layout": "nvidia", "graph_strategy": "uniform", "graph_legacy": True}
    assert resolve_stored_graph(Graph("nvidia", "uniform").A, same) == same
    with pytest.raises(ValueError, match="equals no graph ActRec builds"):
        resolve_stored_graph(np.ones((3, 25, 25)), requested)
