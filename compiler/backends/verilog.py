"""Verilog backend: a `Design` becomes a chain of streaming modules plus the top `bnnc_top`.

Every module boundary is a valid/ready stream. A vector (a dense layer's input or output) is one
transfer; a feature map travels one pixel per transfer in raster order, all channels of the pixel
together (element i of a transfer at bits [i*w +: w], encoded as in `hardware.encode`). So the top
takes a conv net's input image one pixel per transfer (H*W transfers per frame, `stream_beats`).

Modules, per layer (verilog_timing.Unit groups them):
  conv   bnnc_window{i} (line buffer, padding) -> bnnc_layer{i} (matrix-vector unit, once per output pixel)
  pool   bnnc_window{i} -> bnnc_pool{i} (per-channel max/min)
  dense  [bnnc_gather{i} when it reads a map ->] bnnc_layer{i}
  bnnc_argmax at the end; bnnc_fifo between units where the timing model asks for one; bnnc_pacer
  in front when frames must be paced (see verilog_timing).
A matrix-vector unit latches its input vector, runs (C/PE channel groups) x (K/SIMD input chunks)
steps of a PE x SIMD unit, and holds the result in an output register until it is taken.

All arithmetic (widths, converted thresholds, ROM words, reuse corrections) happens here. The
templates in templates/verilog only place these numbers into RTL that reads like hand-written
Verilog.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import jinja2
import numpy as np

from ..diagnostics import BnncError, quote
from ..ir.types import Bipolar, Element, int_for_range
from ..resources import resource_dir
from .hardware import Design, Layer, PoolLayer, encode
from .verilog_timing import Timing, Unit, line_pixels, timing, window_positions, window_tail

TOP = "bnnc_top"
FILELIST = "filelist.f"  # the sources in compile order, so tools never glob stale files


# ---- view-models: everything a template needs, already computed

@dataclass(frozen=True)
class RomEntry:
    addr: str  # sized Verilog literal
    word: str
    note: str = ""  # the word's fields in decimal, for readers (small words only)


@dataclass(frozen=True)
class Rom:
    """A constant table read combinationally: `signal = table[select]`."""

    signal: str
    select: str
    msb: int
    entries: tuple[RomEntry, ...]
    default: str


@dataclass(frozen=True)
class Child:
    """A channel computed from another one (channel reuse)."""

    channel: int
    parent: int
    negate: bool
    d: int  # inputs where the weights differ
    x: str  # Verilog: those inputs, read from the rotated input buffer
    w: str  # Verilog literal: the channel's weights on them
    inside_d: str  # masked layers: Verilog expression counting the inputs of D inside the map


@dataclass(frozen=True)
class SumWire:
    channel: int
    expr: str


@dataclass(frozen=True)
class LayerView:
    module: str
    index: int
    origin: str  # sanitised, for comments only
    conv_note: str
    in_count: int
    out_count: int
    in_kind: str
    pe: int
    simd: int
    groups: int  # C / PE
    chunks: int  # K / SIMD
    steps: int
    lanes: int  # channels per group with a dot product of their own
    in_bits: int  # on the wire: 2 for masked elements {inside, bit}
    out_bits: int
    in_msb: int
    out_msb: int
    chunk_msb: int  # of one chunk of the input buffer (SIMD elements)
    chunk_w: int
    group_w: int  # bits of one channel group's output codes (PE elements)
    group_out_msb: int
    collected_msb: int  # of the register that gathers groups 0 .. groups-2
    mode: str  # "xnor" (popcount), "masked" (popcount of the inputs inside the map), "integer" (sum of +-x),
    #            "multiply" (sum of x * w with multi-bit or ternary weights)
    bipolar_param: int
    masked_param: int
    signed_param: int
    signed_compare: bool
    term_w: int  # bits of one term of the dot product: 1 (XNOR) or input bits + 1 (so that -x fits)
    acc_w: int
    acc_note: str
    group_msb: int
    chunk_ctr_msb: int
    group_zero: str
    group_one: str
    last_group: str
    chunk_zero: str
    chunk_one: str
    last_chunk: str
    acc_zero: str
    weights: Rom
    post: str  # "threshold" or "affine"
    post_note: str
    levels: int
    lane_thr_w: int
    lane_code_w: int
    post_roms: tuple[Rom, ...]
    drops_high_bits: bool  # affine result wider than the output code
    # masked layers: the window's pixels inside the map
    pixels: int
    pixel_channels: int
    pixel_channels_lit: str
    pixel_inside: str
    all_ones: str
    # channel reuse
    children: tuple[Child, ...]
    reuse_formulas: tuple[str, ...]
    sum_wires: tuple[SumWire, ...]
    sums_concat: str
    weight_bits: int = 1  # 1: +-1 weights as bits; else two's-complement integers (mode "multiply")


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
    pos_msb: int
    start: str
    first: str
    tail_at: str
    hw_lit: str
    pos_one: str
    accept_ext: str
    row_step: str
    col_step: str
    wx_msb: int
    wy_msb: int
    last_col: str
    last_row: str
    wx_zero: str
    wy_zero: str
    wx_one: str
    wy_one: str
    row_rom: Rom | None
    col_rom: Rom | None


@dataclass(frozen=True)
class PoolView:
    module: str
    index: int
    origin: str
    elem: str
    c: int
    b: int
    kh: int
    kw: int
    taps: int
    in_msb: int
    out_msb: int
    keep_max: str
    all_max: bool
    all_min: bool
    signed: bool


@dataclass(frozen=True)
class GatherView:
    module: str
    index: int
    c: int
    pixels: int
    pb: int
    in_msb: int
    out_msb: int
    count_msb: int
    last: str
    zero: str
    one: str


@dataclass(frozen=True)
class ArgMaxStep:
    index: int
    prev: int
    lsb: int
    msb: int
    literal: str  # the index as a sized literal
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
    zero: str
    steps: tuple[ArgMaxStep, ...]
    result: str  # the wire holding the final index


@dataclass(frozen=True)
class Stage:
    module: str
    params: str  # "#(...)" for the parameterized primitives, else ""
    instance: str
    source: str  # prefix of the stream it reads: "in" or "linkN"
    sink: str
    width: int  # of the stream it writes


@dataclass(frozen=True)
class TopView:
    design: str
    in_note: str
    in_msb: int
    out_note: str
    out_msb: int
    cycles_per_frame: int
    latency: int
    links: tuple[tuple[str, int], ...]  # internal streams: (prefix, data msb)
    stages: tuple[Stage, ...]


# ---- timing model of this architecture (verilog_timing; the tests check it against simulation)

def cycles_per_frame(design: Design) -> int:
    """Steady-state clocks between frames with no gaps and no back-pressure."""
    return timing(design).interval


def latency(design: Design) -> int:
    """Clock edges from a frame's first input transfer to its (last) output transfer, through an
    idle pipeline with out_ready high."""
    return timing(design).latency


def stream_beats(design: Design) -> tuple[int, int]:
    """Transfers per frame at the top's input and output: a conv net's input image streams one
    pixel per transfer; the output is always one vector."""
    return timing(design).in_beats, 1


# ---- numbers

def sanitize(text: str, limit: int = 80) -> str:
    """Safe inside a // comment: printable ASCII without anything a tool might parse."""
    clean = re.sub(r"[^A-Za-z0-9_.:+\- ]", "_", str(text))[:limit]
    return clean or "_"


