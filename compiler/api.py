"""bnnc as a library: compile, run and verify from Python, returning results instead of printing.

    import bnnc
    build = bnnc.compile("model.onnx", "build/", target="all")     # a Build: path, manifest, files
    y = bnnc.run("build/", x, backend="rtl")                        # outputs in the model's units
    check = bnnc.verify("model.onnx", x, backends=("rtl", "hls"))   # a Verification
    assert check.ok, check.table()

Errors in the model or the inputs raise `bnnc.BnncError` with the one-line message the CLI prints.
The CLI (`bnnc compile|run|verify`) is a thin layer over these functions.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np

from . import driver
from .diagnostics import BnncError
from .passes import DEFAULT_PIPELINE

# Float32 execution of the original model differs from exact arithmetic by rounding only.
ORIGINAL_RTOL = 1e-5
TARGETS = {"verilog": ("verilog",), "hls": ("hls",), "asic": ("asic",), "all": ("verilog", "hls", "asic")}
BACKEND_TARGET = {"rtl": "verilog", "hls": "hls", "tl": "asic", "cmos": "asic"}


@dataclass(frozen=True)
class Build:
    path: Path
    manifest: dict  # what manifest.json holds: stream formats, folding, timing, error bound
    files: tuple[Path, ...]  # the top-level entries written into `path`
    seconds: float


@dataclass(frozen=True)
class BackendCheck:
    backend: str  # "reference" (the interpreter), "rtl" or "hls"
    outputs: np.ndarray  # in the model's units
    equal_to_reference: int  # samples whose outputs equal the interpreter's bit for bit
    argmax_agreement: int | None  # samples whose class is a top class of the original (None: no classes)
    max_error: float  # max |y - original| in the model's units
    ok: bool  # every sample equals the reference and lies within the bound of the original


@dataclass(frozen=True)
class Verification:
    samples: int
    bound: float  # the compiled model's stated output error bound (inf: none, weights were rounded)
    original: np.ndarray  # the original ONNX model's outputs
    rows: tuple[BackendCheck, ...]
    rounded_by: tuple[str, ...] = ()  # the options that rounded the model (bound inf), e.g. --quantize-weights
    stated: float = 0.0  # the fixed-point bound against the compiled (when rounded: the rounded) model
    why: str = ""  # when the reference misses the bound: which rounded decision flipped, and the remedy

    @property
    def ok(self) -> bool:
        return all(row.ok for row in self.rows)

    def table(self) -> str:
        n = self.samples
        if self.bound == float("inf"):
            by = " and ".join(self.rounded_by or ("--quantize-weights",))
            what = "weights and scales" if "--multiplier-free" in by else "float weights"
            head = (f"{n} samples, no output bound: {by} rounded {what}, so the original is matched approximately "
                    f"(see the argmax column; fixed-point bound against the rounded model {self.stated:.3g}); the "
                    f"verdict is bit-exactness to the reference")
        else:
            head = f"{n} samples, output bound {self.bound:.3g} (+ rtol {ORIGINAL_RTOL:g} for float32 rounding in the original)"
        lines = [head,
                 f"{'backend':<10} {'= reference':>12} {'argmax = orig':>14} {'max |y - orig|':>15}  verdict"]
        for r in self.rows:
            agree = f"{r.argmax_agreement}/{n}" if r.argmax_agreement is not None else "-"
            lines.append(f"{r.backend:<10} {f'{r.equal_to_reference}/{n}':>12} {agree:>14} {r.max_error:>15.3g}  "
                         f"{'ok' if r.ok else 'MISMATCH'}")
        return "\n".join(lines + ([self.why] if self.why else [])) + "\n"


def _options(pipeline: str, fold, targets: tuple[str, ...], calibrate, quantize_weights: int = 0,
             multiplier_free: int = 0) -> driver.Options:
    if not 0 <= int(quantize_weights) <= 8:
        raise BnncError(f"--quantize-weights {quantize_weights}: choose 1 to 8 bits (0: off)")
    if not 0 <= int(multiplier_free) <= 8:
        raise BnncError(f"--multiplier-free {multiplier_free}: choose 1 to 8 signed powers of two per multiplier (0: off)")
    return driver.Options(pipeline, fold, targets, None if calibrate is None else str(calibrate),
                          quantize_weights=int(quantize_weights), multiplier_free=int(multiplier_free))


def compile(model: str | Path, output: str | Path = "build", *, target: str = "verilog", fold: str | dict = "auto",
            pipeline: str = DEFAULT_PIPELINE, calibrate: str | Path | None = None, wrap: str = "none",
            tuser_bits: int = 0, verify_inputs: np.ndarray | str | Path | Literal[True] | None = None,
            quantize_weights: int = 0, multiplier_free: int = 0, registered: bool = False) -> Build:
    """Compile an ONNX model into the build folder `output` (written atomically).

    target: "verilog", "hls", "asic" or "all"; fold: "auto", a folding JSON file or the folding as a dict;
    wrap: "axis" for an AXI4-Stream top (tuser_bits wide TUSER, 0 for none);
    verify_inputs: samples (an array or a .npy path) that check every pass with the interpreter, or
    True for random ones over the input quantizer's range; quantize_weights: round weights that
    are not a scale times integers (float layers) to this many bits, 0 to refuse them;
    multiplier_free: round scales and multi-bit weights to at most this many signed powers of two,
    so that the hardware shifts and adds instead of multiplying (0: off); registered: register every
    matrix-vector unit's datapath and output handshake in the Verilog (for Fmax; more latency)."""
    import time

    if target not in TARGETS:
        raise BnncError(f"unknown target '{target}' (choose {', '.join(TARGETS)})")
    start = time.perf_counter()
    options = replace(_options(pipeline, fold, TARGETS[target], calibrate, quantize_weights, multiplier_free),
                      wrap=wrap, tuser_bits=tuser_bits, registered=bool(registered))
    samples = None
    if verify_inputs is not None:
        source = driver.lower(driver.load_model(model), Path(model).stem, options.quantize_weights)
        samples = driver.sample_inputs(source) if verify_inputs is True else _samples(verify_inputs, source)
    compiled = driver.compile_model(model, options, samples)
    written = driver.write_build(compiled, Path(output), Path(model))
    manifest = json.loads((Path(output) / "manifest.json").read_text())  # as written, not computed again
    return Build(Path(output), manifest, tuple(written), time.perf_counter() - start)


