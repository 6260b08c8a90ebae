"""DIR/asic/tl/: the design with every binary layer built from threshold-logic gate (TLG) cells.

The design is the fully unrolled plan (see tl.py). Its RTL comes from the Verilog backend
unchanged, except that each layer `map-threshold-logic` maps is replaced by a structural module
with the same ports and the same one-vector-per-clock control: the input register, then the TLG
network (combinational cell models), then the output register. So the design streams exactly
like the RTL (same cycles per frame and latency) and runs on the same bench. Integer-input and
affine layers, windows, pools, FIFOs and the argmax stay the RTL's (CMOS) logic, and so do the
few gates that turn the levels of a multi-level neuron into its output code.

Files: bnnc_tlgN.v (the cell model of fan-in N, weights and threshold as parameters),
tlg_cells.lib (their modelled Liberty), program.json (weights and threshold of every instance:
what would be programmed into the FTL cells after fabrication), and the RTL files.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ...passes.threshold_logic import TRUE, LayerNetwork, Mapping
from ..hardware import Design, Layer, encode
from ..verilog import emit
from .cells import cell_model, cell_name, liberty


def sanitize(text: str, limit: int = 80) -> str:
    """A model-given name, safe inside a Verilog comment."""
    text = re.sub(r"[^A-Za-z0-9_.:/ -]", "_", text)
    return text[:limit]


def _module(index: int) -> str:
    return f"bnnc_layer{index}"


class _Names:
    """Verilog expressions of a layer network's literals."""

    def __init__(self, net: LayerNetwork):
        self.net = net

    def net_expr(self, n: int) -> str:
        net = self.net
        if n == 0:
            return "1'b0"
        if n <= net.in_count:
            return f"inputs[{2 * (n - 1) if net.mode == 'masked' else n - 1}]"
        if n <= net.n_inputs:  # masked: the in-map flag above each bit
            return f"inputs[{2 * (n - 1 - net.in_count) + 1}]"
        return f"g{n - net.n_inputs - 1}"

    def lit_expr(self, lit: int) -> str:
        if lit <= TRUE:
            return f"1'b{lit}"
        return ("~" if lit & 1 else "") + self.net_expr(lit >> 1)


def _code_expr(names: _Names, lits, codes, bits: int) -> str:
    """The output code of a neuron from its levels: code[number of thresholds reached]; the
    thresholds ascend, so the highest level reached decides."""
    lit_codes = [f"{bits}'d{int(c)}" for c in codes]
    if bits == 1 and len(lits) == 1:
        lo, hi = int(codes[0]), int(codes[1])
        if lo == hi:
            return f"1'b{lo}"
        return names.lit_expr(int(lits[0]) ^ (1 if hi == 0 else 0))
    expr = lit_codes[0]
    for level, lit in enumerate(lits):
        expr = f"{names.lit_expr(int(lit))} ? {lit_codes[level + 1]} : ({expr})"
    return expr


