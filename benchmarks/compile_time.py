"""ONNX -> Verilog compile time for SFC-sized (784-256-256-256-10) and FINN-CNV-topology models.

Goals here: SFC under 1 s, CNV under 5 s (binary, and FINN's own CNV 2w2a). Prints the median of several in-process compiles
(import + passes + lowering + Verilog + manifest, written to disk) and of several `bnnc compile`
processes (adds Python start-up and imports), with the design's figures from the manifest written
by that compile: layers, cycles per frame and latency of the Verilog pipeline (auto folding).
The machine is shared, so each time is printed with its CPU time (user + system, of this process
or of the `bnnc compile` child) and the load average: on a busy machine the wall clock waits for
a core, the CPU time does not.
No peer runs on this machine (FINN needs Docker and Vivado), so no ratio is quoted.
"""
from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bnnc import driver

RUNS = 5


def export_models(folder: Path) -> dict[str, Path]:
    from tests.models import bnn_pynq, conv_exporters, exporters
    return {
        "SFC 784-256-256-256-10": Path(exporters.brevitas_mlp(folder / "sfc.onnx", sizes=(256, 256, 256, 10), in_features=784)),
        "FINN CNV (32x32x3)": Path(conv_exporters.finn_cnv(folder / "cnv.onnx")),
        # FINN's own CNV with ternary weights and activations (brevitas_examples.bnn_pynq)
        "bnn_pynq CNV 2w2a": Path(bnn_pynq.bnn_pynq(folder / "cnv_2w2a.onnx", "cnv_2w2a")),
    }


def compile_once(model: Path, out: Path) -> dict:
    """ONNX -> Verilog + manifest on disk, as `bnnc compile` does; returns the manifest's hardware part."""
    compiled = driver.compile_model(model, driver.Options(targets=("verilog",)))
    driver.write_build(compiled, out, model)
    return read_manifest(out)


def read_manifest(out: Path) -> dict:
    hardware = json.loads((out / "manifest.json").read_text())["hardware"]
    if not hardware["rtl"]["supported"] or not list((out / "rtl").glob("*.v")):
        raise SystemExit(f"{out}: no Verilog was written ({hardware['rtl']['reason']})")
    return hardware


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        models = export_models(tmp)
        print(f"{'model':<24} {'in-process s':>12} {'(CPU s)':>8} {'bnnc compile s':>15} {'(CPU s)':>8} {'layers':>7} "
              f"{'cycles/frame':>13} {'latency':>8}")
        for name, path in models.items():
            times, cpu, hardware = [], [], None
            for i in range(RUNS):
                start, start_cpu = time.perf_counter(), time.process_time()
                hardware = compile_once(path, tmp / f"out{i}")
                times.append(time.perf_counter() - start)
                cpu.append(time.process_time() - start_cpu)
            cli, cli_cpu = [], []
            for i in range(RUNS):
                start, start_cpu = time.perf_counter(), children_cpu()
                subprocess.run([sys.executable, "-m", "bnnc", "compile", str(path), "-o", str(tmp / f"cli{i}"),
                                "--target", "verilog"], check=True, capture_output=True)
                cli.append(time.perf_counter() - start)
                cli_cpu.append(children_cpu() - start_cpu)
                if read_manifest(tmp / f"cli{i}") != hardware:
                    raise SystemExit(f"{name}: `bnnc compile` and the in-process compile built different hardware")
            print(f"{name:<24} {statistics.median(times):>12.3f} {statistics.median(cpu):>8.3f} "
                  f"{statistics.median(cli):>15.3f} {statistics.median(cli_cpu):>8.3f} {len(hardware['layers']):>7} "
                  f"{hardware['cycles_per_frame']:>13} {hardware['latency_cycles']:>8}")
        print(f"medians of {RUNS}; load average (1, 5, 15 min) at the end: "
              + ", ".join(f"{v:.2f}" for v in os.getloadavg()) + f" on {os.cpu_count()} cores")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
