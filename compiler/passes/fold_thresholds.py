"""fold-thresholds: BatchNorm/scale/bias + sign (or MultiThreshold) -> integer thresholds.

For an integer input s (or fixed-point code) and the exact affine y = a*s + b in front of it:
  threshold t:   a > 0:  y >= t  <=>  s >= ceil((t - b) / a)
                 a < 0:  y >= t  <=>  s <= floor((t - b) / a)  <=>  not s >= floor(...) + 1,
                         so the levels reverse and the output values are read backwards
                 strict (y > t, a rounding quantizer's odd levels): floor(...) + 1 and ceil(...)
                 a = 0:  y = b, a constant level
  sign:          tau = -b / a;  s < ceil(tau) | ceil(tau) <= s <= floor(tau) | s > floor(tau),
                 i.e. thresholds [ceil(tau), floor(tau) + 1] and values [-, zero, +] (reversed
                 for a < 0). The middle level is empty unless tau is an integer: a Sign whose
                 zero can never occur becomes a plain bipolar activation.
Levels that are empty or repeat a neighbour's value are then dropped, and thresholds are
clipped to the input's range so that they fit in the accumulator's width.

A pool in front of a threshold moves behind it, where it works on bits instead of accumulators:
f(max(a)) = max(f(a)) for a non-decreasing f and min(f(a)) for a non-increasing one, so a max
pool in front of a negative-gamma channel becomes a min pool (an AND of bits) behind it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction
from math import ceil, floor

import numpy as np

from ..ir import exact
from ..ir.fixed_ops import FixedAffine
from ..ir.graph import Graph
from ..ir.ops import Affine, Op, Pool, Sign, Threshold
from ..ir.types import Bipolar, Fixed, Int, Ternary, is_integer
from . import contracts
from .manager import Pass, PassError, register


def _integer_rows(a: Fraction, b: Fraction, thresholds: list, values: list, strict) -> tuple[list[int], list]:
    """One channel of threshold(a*s + b) as thresholds on s (strict: a*s + b > t)."""
    count = len(thresholds)
    if a == 0:
        level = sum(1 for t, gt in zip(thresholds, strict) if (b > t if gt else b >= t))
        return [0] * count, [values[level]] * (count + 1)
    bounds = [(Fraction(t) - b) / a for t in thresholds]
    if a > 0:  # s >= u, or s > u  <=>  s >= floor(u) + 1
        return [floor(u) + 1 if gt else ceil(u) for u, gt in zip(bounds, strict)], list(values)
    # s <= u, i.e. not s >= floor(u) + 1; or s < u, i.e. not s >= ceil(u)
    raised = sorted(ceil(u) if gt else floor(u) + 1 for u, gt in zip(bounds, strict))
    return raised, list(reversed(values))


def _sign_rows(a: Fraction, b: Fraction, zero: int) -> tuple[list[int], list[int]]:
    if a == 0:
        value = 1 if b > 0 else -1 if b < 0 else zero
        return [0, 0], [value] * 3
    tau = -b / a
    low, high = (-1, 1) if a > 0 else (1, -1)
    return [ceil(tau), floor(tau) + 1], [low, zero, high]


def _compact_row(t: list[int], v: list[int], lo: int, hi: int) -> tuple[list[int], list[int]]:
    """One channel with empty levels and equal neighbours merged (thresholds clipped first)."""
    t = [min(max(x, lo), hi + 1) for x in t]
    j = 0
    while j < len(t):
        below = t[j - 1] if j > 0 else lo
        above = t[j + 1] if j + 1 < len(t) else hi + 1
        if v[j] == v[j + 1] or above <= t[j]:  # level j+1 empty or equal: drop its lower bound
            del t[j], v[j + 1]
        elif t[j] <= below:  # level j empty
            del t[j], v[j]
        else:
            j += 1
    return t, v


def simplify(thresholds: np.ndarray, values: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Per channel, clip thresholds to the input range [lo, hi] and drop levels that are empty
    or repeat a neighbour; then pad every channel to the longest with thresholds that never
    fire (hi + 1), so hardware compares as few levels as the model needs."""
    rows = [_compact_row(list(map(int, t)), list(map(int, v)), lo, hi) for t, v in zip(thresholds, values)]
    levels = max(1, max(len(t) for t, _ in rows))
    t_out = exact.int64_array(x for t, _ in rows for x in t + [hi + 1] * (levels - len(t)))
    v_out = exact.int64_array(x for _, v in rows for x in v + [v[-1]] * (levels + 1 - len(v)))
    return t_out.reshape(len(rows), levels), v_out.reshape(len(rows), levels + 1)


def absorbed_affine(graph: Graph, op: Op) -> Affine | None:
    """The exact affine in front of a sign or threshold that folding absorbs into it: one that
    only this op reads (and that is not a graph output); None if there is none."""
    src = op.inputs[0]
    aff = graph.producer(src)
    if isinstance(aff, Affine) and len(graph.consumers(src)) == 1 and src not in graph.outputs:
        return aff
    return None


