"""The IR's operations: one frozen dataclass per op.

Each op defines one value (`out`) from its `inputs`, carries the name of the ONNX node it came
from (`origin`, for messages), and states its result type in `result_type`. The meaning of each
op is its function in `bnnc.interp`; passes and backends rely on nothing else.

Per-channel parameters broadcast along axis 0 of the value's shape (the channel axis of a
vector or of a CHW map); a parameter of shape () applies to every element.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from . import exact
from .types import (
    Bipolar,
    Exact,
    Fixed,
    Int,
    Real,
    TensorType,
    Ternary,
    element_for_values,
    int_for_range,
    is_integer,
)


class IRError(Exception):
    """A graph that breaks an IR rule; the message names the op and its origin."""


def _fail(op: "Op", message: str) -> IRError:
    return IRError(f"{op.kind} %{op.out} (from ONNX node '{op.origin}'): {message}")


@dataclass(frozen=True, eq=False)
class Op:
    out: str
    inputs: tuple[str, ...]
    origin: str = field(default="", kw_only=True)

    kind = "op"

    def result_type(self, inputs: list[TensorType]) -> TensorType:
        raise NotImplementedError

    def attributes(self) -> dict:
        """Attributes for the printer, in a fixed order."""
        return {}


# ---- host side: float32 pre-processing and quantizers, executed exactly as the ONNX model does

@dataclass(frozen=True, eq=False)
class FloatOp(Op):
    """y = x <fn> const, in float32 (fn: add, sub, rsub, mul, div, rdiv, pow)."""

    fn: str
    const: np.ndarray

    kind = "float"

    def result_type(self, inputs):
        (x,) = inputs
        if not isinstance(x.elem, Real):
            raise _fail(self, f"expects f32 input, got {x}")
        try:
            fits = np.broadcast_shapes(x.shape, self.const.shape) == x.shape
        except ValueError:
            fits = False
        if not fits:
            raise _fail(self, f"constant of shape {self.const.shape} changes the input shape {x.shape}")
        return x

    def attributes(self):
        return {"fn": self.fn, "const": self.const}


@dataclass(frozen=True, eq=False)
class Quantize(Op):
    """QONNX Quant, integer part: q = round(clip(x / scale + zero_point, lo, hi)) in float32."""

    scale: np.ndarray
    zero_point: np.ndarray
    lo: int
    hi: int
    rounding: str  # ROUND (half to even), CEIL, FLOOR

    kind = "quantize"

    def result_type(self, inputs):
        (x,) = inputs
        return TensorType(int_for_range(self.lo, self.hi), x.shape)

    def attributes(self):
        return {"scale": self.scale, "zero_point": self.zero_point, "range": (self.lo, self.hi),
                "rounding": self.rounding}


# ---- generic ops, before folding

@dataclass(frozen=True, eq=False)
class Sign(Op):
    """+1 for x > 0, -1 for x < 0, and `zero` (+1 for BipolarQuant, 0 for ONNX Sign) at 0."""

    zero: int

    kind = "sign"

    def result_type(self, inputs):
        (x,) = inputs
        return TensorType(element_for_values({-1, 1, self.zero}), x.shape)

    def attributes(self):
        return {"zero": self.zero}


@dataclass(frozen=True, eq=False)
class Affine(Op):
    """y = x * scale + bias with exact rational scale and bias."""

    scale: np.ndarray  # () or (C,), Fractions
    bias: np.ndarray

    kind = "affine"

    def __post_init__(self):
        # numpy turns 0-d object results into bare Fractions; keep both parameters arrays.
        object.__setattr__(self, "scale", np.asarray(self.scale, dtype=object))
        object.__setattr__(self, "bias", np.asarray(self.bias, dtype=object))

    def result_type(self, inputs):
        (x,) = inputs
        for p in (self.scale, self.bias):
            if p.ndim > 1 or (p.ndim == 1 and p.shape[0] not in (1, x.shape[0])):
                raise _fail(self, f"parameter of shape {p.shape} does not fit {x}")
        return TensorType(Exact(), x.shape)

    def attributes(self):
        return {"scale": self.scale, "bias": self.bias}


@dataclass(frozen=True, eq=False)
class Reshape(Op):
    """Row-major reshape; free in hardware, where a tensor is a row-major stream."""

    shape: tuple[int, ...]

    kind = "reshape"

    def result_type(self, inputs):
        (x,) = inputs
        if int(np.prod(self.shape)) != x.size:
            raise _fail(self, f"cannot reshape {x} to {self.shape}")
        return TensorType(x.elem, self.shape)

    def attributes(self):
        return {"shape": self.shape}


def _reuse_attributes(reuse: Reuse | None) -> dict:
    if reuse is None:
        return {}
    return {"reuse_parent": reuse.parent, "reuse_negate": reuse.negate.astype(np.int8),
            "reuse_depth": int(reuse.depths().max()) + 1}


# ---- hardware ops

class _Weighted:
    """max |w| of a weight layer, computed once per op (passes rebuild graphs, and with them
    every result type, many times)."""

    weights: np.ndarray  # a field of each dataclass that mixes this in

    @cached_property
    def largest_weight(self) -> int:
        return int(np.abs(self.weights.astype(np.int64)).max(initial=0))


@dataclass(frozen=True, eq=False)
class Reuse:
    """A channel-reuse tree for a weight layer (MST-compression): channel c is computed from
    its parent p = parent[c] (-1: from scratch) as  s*y[p] + 2 * sum_{k in D} x[k] * w[c, k],
    with s = -1 if negate[c] else +1 and D the positions where w[c] != s * w[p] -- exact, because
    every other position contributes the same to both channels. `order` lists the channels so
    that each parent comes before its children.
    """

    parent: np.ndarray  # (C,) int64
    negate: np.ndarray  # (C,) bool

    @property
    def order(self) -> list[int]:
        depth = self.depths()
        return sorted(range(len(self.parent)), key=lambda c: (depth[c], c))

    def depths(self) -> np.ndarray:
        depth = np.full(len(self.parent), -1, dtype=np.int64)
        for c in range(len(self.parent)):
            chain, node = [], c
            while node >= 0 and depth[node] < 0:
                chain.append(node)
                node = self.parent[node]
                if len(chain) > len(self.parent):
                    raise IRError("channel-reuse tree has a cycle")
            base = depth[node] if node >= 0 else -1
            for n in reversed(chain):
                base += 1
                depth[n] = base
        return depth

    def differing(self, weights: np.ndarray, c: int) -> np.ndarray:
        """Positions (of the flattened row) where channel c differs from its signed parent."""
        rows = weights.reshape(weights.shape[0], -1)
        sign = -1 if self.negate[c] else 1
        return np.flatnonzero(rows[c] != sign * rows[self.parent[c]])

    def terms(self, weights: np.ndarray, built=None) -> int:
        """Terms (XNORs, or +-x) of one matrix-vector product: K per channel computed from
        scratch, |D| per child computed from its parent -- every child, or the channels in `built`.
        The one place where channel reuse's XNOR counts are computed."""
        rows = weights.reshape(weights.shape[0], -1)
        c, k = rows.shape
        children = np.flatnonzero(self.parent >= 0) if built is None else built
        return c * k - sum(k - len(self.differing(weights, int(j))) for j in children)


