"""The sliding window bnnc_window{i} (templates/verilog/window.v.j2) in front of a conv layer's
matrix-vector unit or a pool: a line buffer of input pixels and the padding around the map."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..hardware import Layer, PoolLayer, pack
from ..plan import Padding, plan, window_plan
from ..templating import sanitize
from ..verilog_timing import Unit, line_pixels, window_positions, window_tail
from .common import Rom, RomEntry, counter_bits, lit, msb, pack_bits


@dataclass(frozen=True)
class WindowView:
    module: str
    purpose: str
    c: int
    h: int
    w: int
    hw: int
    b: int  # bits per element in
    pb: int
    out_b: int
    kh: int
    kw: int
    sy: int
    sx: int
    top: int
    left: int
    pads: str
    pad_note: str
    mode: str  # "none" (no padding), "const" (padding is a constant code), "mask" (padding is not an input)
    pad_pixel: str
    pad_meaning: str
    line: int  # pixels in the line buffer
    line_msb: int
    keep_msb: int
    tail: int
    in_msb: int
    out_msb: int
    oh: int
    ow: int
    pos_bits: int  # of the raster positions `pos` and `need`: they lie in [0, 3 H*W)
    first: int  # `need` of a frame's first window
    row_step: int  # `need` from the last window of a row to the first of the next
    wx_bits: int  # of the output column counter
    wy_bits: int
    row_rom: Rom | None
    col_rom: Rom | None


def _mask_rom(signal: str, select: str, select_bits: int, inside: np.ndarray) -> Rom:
    """Per window row (or column): bit u set when window row u lies inside the map."""
    k = inside.shape[1]
    entries = tuple(RomEntry(lit(i, select_bits), lit(pack_bits(bits), k, "h")) for i, bits in enumerate(inside))
    return Rom(signal, select, msb(k), entries)


def window_view(unit: Unit) -> WindowView:
    win, layer = unit.window, unit.layer
    assert win is not None and layer is not None, f"a {unit.kind} unit has no window"
    c, h, w = win.in_shape
    kh, kw = win.kernel
    sy, sx = win.stride
    top, left, bottom, right = win.pads
    oh, ow = win.out_hw
    hw = h * w
    elem = layer.elem if isinstance(layer, PoolLayer) else layer.in_elem
    b = elem.bits
    wp = plan(layer).window if isinstance(layer, Layer) else window_plan(win, elem, False, f"pool {layer.index}")
    assert wp is not None  # a conv layer's plan has its window's
    mode = wp.padding.value
    if wp.padding == Padding.NONE:
        pad_note, pad_pixel, pad_meaning = "no padding", "", ""
    elif wp.padding == Padding.MASKED:
        pad_pixel, pad_meaning = "", ""
        pad_note = ("padding is zero, which is not a bit: an element is {in_map, bit} and padding has in_map = 0"
                    if b == 1 else "padding must add nothing: an element is {in_map, code} and padding has in_map = 0")
    else:
        code = wp.pad_code
        pad_pixel = lit(pack([code] * c, b), c * b, "h")
        pad_meaning = f"every channel {win.pad_value} (code {code})"
        pad_note = f"padding positions hold {win.pad_value}" + (" (adds nothing)" if win.pad_value == 0 else "")
    n = window_positions(win)
    tail = window_tail(win)
    pos_bits = (3 * hw).bit_length()  # positions + H*W lie in [0, 3 H*W)
    line = line_pixels(win.kernel, w)
    wx_bits, wy_bits = counter_bits(ow), counter_bits(oh)
    row_rom = _mask_rom("row_ok", "wy", wy_bits, wp.row_inside) if mode != "none" and (top or bottom) else None
    col_rom = _mask_rom("col_ok", "wx", wx_bits, wp.col_inside) if mode != "none" and (left or right) else None
    name = f"layer {layer.index}" + (f" (ONNX node '{sanitize(layer.origin)}')" if layer.origin else "")
    return WindowView(
        module=f"bnnc_window{layer.index}", purpose=("convolution " if unit.kind == "conv" else "pool ") + name,
        c=c, h=h, w=w, hw=hw, b=b, pb=c * b, out_b=b + 1 if mode == "mask" else b,
        kh=kh, kw=kw, sy=sy, sx=sx, top=top, left=left, pads=" / ".join(map(str, win.pads)),
        pad_note=pad_note, mode=mode, pad_pixel=pad_pixel, pad_meaning=pad_meaning,
        line=line, line_msb=msb(line * c * b), keep_msb=msb((line - 1) * c * b), tail=tail,
        in_msb=msb(c * b), out_msb=msb(kh * kw * c * (b + 1 if mode == "mask" else b)),
        oh=oh, ow=ow, pos_bits=pos_bits, first=int(n[0]) + hw, row_step=int(n[ow]) - int(n[ow - 1]) if oh > 1 else 1,
        wx_bits=wx_bits, wy_bits=wy_bits,
        row_rom=row_rom, col_rom=col_rom,
    )

