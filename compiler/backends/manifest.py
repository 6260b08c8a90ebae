"""What a user of the generated hardware needs to know, as JSON: stream formats, folding, timing,
size.

Every per-layer decision comes from the layer's plan (plan.py). Timing and sizes are those of the
Verilog backend's architecture (verilog_timing.py; the tests check the timing against
simulation), and so is the reuse that `resources` counts; each layer's `reuse` also says what
the HLS backend builds under its policy. For designs the Verilog backend cannot build,
`latency_cycles` is null, `cycles_per_frame` is the layers' own estimate and `rtl` says why.
Keys keep a fixed order, so equal designs give equal JSON text.
"""
from __future__ import annotations

from typing import Any

from ..ir.types import Bipolar, Element, Fixed, Int, IntegerElement, Ternary
from .hardware import Design, Layer, PoolLayer
from .plan import POLICY_TEXT, REUSE_POLICY, TOP, Mode, Post, masked_input, plan, verilog_unsupported
from .verilog_timing import line_pixels, timing, weights_in_block_ram, window_tail

TIMING_MODEL = (
    "cycles_per_frame = the largest unit period. A dense layer: (C/PE)*(K/SIMD) clocks. A conv layer: "
    "sum over its output pixels of max((C/PE)*(K/SIMD), d), d = line-buffer shifts since the previous "
    "output pixel (1 along a row of a stride-1 conv; more at row ends, strides and across frames, "
    "including bottom pad rows * W + right pad padding shifts after a frame's last pixel). A pool: one "
    "input pixel per clock, plus the same gaps. A dense layer reading a map: max(pixels, (C/PE)*(K/SIMD)). "
    "A pacer starts a frame at most every cycles_per_frame clocks and FIFOs between units absorb bursts "
    "where waiting would cost throughput, so the pipeline runs a fixed schedule, replayed transfer by "
    "transfer in verilog_timing.py: latency_cycles = rising edges from a frame's first input transfer "
    "to its output transfer through an idle pipeline with out_ready high")
REGISTERED_MODEL = (
    " Registered units (--registered): each matrix-vector unit's result reaches its output queue `stages` "
    "clocks after its last step, which waits for a free place among the queue's `queue` places (counted "
    "one clock before); a conv unit's window reaches its MVU through a two-place register slice, and a pool's "
    "output register is one; the replay includes all of them")


def _element(elem: Element) -> dict:
    if isinstance(elem, Bipolar):
        kind, encoding = "bipolar", "1 bit; 1 means +1, 0 means -1"
    elif isinstance(elem, Ternary):
        kind, encoding = "ternary", "2-bit two's complement of -1, 0, +1"
    elif isinstance(elem, Fixed):
        kind, encoding = "fixed", f"{elem.bits}-bit two's complement code q meaning q * 2^-{elem.frac}"
    elif isinstance(elem, Int):
        kind = "int"
        encoding = f"{elem.bits}-bit " + ("two's complement" if elem.signed else "unsigned binary")
    else:
        raise TypeError(f"{elem} has no hardware encoding")
    out = {"type": str(elem), "kind": kind, "bits": elem.bits,
           "signed": bool(getattr(elem, "signed", False)) and not isinstance(elem, Bipolar)}
    if isinstance(elem, Fixed):
        out["frac"] = elem.frac
    out["encoding"] = encoding
    return out


def _stream(elem: IntegerElement, count: int, shape: tuple[int, ...], beats: int = 1) -> dict:
    per = count // beats
    out = {"element": _element(elem), "count": count, "shape": list(shape),
           "transfers_per_frame": beats, "width_bits": per * elem.bits,
           "packing": f"element i of a transfer at bits [i*{elem.bits} +: {elem.bits}]"}
    if beats > 1:
        out["transfer"] = (f"one pixel ({per} channel(s)) per transfer, pixels in raster order "
                           f"(row by row, left to right): transfer p carries elements [p*{per}, (p+1)*{per}) "
                           f"of the frame in HWC order")
    else:
        out["transfer"] = "the whole vector in one transfer"
    return out


def _pool(layer: PoolLayer, unit_cycles) -> dict:
    return {"index": layer.index, "origin": layer.origin, "kind": "pool", "element": str(layer.elem),
            "in_shape": list(layer.in_shape), "out_shape": list(layer.out_shape), "kernel": list(layer.kernel),
            "stride": list(layer.stride), "modes": [int(m) for m in layer.modes], "cycles": layer.cycles,
            "unit_cycles": unit_cycles,
            "resources": {"line_buffer_bits": line_pixels(layer.kernel, layer.in_shape[2])
                          * layer.in_shape[0] * layer.elem.bits}}