def binary(weights: np.ndarray) -> bool:
    """Every weight is -1 or +1 (XNOR-popcount hardware, channel reuse)."""
    return bool(np.all(np.abs(weights) == 1))


def weight_element(weights: np.ndarray) -> Bipolar | Ternary | Int:
    """The narrowest element holding every weight: Bipolar (+-1), Ternary (also for 0/1 weights,
    which hardware multiplies like ternary ones) or an Int."""
    values = set(np.unique(weights).tolist()) or {1}
    if values <= {0, 1}:
        return Ternary()
    return element_for_values(values)


def weight_kind(weights: np.ndarray) -> str:
    """How messages and reports name a layer's weights: binary, ternary or n-bit."""
    elem = weight_element(weights)
    return {Bipolar: "binary", Ternary: "ternary"}.get(type(elem)) or f"{elem.bits}-bit"


def _check_reuse(op: "Dense | Conv") -> None:
    if op.reuse is not None and not binary(op.weights):
        raise _fail(op, "a channel-reuse tree needs +-1 weights")


@dataclass(frozen=True, eq=False)
class Dense(_Weighted, Op):
    """y[c] = sum_k x[k] * w[c, k] with integer weights (+-1 for a binary layer; ternary or
    multi-bit: the weight quantizer's integers), on integer (or fixed-point code) inputs."""

    weights: np.ndarray  # (C, K) int8
    reuse: Reuse | None = None

    kind = "dense"

    def result_type(self, inputs):
        (x,) = inputs
        c, k = self.weights.shape
        if x.shape != (k,):
            raise _fail(self, f"weights {c}x{k} do not fit input {x}")
        _check_reuse(self)
        if not is_integer(x.elem):
            return TensorType(Exact(), (c,))  # before folding; hardware needs integer inputs
        span = k * max(abs(x.elem.lo), abs(x.elem.hi)) * self.largest_weight
        lo, hi = (-span, span)
        if isinstance(x.elem, Fixed):
            return TensorType(Fixed(int_for_range(lo, hi).bits, x.elem.frac), (c,))
        return TensorType(int_for_range(lo, hi), (c,))

    def attributes(self):
        return {"weights": self.weights, **_reuse_attributes(self.reuse)}


