"""Compile time of the residual examples (examples/bireal_digits): import, the pass pipeline with
fold-fixed-point choosing the fraction bits from the 200 calibration images, and the stated
bound. Goal (issue 12): under 2 s for the Bi-Real example. The Verilog/HLS backends do not build
residual adds yet, so this times the IR part (what `bnnc verify --backends ''` compiles).

    python benchmarks/qfx_compile_time.py
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

from bnnc import driver

RUNS = 5
HERE = Path(__file__).resolve().parents[1] / "examples" / "bireal_digits"


def main() -> None:
    samples = HERE / "test_x.npy"
    print(f"{'model':<22} {'median s':>9} {'min s':>7} {'fraction bits':>14} {'output bound':>13}")
    for name in ("bireal_digits", "reactnet_digits"):
        times = []
        for _ in range(RUNS):
            start = time.perf_counter()
            compiled = driver.compile_model(HERE / f"{name}.onnx", driver.Options(calibrate=str(samples), quantize_weights=8))
            times.append(time.perf_counter() - start)
        fracs = sorted({t.elem.frac for t in compiled.graph.types.values() if hasattr(t.elem, "frac")})
        print(f"{name:<22} {statistics.median(times):>9.2f} {min(times):>7.2f} {str(fracs[:4])[1:-1]:>14} "
              f"{driver.error_bound(compiled.graph):>13.3g}")


if __name__ == "__main__":
    main()
