"""`bnnc report BUILD`: what channel reuse saves, per layer and in synthesized FPGA resources.

The build is compiled twice, with and without `channel-reuse` (same folding). Per layer the
report counts XNORs (popcount inputs) three ways: without reuse (C*K), with every child of the
pass's tree computed from its parent (the tree's ideal saving), and as the Verilog backend
builds it for this folding (the layer plan's Verilog reuse policy, backends/plan.py: reuse needs
all channels in one clock, PE = C, and with input chunks only children with |D| <= SIMD pay off). Both RTL variants are
synthesized
with Yosys' `synth_xilinx` (Debian's `yosys`), two runs at a time by default, each unit of the
top and the lanes of folded layers as modules of their own (`shared_cells`); without Yosys the
report says so and shows the counts only. The markdown goes to the terminal and to
BUILD/report.md, a bar chart of the per-layer counts to BUILD/report.svg.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from . import driver
from .diagnostics import BnncError
from .ir.ops import weight_kind
from .processes import run_tool

REUSE = "channel-reuse"
CELL_GROUPS = {"LUT": re.compile(r"LUT\d"), "FF": re.compile(r"FD\w*"), "CARRY": re.compile(r"CARRY\d"),
               "MUXF": re.compile(r"MUXF\d"), "DSP": re.compile(r"DSP\w*"), "BRAM": re.compile(r"RAMB\w*")}


class SynthTimeout(BnncError):
    pass


def yosys_version() -> str | None:
    yosys = shutil.which("yosys")
    if yosys is None:
        return None
    done = subprocess.run([yosys, "-V"], capture_output=True, text=True)
    return (done.stdout.strip().splitlines() or ["yosys"])[0]


def synthesize(rtl_dir: Path, top: str = "bnnc_top", timeout: float = 1800, shared: tuple[str, ...] = ()) -> dict | None:
    """Cell counts of synth_xilinx on an emitted design (its file list); None when Yosys is
    missing. Raises SynthTimeout after `timeout` seconds (Yosys and its ABC are stopped).
    `shared`: Yosys selections of cells kept out of flattening, so that their module is
    synthesized once per parameter set and counted once per instance (see `shared_cells`)."""
    from .backends.verilog import sources

    yosys = shutil.which("yosys")
    if yosys is None:
        return None
    files = " ".join(str(p) for p in sources(rtl_dir))
    stat = Path(rtl_dir).parent / f"yosys_stat_{top}.txt"
    keep = "".join(f"setattr -set keep_hierarchy 1 {cells}; " for cells in shared)
    script = (f"read_verilog {files}; hierarchy -top {top}; {keep}"
              f"synth_xilinx -flatten -noiopad -top {top}; tee -q -o {stat} stat -top {top}")
    try:
        done = run_tool([yosys, "-q", "-p", script], timeout, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        text=True)
    except subprocess.TimeoutExpired:
        raise SynthTimeout(f"yosys did not finish {top} in {rtl_dir} within {timeout:g} s") from None
    if done.returncode != 0:
        raise BnncError(f"yosys failed on {rtl_dir}: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")
    counts = dict.fromkeys(CELL_GROUPS, 0)
    totals = stat.read_text().split("=== design hierarchy ===")[-1]  # kept modules times their instances
    for line in totals.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            for group, pattern in CELL_GROUPS.items():
                if pattern.fullmatch(parts[0]):
                    counts[group] += int(parts[1])
    return counts


def shared_cells(design, top: str, lanes: bool = True) -> tuple[str, ...]:
    """Yosys selections of the cells that `synthesize` keeps as modules of their own.
    - The whole design's units (every stage of the top: windows, layers, pools, FIFOs): each is
      synthesized alone and the totals summed, as in an out-of-context flow. Units meet only at
      registered valid/ready ports, so little is lost, and ABC never sees the whole netlist at
      once (on digits_cnv it spent over 8 min on the flat design, 73 s this way).
    - The dot-product lanes of folded layers (more than one step per vector): their weights come
      from a ROM indexed by the step, so every lane of a layer is the same circuit and is
      synthesized once instead of once per lane, which is what makes the folded SFC's 256 lanes
      per layer tractable (at a price in LUTs: see `lanes`). A fully unrolled layer's
      lanes have constant weights and stay flat, so the XNORs with constants fold into LUTs.
      `lanes` False: folded lanes stay flat too (`bnnc explore --flat`). Slower, and smaller: the
      boundary keeps Yosys from merging a weight bit's ROM with its XNOR (SFC layer 1 at 16
      cycles/frame: 10,311 LUTs flat, 15,340 with the lanes kept)."""
    from .backends.hardware import Layer
    from .backends.verilog import TOP

    units = (f"{TOP}/stage*",) if top == TOP else ()
    return units + tuple(f"bnnc_layer{l.index}/lane*dot" for l in design.layers
                         if lanes and isinstance(l, Layer) and l.cycles > l.vectors and top in (TOP, f"bnnc_layer{l.index}"))


def _variant(compiled: driver.Compiled, with_reuse: bool) -> driver.Compiled:
    """The build compiled with or without channel-reuse at the build's folding, so that the
    comparison isolates reuse (and the tree keeps to that folding's channel groups)."""
    from .backends.hardware import Layer

    passes = [p.strip() for p in compiled.options.pipeline.split(",") if p.strip()]
    base = [p for p in passes if not p.startswith(REUSE)]
    pipeline = ",".join(base + ([next((p for p in passes if p.startswith(REUSE)), REUSE)] if with_reuse else []))
    if pipeline == compiled.options.pipeline:
        return compiled
    fold = {l.index: {"pe": l.pe, "simd": l.simd} for l in driver.hardware(compiled).layers if isinstance(l, Layer)}
    return driver.compile_model(compiled.source_path, replace(compiled.options, pipeline=pipeline, fold=fold))


@dataclass
class Row:
    """One layer of the table; the counts are None for a pool."""
    index: int
    kind: str
    shape: str
    fold: str
    cycles: int
    vectors: int = 1
    full: int | None = None  # XNORs per vector without reuse: C*K
    tree: int | None = None  # ... with every tree child built
    built: int | None = None  # ... as this folding's RTL computes them
    tree_weight: int | None = None
    depth: int | None = None
    clock: tuple[int, int] | None = None  # XNORs instantiated (per clock) without, with reuse
    note: str = ""  # why the RTL builds fewer children than the tree has


def _pool_row(layer, cycles: int) -> Row:
    modes = {int(m) for m in layer.modes}
    how = "max" if modes == {1} else "min" if modes == {-1} else "max/min"
    return Row(layer.index, f"pool {layer.kernel[0]}x{layer.kernel[1]} {how}",
               "x".join(map(str, layer.in_shape)) + " -> " + "x".join(map(str, layer.out_shape)), "-", cycles)


def _rows(plain, reused) -> tuple[list[Row], int, str | None]:
    """Per-layer rows, the pipeline interval and why the Verilog backend cannot build it (or None)."""
    from .backends.hardware import PoolLayer
    from .backends.plan import REUSE_POLICY, Mode, plan, verilog_unsupported
    from .backends.verilog_timing import timing

    reason = verilog_unsupported(plain)
    if reason is None:
        schedule = timing(plain)
        period = {u.layer.index: u.period for u in schedule.units if u.layer is not None}
        interval = schedule.interval
    else:  # no RTL: the layers' own estimate, as the manifest does
        period, interval = {l.index: l.cycles for l in plain.layers}, plain.cycles_per_frame
    rows = []
    for a, b in zip(plain.layers, reused.layers):
        if isinstance(a, PoolLayer):
            rows.append(_pool_row(a, period[a.index]))
            continue
        c, k = b.out_count, b.in_count
        p, policy = plan(b), REUSE_POLICY["verilog"]
        kind = "dense"
        if b.window is not None:
            kind = f"conv {b.window.kernel[0]}x{b.window.kernel[1]}, {b.vectors} px"
        if p.mode == Mode.INTEGER:
            kind += f", {b.in_elem} in (+-x terms)"
        elif p.mode == Mode.MULTIPLY:
            kind += f", {b.in_elem} in, {weight_kind(b.weights)} weights (x*w terms)"
        children = p.reuse(policy)
        built: int | None
        with_clock: int | None
        built, with_clock, note = p.terms_per_vector(policy), p.terms_per_clock(policy), children.note
        if reason is not None:
            built, with_clock, note = None, None, ""
        elif len(children.children) == p.tree_children:
            note = ""
        elif b.pe == c:
            note = (f"{len(children.children)} of {p.tree_children} tree children built "
                    f"(the others have |D| > SIMD = {b.simd})")
        tree = p.terms_per_vector(None)
        rows.append(Row(b.index, kind, f"{k} x {c}", f"{b.pe} x {b.simd}", period[b.index], b.vectors, c * k,
                        tree, built, tree - (c - p.tree_children) * k, p.tree_depth,
                        (plan(a).terms_per_clock(policy), with_clock) if with_clock is not None else None, note))
    return rows, interval, reason


def _n(value) -> str:
    return "-" if value is None else f"{value:,}"


def _with_saving(value, full) -> str:
    if value is None:
        return "-"
    return f"{value:,} ({(value - full) / full:+.0%})" if full and value != full else f"{value:,}"


def _table(rows: list[Row], interval: int) -> list[str]:
    # multi-bit layers count products, not XNORs: then the columns say so
    terms = "XNORs" if not any("x*w terms" in r.kind for r in rows) else "XNORs or x*w terms"
    lines = [f"| layer | kind | in x out | pe x simd | cycles/frame | {terms} | MST tree | built (RTL) | tree weight "
             f"| depth | {terms} per clock (without -> with) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        clock = f"{r.clock[0]:,} -> {r.clock[1]:,}" if r.clock else "-"
        lines.append(f"| {r.index} | {r.kind} | {r.shape} | {r.fold} | {r.cycles} | {_n(r.full)} | "
                     f"{_with_saving(r.tree, r.full)} | {_with_saving(r.built, r.full)} | {_n(r.tree_weight)} | "
                     f"{_n(r.depth)} | {clock} |")
    units = [r for r in rows if r.full is not None]

    def frame(attr):
        return None if any(getattr(r, attr) is None for r in units) else sum(getattr(r, attr) * r.vectors for r in units)

    full = frame("full")
    clocks = [r.clock for r in units if r.clock is not None]
    clock = f"{sum(c[0] for c in clocks):,} -> {sum(c[1] for c in clocks):,}" if len(clocks) == len(units) else "-"
    lines.append(f"| all, per frame | | | | {interval} | {full:,} | {_with_saving(frame('tree'), full)} | "
                 f"{_with_saving(frame('built'), full)} | | | {clock} |")
    return lines


LEGEND = """\
- XNORs: popcount inputs of one output vector without reuse, C*K (+-x terms for integer inputs,
  x*w products for ternary or multi-bit weights: the kind column says which).
  A conv layer computes one vector per output pixel (px); the `all` row counts per frame.
- MST tree: every child of the `channel-reuse` tree computed from its parent over the |D| inputs
  where they differ (the tree's ideal saving); tree weight: sum of |D|; depth: levels (1 = none).
- built (RTL): what the Verilog of this folding computes. It reuses a parent only when all
  channels are computed in the same clock (PE = C) and, with SIMD < K, only for |D| <= SIMD.
- XNORs per clock: XNORs (or +-x terms) instantiated; PE*SIMD without reuse, with it
  (PE - built children)*SIMD + their |D|.
- cycles/frame: each unit alone (Verilog timing model); `all`: the pipeline interval."""


def _svg(rows: list[Row], path: Path) -> None:
    """Horizontal bars per weight layer: XNORs per vector without reuse, with the tree, built."""
    units = [r for r in rows if r.full]
    top = max(r.full for r in units if r.full is not None)  # every one
    series = (("without reuse", "full", "#bbbbbb"), ("MST tree", "tree", "#6fa8dc"), ("built (RTL)", "built", "#1c4587"))
    bar, gap, left, width = 12, 10, 150, 420
    height = 30 + len(units) * (3 * bar + gap)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 130}" height="{height + 10}" '
           f'font-family="sans-serif" font-size="11">', '<text x="4" y="13">XNORs per output vector</text>']
    for i, (name, _, colour) in enumerate(series):
        out.append(f'<rect x="{left + 140 * i}" y="4" width="10" height="10" fill="{colour}"/>'
                   f'<text x="{left + 140 * i + 14}" y="13">{name}</text>')
    y = 26
    for r in units:
        out.append(f'<text x="4" y="{y + 2 * bar}">layer {r.index} ({r.shape})</text>')
        for _, attr, colour in series:
            value = getattr(r, attr)
            if value is not None:
                w = max(1, round(width * value / top))
                out.append(f'<rect x="{left}" y="{y}" width="{w}" height="{bar - 2}" fill="{colour}"/>'
                           f'<text x="{left + w + 4}" y="{y + bar - 3}">{value:,}</text>')
            y += bar
        y += gap
    path.write_text("\n".join(out + ["</svg>"]) + "\n")