def _samples(x: np.ndarray | str | Path, graph) -> np.ndarray:
    """Samples given as an array, or as the path of a .npy file."""
    return driver.load_inputs(x, graph) if isinstance(x, (str, Path)) else driver.check_inputs(x, graph)


def run(build: str | Path, x: np.ndarray | str | Path, *, backend: str = "rtl", simulator: str = "verilator",
        engine: str = "auto", waves: bool = False) -> np.ndarray:
    """Run samples x (axis 0, or a .npy path) through a build's interpreter ("interp"), RTL or HLS C simulation.
    Every hardware output is checked against the interpreter; returns the model's outputs.
    engine: how the RTL bench runs ("cocotb", "native" or "auto" by run length); waves: write a VCD."""
    compiled = driver.open_build(Path(build))
    return driver.execute(compiled, _samples(x, compiled.source), backend, Path(build), simulator,
                          engine=engine, waves=waves)


def _argmax_agreement(y: np.ndarray, original: np.ndarray, allowed: np.ndarray) -> int:
    """Samples whose predicted class is a top class of the original. Classes whose original
    scores are equal up to float32 rounding are ties: the original's own pick among them
    depends on summation order, so any of them counts."""
    n = len(y)
    y, original, allowed = y.reshape(n, -1), original.reshape(n, -1), allowed.reshape(n, -1)
    picked = original[np.arange(n), y.argmax(1)]
    return int(np.sum(picked >= original.max(1) - 2 * allowed.max(1)))


