"""The matrix-vector unit bnnc_layer{i} (templates/verilog/layer.v.j2): a dense layer, or a conv
layer once per output pixel. It latches its input vector, runs (C/PE channel groups) x (K/SIMD
input chunks) steps of a PE x SIMD unit, and holds the result in an output register until it is
taken. Every decision (mode, accumulator, thresholds, reuse children) comes from the layer's plan;
this module turns it into ROM words and Verilog expressions."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ...diagnostics import BnncError
from ...ir.signed_digits import signed_digits
from ...ir.types import Bipolar
from ..hardware import Layer, pack
from ..plan import Mode, ReusePolicy, SignedDigits, buffer_position, dot_masked, plan, signed_digit_format
from ..templating import sanitize
from ..verilog_timing import (
    BITS_PER_LOAD_COPY,
    LANES_PER_INPUT_COPY,
    PARTS_PER_CLOCK,
    WEIGHTS_PER_COPY,
    input_copies,
    input_stages,
    lanes_per_step_copy,
    layer_steps,
    load_copies,
    lut_multiply_bits,
    part_inputs,
    post_stages,
    queue_slots,
    registered_twice,
    step_copies,
    sum_levels,
    weight_blocks,
    weights_in_block_ram,
)
from .common import Rom, RomEntry, concat, counter_bits, elem_signed, lit, msb, pack_bits, part_select
from .residual import ResidualView, residual_view


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
class WeightBlock:
    """Registered layers: up to WEIGHTS_PER_COPY weights of one lane, registered into stage 1 from
    their own slice of the weight ROM (`rom`, block{index}_w) read at their own copy of the step
    address (block{index}_addr)."""
    index: int
    lane: int  # the lane whose weights it holds
    at: int  # its first bit in the step's weight word
    bits: int
    rom: Rom


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
    #            "multiply" (sum of x * w with ternary or multi-bit weights)
    bipolar_param: int
    masked_param: int
    signed_param: int
    signed_compare: bool
    term_w: int  # bits of one term of the dot product: 1 (XNOR) or input bits + 1 (so that -x fits)
    acc_w: int
    acc_note: str
    group_bits: int  # of the channel group counter
    chunk_bits: int  # of the input chunk counter
    weights: Rom
    post: str  # "threshold" or "affine"
    post_note: str
    levels: int
    lane_thr_w: int
    lane_code_w: int
    post_roms: tuple[Rom, ...]
    drops_high_bits: bool  # affine result wider than the output code (above it)
    shift: int  # affine: the output code is bits [shift +: out_bits] of the result (floor division)
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
    weight_bits: int  # 1: +-1 weights as bits; else two's-complement integers (mode "multiply")
    residual: ResidualView | None  # a residual layer's input sign and shortcut
    # multiplier-free designs (plan.SignedDigits): the weights of mode "multiply" and the affine's
    # mult as signed digits, products by shifts and adds; None: two's complement and multipliers
    weight_digits: SignedDigits | None = None
    mult_digits: SignedDigits | None = None
    in_map_times: str = ""  # multiplier-free: in_map_pixels times the channels, as shifts and adds
    # registered (Design.registered): pipeline stages after a step, output queue places, the
    # width of the counter of results in flight, and the group each post-op ROM reads
    registered: bool = False
    mult_split: bool = False  # the multiply-add's product from three 17 x 17-bit products (17 < ACC_W <= 34)
    lut_mult: int = 0  # > 0: the product from LUTs, a sum of mult << i over the set bits of this many value bits
    part: int = 0  # inputs per part of a lane's dot product, each part one tree of its own
    parts: int = 0
    part_mask: str = ""  # the bits of the parts' register that a part's count can reach ("": all of ACC_W)
    weight_blocks: tuple[WeightBlock, ...] = ()  # stage 1's weights in blocks, each its own address copy
    weight_memory: bool = False  # the weights in a memory read synchronously into stage 1 (block RAM)
    input_stages: int = 0  # stages of the step's inputs and weights (verilog_timing.input_stages)
    registered_twice: bool = False  # the inputs and weights get a second register (x2, w2) after x1, w1
    input_copies: int = 1  # stage 2's copies of the inputs, each read by up to lanes_per_copy lanes
    lanes_per_copy: int = LANES_PER_INPUT_COPY
    step_copies: int = 0  # registered copies of `step` (a clock late) for the weight blocks' addresses
    lanes_per_step_copy: int = 1
    load_copies: int = 0  # registered copies of the input buffer's load (and rotate) enable, one per slice
    load_bits: int = 0  # the buffer's bits per slice
    step_bits: int = 0  # of the memory's address, the step's index within the vector
    tree: tuple[dict, ...] = ()  # the adder tree over the parts, a level per clock (see _registered_fields)
    sum_stage: int = 0  # the stage whose register holds the chunk's sum
    post_stages: int = 0
    slots: int = 0
    pending_bits: int = 0
    post_selects: tuple[str, ...] = ()

    @property
    def const_weights(self) -> int:
        """1 when the weights are constants (one step: a ROM of one entry): bnnc_dot's CONST_W."""
        return int(self.steps == 1)


