"""Exact arithmetic on model constants.

Every float32 constant of a model is a rational number, so scales, biases and BatchNorm
parameters are held as `Fraction`s and composed without rounding. The one irrational step is
BatchNorm's sqrt(var + eps): it is exact when var + eps is a rational square and otherwise
carried to SQRT_BITS bits, far below any spacing a float32 model can express.
"""
from __future__ import annotations

from fractions import Fraction
from math import ceil, floor, isqrt
from typing import Any

import numpy as np

SQRT_BITS = 200


def fractions(values) -> np.ndarray:
    """Object array of exact Fractions for the given (float32 or integer) array."""
    arr = np.asarray(values)
    out = np.empty(arr.shape, dtype=object)
    for idx, v in np.ndenumerate(arr):
        out[idx] = Fraction(int(v)) if arr.dtype.kind in "iub" else Fraction(float(v))
    return out


def sqrt(value: Fraction) -> Fraction:
    """Square root of a non-negative rational: exact for squares, else to SQRT_BITS bits."""
    if value < 0:
        raise ValueError("square root of a negative number")
    num, den = value.numerator, value.denominator
    rn, rd = isqrt(num), isqrt(den)
    if rn * rn == num and rd * rd == den:
        return Fraction(rn, rd)
    scaled = isqrt(num * (1 << (2 * SQRT_BITS)) // den)
    return Fraction(scaled, 1 << SQRT_BITS)


class RangeError(ValueError):
    """An integer constant outside int64, the range hardware parameters are built from."""


def int64_array(ints) -> np.ndarray:
    """Python integers as an int64 array, refusing (rather than wrapping) any out of range."""
    ints = list(ints)
    bad = next((v for v in ints if not -(1 << 63) <= v < (1 << 63)), None)
    if bad is not None:
        raise RangeError(f"constant {float(bad):.4g} does not fit in 64 bits")
    return np.array(ints, dtype=np.int64)


def ceil_array(values: np.ndarray) -> np.ndarray:
    return int64_array(ceil(v) for v in values.ravel()).reshape(values.shape)


def floor_array(values: np.ndarray) -> np.ndarray:
    return int64_array(floor(v) for v in values.ravel()).reshape(values.shape)


def to_float(values: np.ndarray) -> np.ndarray:
    return np.vectorize(float, otypes=[np.float64])(values) if values.size else values.astype(np.float64)


def all_integral(values: np.ndarray) -> bool:
    return all(Fraction(v).denominator == 1 for v in np.asarray(values).ravel())


def dot(weights: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Exact weights @ values for integer weights and rational values, over a common
    denominator (one integer matmul instead of a matmul of Fractions)."""
    fracs = [Fraction(v) for v in np.asarray(values).ravel()]
    den = np.lcm.reduce([f.denominator for f in fracs] or [1])
    nums = np.array([f.numerator * (int(den) // f.denominator) for f in fracs], dtype=object)
    if max((abs(n) for n in nums), default=0) * max(weights.shape[-1], 1) < 1 << 62:
        sums = weights.astype(np.int64) @ nums.astype(np.int64)
    else:
        sums = weights.astype(object) @ nums
    return np.array([Fraction(int(n), int(den)) for n in np.ravel(sums)], dtype=object).reshape(np.shape(sums))


def channel_fractions(param: np.ndarray, channels: int) -> list[Fraction]:
    """A () or (C,) parameter as one Fraction per channel."""
    flat: list[Any] = list(param.ravel()) if param.ndim else [param[()]]  # the array's scalars
    return [Fraction(flat[c if len(flat) > 1 else 0]) for c in range(channels)]
