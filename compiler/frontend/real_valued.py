"""Lowering of the real-valued ops around binary layers: Greater/Less/...OrEqual under Where,
Clip before a sign, PReLU/ReLU/LeakyReLU, and the average pools (a sum and an exact division)."""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np

from ..ir import exact
from ..ir.fixed_ops import PReLU, SumPool
from ..ir.ops import Affine, Reshape, Threshold
from ..ir.types import Real, is_integer

if TYPE_CHECKING:
    from .onnx import _Lowering


@dataclass(frozen=True)
class _Compare:
    """x >= c (x > c when `strict`; negated when `negate`: Less, LessOrEqual), kept symbolic
    until a Where turns it into a threshold."""
    x: str
    c: np.ndarray
    strict: bool = False
    negate: bool = False


@dataclass(frozen=True)
class _Clipped:
    """Clip(x, lo, hi), kept symbolic: in front of a sign it is the sign of x when lo < 0 < hi."""
    x: str
    lo: float
    hi: float


def _compare(lw: _Lowering) -> None:
    strict = lw.node.op_type in ("Greater", "LessOrEqual")
    negate = lw.node.op_type in ("Less", "LessOrEqual")
    lw.bind(_Compare(lw.value(0), lw.const(1, "the comparison constant"), strict, negate))


def _where(lw: _Lowering) -> None:
    cond = lw.values.get(lw.node.input[0])
    if not isinstance(cond, _Compare):
        raise lw.fail("Where is only supported as Where(x >= c, a, b) (or >, <, <=) with constants c, a, b")
    a, b = lw.const(1, "the value if true"), lw.const(2, "the value if false")
    if cond.negate:
        a, b = b, a
    t = lw.channel_param(cond.c, cond.x)
    hi, lo = lw.channel_param(a, cond.x), lw.channel_param(b, cond.x)
    channels = lw.type_of(cond.x).shape[0]
    per = lambda p: np.broadcast_to(p, (channels,))  # noqa: E731
    if t.ndim == 0 and lo.ndim == 0 and hi.ndim == 0:
        thresholds, values = np.array([[t[()]]], dtype=object), np.array([[lo[()], hi[()]]], dtype=object)
    else:
        thresholds = per(t).reshape(-1, 1).astype(object)
        values = np.stack([per(lo), per(hi)], axis=1).astype(object)
    lw.bind(lw.emit(Threshold, [cond.x], thresholds=thresholds, values=values, strict=(True,) if cond.strict else ()))


def _clip(lw: _Lowering) -> None:
    x = lw.value(0)
    lo, hi = lw.attr("min", -np.inf), lw.attr("max", np.inf)
    if len(lw.node.input) > 1 and lw.node.input[1]:
        lo = float(np.asarray(lw.const(1, "the minimum")).item())
    if len(lw.node.input) > 2 and lw.node.input[2]:
        hi = float(np.asarray(lw.const(2, "the maximum")).item())
    lw.bind(_Clipped(x, float(lo), float(hi)))


def _unclipped(lw: _Lowering, zero: int) -> str:
    """The input of a sign; a Clip in front of it is dropped where it cannot change the sign:
    lo < 0 < hi (for a sign that maps 0 to +1, lo < 0 <= hi)."""
    v = lw.values.get(lw.node.input[0])
    if not isinstance(v, _Clipped):
        return lw.value(0)
    if v.lo < 0 and (v.hi > 0 or (zero == 1 and v.hi == 0)):
        return v.x
    raise lw.fail(f"Clip to [{v.lo:g}, {v.hi:g}] in front of a sign changes the sign of some "
                  f"values; only clips with min < 0 < max are supported there")


def _prelu(lw: _Lowering) -> None:
    x = lw.value(0)
    if isinstance(lw.type_of(x).elem, Real):
        raise lw.fail(f"{lw.node.op_type} on float input data (before the first quantizer) is not supported")
    if lw.node.op_type == "Relu":
        slope = exact.fractions(np.float32(0))
    elif lw.node.op_type == "LeakyRelu":
        slope = exact.fractions(np.float32(lw.attr("alpha", 0.01)))
    else:
        slope = lw.channel_param(lw.const(1, "the slope"), x)
    if is_integer(lw.type_of(x).elem) and all(v == 1 for v in np.ravel(slope)):
        return lw.bind(x)
    lw.bind(lw.emit(PReLU, [x], slope=slope))


def _average(lw: _Lowering, x: str, kernel: tuple[int, int], stride: tuple[int, int]) -> str:
    total = lw.emit(SumPool, [x], f"{lw.node.output[0]}_sum", kernel=kernel, stride=stride)
    return lw.emit(Affine, [total], scale=np.asarray(Fraction(1, kernel[0] * kernel[1]), dtype=object),
                   bias=np.asarray(Fraction(0), dtype=object))


def _global_average_pool(lw: _Lowering) -> None:
    x = lw.value(0)
    shape = lw.type_of(x).shape
    if len(shape) != 3:
        raise lw.fail(f"GlobalAveragePool expects an N x C x H x W map, got {shape} per sample")
    lw.bind(_average(lw, x, shape[1:], shape[1:]))


def _average_pool(lw: _Lowering) -> None:
    x = lw.value(0)
    if any(lw.window_attr("pads", [0, 0, 0, 0], 0)) or lw.attr("ceil_mode", 0) \
            or any(d != 1 for d in lw.window_attr("dilations", [1, 1], 1)):
        raise lw.fail("AveragePool with padding, ceil_mode or dilation is not supported")
    if len(lw.type_of(x).shape) != 3:
        raise lw.fail(f"AveragePool expects an N x C x H x W map, got {lw.type_of(x).shape} per sample")
    kh, kw = lw.window_attr("kernel_shape", [], 1)  # window_attr checks that there are two
    sh, sw = lw.window_attr("strides", [kh, kw], 1)
    lw.bind(_average(lw, x, (kh, kw), (sh, sw)))


def _reduce_mean(lw: _Lowering) -> None:
    x = lw.value(0)
    shape = lw.type_of(x).shape
    axes = lw.attr("axes")
    if axes is None and len(lw.node.input) > 1 and lw.node.input[1]:
        axes = lw.const_ints(1, "the axes")
    if len(shape) != 3 or sorted(a % 4 for a in (axes or [])) != [2, 3]:
        raise lw.fail(f"ReduceMean is supported over the two spatial axes of an N x C x H x W map "
                      f"(axes {axes} of a {shape} map)")
    mean = _average(lw, x, shape[1:], shape[1:])
    lw.bind(mean if lw.attr("keepdims", 1) else lw.emit(Reshape, [mean], shape=(shape[0],)))
