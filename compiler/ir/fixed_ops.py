"""The IR's fixed-point and residual-network operations (QFX): values that flow on between
layers as fixed-point codes -- a rounding multiply-add, a shortcut add, a sum pool, a PReLU.

Like every op (ops.py), each is a frozen dataclass whose meaning is its function in `bnnc.interp`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ops import Op, _fail
from .types import Element, Exact, Fixed, Int, TensorType, frac_bits, int_for_range, is_integer


@dataclass(frozen=True, eq=False)
class FixedAffine(Op):
    """q[c] = floor((x[c] * m[c] + bias[c]) / 2**shift), read as q * 2**-frac, where m is `mult`,
    or `neg_mult` where x < 0 (a PReLU's slope). x's own frac bits are included in m; the shift
    drops low bits (bias carries the half that makes it round to nearest)."""

    mult: np.ndarray  # (C,) int64
    bias: np.ndarray  # (C,) int64
    frac: int
    error_bound: float  # max |q * 2**-frac - exact value| over the input range, stated for users
    shift: int = 0
    neg_mult: np.ndarray | None = None  # (C,) int64; None: mult for every x

    kind = "fixed_affine"

    def result_type(self, inputs):
        (x,) = inputs
        if not isinstance(x.elem, (Int, Fixed)):
            raise _fail(self, f"expects an integer input, got {x}")
        mult = self.mult.astype(object)  # Python integers: the products may pass 2**63
        neg = mult if self.neg_mult is None else self.neg_mult.astype(object)
        ends = [min(x.elem.lo, 0) * neg, max(x.elem.hi, 0) * mult, min(x.elem.hi, -1) * neg,
                max(x.elem.lo, 0) * mult]
        lo = (int(min(v for e in ends for v in e)) + int(self.bias.min())) >> self.shift
        hi = (int(max(v for e in ends for v in e)) + int(self.bias.max())) >> self.shift
        return TensorType(Fixed(int_for_range(min(lo, -1), hi).bits, self.frac), x.shape)

    def attributes(self):
        extra = {"shift": self.shift} if self.shift else {}
        if self.neg_mult is not None:
            extra["neg_mult"] = self.neg_mult
        return {"mult": self.mult, "bias": self.bias, "frac": self.frac, "error_bound": self.error_bound, **extra}


def _integer_result(lo: int, hi: int, frac: int, fixed: bool) -> Element:
    """The type of an exact integer result in [lo, hi] whose code has `frac` fraction bits."""
    if fixed or frac:
        return Fixed(int_for_range(min(lo, -1), hi).bits, frac)
    return int_for_range(lo, hi)


@dataclass(frozen=True, eq=False)
class Add(Op):
    """y = a * 2**shifts[0] + b * 2**shifts[1], element by element: a residual shortcut. On exact
    values the shifts are 0; on fixed-point codes they line up the two binary points (exact)."""

    shifts: tuple[int, int] = (0, 0)

    kind = "add"

    def result_type(self, inputs):
        a, b = inputs
        if a.shape != b.shape:
            raise _fail(self, f"adds {a} and {b}: the shapes differ")
        if not (is_integer(a.elem) and is_integer(b.elem)):
            if any(self.shifts):
                raise _fail(self, "shifts need integer (fixed-point) inputs")
            return TensorType(Exact(), a.shape)
        fa, fb = frac_bits(a.elem) + self.shifts[0], frac_bits(b.elem) + self.shifts[1]
        if fa != fb:
            raise _fail(self, f"the binary points of {a} and {b} do not line up (shifts {self.shifts})")
        lo = (a.elem.lo << self.shifts[0]) + (b.elem.lo << self.shifts[1])
        hi = (a.elem.hi << self.shifts[0]) + (b.elem.hi << self.shifts[1])
        return TensorType(_integer_result(lo, hi, fa, isinstance(a.elem, Fixed) or isinstance(b.elem, Fixed)), a.shape)

    def attributes(self):
        return {"shifts": self.shifts} if any(self.shifts) else {}


@dataclass(frozen=True, eq=False)
class SumPool(Op):
    """y[c, i, j] = the sum of x over a kernel window (stride, no padding). Average pooling and
    global average pooling are this sum followed by an exact affine (the division), so the
    division can fold into what follows like any other scale."""

    kernel: tuple[int, int]
    stride: tuple[int, int]

    kind = "sum_pool"

    def out_hw(self, h: int, w: int) -> tuple[int, int]:
        return (h - self.kernel[0]) // self.stride[0] + 1, (w - self.kernel[1]) // self.stride[1] + 1

    def result_type(self, inputs):
        (x,) = inputs
        if len(x.shape) != 3:
            raise _fail(self, f"expects a C x H x W map, got {x}")
        oh, ow = self.out_hw(*x.shape[1:])
        if oh < 1 or ow < 1:
            raise _fail(self, f"window {self.kernel} does not fit {x}")
        shape = (x.shape[0], oh, ow)
        if not is_integer(x.elem):
            return TensorType(Exact(), shape)
        k = self.kernel[0] * self.kernel[1]
        return TensorType(_integer_result(k * x.elem.lo, k * x.elem.hi, frac_bits(x.elem), isinstance(x.elem, Fixed)), shape)

    def attributes(self):
        return {"kernel": self.kernel, "stride": self.stride}


@dataclass(frozen=True, eq=False)
class PReLU(Op):
    """y = x where x >= 0, slope * x where x < 0 (per channel, exact slopes); ReLU has slope 0."""

    slope: np.ndarray  # () or (C,), Fractions

    kind = "prelu"

    def __post_init__(self):
        object.__setattr__(self, "slope", np.asarray(self.slope, dtype=object))

    def result_type(self, inputs):
        (x,) = inputs
        if self.slope.ndim > 1 or (self.slope.ndim == 1 and self.slope.shape[0] not in (1, x.shape[0])):
            raise _fail(self, f"slope of shape {self.slope.shape} does not fit {x}")
        return TensorType(Exact(), x.shape)

    def attributes(self):
        return {"slope": self.slope}
