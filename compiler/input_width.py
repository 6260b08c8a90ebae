"""The width of a float input's fixed-point format (quantize-inputs), when bnnc chooses it.

quantize-inputs with no `bits` and calibration samples: compile tries INPUT_WIDTHS in turn and
keeps the first with which every sample gets the original model's class; `run` and `verify`
then say how many of their samples the chosen format does not hold exactly.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np

from . import interp
from .diagnostics import progress, quote
from .ir.graph import Graph
from .ir.ops import Quantize
from .original import run_original
from .passes.fixed_point import FoldFixedPoint, QuantizeInputs, output_bound

INPUT_WIDTHS = (8, 10, 12, 14, 16)  # quantize-inputs' widths to try, when the pipeline leaves it to bnnc


def left_to_bnnc(passes: list, calibrate: str | None) -> bool:
    """quantize-inputs is in the pipeline with no width given, and there are samples to choose it."""
    return bool(calibrate) and any(isinstance(p, QuantizeInputs) and p.bits == 0 for p in passes)


def _without_rounding(passes: list) -> list:
    """The passes with fold-fixed-point's multiplier-free rounding turned off."""
    return [replace(p, multiplier_free=0) if isinstance(p, FoldFixedPoint) else p for p in passes]


def widened(model, passes: list, x: np.ndarray, outputs: int, run: Callable[[list], tuple[Graph, list]]):
    """The graph and stages of `run(passes)` with quantize-inputs at the fewest bits of
    INPUT_WIDTHS with which every calibration sample `x` gets the original model's class (a float
    input off an 8-bit grid -- digits plus noise -- can need 12 or 16). Models whose own
    quantizer reads the input are left alone. The width is chosen for the model as given (without
    fold-fixed-point's multiplier-free rounding), and the rounding comes on top of it."""
    plain = _without_rounding(passes)
    graph, stages = run(plain)
    inserted = any(isinstance(op, Quantize) and op.out.endswith("_fixed") for op in graph.ops)
    bits = INPUT_WIDTHS[0]
    if inserted and outputs >= 2:
        original = run_original(model, x).astype(np.float64).reshape(len(x), -1)
        tolerance = 1e-5 * np.maximum(1.0, np.abs(original)).max(axis=1)
        for bits in INPUT_WIDTHS:
            if bits != INPUT_WIDTHS[0]:
                trial = [replace(p, bits=bits) if isinstance(p, QuantizeInputs) else p for p in plain]
                graph, stages = run(trial)
            scores = interp.to_real(interp.run(graph, {graph.inputs[0][0]: x})[graph.outputs[0]],
                                    graph.types[graph.outputs[0]]).reshape(len(x), -1)
            picked = original[np.arange(len(x)), scores.argmax(axis=1)]
            agree = int(np.sum(picked >= original.max(axis=1) - 2 * tolerance - output_bound(graph)))
            if agree == len(x):
                if bits != INPUT_WIDTHS[0]:
                    progress(f"quantize-inputs: {bits}-bit inputs, the fewest with which all {len(x)} calibration "
                             f"samples get the original's class")
                break
        else:
            progress(f"quantize-inputs: even {INPUT_WIDTHS[-1]}-bit inputs give {agree} of {len(x)} calibration "
                     f"samples the original's class; set the width with --pipeline 'quantize-inputs{{bits=N}},...'")
    if plain == passes:
        return graph, stages
    return run([replace(p, bits=bits) if isinstance(p, QuantizeInputs) and bits != INPUT_WIDTHS[0] else p
                for p in passes])


def warn_uncalibrated(graph: Graph, env: dict) -> None:
    """quantize-inputs chose a fixed-point format from calibration samples; say how many of these
    samples it does not hold exactly (outside its range, so clipped, or off its grid, so rounded)."""
    for op in graph.ops:
        if not (isinstance(op, Quantize) and op.out.endswith("_fixed")):
            continue
        x = env[op.inputs[0]].astype(np.float64)
        scale = float(op.scale)
        outside = (x < op.lo * scale) | (x > op.hi * scale)
        off_grid = ~outside & (np.abs(x / scale - np.rint(x / scale)) > 0)
        clipped, rounded = (int(np.any(m.reshape(len(m), -1), axis=1).sum()) for m in (outside, off_grid))
        if clipped or rounded:
            progress(f"input {quote(op.inputs[0])}: {clipped} of {len(x)} samples leave the calibrated range "
                     f"[{op.lo * scale:g}, {op.hi * scale:g}] (clipped) and {rounded} have values off its grid of "
                     f"{scale:g} (rounded); calibrate with samples like these, or widen the format: "
                     f"--pipeline 'quantize-inputs{{bits=16}},...'")
