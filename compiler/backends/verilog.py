"""Verilog backend: a `Design` becomes one streaming module per layer plus the top `bnnc_top`.

Every module boundary is a valid/ready stream that carries a whole vector per transfer (element i
at bits [i*w +: w], encoded as in `hardware.encode`). A layer latches its input vector, runs
(C/PE channel groups) x (K/SIMD input chunks) steps of a PE x SIMD unit, and holds the result in an
output register until it is taken. It takes the next input in the clock of its last step, so a
layer starts a frame every `layer.cycles` clocks and all layers run concurrently (timing model:
`cycles_per_frame` and `latency` below, checked against simulation by the tests).

All arithmetic (widths, converted thresholds, ROM words) happens here. The templates in
templates/verilog only place these numbers into RTL that reads like hand-written Verilog.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import jinja2
import numpy as np

from ..diagnostics import BnncError, quote
from ..resources import resource_dir
from .hardware import Design, Layer, encode
from ..ir.types import Bipolar, Element, int_for_range

TOP = "bnnc_top"
PRIMITIVES = ("bnnc_dot.v",)  # hand-written, copied as they are
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
class LayerView:
    module: str
    index: int
    origin: str  # sanitised, for comments only
    in_count: int
    out_count: int
    in_kind: str
    pe: int
    simd: int
    groups: int  # C / PE
    chunks: int  # K / SIMD
    cycles: int
    in_bits: int
    out_bits: int
    in_msb: int
    out_msb: int
    chunk_msb: int  # of one chunk of the input buffer (SIMD elements)
    chunk_w: int
    group_w: int  # bits of one channel group's output codes (PE elements)
    group_out_msb: int
    collected_msb: int  # of the register that gathers groups 0 .. groups-2
    bipolar: bool  # XNOR-popcount datapath; otherwise sum of +-x
    bipolar_param: int  # the same, as bnnc_dot's parameters want them
    signed_param: int
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
    instance: str
    source: str  # prefix of the stream it reads: "in" or "linkN"
    sink: str


@dataclass(frozen=True)
class TopView:
    design: str
    in_count: int
    in_elem: str
    in_msb: int
    out_count: int
    out_elem: str
    out_msb: int
    cycles_per_frame: int
    latency: int
    links: tuple[tuple[str, int], ...]  # internal streams: (prefix, data msb)
    stages: tuple[Stage, ...]


# ---- timing model of this architecture (the manifest and the tests check it against simulation)

def layer_latency(layer: Layer) -> int:
    """Clock edges from a layer's input transfer to its output transfer, downstream ready:
    `cycles` steps, then the output register is presented for one more edge."""
    return layer.cycles + 1


def latency(design: Design) -> int:
    """Clock edges from a frame's input transfer to its output transfer through an idle pipeline
    with out_ready high. The argmax unit is one pipeline register."""
    return sum(layer_latency(layer) for layer in design.layers) + (1 if design.argmax else 0)


def cycles_per_frame(design: Design) -> int:
    """Steady-state clocks between frames with no gaps and no back-pressure: the slowest layer.
    No overhead: a layer accepts its next input in the clock of its last step."""
    return design.cycles_per_frame


# ---- numbers

def sanitize(text: str, limit: int = 80) -> str:
    """Safe inside a // comment: printable ASCII without anything a tool might parse."""
    clean = re.sub(r"[^A-Za-z0-9_.:+\- ]", "_", str(text))[:limit]
    return clean or "_"


def _msb(width: int) -> int:
    return width - 1


def _counter_bits(count: int) -> int:
    return max(1, (count - 1).bit_length())


def _lit(value: int, bits: int, base: str = "d") -> str:
    value = int(value)
    if not 0 <= value < 1 << bits:
        raise ValueError(f"{value} does not fit {bits} unsigned bits")
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