def _layer(layer: Layer, unit_cycles, reads_map: bool) -> dict:
    lp = plan(layer)
    mode, folding = lp.mode, lp.folding
    levels = lp.thresholds.levels if lp.thresholds is not None else 0  # the plan has them for a THRESHOLD post
    post: dict[str, Any] = {"kind": layer.post, "levels": levels} if lp.post == Post.THRESHOLD else {"kind": layer.post}
    if layer.post == "affine" and layer.shift:
        post["shift"] = layer.shift
    if layer.shortcut is not None:  # a residual block in one layer (hardware.Shortcut)
        assert layer.act is not None  # its input sign
        post["residual"] = {"input_sign": str(layer.act.elem), "sign_levels": int(layer.act.thresholds.shape[1]),
                            "padding_masked": layer.act.masked, "shortcut_taps": list(layer.shortcut.taps),
                            "main_shift": layer.shortcut.main_shift, "tap_shift": layer.shortcut.tap_shift,
                            "sum_element": str(layer.shortcut.sum_elem),
                            "affines_after_add": len(layer.shortcut.after)}
    out = {
        "index": layer.index,
        "origin": layer.origin,
        "kind": lp.kind.value,
        "in_count": layer.in_count,
        "out_count": layer.out_count,
        "in_element": str(layer.in_elem),
        "out_element": str(layer.out_elem),
        "post": post,
        "pe": layer.pe,
        "simd": layer.simd,
        "channel_groups": folding.groups,
        "input_chunks": folding.chunks,
        "cycles": layer.cycles,  # matrix-vector steps per frame
        "unit_cycles": unit_cycles,  # this unit alone, clocks per frame (see timing_model)
    }
    line_buffer = 0
    if layer.window is not None:
        w = layer.window
        line_buffer = line_pixels(w.kernel, w.in_shape[2]) * w.in_shape[0] * layer.in_elem.bits
        out["window"] = {"in_shape": list(w.in_shape), "kernel": list(w.kernel), "stride": list(w.stride),
                         "pads": list(w.pads), "pad_value": w.pad_value, "out_hw": list(w.out_hw),
                         "vectors": layer.vectors, "padding": {"masked": "zero pads add nothing (an in-map bit per input)",
                                                               "xnor": "none" if not any(w.pads) else f"a {w.pad_value} bit",
                                                               "integer": "zero pads add nothing (an in-map bit per input)"
                                                               if masked_input(layer) else f"the code of {w.pad_value}",
                                                               "multiply": "none" if not any(w.pads) else
                                                               "zero pads add nothing (an in-map bit per input)"
                                                               if masked_input(layer) else
                                                               f"the code of {w.pad_value}"}[mode.value],
                         "tail_padding_shifts": window_tail(w)}
    if reads_map:
        out["gathers_map"] = True
    verilog, hls = (lp.reuse(REUSE_POLICY[backend]) for backend in ("verilog", "hls"))
    out["reuse"] = {"tree_children": lp.tree_children, "children_in_hardware": len(verilog.children),
                    "inputs_skipped": layer.out_count * layer.in_count - lp.terms_per_vector(verilog.policy),
                    "terms_per_frame": lp.terms_per_frame(verilog.policy),
                    "note": verilog.note, "policy": f"verilog: {POLICY_TEXT[verilog.policy]}",
                    "hls": {"children_in_hardware": len(hls.children), "terms_per_frame": lp.terms_per_frame(hls.policy),
                            "note": hls.note, "policy": POLICY_TEXT[hls.policy]}}
    lanes = layer.pe - len(verilog.children)
    dot_inputs = lp.terms_per_clock(verilog.policy)
    out["resources"] = {
        "unit": {Mode.XNOR: "xnor_popcount", Mode.MASKED: "xnor_popcount_masked", Mode.INTEGER: "add_sub",
                 Mode.MULTIPLY: "multiply_add"}[mode],
        "xnors": dot_inputs if mode in (Mode.XNOR, Mode.MASKED) else 0,
        "add_sub_terms": 0 if mode != Mode.INTEGER else dot_inputs,
        "multiply_terms": 0 if mode != Mode.MULTIPLY else dot_inputs,  # x * w, w of weight_bits bits
        "adder_tree_input_bits": dot_inputs * lp.acc.term_width,
        "accumulator_bits": lanes * lp.acc.width if folding.chunks > 1 else 0,
        "comparators": layer.pe * levels,
        "multipliers": layer.pe if lp.post != Post.THRESHOLD else 0,
        "weight_rom_bits": lanes * layer.simd * folding.groups * folding.chunks * lp.weight_bits,
        "register_bits": (layer.in_count * lp.in_bits  # input buffer
                          + layer.out_count * layer.out_elem.bits  # output register
                          + (folding.groups - 1) * layer.pe * layer.out_elem.bits  # groups collected for the output
                          + line_buffer  # the sliding window's line buffer
                          + (layer.in_count * layer.in_elem.bits if reads_map else 0)),  # the gather register
    }
    return out