@register
@dataclass(frozen=True)
class FoldThresholds(Pass):
    name = "fold-thresholds"
    ensures = (contracts.SIGNS_FOLDED,)

    def run(self, graph: Graph) -> Graph:
        ops: list[Op] = []
        for op in graph.ops:
            try:
                folded = self._fold(graph, op) if isinstance(op, (Sign, Threshold)) else None
            except exact.RangeError as exc:  # output levels beyond int64, from absurd constants
                raise PassError(f"{op.kind} %{op.out} (from ONNX node '{op.origin}'): {exc}") from None
            if folded is None:
                ops.append(op)
                continue
            dropped, new = folded
            if dropped is not None:
                ops.remove(dropped)
            ops.append(new)
        return _pools_after_thresholds(_through_fixed_affines(graph.with_ops(ops)))

    def _fold(self, graph: Graph, op: Sign | Threshold) -> tuple[Affine | None, Threshold] | None:
        """(affine op absorbed or None, integer Threshold) -- or None when op cannot fold here."""
        aff = absorbed_affine(graph, op)
        if aff is not None:
            base, scale, bias = aff.inputs[0], aff.scale, aff.bias
        else:
            base = op.inputs[0]
            scale, bias = np.array(Fraction(1), dtype=object), np.array(Fraction(0), dtype=object)
        elem = graph.types[base].elem
        if not isinstance(elem, (Int, Fixed, Bipolar, Ternary)):
            return None
        if isinstance(op, Threshold) and op.integer and aff is None and not isinstance(elem, Fixed):
            return None  # already folded
        channels = graph.types[base].shape[0]
        code_scale = Fraction(1, 1 << elem.frac) if isinstance(elem, Fixed) else Fraction(1)
        a_s = [a * code_scale for a in exact.channel_fractions(scale, channels)]
        b_s = exact.channel_fractions(bias, channels)
        rows_t, rows_v = [], []
        for c in range(channels):
            if isinstance(op, Sign):
                t, v = _sign_rows(a_s[c], b_s[c], op.zero)
            else:
                row = c if op.thresholds.shape[0] > 1 else 0
                vrow = c if op.values.shape[0] > 1 else 0
                strict = op.strict or (False,) * op.thresholds.shape[1]
                t, v = _integer_rows(a_s[c], b_s[c], list(op.thresholds[row]), list(op.values[vrow]), strict)
            rows_t.append(t)
            rows_v.append(v)
        values = np.array(rows_v, dtype=object)
        if not all(Fraction(x).denominator == 1 for x in values.ravel()):
            return None  # non-integer outputs: fold-constants factors a scale out first
        thresholds, values = simplify(np.array(rows_t, dtype=object), values, elem.lo, elem.hi)
        return aff, Threshold(op.out, (base,), thresholds=thresholds, values=values, origin=op.origin)


def _through_fixed_affines(graph: Graph) -> Graph:
    """threshold(fixed_affine(x)) -> threshold'(x): with y = floor((x*m + n) / 2**s),
    y >= t  <=>  x*m + n >= t * 2**s, an exact affine threshold on the integer x (QFX leaves
    these where an average pool's division sits in front of a sign)."""
    ops: list[Op | None] = list(graph.ops)
    for i, op in enumerate(graph.ops):
        if not (isinstance(op, Threshold) and op.integer):
            continue
        aff = graph.producer(op.inputs[0])
        if not (isinstance(aff, FixedAffine) and aff.neg_mult is None and len(graph.consumers(aff.out)) == 1
                and aff.out not in graph.outputs):
            continue
        elem = graph.types[aff.inputs[0]].elem
        assert is_integer(elem)  # a FixedAffine reads integer codes (its result_type checks)
        channels = graph.types[aff.out].shape[0]
        mult, bias = (exact.channel_fractions(np.asarray(p, dtype=object), channels) for p in (aff.mult, aff.bias))
        rows_t, rows_v = [], []
        for c in range(channels):
            row, vrow = (c if op.thresholds.shape[0] > 1 else 0), (c if op.values.shape[0] > 1 else 0)
            scaled = [int(t) << aff.shift for t in op.thresholds[row]]
            t, v = _integer_rows(mult[c], bias[c], scaled, list(op.values[vrow]), (False,) * len(scaled))
            rows_t.append(t)
            rows_v.append(v)
        thresholds, values = simplify(np.array(rows_t, dtype=object), np.array(rows_v, dtype=object), elem.lo, elem.hi)
        ops[ops.index(aff)] = None
        ops[i] = Threshold(op.out, aff.inputs, thresholds=thresholds, values=values, origin=op.origin)
    return graph.with_ops([op for op in ops if op is not None])


def _monotone(row: np.ndarray) -> int:
    """+1 if the values never decrease with the level, -1 if they never increase, 0 otherwise."""
    steps = np.diff(row.astype(np.int64))
    return 1 if np.all(steps >= 0) else -1 if np.all(steps <= 0) else 0


def _pools_after_thresholds(graph: Graph) -> Graph:
    """Swap threshold(pool(x)) -> pool'(threshold(x)) until none is left (each swap moves a
    pool one op later, so there are at most as many rounds as ops)."""
    for _ in range(len(graph.ops)):
        swap = next(((op, pool) for op in graph.ops
                     if isinstance(op, Threshold) and op.integer
                     and isinstance(pool := graph.producer(op.inputs[0]), Pool)
                     and len(graph.consumers(pool.out)) == 1
                     and _swappable(op, pool)), None)
        if swap is None:
            return graph
        op, pool = swap
        channels = pool.modes.shape[0]
        values = np.broadcast_to(op.values, (channels, op.values.shape[1]))
        direction = np.array([_monotone(v) for v in values])
        ops = list(graph.ops)
        ops[ops.index(pool)] = replace(op, inputs=pool.inputs, out=pool.out)
        ops[ops.index(op)] = replace(pool, inputs=(pool.out,), out=op.out, modes=(pool.modes * direction).astype(np.int8))
        graph = graph.with_ops(ops)
    return graph


def _swappable(op: Threshold, pool: Pool) -> bool:
    values = np.broadcast_to(op.values, (pool.modes.shape[0], op.values.shape[1]))
    return all(_monotone(v) != 0 for v in values)  # a non-monotone channel keeps the pool on integers
