"""The AXI4-Stream wrapped builds (`bnnc compile --wrap axis`) in simulation: Verilator build
time, frames per second of wall time through the cocotbext-axi bench (random gaps and
back-pressure, every result checked against the interpreter), and the wrapper's own counters
(LAST_LATENCY, LAST_INTERVAL) against the manifest.

Prints medians of several runs; the build is cached after the first run, so the frames/s figures
are simulation only.
"""
from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bnnc import driver, integration  # noqa: E402
from bnnc.cli import main as bnnc  # noqa: E402

from sim import axis_runner  # noqa: E402

RUNS = 3
EXAMPLES = {"digits MLP": ("digits_mlp", 200), "digits conv": ("digits_cnv", 40)}


def main() -> None:
    print(f"{'example':<12} {'frames':>6} {'build s':>8} {'frames/s':>9} {'latency':>14} {'interval':>14}")
    with tempfile.TemporaryDirectory() as tmp:
        for label, (name, frames) in EXAMPLES.items():
            build = Path(tmp) / name
            bnnc(["compile", str(ROOT / "examples" / name / f"{name}.onnx"), "-o", str(build), "--wrap", "axis"])
            compiled = driver.open_build(build)
            design = driver.hardware(compiled)
            hw = json.loads((build / "manifest.json").read_text())["hardware"]
            x = np.load(ROOT / "examples" / name / "test_x.npy")[:frames]
            inputs, expected = integration.reference_vectors(compiled, x)
            work = Path(tmp) / f"{name}-sim"
            times = []
            for run in range(RUNS + 1):  # run 0 includes the Verilator build
                start = time.perf_counter()
                result = axis_runner.simulate_axis(build / "rtl", build / "axis", design, hw, inputs, expected,
                                                   seed=run, build_dir=work)
                times.append(time.perf_counter() - start)
            sim = statistics.median(times[1:])
            latency = f"{result.latency} / {hw['latency_cycles']}"
            interval = f"{result.interval} / {hw['cycles_per_frame']}"
            print(f"{label:<12} {frames:>6} {times[0] - sim:>8.1f} {frames / sim:>9.1f} {latency:>14} {interval:>14}")
    print("latency, interval: measured by the wrapper's counters / the manifest's timing model (clocks)")

if __name__ == "__main__":
    main()
