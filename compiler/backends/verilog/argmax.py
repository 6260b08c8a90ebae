"""bnnc_argmax (templates/verilog/argmax.v.j2): the index of the first maximum of the last
layer's outputs."""
from __future__ import annotations

from dataclasses import dataclass

from ..hardware import Design, Layer
from .common import elem_signed, msb


@dataclass(frozen=True)
class ArgMaxStep:
    index: int
    prev: int
    lsb: int
    msb: int
    keeps_best: bool  # a later step still compares against this best


@dataclass(frozen=True)
class ArgMaxView:
    module: str
    count: int
    elem_bits: int
    in_msb: int
    out_msb: int
    signed: bool
    first_msb: int
    index_bits: int
    steps: tuple[ArgMaxStep, ...]
    result: str  # the wire holding the final index


def argmax_view(design: Design) -> ArgMaxView:
    last = design.layers[-1]
    assert isinstance(last, Layer)  # check_design refuses a pool at the end
    elem, n = last.out_elem, last.out_count
    bits = elem.bits
    index_bits = design.out_elem.bits
    steps = tuple(ArgMaxStep(index=i, prev=i - 1, lsb=i * bits, msb=(i + 1) * bits - 1,
                             keeps_best=i < n - 1) for i in range(1, n))
    return ArgMaxView(module="bnnc_argmax", count=n, elem_bits=bits, in_msb=msb(n * bits),
                      out_msb=msb(index_bits), signed=elem_signed(elem), first_msb=msb(bits),
                      index_bits=index_bits, steps=steps, result=f"index{n - 1}")

