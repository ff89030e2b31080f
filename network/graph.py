"""Skeleton graphs for ST-GCN: layouts (joints, edges, center) and the adjacency tensor A (K, V, V).

``Graph(layout, strategy).A[k][v, w]`` is the weight with which input joint ``v`` feeds output
joint ``w`` in partition ``k``; the network applies it as ``einsum("nkctv,kvw->nctw", x, A)``.
Every column of ``A.sum(0)`` sums to 1 (mean over the closed neighbourhood of ``w``).

Strategies (Yan et al., ST-GCN):
- ``uniform``: K = 1, the whole normalised adjacency.
- ``distance``: K = number of valid hops; partition ``k`` holds neighbours at hop ``valid_hop[k]``.
- ``spatial``: K = 1 + 2·(number of valid hops − 1); the root, then per hop the neighbours at equal
  or greater distance from the center, then the nearer ones.

``spatial`` measures distances to the center by the true shortest path. ``legacy=True`` reproduces
the reference code exactly: distances computed only up to ``max_hop``, so every joint two or more
hops from the center is "infinitely" far and edges among those joints all land in the farther
partition (mmskeleton #367). Published ST-GCN / PoseClassificationNet weights were trained that way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

__all__ = [
    "GRAPH_DEFAULTS",
    "LAYOUTS",
    "STRATEGIES",
    "Graph",
    "Layout",
    "find_graph",
    "get_layout",
    "graph_flags",
    "hop_distance",
    "load_layout",
    "resolve_stored_graph",
]


@dataclass(frozen=True)
class Layout:
    """A skeleton: ``num_joints`` joints, undirected ``edges`` (0-based pairs), a ``center`` joint.

    ``num_person`` and ``seq_length`` are the TAO export defaults (M and T of the dummy input).
    ``joint_names`` is empty where the order is not known.
    """

    name: str
    num_joints: int
    edges: tuple[tuple[int, int], ...]
    center: int
    num_person: int = 1
    seq_length: int = 300
    joint_names: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        _validate_layout(self)


def _validate_layout(layout: Layout) -> None:
    where = f"layout {layout.name!r}"
    if layout.num_joints < 1:
        raise ValueError(f"{where}: needs at least one joint")
    if not 0 <= layout.center < layout.num_joints:
        raise ValueError(f"{where}: center {layout.center} is not a joint index")
    seen: set[frozenset[int]] = set()
    for i, j in layout.edges:
        if not (0 <= i < layout.num_joints and 0 <= j < layout.num_joints) or i == j:
            raise ValueError(f"{where}: edge ({i}, {j}) is not a pair of distinct joint indices")
        if frozenset((i, j)) in seen:
            raise ValueError(f"{where}: duplicate edge ({i}, {j})")
        seen.add(frozenset((i, j)))
    if layout.joint_names and len(layout.joint_names) != layout.num_joints:
        raise ValueError(f"{where}: {len(layout.joint_names)} joint names for {layout.num_joints}")


def _pairs(text: str, *, one_based: bool) -> tuple[tuple[int, int], ...]:
    """Edges written "i,j i,j ..." → 0-based pairs."""
    shift = 1 if one_based else 0
    return tuple(
        (int(a) - shift, int(b) - shift) for a, b in (pair.split(",") for pair in text.split())
    )


NVIDIA_JOINTS = (
    "pelvis", "left-hip", "right-hip", "torso", "left-knee", "right-knee", "neck", "left-ankle",
    "right-ankle", "left-big-toe", "right-big-toe", "left-small-toe", "right-small-toe",
    "left-heel", "right-heel", "nose", "left-eye", "right-eye", "left-ear", "right-ear",
    "left-shoulder", "right-shoulder", "left-elbow", "right-elbow", "left-wrist", "right-wrist",
    "left-pinky-knuckle", "right-pinky-knuckle", "left-middle-tip", "right-middle-tip",
    "left-index-knuckle", "right-index-knuckle", "left-thumb-tip", "right-thumb-tip",
)  # fmt: skip

OPENPOSE_JOINTS = (
    "nose", "neck", "right-shoulder", "right-elbow", "right-wrist", "left-shoulder", "left-elbow",
    "left-wrist", "right-hip", "right-knee", "right-ankle", "left-hip", "left-knee", "left-ankle",
    "right-eye", "left-eye", "right-ear", "left-ear",
)  # fmt: skip

COCO_JOINTS = (
    "nose", "left-eye", "right-eye", "left-ear", "right-ear", "left-shoulder", "right-shoulder",
    "left-elbow", "right-elbow", "left-wrist", "right-wrist", "left-hip", "right-hip",
    "left-knee", "right-knee", "left-ankle", "right-ankle",
)  # fmt: skip

# Likely H3.6M-17 order (unverified in the reference).
H36M_JOINTS = (
    "pelvis", "right-hip", "right-knee", "right-ankle", "left-hip", "left-knee", "left-ankle",
    "spine", "thorax", "neck-nose", "head", "left-shoulder", "left-elbow", "left-wrist",
    "right-shoulder", "right-elbow", "right-wrist",
)  # fmt: skip

NTU_JOINTS = (
    "spine-base", "spine-mid", "neck", "head", "left-shoulder", "left-elbow", "left-wrist",
    "left-hand", "right-shoulder", "right-elbow", "right-wrist", "right-hand", "left-hip",
    "left-knee", "left-ankle", "left-foot", "right-hip", "right-knee", "right-ankle",
    "right-foot", "spine-shoulder", "left-hand-tip", "left-thumb", "right-hand-tip",
    "right-thumb",
)  # fmt: skip

# One row per layout: edges exactly as the reference (shared/reference/skeleton.md §2.1), in
# source order, written "i,j" as the source writes them (0- or 1-based).
LAYOUTS: dict[str, Layout] = {
    # BodyPose3DNet 34 joints (deepstream-bodypose-3d), TAO only; center = pelvis.
    "nvidia": Layout(
        "nvidia",
        34,
        _pairs(
            "0,1 0,2 0,3 1,4 2,5 3,6 4,7 5,8 7,9 8,10 9,11 10,12 7,13 8,14 6,15 15,16 15,17 16,18 17,19 1,20 2,21 6,20 6,21 20,22 21,23 22,24 23,25 24,26 25,27 24,28 25,29 24,30 25,31 24,32 25,33",
            one_based=False,
        ),
        center=0,
        joint_names=NVIDIA_JOINTS,
    ),
    # OpenPose COCO-18 (yysijie); center = neck.
    "openpose": Layout(
        "openpose",
        18,
        _pairs(
            "4,3 3,2 7,6 6,5 13,12 12,11 10,9 9,8 11,5 8,2 5,1 2,1 0,1 15,0 14,0 17,15 16,14",
            one_based=False,
        ),
        center=1,
        joint_names=OPENPOSE_JOINTS,
    ),
    # Human3.6M 17 joints, TAO only (hips attach to the spine); export T = 3163 as in TAO.
    "human3.6m": Layout(
        "human3.6m",
        17,
        _pairs(
            "9,10 8,9 7,8 1,7 4,7 0,1 0,4 9,11 9,14 11,12 14,15 12,13 15,16 1,2 2,3 4,5 5,6",
            one_based=False,
        ),
        center=8,
        seq_length=3163,
        joint_names=H36M_JOINTS,
    ),
    # NTU RGB+D 25 joints (yysijie), 1-based in the source; center = spine shoulder (21 − 1).
    "ntu-rgb+d": Layout(
        "ntu-rgb+d",
        25,
        _pairs(
            "1,2 2,21 3,21 4,3 5,21 6,5 7,6 8,7 9,21 10,9 11,10 12,11 13,1 14,13 15,14 16,15 17,1 18,17 19,18 20,19 22,23 23,8 24,25 25,12",
            one_based=True,
        ),
        center=20,
        num_person=2,
        joint_names=NTU_JOINTS,
    ),
    # NTU without spine-shoulder (yysijie), 1-based; center 2 is the raw index the source
    # writes (not converted from 1-based), kept so that existing checkpoints match.
    "ntu_edge": Layout(
        "ntu_edge",
        24,
        _pairs(
            "1,2 3,2 4,3 5,2 6,5 7,6 8,7 9,2 10,9 11,10 12,11 13,1 14,13 15,14 16,15 17,1 18,17 19,18 20,19 21,22 22,8 23,24 24,12",
            one_based=True,
        ),
        center=2,
        num_person=2,
    ),
    # COCO-17, the pycocotools skeleton (mmskeleton), 1-based; center = nose.
    "coco": Layout(
        "coco",
        17,
        _pairs(
            "16,14 14,12 17,15 15,13 12,13 6,12 7,13 6,7 8,6 9,7 10,8 11,9 2,3 2,1 3,1 4,2 5,3 4,6 5,7",
            one_based=True,
        ),
        center=0,
        joint_names=COCO_JOINTS,
    ),
}

STRATEGIES = ("uniform", "distance", "spatial")


def load_layout(path: str | Path) -> Layout:
    """A custom layout from YAML (``yaml.safe_load``)::

    name: my_skeleton        # optional, defaults to the file stem
    joints: [head, neck, hip]  # names, or just the joint count
    edges: [[head, neck], [neck, hip]]  # pairs of names or 0-based indices
    center: neck             # name or 0-based index
    """
    path = Path(path)
    spec = yaml.safe_load(path.read_text())
    if not isinstance(spec, dict) or not {"joints", "edges", "center"} <= spec.keys():
        raise ValueError(f"{path}: a layout needs the keys joints, edges and center")
    joints = spec["joints"]
    names = tuple(str(n) for n in joints) if isinstance(joints, list) else ()
    num_joints = len(names) if names else int(joints)

    def index(value: int | str) -> int:
        if isinstance(value, str):
            if value not in names:
                raise ValueError(f"{path}: unknown joint {value!r}")
            return names.index(value)
        return int(value)

    try:
        edges = tuple((index(a), index(b)) for a, b in spec["edges"])
        return Layout(
            str(spec.get("name", path.stem)),
            num_joints,
            edges,
            center=index(spec["center"]),
            num_person=int(spec.get("num_person", 1)),
            seq_length=int(spec.get("seq_length", 300)),
            joint_names=names,
        )
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: {error}") from error


def get_layout(layout: str | Path | Layout) -> Layout:
    """A built-in layout by name, a custom one from a ``.yaml``/``.yml`` path, or ``layout`` itself."""
    if isinstance(layout, Layout):
        return layout
    if str(layout) in LAYOUTS:
        return LAYOUTS[str(layout)]
    if str(layout).endswith((".yaml", ".yml")):
        return load_layout(layout)
    raise ValueError(
        f"unknown graph layout {layout!r}: choose one of {', '.join(LAYOUTS)} or a .yaml file"
    )


def hop_distance(num_joints: int, edges: tuple[tuple[int, int], ...], max_hop: int) -> np.ndarray:
    """(V, V) shortest-path lengths, ``inf`` beyond ``max_hop`` (and between components)."""
    adjacency = np.eye(num_joints, dtype=np.int64)
    for i, j in edges:
        adjacency[i, j] = adjacency[j, i] = 1
    distance = np.full((num_joints, num_joints), np.inf)
    reach = np.eye(num_joints, dtype=np.int64)
    for hop in range(max_hop + 1):
        newly = (reach > 0) & np.isinf(distance)
        distance[newly] = hop
        reach = np.minimum(reach @ adjacency, 1)
    return distance


def _normalize_columns(adjacency: np.ndarray) -> np.ndarray:
    """A·Λ⁻¹ with Λ the column sums; zero columns stay zero."""
    degree = adjacency.sum(axis=0)
    inverse = np.divide(1.0, degree, out=np.zeros_like(degree), where=degree > 0)
    return adjacency * inverse[None, :]


class Graph:
    """The ST-GCN adjacency of ``layout`` partitioned by ``strategy``; ``A`` is (K, V, V) float32."""

    def __init__(
        self,
        layout: str | Path | Layout = "nvidia",
        strategy: str = "spatial",
        max_hop: int = 1,
        dilation: int = 1,
        legacy: bool = False,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown graph strategy {strategy!r}: choose one of {STRATEGIES}")
        if max_hop < 1 or dilation < 1:
            raise ValueError("max_hop and dilation must be at least 1")
        self.layout = get_layout(layout)
        self.strategy = strategy
        self.max_hop = max_hop
        self.dilation = dilation
        self.legacy = legacy
        self.num_node = self.layout.num_joints
        self.center = self.layout.center
        self.hop_dis = hop_distance(self.num_node, self.layout.edges, max_hop)
        self.valid_hop = tuple(range(0, max_hop + 1, dilation))
        self.A = _PARTITIONS[strategy](self).astype(np.float32)

    def __repr__(self) -> str:
        return (
            f"Graph(layout={self.layout.name!r}, strategy={self.strategy!r}, "
            f"max_hop={self.max_hop}, dilation={self.dilation}, legacy={self.legacy}, "
            f"A={tuple(self.A.shape)})"
        )

    def normalized_adjacency(self) -> np.ndarray:
        """(V, V) column-normalised adjacency over the valid hops."""
        adjacency = np.isin(self.hop_dis, self.valid_hop).astype(np.float64)
        return _normalize_columns(adjacency)

    def center_distance(self) -> np.ndarray:
        """(V,) hop distance of each joint to the center: truncated at max_hop when legacy."""
        reach = self.max_hop if self.legacy else self.num_node
        return hop_distance(self.num_node, self.layout.edges, reach)[:, self.center]


def _uniform(graph: Graph) -> np.ndarray:
    return graph.normalized_adjacency()[None]


def _distance(graph: Graph) -> np.ndarray:
    normalized = graph.normalized_adjacency()
    return np.stack([np.where(graph.hop_dis == hop, normalized, 0.0) for hop in graph.valid_hop])


def _spatial(graph: Graph) -> np.ndarray:
    normalized = graph.normalized_adjacency()
    to_center = graph.center_distance()
    # entry [j, i]: input joint j feeds root i; compare their distances to the center.
    source, root = to_center[:, None], to_center[None, :]
    not_closer = source >= root  # equal (root group) or farther ("close" in the source code)
    parts = []
    for hop in graph.valid_hop:
        at_hop = np.where(graph.hop_dis == hop, normalized, 0.0)
        if hop == 0:
            parts.append(at_hop)
        else:
            parts.append(np.where(not_closer, at_hop, 0.0))
            parts.append(np.where(not_closer, 0.0, at_hop))
    return np.stack(parts)


_PARTITIONS = {"uniform": _uniform, "distance": _distance, "spatial": _spatial}


# The graph a network builds when its graph arguments are None (the network's defaults).
GRAPH_DEFAULTS: dict[str, Any] = {
    "graph_layout": "nvidia",
    "graph_strategy": "spatial",
    "graph_legacy": False,
}
ADJACENCY_ATOL = 1e-6  # stored float32 adjacencies are exact up to rounding


def _same_adjacency(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=0.0, atol=ADJACENCY_ATOL))


def graph_flags(graph: dict[str, Any]) -> str:
    """The command-line flags that build ``graph`` (graph_layout/strategy/legacy kwargs)."""
    legacy = "--graph-legacy" if graph["graph_legacy"] else "--no-graph-legacy"
    layout = graph["graph_layout"]
    layout = layout.name if isinstance(layout, Layout) else layout
    return f"--graph-layout {layout} --graph-strategy {graph['graph_strategy']} {legacy}"


def find_graph(
    adjacency: np.ndarray, prefer: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """Graph kwargs (``graph_layout``, ``graph_strategy``, ``graph_legacy``) whose ``A`` equals
    ``adjacency`` (K, V, V), or None. Candidates: ``prefer``'s layout (may be a ``.yaml``) and
    every built-in layout with V joints, each strategy, legacy and true partitions; those that
    differ least from ``prefer`` come first, so an equal graph keeps what the user asked for."""
    adjacency = np.asarray(adjacency, dtype=np.float32)
    if adjacency.ndim != 3 or adjacency.shape[1] != adjacency.shape[2]:
        return None
    prefer = {**GRAPH_DEFAULTS, **(prefer or {})}
    layouts = list(dict.fromkeys([prefer["graph_layout"], *LAYOUTS]))
    candidates = [
        {"graph_layout": layout, "graph_strategy": strategy, "graph_legacy": legacy}
        for layout in layouts
        for strategy in STRATEGIES
        for legacy in (False, True)
    ]
    candidates.sort(key=lambda c: sum(c[key] != prefer[key] for key in GRAPH_DEFAULTS))
    for candidate in candidates:
        layout = get_layout(candidate["graph_layout"])
        if layout.num_joints != adjacency.shape[1]:
            continue
        graph = Graph(layout, candidate["graph_strategy"], legacy=candidate["graph_legacy"])
        if _same_adjacency(graph.A, adjacency):
            return candidate
    return None


def resolve_stored_graph(
    adjacency: np.ndarray, requested: dict[str, Any], *, source: str = "the checkpoint"
) -> dict[str, Any]:
    """The graph kwargs to build so that ``A`` equals a checkpoint's stored ``adjacency``.

    ``requested``: the user's graph kwargs, ``None`` where not given (the network default).
    An equal configured graph is kept; else the matching graph is returned when it only
    changes arguments the user left at ``None``; otherwise ``ValueError`` names the flags
    that reproduce the checkpoint (or says that no built-in graph does).
    """
    wanted = {key: requested.get(key) for key in GRAPH_DEFAULTS}
    configured = {key: GRAPH_DEFAULTS[key] if value is None else value
                  for key, value in wanted.items()}  # fmt: skip
    graph = Graph(configured["graph_layout"], configured["graph_strategy"],
                  legacy=configured["graph_legacy"])  # fmt: skip
    if _same_adjacency(graph.A, np.asarray(adjacency, dtype=np.float32)):
        return configured
    match = find_graph(adjacency, prefer=configured)
    if match is None:
        raise ValueError(
            f"{source}: its adjacency A {tuple(np.shape(adjacency))} equals no graph ActRec "
            f"builds (configured: {graph_flags(configured)}); give its layout as a .yaml file"
        )
    conflicts = [key for key, value in wanted.items() if value is not None and value != match[key]]
    if conflicts:
        names = ", ".join("--" + key.replace("_", "-") for key in conflicts)
        raise ValueError(
            f"{source}: its adjacency A is the graph {graph_flags(match)}, but {names} asks "
            f"for another; drop {names} or pass {graph_flags(match)}"
        )
    return match
