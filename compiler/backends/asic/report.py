"""The asic section of `bnnc report`: per layer, the CMOS standard-cell mapping against the TLG
network, and a sweep of the assumed TLG cell cost (the TL figures are a model: cells.py)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ...ir.graph import Graph
from .cells import AREA_RATIO, DELAY_RATIO, modelled_cost
from .tl import threshold_logic

SWEEP = (0.1, AREA_RATIO, 0.3, 0.5, 0.75, 1.0)


def tl_area(net, area_ratio: float = AREA_RATIO, clocked: bool = True) -> float:
    """Modelled area of a layer's TLGs (plus the identity cells a clocked network needs)."""
    fan, counts = np.unique(net.gate_fan_in, return_counts=True)
    area = sum(int(n) * modelled_cost(int(f), area_ratio)[0] for f, n in zip(fan, counts))
    return area + (net.identity_cells() * modelled_cost(1, area_ratio)[0] if clocked else 0.0)


def asic_section(graph: Graph, build_dir: Path, cmos: bool, timeout: float) -> list[str]:
    from .cmos import map_design, missing_tools

    mapping = threshold_logic(graph)
    summary, why_not = None, None
    if not cmos:
        why_not = "--no-synth"
    elif missing_tools():
        why_not = missing_tools()
    else:
        map_design(build_dir / "asic" / "cmos", timeout)
        summary = json.loads((build_dir / "asic" / "cmos" / "summary.json").read_text())
    modules = summary["modules"] if summary else {}
    paths = summary["critical_path"].get("layer_period_ns", {}) if summary else {}
    lines = ["## ASIC: CMOS standard cells vs threshold-logic gates", "",
             "Both fully unrolled (one vector per clock). CMOS: Yosys + ABC onto OSU 0.18 um cells "
             "(qflow-tech-osu018), per layer module with its registers"
             + (f"; not mapped ({why_not})." if why_not else "."),
             f"TL: {mapping.options}; TLG area and delay are MODELLED (FTL's -79.4% area / -40.3% delay applied to "
             "the OSU cost of the CMOS function + flip-flop each cell replaces; compiler/backends/asic/cells.py). "
             "Clocked cells: depth = pipeline stages, identity cells carry signals across skipped stages.", "",
             "| layer | CMOS area (um2) | CMOS cells | transistors | CMOS path (ns) | TLGs | depth (clocks) | "
             "identity cells | TL modelled area (um2) | TL / CMOS |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    kept = dict(mapping.cmos)
    binary_cmos, binary_ref, binary_tl = 0.0, 0.0, 0.0
    indices = sorted(set(kept) | {n.layer for n in mapping.layers})
    for index in indices:
        m = modules.get(f"bnnc_layer{index}")
        path = paths.get(f"bnnc_layer{index}")
        cm = [f"{m['area_um2']:,.0f}", f"{m['cells']:,}", f"{m['transistors']:,}", "-" if path is None else f"{path:.2f}"] \
            if m else ["-", "-", "-", "-"]
        net = mapping.network(index)
        if net is None:
            lines.append(f"| {index} | " + " | ".join(cm) + f" | CMOS: {kept[index].split(':')[0]} | | | | |")
            continue
        area = tl_area(net)
        ratio = f"{area / m['area_um2']:.2f}" if m else "-"
        lines.append(f"| {index} | " + " | ".join(cm) + f" | {net.gates:,} | {net.depth} | {net.identity_cells():,} | "
                     f"{area:,.0f} | {ratio} |")
        if m:
            binary_cmos += m["area_um2"]
            binary_tl += area
            binary_ref += tl_area(net, 1.0)
    lines.append("")
    if summary:
        top, cp = summary["top"], summary["critical_path"]
        delay = max(modelled_cost(int(f))[1] for n in mapping.layers for f in np.unique(n.gate_fan_in))
        lines += [f"Whole CMOS design: {top['area_um2']:,.0f} um2, {top['cells']:,} cells, {top['transistors']:,} "
                  f"transistors; critical path {cp['period_ns']} ns ({cp['fmax_mhz']} MHz; {cp['note']}) "
                  f"from {cp['from']} to {cp['to']}.",
                  f"TL (modelled): one clocked TLG per stage, {delay:.3f} ns per stage ({DELAY_RATIO:.3f} x the CMOS "
                  "reference, no wires); latency = depth clocks per layer.", ""]
        if binary_cmos:
            lines += ["Sweep of the assumed TLG cost (fraction of the CMOS logic + flip-flop it replaces; FTL's "
                      f"claim is {AREA_RATIO:.3f}), binary layers only:", "",
                      "| TLG cost / CMOS reference | TL area (um2) | CMOS area (um2) | TL smaller |", "|---:|---:|---:|---|"]
            for r in SWEEP:
                area = binary_ref * r
                lines.append(f"| {r:.3f} | {area:,.0f} | {binary_cmos:,.0f} | {'yes' if area < binary_cmos else 'no'} |")
            lines += ["", f"Break-even: TL is smaller while a TLG (with its share of identity cells) costs less than "
                      f"{binary_cmos / binary_ref:.3f} x its CMOS reference.", ""]
    return lines

