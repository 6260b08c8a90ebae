"""The meaning of the IR: one numpy function per op, exact on integers and Fractions.

Arrays carry a leading batch axis. Real values are float32 (as in the ONNX model), Exact values
are object arrays of Fractions, every integer type (and fixed-point code) is int64.
"""
from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

import numpy as np

from .ir import exact
from .ir.fixed_ops import Add, FixedAffine, PReLU, SumPool
from .ir.graph import Graph
from .ir.ops import Affine, ArgMax, Conv, Dense, FloatOp, Op, Pool, Quantize, Reshape, Sign, Softmax, Threshold, Transpose
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

_ROUNDING: dict[str, Callable[[np.ndarray], np.ndarray]] = {"ROUND": np.round, "CEIL": np.ceil, "FLOOR": np.floor}


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
    ints, den = (x, 1) if x.dtype.kind in "iu" or x.ndim < 2 else _scaled_integers(x)
    if ints.dtype.kind not in "iu" or ints.ndim < 2:
        x = _exact(x).astype(object)
        return x * _channel(op.scale, x.ndim) + _channel(op.bias, x.ndim)
    # x = ints / den. Accumulators take few distinct values per channel: compute each (channel,
    # value) once, as Fraction arithmetic per element would dominate the run time.
    channels = x.shape[1]
    scale = np.broadcast_to(np.asarray(op.scale, dtype=object).reshape(-1), (channels,))
    bias = np.broadcast_to(np.asarray(op.bias, dtype=object).reshape(-1), (channels,))
    out = np.empty(x.shape, dtype=object)
    for c in range(channels):
        values, index = np.unique(ints[:, c].ravel(), return_inverse=True)
        table = np.empty(len(values), dtype=object)
        table[:] = [Fraction(int(v), den) * scale[c] + bias[c] for v in values.tolist()]
        out[:, c] = table[index].reshape(x[:, c].shape)
    return out


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
    ints, den = _scaled_integers(x)
    return _unscale(_integer_matmul(ints, w), den)


def _scaled_integers(x: np.ndarray) -> tuple[np.ndarray, int]:
    """(ints, den) with x == ints / den exactly, den the least common denominator. Each distinct
    value is converted once (maps hold few of them)."""
    x = _exact(x)
    flat = x.ravel().tolist()
    distinct = set(flat)
    den = int(np.lcm.reduce([Fraction(v).denominator for v in distinct] or [1]))
    table = {v: int(v * den) for v in distinct}
    big = max((abs(v) for v in table.values()), default=0) >= 1 << 62
    ints = np.array([table[v] for v in flat], dtype=object if big else np.int64).reshape(x.shape)
    return ints, den


def _unscale(ints: np.ndarray, den: int) -> np.ndarray:
    """ints / den as Fractions, each distinct value converted once."""
    if ints.dtype == object:
        return ints * Fraction(1, den)
    values, index = np.unique(ints.ravel(), return_inverse=True)
    table = np.empty(len(values), dtype=object)
    table[:] = [Fraction(int(v), den) for v in values.tolist()]
    return table[index].reshape(ints.shape)


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
    if x.dtype.kind in "iu":
        return _integer_conv(op, x, op.pad_value)
    # Exact values: scale the map to integers once (not each of its kh*kw copies in the windows)
    ints, den = _scaled_integers(x)
    return _unscale(_integer_conv(op, ints, op.pad_value * den), den)


def _integer_conv(op: Conv, x: np.ndarray, fill: int) -> np.ndarray:
    o, c, kh, kw = op.weights.shape
    top, left, bottom, right = op.pads
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=fill)
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))
    win = win[:, :, ::op.stride[0], ::op.stride[1]]  # (N, C, OH, OW, kh, kw)
    n, _, oh, ow = win.shape[:4]
    cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, c * kh * kw)
    if op.reuse is not None:
        out = _with_reuse(op.reuse, op.weights, cols)
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
        above = np.greater if op.strict and op.strict[col] else np.greater_equal
        level += above(x, _channel(op.thresholds[:, col], x.ndim)).astype(np.int64)
    rows = np.arange(op.values.shape[0]) if op.values.shape[0] > 1 else np.zeros(x.shape[1], dtype=np.int64)
    rows = np.broadcast_to(rows.reshape((1, -1) + (1,) * (x.ndim - 2)), x.shape)
    return op.values[rows, level]


def _fixed_affine(op: FixedAffine, x):
    mult = _channel(op.mult, x.ndim)
    if op.neg_mult is not None:
        mult = np.where(x < 0, _channel(op.neg_mult, x.ndim), mult)
    largest = max(int(np.abs(op.mult).max(initial=0)), int(np.abs(op.neg_mult).max(initial=0)) if op.neg_mult is not None else 0)
    if x.dtype != object and int(np.abs(x).max(initial=0)) * largest + int(np.abs(op.bias).max(initial=0)) >= 1 << 62:
        x, mult = x.astype(object), np.asarray(mult).astype(object)  # exact beyond int64
    q = x * mult + _channel(op.bias, x.ndim)
    return q >> op.shift if op.shift else q  # an arithmetic shift: floor division by 2**shift


def _add(op: Add, a, b):
    if a.dtype.kind in "iu" and b.dtype.kind in "iu":
        peak = (int(np.abs(a).max(initial=0)) << op.shifts[0]) + (int(np.abs(b).max(initial=0)) << op.shifts[1])
        if peak < 1 << 62:
            return (a << op.shifts[0]) + (b << op.shifts[1])
    # exact values (shifts 0), or codes held as Python integers past int64
    return _exact(a).astype(object) * (1 << op.shifts[0]) + _exact(b).astype(object) * (1 << op.shifts[1])


def _sum_pool(op: SumPool, x):
    win = np.lib.stride_tricks.sliding_window_view(x, op.kernel, axis=(2, 3))
    return win[:, :, ::op.stride[0], ::op.stride[1]].sum(axis=(4, 5))


def _prelu(op: PReLU, x):
    x = _exact(x).astype(object)
    return np.where(x >= 0, x, x * _channel(op.slope, x.ndim))


def _reshape(op: Reshape, x):
    return x.reshape((x.shape[0],) + op.shape)


def _argmax(op: ArgMax, x):
    return np.argmax(x, axis=1).astype(np.int64)[:, None]


# The function of each op kind; each takes the op (of its own class) and the input arrays.
EVAL: dict[type[Op], Callable[..., np.ndarray]] = {
    FloatOp: _float_op, Quantize: _quantize, Sign: _sign,
    Affine: _affine, Dense: _dense, Threshold: _threshold, FixedAffine: _fixed_affine,
    Reshape: _reshape, ArgMax: _argmax, Conv: _conv, Pool: _pool, Transpose: _transpose, Softmax: _softmax,
    Add: _add, SumPool: _sum_pool, PReLU: _prelu,
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