def _synth_rows(build_dir: Path, designs: dict, timeout: float, layers: list[int] | None, jobs: int) -> list[str]:
    """Yosys on the whole design (layers None) or on each listed layer's MVU module alone, `jobs`
    runs at a time; a module whose RTL is the same with and without reuse is synthesized once."""
    from .backends.verilog import TOP, emit, render

    version = yosys_version()
    if version is None:
        return ["Yosys is not installed (`apt-get install yosys`): no synthesized resources."]
    texts = {name: render(design) for name, design in designs.items()}
    if layers is None:
        targets = [(TOP, "whole design", texts["without"] == texts["with"])]
    else:
        targets = [(f"bnnc_layer{i}", f"layer {i}", texts["without"][f"bnnc_layer{i}.v"] == texts["with"][f"bnnc_layer{i}.v"])
                   for i in layers]
    what = f"`-top {TOP}`, the whole design" if layers is None else "`-top bnnc_layerN`, each layer's matrix-vector unit alone"
    lines = [f"Synthesized with {version}: `synth_xilinx -flatten -noiopad`, {what}"
             + ("; each unit of the top synthesized alone and summed" if layers is None else "")
             + "; the lanes of folded layers (weights from a ROM, so all lanes alike) as one module, "
             "synthesized once and counted per lane.", "",
             "| RTL | " + " | ".join(CELL_GROUPS) + " | yosys time |", "|---|" + "---|" * (len(CELL_GROUPS) + 1)]
    rtl = {}
    for name, design in designs.items():
        rtl[name] = build_dir / "report" / f"{name}_reuse" / "rtl"
        shutil.rmtree(rtl[name], ignore_errors=True)
        emit(design, rtl[name])
    # one run per (module, variant); a module with the same RTL in both variants runs once
    title = {(top, name): f"{label}, {'same RTL with and without' if same else name} reuse"
           for top, label, same in targets for name in (("without",) if same else ("without", "with"))}

    def run(key: tuple[str, str]) -> tuple[dict | None, float]:
        top, name = key
        driver.progress(f"yosys synth_xilinx: {title[key]} (timeout {timeout:g} s)...")
        start = time.perf_counter()
        try:
            return synthesize(rtl[name], top, timeout, shared_cells(designs[name], top)), time.perf_counter() - start
        except SynthTimeout:
            return None, time.perf_counter() - start

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:  # each run is its own Yosys process
        results = dict(zip(title, pool.map(run, title)))  # rows in a fixed order, whatever finished first
    summary = []
    module_label = {top: label for top, label, _ in targets}
    for (top, name), text in title.items():
        counts, seconds = results[top, name]
        if counts is None:
            lines.append(f"| {text} | did not finish within {timeout:g} s |" + " |" * len(CELL_GROUPS))
        else:
            lines.append(f"| {text} | " + " | ".join(f"{counts[g]:,}" for g in CELL_GROUPS) + f" | {seconds:.0f} s |")
        without = results[top, "without"][0]
        if name == "with" and counts and without and without["LUT"]:
            lut0, lut1 = without["LUT"], counts["LUT"]
            summary.append(f"{module_label[top]}: {lut1:,} LUTs with reuse, {lut0:,} without ({(lut1 - lut0) / lut0:+.0%})")
    lines.append("")
    if summary:
        lines += ["; ".join(summary) + ".", ""]
    if any(same for *_, same in targets):
        lines.append("Same RTL: this folding builds no reuse child there, so it was synthesized once.")
    return lines


