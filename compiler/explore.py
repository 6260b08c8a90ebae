"""`bnnc explore MODEL`: sweep foldings, with and without channel reuse, measure every design, and
keep the Pareto front of size against throughput.

A point is one folding: every weight layer folded down to a target number of cycles per frame with
the smallest unit that meets it (`hardware.auto_folding(..., interval=T)`, the rule `--fold auto`
uses for its own interval), compiled with the model's pipeline, and again with `channel-reuse`
(which folds to PE = C where that costs nothing, so that reuse becomes hardware) when some layer
has +-1 weights. Cycles per frame and latency are the Verilog timing model's (the manifest's). Size
is the LUT count of Yosys `synth_xilinx` exactly as `bnnc report` synthesizes (the whole design,
or with `layers` each weight layer's unit alone, summed), or with synth=False the XNORs (terms)
instantiated per clock, a count and not LUTs. Designs with the same RTL are measured once; a
reuse point whose RTL is the plain one (no child built at that folding) is not listed twice.

Synthesis jobs run on a local process pool or a Dask cluster (workers.py); the compiles, cheap and
deterministic, run here. The outputs (explore.csv, explore.md, explore.svg) hold no timings, so
equal measurements give equal files wherever they ran.
"""
from __future__ import annotations

import csv
import hashlib
import io
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import driver
from .backends.hardware import Design
from .diagnostics import BnncError, progress
from .report import CELL_GROUPS, REUSE, SynthTimeout, shared_cells, synthesize

PLAIN, WITH_REUSE = "plain", "reuse"


@dataclass
class Point:
    variant: str  # PLAIN or WITH_REUSE
    target: int  # cycles per frame asked for
    fold: dict[int, dict]  # {layer: {pe, simd}}
    cycles: int  # cycles per frame (timing model)
    latency: int | None
    xnors: int  # XNORs (or +-x / x*w terms) instantiated per clock
    rtl: str  # hash of the RTL: equal designs are measured once
    cells: dict[str, int] | None = None  # Yosys cell groups (CELL_GROUPS); None: not measured or timed out
    pareto: bool = False
    jobs: list = field(default_factory=list)  # (rtl, top) synthesis jobs that sum to this point
    files: dict[str, str] | None = field(default=None, repr=False)  # the RTL, until the jobs are submitted
    design: Design | None = field(default=None, repr=False)  # likewise

    def fold_text(self) -> str:
        return " ".join(f"{i}:{f['pe']}x{f['simd']}" for i, f in sorted(self.fold.items()))


def synth_job(files: dict[str, str], top: str, shared: tuple[str, ...], timeout: float) -> tuple[dict | None, float]:
    """One Yosys run, on whichever machine runs it: the RTL written to a scratch folder, then
    `report.synthesize`. (cell counts or None after a timeout, seconds)."""
    from .backends.verilog import FILELIST

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bnnc-explore-") as tmp:
        rtl = Path(tmp) / "rtl"
        rtl.mkdir()
        for name, text in files.items():
            (rtl / name).write_text(text, encoding="utf-8")
        (rtl / FILELIST).write_text("".join(f"{name}\n" for name in files))
        try:
            counts = synthesize(rtl, top, timeout, shared)
        except SynthTimeout:
            return None, time.perf_counter() - start
    if counts is None:
        raise BnncError("yosys is not installed where the synthesis job ran (apt-get install yosys)")
    return counts, time.perf_counter() - start


def default_targets(auto_interval: int, points: int) -> list[int]:
    """The auto folding's interval and `points - 1` doublings of it."""
    return [auto_interval << i for i in range(points)]