@dataclass(frozen=True, eq=False)
class Threshold(Op):
    """level = #{l : x >= t[c, l]} (t ascending per row; x > t where `strict`); y = values[c, level].

    This is QONNX MultiThreshold (values = out_scale * level + out_bias) and, once folded, the
    binarized activation in hardware: integer x, integer thresholds, integer values.
    Thresholds and values are int64 arrays, or Fractions before folding; a (1, L) row applies
    to every channel.
    """

    thresholds: np.ndarray  # (C, L) or (1, L)
    values: np.ndarray  # (C, L + 1) or (1, L + 1)
    # Per threshold column: count x > t instead of x >= t. Quantizers that round need it (round
    # half to even reaches level k at x = k - 1/2 only for even k); fold-thresholds removes it.
    strict: tuple[bool, ...] = ()

    kind = "threshold"

    def result_type(self, inputs):
        (x,) = inputs
        rows = {self.thresholds.shape[0], self.values.shape[0]} - {1}
        if (rows and rows != {x.shape[0]}) or self.values.shape[1] != self.thresholds.shape[1] + 1:
            raise _fail(self, f"thresholds {self.thresholds.shape} / values {self.values.shape} do not fit {x}")
        if self.strict and len(self.strict) != self.thresholds.shape[1]:
            raise _fail(self, f"{len(self.strict)} strictness flags for {self.thresholds.shape[1]} thresholds")
        if self.values.dtype == object and not exact.all_integral(self.values):
            return TensorType(Exact(), x.shape)
        return TensorType(element_for_values(self.values.ravel()), x.shape)

    @property
    def integer(self) -> bool:
        """Ready for hardware: integer thresholds (x >= t) and values."""
        return self.thresholds.dtype != object and self.values.dtype != object and not any(self.strict)

    def attributes(self):
        strict = {"strict": tuple(int(b) for b in self.strict)} if any(self.strict) else {}
        return {"thresholds": self.thresholds, "values": self.values, **strict}


