"""MST channel reuse inside the threshold-logic mapping: does building a child neuron from its
parent's count save TLGs? Measured on the MST-trained SFC (examples/mst_training).

From scratch (what map-threshold-logic builds) a neuron [P >= T], P = popcount of its K agree
bits a_i, is one counter tree: about 2 TLGs per input. With reuse (DESIGN.md section 5) a child j
of parent p, D the positions where their weights differ, has
    P_j = P_p - |D| + 2 * popcount_D(a_j)        (complement edge: K - |D| - P_p + 2 * popcount_D(a_j)),
so its heap is the parent's count as binary digits d_l (weights +-2^l) plus its |D| own bits at
weight 2. A TLG network never holds P_p as a binary number (the neuron tree keeps two rows and a
carry chain), so a parent with children also builds its count's digits: the counter tree, then
a ripple adder of full-adder TLGs. The child's threshold then reads the digits; a child that is
itself a parent builds its own digits from that heap.

Built here with the pass's own gate builder (same cell limits, constants folded); every node
takes the cheaper of scratch and reuse. Tree: channel-reuse's build_tree (Prim, min(d, K - d)
edges; max_depth bounds the chains). The networks built here are checked against the neurons on
2,000 random inputs. "clocked saved" counts the identity cells a clocked FTL pipeline needs
(LayerNetwork.identity_cells): a child waits for its parent's whole count, so chains deepen the
network, and every signal that skips stages is carried by identity cells.
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np
from bnnc import driver
from bnnc.backends.asic.tl import tl_design
from bnnc.passes.channel_reuse import build_tree
from bnnc.passes.threshold_logic import (
    FALSE,
    TRUE,
    LayerNetwork,
    MapThresholdLogic,
    _arrays,
    _Builder,
    _Scratch,
    cmos_reason,
)

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"baseline (lambda = 0)": ROOT / "examples/mst_training/sfc_in1_baseline.onnx",
          "MST-trained": ROOT / "examples/mst_training/sfc_in1_mst.onnx"}


def digits(builder: _Builder, terms: list[tuple[int, int]]) -> tuple[list[int], int]:
    """Binary digits (literals) of sum(w * lit) + offset for terms with w = +-2^l: a negative
    term w * lit is -|w| + |w| * NOT lit, so the offset collects those constants."""
    columns: list[list[int]] = []
    offset = 0
    for lit, w in terms:
        if w < 0:
            lit, w, offset = lit ^ 1, -w, offset + w
        j = w.bit_length() - 1
        columns += [[] for _ in range(j + 1 - len(columns))]
        columns[j].append(lit)
    out, j = [], 0
    while j < len(columns):
        col = [lit for lit in columns[j] if lit != FALSE]
        while len(col) > 1:
            take, col = col[:3], col[3:]
            parts = builder.count(take)
            col.append(parts[0])
            for k, bit in enumerate(parts[1:], 1):
                columns += [[] for _ in range(j + k + 1 - len(columns))]
                columns[j + k].append(bit)
        out.append(col[0] if col else FALSE)
        j += 1
    return out, offset


def layer_gates(rows: np.ndarray, keys: np.ndarray, options: MapThresholdLogic, check: bool, max_depth: int = 0):
    """(network from scratch, network with reuse, edges used) for one binary layer; keys[c]:
    neuron c is [P_c >= keys[c]]."""
    c, k = rows.shape
    tree = build_tree(rows, add_cost=0, max_depth=max_depth)
    parent = np.asarray(tree.parent)
    negate = np.asarray(tree.negate)
    children = [[] for _ in range(c)]
    for j in range(c):
        if parent[j] >= 0:
            children[parent[j]].append(j)
    agree = [[2 * (1 + i) + int(rows[j, i] < 0) for i in range(k)] for j in range(c)]  # literals a_ji

    scratch_net = _Scratch([0] * k)
    scratch = _Builder(scratch_net, options)
    plain = [scratch.neuron([(lit, 1) for lit in agree[j]], int(keys[j])) for j in range(c)]

    net = _Scratch([0] * k)
    build = _Builder(net, options)
    count: dict[int, tuple[list[int], int]] = {}  # node -> digits of P and their offset
    outputs, used = {}, 0
    order = [j for j in range(c) if parent[j] < 0]
    for j in order:  # breadth first: parents before children (the list grows as it is walked)
        order.extend(children[j])
    for j in order:
        own = [(lit, 1) for lit in agree[j]]
        options_j = [("scratch", own, int(keys[j]))]
        if parent[j] >= 0 and parent[j] in count:
            p = parent[j]
            d = np.flatnonzero(rows[j] != (-1 if negate[j] else 1) * rows[p])
            pd, off = count[p]
            sign = -1 if negate[j] else 1
            # P_j = sign * (sum 2^l d_l + off) + (K if negate) - |D| + 2 * popcount_D(a_j)
            const = sign * off + (k if negate[j] else 0) - len(d)
            terms = [(lit, sign * (1 << l)) for l, lit in enumerate(pd) if lit != FALSE] + [(agree[j][i], 2) for i in d]
            options_j.append(("reuse", terms, int(keys[j]) - const))
        best: tuple | None = None
        for kind, terms, t in options_j:  # try each on a copy of the builder's state, keep the cheaper
            mark = len(net.thresholds)
            lit = build.neuron(terms, t)
            extra = digits(build, terms) if children[j] else None
            cost = len(net.thresholds) - mark
            state = (net.inputs[mark:], net.weights[mark:], net.thresholds[mark:], net.levels[mark:])
            del net.inputs[mark:], net.weights[mark:], net.thresholds[mark:], net.levels[mark:]
            if best is None or cost < best[0]:
                best = (cost, kind, lit, extra, terms, t, state)
        assert best is not None
        cost, kind, lit, extra, terms, t, state = best
        net.inputs += state[0]
        net.weights += state[1]
        net.thresholds += state[2]
        net.levels += state[3]
        used += kind == "reuse"
        outputs[j] = lit
        if extra is not None:  # P_j = the heap's sum + (key - t) = its digits + their offset + (key - t)
            count[j] = (extra[0], extra[1] + int(keys[j]) - t)
    if check:
        verify(net, outputs, rows, keys)

    def network(scratch: _Scratch, lits: list[int]) -> LayerNetwork:
        """As a LayerNetwork, for its depth and the identity cells a clocked (FTL) network needs."""
        inputs, weights, thresholds, levels = _arrays(scratch, options.max_fan_in)
        zeros = np.zeros((c, 1), dtype=np.int64)
        return LayerNetwork(0, "bench", "xnor", k, k, c, 1, inputs, weights, (weights != 0).sum(1), thresholds, levels,
                            np.asarray(lits, dtype=np.int64).reshape(c, 1), np.zeros((c, 1, 2), dtype=np.int64),
                            zeros, np.zeros((c, 2), dtype=np.int64))

    return network(scratch_net, plain), network(net, [outputs[j] for j in range(c)]), used


def verify(net: _Scratch, outputs: dict, rows: np.ndarray, keys: np.ndarray, n: int = 2000) -> None:
    """Evaluate the built gates on random inputs against [popcount(xnor(x, w)) >= key]."""
    c, k = rows.shape
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2, (n, k))
    values = np.zeros((1 + k + len(net.thresholds), n), dtype=np.int64)
    values[1:1 + k] = x.T
    for g, (ins, ws, t) in enumerate(zip(net.inputs, net.weights, net.thresholds)):
        values[1 + k + g] = (np.asarray(ws) @ values[list(ins)] >= t)

    def lit(v):
        return values[v >> 1] ^ (v & 1) if v > TRUE else np.full(n, v)

    want = ((x[:, None, :] == (rows[None] > 0)).sum(2) >= keys[None]).astype(np.int64)
    got = np.stack([lit(outputs[j]) for j in range(c)], 1)
    assert np.array_equal(got, want), "a reuse network differs from its neuron"


def main() -> None:
    """Usage: tl_channel_reuse.py [--no-check] [--layers 1,2] [--max-depth 0,2,4] (0: unbounded)."""
    options = MapThresholdLogic()
    check = "--no-check" not in sys.argv

    def arg(name: str, default: str) -> list[int]:
        return [int(v) for v in (sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default).split(",")]

    layers, depths = arg("--layers", "0,1,2"), arg("--max-depth", "0")
    print(f"{options}, tree: build_tree(add_cost=0, max_depth); each neuron takes the cheaper of scratch and reuse")
    print(f"{'model':<22} {'layer':>5} {'K':>4} {'C':>4} {'max-depth':>9} {'mean min(d,K-d)':>15} {'TLGs scratch':>12} "
          f"{'TLGs reuse':>10} {'saved':>6} {'reused':>6} {'depth':>10} {'clocked saved':>13} {'s':>5}")
    for what, path in MODELS.items():
        design = tl_design(driver.compile_model(path, driver.Options()).graph)
        for layer in design.layers:
            if layer.index not in layers or not hasattr(layer, "weights") or cmos_reason(layer) \
                    or np.shape(layer.thresholds)[-1] != 1:
                continue
            rows = np.asarray(layer.weights, dtype=np.int64)
            c, k = rows.shape
            t = np.asarray(layer.thresholds, dtype=np.int64).reshape(c)
            keys = -((-(t + k)) // 2)  # dot = 2P - K >= t  <=>  P >= ceil((t + K) / 2)
            for max_depth in depths:
                start = time.perf_counter()
                tree = build_tree(rows, add_cost=0, max_depth=max_depth)
                dist = [int(min((rows[j] != rows[p]).sum(), k - (rows[j] != rows[p]).sum()))
                        for j, p in enumerate(tree.parent) if p >= 0]
                plain, shared, used = layer_gates(rows, keys, options, check, max_depth)
                scratch, reuse = plain.gates, shared.gates
                # clocked FTL cells: identity cells carry signals across the stages they skip
                clocked = 1 - (reuse + shared.identity_cells()) / (scratch + plain.identity_cells())
                depth = f"{plain.depth} -> {shared.depth}"
                print(f"{what:<22} {layer.index:>5} {k:>4} {c:>4} {max_depth or '-':>9} "
                      f"{statistics.mean(dist) if dist else 0:>15.1f} {scratch:>12,} {reuse:>10,} "
                      f"{1 - reuse / scratch:>6.1%} {used:>6} {depth:>10} {clocked:>13.1%} {time.perf_counter() - start:>5.0f}")


if __name__ == "__main__":
    main()
