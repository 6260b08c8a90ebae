"""The meaning of the IR: one numpy function per op, exact on integers and Fractions.

Arrays carry a leading batch axis. Real values are float32 (as in the ONNX model), Exact values
are object arrays of Fractions, every integer type (and fixed-point code) is int64.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from .ir import exact
from .ir.graph import Graph
from .ir.ops import (
    Affine, ArgMax, Conv, Dense, FixedAffine, FloatOp, Pool, Quantize, Reshape, Sign, Softmax, Threshold,
    Transpose,
)
from .ir.types import Exact, Fixed, Real, TensorType

_FLOAT_FNS = {
    "add": lambda x, c: x + c,
    "sub": lambda x, c: x - c,
    "rsub": lambda x, c: c - x,
    "mul": lambda x, c: x * c,
    "div": lambda x, c: x / c,
    "rdiv": lambda x, c: c / x,
    "pow": lambda x, c: np.power(x, c),
}

_ROUNDING = {"ROUND": np.round, "CEIL": np.ceil, "FLOOR": np.floor}


def _channel(param: np.ndarray, ndim: int) -> np.ndarray:
    """Broadcast a () or (C,) parameter along axis 1 of a batched array of `ndim` dims."""
    if param.ndim == 0:
        return param
    return param.reshape((1, -1) + (1,) * (ndim - 2))


def _float_op(op: FloatOp, x):
    with np.errstate(all="ignore"):
        return _FLOAT_FNS[op.fn](x, op.const).astype(np.float32)


def _quantize(op: Quantize, x):
    # QONNX order: scale, shift, clamp, then round -- all in float32 like the exporter's runtime.
    y = x / op.scale.astype(np.float32) + op.zero_point.astype(np.float32)
    y = np.clip(y, np.float32(op.lo), np.float32(op.hi))
    return _ROUNDING[op.rounding](y).astype(np.int64)


def _sign(op: Sign, x):
    return np.where(x > 0, 1, np.where(x < 0, -1, op.zero)).astype(np.int64)


def _exact(x: np.ndarray) -> np.ndarray:
    """Any value as exact numbers: floats become the Fractions they are, integers stay."""
    return exact.fractions(x) if x.dtype.kind == "f" else x


def _affine(op: Affine, x):
    x = _exact(x).astype(object)
    return x * _channel(op.scale, x.ndim) + _channel(op.bias, x.ndim)


def _integer_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact a @ b for integer arrays: float64 BLAS while every partial sum stays below 2**53,
    else Python integers."""
    bound = max(int(np.abs(a).max(initial=0)), 1) * max(int(np.abs(b).max(initial=0)), 1) * a.shape[-1]
    if bound < 1 << 53:
        return np.rint(a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)
    return (a.astype(object) @ b.astype(object))


