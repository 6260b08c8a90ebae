"""Lowering of the weight layers: Gemm/MatMul/Conv (with Pad in front) whose weights are a scale per
output channel times integers of up to 8 bits -- read from the weight quantizer's own integers
where the model has one, or rounded by --quantize-weights -- and grouped convs as full ones."""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np

from ..diagnostics import number
from ..ir import exact
from ..ir.ops import Affine, Conv, Dense
from .weights import MAX_BITS, NotIntegerWeights, integer_rows, quantize_rows

if TYPE_CHECKING:
    from .onnx import _Lowering


@dataclass(frozen=True)
class _Padded:
    """Pad(x) with a constant, kept symbolic so that the Conv reading it pads exactly."""
    x: str
    pads: tuple[int, int, int, int]  # top, left, bottom, right
    value: float


def _integer_weights(lw: _Lowering, w: np.ndarray, levels=None) -> tuple[np.ndarray, np.ndarray]:
    """(C, K) float weights -> (int8 integers, per-channel Fraction scale), exactly; `levels`:
    the (integers, scale) of the weight quantizer that produced them, laid out like w."""
    w = np.asarray(w, dtype=np.float32)
    try:
        return integer_rows(w)
    except NotIntegerWeights as bad:
        if levels is not None and _per_row(levels[1]) is not None:
            ints, scale = integer_rows(levels[0].astype(np.float32))  # reduced: +-n rows become +-1
            return ints, scale * _per_row(levels[1])
        if lw.weight_bits:
            ints, scales, moved, relative = quantize_rows(w, lw.weight_bits)
            # Binary rows within float32 noise of +-s: the rounding of XNOR-Net's
            # w + (s*sign(w) - w).detach(), a few ulps of the larger of |w| and s (the original
            # carries that noise itself, and the verify tolerance covers it).
            noise = bool(np.all(np.abs(ints) <= 1)) and relative <= 2.0 ** -16
            lw.weight_notes.append(f"{lw.label}: weights rounded to {lw.weight_bits}-bit integers times a scale "
                                   f"per output channel; the largest weight moved by {moved:.3g}"
                                   f"{' (float32 rounding of the export)' if noise else ''}")
            lw.weights_moved |= not noise
            return ints, scales
        c, (k1, k2) = bad.channel, bad.inputs
        a, b = w[c, k1], w[c, k2]
        near = " -- equal in magnitude up to float32 rounding" if abs(abs(a) - abs(b)) <= 4e-7 * abs(b) else ""
        raise lw.fail(f"weights are not a scale times integers of at most {MAX_BITS} bits: output channel {c} "
                      f"has {number(a)} at input {k1} and {number(b)} at input {k2}{near} (export them through a "
                      f"weight quantizer, or let bnnc round them: --quantize-weights BITS)") from None


def _per_row(scale: np.ndarray) -> np.ndarray | None:
    """A quantizer's scale laid out like its (C, ...) weights, as one Fraction per row (None if it
    varies within a row)."""
    rows = scale.reshape(scale.shape[0], -1)
    if np.any(rows != rows[:, :1]):
        return None
    return exact.fractions(rows[:, 0])


def _levels_of(lw: _Lowering, index: int, arrange) -> tuple[np.ndarray, np.ndarray] | None:
    """The weight quantizer's (integers, scale) behind input `index`, arranged like the weights."""
    found = lw.levels.get(lw.node.input[index])
    return None if found is None else tuple(arrange(np.asarray(a)) for a in found)


def _dense(lw: _Lowering, x: str, w: np.ndarray, bias: np.ndarray | None, alpha: float = 1.0, levels=None) -> None:
    shape = lw.type_of(x).shape
    if len(shape) != 1 or shape[0] != w.shape[1]:
        raise lw.fail(f"weights of shape {w.shape[::-1]} do not fit an input of shape {shape}")
    ints, scale = _integer_weights(lw, w, levels)
    acc = lw.emit(Dense, [x], f"{lw.node.output[0]}_acc", weights=ints)
    a = scale * Fraction(alpha)
    b = exact.fractions(np.zeros(w.shape[0], np.float32)) if bias is None else lw.channel_param(bias, acc)
    if len(set(a.tolist())) == 1:
        a = np.asarray(a[0], dtype=object)
    lw.bind(lw.emit(Affine, [acc], scale=a, bias=b))


def _gemm(lw: _Lowering) -> None:
    if lw.attr("transA", 0):
        raise lw.fail("Gemm with transA=1 is not supported")
    w = lw.const(1, "the weight matrix B")
    if w.ndim != 2:
        raise lw.fail(f"weight matrix B must be 2-D, got shape {w.shape}")
    arrange = (lambda a: a) if lw.attr("transB", 0) else (lambda a: a.T)  # noqa: E731
    w = arrange(w)
    bias = None
    if len(lw.node.input) > 2 and lw.node.input[2]:
        bias = np.asarray(lw.const(2, "the bias C"), dtype=np.float32) * np.float32(lw.attr("beta", 1.0))
    _dense(lw, lw.value(0), w, bias, lw.attr("alpha", 1.0), _levels_of(lw, 1, arrange))


