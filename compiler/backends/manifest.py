"""What a user of the generated hardware needs to know, as JSON: stream formats, folding, timing,
size.

Timing and sizes are those of the Verilog backend's architecture (verilog.py, verilog_timing.py;
the tests check the timing against simulation). For designs that backend cannot build,
`latency_cycles` is null, `cycles_per_frame` is the layers' own estimate and `rtl` says why.
Keys keep a fixed order, so equal designs give equal JSON text.
"""
from __future__ import annotations

from ..ir.types import Bipolar, Element, Fixed, Int, Ternary
from .hardware import Design, Layer, PoolLayer
from .verilog import TOP, layer_view, reuse_plan, unsupported
from .verilog_timing import line_pixels, timing, window_tail

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


def _stream(elem: Element, count: int, shape: tuple[int, ...], beats: int = 1) -> dict:
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
    view = layer_view(layer)
    plan, reuse_note = reuse_plan(layer)
    post = {"kind": layer.post, "levels": view.levels} if view.post == "threshold" else {"kind": layer.post}
    out = {
        "index": layer.index,
        "origin": layer.origin,
        "kind": "conv" if layer.window is not None else "dense",
        "in_count": layer.in_count,
        "out_count": layer.out_count,
        "in_element": str(layer.in_elem),
        "out_element": str(layer.out_elem),
        "post": post,
        "pe": layer.pe,
        "simd": layer.simd,
        "channel_groups": view.groups,
        "input_chunks": view.chunks,
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
                                                               "integer": f"the code of {w.pad_value}",
                                                               "multiply": "none" if not any(w.pads) else
                                                               "zero pads add nothing (an in-map bit per input)"
                                                               if view.masked_param else
                                                               f"the code of {w.pad_value}"}[view.mode],
                         "tail_padding_shifts": window_tail(w)}
    if reads_map:
        out["gathers_map"] = True
    tree_children = 0 if layer.reuse is None else int((layer.reuse.parent >= 0).sum())
    saved = sum(layer.in_count - len(d) for *_, d in plan)
    out["reuse"] = {"tree_children": tree_children, "children_in_hardware": len(plan), "inputs_skipped": saved,
                    "note": reuse_note}
    lanes = layer.pe - len(plan)
    dot_inputs = lanes * layer.simd + sum(len(d) for *_, d in plan)
    out["resources"] = {
        "unit": {"xnor": "xnor_popcount", "masked": "xnor_popcount_masked", "integer": "add_sub",
                 "multiply": "multiply_add"}[view.mode],
        "xnors": dot_inputs if view.mode in ("xnor", "masked") else 0,
        "add_sub_terms": 0 if view.mode != "integer" else dot_inputs,
        "multiply_terms": 0 if view.mode != "multiply" else dot_inputs,  # x * w, w of weight_bits bits
        "adder_tree_input_bits": dot_inputs * view.term_w,
        "accumulator_bits": lanes * view.acc_w if view.chunks > 1 else 0,
        "comparators": layer.pe * view.levels,
        "multipliers": layer.pe if view.post == "affine" else 0,
        "weight_rom_bits": lanes * layer.simd * view.groups * view.chunks * view.weight_bits,
        "register_bits": (layer.in_count * view.in_bits  # input buffer
                          + layer.out_count * layer.out_elem.bits  # output register
                          + (view.groups - 1) * view.group_w  # groups collected for the output
                          + line_buffer  # the sliding window's line buffer
                          + (layer.in_count * layer.in_elem.bits if reads_map else 0)),  # the gather register
    }
    return out


RESOURCE_KEYS = ("xnors", "add_sub_terms", "multiply_terms", "adder_tree_input_bits", "accumulator_bits",
                 "comparators", "multipliers", "weight_rom_bits", "register_bits", "fifo_bits")


def design_manifest(design: Design) -> dict:
    """JSON-ready description of the hardware for `design` (see TIMING_MODEL)."""
    reason = unsupported(design)
    rtl = reason is None
    plan = timing(design) if rtl else None
    period = {unit.layer.index: unit.period for unit in plan.units if unit.layer is not None} if rtl else {}
    gathers = {unit.layer.index for unit in plan.units if unit.kind == "gather"} if rtl else set()
    layers = [_pool(layer, period.get(layer.index)) if isinstance(layer, PoolLayer)
              else _layer(layer, period.get(layer.index), layer.index in gathers) for layer in design.layers]
    fifos = []
    if rtl:
        for i, depth in enumerate(plan.fifo_depths):
            if depth:
                unit = plan.units[i]
                width = (unit.layer.in_shape[0] * unit.layer.elem.bits if unit.kind == "pool"
                         else unit.layer.out_count * unit.layer.out_elem.bits)
                fifos.append({"after_layer": unit.layer.index, "depth": depth, "width_bits": width})
    totals = {key: sum(layer["resources"].get(key, 0) for layer in layers) for key in RESOURCE_KEYS}
    totals["fifo_bits"] = sum(f["depth"] * f["width_bits"] for f in fifos)
    totals["register_bits"] += sum(layer["resources"]["line_buffer_bits"] for layer in layers if layer["kind"] == "pool")
    in_beats = plan.in_beats if rtl else 1
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
        "pipeline": {"fifos": fifos, "pacer_interval": plan.interval if rtl and plan.paced else None},
        "cycles_per_frame": plan.interval if rtl else design.cycles_per_frame,
        "latency_cycles": plan.latency if rtl else None,
        "timing_model": TIMING_MODEL,
        "rtl": {"supported": rtl, "reason": reason},
        "resources": totals,
    }
