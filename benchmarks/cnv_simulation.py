"""FINN CNV topology through the Verilog backend and Verilator: does the simulated
hardware run at the manifest's cycles per frame and latency, and give the interpreter's outputs?

For each folding (`--fold auto` and/or folding files; default: auto and FINN's own CNV folding,
benchmarks/cnv_finn_folding.json, the PE/SIMD of FINN's cnv_end2end_example notebook), this
exports `finn_cnv` (32x32x3, unpadded 3x3 convs 64, 64, pool, 128, 128, pool, 256, 256; dense
512, 512, 10; random weights), compiles it to Verilog + manifest (`bnnc compile` in-process),
and streams the same F random frames through the RTL `--runs` times with `sim/runner.simulate`:
a checked run (random input gaps and output back-pressure; every output compared with the
interpreter inside the bench) and then a timing run (F frames back to back, out_ready high)
whose second half gives the steady-state cycles per frame and whose first frame gives the
latency. F defaults to the smallest even count >= 8 whose measured half starts while input is
still streaming (F/2 >= ceil(latency / cycles_per_frame) + 1).

Prints per folding: the Verilator build (wall, its verilate part, peak child RSS), simulation wall
and CPU time per run (median), frames and clocks simulated per second of wall time (both phases:
2F frames), manifest cycles_per_frame / latency_cycles against the measured ones, and whether the
outputs equal the interpreter's. The Verilator build happens once per folding (the first run)
and is cached for the other runs. Exits 1 if any measured figure differs from the manifest or
any output differs (the bench's own check raises SimulationError, reported the same way).

--engine picks the bench's driver (sim/runner.simulate): native (default; the bench compiled
with a C++ main) or cocotb, or both (--engine native --engine cocotb).

Simulation speed under cocotb, as measured while cocotb's builds kept its default --public-flat-rw
(every signal writable through VPI; sim/runner.py has turned it off since, not re-measured here
on the CNV): Verilator re-evaluates all combinational logic -- here mostly the popcount trees of
bnnc_dot -- in its "ico" region on every eval(), i.e. at every clock edge cocotb drives: 71% of
the simulator's samples under `perf` for the auto folding. The cost per clock grows with the
XNORs per clock: about 1.9 k clocks per CPU second for auto (26,692 XNORs), 20 k for the FINN
folding (2,225 XNORs); per frame the two cost about the same CPU time. The same bench and RTL
in a plain Verilator C++ harness (no VPI: the native engine) ran the auto design at about 10 k
clocks per CPU second.

Usage: python benchmarks/cnv_simulation.py [--fold auto|FILE.json ...] [--frames F] [--runs R]
       [--engine native|cocotb ...] [--work DIR]   (DIR keeps model, builds and Verilator builds; a rerun reuses them)
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bnnc import driver  # noqa: E402

FINN_FOLDING = ROOT / "benchmarks" / "cnv_finn_folding.json"


def default_frames(cycles_per_frame: int, latency: int) -> int:
    """Enough frames that the timing run's measured half (frames F/2+1 .. F) starts while the
    pipeline is still full: the last frame enters (F-1)*T clocks after the first, frame F/2+1
    leaves latency + (F/2)*T after it."""
    half = max(4, math.ceil(latency / cycles_per_frame) + 1)
    return 2 * half


def sim_clocks(run_dir: Path) -> int:
    """Clocks the bench ran (reset, checked run, timing run), from its results.txt."""
    results = dict(line.split(" ", 1) for line in (run_dir / "results.txt").read_text().splitlines())
    return int(results["clocks"])


def verilate_seconds(build_log: Path) -> float | None:
    """Verilator's own (Verilog -> C++) wall time; the rest of the build is the C++ compile."""
    m = re.search(r"Verilator: Walltime ([0-9.]+) s", build_log.read_text(errors="replace")) if build_log.is_file() else None
    return float(m.group(1)) if m else None


def child_cpu() -> float:
    t = os.times()
    return t.children_user + t.children_system


