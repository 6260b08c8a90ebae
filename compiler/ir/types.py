"""Value types of the IR and how each element is encoded as bits in hardware.

The interpreter always holds *values* (what the number means), never encodings:
  Real      float32 host-side data before the first quantizer (matches the ONNX model bit for bit)
  Exact     exact real numbers (Fractions) between folding steps; never reaches hardware
  Bipolar   values -1/+1; encoded as one bit b with value 2b-1
  Ternary   values -1/0/+1; encoded as a 2-bit two's-complement integer
  Int       integers of a given width; two's complement when signed
  Fixed     integers q meaning q * 2**-frac; the code q is what hardware carries
"""
from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import TypeIs


@dataclass(frozen=True)
class Real:
    def __str__(self) -> str:
        return "f32"


@dataclass(frozen=True)
class Exact:
    def __str__(self) -> str:
        return "exact"


@dataclass(frozen=True)
class Bipolar:
    bits = 1
    signed = False  # the wire bit is unsigned; its value is 2b-1
    lo, hi = -1, 1

    def __str__(self) -> str:
        return "bipolar"


@dataclass(frozen=True)
class Ternary:
    bits = 2
    signed = True
    lo, hi = -1, 1

    def __str__(self) -> str:
        return "ternary"


@dataclass(frozen=True)
class Int:
    bits: int
    signed: bool

    @property
    def lo(self) -> int:
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def hi(self) -> int:
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    def __str__(self) -> str:
        return f"{'s' if self.signed else 'u'}{self.bits}"


@dataclass(frozen=True)
class Fixed:
    """Signed fixed point: code q in `bits` two's-complement bits means q * 2**-frac."""

    bits: int
    frac: int
    signed = True

    @property
    def lo(self) -> int:
        return -(1 << (self.bits - 1))

    @property
    def hi(self) -> int:
        return (1 << (self.bits - 1)) - 1

    def __str__(self) -> str:
        return f"fixed<{self.bits},{self.frac}>"


def frac_bits(elem: Element) -> int:
    """Fraction bits of an element's code: a Fixed's, else 0."""
    return elem.frac if isinstance(elem, Fixed) else 0


Element = Real | Exact | Bipolar | Ternary | Int | Fixed
IntegerElement = Bipolar | Ternary | Int | Fixed  # what hardware carries: each has bits, signed, lo and hi
INTEGER_ELEMENTS = (Bipolar, Ternary, Int, Fixed)


def is_integer(elem: Element) -> TypeIs[IntegerElement]:
    """True when values are integers (or integer codes) that hardware can carry."""
    return isinstance(elem, INTEGER_ELEMENTS)


def int_for_range(lo: int, hi: int) -> Int:
    """The narrowest Int holding every integer in [lo, hi]."""
    if lo >= 0:
        return Int(max(1, int(hi).bit_length()), False)
    bits = max(int(hi).bit_length(), (-int(lo) - 1).bit_length()) + 1
    return Int(bits, True)


def element_for_values(values) -> Bipolar | Ternary | Int:
    """The element type that holds exactly the given set of integer values best."""
    vals = {int(v) for v in values}
    if vals <= {-1, 1}:
        return Bipolar()
    if vals <= {-1, 0, 1} and -1 in vals:
        return Ternary()
    return int_for_range(min(vals), max(vals))


@dataclass(frozen=True)
class TensorType:
    elem: Element
    shape: tuple[int, ...]  # without the batch axis

    @property
    def size(self) -> int:
        return prod(self.shape)

    def __str__(self) -> str:
        return f"{self.elem}[{'x'.join(map(str, self.shape))}]"
