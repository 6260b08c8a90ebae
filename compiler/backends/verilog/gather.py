"""bnnc_gather{i} (templates/verilog/gather.v.j2): collects a map's pixels into the one vector a
dense layer reads."""
from __future__ import annotations

from dataclasses import dataclass

from ..hardware import Layer
from ..verilog_timing import Unit
from .common import counter_bits, msb


@dataclass(frozen=True)
class GatherView:
    module: str
    index: int
    c: int
    pixels: int
    pb: int
    in_msb: int
    out_msb: int
    count_bits: int  # of the pixel counter


def gather_view(unit: Unit) -> GatherView:
    layer = unit.layer
    assert isinstance(layer, Layer)  # a gather unit feeds a dense layer
    pixels = unit.in_beats
    c = layer.in_count // pixels
    pb = c * layer.in_elem.bits
    return GatherView(module=f"bnnc_gather{layer.index}", index=layer.index, c=c, pixels=pixels, pb=pb,
                      in_msb=msb(pb), out_msb=msb(pixels * pb), count_bits=counter_bits(pixels))