def report(build_dir: Path, synth: bool = True, timeout: float = 1800, layers: list[int] | Literal["all"] | None = None,
           jobs: int = 2) -> str:
    """The report's markdown (also written to BUILD/report.md). `layers` ("all" or indices):
    synthesize these layers' matrix-vector modules alone instead of the whole design."""
    build_dir = Path(build_dir)
    compiled = driver.open_build(build_dir)
    plain = _variant(compiled, False)
    designs = {"without": driver.hardware(plain), "with": driver.hardware(_variant(plain, True))}
    rows, interval, reason = _rows(designs["without"], designs["with"])
    weight_layers = [r.index for r in rows if r.full is not None]
    selected = weight_layers if layers == "all" else layers or None
    if selected is not None and not set(selected) <= set(weight_layers):
        raise BnncError(f"--synth-layers: the weight layers are {weight_layers}, "
                        f"not {sorted(set(selected) - set(weight_layers))}")
    fold = compiled.options.fold if isinstance(compiled.options.fold, str) else "the build's folding file"
    try:
        name = json.loads((build_dir / "manifest.json").read_text())["model"]
    except (OSError, ValueError, KeyError):
        name = build_dir.name
    lines = [f"# bnnc report: {name} ({build_dir})", "",
             f"Folding: {fold}. Pipeline interval {interval} cycles/frame"
             + (" (Verilog timing model)." if reason is None else " (the layers' own estimate)."), ""]
    lines += _table(rows, interval)
    lines += ["", LEGEND, ""]
    notes = [f"layer {r.index}: {r.note}" for r in rows if r.note]
    if notes:
        lines += ["Reuse in the tree that this folding's RTL does not build:"] + [f"- {n}" for n in notes] + [""]
    if reason is not None:
        lines += [f"The Verilog backend cannot build this design ({reason}): no RTL counts, no synthesis.", ""]
    elif synth:
        synthesized = _synth_rows(build_dir, designs, timeout, selected, jobs)
        lines += ["## Synthesized resources (Yosys synth_xilinx)", ""] + synthesized + [""]
    _svg(rows, build_dir / "report.svg")
    lines += ["![XNORs per layer](report.svg)", ""]
    if (build_dir / "asic").is_dir():
        from .backends.asic.report import asic_section
        lines += asic_section(compiled.graph, build_dir, synth, timeout)
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines))
    (build_dir / "report.md").write_text(text)
    return text