@dataclass(frozen=True, eq=False)
class Conv(_Weighted, Op):
    """y[o,i,j] = sum_{c,u,v} xp[c, i*s+u, j*s+v] * w[o,c,u,v], integer w (as for Dense).

    xp is x padded by `pads` (top, left, bottom, right) with `pad_value`: 0 for ONNX/Brevitas
    zero padding (a padded position contributes nothing: it is not a bit), +1 or -1 for Larq's
    pad_values, which are bits like any other.
    """

    weights: np.ndarray  # (O, C, kh, kw) int8
    stride: tuple[int, int]
    pads: tuple[int, int, int, int]
    pad_value: int
    reuse: Reuse | None = None

    kind = "conv"

    def out_hw(self, h: int, w: int) -> tuple[int, int]:
        kh, kw = self.weights.shape[2:]
        top, left, bottom, right = self.pads
        return (h + top + bottom - kh) // self.stride[0] + 1, (w + left + right - kw) // self.stride[1] + 1

    def result_type(self, inputs):
        (x,) = inputs
        o, c, kh, kw = self.weights.shape
        if len(x.shape) != 3 or x.shape[0] != c:
            raise _fail(self, f"weights {self.weights.shape} do not fit input {x} (needs C x H x W)")
        oh, ow = self.out_hw(*x.shape[1:])
        if oh < 1 or ow < 1:
            raise _fail(self, f"kernel {kh}x{kw} does not fit input {x}")
        _check_reuse(self)
        if not is_integer(x.elem):
            return TensorType(Exact(), (o, oh, ow))
        span = c * kh * kw * max(abs(x.elem.lo), abs(x.elem.hi), abs(self.pad_value)) * self.largest_weight
        if isinstance(x.elem, Fixed):
            return TensorType(Fixed(int_for_range(-span, span).bits, x.elem.frac), (o, oh, ow))
        return TensorType(int_for_range(-span, span), (o, oh, ow))

    def attributes(self):
        return {"weights": self.weights, "stride": self.stride, "pads": self.pads, "pad_value": self.pad_value,
                **_reuse_attributes(self.reuse)}


@dataclass(frozen=True, eq=False)
class Pool(Op):
    """Max pool (per channel: mode +1), or min pool (mode -1, what a max pool becomes when a
    negative scale is moved across it). No padding."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    modes: np.ndarray  # (C,) int8 of +1 (max) / -1 (min)

    kind = "pool"

    def result_type(self, inputs):
        (x,) = inputs
        if len(x.shape) != 3 or self.modes.shape != (x.shape[0],):
            raise _fail(self, f"expects a C x H x W map with one mode per channel, got {x}")
        oh = (x.shape[1] - self.kernel[0]) // self.stride[0] + 1
        ow = (x.shape[2] - self.kernel[1]) // self.stride[1] + 1
        if oh < 1 or ow < 1:
            raise _fail(self, f"window {self.kernel} does not fit {x}")
        return TensorType(x.elem, (x.shape[0], oh, ow))

    def attributes(self):
        return {"kernel": self.kernel, "stride": self.stride, "modes": self.modes}


@dataclass(frozen=True, eq=False)
class Transpose(Op):
    """Permute the per-sample axes (perm excludes the batch axis)."""

    perm: tuple[int, ...]

    kind = "transpose"

    def result_type(self, inputs):
        (x,) = inputs
        if sorted(self.perm) != list(range(len(x.shape))):
            raise _fail(self, f"perm {self.perm} does not fit {x}")
        return TensorType(x.elem, tuple(x.shape[p] for p in self.perm))

    def attributes(self):
        return {"perm": self.perm}


@dataclass(frozen=True, eq=False)
class Softmax(Op):
    """Softmax over the class vector, in float64 on the host after the hardware."""

    kind = "softmax"

    def result_type(self, inputs):
        (x,) = inputs
        if len(x.shape) != 1:
            raise _fail(self, f"expects a vector, got {x}")
        return TensorType(Real(), x.shape)


@dataclass(frozen=True, eq=False)
class ArgMax(Op):
    """Index of the first maximum (ONNX ArgMax with select_last_index = 0)."""

    kind = "argmax"

    def result_type(self, inputs):
        (x,) = inputs
        if len(x.shape) != 1:
            raise _fail(self, f"expects a vector, got {x}")
        return TensorType(int_for_range(0, max(1, x.shape[0] - 1)), (1,))

