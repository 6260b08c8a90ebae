"""Fixed point for the values that flow on between layers (QFX): residual shortcuts, BatchNorm
on a non-binary path, PReLU, average pools, full-precision layers.

fold-thresholds folds every affine that only feeds a sign or threshold into integer thresholds,
exactly. What is left exact after it is a value that really flows on -- x in Bi-Real's
x + BN(conv(sign(x))), an RPReLU output -- and hardware must carry it. This module turns each
such value into a fixed-point code with `frac` fraction bits:

  affine   y = a*x + b on a code x with fx fraction bits:
           q = floor((x * m + n) / 2**s),  m = round(a * 2**(frac - fx + s)),
           n = round(b * 2**(frac + s)) + 2**(s-1);  s = the fewest low bits that hold every m
           exactly, else the bit length of max|x|, so that |q - y * 2**frac| <= 1 (one unit of
           the last place) -- or exact, with s = 0 and up to EXACT_GROWTH more fraction bits,
           when a and b are fine enough powers-of-two fractions (an average's 1/4 or 1/16)
  prelu    y = x (x >= 0), slope * x (x < 0): the same with m = 2**s and a negative-side
           multiplier round(slope * 2**s); the code keeps x's fraction bits
  add      a + b: the code with fewer fraction bits is shifted left to line up (exact)
  sum pool exact on codes

Signs and thresholds on the new codes are then folded by fold-thresholds into exact
comparators on the code. The rounding can move a value by at most `error[value]` (tracked per
value from the per-op bounds); a sign or threshold whose input lies within that distance of its
threshold may flip, which is why fold-fixed-point chooses `frac` from calibration samples (the
smallest whose bound holds on every one of them) and the verify table measures the rest.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from ..ir import exact
from ..ir.fixed_ops import Add, FixedAffine, PReLU, SumPool
from ..ir.graph import Graph
from ..ir.ops import Affine, ArgMax, Conv, Dense, Op, Pool, Reshape, Sign, Softmax, Threshold, Transpose
from ..ir.types import frac_bits, is_integer

HALF_UNIT = Fraction(1, 2)
EXACT_GROWTH = 4  # extra fraction bits an affine may take to stay exact (a 4x4 average: 1/16)


def _magnitude(elem) -> int:
    return max(abs(elem.lo), abs(elem.hi))


def final(graph: Graph, value: str) -> bool:
    """The value is the scores: only an argmax or softmax (or nothing) reads it."""
    return all(isinstance(c, (ArgMax, Softmax)) for c in graph.consumers(value))


def flows_on(graph: Graph) -> bool:
    """Anything for this module to do: an exact op (other than the final scores) on codes."""
    return any(_convertible(graph, op, graph.types) for op in graph.ops)


def _convertible(graph: Graph, op: Op, types: dict) -> bool:
    if isinstance(op, Affine):
        return is_integer(types[op.inputs[0]].elem) and not final(graph, op.out)
    if isinstance(op, (PReLU, Add)):
        return all(is_integer(types[i].elem) for i in op.inputs)
    return False


def _exact_frac(a: list[Fraction], b: list[Fraction], fx: int) -> int | None:
    """The fewest fraction bits that hold a*x + b exactly for every code x with fx fraction
    bits (None unless every a and b is dyadic)."""
    need = fx
    for v, base in [(v, fx) for v in a] + [(v, 0) for v in b]:
        den = v.denominator
        if den & (den - 1):
            return None
        need = max(need, base + den.bit_length() - 1)
    return need


def _multiplier_shift(factors: list[Fraction], xmax: int) -> int:
    """Low bits for multipliers round(f * 2**s): the fewest that hold every f exactly (an
    average's 1/16: 4, a PReLU slope of 0.25: 2), else enough that their rounding moves the
    product by at most half a unit over inputs up to xmax."""
    exact_at = next((s for s in range(1, xmax.bit_length() + 1) if all((v * (1 << s)).denominator == 1 for v in factors)),
                    None)
    return exact_at or max(1, xmax.bit_length())


def _requantize(op: Affine, x_elem, channels: int, frac: int) -> FixedAffine:
    fx, xmax = frac_bits(x_elem), _magnitude(x_elem)
    scale, offset = exact.channel_fractions(op.scale, channels), exact.channel_fractions(op.bias, channels)
    exact_frac = _exact_frac(scale, offset, fx)
    if exact_frac is not None and exact_frac <= frac + EXACT_GROWTH:  # e.g. an average pool's 1/4
        frac = exact_frac
    a = [v * Fraction(1 << frac, 1 << fx) for v in scale]  # per code unit
    b = [v * (1 << frac) for v in offset]
    if all(v.denominator == 1 for v in a + b):
        shift, half = 0, 0
    else:
        shift = _multiplier_shift(a, xmax)
        half = 1 << (shift - 1)
    unit = 1 << shift
    mult = [round(v * unit) for v in a]
    bias = [round(v * unit) + half for v in b]
    # |q - y * 2**frac| <= xmax * max|a - m/2**s| + max|b - (n - half)/2**s| + 1/2 (the floor), in units
    err = (xmax * max(abs(v - Fraction(m, unit)) for v, m in zip(a, mult))
           + max(abs(v - Fraction(n - half, unit)) for v, n in zip(b, bias)) + (HALF_UNIT if shift else 0))
    return FixedAffine(op.out, op.inputs, mult=exact.int64_array(mult), bias=exact.int64_array(bias), frac=frac,
                       error_bound=float(err / (1 << frac)), shift=shift, origin=op.origin)


def _fixed_prelu(op: PReLU, x_elem, channels: int) -> FixedAffine:
    slopes = exact.channel_fractions(op.slope, channels)
    if all(v.denominator == 1 for v in slopes):
        shift, half = 0, 0
    else:
        shift = _multiplier_shift(slopes, _magnitude(x_elem))
        half = 1 << (shift - 1)
    unit = 1 << shift
    neg = [round(v * unit) for v in slopes]
    err = _magnitude(x_elem) * max(abs(v - Fraction(m, unit)) for v, m in zip(slopes, neg)) + (HALF_UNIT if shift else 0)
    return FixedAffine(op.out, op.inputs, mult=exact.int64_array([unit] * channels), bias=exact.int64_array([half] * channels),
                       frac=frac_bits(x_elem), error_bound=float(err / (1 << frac_bits(x_elem))), shift=shift,
                       neg_mult=exact.int64_array(neg), origin=op.origin)


def _aligned_add(op: Add, a_elem, b_elem) -> Add:
    fa, fb = frac_bits(a_elem), frac_bits(b_elem)
    top = max(fa, fb)
    return Add(op.out, op.inputs, shifts=(top - fa, top - fb), origin=op.origin)


def to_fixed(graph: Graph, frac: int) -> tuple[Graph, dict[str, float]]:
    """Every exact value that flows on, as a fixed-point code with `frac` fraction bits; and per
    value, how far rounding can have moved it (0: exact), assuming no sign before it flipped."""
    error: dict[str, float] = {}
    types = dict(graph.inputs)  # the new graph's types, op by op
    ops = []
    for op in graph.ops:
        if _convertible(graph, op, types):
            elems = [types[v].elem for v in op.inputs]
            channels = graph.types[op.out].shape[0]
            if isinstance(op, Affine):
                op = _requantize(op, elems[0], channels, frac)
            elif isinstance(op, PReLU):
                op = _fixed_prelu(op, elems[0], channels)
            else:
                assert isinstance(op, Add)  # _convertible admits Affine, PReLU and Add only
                op = _aligned_add(op, *elems)
        ops.append(op)
        types[op.out] = op.result_type([types[v] for v in op.inputs])
        old = graph.producer(op.out)
        assert old is not None  # op (or the op it replaced) is one of graph's
        error[op.out] = _error(graph, old, op, error)
    return graph.with_ops(ops), error


def _error(graph: Graph, old: Op, new: Op, error: dict[str, float]) -> float:
    """How far the new op's output can be from the exact one: its inputs' errors carried
    through (with the gain of the exact op), plus its own rounding."""
    moved = _propagated(graph, old, error)
    return moved + (new.error_bound if isinstance(new, FixedAffine) and not isinstance(old, FixedAffine) else 0.0)


def _propagated(graph: Graph, op: Op, error: dict[str, float]) -> float:
    """How far an op's output can move when its inputs moved by error[input] (and it is exact)."""
    inputs = [error.get(v, 0.0) for v in op.inputs]
    if not any(inputs):
        return 0.0
    if isinstance(op, (Reshape, Transpose, Pool)):
        return inputs[0]
    if isinstance(op, SumPool):
        return inputs[0] * op.kernel[0] * op.kernel[1]
    if isinstance(op, (Dense, Conv)):
        rows = np.abs(op.weights.reshape(op.weights.shape[0], -1).astype(np.int64)).sum(axis=1)
        return inputs[0] * float(rows.max(initial=0))
    if isinstance(op, Affine):
        return inputs[0] * max(abs(float(v)) for v in np.ravel(op.scale))
    if isinstance(op, PReLU):
        return inputs[0] * max([1.0] + [abs(float(v)) for v in np.ravel(op.slope)])
    if isinstance(op, Add):
        return sum(inputs)
    if isinstance(op, (Threshold, Sign)):
        return 0.0  # the bound assumes no binarized value flips (see the module's docstring)
    return max(inputs)
