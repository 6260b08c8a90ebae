"""What a user of the generated hardware needs to know, as JSON: stream formats, folding, timing,
size.

Latency and sizes are those of the Verilog backend's architecture (see verilog.py; the tests
check its timing model against simulation). For designs that backend cannot build (conv nets),
`latency_cycles` is null and `rtl` says why. Keys keep a fixed order, so equal designs give equal
JSON text.
"""
from __future__ import annotations

from ..ir.types import Bipolar, Element, Fixed, Int, Ternary
from .hardware import Design, Layer
from .verilog import TOP, latency, layer_latency, layer_view, unsupported

TIMING_MODEL = ("cycles_per_frame = max over layers of (C/PE) * (K/SIMD), with no per-frame overhead "
                "(a layer accepts its next vector in the clock of its last step); "
                "latency_cycles = sum over layers of (cycles + 1), + 1 for the argmax unit, counted in "
                "rising edges from the input transfer to the output transfer with out_ready high")


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


def _stream(elem: Element, count: int, shape: tuple[int, ...]) -> dict:
    return {"element": _element(elem), "count": count, "shape": list(shape),
            "width_bits": count * elem.bits,
            "packing": f"element i at bits [i*{elem.bits} +: {elem.bits}]"}


def _pool(layer) -> dict:
    return {"index": layer.index, "origin": layer.origin, "kind": "pool", "element": str(layer.elem),
            "in_shape": list(layer.in_shape), "out_shape": list(layer.out_shape), "kernel": list(layer.kernel),
            "stride": list(layer.stride), "cycles": layer.cycles}


def _layer(layer: Layer, rtl: bool) -> dict:
    view = layer_view(layer)
    lanes = layer.pe * layer.simd
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
        "cycles": layer.cycles,
        "latency_cycles": layer_latency(layer) if rtl else None,
    }
    if layer.window is not None:
        w = layer.window
        out["window"] = {"in_shape": list(w.in_shape), "kernel": list(w.kernel), "stride": list(w.stride),
                         "pads": list(w.pads), "pad_value": w.pad_value, "out_hw": list(w.out_hw),
                         "vectors": layer.vectors}
    out["resources"] = {
        "unit": "xnor_popcount" if view.bipolar else "add_sub",
        "xnors": lanes if view.bipolar else 0,
        "add_sub_terms": 0 if view.bipolar else lanes,
        "adder_tree_input_bits": lanes * view.term_w,
        "accumulator_bits": layer.pe * view.acc_w if view.chunks > 1 else 0,
        "comparators": layer.pe * view.levels,
        "multipliers": layer.pe if view.post == "affine" else 0,
        "weight_rom_bits": layer.out_count * layer.in_count,
        "register_bits": (layer.in_count * layer.in_elem.bits  # input buffer
                          + layer.out_count * layer.out_elem.bits  # output register
                          + (view.groups - 1) * view.group_w),  # groups collected for the output
    }
    return out


RESOURCE_KEYS = ("xnors", "add_sub_terms", "adder_tree_input_bits", "accumulator_bits", "comparators",
                 "multipliers", "weight_rom_bits", "register_bits")


def design_manifest(design: Design) -> dict:
    """JSON-ready description of the hardware for `design` (see TIMING_MODEL)."""
    reason = unsupported(design)
    rtl = reason is None
    layers = [_layer(layer, rtl) if isinstance(layer, Layer) else _pool(layer) for layer in design.layers]
    totals = {key: sum(layer["resources"][key] for layer in layers if "resources" in layer) for key in RESOURCE_KEYS}
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
        },
        "input": {**_stream(design.in_elem, design.in_count, design.in_shape), "order": design.in_order},
        "output": output,
        "layers": layers,
        "argmax": design.argmax,
        "cycles_per_frame": design.cycles_per_frame,
        "latency_cycles": latency(design) if rtl else None,
        "timing_model": TIMING_MODEL,
        "rtl": {"supported": rtl, "reason": reason},
        "resources": totals,
    }
