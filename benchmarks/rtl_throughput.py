"""RTL simulation throughput of both bench drivers: cocotb (Verilator with VPI) and the compiled
bench (sim/native.py: the same bnnc_bench.v around a C++ main), on the digits MLP and CNV and
the SFC: the figures behind sim/runner.py's NATIVE_FROM_CLOCKS.

For each model and engine: the Verilator build (wall and CPU seconds, cold: an empty build
cache, so the first cocotb and native rows also compile Verilator's runtime), then RUNS
simulations of VECTORS vectors with the build cached: median vectors per second of wall time and
the median CPU seconds of the simulator process, also per clock of the checked run (us/clock;
the timing run adds a little, and cocotb's start-up dominates short runs). Both engines run
the same checks (random input gaps and back-pressure, every output compared inside the bench,
cycles/frame and latency measured on an idle pipeline), and this script also checks that both
return the same outputs and measurements.
The machine may be shared: CPU seconds are the steadier figure.

Usage: python benchmarks/rtl_throughput.py [--vectors N] [--runs R] [--engines cocotb,native]
"""
from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bnnc import driver  # noqa: E402
from bnnc.backends.verilog import emit  # noqa: E402
from bnnc.backends.verilog.top import cycles_per_frame  # noqa: E402


def models(folder: Path) -> dict[str, Path]:
    from tests.models import exporters
    return {
        "digits MLP 64-64-64-64-10": ROOT / "examples" / "digits_mlp" / "digits_mlp.onnx",
        "digits CNV (examples/)": ROOT / "examples" / "digits_cnv" / "digits_cnv.onnx",
        "SFC 784-256-256-256-10": Path(exporters.brevitas_mlp(folder / "sfc.onnx", sizes=(256, 256, 256, 10), in_features=784)),
    }


def child_cpu() -> float:
    t = os.times()
    return t.children_user + t.children_system


def timed(call):
    wall, cpu = time.perf_counter(), child_cpu()
    result = call()
    return result, time.perf_counter() - wall, child_cpu() - cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vectors", type=int, default=400)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--engines", default="cocotb,native")
    args = ap.parse_args()
    engines = args.engines.split(",")
    print(f"{args.vectors} vectors per run, median of {args.runs} runs; CPU = the simulator's (child) CPU seconds")
    print(f"{'model':<27} {'engine':<7} {'build s':>8} {'build CPU':>9} {'vectors/s':>10} {'sim CPU s':>9} "
          f"{'us/clock':>8} {'cycles/frame':>13} {'measured':>9} {'latency':>8}")
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ[driver._sim_runner().CACHE_VARIABLE] = str(tmp / "cache")  # cold builds
        for name, path in models(tmp).items():
            compiled = driver.compile_model(path, driver.Options())
            design = driver.hardware(compiled)
            x = driver.sample_inputs(compiled.source, args.vectors, seed=1)
            folder = tmp / name.replace(" ", "_").replace("/", "")
            rtl = folder / "rtl"
            emit(design, rtl)
            env = driver.interp.run(compiled.graph, {compiled.graph.inputs[0][0]: x}, trace=True)
            codes = design.serialize(env[driver.device_input(compiled.graph)])
            expected = env[driver.device_output(compiled.graph)].reshape(len(x), -1)
            runner = driver._sim_runner()
            seen = []
            for engine in engines:
                sim = functools.partial(runner.simulate, rtl, codes, design, expected, build_dir=folder, engine=engine,
                                        seed=1)
                result, build_wall, build_cpu = timed(sim)  # builds, then simulates once
                runs = [timed(sim) for _ in range(args.runs)]
                wall = statistics.median(r[1] for r in runs)
                cpu = statistics.median(r[2] for r in runs)
                build_wall, build_cpu = build_wall - wall, build_cpu - cpu
                print(f"{name:<27} {engine:<7} {build_wall:>8.1f} {build_cpu:>9.1f} {args.vectors / wall:>10.0f} "
                      f"{cpu:>9.2f} {cpu / result.cycles * 1e6:>8.1f} {cycles_per_frame(design):>13} "
                      f"{result.cycles_per_frame_measured:>9.1f} "
                      f"{result.latency_measured:>8}", flush=True)
                seen.append((result.outputs, result.cycles, result.cycles_per_frame_measured, result.latency_measured))
                ok &= bool(np.array_equal(result.outputs, expected))
            same = all(np.array_equal(s[0], seen[0][0]) and s[1:] == seen[0][1:] for s in seen)
            ok &= same
            print(f"{'':<27} outputs = interpreter and identical measurements on every engine: {ok and same}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
