"""The readable form of a threshold-logic mapping, for `bnnc inspect --print-after
map-threshold-logic`: per layer its totals, one line per neuron, and the gates of the first
neurons in full."""
from __future__ import annotations

from .threshold_logic import TRUE, LayerNetwork, Mapping


def _lit_name(net: LayerNetwork, lit: int) -> str:
    if lit <= TRUE:
        return str(lit)
    n = lit >> 1
    if n <= net.in_count:
        name = f"x{n - 1}"
    elif n <= net.n_inputs:
        name = f"m{n - 1 - net.in_count}"
    else:
        name = f"g{n - 1 - net.n_inputs}"
    return ("~" if lit & 1 else "") + name


def gate_text(net: LayerNetwork, g: int) -> str:
    terms: list[str] = []
    for n, w in zip(net.gate_inputs[g][:net.gate_fan_in[g]], net.gate_weights[g][:net.gate_fan_in[g]]):
        name = _lit_name(net, 2 * n)
        sign = ("- " if w < 0 else "+ ") if terms else ("-" if w < 0 else "")
        terms.append(sign + (f"{abs(w)}*" if abs(w) != 1 else "") + name)
    return f"g{g} = [{' '.join(terms)} >= {net.gate_thresholds[g]}]  (level {net.gate_levels[g]})"


def print_mapping(mapping: Mapping, full_neurons: int = 1) -> str:
    """Per layer: totals, one line per neuron, and the gates of the first `full_neurons` in full."""
    out = [f"// {mapping.options}: {sum(n.gates for n in mapping.layers)} TLGs in "
           f"{len(mapping.layers)} layer(s), {mapping.seconds:.2f} s"]
    for index, reason in mapping.cmos:
        out.append(f"layer {index}: stays CMOS: {reason}")
    for net in mapping.layers:
        ident = f", {net.identity_cells()} identity cells when clocked" if mapping.options.clocked else ""
        out.append(f"layer {net.layer} ('{net.origin}'): {net.out_count} neurons x {net.levels} level(s) over "
                   f"{net.in_count} inputs ({net.mode}): {net.gates} TLGs, depth {net.depth}, fan-in <= "
                   f"{net.max_fan_in}{ident}")
        shared = int(net.neuron_gates[0, 0, 0]) if net.out_count else 0
        for g in range(shared):
            out.append("  shared " + gate_text(net, g))
        for ch in range(net.out_count):
            for lv in range(net.levels):
                first, end = map(int, net.neuron_gates[ch, lv])
                t = int(net.dot_thresholds[ch, lv])
                out.append(f"  neuron {ch}.{lv}: [dot >= {t}] = {_lit_name(net, int(net.outputs[ch, lv]))}: "
                           f"{end - first} TLGs, depth {net.neuron_depth(ch, lv)}")
                if ch < full_neurons:
                    out += ["    " + gate_text(net, g) for g in range(first, end)]
    return "\n".join(out) + "\n"
