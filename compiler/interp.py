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
    Affine, ArgMax, Dense, FixedAffine, FloatOp, Quantize, Reshape, Sign, Threshold,
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


def _dense(op: Dense, x):
    w = op.weights.astype(np.int64).T
    if x.dtype.kind in "iu":
        return x.astype(np.int64) @ w
    # Exact inputs (before folding): scale to integers by a common denominator, then matmul.
    x = _exact(x)
    den = np.lcm.reduce([Fraction(v).denominator for v in x.ravel()] or [1])
    ints = np.vectorize(lambda v: int(v * den), otypes=[object])(x)
    if max((abs(v) for v in ints.ravel()), default=0) * w.shape[0] < 1 << 62:
        ints = ints.astype(np.int64)
    return (ints @ w).astype(object) * Fraction(1, int(den))


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
    Reshape: _reshape, ArgMax: _argmax,
}


def run(graph: Graph, inputs: dict[str, np.ndarray], trace: bool = False) -> dict[str, np.ndarray]:
    """Execute the graph on a batch; returns its outputs, or every value when `trace`."""
    env = {}
    for name, ttype in graph.inputs:
        arr = np.asarray(inputs[name])
        env[name] = arr.astype(np.float32) if isinstance(ttype.elem, Real) else arr
        if arr.shape[1:] != ttype.shape:
            raise ValueError(f"input '{name}' has shape {arr.shape[1:]} per sample, expected {ttype.shape}")
    for op in graph.ops:
        env[op.out] = EVAL[type(op)](op, *(env[i] for i in op.inputs))
    return env if trace else {name: env[name] for name in graph.outputs}


def to_real(value: np.ndarray, ttype: TensorType) -> np.ndarray:
    """A value in the model's own units, as float64."""
    if isinstance(ttype.elem, Exact):
        return exact.to_float(value)
    if isinstance(ttype.elem, Fixed):
        return value.astype(np.float64) * 2.0 ** -ttype.elem.frac
    return value.astype(np.float64)