def _matmul(lw: _Lowering) -> None:
    w = lw.const(1, "the weight matrix")
    if w.ndim != 2:
        raise lw.fail(f"weight matrix must be 2-D, got shape {w.shape}")
    _dense(lw, lw.value(0), w.T, None, levels=_levels_of(lw, 1, lambda a: a.T))


def _integer_kernels(lw: _Lowering, w: np.ndarray, levels=None) -> tuple[np.ndarray, np.ndarray]:
    flat = None if levels is None else tuple(a.reshape(a.shape[0], -1) for a in levels)
    ints, scale = _integer_weights(lw, w.reshape(w.shape[0], -1), flat)
    return ints.reshape(w.shape), scale


def _ungrouped(lw: _Lowering, w: np.ndarray, groups: int, in_shape) -> np.ndarray:
    """A grouped (or depthwise) kernel as the full one: output channel o reads only the input
    channels of its group, every other weight is 0 -- the same sums, exactly."""
    if groups == 1:
        return w
    o, per_group = w.shape[:2]
    if groups < 1 or o % groups or len(in_shape) != 3 or in_shape[0] != per_group * groups:
        raise lw.fail(f"group={groups} does not fit a kernel of shape {w.shape} on an input of shape {in_shape}")
    full = np.zeros((o, per_group * groups) + w.shape[2:], dtype=w.dtype)
    for out in range(o):
        g = out // (o // groups)
        full[out, g * per_group:(g + 1) * per_group] = w[out]
    return full


def _conv(lw: _Lowering) -> None:
    src = lw.values.get(lw.node.input[0])
    pads, pad_value = (0, 0, 0, 0), 0.0
    if isinstance(src, _Padded):
        pads, pad_value = src.pads, src.value
        src = src.x
    if not isinstance(src, str):
        raise lw.fail("input is not a tensor this lowering can use here")
    w = np.asarray(lw.const(1, "the kernel"), np.float32)
    if w.ndim != 4:
        raise lw.fail(f"only 2-D convolutions are supported (kernel shape {w.shape})")
    if lw.attr("kernel_shape") is not None and list(lw.attr("kernel_shape")) != list(w.shape[2:]):
        raise lw.fail(f"kernel_shape {lw.attr('kernel_shape')} does not match the kernel's shape {w.shape}")
    w = _ungrouped(lw, w, int(lw.attr("group", 1)), lw.type_of(src).shape)
    if any(d != 1 for d in lw.window_attr("dilations", [1, 1], 1)):
        raise lw.fail("dilated convolutions are not supported")
    if lw.attr("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise lw.fail(f"auto_pad={lw.attr('auto_pad')} is not supported; export with explicit pads")
    own = lw.window_attr("pads", [0, 0, 0, 0], 0)
    if any(own) and any(pads):
        if pad_value != 0:
            raise lw.fail("a Pad with a non-zero value followed by a zero-padding Conv is not supported")
    top, left, bottom, right = pads
    pads = (top + own[0], left + own[1], bottom + own[2], right + own[3])
    if not any(pads):
        pad_value = 0.0
    if pad_value not in (0.0, 1.0, -1.0):
        raise lw.fail(f"padding with {number(pad_value)} is not supported: binary convolutions pad with 0 "
                      f"(no contribution) or with a bit (+1 or -1)")
    levels = _levels_of(lw, 1, lambda a: a) if int(lw.attr("group", 1)) == 1 else None
    ints, scale = _integer_kernels(lw, w, levels)
    acc = lw.emit(Conv, [src], f"{lw.node.output[0]}_acc", weights=ints,
                  stride=tuple(lw.window_attr("strides", [1, 1], 1)), pads=pads, pad_value=int(pad_value))
    a = scale
    if len(set(a.tolist())) == 1:
        a = np.asarray(a[0], dtype=object)
    bias = np.zeros(w.shape[0], np.float32)
    if len(lw.node.input) > 2 and lw.node.input[2]:
        bias = np.asarray(lw.const(2, "the bias"), np.float32)
    # A pad value of +-1 is in the units of the padded tensor; fold-constants rescales it.
    lw.bind(lw.emit(Affine, [acc], scale=a, bias=exact.fractions(bias)))


def _pad(lw: _Lowering) -> None:
    x = lw.value(0)
    mode = lw.attr("mode", "constant")
    pads = lw.attr("pads")
    if pads is None:
        pads = lw.const_ints(1, "the pads")
    value = 0.0
    if len(lw.node.input) > 2 and lw.node.input[2]:
        value = float(np.asarray(lw.const(2, "the pad value")).item())
    rank = len(lw.type_of(x).shape) + 1
    if mode != "constant" or len(pads) != 2 * rank or rank != 4:
        raise lw.fail("only constant padding of N x C x H x W maps is supported")
    begin, end = pads[:rank], pads[rank:]
    if begin[0] or begin[1] or end[0] or end[1]:
        raise lw.fail("padding the batch or channel axis is not supported")
    lw.bind(_Padded(x, (begin[2], begin[3], end[2], end[3]), value))
