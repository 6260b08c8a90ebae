"""channel-reuse: MST-compression (ICCV 2023) as a pass -- output channels computed from others.

For a layer with +-1 weight rows w_c of length K, channel j can be computed from channel p as
y_j = s*y_p + 2 * sum_{k in D} x_k w_jk, where D holds the positions where w_j != s*w_p; a child
costs |D| XNORs (plus one add) instead of K. With s = -1 (a complement edge) |D| = K - d(p, j),
so every edge costs min(d, K - d), d the Hamming distance.

The tree: Prim's algorithm from a virtual root whose edge to every channel costs K -- "compute
from scratch" -- so a channel reuses another only when that is cheaper by more than the add it
needs (`add-cost`, default: the accumulator width). Among equal costs the shallower parent wins
(fewer dependent adds = less latency); `max-depth` bounds the chain of dependent adds.
`groups` restricts reuse to blocks of consecutive channels (the channels a folded layer computes
in the same clock); the driver fills it from the folding.
Layers whose weights are not all +-1 (ternary, multi-bit) keep no tree: y_j = s*y_p + 2*sum_D
holds for +-1 weights only. `skipped_layers` names them, for the driver to say so.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..ir.graph import Graph
from ..ir.ops import Conv, Dense, Reuse, binary
from ..ir.types import is_integer
from . import contracts
from .manager import Pass, register


def hamming(rows: np.ndarray) -> np.ndarray:
    """(C, C) Hamming distances between +-1 rows, by one integer matrix product."""
    r = rows.astype(np.float64)
    return np.rint((rows.shape[1] - r @ r.T) / 2).astype(np.int64)


def build_tree(rows: np.ndarray, add_cost: int, max_depth: int = 0, group: int = 0) -> Reuse:
    """Minimum-cost reuse forest (see the module docstring); O(C^2) numpy work."""
    c, k = rows.shape
    d = hamming(rows)
    cost = np.minimum(d, k - d) + add_cost
    negate = (k - d) < d
    if group:
        block = np.arange(c) // group
        cost[block[:, None] != block[None, :]] = np.iinfo(np.int64).max // 4
    np.fill_diagonal(cost, np.iinfo(np.int64).max // 4)
    key = np.full(c, k, dtype=np.int64)  # cost of attaching each channel now (root: from scratch)
    parent = np.full(c, -1, dtype=np.int64)
    depth = np.zeros(c, dtype=np.int64)
    done = np.zeros(c, dtype=bool)
    for _ in range(c):
        # cheapest first, then shallowest, then lowest index: deterministic and latency-aware
        candidates = np.flatnonzero(~done)
        pick = candidates[np.lexsort((candidates, depth[candidates], key[candidates]))[0]]
        done[pick] = True
        if max_depth and depth[pick] + 1 > max_depth - 1:
            continue  # children of `pick` would be deeper than allowed
        better = ~done & ((cost[pick] < key) | ((cost[pick] == key) & (depth[pick] + 1 < depth)))
        key[better] = cost[pick][better]
        parent[better] = pick
        depth[better] = depth[pick] + 1
    neg = np.array([bool(negate[p, j]) if p >= 0 else False for j, p in enumerate(parent)])
    return Reuse(parent=parent, negate=neg)


def tree_stats(weights: np.ndarray, reuse: Reuse | None) -> dict:
    """XNOR (popcount input) counts with and without the tree, its weight and depth."""
    rows = weights.reshape(weights.shape[0], -1)
    c, k = rows.shape
    if reuse is None:
        return {"channels": c, "k": k, "xnor_before": c * k, "xnor_after": c * k, "tree_weight": 0,
                "depth": 1, "children": 0}
    after, roots = reuse.terms(weights), int(np.sum(reuse.parent < 0))
    return {"channels": c, "k": k, "xnor_before": c * k, "xnor_after": after, "tree_weight": after - roots * k,
            "depth": int(reuse.depths().max()) + 1, "children": int(np.sum(reuse.parent >= 0))}


@register
@dataclass(frozen=True)
class ChannelReuse(Pass):
    name = "channel-reuse"
    requires = (contracts.INTEGER_INTO_LAYERS,)  # the tree's add cost is the accumulator's width
    max_depth: int = 0  # 0: unbounded
    add_cost: int = -1  # -1: the accumulator's width
    groups: tuple[int, ...] = ()  # per weight layer (in graph order): block size, 0 = whole layer

    def run(self, graph: Graph) -> Graph:
        ops, layer = [], 0
        for op in graph.ops:
            if isinstance(op, (Dense, Conv)) and not graph.on_host(op) and not binary(op.weights):
                layer += 1  # the tree's algebra needs +-1 weights (see skipped_layers)
            elif isinstance(op, (Dense, Conv)) and not graph.on_host(op):
                rows = op.weights.reshape(op.weights.shape[0], -1)
                add = self.add_cost if self.add_cost >= 0 else self._accumulator_bits(graph, op)
                group = self.groups[layer] if layer < len(self.groups) else 0
                tree = build_tree(rows, add, self.max_depth, group)
                op = replace(op, reuse=tree if np.any(tree.parent >= 0) else None)
                layer += 1
            ops.append(op)
        return graph.with_ops(ops)

    def _accumulator_bits(self, graph: Graph, op: Dense | Conv) -> int:
        """The width of the layer's sum: the cost of one add in the tree (add_cost -1)."""
        acc = graph.types[op.out].elem
        assert is_integer(acc)  # the pass requires integer codes into every weight layer (contracts)
        return acc.bits


def skipped_layers(graph: Graph) -> list:
    """The hardware weight layers channel-reuse leaves alone: their weights are not +-1."""
    return [op for op in graph.ops if isinstance(op, (Dense, Conv)) and not graph.on_host(op)
            and not binary(op.weights)]
