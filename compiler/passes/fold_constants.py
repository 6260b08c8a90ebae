"""fold-constants: exact algebra on constant parameters, so every weight layer sees integers.

Local rewrites (RULES, in order), applied in one topological sweep; each only looks backwards at
ops already rewritten, so one sweep reaches the fixed point and a second one confirms it:
  affine(affine(x))         -> affine(x)               compose scale and bias exactly
  affine(threshold(x))      -> threshold(x)            map the threshold's output values
  sign(threshold(x))        -> threshold(x)            sign of the output values (Larq's Sign(Sign(x)+0.1))
  threshold(x) -> layer     -> affine(g).threshold'    factor a common scale g out of the values
  dense(affine_s(x))        -> affine(dense(x))        scalar s, any bias b: W(sx + b) = sWx + Wb
  conv(affine_s(x))         -> affine(conv(x))         scalar s; bias only without padding; the pad
                                                       value is rescaled and must stay 0 or +-1
  pool(affine(x))           -> affine(pool'(x))        per channel: a < 0 turns max into min
  threshold(threshold(x))   -> threshold(x)            the outer one applied to the inner's values
  f(layout(x))              -> layout(f(x))            sign, or an affine/threshold with the same
                                                       parameters everywhere, moves above reshapes
                                                       and transposes, so those end up right in
                                                       front of a dense layer (which only
                                                       permutes its weight columns for them)
A dense layer looks through reshapes/transposes for the affine or threshold that feeds it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np

from ..ir import exact
from ..ir.graph import Graph
from .. import interp
from ..ir.ops import Affine, Conv, Dense, Pool, Reshape, Sign, Threshold, Transpose
from ..ir.types import is_integer
from .manager import Pass, PassError, register


def _obj(x) -> np.ndarray:
    """numpy turns 0-d object results into bare scalars; keep every parameter an array."""
    return np.asarray(x, dtype=object)


def _per_channel(param: np.ndarray, channels: int) -> np.ndarray:
    return np.broadcast_to(param, (channels,)).copy() if param.ndim == 0 or param.shape[0] == 1 else param


def _uniform(param: np.ndarray) -> bool:
    return param.ndim == 0 or len(set(param.ravel().tolist())) <= 1


def _scalar(param: np.ndarray) -> np.ndarray:
    return _obj(param.ravel()[0] if param.ndim else param[()])


class _Rewriter:
    """Builds the new op list; `value_of` follows values already rewritten in this sweep."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.ops: list = []
        self.by_out: dict = {}
        self.uses = {name: len(graph.consumers(name)) + (name in graph.outputs) for name in graph.types}

    def emit(self, op):
        self.ops.append(op)
        self.by_out[op.out] = op
        return op

    def single_use_producer(self, value: str, kind):
        op = self.by_out.get(value)
        return op if isinstance(op, kind) and self.uses.get(value, 0) == 1 else None

    def fresh(self, base: str) -> str:
        name, n = f"{base}_pre", 0
        while name in self.graph.types or name in self.by_out:
            n += 1
            name = f"{base}_pre{n}"
        self.uses[name] = 1  # a fresh value feeds exactly the op built next to it
        return name

    def layout_chain(self, value: str) -> list:
        """The single-use reshapes/transposes that end in value, first one first."""
        chain = []
        while (op := self.single_use_producer(value, (Reshape, Transpose))) is not None:
            chain.insert(0, op)
            value = op.inputs[0]
        return chain

    def below_layout(self, value: str) -> str:
        chain = self.layout_chain(value)
        return chain[0].inputs[0] if chain else value

    def type_of(self, value: str):
        return Graph(self.graph.name, self.graph.inputs, tuple(self.ops), (value,)).types[value] \
            if value in self.by_out else dict(self.graph.inputs)[value]


def _compose(inner: Affine, outer: Affine) -> Affine:
    return replace(outer, inputs=inner.inputs, scale=_obj(outer.scale * inner.scale),
                   bias=_obj(outer.scale * inner.bias + outer.bias))


def _map_values(th: Threshold, aff: Affine, channels: int) -> Threshold:
    scale = _per_channel(aff.scale, channels)[:, None]
    bias = _per_channel(aff.bias, channels)[:, None]
    values = np.broadcast_to(th.values, (channels, th.values.shape[1])).astype(object)
    return replace(th, out=aff.out, values=values * scale + bias)


def _factor_scale(th: Threshold) -> Fraction | None:
    """g such that values / g are integers in the smallest range, if values are not integers."""
    vals = [Fraction(v) for v in th.values.ravel()]
    if all(v.denominator == 1 for v in vals):
        return None
    nonzero = [abs(v) for v in vals if v != 0]
    g = min(nonzero)
    return g if all((v / g).denominator == 1 for v in vals) else None


