"""fold-constants: exact algebra on constant parameters, so every Dense sees integers.

Local rewrites, applied in one topological sweep (each rewrite only looks backwards, so one
sweep reaches the fixed point; a second sweep is a cheap check that nothing is left):
  affine(affine(x))        -> affine(x)                 compose scale and bias exactly
  affine(threshold(x))     -> threshold(x)              map the threshold's output values
  threshold(x) -> dense    -> affine(g) . threshold'    factor a common scale g out of the values
  dense(affine_s(x))       -> affine(dense(x))          scalar scale s, any bias b: W(sx+b) = sWx + Wb
  reshape(affine_s(x))     -> affine_s(reshape(x))      a scalar affine commutes with reshapes
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np

from ..ir import exact
from ..ir.graph import Graph
from ..ir.ops import Affine, Dense, Reshape, Threshold
from ..ir.types import is_integer
from .manager import Pass, register


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
            src = op.inputs[0] if op.inputs else None
            if isinstance(op, Affine):
                inner = rw.single_use_producer(src, Affine)
                if inner:
                    rw.ops.remove(inner)
                    rw.emit(_compose(inner, op))
                    continue
                th = rw.single_use_producer(src, Threshold)
                if th:
                    rw.ops.remove(th)
                    rw.emit(_map_values(th, op, rw.type_of(src).shape[0]))
                    continue
            if isinstance(op, (Dense, Reshape)):
                aff = rw.single_use_producer(src, Affine)
                if aff is None:
                    th = rw.single_use_producer(src, Threshold)
                    g = _factor_scale(th) if th is not None and isinstance(op, Dense) else None
                    if g is not None:
                        rw.ops.remove(th)
                        mid = rw.fresh(th.out)
                        rw.emit(replace(th, out=mid, values=exact.floor_array(th.values.astype(object) / g)))
                        aff = Affine(th.out, (mid,), scale=np.array(g, dtype=object), bias=np.array(Fraction(0), dtype=object), origin=th.origin)
                        rw.emit(aff)
                if aff is not None and _uniform(aff.scale) and (isinstance(op, Dense) or _uniform(aff.bias)):
                    base_type = rw.type_of(aff.inputs[0])
                    if isinstance(op, Dense) and not is_integer(base_type.elem):
                        rw.emit(op)
                        continue
                    rw.ops.remove(aff)
                    moved = replace(op, out=rw.fresh(op.out), inputs=aff.inputs)
                    rw.emit(moved)
                    if isinstance(op, Dense):
                        k = op.weights.shape[1]
                        bias = _obj(op.weights.astype(object) @ _per_channel(aff.bias, k))
                        rw.emit(Affine(op.out, (moved.out,), scale=_scalar(aff.scale), bias=bias, origin=op.origin))
                    else:
                        rw.emit(replace(aff, out=op.out, inputs=(moved.out,), scale=_scalar(aff.scale), bias=_scalar(aff.bias)))
                    continue
            rw.emit(op)
        return graph.with_ops(rw.ops)
