"""The two parts a residual layer adds to bnnc_layer{i} (layer.v.j2): the block's sign of every
fixed-point input element, taken when the vector is latched, and the shortcut -- the sum of each
channel at the window's tap positions, latched with it and added to the post-op's code
(hardware.Shortcut). Constants and expressions only; the template places them."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..hardware import Layer, encode
from ..plan import plan
from .common import lit


@dataclass(frozen=True)
class ResidualView:
    port_bits: int  # bits of one fixed-point input element on the wire
    port_msb: int
    c_in: int
    levels: int  # thresholds per input channel
    thr_w: int  # port bits + 1: a threshold one past the largest code still fits
    thresholds: str  # Verilog literal: C_IN x levels thresholds, channel 0 lowest
    codes: str  # Verilog literal: C_IN x (levels + 1) output codes of act_bits
    act_bits: int
    tap_w: int
    tap_sums: tuple[str, ...]  # per channel: the sum of its taps, from in_data
    group_taps: tuple[str, ...]  # per channel group: its PE tap sums (a slice of `taps`)
    main_shift: int
    tap_shift: int
    tap_ext: str  # the tap sum as an out_bits-wide expression
    drops_tap_bits: bool


def residual_view(layer: Layer) -> ResidualView | None:
    if layer.act is None:
        return None
    c_in = layer.window.in_shape[0]
    port_bits, act_bits = layer.in_elem.bits, plan(layer).in_bits
    thr_w = port_bits + 1
    lo, hi = layer.in_elem.lo, layer.in_elem.hi
    thresholds = np.clip(layer.act.thresholds.astype(object), lo, hi + 1)  # beyond the codes: same comparisons
    levels = thresholds.shape[1]
    mask = (1 << thr_w) - 1
    packed_t = sum((int(t) & mask) << (i * thr_w) for i, t in enumerate(thresholds.ravel().tolist()))
    codes = encode(layer.act.values, layer.act.elem).ravel().tolist()
    packed_c = sum(int(v) << (i * act_bits) for i, v in enumerate(codes))
    taps = layer.shortcut.taps
    tap_w = port_bits + max(1, (len(taps) - 1).bit_length()) if len(taps) > 1 else port_bits
    extend = tap_w - port_bits

    def element(pos: int, c: int) -> str:
        lo_bit = (pos * c_in + c) * port_bits
        msb_bit = lo_bit + port_bits - 1
        body = f"in_data[{msb_bit}:{lo_bit}]"
        return f"{{{{{extend}{{in_data[{msb_bit}]}}}}, {body}}}" if extend else body

    tap_sums = tuple(" + ".join(element(t, c) for t in taps) for c in range(c_in))
    pe, groups = layer.pe, layer.out_count // layer.pe
    group_taps = tuple(f"taps[{(g + 1) * pe * tap_w - 1}:{g * pe * tap_w}]" for g in range(groups))
    out_bits = layer.out_elem.bits
    if out_bits >= tap_w:
        tap_ext = f"{{{{{out_bits - tap_w}{{tap[{tap_w - 1}]}}}}, tap}}" if out_bits > tap_w else "tap"
    else:
        tap_ext = f"tap[{out_bits - 1}:0]"
    return ResidualView(port_bits=port_bits, port_msb=layer.in_count * port_bits - 1, c_in=c_in, levels=levels,
                        thr_w=thr_w, thresholds=lit(packed_t, c_in * levels * thr_w, "h"),
                        codes=lit(packed_c, len(codes) * act_bits, "h"), act_bits=act_bits, tap_w=tap_w,
                        tap_sums=tap_sums, group_taps=group_taps, main_shift=layer.shortcut.main_shift,
                        tap_shift=layer.shortcut.tap_shift, tap_ext=tap_ext, drops_tap_bits=out_bits < tap_w)
