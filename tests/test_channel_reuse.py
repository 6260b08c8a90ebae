"""channel-reuse: the tree is exact (checked by the interpreter), minimal, and bounded as asked."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from bnnc import interp
from bnnc.driver import sample_inputs
from bnnc.frontend.onnx import import_onnx
from bnnc.ir.ops import Dense, Reuse
from bnnc.passes import DEFAULT_PIPELINE, parse_pipeline, run_pipeline
from bnnc.passes.channel_reuse import build_tree, hamming, tree_stats

from tests.models import exporters as ex


def correlated_rows(seed=0, c=48, k=96, flip=0.05):
    """Channels that are noisy copies (or negations) of a few prototypes, as MST training makes."""
    rng = np.random.default_rng(seed)
    proto = rng.choice([-1, 1], (4, k))
    rows = proto[rng.integers(0, 4, c)] * np.where(rng.random((c, k)) < flip, -1, 1)
    rows[::3] *= -1
    return rows.astype(np.int8)


@pytest.fixture(scope="module")
def brevitas_graph(tmp_path_factory):
    path = ex.brevitas_mlp(tmp_path_factory.mktemp("m") / "m.onnx", sizes=(48, 32, 10), in_features=64)
    graph = import_onnx(path)
    folded, _ = run_pipeline(graph, parse_pipeline(DEFAULT_PIPELINE))
    return folded, sample_inputs(graph, 100)


def test_reuse_is_exact_on_a_real_model(brevitas_graph):
    folded, x = brevitas_graph
    reused, records = run_pipeline(folded, parse_pipeline("channel-reuse"), {folded.inputs[0][0]: x})
    assert records[0].verified == "verified on 100 samples: identical outputs"
    layers = [op for op in reused.ops if isinstance(op, Dense)]
    assert all(op.reuse is not None for op in layers)
    assert sum(tree_stats(op.weights, op.reuse)["xnor_after"] for op in layers) < \
        sum(op.weights.size for op in layers)


def test_any_tree_is_exact_but_the_chosen_one_is_cheapest(brevitas_graph):
    """D is derived from the weights, so the identity holds for every parent and sign: a tree
    can only be costly, never wrong. Flipping a negation keeps the outputs and costs more."""
    folded, x = brevitas_graph
    reused, _ = run_pipeline(folded, parse_pipeline("channel-reuse"))
    dense = next(op for op in reused.ops if isinstance(op, Dense))
    flipped = dense.reuse.negate.copy()
    flipped[dense.reuse.parent >= 0] ^= True
    other = Reuse(dense.reuse.parent, flipped)
    broken = reused.with_ops([replace(op, reuse=other) if op is dense else op for op in reused.ops])
    name = folded.inputs[0][0]
    np.testing.assert_array_equal(interp.run(broken, {name: x}, trace=True)[dense.out],
                                  interp.run(folded, {name: x}, trace=True)[dense.out])
    assert tree_stats(dense.weights, other)["xnor_after"] > tree_stats(dense.weights, dense.reuse)["xnor_after"]


def test_tree_cost_is_minimal_and_complement_edges_are_used():
    rows = correlated_rows()
    tree = build_tree(rows, add_cost=0)
    d = hamming(rows)
    k = rows.shape[1]
    cost = np.minimum(d, k - d)
    # a minimum spanning tree over channels + the 'from scratch' root, checked by brute force Prim
    total = sum(k if p < 0 else cost[p, j] for j, p in enumerate(tree.parent))
    import networkx as nx
    g = nx.Graph()
    g.add_weighted_edges_from((("root", j, k) for j in range(len(rows))))
    g.add_weighted_edges_from(((i, j, int(cost[i, j])) for i in range(len(rows)) for j in range(i)))
    assert total == nx.minimum_spanning_tree(g).size(weight="weight")
    assert tree.negate.any()  # negated prototypes are reused through complement edges


def test_depth_bound_and_groups_are_respected():
    rows = correlated_rows()
    assert tree_stats(rows, build_tree(rows, 0, max_depth=2))["depth"] <= 2
    grouped = build_tree(rows, 0, group=8)
    assert all(p < 0 or p // 8 == j // 8 for j, p in enumerate(grouped.parent))


def test_no_reuse_when_it_is_not_cheaper():
    rows = np.random.default_rng(0).choice([-1, 1], (16, 32)).astype(np.int8)
    assert np.all(build_tree(rows, add_cost=32).parent < 0)


def test_deterministic():
    rows = correlated_rows()
    a, b = build_tree(rows, 3), build_tree(rows, 3)
    assert a.parent.tolist() == b.parent.tolist() and a.negate.tolist() == b.negate.tolist()


def test_auto_folding_puts_reuse_into_hardware_at_the_same_throughput():
    """The committed MST-trained SFC model: with channel-reuse, auto folding computes the hidden
    layers' channels all in one clock (PE = C, input chunks instead), so the RTL builds tree
    children -- at the interval of the folding without reuse, which computes every channel from
    scratch."""
    from pathlib import Path

    from bnnc import driver
    from bnnc.backends.manifest import design_manifest

    model = Path(__file__).resolve().parents[1] / "examples" / "mst_training" / "sfc_mst.onnx"
    manifests = {}
    for name, pipeline in (("plain", DEFAULT_PIPELINE), ("reuse", DEFAULT_PIPELINE + ",channel-reuse")):
        compiled = driver.compile_model(model, driver.Options(pipeline=pipeline))
        manifests[name] = design_manifest(driver.hardware(compiled))
    plain, reuse = manifests["plain"], manifests["reuse"]
    assert reuse["cycles_per_frame"] == plain["cycles_per_frame"]
    hidden = [layer for layer in reuse["layers"] if layer["out_count"] == 256]
    assert len(hidden) == 3 and all(layer["pe"] == 256 and layer["simd"] < layer["in_count"] for layer in hidden)
    assert all(layer["pe"] < 256 for layer in plain["layers"] if layer["out_count"] == 256)
    assert all(layer["reuse"]["children_in_hardware"] > 0 for layer in hidden)
    units = lambda m: m["resources"]["xnors"] + m["resources"]["add_sub_terms"]  # noqa: E731
    # no more parallel XNORs than without reuse: the same unit sizes, minus what the children skip
    assert units(reuse) < units(plain)