def _affine_of_affine(rw: _Rewriter, op) -> bool:
    inner = isinstance(op, Affine) and rw.single_use_producer(op.inputs[0], Affine)
    if not inner:
        return False
    rw.ops.remove(inner)
    rw.emit(_compose(inner, op))
    return True


def _affine_of_threshold(rw: _Rewriter, op) -> bool:
    th = isinstance(op, Affine) and rw.single_use_producer(op.inputs[0], Threshold)
    if not th:
        return False
    rw.ops.remove(th)
    rw.emit(_map_values(th, op, rw.type_of(op.inputs[0]).shape[0]))
    return True


def _sign_of_threshold(rw: _Rewriter, op) -> bool:
    th = isinstance(op, Sign) and rw.single_use_producer(op.inputs[0], Threshold)
    if not th:
        return False
    rw.ops.remove(th)
    sign = np.vectorize(lambda v: 1 if v > 0 else -1 if v < 0 else op.zero, otypes=[np.int64])
    rw.emit(_simplified(rw, replace(th, out=op.out, values=sign(th.values))))
    return True


def _factor_threshold_scale(rw: _Rewriter, op) -> bool:
    """Emit threshold' + affine(g) in place of a threshold with non-integer values feeding a
    layer; returns False so that the layer itself is handled by the next rules."""
    th = isinstance(op, (Dense, Conv)) and rw.single_use_producer(rw.below_layout(op.inputs[0]), Threshold)
    g = _factor_scale(th) if th else None
    if g is not None:
        rw.ops.remove(th)
        mid = rw.fresh(th.out)
        rw.emit(replace(th, out=mid, values=exact.floor_array(th.values.astype(object) / g)))
        rw.emit(Affine(th.out, (mid,), scale=_obj(g), bias=_obj(Fraction(0)), origin=th.origin))
    return False


def _integer_source(rw: _Rewriter, op, kinds):
    """The single-use Affine feeding op, if op is one of kinds and the Affine reads integers."""
    if not isinstance(op, kinds):
        return None
    aff = rw.single_use_producer(op.inputs[0], Affine)
    return aff if aff is not None and is_integer(rw.type_of(aff.inputs[0]).elem) else None


def _move_below(rw: _Rewriter, aff: Affine, op, scale, bias, **changes) -> bool:
    rw.ops.remove(aff)
    moved = replace(op, out=rw.fresh(op.out), inputs=aff.inputs, **changes)
    rw.emit(moved)
    rw.emit(Affine(op.out, (moved.out,), scale=_obj(scale), bias=_obj(bias), origin=op.origin))
    return True


def _affine_through_dense(rw: _Rewriter, op) -> bool:
    if not isinstance(op, Dense):
        return False
    chain = rw.layout_chain(op.inputs[0])
    src = chain[0].inputs[0] if chain else op.inputs[0]
    aff = rw.single_use_producer(src, Affine)
    if aff is None or not _uniform(aff.scale) or not is_integer(rw.type_of(aff.inputs[0]).elem):
        return False
    # the bias, laid out like the dense layer's input (through the same reshapes/transposes)
    shape = rw.type_of(aff.inputs[0]).shape
    bias = np.broadcast_to(aff.bias.reshape(aff.bias.shape + (1,) * (len(shape) - aff.bias.ndim)) if aff.bias.ndim else aff.bias, shape)
    for layout in chain:
        bias = interp.EVAL[type(layout)](layout, bias[None])[0]
    rw.ops.remove(aff)
    for layout in chain:
        rw.ops.remove(layout)
    cur = aff.inputs[0]
    for layout in chain:
        cur = rw.emit(replace(layout, inputs=(cur,))).out
    moved = replace(op, out=rw.fresh(op.out), inputs=(cur,))
    rw.emit(moved)
    rw.emit(Affine(op.out, (moved.out,), scale=_scalar(aff.scale), bias=exact.dot(op.weights, bias.ravel()),
                   origin=op.origin))
    return True


def _affine_through_conv(rw: _Rewriter, op) -> bool:
    aff = _integer_source(rw, op, Conv)
    if aff is None or not _uniform(aff.scale) or _scalar(aff.scale)[()] == 0:
        return False
    s = _scalar(aff.scale)[()]
    pad = Fraction(op.pad_value) / s
    if any(op.pads) and (pad.denominator != 1 or abs(pad) > 1 or any(b != 0 for b in aff.bias.ravel())):
        return False  # a padded position would need its own bias: leave it, hardware will refuse
    channels = op.weights.shape[1]
    per_in = _per_channel(aff.bias, channels)
    bias = exact.dot(op.weights.sum(axis=(2, 3)), per_in)
    return _move_below(rw, aff, op, s, bias, pad_value=int(pad))