def _exact_matmul(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """x @ w with integer w; x integer, float32 or Fractions (scaled to integers first)."""
    if x.dtype.kind in "iu":
        return _integer_matmul(x, w)
    x = _exact(x)
    den = int(np.lcm.reduce([Fraction(v).denominator for v in x.ravel()] or [1]))
    ints = np.vectorize(lambda v: int(v * den), otypes=[object])(x)
    if max((abs(v) for v in ints.ravel()), default=0) < 1 << 62:
        ints = ints.astype(np.int64)
    return _integer_matmul(ints, w).astype(object) * Fraction(1, den)


def _with_reuse(reuse, weights: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Output channels through the reuse tree: roots by matmul, every child from its parent's
    result plus twice its own dot product over the positions where the two differ."""
    rows = weights.reshape(weights.shape[0], -1).astype(np.int64)
    out = np.empty((cols.shape[0], rows.shape[0]), dtype=object if cols.dtype == object else np.int64)
    roots = np.flatnonzero(reuse.parent < 0)
    out[:, roots] = _exact_matmul(cols, rows[roots].T)
    for c in reuse.order:
        p = reuse.parent[c]
        if p >= 0:
            d = reuse.differing(weights, c)
            sign = -1 if reuse.negate[c] else 1
            out[:, c] = sign * out[:, p] + 2 * _exact_matmul(cols[:, d], rows[c, d][:, None])[:, 0]
    return out


def _dense(op: Dense, x):
    if op.reuse is not None:
        return _with_reuse(op.reuse, op.weights, x if x.dtype.kind in "iuO" else _exact(x))
    return _exact_matmul(x, op.weights.astype(np.int64).T)


def _conv(op: Conv, x):
    o, c, kh, kw = op.weights.shape
    top, left, bottom, right = op.pads
    fill = op.pad_value if x.dtype.kind in "iu" else Fraction(op.pad_value)
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=fill)
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))
    win = win[:, :, ::op.stride[0], ::op.stride[1]]  # (N, C, OH, OW, kh, kw)
    n, _, oh, ow = win.shape[:4]
    cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, c * kh * kw)
    if op.reuse is not None:
        out = _with_reuse(op.reuse, op.weights, cols if cols.dtype.kind in "iuO" else _exact(cols))
    else:
        out = _exact_matmul(cols, op.weights.reshape(o, -1).astype(np.int64).T)
    return out.reshape(n, oh, ow, o).transpose(0, 3, 1, 2)


def _pool(op: Pool, x):
    win = np.lib.stride_tricks.sliding_window_view(x, op.kernel, axis=(2, 3))
    win = win[:, :, ::op.stride[0], ::op.stride[1]]
    hi, lo = win.max(axis=(4, 5)), win.min(axis=(4, 5))
    return np.where(op.modes.reshape(1, -1, 1, 1) > 0, hi, lo)


def _transpose(op: Transpose, x):
    return x.transpose((0,) + tuple(p + 1 for p in op.perm))


def _softmax(op: Softmax, scores):
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def _threshold(op: Threshold, x):
    x = _exact(x)
    level = np.zeros(x.shape, dtype=np.int64)
    for col in range(op.thresholds.shape[1]):
        level += (x >= _channel(op.thresholds[:, col], x.ndim)).astype(np.int64)
    rows = np.arange(op.values.shape[0]) if op.values.shape[0] > 1 else np.zeros(x.shape[1], dtype=np.int64)
    rows = np.broadcast_to(rows.reshape((1, -1) + (1,) * (x.ndim - 2)), x.shape)
    return op.values[rows, level]


def _fixed_affine(op: FixedAffine, x):
    return x * op.mult[None, :] + op.bias[None, :]


def _reshape(op: Reshape, x):
    return x.reshape((x.shape[0],) + op.shape)


def _argmax(op: ArgMax, x):
    return np.argmax(x, axis=1).astype(np.int64)[:, None]


EVAL = {
    FloatOp: _float_op, Quantize: _quantize, Sign: _sign,
    Affine: _affine, Dense: _dense, Threshold: _threshold, FixedAffine: _fixed_affine,
    Reshape: _reshape, ArgMax: _argmax, Conv: _conv, Pool: _pool, Transpose: _transpose, Softmax: _softmax,
}


def run(graph: Graph, inputs: dict[str, np.ndarray], trace: bool = False,
        overrides: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Execute the graph on a batch; returns its outputs, or every value when `trace`.
    `overrides` supplies values computed elsewhere (e.g. by simulated hardware): the ops that
    define them are skipped and everything after them uses the given values."""
    env = {}
    for name, ttype in graph.inputs:
        arr = np.asarray(inputs[name])
        env[name] = arr.astype(np.float32) if isinstance(ttype.elem, Real) else arr
        if arr.shape[1:] != ttype.shape:
            raise ValueError(f"input '{name}' has shape {arr.shape[1:]} per sample, expected {ttype.shape}")
    for op in graph.ops:
        if overrides and op.out in overrides:
            env[op.out] = overrides[op.out]
            continue
        args = [env[i] for i in op.inputs]
        if isinstance(op, Softmax):  # works on the scores in model units, whatever their encoding
            args = [to_real(args[0], graph.types[op.inputs[0]])]
        env[op.out] = EVAL[type(op)](op, *args)
    return env if trace else {name: env[name] for name in graph.outputs}


def to_real(value: np.ndarray, ttype: TensorType) -> np.ndarray:
    """A value in the model's own units, as float64."""
    if isinstance(ttype.elem, Exact):
        return exact.to_float(value)
    if isinstance(ttype.elem, Fixed):
        return value.astype(np.float64) * 2.0 ** -ttype.elem.frac
    return value.astype(np.float64)