NOTE_FIELDS = 32  # ROM words with up to this many fields get a decimal comment


def _group_rom(signal: str, rows: list[list[int]], layer: Layer, field_bits: int, group_bits: int,
               meaning: str, digits: SignedDigits | None = None) -> Rom:
    """Per channel group: the PE lanes' fields packed lane 0 first (each row: one channel, its
    values signed or not; they are stored modulo 2**field_bits -- or, with `digits`, as signed
    digits of digits.bits bits each)."""
    if digits is not None:
        field_bits = digits.bits
    width = layer.pe * len(rows[0]) * field_bits
    mask = (1 << field_bits) - 1
    entries = []
    for g in range(layer.out_count // layer.pe):
        group = rows[g * layer.pe:(g + 1) * layer.pe]
        fields = [digits.encode(v) if digits else v & mask for row in group for v in row]
        word = pack(fields, field_bits)
        note = ""
        if layer.pe * len(rows[0]) <= NOTE_FIELDS:
            note = f"channels {g * layer.pe}..{(g + 1) * layer.pe - 1}, {meaning}: " + " | ".join(
                " ".join(str(v) for v in row) for row in group)
        entries.append(RomEntry(lit(g, group_bits), lit(word, width, "h"), note))
    return Rom(signal, "group", msb(width), tuple(entries))


def _weight_rom(layer: Layer, lanes: list[int], group_bits: int, chunk_bits: int, weight_bits: int,
                digits: SignedDigits | None = None) -> Rom:
    """Per (group, chunk): bit l*SIMD + s is lane l's weight for chunk input s; 1 means +1.
    `lanes`: the channel offsets within a group that have a lane (all of them without reuse).
    weight_bits > 1: field [(l*SIMD + s)*weight_bits +: weight_bits], two's complement; with
    `digits`, fields of digits.bits bits holding the weight's signed digits."""
    words, width = _weight_words(layer, lanes, chunk_bits, weight_bits, digits)
    entries = tuple(RomEntry(lit(addr, group_bits + chunk_bits), lit(word, width, "h")) for addr, word in words)
    return Rom("weights", "{group, chunk}", msb(width), entries)


def _weight_words(layer: Layer, lanes: list[int], chunk_bits: int, weight_bits: int,
                  digits: SignedDigits | None = None) -> tuple[list[tuple[int, int]], int]:
    """The weight ROM's (address, word) pairs in step order, and the word's width (_weight_rom)."""
    c, k, pe, simd = layer.out_count, layer.in_count, layer.pe, layer.simd
    fields = np.asarray(layer.weights) > 0 if weight_bits == 1 else np.asarray(layer.weights, dtype=np.int64)
    if digits is not None:
        codes = {int(v): digits.encode(int(v)) for v in np.unique(fields)}
        fields, weight_bits = np.vectorize(codes.__getitem__, otypes=[object])(fields), digits.bits
    fields = fields.reshape(c // pe, pe, k // simd, simd)[:, lanes].transpose(0, 2, 1, 3)
    words = []
    for g in range(c // pe):
        for s in range(k // simd):
            word = pack_bits(fields[g, s].ravel()) if weight_bits == 1 else \
                pack(fields[g, s].ravel() & ((1 << weight_bits) - 1), weight_bits)
            words.append(((g << chunk_bits) | s, word))
    return words, len(lanes) * simd * weight_bits


# Registered layers: a copy of the step address per WEIGHTS_PER_COPY weights of a lane, each copy
# with its own slice of the weight ROM. Yosys merges equal registers: with one address, the weight
# registers of a few-step layer (at most 2^steps patterns per bit) became a few registers of huge
# fan-out (a 7.3 ns net in the CNV's layer 1, 5.6 ns in the TFC's layer 0, both at auto folding).
# The copies are `keep`, so every block's ROM LUTs and registers stay its own: no net drives more
# than a block. (Registering each term as the XNOR of input and weight instead filled 97% of the
# 85k ECP5's LUTs with the TFC at auto folding, against 76% this way.)
def _weight_blocks(layer: Layer, lanes: list[int], group_bits: int, chunk_bits: int, weight_bits: int,
                   digits: SignedDigits | None) -> tuple[WeightBlock, ...]:
    """The weight ROM in blocks of up to WEIGHTS_PER_COPY weights of one lane (see the template)."""
    words, width = _weight_words(layer, lanes, chunk_bits, weight_bits, digits)
    field = width // (len(lanes) * layer.simd)
    addr_bits = group_bits + chunk_bits
    blocks: list[WeightBlock] = []
    for lane in range(len(lanes)):
        for first in range(0, layer.simd, WEIGHTS_PER_COPY):
            k, bits = len(blocks), min(WEIGHTS_PER_COPY, layer.simd - first) * field
            at = (lane * layer.simd + first) * field
            entries = tuple(RomEntry(lit(addr, addr_bits), lit(word >> at & ((1 << bits) - 1), bits, "h"))
                            for addr, word in words)
            blocks.append(WeightBlock(k, lane, at, bits, Rom(f"block{k}_w", f"block{k}_addr", msb(bits), entries)))
    return tuple(blocks)


# ---- the matrix-vector unit

def _threshold_post(layer: Layer, acc_w: int, group_bits: int):
    t = plan(layer).thresholds
    assert t is not None, "not a threshold layer"
    meaning = "P >=" if plan(layer).mode == Mode.XNOR else "dot >="
    roms = (_group_rom("group_thresholds", t.counting.tolist(), layer, acc_w, group_bits, meaning),
            _group_rom("group_codes", t.codes.tolist(), layer, layer.out_elem.bits, group_bits, "output code per level"))
    note = f"{t.levels} threshold(s) per channel -> {layer.out_elem}"
    return t.levels, roms, note


def _affine_post(layer: Layer, mode: str, acc_w: int, group_bits: int, multiplier_free: int = 0):
    c, k = layer.out_count, layer.in_count
    if layer.post == "affine":
        lp = plan(layer)
        assert lp.mult is not None and lp.bias is not None  # an affine layer's plan has them
        mult, bias = list(lp.mult), list(lp.bias)
        formula = f"floor((acc * mult + bias) / 2^{layer.shift})" if layer.shift else "acc * mult + bias"
        note = f"{formula} -> {layer.out_elem}"
    else:
        mult, bias = [1] * c, [0] * c
        note = f"the dot product itself -> {layer.out_elem}"
    if mode == "xnor":
        # (2P - K) * m + b = P * 2m + (b - K m)
        mult, bias = [2 * m for m in mult], [b - k * m for b, m in zip(bias, mult)]
    digits = signed_digit_format(mult, multiplier_free, f"layer {layer.index}'s post-op") if multiplier_free else None
    roms = (_group_rom("group_mult", [[m] for m in mult], layer, acc_w, group_bits, "mult", digits),
            _group_rom("group_bias", [[b] for b in bias], layer, acc_w, group_bits, "bias"))
    return roms, note, digits


def _reuse_views(layer: Layer, mode: str, acc_w: int, children) -> tuple[tuple[Child, ...], tuple[str, ...]]:
    k, simd, in_bits = layer.in_count, layer.simd, 2 if mode == "masked" else layer.dot_elem.bits

    def at(i):
        return buffer_position(i, simd, k)

    mod = (1 << acc_w) - 1
    views = []
    for child in children:
        c, p, negate, d = child.channel, child.parent, child.negate, child.differing
        x = concat([part_select("inputs", at(i), in_bits) for i in d], 8, " " * 11) if len(d) else ""
        w = lit(pack_bits(layer.weights[c, d] > 0), len(d), "h") if len(d) else ""
        inside_d = ""
        if mode == "masked" and len(d):
            assert layer.window is not None  # masked inputs are those behind a conv's zero padding
            c_in = layer.window.in_shape[0]
            pixels, counts = np.unique(np.asarray(d) // c_in, return_counts=True)
            terms = [f"(inputs[{at(q * c_in) * 2 + 1}] ? {lit(n & mod, acc_w)} : {lit(0, acc_w)})"
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
            expr = (f"{lit((k - child.d) & mod, acc_w)} - {parent}" if child.negate
                    else f"{parent} - {lit(child.d & mod, acc_w)}")
        elif mode == "masked":
            inside_d = f" - in_map{child.channel}" if child.d else ""
            expr = f"in_map{inside_d} - {parent}" if child.negate else f"{parent}{inside_d}"
        else:
            expr = f"{lit(0, acc_w)} - {parent}" if child.negate else parent
        wires[child.channel] = expr + twice
    views = tuple(SumWire(ch, wires[ch]) for ch in sorted(wires))
    sums = concat([f"sum{ch}" for ch in range(layer.out_count)])
    return views, sums


def shift_add_text(signal: str, constant: int, bits: int) -> str:
    """Verilog for signal * constant (a positive constant, in a `bits`-wide context) as shifts
    and adds of its signed digits, the largest first."""
    terms = sorted(signed_digits(constant), key=lambda d: -d[1])
    text = ""
    for sign, exp in terms:
        term = signal if exp == 0 else f"({signal} << {exp})"
        text += term if not text else f" {'+' if sign > 0 else '-'} {term}"
    return text or lit(0, bits)


def _post_selects(roms: tuple[Rom, ...], stages: int, group_bits: int, digits: bool) -> tuple[str, ...]:
    """Registered: the group a post-op ROM is read in -- a multiplier's three stages before the
    last (it is registered beside the value it multiplies, which has two stages left: the product
    and its copy; a multiplier of signed digits two stages before the last, unregistered), every
    other one in the last stage."""
    def at(stage):
        lo = (stage - 1) * group_bits
        return f"stage_group[{lo + group_bits - 1}:{lo}]"
    return tuple(at(stages - (2 if digits else 3) if r.signal == "group_mult" else stages) for r in roms)


def layer_view(layer: Layer, multiplier_free: int = 0, registered: bool = False) -> LayerView:
    """multiplier_free: K > 0 for a design rounded to at most K signed digits per constant
    (hardware.Design.multiplier_free): products by shifts and adds. registered: see
    hardware.Design.registered."""
    groups, chunks = layer.out_count // layer.pe, layer.in_count // layer.simd
    group_bits, chunk_bits = counter_bits(groups), counter_bits(chunks)
    lp = plan(layer)
    mode = lp.mode.value
    acc_w, acc_note, term_w = lp.acc.width, lp.acc.note, lp.acc.term_width
    if layer.post == "threshold":
        levels, post_roms, post_note = _threshold_post(layer, acc_w, group_bits)
        post, lane_thr_w, lane_code_w = "threshold", levels * acc_w, (levels + 1) * layer.out_elem.bits
        mult_digits = None
    else:
        post_roms, post_note, mult_digits = _affine_post(layer, mode, acc_w, group_bits, multiplier_free)
        post, levels, lane_thr_w, lane_code_w = "affine", 0, 0, 0
    built = lp.reuse(ReusePolicy.ALL_CHANNELS).children
    children, formulas = _reuse_views(layer, mode, acc_w, built) if built else ((), ())
    child_set = {child.channel for child in built}
    lanes = [p for p in range(layer.pe) if p not in child_set]
    sum_wires, sums_concat = _sum_wires(layer, mode, acc_w, children, lanes) if built else ((), "")
    in_bits = lp.in_bits
    out_bits = layer.out_elem.bits
    group_w = layer.pe * out_bits
    pixels, c_in, inside = 0, 0, ""
    if mode == "masked":
        assert layer.window is not None  # masked inputs are those behind a conv's zero padding
        c_in = layer.window.in_shape[0]
        pixels = layer.in_count // c_in
        inside = concat([f"inputs[{buffer_position(q * c_in, layer.simd, layer.in_count) * 2 + 1}]"
                          for q in range(pixels)])
    conv_note = ""
    if layer.window is not None:
        oh, ow = layer.window.out_hw
        conv_note = (f"A convolution: one input vector per output pixel ({oh} x {ow} per frame), the window from "
                     f"bnnc_window{layer.index}, inputs in window order (kernel row, kernel column, channel).")
    residual = residual_view(layer, lambda signal, rows, lay, bits, meaning, digits=None:
                             _group_rom(signal, rows, lay, bits, group_bits, meaning, digits), multiplier_free)
    if registered and (residual is not None or built):
        what = "a residual block" if residual is not None else "channel reuse"
        where = f" (ONNX node '{sanitize(layer.origin)}')" if layer.origin else ""
        raise BnncError(f"--registered: layer {layer.index}{where} has {what}, which registered units do not build yet")
    if residual is not None:
        post_roms = tuple(post_roms) + residual.stage_roms
    sum_bits = residual.sum_bits if residual is not None else out_bits
    weight_digits = None
    if multiplier_free and lp.weight_bits > 1:
        weight_digits = signed_digit_format(layer.weights, multiplier_free, f"layer {layer.index}'s weights")
    in_map_times = shift_add_text("in_map_pixels", c_in, acc_w) if multiplier_free and mode == "masked" else ""
    view = LayerView(
        module=f"bnnc_layer{layer.index}", index=layer.index,
        origin=sanitize(layer.origin) if layer.origin else "", conv_note=conv_note,
        in_count=layer.in_count, out_count=layer.out_count, in_kind=str(layer.in_elem),
        pe=layer.pe, simd=layer.simd, groups=groups, chunks=chunks, steps=groups * chunks, lanes=len(lanes),
        in_bits=in_bits, out_bits=out_bits,
        in_msb=msb(layer.in_count * in_bits), out_msb=msb(layer.out_count * out_bits),
        chunk_msb=msb(layer.simd * in_bits), chunk_w=layer.simd * in_bits,
        group_w=group_w, group_out_msb=msb(group_w),
        collected_msb=msb((groups - 1) * group_w),
        mode=mode, bipolar_param=int(isinstance(layer.dot_elem, Bipolar)), masked_param=int(dot_masked(layer)),
        signed_param=int(elem_signed(layer.dot_elem)), signed_compare=mode != "xnor", term_w=term_w,
        acc_w=acc_w, acc_note=acc_note,
        group_bits=group_bits, chunk_bits=chunk_bits,
        weights=_weight_rom(layer, lanes, group_bits, chunk_bits, lp.weight_bits, weight_digits),
        weight_bits=lp.weight_bits, weight_digits=weight_digits, mult_digits=mult_digits, in_map_times=in_map_times,
        post=post, post_note=post_note, levels=levels, lane_thr_w=lane_thr_w, lane_code_w=lane_code_w,
        post_roms=post_roms, drops_high_bits=post == "affine" and acc_w > sum_bits + layer.shift,
        shift=layer.shift if post == "affine" else 0,
        pixels=pixels, pixel_channels=c_in, pixel_channels_lit=lit(c_in, acc_w) if c_in else "",
        pixel_inside=inside, all_ones=f"{(1 << pixels) - 1:x}" if pixels else "",
        children=children, reuse_formulas=formulas, sum_wires=sum_wires, sums_concat=sums_concat,
        residual=residual,
        **_registered_fields(layer, post_roms, group_bits, registered, mult_digits is not None,
                             layer.in_count * in_bits),
    )
    if registered and weight_blocks(layer):
        view = replace(view, weight_blocks=_weight_blocks(layer, lanes, group_bits, chunk_bits, lp.weight_bits,
                                                           weight_digits))
    return view


def _registered_fields(layer: Layer, post_roms: tuple[Rom, ...], group_bits: int, registered: bool,
                       digits: bool, buffer_bits: int) -> dict:
    if not registered:
        return dict(post_selects=tuple(r.select for r in post_roms))
    stages, slots, levels, lp = post_stages(layer), queue_slots(layer), sum_levels(layer), plan(layer)
    lut_mult = 0 if digits else lut_multiply_bits(layer)
    split = layer.post != "threshold" and not digits and not lut_mult and 17 < lp.acc.width <= 34
    # stages 1 to 3 (input_stages): inputs and weights; then the parts' dot products, the adder
    # tree's levels
    lead = input_stages(layer)
    tree = tuple(dict(stage=lead + 2 + k, count=n, below=levels[k], fan=PARTS_PER_CLOCK)
                 for k, n in enumerate(levels[1:]))
    # A part of 1-bit terms counts at most its `part` terms; its register keeps only the bits that
    # count can reach. Synthesis cannot bound the count itself: bnnc_dot's groups for 4-input LUTs
    # (three terms in a 3-bit count) made it carry a bit that is always 0 into every part's register
    # and up the tree (the TFC at auto folding: 1,295 more flip-flops on ECP5).
    part, acc = part_inputs(layer), lp.acc.width
    count_bits = part.bit_length() if lp.mode in (Mode.XNOR, Mode.MASKED) else acc
    part_mask = lit(sum(((1 << count_bits) - 1) << (q * acc) for q in range(levels[0])), levels[0] * acc, "h") \
        if count_bits < acc else ""
    return dict(registered=True, part=part, parts=levels[0], part_mask=part_mask, tree=tree,
                sum_stage=lead + 1 + len(tree),
                weight_memory=weights_in_block_ram(layer), input_stages=lead, input_copies=input_copies(layer),
                step_copies=step_copies(layer), lanes_per_step_copy=lanes_per_step_copy(layer),
                load_copies=load_copies(layer, buffer_bits), load_bits=BITS_PER_LOAD_COPY,
                registered_twice=registered_twice(layer),
                step_bits=counter_bits(layer_steps(layer)),
                post_stages=stages, slots=slots,
                pending_bits=slots.bit_length(), post_selects=_post_selects(post_roms, stages, group_bits, digits),
                mult_split=split, lut_mult=lut_mult)