def _weight_rom(layer: Layer, group_bits: int, chunk_bits: int) -> Rom:
    """Per (group, chunk): bit p*SIMD + s is lane p's weight for chunk input s; 1 means +1."""
    c, k, pe, simd = layer.out_count, layer.in_count, layer.pe, layer.simd
    ones = (np.asarray(layer.weights) > 0).reshape(c // pe, pe, k // simd, simd).transpose(0, 2, 1, 3)
    width = pe * simd
    entries = []
    for g in range(c // pe):
        for s in range(k // simd):
            addr = (g << chunk_bits) | s
            entries.append(RomEntry(_lit(addr, group_bits + chunk_bits),
                                    _lit(_pack_bits(ones[g, s].ravel()), width, "h")))
    return Rom("weights", "{group, chunk}", _msb(width), tuple(entries), _lit(0, width, "h"))


def _accumulator(layer: Layer) -> tuple[int, str, int]:
    """(width, description, term width) of the accumulator. Thresholds need the exact value;
    an affine output only needs it modulo 2**out_bits, so its accumulator is that narrow.
    bnnc_dot extends each term to the sum's width, which must hold one term (and be >= 2)."""
    k = layer.in_count
    bipolar = isinstance(layer.in_elem, Bipolar)
    term_w = 1 if bipolar else layer.in_elem.bits + 1
    if layer.post == "threshold":
        if bipolar:
            width = max((k + 1).bit_length(), 2)
            return width, f"popcount P in [0, {k}] (dot = 2P - {k})", term_w
        span = k * max(abs(layer.in_elem.lo), abs(layer.in_elem.hi))
        width = max(int_for_range(-span, span + 1).bits, term_w)
        return width, f"dot product in [-{span}, {span}], signed", term_w
    width = max(layer.out_elem.bits, term_w, 2)
    return width, ("popcount P" if bipolar else "dot product") + f" modulo 2^{width}", term_w


def _threshold_post(layer: Layer, acc_w: int, group_bits: int):
    c, k = layer.out_count, layer.in_count
    levels = np.asarray(layer.thresholds).shape[-1]
    thresholds = _per_channel(layer.thresholds, c, levels)
    values = _per_channel(layer.values, c, levels + 1)
    if levels == 0:  # a constant output: one threshold that is never reached keeps the RTL uniform
        levels, thresholds, values = 1, [[1 << 62] for _ in range(c)], [row * 2 for row in values]
    for ch, row in enumerate(thresholds):
        if any(a > b for a, b in zip(row, row[1:])):
            raise ValueError(f"layer {layer.index}: thresholds of channel {ch} are not ascending")
    if isinstance(layer.in_elem, Bipolar):
        lo, hi = 0, k + 1  # P in [0, K]
        converted = [[popcount_threshold(t, k) for t in row] for row in thresholds]
    else:
        span = k * max(abs(layer.in_elem.lo), abs(layer.in_elem.hi))
        lo, hi = -span, span + 1
        converted = thresholds
    # Outside the accumulator's range a threshold is always / never reached: clamping keeps that.
    clamped = [[min(max(t, lo), hi) for t in row] for row in converted]
    codes = [[int(v) for v in row] for row in encode(np.array(values, dtype=np.int64), layer.out_elem)]
    meaning = "P >=" if isinstance(layer.in_elem, Bipolar) else "dot >="
    roms = (_group_rom("group_thresholds", clamped, layer, acc_w, group_bits, meaning),
            _group_rom("group_codes", codes, layer, layer.out_elem.bits, group_bits, "output code per level"))
    note = f"{levels} threshold(s) per channel -> {layer.out_elem}"
    return levels, roms, note


def _affine_post(layer: Layer, acc_w: int, group_bits: int):
    c, k = layer.out_count, layer.in_count
    if layer.post == "affine":
        mult = [row[0] for row in _per_channel(layer.mult, c)]
        bias = [row[0] for row in _per_channel(layer.bias, c)]
        note = f"acc * mult + bias -> {layer.out_elem}"
    else:
        mult, bias = [1] * c, [0] * c
        note = f"the dot product itself -> {layer.out_elem}"
    if isinstance(layer.in_elem, Bipolar):
        # (2P - K) * m + b = P * 2m + (b - K m)
        mult, bias = [2 * m for m in mult], [b - k * m for b, m in zip(bias, mult)]
    roms = (_group_rom("group_mult", [[m] for m in mult], layer, acc_w, group_bits, "mult"),
            _group_rom("group_bias", [[b] for b in bias], layer, acc_w, group_bits, "bias"))
    return roms, note


def layer_view(layer: Layer) -> LayerView:
    groups, chunks = layer.out_count // layer.pe, layer.in_count // layer.simd
    group_bits, chunk_bits = _counter_bits(groups), _counter_bits(chunks)
    acc_w, acc_note, term_w = _accumulator(layer)
    bipolar = isinstance(layer.in_elem, Bipolar)
    if layer.post == "threshold":
        levels, post_roms, post_note = _threshold_post(layer, acc_w, group_bits)
        post, lane_thr_w, lane_code_w = "threshold", levels * acc_w, (levels + 1) * layer.out_elem.bits
    else:
        post_roms, post_note = _affine_post(layer, acc_w, group_bits)
        post, levels, lane_thr_w, lane_code_w = "affine", 0, 0, 0
    in_bits, out_bits = layer.in_elem.bits, layer.out_elem.bits
    group_w = layer.pe * out_bits
    return LayerView(
        module=f"bnnc_layer{layer.index}", index=layer.index,
        origin=sanitize(layer.origin) if layer.origin else "",
        in_count=layer.in_count, out_count=layer.out_count, in_kind=str(layer.in_elem),
        pe=layer.pe, simd=layer.simd, groups=groups, chunks=chunks, cycles=layer.cycles,
        in_bits=in_bits, out_bits=out_bits,
        in_msb=_msb(layer.in_count * in_bits), out_msb=_msb(layer.out_count * out_bits),
        chunk_msb=_msb(layer.simd * in_bits), chunk_w=layer.simd * in_bits,
        group_w=group_w, group_out_msb=_msb(group_w),
        collected_msb=_msb((groups - 1) * group_w),
        bipolar=bipolar, bipolar_param=int(bipolar), signed_param=int(_elem_signed(layer.in_elem)), term_w=term_w,
        acc_w=acc_w, acc_note=acc_note,
        group_msb=_msb(group_bits), chunk_ctr_msb=_msb(chunk_bits),
        group_zero=_lit(0, group_bits), group_one=_lit(1, group_bits), last_group=_lit(groups - 1, group_bits),
        chunk_zero=_lit(0, chunk_bits), chunk_one=_lit(1, chunk_bits), last_chunk=_lit(chunks - 1, chunk_bits),
        acc_zero=_lit(0, acc_w),
        weights=_weight_rom(layer, group_bits, chunk_bits),
        post=post, post_note=post_note, levels=levels, lane_thr_w=lane_thr_w, lane_code_w=lane_code_w,
        post_roms=post_roms, drops_high_bits=post == "affine" and acc_w > out_bits,
    )


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


def top_view(design: Design) -> TopView:
    modules = [f"bnnc_layer{layer.index}" for layer in design.layers]
    widths = [layer.out_count * layer.out_elem.bits for layer in design.layers]
    if design.argmax:
        modules.append("bnnc_argmax")
    links = tuple((f"link{i + 1}", _msb(widths[i])) for i in range(len(modules) - 1))
    prefixes = ["in"] + [name for name, _ in links] + ["out"]
    stages = tuple(Stage(module=m, instance=f"stage{i}_{m.removeprefix('bnnc_')}", source=prefixes[i],
                         sink=prefixes[i + 1]) for i, m in enumerate(modules))
    return TopView(design=sanitize(design.name), in_count=design.in_count, in_elem=str(design.in_elem),
                   in_msb=_msb(design.in_count * design.in_elem.bits), out_count=design.out_count,
                   out_elem=str(design.out_elem), out_msb=_msb(design.out_count * design.out_elem.bits),
                   cycles_per_frame=cycles_per_frame(design), latency=latency(design),
                   links=links, stages=stages)


def unsupported(design: Design) -> str | None:
    """Why this backend cannot build `design`, or None. It builds chains of dense layers (a
    layer's channel-reuse tree, if any, is an optional saving that it does not use)."""
    for layer in design.layers:
        if not isinstance(layer, Layer) or layer.window is not None:
            kind = "pool" if not isinstance(layer, Layer) else "convolution"
            return (f"layer {layer.index} (ONNX node {quote(layer.origin)}) is a {kind}; the Verilog "
                    f"backend builds dense layers only so far")
    return None


def check_design(design: Design) -> None:
    """Refuse what this backend cannot build; stream widths must chain."""
    reason = unsupported(design)
    if reason:
        raise BnncError(reason)
    width = design.in_count * design.in_elem.bits
    for layer in design.layers:
        if layer.in_count * layer.in_elem.bits != width:
            raise ValueError(f"layer {layer.index} reads {layer.in_count} x {layer.in_elem}, "
                             f"but its input stream is {width} bits wide")
        width = layer.out_count * layer.out_elem.bits
    if not design.argmax and design.out_count * design.out_elem.bits != width:
        raise ValueError(f"design output {design.out_count} x {design.out_elem} is not the last layer's")


# ---- rendering

def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resource_dir("templates") / "verilog")),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
        trim_blocks=True, lstrip_blocks=True, autoescape=False,
    )


def render(design: Design) -> dict[str, str]:
    """File name -> text, in compile order (primitives, layers, argmax, top)."""
    check_design(design)
    env = _environment()
    header = f"// Generated by bnnc from design '{sanitize(design.name)}'. Do not edit.\n"
    files = {}
    for name in PRIMITIVES:
        files[name] = (resource_dir("templates") / "verilog" / name).read_text()
    layer_template = env.get_template("layer.v.j2")
    for layer in design.layers:
        view = layer_view(layer)
        files[f"{view.module}.v"] = layer_template.render(header=header, layer=view)
    if design.argmax:
        files["bnnc_argmax.v"] = env.get_template("argmax.v.j2").render(header=header, argmax=argmax_view(design))
    files[f"{TOP}.v"] = env.get_template("top.v.j2").render(header=header, top=top_view(design))
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
