"""C++ text of the HLS backend's element types and constant arrays: the bnn element policy of an
IR element, integer and ap_uint literals, and initializers laid out per PE (the kernels index
every per-channel array as [pe][nf])."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..diagnostics import BnncError
from ..ir.types import Bipolar, Element, Fixed, Int, Ternary, int_for_range
from .plan import SignedDigits

LINE_WIDTH = 100  # of array initializers in the generated code


def cpp_int(v: int) -> str:
    """A C++ integer literal that keeps its value whatever the width of int."""
    v = int(v)
    return str(v) if -(1 << 31) < v < (1 << 31) else f"{v}LL"


def cpp_bits(word: int, width: int) -> str:
    """An ap_uint<width> constant: a hex literal, or hex string above 64 bits (C++ has no wider literal)."""
    digits = f"0x{word:0{(width + 3) // 4}x}"
    return digits if width <= 64 else f'ap_uint<{width}>("{digits}", 16)'


def _inline(nested, fmt) -> str:
    if nested.ndim == 1:
        return "{" + ", ".join(fmt(v) for v in nested) + "}"
    return "{" + ", ".join(_inline(sub, fmt) for sub in nested) + "}"


def braced(nested, fmt, indent: int = 4) -> list[str]:
    """Lines of a C++ initializer for an (A, B, ...) array, one brace level per axis: a
    sub-array that fits on one line stays on one line, long rows wrap at LINE_WIDTH."""
    pad = " " * indent
    nested = np.asarray(nested, dtype=object)
    text = _inline(nested, fmt)
    if indent + len(text) < LINE_WIDTH:
        return [f"{pad}{text},"]
    if nested.ndim > 1:
        return [f"{pad}{{"] + rows(nested, fmt, indent + 4) + [f"{pad}}},"]
    lines, line = [], ""
    for item in (fmt(v) for v in nested):
        if line and indent + 4 + len(line) + len(item) + 2 > LINE_WIDTH:
            lines.append(line)
            line = ""
        line += f"{item}, "
    lines.append(line)
    return [f"{pad}{{"] + [f"{pad}    {line.rstrip()}" for line in lines] + [f"{pad}}},"]


def rows(nested, fmt, indent: int = 4) -> list[str]:
    """The braced elements of an array, without the braces around the whole."""
    return [line for sub in nested for line in braced(sub, fmt, indent)]


def by_pe(per_channel: np.ndarray, pe: int) -> np.ndarray:
    """(C, ...) -> (PE, NF, ...): channel c = nf * PE + pe sits at [pe, nf]."""
    c = per_channel.shape[0]
    return np.swapaxes(per_channel.reshape((c // pe, pe) + per_channel.shape[1:]), 0, 1)


def chunk_words(bits: np.ndarray, pe: int, simd: int, width: int = 1) -> np.ndarray:
    """(C, K) 0/1 -> (PE, NF * SF) words: [pe][nf * SF + sf] bit i is input sf * SIMD + i of
    channel nf * PE + pe -- the layout of the weights and of the reuse masks. With width > 1,
    (C, K) integers as width-bit two's-complement fields [i*width +: width] (multi-bit weights)."""
    c, k = bits.shape
    chunks = bits.reshape(c, k // simd, simd)
    chunks = chunks & ((1 << width) - 1) if chunks.dtype == object else chunks.astype(np.int64) & ((1 << width) - 1)
    words = np.zeros((c, k // simd), dtype=object)
    for i in range(simd):
        words += chunks[:, :, i].astype(object) << (i * width)
    return by_pe(words, pe).reshape(pe, -1)


@dataclass(frozen=True)
class ElemView:
    cpp: str  # the bnn element policy, e.g. bnn::Unsigned<8>
    width: int


def elem_view(elem: Element) -> ElemView:
    if isinstance(elem, Bipolar):
        return ElemView("bnn::Bipolar", 1)
    if isinstance(elem, Ternary):
        return ElemView("bnn::Signed<2>", 2)
    if isinstance(elem, (Int, Fixed)):
        if elem.bits > 63:
            raise BnncError(f"{elem} elements are wider than the HLS backend's 63-bit limit")
        return ElemView(f"bnn::{'Signed' if elem.signed else 'Unsigned'}<{elem.bits}>", elem.bits)
    raise BnncError(f"{elem} values cannot reach the HLS design; fold them to integers first")


def signed_width(values) -> int:
    values = [int(v) for v in np.ravel(values)]
    return int_for_range(min(values + [-1]), max(values + [0])).bits


def digits_literal(digits: SignedDigits):
    """C++ text of a constant as its signed digits (an ap_uint of digits.bits bits)."""
    return lambda value: cpp_bits(digits.encode(value), digits.bits)


def digit_elem(elem: ElemView, digits: SignedDigits | None) -> ElemView:
    """The element type a matrix-vector unit with signed-digit weights reads (bnn::DigitWeights)."""
    return elem if digits is None else ElemView(f"bnn::DigitWeights<{elem.cpp}, {digits.terms}, {digits.exp_bits}>",
                                                elem.width)
