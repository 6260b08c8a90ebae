"""RTL simulation throughput (vectors per second of wall time) with Verilator through cocotb,
and the simulated hardware's own throughput (cycles per frame, measured) for two MLPs.

Prints medians of several runs. The Verilator build is cached after the first run, so the
figures are simulation only; the first (build) time is printed separately. No peer's RTL
simulation runs here (FINN's needs Vivado), so no ratio is quoted.
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bnnc import driver  # noqa: E402

RUNS, VECTORS = 3, 200


def models(folder: Path) -> dict[str, Path]:
    from tests.models import exporters
    return {
        "digits MLP 64-64-64-64-10": ROOT / "examples" / "digits_mlp" / "digits_mlp.onnx",
        "SFC 784-256-256-256-10": Path(exporters.brevitas_mlp(folder / "sfc.onnx", sizes=(256, 256, 256, 10), in_features=784)),
    }


def main() -> None:
    print(f"{'model':<27} {'build s':>8} {'vectors/s':>10} {'cycles/frame':>13} {'measured':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, path in models(tmp).items():
            compiled = driver.compile_model(path, driver.Options())
            design = driver.hardware(compiled)
            x = driver.sample_inputs(compiled.source, VECTORS, seed=1)
            from bnnc.backends.verilog import emit
            rtl = tmp / name.split()[0] / "rtl"
            emit(design, rtl)
            env = driver.interp.run(compiled.graph, {compiled.graph.inputs[0][0]: x}, trace=True)
            codes = design.serialize(env[driver.device_input(compiled.graph)])
            expected = env[driver.device_output(compiled.graph)].reshape(len(x), -1)
            runner = driver._sim_runner()
            start = time.perf_counter()
            result = runner.simulate(rtl, codes, design, expected, build_dir=tmp / name.split()[0] / "sim")
            build = time.perf_counter() - start
            rates = []
            for _ in range(RUNS):
                start = time.perf_counter()
                result = runner.simulate(rtl, codes, design, expected, build_dir=tmp / name.split()[0] / "sim")
                rates.append(VECTORS / (time.perf_counter() - start))
            print(f"{name:<27} {build:>8.1f} {statistics.median(rates):>10.0f} {design.cycles_per_frame:>13} "
                  f"{result.cycles_per_frame_measured:>9.1f}")


if __name__ == "__main__":
    main()
