"""The two parts a residual layer adds to bnnc_layer{i} (layer.v.j2): the block's sign of every
fixed-point input element, taken when the vector is latched, and the shortcut -- the sum of each
channel at the window's tap positions, latched with it and added to the post-op's code
(hardware.Shortcut). Constants and expressions only; the template places them."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..hardware import Layer, encode
from ..plan import SignedDigits, input_sign_thresholds, plan, shortcut_bits, signed_digit_format
from .common import lit


@dataclass(frozen=True)
class StageView:
    """One fixed-point affine after the add, on each lane: y = floor((x * m + bias) / 2^shift)
    modulo 2^out_bits, computed in `width` = out_bits + shift bits (all the floor reads)."""

    index: int
    in_bits: int
    out_bits: int
    width: int
    shift: int
    prelu: bool  # m is the negative-side multiplier where x < 0
    x_ext: str  # the stage's input, sign-extended or cut to `width`
    digits: SignedDigits | None = None  # multiplier-free: m (and neg) as signed digits, x * m by shifts and adds


@dataclass(frozen=True)
class ResidualView:
    port_bits: int  # bits of one input element on the wire: the code, and the in-map bit when masked
    port_msb: int
    code_bits: int  # of the fixed-point code
    masked: bool
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
    tap_ext: str  # the tap sum as a sum_bits-wide expression
    drops_tap_bits: bool
    sum_bits: int
    stages: tuple[StageView, ...]
    stage_roms: tuple  # Rom per stage constant: stage{k}_mult, stage{k}_neg, stage{k}_bias


def _extend(signal: str, bits: int, width: int) -> str:
    if width == bits:
        return signal
    if width < bits:
        return f"{signal}[{width - 1}:0]"
    return f"{{{{{width - bits}{{{signal}[{bits - 1}]}}}}, {signal}}}"


def _stages(layer: Layer, group_rom, multiplier_free: int) -> tuple[tuple[StageView, ...], tuple]:
    views, roms = [], []
    c = layer.out_count
    assert layer.shortcut is not None, "not a residual layer"
    for k, st in enumerate(layer.shortcut.after):
        width = st.out_elem.bits + st.shift
        digits = None
        if multiplier_free:
            factors = [st.mult] + ([] if st.neg_mult is None else [st.neg_mult])
            digits = signed_digit_format(np.concatenate(factors), multiplier_free,
                                         f"layer {layer.index}'s stage {k} after the shortcut")
        views.append(StageView(k, st.in_elem.bits, st.out_elem.bits, width, st.shift, st.neg_mult is not None,
                               _extend(f"v{k}", st.in_elem.bits, width), digits))
        per_channel = {"mult": st.mult, "neg": st.neg_mult, "bias": st.bias}
        for name, values in per_channel.items():
            if values is not None:
                rows = [[int(v)] for v in np.broadcast_to(np.asarray(values).reshape(-1), (c,))]
                roms.append(group_rom(f"stage{k}_{name}", rows, layer, width, name, None if name == "bias" else digits))
    return tuple(views), tuple(roms)


def residual_view(layer: Layer, group_rom, multiplier_free: int = 0) -> ResidualView | None:
    """group_rom(signal, rows, layer, field_bits, meaning, digits): a per-channel-group constant
    table (digits: of signed digits); multiplier_free: see layer.layer_view."""
    if layer.act is None:
        return None
    assert layer.window is not None and layer.shortcut is not None  # a residual layer has both
    c_in = layer.window.in_shape[0]
    code_bits, act_bits, masked = layer.in_elem.bits, plan(layer).in_bits, layer.act.masked
    port_bits = code_bits + int(masked)
    thr_w = code_bits + 1
    thresholds = input_sign_thresholds(layer)
    levels = thresholds.shape[1]
    mask = (1 << thr_w) - 1
    packed_t = sum((int(t) & mask) << (i * thr_w) for i, t in enumerate(thresholds.ravel().tolist()))
    codes = encode(layer.act.values, layer.act.elem).ravel().tolist()
    packed_c = sum(int(v) << (i * act_bits) for i, v in enumerate(codes))
    taps = layer.shortcut.taps
    tap_w = shortcut_bits(layer)
    extend = tap_w - code_bits

    def element(pos: int, c: int) -> str:  # taps lie inside the map: the code alone
        lo_bit = (pos * c_in + c) * port_bits
        msb_bit = lo_bit + code_bits - 1
        body = f"in_data[{msb_bit}:{lo_bit}]"
        return f"{{{{{extend}{{in_data[{msb_bit}]}}}}, {body}}}" if extend else body

    tap_sums = tuple(" + ".join(element(t, c) for t in taps) for c in range(c_in))
    pe, groups = layer.pe, layer.out_count // layer.pe
    group_taps = tuple(f"taps[{(g + 1) * pe * tap_w - 1}:{g * pe * tap_w}]" for g in range(groups))
    sum_bits = layer.shortcut.sum_elem.bits
    tap_ext = _extend("tap", tap_w, sum_bits)
    stages, stage_roms = _stages(layer, group_rom, multiplier_free)
    return ResidualView(port_bits=port_bits, port_msb=layer.in_count * port_bits - 1, code_bits=code_bits,
                        masked=masked, c_in=c_in, levels=levels,
                        thr_w=thr_w, thresholds=lit(packed_t, c_in * levels * thr_w, "h"),
                        codes=lit(packed_c, len(codes) * act_bits, "h"), act_bits=act_bits, tap_w=tap_w,
                        tap_sums=tap_sums, group_taps=group_taps, main_shift=layer.shortcut.main_shift,
                        tap_shift=layer.shortcut.tap_shift, tap_ext=tap_ext, drops_tap_bits=sum_bits < tap_w,
                        sum_bits=sum_bits, stages=stages, stage_roms=stage_roms)
