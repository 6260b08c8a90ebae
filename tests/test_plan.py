"""The layer plan (backends/plan.py): normalised thresholds keep every comparison, each backend's
reuse policy builds exact children, and the XNOR counts are what the children need."""
from __future__ import annotations

import numpy as np
import pytest
from bnnc.backends.hardware import Layer
from bnnc.backends.plan import Mode, ReusePolicy, plan_layer
from bnnc.ir.types import Bipolar, Int, int_for_range
from bnnc.passes.channel_reuse import build_tree


def layer(in_elem, k=12, c=6, thresholds=None, seed=0, pe=None, simd=None, weights=None, reuse=None):
    rng = np.random.default_rng(seed)
    span = k * max(abs(in_elem.lo), abs(in_elem.hi))
    if weights is None:
        weights = rng.choice([-1, 1], size=(c, k)).astype(np.int8)
    if thresholds is None:  # around and far outside the reachable dot products, ascending
        thresholds = np.sort(rng.integers(-3 * span, 3 * span + 1, size=(c, 3)), axis=1)
    values = np.tile(np.arange(thresholds.shape[1] + 1) - 1, (c, 1))  # -1, 0, 1, 2: the level index - 1
    return Layer(index=0, origin="n", in_elem=in_elem, out_elem=Int(3, True), weights=weights,
                 acc_elem=int_for_range(-span, span), thresholds=thresholds, values=values,
                 pe=pe or c, simd=simd or k, reuse=reuse)


@pytest.mark.parametrize("in_elem", [Bipolar(), Int(3, False), Int(4, True)], ids=str)
@pytest.mark.parametrize("seed", range(4))
def test_normalised_thresholds_keep_every_comparison(in_elem, seed):
    lay = layer(in_elem, seed=seed)
    p = plan_layer(lay)
    k = lay.in_count
    span = k * max(abs(in_elem.lo), abs(in_elem.hi))
    t = p.thresholds
    for dot in range(-span, span + 1):
        if p.mode == Mode.XNOR and (dot + k) % 2:
            continue  # 2P - K has the parity of K
        counted = (dot + k) // 2 if p.mode == Mode.XNOR else dot  # what the counting accumulator holds
        for ch in range(lay.out_count):
            level = int(np.sum(dot >= lay.thresholds[ch]))
            assert int(np.sum(dot >= t.dot[ch])) == level
            assert int(np.sum(counted >= t.counting[ch])) == level
            assert t.codes[ch, level] == (level - 1) & 0b111  # the 3-bit two's complement code


def test_constant_channels_get_one_threshold_never_reached():
    lay = layer(Bipolar(), thresholds=np.zeros((6, 0), dtype=np.int64))
    t = plan_layer(lay).thresholds
    assert t.levels == 1 and t.dot.shape == (6, 1) and t.codes.shape == (6, 2)
    assert (t.counting > lay.in_count).all() and (t.dot > lay.in_count).all()  # beyond every popcount / dot
    assert (t.codes[:, 0] == 7).all()  # the value -1 whatever the level


def noisy_rows(c=8, k=32, seed=1):
    """Rows that are noisy copies (and negations) of two prototypes, so reuse pays off."""
    rng = np.random.default_rng(seed)
    protos = rng.choice([-1, 1], size=(2, k))
    rows = protos[np.arange(c) % 2] * rng.choice([-1, 1], size=(c, 1))
    for row in rows:
        row[rng.choice(k, rng.integers(1, 6), replace=False)] *= -1
    return rows.astype(np.int8)


@pytest.mark.parametrize("pe, simd, group", [(8, 32, 0), (8, 8, 0), (4, 32, 4), (2, 16, 2)])
def test_reuse_policies_build_exact_children_and_count_their_terms(pe, simd, group):
    rows = noisy_rows()
    tree = build_tree(rows, add_cost=2, group=group)
    lay = layer(Bipolar(), k=32, c=8, weights=rows, pe=pe, simd=simd, reuse=tree)
    p = plan_layer(lay)
    x = np.random.default_rng(2).choice([-1, 1], size=32)
    y = rows.astype(np.int64) @ x
    for policy in ReusePolicy:
        children = p.reuse(policy).children
        for ch in children:  # exact: the parent's sum plus twice the child's sum over D
            s = -1 if ch.negate else 1
            assert y[ch.channel] == s * y[ch.parent] + 2 * int(rows[ch.channel, ch.differing] @ x[ch.differing])
        differ = {ch.channel: int(np.sum(rows[ch.channel] != (-1 if ch.negate else 1) * rows[ch.parent]))
                  for ch in children}
        assert p.terms_per_vector(policy) == sum(differ.get(c, 32) for c in range(8))
    verilog = {ch.channel for ch in p.reuse(ReusePolicy.ALL_CHANNELS).children}
    hls = {ch.channel for ch in p.reuse(ReusePolicy.CHANNEL_GROUP).children}
    assert len(hls) == int(np.sum(tree.parent >= 0)) > 0  # grouped trees: every child in its group
    if pe < 8:
        assert not verilog  # lanes are time-shared: the Verilog backend builds no child
        assert p.terms_per_clock(ReusePolicy.ALL_CHANNELS) == pe * simd
    else:
        assert verilog and all(simd == 32 or len(ch.differing) <= simd
                               for ch in p.reuse(ReusePolicy.ALL_CHANNELS).children)
        assert p.terms_per_clock(ReusePolicy.ALL_CHANNELS) < pe * simd
    assert p.terms_per_clock(ReusePolicy.CHANNEL_GROUP) == pe * simd
