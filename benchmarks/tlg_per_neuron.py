"""map-threshold-logic: TLGs, depth and fan-in per neuron for K = 64 / 256 / 1024, next to the
issue's independent counts (fan-in <= 4, |w| <= 2: about 123 / 505 / 2,039 TLGs, depth 15 at
K = 64), and the pass time on the SFC (784-256-256-256-10). Goal: under 5 s.

Neurons are random +-1 rows with thresholds near the middle (the largest trees); medians of
several runs.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
from bnnc import driver
from bnnc.backends.asic.tl import tl_design
from bnnc.backends.hardware import Layer
from bnnc.ir.types import Bipolar
from bnnc.passes.threshold_logic import MapThresholdLogic, map_layer

ROOT = Path(__file__).resolve().parents[1]
ISSUE = {64: 123, 256: 505, 1024: 2039}
SFC = {"8-bit pixels (first layer CMOS)": ROOT / "examples/mst_training/sfc_baseline.onnx",
       "1-bit pixels (all four binary)": ROOT / "examples/mst_training/sfc_in1_baseline.onnx"}
RUNS = 5


def neurons(k: int, c: int = 32, seed: int = 0) -> Layer:
    rng = np.random.default_rng(seed)
    weights = rng.choice([-1, 1], (c, k)).astype(np.int8)
    thresholds = rng.integers(-k // 8, k // 8 + 1, (c, 1)) * 2
    return Layer(0, "bench", Bipolar(), Bipolar(), weights, None, thresholds=thresholds,
                 values=np.tile([-1, 1], (c, 1)))


def main() -> None:
    for options in (MapThresholdLogic(), MapThresholdLogic(max_fan_in=8, max_weight=4)):
        print(f"{options}: per neuron (32 random neurons, median)")
        print(f"{'K':>6} {'TLGs':>7} {'issue':>7} {'depth':>6} {'fan-in':>7} {'identity (clocked)':>19}")
        for k in (64, 256, 1024):
            net = map_layer(neurons(k), options)
            sizes = np.diff(net.neuron_gates[:, 0], axis=1).ravel()
            depths = [net.neuron_depth(c, 0) for c in range(net.out_count)]
            print(f"{k:>6} {statistics.median(sizes):>7.0f} {ISSUE[k] if options.max_fan_in == 4 else '-':>7} "
                  f"{statistics.median(depths):>6.0f} {net.max_fan_in:>7} {net.identity_cells() / net.out_count:>19.0f}")
    print(f"\nmap-threshold-logic on the SFC, fully unrolled plan, median of {RUNS} runs (goal < 5 s)")
    for what, path in SFC.items():
        design = tl_design(driver.compile_model(path, driver.Options()).graph)
        times, cpu, mapping = [], [], None
        for _ in range(RUNS):
            start, start_cpu = time.perf_counter(), time.process_time()
            mapping = MapThresholdLogic().run(design)
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        gates = sum(n.gates for n in mapping.layers)
        # CPU time too: on a shared machine the wall clock also counts other processes' turns
        print(f"  {what}: {statistics.median(times):.2f} s ({statistics.median(cpu):.2f} s CPU), "
              f"{gates:,} TLGs in {len(mapping.layers)} layers")


if __name__ == "__main__":
    main()
