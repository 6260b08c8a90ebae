"""The canonical text form of a graph: one line per op, deterministic, diff-friendly.

Large arrays print as their shape, a short content hash and their first values, so that a
change in any weight shows up in the text without burying it.
"""
from __future__ import annotations

import hashlib
from fractions import Fraction

import numpy as np

from .graph import Graph

_SHOWN = 4


def _scalar(v) -> str:
    if isinstance(v, Fraction):
        return str(v) if v.denominator == 1 or v.denominator < 1 << 16 else f"{float(v):.9g}"
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.9g}"
    return str(int(v)) if isinstance(v, (int, np.integer)) else str(v)


def _array(a: np.ndarray) -> str:
    if a.ndim == 0:
        return _scalar(a.item() if a.dtype != object else a[()])
    flat = a.ravel()
    head = ", ".join(_scalar(v) for v in flat[:_SHOWN])
    if a.size <= _SHOWN and a.ndim == 1:
        return f"[{head}]"
    data = ",".join(_scalar(v) for v in flat).encode() if a.dtype == object else \
        np.ascontiguousarray(a, dtype=np.int64 if a.dtype.kind in "iub" else np.float64).tobytes()
    digest = hashlib.sha256(data).hexdigest()[:8]
    return f"<{'x'.join(map(str, a.shape))} #{digest} {head}{', ...' if a.size > _SHOWN else ''}>"


def _attr(v) -> str:
    if isinstance(v, np.ndarray):
        return _array(v)
    if isinstance(v, tuple):
        return "(" + ", ".join(_attr(x) for x in v) + ")"
    return _scalar(v)


def print_graph(graph: Graph) -> str:
    args = ", ".join(f"%{n}: {t}" for n, t in graph.inputs)
    lines = [f"graph {graph.name}({args}) -> ({', '.join('%' + o for o in graph.outputs)}) {{"]
    for op in graph.ops:
        attrs = ", ".join(f"{k}={_attr(v)}" for k, v in op.attributes().items())
        operands = ", ".join("%" + i for i in op.inputs)
        where = "host " if graph.on_host(op) else ""
        lines.append(f"  %{op.out} = {where}{op.kind} {operands}{' {' + attrs + '}' if attrs else ''} : {graph.types[op.out]}")
    lines.append("}")
    return "\n".join(lines) + "\n"