def _affine_through_pool(rw: _Rewriter, op) -> bool:
    aff = isinstance(op, Pool) and rw.single_use_producer(op.inputs[0], Affine)
    if not aff:
        return False
    channels = op.modes.shape[0]
    scale = _per_channel(aff.scale, channels)
    modes = np.array([m if a >= 0 else -m for m, a in zip(op.modes, scale)], dtype=np.int8)
    return _move_below(rw, aff, op, aff.scale, aff.bias, modes=modes)


def _uniform_elementwise(op) -> bool:
    """Ops that do the same to every element, so they commute with data movement."""
    if isinstance(op, Sign):
        return True
    if isinstance(op, Affine):
        return _uniform(op.scale) and _uniform(op.bias)
    if isinstance(op, Threshold):
        return all(len({tuple(r) for r in a.tolist()}) == 1 for a in (op.thresholds, op.values))
    return False


def _elementwise_above_layout(rw: _Rewriter, op) -> bool:
    chain = rw.layout_chain(op.inputs[0]) if _uniform_elementwise(op) else []
    if not chain:
        return False
    for layout in chain:
        rw.ops.remove(layout)
    first_row = lambda a: a[:1] if a.ndim == 2 else a  # noqa: E731  (per-channel rows are all equal)
    changes = {"thresholds": first_row(op.thresholds), "values": first_row(op.values)} if isinstance(op, Threshold) else {}
    if isinstance(op, Affine):
        changes = {"scale": _scalar(op.scale), "bias": _scalar(op.bias)}
    cur = rw.emit(replace(op, out=rw.fresh(op.out), inputs=chain[0].inputs, **changes)).out
    for layout in chain[:-1]:
        cur = rw.emit(replace(layout, inputs=(cur,))).out
    rw.emit(replace(chain[-1], inputs=(cur,), out=op.out))
    return True


def _threshold_of_threshold(rw: _Rewriter, op) -> bool:
    inner = isinstance(op, Threshold) and rw.single_use_producer(op.inputs[0], Threshold)
    if not inner:
        return False
    channels = rw.type_of(op.inputs[0]).shape[0]
    rows = max(inner.values.shape[0], op.values.shape[0], op.thresholds.shape[0])
    if rows not in (1, channels):
        return False
    vals = np.broadcast_to(inner.values, (rows, inner.values.shape[1]))
    # the outer threshold evaluated on each of the inner's output values, channel by channel
    probe = Threshold("probe", ("v",), thresholds=op.thresholds, values=op.values)
    outer = interp.EVAL[Threshold](probe, vals.T.copy())
    rw.ops.remove(inner)
    thresholds = np.broadcast_to(inner.thresholds, (rows, inner.thresholds.shape[1])).copy()
    values = np.asarray(outer.T)
    rw.emit(_simplified(rw, replace(inner, out=op.out, thresholds=thresholds, values=values)))
    return True


def _simplified(rw: _Rewriter, th: Threshold) -> Threshold:
    """Merge levels that now give equal values (integer thresholds on integer inputs only)."""
    elem = rw.type_of(th.inputs[0]).elem
    if not (th.integer and is_integer(elem)):
        return th
    from .fold_thresholds import simplify
    channels = rw.type_of(th.inputs[0]).shape[0]
    rows = max(th.thresholds.shape[0], th.values.shape[0])
    rows = channels if rows > 1 else 1
    t = np.broadcast_to(th.thresholds, (rows, th.thresholds.shape[1])).copy()
    v = np.broadcast_to(th.values, (rows, th.values.shape[1])).copy()
    t, v = simplify(t, v, elem.lo, elem.hi)
    return replace(th, thresholds=t, values=v)


RULES = (_affine_of_affine, _affine_of_threshold, _sign_of_threshold, _threshold_of_threshold,
         _elementwise_above_layout, _factor_threshold_scale, _affine_through_dense, _affine_through_conv,
         _affine_through_pool)


@register
@dataclass(frozen=True)
class FoldConstants(Pass):
    name = "fold-constants"

    def run(self, graph: Graph) -> Graph:
        for _ in range(2):
            new = self._sweep(graph)
            if new.ops == graph.ops:
                break
            graph = new
        return graph

    def _sweep(self, graph: Graph) -> Graph:
        rw = _Rewriter(graph)
        for op in graph.ops:
            try:
                if not any(rule(rw, op) for rule in RULES):
                    rw.emit(op)
            except exact.RangeError as exc:  # e.g. a threshold beyond int64 from absurd weights
                raise PassError(f"{op.kind} %{op.out} (from ONNX node '{op.origin}'): {exc}") from None
        return graph.with_ops(rw.ops)
