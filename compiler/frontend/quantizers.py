"""Lowering of the quantizers: QONNX Quant (on the model input: a host-side quantizer; between
layers: a multi-level threshold), BipolarQuant, ONNX Sign and FINN's MultiThreshold, each exactly
as its definition rounds and clamps. The functions take the _Lowering of onnx.py."""
from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np

from ..ir import exact
from ..ir.ops import Affine, Quantize, Sign, Threshold
from ..ir.types import Real
from .qonnx_ops import int_range
from .real_valued import _unclipped

if TYPE_CHECKING:
    from .onnx import _Lowering


def _quant(lw: _Lowering) -> None:
    x = lw.value(0)
    scale, zp = lw.const(1, "the scale"), lw.const(2, "the zero point")
    width = np.asarray(lw.const(3, "the bit width"))
    if width.size != 1 or not np.isfinite(width).all() or width.item() != int(width.item()) \
            or not 1 <= int(width.item()) <= 32:
        raise lw.fail(f"the bit width must be one integer from 1 to 32, got {width.ravel()[:4].tolist()}")
    bits = int(width.item())
    signed, narrow = bool(lw.attr("signed", 1)), bool(lw.attr("narrow", 0))
    rounding = str(lw.attr("rounding_mode", "ROUND")).upper()
    if np.asarray(scale).size != 1 or np.asarray(zp).size != 1:
        raise lw.fail("only per-tensor scale and zero point are supported on activations")
    s, z = np.float32(np.asarray(scale).item()), np.float32(np.asarray(zp).item())
    if not s > 0:
        raise lw.fail(f"the scale must be positive, got {s}")
    if bits == 1 and signed:  # QONNX reads this as bipolar: (x/s + z >= 0) ? 1 : -1
        shifted = lw.emit(Affine, [x], f"{lw.node.output[0]}_shifted",
                          scale=exact.fractions(np.float32(1) / s), bias=exact.fractions(z))
        sign = lw.emit(Sign, [shifted], f"{lw.node.output[0]}_sign", zero=1)
        lw.bind(lw.emit(Affine, [sign], scale=exact.fractions(s), bias=exact.fractions(-z * s)))
        return
    lo, hi = int_range(bits, signed, narrow)
    if not isinstance(lw.type_of(x).elem, Real):
        _quant_between_layers(lw, x, s, z, lo, hi, rounding)
        return
    if rounding not in ("ROUND", "CEIL", "FLOOR"):
        raise lw.fail(f"rounding mode {rounding} is not supported")
    q = lw.emit(Quantize, [x], f"{lw.node.output[0]}_int", scale=np.asarray(s), zero_point=np.asarray(z),
                lo=lo, hi=hi, rounding=rounding)
    # The dequantization is exact: (q - z) * s with the float32 constants as rationals.
    lw.bind(lw.emit(Affine, [q], scale=exact.fractions(s), bias=-exact.fractions(z) * exact.fractions(s)))


# Where round(clip(v)) reaches level k, as (threshold, strict): the level holds from v >= t, or
# from v > t. Half to even: v = k - 1/2 rounds up to k only for an even k.
_LEVEL_START = {
    "ROUND": lambda k: (Fraction(2 * k - 1, 2), k % 2 == 1),
    "FLOOR": lambda k: (Fraction(k), False),
    "CEIL": lambda k: (Fraction(k - 1), True),
    "ROUND_TO_ZERO": lambda k: (Fraction(k), False) if k > 0 else (Fraction(k - 1), True),
}


def _quant_between_layers(lw: _Lowering, x: str, s, z, lo: int, hi: int, rounding: str) -> None:
    """A multi-bit Quant on exact values: q = round(clip(x / s + z, lo, hi)) is a threshold with
    one level per integer in [lo, hi], then (q - z) * s."""
    if rounding not in _LEVEL_START:
        raise lw.fail(f"rounding mode {rounding} is not supported")
    if s == 0:
        raise lw.fail("a Quant with scale zero is not supported")
    scale, shift = exact.fractions(s), exact.fractions(z)
    scaled = lw.emit(Affine, [x], f"{lw.node.output[0]}_scaled", scale=1 / scale[()], bias=shift)
    starts = [_LEVEL_START[rounding](k) for k in range(lo + 1, hi + 1)]
    q = lw.emit(Threshold, [scaled], f"{lw.node.output[0]}_int",
                thresholds=np.array([[t for t, _ in starts]], dtype=object),
                values=np.array([list(range(lo, hi + 1))], dtype=np.int64), strict=tuple(gt for _, gt in starts))
    lw.bind(lw.emit(Affine, [q], scale=scale, bias=-shift * scale))


def _bipolar_quant(lw: _Lowering) -> None:
    x = _unclipped(lw, zero=1)
    scale = lw.const(1, "the scale")
    sign = lw.emit(Sign, [x], f"{lw.node.output[0]}_sign", zero=1)
    lw.bind(lw.emit(Affine, [sign], scale=lw.channel_param(scale, sign), bias=exact.fractions(np.float32(0))))


def _sign(lw: _Lowering) -> None:
    lw.bind(lw.emit(Sign, [_unclipped(lw, zero=0)], zero=0))


def _multithreshold(lw: _Lowering) -> None:
    x = lw.value(0)
    t = np.asarray(lw.const(1, "the thresholds"), dtype=np.float32)
    if t.ndim != 2:
        raise lw.fail(f"thresholds must have shape (channels, steps), got {t.shape}")
    if lw.attr("data_layout", "NCHW") != "NCHW" and len(lw.type_of(x).shape) > 1:
        raise lw.fail("MultiThreshold with data_layout NHWC is not supported")
    if np.any(np.diff(t, axis=1) < 0):
        raise lw.fail("thresholds must be ascending along each row")
    # out_scale * level + out_bias in float32, as QONNX defines it (a huge bias swallows the level)
    levels = np.arange(t.shape[1] + 1, dtype=np.float32)
    values = exact.fractions(np.float32(lw.attr("out_scale", 1.0)) * levels + np.float32(lw.attr("out_bias", 0.0)))[None]
    lw.bind(lw.emit(Threshold, [x], thresholds=exact.fractions(t), values=values))