RESOURCE_KEYS = ("xnors", "add_sub_terms", "multiply_terms", "adder_tree_input_bits", "accumulator_bits",
                 "comparators", "multipliers", "weight_rom_bits", "register_bits", "fifo_bits")


def _registered(schedule) -> dict:
    """Only for registered designs, so that other manifests stay as they were."""
    units = [u for u in schedule.units if u.slots] if schedule is not None else []
    if not units:
        return {}
    return {"registered_units": [{"layer": u.layer.index, "stages": u.post_stages, "queue": u.slots,
                                  "weights": "block RAM" if weights_in_block_ram(u.layer) else "LUT ROM"}
                                 for u in units]}


def design_manifest(design: Design) -> dict:
    """JSON-ready description of the hardware for `design` (see TIMING_MODEL)."""
    reason = verilog_unsupported(design)
    rtl = reason is None
    schedule = timing(design) if rtl else None
    period = {unit.layer.index: unit.period for unit in schedule.units if unit.layer is not None} if schedule is not None else {}
    gathers = {unit.layer.index for unit in schedule.units if unit.kind == "gather" and unit.layer is not None} \
        if schedule is not None else set()
    layers = [_pool(layer, period.get(layer.index)) if isinstance(layer, PoolLayer)
              else _layer(layer, period.get(layer.index), layer.index in gathers) for layer in design.layers]
    fifos = []
    if schedule is not None:
        for i, depth in enumerate(schedule.fifo_depths):
            if depth:
                src = schedule.units[i].layer
                assert src is not None  # a FIFO follows a unit before the last, and only the last (argmax) has none
                width = (src.in_shape[0] * src.elem.bits if isinstance(src, PoolLayer)
                         else src.out_count * src.out_elem.bits)
                fifos.append({"after_layer": src.index, "depth": depth, "width_bits": width})
    totals = {key: sum(layer["resources"].get(key, 0) for layer in layers) for key in RESOURCE_KEYS}
    totals["fifo_bits"] = sum(f["depth"] * f["width_bits"] for f in fifos)
    totals["register_bits"] += sum(layer["resources"]["line_buffer_bits"] for layer in layers if layer["kind"] == "pool")
    in_beats = schedule.in_beats if schedule is not None else 1
    output = _stream(design.out_elem, design.out_count, (design.out_count,))
    if design.argmax:
        output["meaning"] = "index of the first maximum of the last layer's outputs"
    return {
        "top": TOP,
        "design": design.name,
        "interface": {
            "clock": "clk, rising edge",
            "reset": "rst, synchronous, active high",
            "handshake": "valid/ready per stream; a transfer happens on a rising edge where both are high",
            "ports": ["clk", "rst", "in_valid", "in_ready", "in_data", "out_valid", "out_ready", "out_data"],
            "frames": "frames are independent: a frame's output never waits for the next frame's input",
        },
        "input": {**_stream(design.in_elem, design.in_count, design.in_shape, in_beats), "order": design.in_order},
        "output": output,
        "layers": layers,
        "argmax": design.argmax,
        "pipeline": {"fifos": fifos, "pacer_interval": schedule.interval if schedule is not None and schedule.paced else None,
                     **_registered(schedule)},
        "cycles_per_frame": schedule.interval if schedule is not None else design.cycles_per_frame,
        "latency_cycles": schedule.latency if schedule is not None else None,
        "timing_model": TIMING_MODEL + (REGISTERED_MODEL if design.registered else ""),
        "rtl": {"supported": rtl, "reason": reason},
        "resources": totals,
    }
