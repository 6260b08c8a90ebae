"""fold-constants: exact algebra on constant parameters, so every weight layer sees integers.

Local rewrite rules, each a pure function `(match) -> Rewrite | None` of one op and the graph
around it (read only). One bounded loop applies the first rule that matches, in topological
order of the ops, rebuilds the graph, and repeats until no rule matches:
  affine(affine(x))         -> affine(x)               compose scale and bias exactly
  affine(threshold(x))      -> threshold(x)            map the threshold's output values
  sign(threshold(x))        -> threshold(x)            sign of the output values (Larq's Sign(Sign(x)+0.1))
  threshold(threshold(x))   -> threshold(x)            the outer one applied to the inner's values
  f(layout(x))              -> layout(f(x))            sign, or an affine/threshold with the same
                                                       parameters everywhere, moves above reshapes
                                                       and transposes, so those end up right in
                                                       front of a dense layer (which only
                                                       permutes its weight columns for them)
  layer(threshold(x))       -> affine(layer'(thr'(x)))  factor a common scale g out of the values and
                                                       move it through the layer (the next two rules)
  dense(affine_s(x))        -> affine(dense(x))        scalar s, any bias b: W(sx + b) = sWx + Wb
  conv(affine_s(x))         -> affine(conv(x))         scalar s; bias only without padding; the pad
                                                       value is rescaled and must stay 0 or +-1
  pool(affine(x))           -> affine(pool'(x))        per channel: a < 0 turns max into min
A dense layer looks through reshapes/transposes for the affine or threshold that feeds it.

A rule absorbs only single-use producers of the matched op, so the ops it removes form a chain
ending in the matched op; its new ops take the place of that op, where every input they read
is already defined.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import TypeVar

import numpy as np

from .. import interp
from ..ir import exact
from ..ir.graph import Graph
from ..ir.ops import Affine, Conv, Dense, IRError, Op, Pool, Reshape, Sign, Threshold, Transpose
from ..ir.types import is_integer
from .manager import Pass, PassError, register

_OpT = TypeVar("_OpT", bound=Op)


def _obj(x) -> np.ndarray:
    """numpy turns 0-d object results into bare scalars; keep every parameter an array."""
    return np.asarray(x, dtype=object)


def _per_channel(param: np.ndarray, channels: int) -> np.ndarray:
    return np.broadcast_to(param, (channels,)).copy() if param.ndim == 0 or param.shape[0] == 1 else param


def _uniform(param: np.ndarray) -> bool:
    return param.ndim == 0 or len(set(param.ravel().tolist())) <= 1


def _scalar(param: np.ndarray) -> np.ndarray:
    return _obj(param.ravel()[0] if param.ndim else param[()])


@dataclass(frozen=True)
class Rewrite:
    """Remove `removed` (the matched op and producers it absorbed) and put `added` in the
    matched op's place, in this order."""

    removed: tuple[Op, ...]
    added: tuple[Op, ...]


class Match:
    """One op of a graph and read-only questions about its surroundings."""

    def __init__(self, graph: Graph, op: Op, producers: dict, uses: Counter):
        self.graph, self.op, self._producers, self._uses = graph, op, producers, uses

    def type_of(self, value: str):
        return self.graph.types[value]

    def single_use_producer(self, value: str, kind: type[_OpT] | tuple[type[_OpT], ...]) -> _OpT | None:
        op = self._producers.get(value)
        return op if isinstance(op, kind) and self._uses[value] == 1 else None

    def fresh(self, base: str) -> str:
        name, n = f"{base}_pre", 0
        while name in self.graph.types:
            n += 1
            name = f"{base}_pre{n}"
        return name

    def layout_chain(self, value: str) -> list[Op]:
        """The single-use reshapes/transposes that end in value, first one first."""
        chain: list[Op] = []
        while (op := self.single_use_producer(value, (Reshape, Transpose))) is not None:
            chain.insert(0, op)
            value = op.inputs[0]
        return chain

    def below_layout(self, value: str) -> str:
        chain = self.layout_chain(value)
        return chain[0].inputs[0] if chain else value


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


def _simplified(m: Match, th: Threshold) -> Threshold:
    """Merge levels that now give equal values (integer thresholds on integer inputs only)."""
    elem = m.type_of(th.inputs[0]).elem
    if not (th.integer and is_integer(elem)):
        return th
    from .fold_thresholds import simplify
    channels = m.type_of(th.inputs[0]).shape[0]
    rows = max(th.thresholds.shape[0], th.values.shape[0])
    rows = channels if rows > 1 else 1
    t = np.broadcast_to(th.thresholds, (rows, th.thresholds.shape[1])).copy()
    v = np.broadcast_to(th.values, (rows, th.values.shape[1])).copy()
    t, v = simplify(t, v, elem.lo, elem.hi)
    return replace(th, thresholds=t, values=v)


# ---- the rules

def affine_of_affine(m: Match) -> Rewrite | None:
    op = m.op
    if not isinstance(op, Affine):
        return None
    inner = m.single_use_producer(op.inputs[0], Affine)
    return Rewrite((inner, op), (_compose(inner, op),)) if inner else None