def bench_folding(model: Path, fold: str, work: Path, frames: int, runs: int, seed: int, engine: str) -> bool:
    label = "auto" if fold == "auto" else Path(fold).stem
    out = work / label
    print(f"\n== folding: {fold}, engine: {engine}")

    start = time.perf_counter()
    compiled = driver.compile_model(model, driver.Options(fold=fold, targets=("verilog",)))
    driver.write_build(compiled, out / "build", model)
    compile_s = time.perf_counter() - start
    manifest = json.loads((out / "build" / "manifest.json").read_text())["hardware"]
    if not manifest["rtl"]["supported"]:
        print(f"the Verilog backend cannot build this design: {manifest['rtl']['reason']}")
        return False
    design = driver.hardware(compiled)
    cpf, lat = manifest["cycles_per_frame"], manifest["latency_cycles"]
    xnors = manifest["resources"]["xnors"]
    folds = ", ".join(f"{l['index']}:{l['pe']}x{l['simd']}" for l in manifest["layers"] if "pe" in l)
    frames = frames or default_frames(cpf, lat)
    print(f"compile to Verilog + manifest: {compile_s:.2f} s; layer:PExSIMD {folds}; {xnors} XNORs per clock")
    print(f"manifest: cycles_per_frame {cpf}, latency_cycles {lat}, FIFOs "
          f"{[(f['after_layer'], f['depth']) for f in manifest['pipeline']['fifos']]}; simulating {frames} frames "
          f"x {runs} run(s)")

    x = driver.sample_inputs(compiled.source, frames, seed=seed)
    graph = compiled.graph
    env = driver.interp.run(graph, {graph.inputs[0][0]: x}, trace=True)
    codes = design.serialize(env[driver.device_input(graph)])
    expected = env[driver.device_output(graph)].reshape(frames, -1)

    runner = driver._sim_runner()
    run_dir = out / "sim" / f"verilator-{engine}" / "run"  # where runner.simulate runs for build_dir=out / "sim"
    rows, ok = [], True
    for i in range(runs):
        t0, wall0, cpu0 = time.time(), time.perf_counter(), child_cpu()
        try:
            result = runner.simulate(out / "build" / "rtl", codes, design, expected, build_dir=out / "sim",
                                     seed=seed + i, timing_frames=frames, engine=engine)
        except runner.SimulationError as exc:
            print(f"run {i}: SIMULATION FAILED: {exc}")
            return False
        wall, cpu = time.perf_counter() - wall0, child_cpu() - cpu0
        build = None
        if result.built:
            build = (result.build / "bnnc_build.sha256").stat().st_mtime - t0
            # the native build runs the C++ compile inside Verilator (--build): no separate verilate time
            part = (f" (verilate {verilate_seconds(result.build / 'build.log') or float('nan'):.1f} s, the rest C++)"
                    if engine == "cocotb" else "")
            print(f"Verilator build: {build:.1f} s wall{part}, "
                  f"peak child RSS so far {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f} MB")
        elif i == 0:
            print(f"Verilator build: cached in {result.build}")
        sim_wall = wall - (build or 0.0)
        equal = bool(np.array_equal(result.outputs, expected))
        row = dict(wall=sim_wall, cpu=cpu, clocks=sim_clocks(run_dir), checked=result.cycles,
                   cpf=result.cycles_per_frame_measured, lat=result.latency_measured, equal=equal,
                   build=build is not None)
        rows.append(row)
        match = row["cpf"] == cpf and row["lat"] == lat
        ok = ok and match and equal
        print(f"run {i} (seed {seed + i}): sim {sim_wall:.1f} s wall{' (after the build)' if build else ''}, "
              f"{cpu:.1f} s CPU{' incl. build' if build else ''}; {row['clocks']} clocks ({result.cycles} in the checked run); "
              f"measured cycles/frame {row['cpf']}, latency {row['lat']}; outputs = interpreter: {equal}"
              f"{'' if match else '  <-- MISMATCH with the manifest'}")

    sims = [r for r in rows if not r["build"]] or rows
    wall = statistics.median(r["wall"] for r in sims)
    cpu = statistics.median(r["cpu"] for r in sims)
    clocks = statistics.median(r["clocks"] for r in sims)
    print(f"median sim over {len(sims)} run(s){' without a build' if len(sims) < len(rows) else ''}: "
          f"{wall:.1f} s wall, {cpu:.1f} s CPU; {2 * frames / max(wall, 1e-9):.2f} frames/s and "
          f"{clocks / max(wall, 1e-9):.0f} clocks/s "
          f"of wall time ({clocks / max(cpu, 1e-9):.0f} clocks/s of CPU time); "
          f"{2 * frames} frames per run ({frames} checked + {frames} timed)")
    measured_cpf = sorted({r["cpf"] for r in rows})
    measured_lat = sorted({r["lat"] for r in rows})
    print(f"cycles_per_frame: manifest {cpf}, measured {', '.join(map(str, measured_cpf))}  "
          f"{'OK' if measured_cpf == [cpf] else 'MISMATCH'}")
    print(f"latency_cycles:   manifest {lat}, measured {', '.join(map(str, measured_lat))}  "
          f"{'OK' if measured_lat == [lat] else 'MISMATCH'}")
    print(f"outputs equal the interpreter in {sum(r['equal'] for r in rows)}/{len(rows)} run(s) "
          f"({frames} frames each)  {'OK' if all(r['equal'] for r in rows) else 'MISMATCH'}")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fold", action="append", help="auto or a folding JSON file; repeatable "
                    f"(default: auto and {FINN_FOLDING.relative_to(ROOT)})")
    ap.add_argument("--frames", type=int, default=0, help="frames per run (default: enough for steady state)")
    ap.add_argument("--runs", type=int, default=3, help="simulation runs per folding (the first builds)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--engine", action="append", choices=["native", "cocotb"],
                    help="the bench's driver; repeatable (default: native)")
    ap.add_argument("--work", type=Path, help="keep model, builds and Verilator builds here (default: a temp folder)")
    args = ap.parse_args()
    folds = args.fold or ["auto", str(FINN_FOLDING)]
    if args.frames and args.frames < 4:
        ap.error("--frames must be at least 4 (the timing run measures over its second half)")

    with tempfile.TemporaryDirectory() as tmp:
        work = (args.work or Path(tmp)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        os.environ[driver._sim_runner().CACHE_VARIABLE] = str(work / "sim-cache")  # builds stay in DIR
        model = work / "cnv.onnx"
        if not model.is_file():
            from tests.models import conv_exporters
            start = time.perf_counter()
            conv_exporters.finn_cnv(model)
            print(f"exported finn_cnv in {time.perf_counter() - start:.1f} s")
        results = {(fold, engine): bench_folding(model, fold, work, args.frames, args.runs, args.seed, engine)
                   for fold in folds for engine in args.engine or ["native"]}
    print()
    for (fold, engine), ok in results.items():
        print(f"{fold} ({engine}): {'OK: measured = manifest, outputs = interpreter' if ok else 'FAILED'}")
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
