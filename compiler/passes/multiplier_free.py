"""fold-fixed-point's `multiplier-free=K` option: every constant that hardware multiplies by gets
at most K signed power-of-two digits, so that backends build each product as K shifts and adds.

Before the values that flow on become fixed point (qfx.py) and the scores' affine a fixed-point
multiply-add, this rounds
  - the scale of every affine and the slope of every PReLU, per channel, to the nearest number
    with at most K signed digits (any exponents): the fixed-point multipliers made from them
    are round(a * 2**s) for a power of two 2**s, and rounding such a number to a coarser grid
    keeps at most K digits (a dropped tail is less than 2/3 of a unit, so it rounds to 0 or one
    unit, and it held at least one digit);
  - the integer weights of every dense and conv layer with multi-bit weights (+-1, ternary and
    0/1 weights have one digit and stay) to the nearest integer with at most K digits -- to
    w * a / a' when the layer feeds an affine alone whose scale a was rounded to a', so that
    the weights make up for their scale's rounding: each product a' * w' lands near a * w (with
    K = 1 it is the power of two nearest a * w, within a third of it, where two roundings
    one after the other could compound to 7/9).
Thresholds that fold-thresholds made before stay as they are: they compare the accumulator (or
the code) whatever the weights, so rounding the weights now is rounding them before folding.

This changes the model, as --quantize-weights does: no bound against the original holds any
more. `constrain` says, per layer, how far its constants moved (`notes`: the compile output);
the verify table measures the rest.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np

from ..diagnostics import quote
from ..ir import exact
from ..ir.fixed_ops import FixedAffine, PReLU
from ..ir.graph import Graph
from ..ir.ops import Affine, Conv, Dense, weight_element
from ..ir.signed_digits import digit_count, nearest_signed_digits
from ..ir.types import Int

MAX_TERMS = 8


@dataclass(frozen=True)
class Moved:
    origin: str  # the ONNX node
    what: str  # "weights", "scales", "slopes"
    changed: int  # how many constants moved
    total: int
    relative: float  # the largest |new - old| / |old| among them
    compensated: bool = False  # weights: rounded with their channel's scale rounding made up for


def _rounded_fractions(param: np.ndarray, k: int) -> np.ndarray:
    out = np.empty(param.shape, dtype=object)
    for index, v in np.ndenumerate(param):
        out[index] = nearest_signed_digits(Fraction(v), k)
    return out


def _rounded_weights(weights: np.ndarray, k: int, gain: list[Fraction] | None) -> np.ndarray:
    """Each weight w of output channel c to the nearest integer with at most k digits to
    w * gain[c] (gain None: 1)."""
    rows = weights.reshape(weights.shape[0], -1).astype(np.int64)
    new = np.empty(rows.shape, dtype=np.int64)
    for c, row in enumerate(rows):
        g = Fraction(1) if gain is None else gain[c]
        table = {int(v): nearest_signed_digits(int(v) * g, k, 0) for v in np.unique(row)}
        new[c] = [int(table[int(v)]) for v in row]
    return new.reshape(weights.shape).astype(np.int8 if np.abs(new).max(initial=0) < 128 else np.int16)


def _moved(origin: str, what: str, old: np.ndarray, new: np.ndarray, gain: list[Fraction] | None = None) -> Moved | None:
    """How many constants moved and the largest relative change; with a per-channel `gain`
    (weights, axis 0), of new / gain against old: the change of the channel's products."""
    if gain is None:
        pairs = [(Fraction(a), Fraction(b)) for a, b in zip(np.ravel(old).tolist(), np.ravel(new).tolist()) if a != b]
    else:
        rows = zip(old.reshape(old.shape[0], -1).tolist(), new.reshape(new.shape[0], -1).tolist(), gain)
        pairs = [(Fraction(a), Fraction(b) / g) for o, n, g in rows for a, b in zip(o, n) if a * g != b]
    if not pairs:
        return None
    relative = max(float(abs(b - a) / abs(a)) for a, b in pairs)
    return Moved(origin, what, len(pairs), int(np.size(old)), relative, gain is not None)


def _gains(graph: Graph, op: Dense | Conv, scales: dict[str, np.ndarray]) -> list[Fraction] | None:
    """Per output channel, a / a' for the affine alone behind a weight layer (scale a, rounded
    to a'): rounding the weights to w * a / a' makes up for the rounding of the scale, so each
    product a' * w' lands near a * w (None: no such affine, or a scale rounded to 0)."""
    readers = graph.consumers(op.out)
    affine = readers[0] if len(readers) == 1 else None
    if not isinstance(affine, Affine) or affine.out not in scales:
        return None
    channels = op.weights.shape[0]
    old, new = (exact.channel_fractions(p, channels) for p in (affine.scale, scales[affine.out]))
    if any(b == 0 for b in new):
        return None
    return [a / b for a, b in zip(old, new)]


def constrain(graph: Graph, k: int) -> tuple[Graph, list[Moved]]:
    """The graph with every multiplied constant rounded to at most k signed digits, and what moved.
    Multi-bit weights are rounded after their scale, with its rounding made up for (_gains)."""
    if not 1 <= k <= MAX_TERMS:
        raise ValueError(f"multiplier-free={k}: choose 1 to {MAX_TERMS} signed powers of two per multiplier")
    device = [op for op in graph.ops if not graph.on_host(op)]
    scales = {op.out: _rounded_fractions(op.scale, k) for op in device if isinstance(op, Affine)}
    ops, moves = [], []
    for op in graph.ops:
        new, moved = op, None
        if op not in device:
            pass
        elif isinstance(op, Affine):
            new = replace(op, scale=scales[op.out])
            moved = _moved(op.origin, "scales", op.scale, new.scale)
        elif isinstance(op, PReLU):
            new = replace(op, slope=_rounded_fractions(op.slope, k))
            moved = _moved(op.origin, "slopes", op.slope, new.slope)
        elif isinstance(op, (Dense, Conv)) and isinstance(weight_element(op.weights), Int):
            gain = _gains(graph, op, scales)
            new = replace(op, weights=_rounded_weights(op.weights, k, gain))
            moved = _moved(op.origin, "weights", op.weights, new.weights, gain)
        if moved is None:
            new = op
        else:
            moves.append(moved)
        ops.append(new)
    return graph.with_ops(ops), moves


def notes(moves: list[Moved], k: int) -> list[str]:
    """One line per layer whose constants moved, for the compile output."""
    digits = f"at most {k} signed power{'s' if k > 1 else ''} of two"
    return [f"multiplier-free: node {quote(m.origin)}: {m.changed} of {m.total} {m.what} rounded to {digits}"
            f"{' (making up for the rounding of their channel scale)' if m.compensated else ''}; the largest "
            f"{'product with its scale ' if m.compensated else ''}moved by {100 * m.relative:.3g}% of itself"
            for m in moves]


def max_digits(values) -> int:
    """The most signed digits of any integer in `values` (0 for none)."""
    return max((digit_count(int(v)) for v in np.unique(np.asarray(values, dtype=np.int64))), default=0)


def multiplier_digits(graph: Graph) -> int:
    """The most signed digits of any constant hardware multiplies by: weights of dense and conv
    layers, mult and neg_mult of fixed-point affines."""
    most = 0
    for op in graph.ops:
        if isinstance(op, (Dense, Conv)):
            most = max(most, max_digits(op.weights))
        elif isinstance(op, FixedAffine):
            most = max(most, max_digits(op.mult), 0 if op.neg_mult is None else max_digits(op.neg_mult))
    return most