def affine_of_threshold(m: Match) -> Rewrite | None:
    op = m.op
    if not isinstance(op, Affine):
        return None
    th = m.single_use_producer(op.inputs[0], Threshold)
    if not th:
        return None
    return Rewrite((th, op), (_map_values(th, op, m.type_of(op.inputs[0]).shape[0]),))


def sign_of_threshold(m: Match) -> Rewrite | None:
    op = m.op
    if not isinstance(op, Sign):
        return None
    th = m.single_use_producer(op.inputs[0], Threshold)
    if not th:
        return None
    sign = np.vectorize(lambda v: 1 if v > 0 else -1 if v < 0 else op.zero, otypes=[np.int64])
    return Rewrite((th, op), (_simplified(m, replace(th, out=op.out, values=sign(th.values))),))


def threshold_of_threshold(m: Match) -> Rewrite | None:
    op = m.op
    if not isinstance(op, Threshold):
        return None
    inner = m.single_use_producer(op.inputs[0], Threshold)
    if not inner:
        return None
    channels = m.type_of(op.inputs[0]).shape[0]
    rows = max(inner.values.shape[0], op.values.shape[0], op.thresholds.shape[0])
    if rows not in (1, channels):
        return None
    vals = np.broadcast_to(inner.values, (rows, inner.values.shape[1]))
    # the outer threshold evaluated on each of the inner's output values, channel by channel
    probe = Threshold("probe", ("v",), thresholds=op.thresholds, values=op.values, strict=op.strict)
    outer = interp.EVAL[Threshold](probe, vals.T.copy())
    thresholds = np.broadcast_to(inner.thresholds, (rows, inner.thresholds.shape[1])).copy()
    merged = replace(inner, out=op.out, thresholds=thresholds, values=np.asarray(outer.T))
    return Rewrite((inner, op), (_simplified(m, merged),))


def _uniform_elementwise(op) -> bool:
    """Ops that do the same to every element, so they commute with data movement."""
    if isinstance(op, Sign):
        return True
    if isinstance(op, Affine):
        return _uniform(op.scale) and _uniform(op.bias)
    if isinstance(op, Threshold):
        return all(len({tuple(r) for r in a.tolist()}) == 1 for a in (op.thresholds, op.values))
    return False


def elementwise_above_layout(m: Match) -> Rewrite | None:
    op = m.op
    chain = m.layout_chain(op.inputs[0]) if isinstance(op, (Sign, Affine, Threshold)) else []
    if not chain or not _uniform_elementwise(op):
        return None
    first_row = lambda a: a[:1] if a.ndim == 2 else a  # noqa: E731  (per-channel rows are all equal)
    changes = {"thresholds": first_row(op.thresholds), "values": first_row(op.values)} if isinstance(op, Threshold) else {}
    if isinstance(op, Affine):
        changes = {"scale": _scalar(op.scale), "bias": _scalar(op.bias)}
    moved = replace(op, out=m.fresh(op.out), inputs=chain[0].inputs, **changes)
    added, cur = [moved], moved.out
    for layout in chain[:-1]:
        added.append(replace(layout, inputs=(cur,)))
        cur = layout.out
    added.append(replace(chain[-1], inputs=(cur,), out=op.out))
    return Rewrite((*chain, op), tuple(added))


def factor_threshold_scale(m: Match) -> Rewrite | None:
    """threshold' + layer' + affine(g*...) in place of a threshold with non-integer values and
    the layer it feeds: the common scale g is factored out of the values and moved through the
    layer in one rewrite (on its own, affine(threshold) would merge it straight back)."""
    op = m.op
    if not isinstance(op, (Dense, Conv)):
        return None
    th = m.single_use_producer(m.below_layout(op.inputs[0]), Threshold)
    g = _factor_scale(th) if th else None
    if th is None or g is None:
        return None
    mid = m.fresh(th.out)
    factor = Affine(th.out, (mid,), scale=_obj(g), bias=_obj(Fraction(0)), origin=th.origin)
    integer = replace(th, out=mid, values=exact.floor_array(th.values.astype(object) / g))
    factored = apply(m.graph, Rewrite((th,), (integer, factor)))
    through = (affine_through_dense if isinstance(op, Dense) else affine_through_conv)(match(factored, op))
    if through is None:
        return None
    return Rewrite((th, *(r for r in through.removed if r is not factor)), (integer, *through.added))


def _moved_below(m: Match, aff: Affine, scale, bias, **changes) -> Rewrite:
    op = m.op
    moved = replace(op, out=m.fresh(op.out), inputs=aff.inputs, **changes)
    after = Affine(op.out, (moved.out,), scale=_obj(scale), bias=_obj(bias), origin=op.origin)
    return Rewrite((aff, op), (moved, after))