def verify(model: str | Path, x: np.ndarray | str | Path, *, backends: tuple[str, ...] = ("rtl",), fold: str | dict = "auto",
           pipeline: str = DEFAULT_PIPELINE, calibrate: str | Path | None = None, simulator: str = "verilator",
           engine: str = "auto", waves: bool = False, work: str | Path | None = None,
           quantize_weights: int = 0, multiplier_free: int = 0, registered: bool = False) -> Verification:
    """The original ONNX model vs the interpreter vs each backend on samples x (or a .npy path)."""
    from .original import run_original

    for b in backends:
        if b not in BACKEND_TARGET:
            raise BnncError(f"unknown backend '{b}' (choose {', '.join(BACKEND_TARGET)})")
    targets = tuple(dict.fromkeys(BACKEND_TARGET[b] for b in backends))
    compiled = driver.compile_model(model, replace(_options(pipeline, fold, targets, calibrate, quantize_weights,
                                                            multiplier_free), registered=bool(registered)))
    x = _samples(x, compiled.source)
    n = len(x)
    driver.progress(f"running the original model on {n} samples...")
    original = run_original(compiled.model, x).astype(np.float64).reshape((n,) + compiled.output_shape)
    reference = driver.execute(compiled, x, "interp")
    outputs = [("reference", reference)]
    # A temporary work folder is kept when a simulation fails: the error names its log there.
    folder = Path(work) if work else Path(tempfile.mkdtemp(prefix="bnnc-verify-"))
    for b in backends:
        # check=False: mismatches are counted in the table rather than stopping the run.
        outputs.append((b, driver.execute(compiled, x, b, folder / b, simulator, check=False, engine=engine,
                                          waves=waves)))
    if not work:
        shutil.rmtree(folder)
    # Rounded weights (--quantize-weights) or scales (--multiplier-free) leave no bound on
    # |y - original|; ties in the argmax column are still judged with the fixed-point bound.
    stated = driver.error_bound(compiled.graph)
    bound = float("inf") if compiled.weights_moved else stated
    ties = stated + ORIGINAL_RTOL * np.maximum(1.0, np.abs(original))
    allowed = bound + ORIGINAL_RTOL * np.maximum(1.0, np.abs(original))
    classes = original.reshape(n, -1).shape[1] > 1
    rows = []
    for name, y in outputs:
        same = int(np.sum(np.all((y == reference).reshape(n, -1), axis=1)))
        err = np.abs(y - original)
        rows.append(BackendCheck(name, y, same, _argmax_agreement(y, original, ties) if classes else None,
                                 float(err.max()), bool(np.all(err <= allowed)) and same == n))
    why = "" if rows[0].ok or compiled.weights_moved else _flipped(compiled, x)
    return Verification(n, bound, original, tuple(rows), compiled.rounded_by, stated, why)


def _flipped(compiled: driver.Compiled, x: np.ndarray) -> str:
    """The bound holds while no sign behind a rounded value flips; name the one that did."""
    from .passes.fixed_point import flipped_decision

    names = [name for name, _, _ in compiled.stages]
    at = next((i for i, name in enumerate(names) if name.startswith("fold-fixed-point")), None)
    if at is None:
        return ""
    before, after = compiled.stages[at - 1][1] if at else compiled.source, compiled.stages[at][1]
    found = flipped_decision(before, after, {before.inputs[0][0]: x})
    if found is None:
        return ""
    value, origin, sample = found
    return (f"why: sample {sample}: ONNX node '{origin}' ({value}) decides otherwise than with exact arithmetic: its "
            f"input lies within the fixed-point rounding of its threshold; give more fraction bits with --calibrate "
            f"SAMPLES.npy (chooses them so that every sample decides exactly) or fold-fixed-point{{frac=N}} in --pipeline")