def layer_module(net: LayerNetwork, header: str, out_elem, in_bits: int, pass_text: str) -> str:
    names = _Names(net)
    out_bits = out_elem.bits
    k, c = net.in_count, net.out_count
    lines = [header.rstrip("\n"),
             f"// Layer {net.layer} (ONNX node '{sanitize(net.origin)}'): {c} neuron(s) x {net.levels} level(s) over {k} binary "
             f"inputs{' (zero padding: an in-map flag per input)' if net.mode == 'masked' else ''},",
             f"// as {net.gates} threshold-logic gates from {pass_text}: depth {net.depth}, fan-in <= {net.max_fan_in}.",
             "// The cells are combinational models here; with clocked FTL cells the network is "
             f"{net.depth} pipeline stages.",
             "// Fully unrolled (PE = all channels, SIMD = all inputs): one vector per clock, as the RTL layer.",
             f"module {_module(net.layer)} (",
             "    input  wire        clk,",
             "    input  wire        rst,        // synchronous, active high",
             "    input  wire        in_valid,",
             "    output wire        in_ready,",
             f"    input  wire [{k * in_bits - 1}:0] in_data,",
             "    output reg         out_valid,",
             "    input  wire        out_ready,",
             f"    output reg  [{c * out_bits - 1}:0] out_data",
             ");",
             "    reg  busy;  // a vector is latched in `inputs`",
             "    wire finish = busy && (!out_valid || out_ready);  // the output register takes the result",
             "    assign in_ready = !busy || finish;",
             "    wire accept = in_valid && in_ready;",
             "    always @(posedge clk) begin",
             "        if (rst) begin",
             "            busy      <= 1'b0;",
             "            out_valid <= 1'b0;",
             "        end else begin",
             "            if (accept)",
             "                busy <= 1'b1;",
             "            else if (finish)",
             "                busy <= 1'b0;",
             "            if (finish)",
             "                out_valid <= 1'b1;",
             "            else if (out_ready)",
             "                out_valid <= 1'b0;",
             "        end",
             "    end",
             "",
             f"    reg  [{k * in_bits - 1}:0] inputs;",
             "    always @(posedge clk) begin",
             "        if (accept)",
             "            inputs <= in_data;",
             "    end",
             ""]
    # One wire per gate output (a vector read and written bit by bit looks circular to Verilator).
    for first in range(0, net.gates, 16):
        lines.append("    wire " + ", ".join(f"g{g}" for g in range(first, min(first + 16, net.gates))) + ";")
    used = np.zeros(1 + net.n_inputs + net.gates, dtype=bool)
    for g in range(net.gates):
        fan = int(net.gate_fan_in[g])
        ins = net.gate_inputs[g, :fan]
        used[ins] = True
        params = ", ".join(f".W{i}({int(w)})" for i, w in enumerate(net.gate_weights[g, :fan]))
        ports = ", ".join(f".a{i}({names.net_expr(int(n))})" for i, n in enumerate(ins))
        lines.append(f"    {cell_name(fan)} #({params}, .T({int(net.gate_thresholds[g])})) "
                     f"tlg{g} ({ports}, .y(g{g}));")
    lines.append("")
    lines.append(f"    wire [{c * out_bits - 1}:0] result;")
    for ch in range(c):
        lits = net.outputs[ch]
        for lit in lits:
            used[int(lit) >> 1] = True
        codes = encode(net.codes[ch], out_elem)
        target = f"result[{ch}]" if out_bits == 1 else f"result[{ch * out_bits + out_bits - 1}:{ch * out_bits}]"
        lines.append(f"    assign {target} = {_code_expr(names, lits, codes, out_bits)};")
    unused = [names.net_expr(n) for n in range(1, len(used)) if not used[n]]
    if unused:
        lines.append(f"    wire unused_signals = ^{{{', '.join(unused)}}};  // not read by any neuron")
    lines += ["", "    always @(posedge clk) begin", "        if (finish)", "            out_data <= result;",
              "    end", "endmodule", ""]
    return "\n".join(lines)


def program(mapping: Mapping) -> dict:
    """Weights and threshold of every TLG instance, per layer module: what an FTL chip is
    programmed with after fabrication."""
    layers = []
    for net in mapping.layers:
        cells = [[f"tlg{g}", cell_name(int(net.gate_fan_in[g])),
                  [int(w) for w in net.gate_weights[g, :net.gate_fan_in[g]]], int(net.gate_thresholds[g])]
                 for g in range(net.gates)]
        layers.append({"layer": net.layer, "module": _module(net.layer), "origin": sanitize(net.origin),
                       "cells": cells})
    return {"bnnc_tl_program": 1, "pass": str(mapping.options),
            "cell_format": ["instance", "cell", "weights (inputs a0, a1, ...)", "threshold"], "layers": layers}


def emit_tl(design: Design, mapping: Mapping, out_dir: Path) -> list[Path]:
    """Write the TL design into out_dir: RTL with mapped layers replaced, cells, Liberty, program."""
    out_dir = Path(out_dir)
    written = emit(design, out_dir)
    filelist = written[-1]
    header = f"// Generated by bnnc from design '{sanitize(design.name)}'. Do not edit.\n"
    layers = {layer.index: layer for layer in design.layers if isinstance(layer, Layer)}  # the mapped kind
    for net in mapping.layers:
        layer = layers[net.layer]
        path = out_dir / f"{_module(net.layer)}.v"
        if f"module {_module(net.layer)} (" not in path.read_text():
            raise RuntimeError(f"the Verilog backend no longer writes layer {net.layer} as {path.name}")
        in_bits = layer.in_elem.bits + (net.mode == "masked")  # masked: {in_map, bit} per input
        path.write_text(layer_module(net, header, layer.out_elem, in_bits, str(mapping.options)),
                        encoding="utf-8", newline="\n")
    fan_ins = sorted({int(f) for net in mapping.layers for f in np.unique(net.gate_fan_in)})
    cells = [f"{cell_name(n)}.v" for n in fan_ins]
    for n, name in zip(fan_ins, cells):
        (out_dir / name).write_text(header + cell_model(n), encoding="utf-8", newline="\n")
    (out_dir / "tlg_cells.lib").write_text(liberty(fan_ins), encoding="utf-8", newline="\n")
    (out_dir / "program.json").write_text(json.dumps(program(mapping), separators=(",", ":")) + "\n")
    names = filelist.read_text().split()
    filelist.write_text("".join(f"{n}\n" for n in cells + names), encoding="utf-8", newline="\n")
    return sorted(out_dir.iterdir())