def plan_points(model: str, options: driver.Options, targets: list[int] | None, reuse: bool | None,
                points: int = 7) -> list[Point]:
    """Compile every (variant, target); `targets` None: the auto folding's interval and its
    doublings (`points` in all); `reuse` None: with a reuse variant when the model has +-1 weight
    layers."""
    from .backends.hardware import Layer, auto_folding
    from .backends.manifest import design_manifest
    from .backends.plan import REUSE_POLICY, plan, verilog_unsupported
    from .backends.verilog import render
    from .passes.channel_reuse import skipped_layers

    passes = [p.strip() for p in options.pipeline.split(",") if p.strip()]
    base = ",".join(p for p in passes if not p.startswith(REUSE))
    reuse_pass = next((p for p in passes if p.startswith(REUSE)), REUSE)
    baseline = driver.compile_model(model, replace(options, pipeline=base, fold="auto"))
    design = driver.hardware(baseline)
    reason = verilog_unsupported(design)
    if reason is not None:
        raise BnncError(f"{model}: the Verilog backend cannot build this model ({reason}), so there is nothing to explore")
    if targets is None:
        targets = default_targets(design_manifest(design)["cycles_per_frame"], points)
    weight_layers = [layer for layer in design.layers if isinstance(layer, Layer)]
    if reuse is None:
        reuse = len(skipped_layers(baseline.graph)) < len(weight_layers)
    variants = [(PLAIN, base)] + ([(WITH_REUSE, f"{base},{reuse_pass}")] if reuse else [])
    found: list[Point] = []
    seen: set = set()
    plain_rtl: set[str] = set()
    for variant, pipeline in variants:
        for target in targets:
            fold = auto_folding(list(design.layers), reuse=variant == WITH_REUSE, interval=target)
            key = (variant, tuple(sorted((i, f["pe"], f["simd"]) for i, f in fold.items())))
            if key in seen:  # a slower target that the same units already meet
                continue
            seen.add(key)
            compiled = driver.compile_model(model, replace(options, pipeline=pipeline, fold=fold))
            hw = driver.hardware(compiled)
            files = render(hw)
            digest = hashlib.sha256("".join(f"{n}\0{t}\0" for n, t in files.items()).encode()).hexdigest()
            if variant == PLAIN:
                plain_rtl.add(digest)
            elif digest in plain_rtl:
                continue  # no reuse child at this folding: the plain design again
            timing = design_manifest(hw)
            xnors = sum(plan(layer).terms_per_clock(REUSE_POLICY["verilog"]) for layer in hw.layers
                        if isinstance(layer, Layer))
            point = Point(variant, target, fold, timing["cycles_per_frame"], timing["latency_cycles"], xnors, digest,
                          files=files, design=hw)
            found.append(point)
            progress(f"explore: {variant} at {target} cycles/frame -> {point.cycles} cycles/frame, "
                     f"{xnors:,} XNORs per clock ({point.fold_text()})")
    return found


def measure(points: list[Point], pool, layers: bool, timeout: float, flat: bool = False) -> None:
    """Synthesize every distinct RTL (whole design, or with `layers` each weight layer's unit
    alone) on `pool`, and give every point its summed cell counts. `flat`: the lanes of folded
    layers are synthesized with their layer, not once as a module of their own (report.shared_cells)."""
    from .backends.hardware import Layer
    from .backends.verilog import TOP

    jobs: dict[tuple[str, str], tuple] = {}
    for p in points:
        design = p.design
        assert design is not None  # set by plan_points
        tops = [f"bnnc_layer{l.index}" for l in design.layers if isinstance(l, Layer)] if layers else [TOP]
        for top in tops:
            p.jobs.append((p.rtl, top))
            jobs.setdefault((p.rtl, top), (p.files, top, shared_cells(design, top, lanes=not flat), timeout))
    progress(f"explore: {len(jobs)} Yosys run{'s' if len(jobs) != 1 else ''} for {len(points)} "
             f"design{'s' if len(points) != 1 else ''}...")
    keys = list(jobs)
    futures = [pool.submit(synth_job, *jobs[k]) for k in keys]
    results = {}
    try:
        for key, future in zip(keys, futures):
            counts, seconds = future.result()
            results[key] = counts
            progress(f"explore: yosys {key[1]} of design {key[0][:8]}: "
                     + (f"{counts['LUT']:,} LUTs" if counts else f"did not finish within {timeout:g} s") + f" ({seconds:.0f} s)")
    except BaseException:  # a failed job or Ctrl-C: the jobs not yet started need not run
        for future in futures:
            future.cancel()
        raise
    for p in points:
        parts = [results[k] for k in p.jobs]
        p.cells = None if any(c is None for c in parts) else {g: sum(c[g] for c in parts if c) for g in CELL_GROUPS}


def cost(point: Point, synth: bool) -> int | None:
    if not synth:
        return point.xnors
    return point.cells["LUT"] if point.cells is not None else None


def mark_pareto(points: list[Point], synth: bool) -> None:
    """A point is on the front when no other measured point is as small and as fast, and
    smaller or faster."""
    for p in points:
        c = cost(p, synth)
        p.pareto = c is not None and not any(
            cq <= c and q.cycles <= p.cycles and (cq < c or q.cycles < p.cycles)
            for q in points if (cq := cost(q, synth)) is not None)