def affine_through_dense(m: Match) -> Rewrite | None:
    op = m.op
    if not isinstance(op, Dense):
        return None
    chain = m.layout_chain(op.inputs[0])
    src = chain[0].inputs[0] if chain else op.inputs[0]
    aff = m.single_use_producer(src, Affine)
    if aff is None or not _uniform(aff.scale) or not is_integer(m.type_of(aff.inputs[0]).elem):
        return None
    # the bias, laid out like the dense layer's input (through the same reshapes/transposes)
    shape = m.type_of(aff.inputs[0]).shape
    aligned = aff.bias.reshape(aff.bias.shape + (1,) * (len(shape) - aff.bias.ndim)) if aff.bias.ndim else aff.bias
    bias = np.broadcast_to(aligned, shape)
    for layout in chain:
        bias = interp.EVAL[type(layout)](layout, bias[None])[0]
    added: list[Op] = []
    cur = aff.inputs[0]
    for layout in chain:
        added.append(replace(layout, inputs=(cur,)))
        cur = layout.out
    moved = replace(op, out=m.fresh(op.out), inputs=(cur,))
    added += [moved, Affine(op.out, (moved.out,), scale=_scalar(aff.scale),
                            bias=exact.dot(op.weights, bias.ravel()), origin=op.origin)]
    return Rewrite((aff, *chain, op), tuple(added))


def affine_through_conv(m: Match) -> Rewrite | None:
    op = m.op
    if not isinstance(op, Conv):
        return None
    aff = m.single_use_producer(op.inputs[0], Affine)
    if not aff or not is_integer(m.type_of(aff.inputs[0]).elem):
        return None
    if not _uniform(aff.scale) or _scalar(aff.scale)[()] == 0:
        return None
    s = _scalar(aff.scale)[()]
    pad = Fraction(op.pad_value) / s
    if any(op.pads) and (pad.denominator != 1 or abs(pad) > 1 or any(b != 0 for b in aff.bias.ravel())):
        return None  # a padded position would need its own bias: leave it, hardware will refuse
    per_in = _per_channel(aff.bias, op.weights.shape[1])
    bias = exact.dot(op.weights.sum(axis=(2, 3)), per_in)
    return _moved_below(m, aff, s, bias, pad_value=int(pad))


def affine_through_pool(m: Match) -> Rewrite | None:
    op = m.op
    if not isinstance(op, Pool):
        return None
    aff = m.single_use_producer(op.inputs[0], Affine)
    if not aff:
        return None
    scale = _per_channel(aff.scale, op.modes.shape[0])
    modes = np.array([mode if a >= 0 else -mode for mode, a in zip(op.modes, scale)], dtype=np.int8)
    return _moved_below(m, aff, aff.scale, aff.bias, modes=modes)


RULES = (affine_of_affine, affine_of_threshold, sign_of_threshold, threshold_of_threshold,
         elementwise_above_layout, factor_threshold_scale, affine_through_dense, affine_through_conv,
         affine_through_pool)


def match(graph: Graph, op: Op) -> Match:
    producers = {o.out: o for o in graph.ops}
    uses = Counter(v for o in graph.ops for v in o.inputs) + Counter(graph.outputs)
    return Match(graph, op, producers, uses)


def first_rewrite(graph: Graph, start: int = 0) -> tuple[int, Rewrite] | None:
    """(position of the first op it removes, rewrite) for the first rule that matches, trying
    the ops from `start` on in topological order."""
    producers = {op.out: op for op in graph.ops}
    uses = Counter(v for op in graph.ops for v in op.inputs) + Counter(graph.outputs)
    for op in graph.ops[start:]:
        m = Match(graph, op, producers, uses)
        for rule in RULES:
            try:
                rewrite = rule(m)
            except exact.RangeError as exc:  # e.g. a threshold beyond int64 from absurd weights
                raise PassError(f"{op.kind} %{op.out} (from ONNX node '{op.origin}'): {exc}") from None
            if rewrite is not None:
                return min(graph.ops.index(r) for r in rewrite.removed), rewrite
    return None


def apply(graph: Graph, rewrite: Rewrite) -> Graph:
    removed = {id(op) for op in rewrite.removed}
    ops: list[Op] = []
    for op in graph.ops:
        if op is rewrite.removed[-1]:
            ops.extend(rewrite.added)
        elif id(op) not in removed:
            ops.append(op)
    return graph.with_ops(ops)


@register
@dataclass(frozen=True)
class FoldConstants(Pass):
    name = "fold-constants"

    def run(self, graph: Graph) -> Graph:
        # Every rule either removes an op or moves an affine/elementwise op one layer later
        # (past a layer, a pool or a reshape), so a graph of n ops settles within n*n rewrites.
        # Ops in front of a rewrite keep their match results, so the scan resumes there; a
        # last scan from the top confirms the fixed point.
        limit = len(graph.ops) ** 2 + 1
        start, changed = 0, False
        for _ in range(2 * limit):
            found = first_rewrite(graph, start)
            if found is None:
                if start == 0 and not changed:
                    return graph
                start, changed = 0, False
                continue
            start, rewrite = found
            graph, changed = apply(graph, rewrite), True
        raise IRError(f"fold-constants: no fixed point after {limit} rewrites (a cycle of rules)")