def _msb(width: int) -> int:
    return width - 1


def _counter_bits(count: int) -> int:
    return max(1, (count - 1).bit_length())


# Wider constants are written as a concatenation: Verilator rejects numbers over 65,536 bits
# ("exceeds implementation limit"), Icarus tokens over its 16 KB scanner buffer (4,096 hex digits fit).
MAX_LITERAL_BITS = 1 << 14


def _lit(value: int, bits: int, base: str = "d") -> str:
    value = int(value)
    if not 0 <= value < 1 << bits:
        raise ValueError(f"{value} does not fit {bits} unsigned bits")
    if bits > MAX_LITERAL_BITS:  # e.g. the weight word of an unrolled 784 x 256 layer: concatenate
        pieces = [(lo, min(MAX_LITERAL_BITS, bits - lo)) for lo in range(0, bits, MAX_LITERAL_BITS)]
        return "{" + ", ".join(_lit(value >> lo & ((1 << w) - 1), w, "h") for lo, w in reversed(pieces)) + "}"
    if base == "h":
        return f"{bits}'h{value:0{(bits + 3) // 4}x}"
    return f"{bits}'d{value}"


def _pack(codes: np.ndarray, bits: int) -> int:
    """Unsigned codes (element 0 first) -> one integer, element i at bits [i*bits +: bits]."""
    word = 0
    for i, c in enumerate(np.asarray(codes, dtype=object).ravel().tolist()):
        word |= int(c) << (i * bits)
    return word


def _pack_bits(bits01: np.ndarray) -> int:
    """A 0/1 vector -> integer, element 0 in the least significant bit (fast for big ROMs)."""
    return int.from_bytes(np.packbits(bits01.astype(np.uint8), bitorder="little").tobytes(), "little")


def _per_channel(values: np.ndarray | None, channels: int, columns: int | None = None) -> list[list[int]]:
    """(1, n) or (C, n) (or (C,) / ()) parameters as C rows of Python ints."""
    arr = np.asarray(values, dtype=object)
    arr = arr.reshape((-1, columns)) if columns is not None else arr.reshape((-1, 1))
    arr = np.broadcast_to(arr, (channels, arr.shape[1]))
    return [[int(v) for v in row] for row in arr]


