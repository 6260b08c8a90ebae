"""`bnnc report BUILD`: what channel reuse saves, per layer and in synthesized FPGA resources.

The build is compiled twice, with and without `channel-reuse` (same folding), both RTL variants
are synthesized with Yosys' `synth_xilinx`, and one markdown table compares them. Yosys comes
from Debian (`apt-get install yosys`); without it the report says so and shows the counts only.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

from . import driver
from .diagnostics import BnncError
from .passes.channel_reuse import tree_stats

REUSE = "channel-reuse"
CELL_GROUPS = {"LUT": re.compile(r"LUT\d"), "FF": re.compile(r"FD\w*"), "CARRY": re.compile(r"CARRY\d"),
               "MUXF": re.compile(r"MUXF\d"), "DSP": re.compile(r"DSP\w*"), "BRAM": re.compile(r"RAMB\w*")}


def synthesize(rtl_dir: Path, top: str = "bnnc_top", timeout: int = 1800) -> dict | None:
    """Cell counts of synth_xilinx on every .v file in rtl_dir; None when Yosys is missing."""
    yosys = shutil.which("yosys")
    if yosys is None:
        return None
    files = " ".join(str(p) for p in sorted(Path(rtl_dir).glob("*.v")))
    stat = Path(rtl_dir).parent / "yosys_stat.txt"
    script = f"read_verilog {files}; synth_xilinx -flatten -noiopad -top {top}; tee -q -o {stat} stat"
    done = subprocess.run([yosys, "-q", "-p", script], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise BnncError(f"yosys failed on {rtl_dir}: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")
    counts = dict.fromkeys(CELL_GROUPS, 0)
    for line in stat.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            for group, pattern in CELL_GROUPS.items():
                if pattern.fullmatch(parts[0]):
                    counts[group] += int(parts[1])
    return counts


def _variant(compiled: driver.Compiled, with_reuse: bool) -> driver.Compiled:
    passes = [p.strip() for p in compiled.options.pipeline.split(",") if p.strip()]
    base = [p for p in passes if not p.startswith(REUSE)]
    pipeline = ",".join(base + ([next((p for p in passes if p.startswith(REUSE)), REUSE)] if with_reuse else []))
    if pipeline == compiled.options.pipeline:
        return compiled
    other = driver.compile_model(compiled.source_path, replace(compiled.options, pipeline=pipeline))
    if compiled.design is not None:  # the same folding, so the comparison isolates reuse
        from .backends.hardware import lower
        other.design = lower(other.graph, {l.index: {"pe": l.pe, "simd": l.simd} for l in compiled.design.layers})
    return other


def report(build_dir: Path, synth: bool = True) -> str:
    from .backends.verilog import emit

    compiled = driver.open_build(build_dir)
    variants = {"without": _variant(compiled, False), "with": _variant(compiled, True)}
    driver.hardware(variants["without"])
    variants["with"] = _variant(variants["without"], True)
    designs = {k: driver.hardware(v) for k, v in variants.items()}
    lines = [f"# bnnc report: {compiled.source.name}", "",
             "| layer | in x out | pe x simd | cycles/frame | XNORs (popcount bits) | with reuse | saved | tree weight | depth |",
             "|---|---|---|---|---|---|---|---|---|"]
    total_before = total_after = 0
    for plain, reused in zip(designs["without"].layers, designs["with"].layers):
        s = tree_stats(reused.weights, getattr(reused, "reuse", None))
        total_before += s["xnor_before"]
        total_after += s["xnor_after"]
        lines.append(f"| {plain.index} | {plain.in_count} x {plain.out_count} | {plain.pe} x {plain.simd} | "
                     f"{plain.cycles} | {s['xnor_before']} | {s['xnor_after']} | "
                     f"{1 - s['xnor_after'] / s['xnor_before']:.0%} | {s['tree_weight']} | {s['depth']} |")
    lines.append(f"| all | | | {designs['without'].cycles_per_frame} | {total_before} | {total_after} | "
                 f"{1 - total_after / total_before:.0%} | | |")
    lines.append("")
    if synth:
        rows = {}
        for name, design in designs.items():
            rtl = Path(build_dir) / "report" / f"{name}_reuse" / "rtl"
            shutil.rmtree(rtl, ignore_errors=True)
            emit(design, rtl)
            driver.progress(f"synthesizing the RTL {name} reuse with yosys synth_xilinx...")
            rows[name] = synthesize(rtl)
        if rows["without"] is None:
            lines.append("Yosys is not installed (`apt-get install yosys`): no synthesized resources.")
        else:
            lines += ["| synth_xilinx (Yosys) | " + " | ".join(CELL_GROUPS) + " |", "|---|" + "---|" * len(CELL_GROUPS)]
            for name in ("without", "with"):
                lines.append(f"| {name} reuse | " + " | ".join(str(rows[name][g]) for g in CELL_GROUPS) + " |")
            lut0, lut1 = rows["without"]["LUT"], rows["with"]["LUT"]
            if lut0:
                lines += ["", f"LUTs with reuse: {lut1} of {lut0} ({lut1 / lut0:.0%})."]
    text = "\n".join(lines) + "\n"
    (Path(build_dir) / "report.md").write_text(text)
    return text