def frames_per_s(point: Point, clock_mhz: float) -> float:
    return clock_mhz * 1e6 / point.cycles


def columns(synth: bool) -> list[str]:
    cells = [*CELL_GROUPS, "lut_x_cycles"] if synth else []
    return ["variant", "target_cycles", "cycles_per_frame", "frames_per_s", "latency_cycles", "xnors_per_clock",
            *cells, "pareto", "folding"]


def rows(points: list[Point], clock_mhz: float, synth: bool) -> list[list]:
    """One row per design, fastest first; cells left empty where a run timed out."""
    out = []
    for p in sorted(points, key=lambda p: (p.cycles, p.variant, p.target)):
        cells = [p.cells[g] if p.cells is not None else "" for g in CELL_GROUPS] if synth else []
        if synth:
            cells.append(p.cells["LUT"] * p.cycles if p.cells is not None else "")
        out.append([p.variant, p.target, p.cycles, round(frames_per_s(p, clock_mhz)), p.latency, p.xnors, *cells,
                    "yes" if p.pareto else "", p.fold_text()])
    return out


def csv_text(points: list[Point], clock_mhz: float, synth: bool) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns(synth))
    writer.writerows(rows(points, clock_mhz, synth))
    return buf.getvalue()


def markdown(model: str, points: list[Point], clock_mhz: float, synth: bool, layers: bool, flat: bool,
             timeout: float) -> str:
    names = columns(synth)

    def table(selected: list[list]) -> list[str]:
        lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
        for r in selected:
            lines.append("| " + " | ".join(f"{v:,}" if isinstance(v, int) else str(v) for v in r) + " |")
        return lines

    every = rows(points, clock_mhz, synth)
    front = [r for r in every if r[names.index("pareto")] == "yes"]
    if synth:
        how = ("Yosys `synth_xilinx` as `bnnc report` runs it, " +
               ("each weight layer's unit alone, summed (no FIFOs or top-level glue)" if layers else "the whole design")
               + (", folded layers' lanes flat with their layer" if flat else
                  ", each folded layer's lane synthesized once as a module and counted per lane")
               + f"; LUTs are the size axis (timeout {timeout:g} s per run: a run that timed out leaves its cells empty)")
    else:
        how = "no synthesis: the size axis is XNORs (terms) instantiated per clock, a count, not LUTs"
    lines = [f"# bnnc explore: {model}", "",
             f"Frames per second at {clock_mhz:g} MHz (cycles per frame from the Verilog timing model). {how}.",
             "Folding: layer:PE x SIMD.", "", f"## Pareto front ({len(front)} of {len(every)} designs)", ""]
    lines += table(front) + ["", "## Every design", ""] + table(every) + ["", "![Pareto front](explore.svg)", ""]
    return "\n".join(lines)


def explore(model: str, out_dir: Path, options: driver.Options, targets: list[int] | None = None, points: int = 7,
            reuse: bool | None = None, synth: bool = True, layers: bool = False, flat: bool = False, jobs: int = 2,
            cluster: str | None = None, cluster_timeout: float = 10, timeout: float = 1800,
            clock_mhz: float = 100.0) -> list[Point]:
    """Run the sweep and write out_dir/explore.{csv,md,svg}; returns the points."""
    from .explore_svg import svg
    from .workers import executor

    # the pool first: a bad --jobs or an unreachable cluster fails before any work
    with executor(jobs, cluster, cluster_timeout) if synth else nullcontext((None, "")) as (pool, where):
        found = plan_points(model, options, targets, reuse, points)
        if synth:
            progress(f"explore: synthesizing on {where}")
            measure(found, pool, layers, timeout, flat)
    for p in found:  # the RTL and designs were only needed by the jobs
        p.files = p.design = None
    mark_pareto(found, synth)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "explore.csv").write_text(csv_text(found, clock_mhz, synth))
    (out_dir / "explore.md").write_text(markdown(Path(model).name, found, clock_mhz, synth, layers, flat, timeout))
    (out_dir / "explore.svg").write_text(svg(found, [cost(p, synth) for p in found], clock_mhz,
                                             "LUTs (Yosys synth_xilinx)" if synth else "XNORs per clock (count)"))
    return found