def popcount_threshold(t: int, k: int) -> int:
    """The popcount form of a dot-product threshold over k bipolar inputs:
    dot = 2P - k >= t  <=>  P >= (t + k) / 2  <=>  P >= ceil((t + k) / 2)   (P is an integer)."""
    return -((-(t + k)) // 2)


def _elem_signed(elem: Element) -> bool:
    return not isinstance(elem, Bipolar) and bool(getattr(elem, "signed", False))


def _part(signal: str, index: int, bits: int) -> str:
    """A constant part-select of element `index`."""
    lo = index * bits
    return f"{signal}[{lo}]" if bits == 1 else f"{signal}[{lo + bits - 1}:{lo}]"


def _concat(parts: list[str], per_line: int = 0, indent: str = "") -> str:
    """Verilog concatenation with parts[0] in the least significant position; `per_line` > 0
    breaks it into lines of that many parts."""
    if len(parts) == 1:
        return parts[0]
    parts = list(reversed(parts))
    if not per_line or len(parts) <= per_line:
        return "{" + ", ".join(parts) + "}"
    lines = [", ".join(parts[i:i + per_line]) for i in range(0, len(parts), per_line)]
    return "{" + f",\n{indent} ".join(lines) + "}"


NOTE_FIELDS = 32  # ROM words with up to this many fields get a decimal comment


def _group_rom(signal: str, rows: list[list[int]], layer: Layer, field_bits: int, group_bits: int,
               meaning: str) -> Rom:
    """Per channel group: the PE lanes' fields packed lane 0 first (each row: one channel, its
    values signed or not; they are stored modulo 2**field_bits)."""
    width = layer.pe * len(rows[0]) * field_bits
    mask = (1 << field_bits) - 1
    entries = []
    for g in range(layer.out_count // layer.pe):
        group = rows[g * layer.pe:(g + 1) * layer.pe]
        word = _pack([v & mask for row in group for v in row], field_bits)
        note = ""
        if layer.pe * len(rows[0]) <= NOTE_FIELDS:
            note = f"channels {g * layer.pe}..{(g + 1) * layer.pe - 1}, {meaning}: " + " | ".join(
                " ".join(str(v) for v in row) for row in group)
        entries.append(RomEntry(_lit(g, group_bits), _lit(word, width, "h"), note))
    return Rom(signal, "group", _msb(width), tuple(entries), _lit(0, width, "h"))


def _weight_rom(layer: Layer, lanes: list[int], group_bits: int, chunk_bits: int, weight_bits: int = 1) -> Rom:
    """Per (group, chunk): bit l*SIMD + s is lane l's weight for chunk input s; 1 means +1.
    `lanes`: the channel offsets within a group that have a lane (all of them without reuse).
    weight_bits > 1: field [(l*SIMD + s)*weight_bits +: weight_bits], two's complement."""
    c, k, pe, simd = layer.out_count, layer.in_count, layer.pe, layer.simd
    fields = np.asarray(layer.weights) > 0 if weight_bits == 1 else np.asarray(layer.weights).astype(np.int64)
    ones = fields.reshape(c // pe, pe, k // simd, simd)[:, lanes].transpose(0, 2, 1, 3)
    width = len(lanes) * simd * weight_bits
    entries = []
    for g in range(c // pe):
        for s in range(k // simd):
            addr = (g << chunk_bits) | s
            fields = ones[g, s].ravel()
            if weight_bits > 1:  # two's-complement fields as their bits, least significant first
                fields = (fields[:, None] >> np.arange(weight_bits)) & 1
            word = _pack_bits(fields.ravel())
            entries.append(RomEntry(_lit(addr, group_bits + chunk_bits), _lit(word, width, "h")))
    return Rom("weights", "{group, chunk}", _msb(width), tuple(entries), _lit(0, width, "h"))


# ---- the matrix-vector unit

def layer_mode(layer: Layer) -> str:
    """"xnor": bipolar inputs, popcount of XNOR. "masked": the same, but some window positions
    are zero padding, which is not a bit: they must add nothing, so each input carries an
    `inside` bit. "integer": sum of +-x over integer (or ternary, fixed-point) codes, where a zero
    pad is the code 0. "multiply": ternary or multi-bit weights, sum of x * w (x = +-1 for bipolar
    inputs)."""
    if not isinstance(layer.weight_elem, Bipolar):
        return "multiply"
    if not isinstance(layer.in_elem, Bipolar):
        return "integer"
    return "masked" if masked_input(layer) else "xnor"


def masked_input(layer: Layer) -> bool:
    """Bipolar inputs behind zero padding: each input carries an `inside` bit (modes "masked"
    and "multiply")."""
    win = layer.window
    return isinstance(layer.in_elem, Bipolar) and win is not None and win.pad_value == 0 and any(win.pads)


def _accumulator(layer: Layer, mode: str) -> tuple[int, str, int]:
    """(width, description, term width) of the accumulator. Thresholds need the exact value;
    an affine output only needs it modulo 2**out_bits, so its accumulator is that narrow.
    bnnc_dot extends each term to the sum's width, which must hold one term (and be >= 2)."""
    k = layer.in_count
    term_w = 1 if mode not in ("integer", "multiply") else layer.in_elem.bits + 1
    if mode == "multiply":
        term_w += layer.weight_elem.bits
    if layer.post == "threshold":
        if mode == "xnor":
            width = max((k + 1).bit_length(), 2)
            return width, f"popcount P in [0, {k}] (dot = 2P - {k})", term_w
        if mode == "masked":  # P in [0, K] and the dot product 2P - inside in [-K, K] (thresholds up to K + 1)
            width = (k + 1).bit_length() + 1
            return width, f"popcount P in [0, {k}] over the inputs inside the map; dot = 2P - inside, signed", term_w
        span = k * max(abs(layer.in_elem.lo), abs(layer.in_elem.hi)) * _largest_weight(layer)
        width = max(int_for_range(-span, span + 1).bits, term_w)
        return width, f"dot product in [-{span}, {span}], signed", term_w
    width = max(layer.out_elem.bits, term_w, 2)
    what = {"xnor": "popcount P", "masked": "popcount P (inside inputs)"}.get(mode, "dot product")
    return width, f"{what} modulo 2^{width}", term_w


def _largest_weight(layer: Layer) -> int:
    return int(np.abs(np.asarray(layer.weights, dtype=np.int64)).max(initial=1))


def _threshold_post(layer: Layer, mode: str, acc_w: int, group_bits: int):
    c, k = layer.out_count, layer.in_count
    levels = np.asarray(layer.thresholds).shape[-1]
    thresholds = _per_channel(layer.thresholds, c, levels)
    values = _per_channel(layer.values, c, levels + 1)
    if levels == 0:  # a constant output: one threshold that is never reached keeps the RTL uniform
        levels, thresholds, values = 1, [[1 << 62] for _ in range(c)], [row * 2 for row in values]
    for ch, row in enumerate(thresholds):
        if any(a > b for a, b in zip(row, row[1:])):
            raise ValueError(f"layer {layer.index}: thresholds of channel {ch} are not ascending")
    if mode == "xnor":
        lo, hi = 0, k + 1  # P in [0, K]
        converted = [[popcount_threshold(t, k) for t in row] for row in thresholds]
    elif mode == "masked":
        lo, hi = -k, k + 1  # compared with the dot product itself
        converted = thresholds
    else:
        span = k * max(abs(layer.in_elem.lo), abs(layer.in_elem.hi)) * _largest_weight(layer)
        lo, hi = -span, span + 1
        converted = thresholds
    # Outside the accumulator's range a threshold is always / never reached: clamping keeps that.
    clamped = [[min(max(t, lo), hi) for t in row] for row in converted]
    codes = [[int(v) for v in row] for row in encode(np.array(values, dtype=np.int64), layer.out_elem)]
    meaning = "P >=" if mode == "xnor" else "dot >="
    roms = (_group_rom("group_thresholds", clamped, layer, acc_w, group_bits, meaning),
            _group_rom("group_codes", codes, layer, layer.out_elem.bits, group_bits, "output code per level"))
    note = f"{levels} threshold(s) per channel -> {layer.out_elem}"
    return levels, roms, note


def _affine_post(layer: Layer, mode: str, acc_w: int, group_bits: int):
    c, k = layer.out_count, layer.in_count
    if layer.post == "affine":
        mult = [row[0] for row in _per_channel(layer.mult, c)]
        bias = [row[0] for row in _per_channel(layer.bias, c)]
        note = f"acc * mult + bias -> {layer.out_elem}"
    else:
        mult, bias = [1] * c, [0] * c
        note = f"the dot product itself -> {layer.out_elem}"
    if mode == "xnor":
        # (2P - K) * m + b = P * 2m + (b - K m)
        mult, bias = [2 * m for m in mult], [b - k * m for b, m in zip(bias, mult)]
    roms = (_group_rom("group_mult", [[m] for m in mult], layer, acc_w, group_bits, "mult"),
            _group_rom("group_bias", [[b] for b in bias], layer, acc_w, group_bits, "bias"))
    return roms, note


def reuse_plan(layer: Layer) -> tuple[list[tuple[int, int, bool, np.ndarray]], str]:
    """The channels this backend computes from their reuse parent: (channel, parent, negate, D).

    Only when one group holds every channel (PE = C): then each channel owns fixed hardware,
    its weights are constants, and a child's correction over D is a |D|-input dot product read
    from the latched input vector. In a layer folded over channel groups, lanes are time-shared
    by channels with different trees and weights, so fixed narrower trees cannot exist; there
    every channel is computed from scratch (exact either way). With input chunks (SIMD < K), a
    child only pays off when |D| <= SIMD (its own tree instead of a lane and an accumulator)."""
    if layer.reuse is None:
        return [], "no reuse tree"
    if layer.pe != layer.out_count:
        return [], f"folded over channel groups (PE = {layer.pe} < {layer.out_count} channels)"
    children = []
    for c in layer.reuse.order:
        p = int(layer.reuse.parent[c])
        if p < 0:
            continue
        d = layer.reuse.differing(layer.weights, c)
        if layer.in_count // layer.simd == 1 or len(d) <= layer.simd:
            children.append((c, p, bool(layer.reuse.negate[c]), d))
    return children, f"{len(children)} channel(s) from a parent"


def _reuse_views(layer: Layer, mode: str, acc_w: int, plan) -> tuple[tuple[Child, ...], tuple[str, ...]]:
    k, simd, in_bits = layer.in_count, layer.simd, 2 if mode == "masked" else layer.in_elem.bits
    at = lambda i: (i + simd) % k  # where input i sits in the buffer in the last step
    mod = (1 << acc_w) - 1
    views = []
    for c, p, negate, d in plan:
        x = _concat([_part("inputs", at(i), in_bits) for i in d], 8, " " * 11) if len(d) else ""
        w = _lit(_pack_bits(layer.weights[c, d] > 0), len(d), "h") if len(d) else ""
        inside_d = ""
        if mode == "masked" and len(d):
            c_in = layer.window.in_shape[0]
            pixels, counts = np.unique(np.asarray(d) // c_in, return_counts=True)
            terms = [f"(inputs[{at(q * c_in) * 2 + 1}] ? {_lit(n & mod, acc_w)} : {_lit(0, acc_w)})"
                     for q, n in zip(pixels.tolist(), counts.tolist())]
            inside_d = "\n        + ".join(" + ".join(terms[i:i + 3]) for i in range(0, len(terms), 3))
        views.append(Child(c, p, negate, len(d), x, w, inside_d))
    formulas = {
        "xnor": ("s = +1: P_c = P_p - |D| + 2 * agree_c", "s = -1: P_c = (K - |D|) - P_p + 2 * agree_c",
                 "agree_c = popcount of XNOR(x, w_c) over D"),
        "masked": ("s = +1: P_c = P_p - in_map_c + 2 * agree_c", "s = -1: P_c = in_map - in_map_c - P_p + 2 * agree_c",
                   "agree_c = popcount of XNOR(x, w_c) over the inputs of D inside the map (in_map_c of them)"),
        "integer": ("s = +1: y_c = y_p + 2 * agree_c", "s = -1: y_c = 2 * agree_c - y_p",
                    "agree_c = sum over D of (w_c ? x : -x)"),
    }[mode]
    return tuple(views), formulas


def _sum_wires(layer: Layer, mode: str, acc_w: int, children: tuple[Child, ...], lanes: list[int]):
    mod = (1 << acc_w) - 1
    k = layer.in_count
    wires = {ch: f"lane_sums[{i * acc_w + acc_w - 1}:{i * acc_w}]" for i, ch in enumerate(lanes)}
    for child in children:
        parent = f"sum{child.parent}"
        twice = f" + agree{child.channel} + agree{child.channel}" if child.d else ""
        if mode == "xnor":
            expr = (f"{_lit((k - child.d) & mod, acc_w)} - {parent}" if child.negate
                    else f"{parent} - {_lit(child.d & mod, acc_w)}")
        elif mode == "masked":
            inside_d = f" - in_map{child.channel}" if child.d else ""
            expr = f"in_map{inside_d} - {parent}" if child.negate else f"{parent}{inside_d}"
        else:
            expr = f"{_lit(0, acc_w)} - {parent}" if child.negate else parent
        wires[child.channel] = expr + twice
    views = tuple(SumWire(ch, wires[ch]) for ch in sorted(wires))
    concat = _concat([f"sum{ch}" for ch in range(layer.out_count)])
    return views, concat


def layer_view(layer: Layer) -> LayerView:
    groups, chunks = layer.out_count // layer.pe, layer.in_count // layer.simd
    group_bits, chunk_bits = _counter_bits(groups), _counter_bits(chunks)
    mode = layer_mode(layer)
    acc_w, acc_note, term_w = _accumulator(layer, mode)
    if layer.post == "threshold":
        levels, post_roms, post_note = _threshold_post(layer, mode, acc_w, group_bits)
        post, lane_thr_w, lane_code_w = "threshold", levels * acc_w, (levels + 1) * layer.out_elem.bits
    else:
        post_roms, post_note = _affine_post(layer, mode, acc_w, group_bits)
        post, levels, lane_thr_w, lane_code_w = "affine", 0, 0, 0
    plan, _ = reuse_plan(layer)
    children, formulas = _reuse_views(layer, mode, acc_w, plan) if plan else ((), ())
    child_set = {c for c, *_ in plan}
    lanes = [p for p in range(layer.pe) if p not in child_set]
    sum_wires, sums_concat = _sum_wires(layer, mode, acc_w, children, lanes) if plan else ((), "")
    in_bits = 2 if masked_input(layer) else layer.in_elem.bits
    weight_bits = layer.weight_elem.bits if mode == "multiply" else 1
    out_bits = layer.out_elem.bits
    group_w = layer.pe * out_bits
    pixels, c_in, inside = 0, 0, ""
    if mode == "masked":
        c_in = layer.window.in_shape[0]
        pixels = layer.in_count // c_in
        inside = _concat([f"inputs[{((q * c_in + layer.simd) % layer.in_count) * 2 + 1}]" for q in range(pixels)])
    conv_note = ""
    if layer.window is not None:
        oh, ow = layer.window.out_hw
        conv_note = (f"A convolution: one input vector per output pixel ({oh} x {ow} per frame), the window from "
                     f"bnnc_window{layer.index}, inputs in window order (kernel row, kernel column, channel).")
    return LayerView(
        module=f"bnnc_layer{layer.index}", index=layer.index,
        origin=sanitize(layer.origin) if layer.origin else "", conv_note=conv_note,
        in_count=layer.in_count, out_count=layer.out_count, in_kind=str(layer.in_elem),
        pe=layer.pe, simd=layer.simd, groups=groups, chunks=chunks, steps=groups * chunks, lanes=len(lanes),
        in_bits=in_bits, out_bits=out_bits,
        in_msb=_msb(layer.in_count * in_bits), out_msb=_msb(layer.out_count * out_bits),
        chunk_msb=_msb(layer.simd * in_bits), chunk_w=layer.simd * in_bits,
        group_w=group_w, group_out_msb=_msb(group_w),
        collected_msb=_msb((groups - 1) * group_w),
        mode=mode, bipolar_param=int(isinstance(layer.in_elem, Bipolar)), masked_param=int(masked_input(layer)),
        signed_param=int(_elem_signed(layer.in_elem)), signed_compare=mode != "xnor", term_w=term_w,
        acc_w=acc_w, acc_note=acc_note,
        group_msb=_msb(group_bits), chunk_ctr_msb=_msb(chunk_bits),
        group_zero=_lit(0, group_bits), group_one=_lit(1, group_bits), last_group=_lit(groups - 1, group_bits),
        chunk_zero=_lit(0, chunk_bits), chunk_one=_lit(1, chunk_bits), last_chunk=_lit(chunks - 1, chunk_bits),
        acc_zero=_lit(0, acc_w),
        weights=_weight_rom(layer, lanes, group_bits, chunk_bits, weight_bits), weight_bits=weight_bits,
        post=post, post_note=post_note, levels=levels, lane_thr_w=lane_thr_w, lane_code_w=lane_code_w,
        post_roms=post_roms, drops_high_bits=post == "affine" and acc_w > out_bits,
        pixels=pixels, pixel_channels=c_in, pixel_channels_lit=_lit(c_in, acc_w) if c_in else "",
        pixel_inside=inside, all_ones=f"{(1 << pixels) - 1:x}" if pixels else "",
        children=children, reuse_formulas=formulas, sum_wires=sum_wires, sums_concat=sums_concat,
    )


# ---- sliding windows, pools, gathers

def _mask_rom(signal: str, select: str, count: int, select_bits: int, origin: np.ndarray, k: int, size: int) -> Rom:
    """Per window row (or column): bit u set when window row u lies inside the map."""
    entries = []
    for i, o in enumerate(origin.tolist()):
        bits = [0 <= o + u < size for u in range(k)]
        entries.append(RomEntry(_lit(i, select_bits), _lit(_pack_bits(np.array(bits)), k, "h")))
    return Rom(signal, select, _msb(k), tuple(entries), _lit(0, k, "h"))


def window_view(unit: Unit) -> WindowView:
    win = unit.window
    c, h, w = win.in_shape
    kh, kw = win.kernel
    sy, sx = win.stride
    top, left, bottom, right = win.pads
    oh, ow = win.out_hw
    hw = h * w
    elem = unit.layer.elem if unit.kind == "pool" else unit.layer.in_elem
    b = elem.bits
    padded = any(win.pads)
    if not padded:
        mode, pad_note, pad_pixel, pad_meaning = "none", "no padding", "", ""
    elif unit.kind == "conv" and masked_input(unit.layer):
        mode, pad_pixel, pad_meaning = "mask", "", ""
        pad_note = "padding is zero, which is not a bit: an element is {in_map, bit} and padding has in_map = 0"
    else:
        code = int(encode(np.array([win.pad_value]), elem)[0])
        mode = "const"
        pad_pixel = _lit(_pack([code] * c, b), c * b, "h")
        pad_meaning = f"every channel {win.pad_value} (code {code})"
        pad_note = f"padding positions hold {win.pad_value}" + (" (adds nothing)" if win.pad_value == 0 else "")
    n = window_positions(win)
    tail = window_tail(win)
    pos_bits = (3 * hw).bit_length()  # positions + H*W lie in [0, 3 H*W)
    line = line_pixels(win.kernel, w)
    wx_bits, wy_bits = _counter_bits(ow), _counter_bits(oh)
    rows = np.arange(oh) * sy - top
    cols = np.arange(ow) * sx - left
    row_rom = _mask_rom("row_ok", "wy", oh, wy_bits, rows, kh, h) if mode != "none" and (top or bottom) else None
    col_rom = _mask_rom("col_ok", "wx", ow, wx_bits, cols, kw, w) if mode != "none" and (left or right) else None
    name = f"layer {unit.layer.index}" + (f" (ONNX node '{sanitize(unit.layer.origin)}')" if unit.layer.origin else "")
    return WindowView(
        module=f"bnnc_window{unit.layer.index}", purpose=("convolution " if unit.kind == "conv" else "pool ") + name,
        c=c, h=h, w=w, hw=hw, b=b, pb=c * b, out_b=2 if mode == "mask" else b,
        kh=kh, kw=kw, sy=sy, sx=sx, top=top, left=left, pads=" / ".join(map(str, win.pads)),
        pad_note=pad_note, mode=mode, pad_pixel=pad_pixel, pad_meaning=pad_meaning,
        line=line, line_msb=_msb(line * c * b), keep_msb=_msb((line - 1) * c * b), tail=tail,
        in_msb=_msb(c * b), out_msb=_msb(kh * kw * c * (2 if mode == "mask" else b)),
        pos_msb=_msb(pos_bits), start=_lit(hw - 1, pos_bits), first=_lit(int(n[0]) + hw, pos_bits),
        tail_at=_lit(2 * hw - 1, pos_bits), hw_lit=_lit(hw, pos_bits), pos_one=_lit(1, pos_bits),
        accept_ext="{" + f"{_lit(0, pos_bits - 1)}, accept" + "}",
        row_step=_lit(int(n[ow]) - int(n[ow - 1]) if oh > 1 else 1, pos_bits),
        col_step=_lit(sx, pos_bits),
        wx_msb=_msb(wx_bits), wy_msb=_msb(wy_bits), last_col=_lit(ow - 1, wx_bits), last_row=_lit(oh - 1, wy_bits),
        wx_zero=_lit(0, wx_bits), wy_zero=_lit(0, wy_bits), wx_one=_lit(1, wx_bits), wy_one=_lit(1, wy_bits),
        row_rom=row_rom, col_rom=col_rom,
    )


def pool_view(layer: PoolLayer) -> PoolView:
    c = layer.in_shape[0]
    b = layer.elem.bits
    kh, kw = layer.kernel
    modes = np.asarray(layer.modes).reshape(-1)
    modes = np.broadcast_to(modes, (c,))
    return PoolView(module=f"bnnc_pool{layer.index}", index=layer.index,
                    origin=sanitize(layer.origin) if layer.origin else "", elem=str(layer.elem), c=c, b=b,
                    kh=kh, kw=kw, taps=kh * kw, in_msb=_msb(kh * kw * c * b), out_msb=_msb(c * b),
                    keep_max=_lit(_pack_bits(modes > 0), c, "h"), all_max=bool((modes > 0).all()),
                    all_min=bool((modes < 0).all()), signed=_elem_signed(layer.elem))


def gather_view(unit: Unit) -> GatherView:
    layer = unit.layer
    pixels = unit.in_beats
    c = layer.in_count // pixels
    pb = c * layer.in_elem.bits
    bits = _counter_bits(pixels)
    return GatherView(module=f"bnnc_gather{layer.index}", index=layer.index, c=c, pixels=pixels, pb=pb,
                      in_msb=_msb(pb), out_msb=_msb(pixels * pb), count_msb=_msb(bits),
                      last=_lit(pixels - 1, bits), zero=_lit(0, bits), one=_lit(1, bits))


def argmax_view(design: Design) -> ArgMaxView:
    last = design.layers[-1]
    elem, n = last.out_elem, last.out_count
    bits = elem.bits
    index_bits = design.out_elem.bits
    steps = tuple(ArgMaxStep(index=i, prev=i - 1, lsb=i * bits, msb=(i + 1) * bits - 1, literal=_lit(i, index_bits),
                             keeps_best=i < n - 1) for i in range(1, n))
    return ArgMaxView(module="bnnc_argmax", count=n, elem_bits=bits, in_msb=_msb(n * bits),
                      out_msb=_msb(index_bits), signed=_elem_signed(elem), first_msb=_msb(bits),
                      zero=_lit(0, index_bits), steps=steps, result=f"index{n - 1}")


# ---- the chain of modules

def _unit_modules(unit: Unit) -> list[tuple[str, int]]:
    """(module, width of the stream it writes) for the modules of one unit, in stream order."""
    if unit.kind == "argmax":
        return [("bnnc_argmax", None)]
    layer, i = unit.layer, unit.layer.index
    out = []
    if unit.kind in ("conv", "pool"):
        view = window_view(unit)
        out.append((view.module, view.out_msb + 1))
    if unit.kind == "gather":
        out.append((f"bnnc_gather{i}", layer.in_count * layer.in_elem.bits))
    if unit.kind == "pool":
        c, b = layer.in_shape[0], layer.elem.bits
        out.append((f"bnnc_pool{i}", c * b))
    else:
        out.append((f"bnnc_layer{i}", layer.out_count * layer.out_elem.bits))
    return out


def top_view(design: Design, plan: Timing | None = None) -> TopView:
    plan = plan or timing(design)
    in_w = design.in_count * design.in_elem.bits // plan.in_beats
    modules = []  # (module, params, name, out width)
    if plan.paced:
        modules.append(("bnnc_pacer", f"#(.W({in_w}), .BEATS({plan.in_beats}), .INTERVAL({plan.interval}))",
                        "pacer", in_w))
    for u, unit in enumerate(plan.units):
        for module, width in _unit_modules(unit):
            modules.append((module, "", module.removeprefix("bnnc_"), width))
        if u < len(plan.fifo_depths) and plan.fifo_depths[u]:
            width = modules[-1][3]
            modules.append(("bnnc_fifo", f"#(.W({width}), .DEPTH({plan.fifo_depths[u]}))", f"fifo{u}", width))
    links = tuple((f"link{i + 1}", _msb(modules[i][3])) for i in range(len(modules) - 1))
    prefixes = ["in"] + [name for name, _ in links] + ["out"]
    stages = tuple(Stage(module=m, params=params, instance=f"stage{i}_{name}", source=prefixes[i],
                         sink=prefixes[i + 1], width=width)
                   for i, (m, params, name, width) in enumerate(modules))
    if plan.in_beats > 1:
        c, h, w = design.in_shape
        in_note = (f"a {c} x {h} x {w} map of {design.in_elem}, one pixel ({c} element(s)) per transfer, "
                   f"{h * w} transfers per frame in raster order")
    else:
        in_note = f"{design.in_count} x {design.in_elem}, one vector per transfer"
    out_note = f"{design.out_count} x {design.out_elem}, one vector per frame"
    return TopView(design=sanitize(design.name), in_note=in_note, in_msb=_msb(in_w), out_note=out_note,
                   out_msb=_msb(design.out_count * design.out_elem.bits),
                   cycles_per_frame=plan.interval, latency=plan.latency, links=links, stages=stages)


def unsupported(design: Design) -> str | None:
    """Why this backend cannot build `design`, or None."""
    last = design.layers[-1]
    if isinstance(last, PoolLayer) or last.window is not None:
        return (f"layer {last.index} (ONNX node {quote(last.origin)}) ends the network with a feature map; "
                f"the Verilog backend needs a dense layer (or an argmax) at the end")
    if design.in_order != "hwc" and isinstance(design.layers[0], PoolLayer):
        return f"layer 0 (ONNX node {quote(design.layers[0].origin)}) pools the raw input; it must follow a convolution"
    for layer in design.layers:
        win = layer.window if isinstance(layer, Layer) else None
        if win is not None and (win.pads[0] + win.pads[2] >= win.kernel[0] or win.pads[1] + win.pads[3] >= win.kernel[1]):
            return (f"layer {layer.index} (ONNX node {quote(layer.origin)}) pads by as much as its kernel "
                    f"({win.pads} for {win.kernel}); the Verilog backend needs less padding than that")
    return None


def check_design(design: Design) -> None:
    """Refuse what this backend cannot build; stream widths must chain."""
    reason = unsupported(design)
    if reason:
        raise BnncError(reason)
    count, elem = design.in_count, design.in_elem
    for layer in design.layers:
        if isinstance(layer, PoolLayer):
            if int(np.prod(layer.in_shape)) != count or layer.elem.bits != elem.bits:
                raise ValueError(f"pool {layer.index} reads {layer.in_shape} x {layer.elem}, but gets {count} x {elem}")
            count = int(np.prod(layer.out_shape))
            continue
        width = layer.window.in_shape if layer.window is not None else (layer.in_count,)
        if int(np.prod(width)) != count or layer.in_elem.bits != elem.bits:
            raise ValueError(f"layer {layer.index} reads {width} x {layer.in_elem}, but gets {count} x {elem}")
        count, elem = layer.out_count * layer.vectors, layer.out_elem
    if not design.argmax and design.out_count * design.out_elem.bits != count * elem.bits:
        raise ValueError(f"design output {design.out_count} x {design.out_elem} is not the last layer's")


# ---- rendering

def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resource_dir("templates") / "verilog")),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
        trim_blocks=True, lstrip_blocks=True, autoescape=False,
    )


def render(design: Design) -> dict[str, str]:
    """File name -> text, in compile order (primitives, units in stream order, top)."""
    check_design(design)
    plan = timing(design)
    top = top_view(design, plan)
    env = _environment()
    header = f"// Generated by bnnc from design '{sanitize(design.name)}'. Do not edit.\n"
    used = {s.module for s in top.stages}
    files = {}
    for name in ("bnnc_dot", "bnnc_fifo", "bnnc_pacer"):  # hand-written primitives, copied as they are
        if name == "bnnc_dot" or name in used:
            files[f"{name}.v"] = (resource_dir("templates") / "verilog" / f"{name}.v").read_text()
    for unit in plan.units:
        if unit.kind in ("conv", "pool"):
            view = window_view(unit)
            files[f"{view.module}.v"] = env.get_template("window.v.j2").render(header=header, w=view)
        if unit.kind == "pool":
            view = pool_view(unit.layer)
            files[f"{view.module}.v"] = env.get_template("pool.v.j2").render(header=header, p=view)
        if unit.kind == "gather":
            view = gather_view(unit)
            files[f"{view.module}.v"] = env.get_template("gather.v.j2").render(header=header, g=view)
        if unit.kind in ("conv", "gather", "dense"):
            view = layer_view(unit.layer)
            files[f"{view.module}.v"] = env.get_template("layer.v.j2").render(header=header, layer=view)
        if unit.kind == "argmax":
            files["bnnc_argmax.v"] = env.get_template("argmax.v.j2").render(header=header, argmax=argmax_view(design))
    files[f"{TOP}.v"] = env.get_template("top.v.j2").render(header=header, top=top)
    return files


def emit(design: Design, out_dir: Path) -> list[Path]:
    """Write the RTL of `design` into out_dir (created if needed); returns the files written,
    the Verilog sources in compile order followed by the file list naming them."""
    files = render(design)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        path = out_dir / name
        path.write_text(text, encoding="utf-8", newline="\n")
        written.append(path)
    filelist = out_dir / FILELIST
    filelist.write_text("".join(f"{name}\n" for name in files), encoding="utf-8", newline="\n")
    return written + [filelist]


def sources(rtl_dir: Path) -> list[Path]:
    """The Verilog files of an emitted design, in compile order."""
    rtl_dir = Path(rtl_dir)
    return [rtl_dir / line.strip() for line in (rtl_dir / FILELIST).read_text().splitlines() if line.strip()]
