"""The compiled simulation path: bnnc_bench.v clocked by a C++ main (bench_main.cpp), no VPI.

cocotb drives the bench's clock from Python through VPI, one round trip per clock edge, and
starts a Python interpreter per run. The bench does all the checking in Verilog anyway, so the
same bench under a plain C++ loop checks exactly the same things, for 2-14x less CPU per clock
(the SFC, the digits CNV; benchmarks/rtl_throughput.py) and a build 2.4-6x as costly (-O3 and
the dot products' loops unrolled here, which runner.py's cocotb builds leave rolled). runner.py
picks this path for long runs (NATIVE_FROM_CLOCKS).
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
MAIN = HERE / "bench_main.cpp"
EXECUTABLE = "bnnc_sim"
VERILATOR_ARGS = ("-O3", "--x-assign", "fast", "--x-initial", "fast", "--noassert")
# C++ optimisation of the generated model, appended to (so overriding) the make variables that
# runner.tool_environment puts in MAKEFLAGS (its PCH workaround and OBJCACHE stay).
MAKEFLAGS = "OPT_FAST=-O1 OPT_SLOW=-O0 OPT_GLOBAL=-O1"


def build(sources: list[Path], top: str, parameters: dict, timescale: tuple[str, str], build_dir: Path,
          log: Path, waves: bool, extra: list[str] | tuple[str, ...] = ()) -> None:
    """Verilate and compile the bench + design into build_dir/bnnc_sim; raises RuntimeError with
    the log's path if Verilator or the C++ compiler fails."""
    cmd = (["verilator", "--cc", "--exe", "--build", "-j", "2", "-Mdir", str(build_dir), "--top-module", top,
            "-o", EXECUTABLE, "--timescale", "/".join(timescale)]
           + list(VERILATOR_ARGS) + list(extra) + (["--trace"] if waves else [])
           + [f"-G{k}={v}" for k, v in parameters.items()] + [str(MAIN)] + [str(s) for s in sources])
    with open(log, "w") as out:
        out.write(" ".join(cmd) + "\n")
        out.flush()
        env = dict(os.environ, MAKEFLAGS=f"{os.environ.get('MAKEFLAGS', '')} {MAKEFLAGS}".strip())
        status = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    if status != 0:
        raise RuntimeError(f"verilator exited with {status}")


def run(build_dir: Path, run_dir: Path, plusargs: list[str], log: Path, waves: Path | None) -> None:
    """Run the compiled bench in run_dir (where its files are); raises RuntimeError if it fails."""
    cmd = [str(build_dir / EXECUTABLE)] + plusargs + ([f"+waves={waves}"] if waves else [])
    with open(log, "w") as out:
        status = subprocess.call(cmd, cwd=run_dir, stdout=out, stderr=subprocess.STDOUT)
    if status != 0:
        raise RuntimeError(f"the simulation exited with {status}")
