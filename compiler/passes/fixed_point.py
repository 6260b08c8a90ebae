"""fold-fixed-point: the exact affine left on the scores becomes a fixed-point multiply-add;
values that flow on between layers (residual shortcuts, PReLU, ...) become fixed point first
(qfx.py), with `frac` fraction bits -- given, or the fewest (from 8) with which every sign and
threshold decides every calibration sample as exact arithmetic does and whose stated bound is
within `flow_error` of the largest calibrated score (else the tightest such bound); 16 without
samples.

y[c] = a[c] * acc[c] + b[c] with rational a, b becomes q[c] = acc[c] * m[c] + n[c], read as
q * 2**-f, with m = round(a * 2**f) and n = round(b * 2**f). When every a and b is a multiple of
2**-f for some f <= MAX_FRAC the result is exact. Otherwise f is the smallest number of
fraction bits whose worst-case error, |acc|max * max|a - m/2**f| + max|b - n/2**f|, is within
`rel-error` (in millionths) of the largest score; that bound is stated in the op and the manifest.
A common positive scale keeps the order of the scores, so an argmax after it stays exact.

`multiplier-free=K` (1 to 8; 0: off) first rounds every scale, slope and multi-bit weight to at
most K signed powers of two (multiplier_free.py), so that every multiplier left is K shifts and
adds; the bounds then hold for the rounded model.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np

from .. import interp
from ..ir import exact
from ..ir.fixed_ops import FixedAffine
from ..ir.graph import Graph
from ..ir.ops import Affine, Sign, Threshold
from ..ir.types import Fixed, Int, frac_bits
from . import contracts, multiplier_free, qfx
from .fold_thresholds import FoldThresholds
from .manager import Pass, PassError, exact_outputs, register

MAX_FRAC = 48
DEFAULT_FRAC = 16  # fraction bits of values that flow on, without calibration samples
MAX_FLOW_FRAC = 32


def _round(x: Fraction) -> int:
    return round(x)  # Fraction rounds half to even, exactly


def _error(a: list[Fraction], b: list[Fraction], frac: int, acc_max: int) -> Fraction:
    unit = 1 << frac
    ea = max(abs(x - Fraction(_round(x * unit), unit)) for x in a)
    eb = max(abs(x - Fraction(_round(x * unit), unit)) for x in b)
    return acc_max * ea + eb


def choose_frac(a: list[Fraction], b: list[Fraction], acc_max: int, rel_error: Fraction) -> tuple[int, Fraction]:
    """Fewest fraction bits that are exact, or else within rel_error of the largest score."""
    largest = max(abs(x) * acc_max + abs(y) for x, y in zip(a, b)) or Fraction(1)
    for frac in range(MAX_FRAC + 1):
        err = _error(a, b, frac, acc_max)
        if err == 0 or err <= rel_error * largest:
            return frac, err
    return MAX_FRAC, _error(a, b, MAX_FRAC, acc_max)


@register
@dataclass(frozen=True)
class FoldFixedPoint(Pass):
    name = "fold-fixed-point"
    ensures = (contracts.FIXED_POINT_ONLY,)
    rel_error: int = 1  # allowed error, in millionths of the largest possible score
    frac: int = 0  # fraction bits of values that flow on between layers; 0: choose
    calibrate: str = ""  # samples (.npy) to choose `frac` with (the CLI's --calibrate)
    flow_error: int = 1000  # with samples: allowed bound, in millionths of the largest calibrated score
    multiplier_free: int = 0  # K > 0: scales and weights rounded to at most K signed powers of two

    def run(self, graph: Graph) -> Graph:
        if not self.multiplier_free:
            return self._fixed(graph)
        try:
            rounded, _ = multiplier_free.constrain(graph, self.multiplier_free)
        except ValueError as exc:
            raise PassError(f"{self.name}: {exc}") from None
        fixed = self._fixed(rounded)
        most = multiplier_free.multiplier_digits(fixed)
        if most > self.multiplier_free:  # the rounding's promise (see multiplier_free.py), checked
            raise PassError(f"{self.name}: internal error: a multiplier has {most} signed digits after rounding "
                            f"to {self.multiplier_free}")
        return fixed

    def notes(self, before: Graph) -> list[str]:
        if not self.multiplier_free:
            return []
        return multiplier_free.notes(multiplier_free.constrain(before, self.multiplier_free)[1], self.multiplier_free)

    def _fixed(self, graph: Graph) -> Graph:
        error: dict[str, float] = {}
        if qfx.flows_on(graph):
            frac = self.frac or self._chosen_frac(graph)
            graph, error = qfx.to_fixed(graph, frac)
            graph = FoldThresholds().run(graph)
        ops = []
        for op in graph.ops:
            ops.append(self._fold(graph, op, error.get(op.inputs[0], 0.0)) if isinstance(op, Affine) else op)
        return graph.with_ops(ops)

    def _chosen_frac(self, graph: Graph) -> int:
        """The fewest fraction bits whose stated bound is at most `flow_error` millionths of the
        largest calibrated score and with which every sign and threshold decides every
        calibration sample as with the finest format (if none is that tight, the tightest bound
        among those that decide every sample so). The bound holds while no such decision
        flips, so checking the decisions (not the scores) is the test that matters; and the
        finest format's scores are not a reference: its last layer may round far more coarsely
        (MAX_FRAC), while its decisions are within ~2**-MAX_FLOW_FRAC of the exact graph's."""
        if not self.calibrate:
            return DEFAULT_FRAC
        samples = {graph.inputs[0][0]: np.load(self.calibrate, allow_pickle=False).astype(np.float32)}
        finest = self.run_with(graph, MAX_FLOW_FRAC)
        values = interp.run(finest, samples, trace=True)
        want = _decisions(finest, values)
        peak = max(float(np.max(np.abs(np.asarray(w, dtype=np.float64)), initial=0.0))
                   for w in exact_outputs(finest, values)) or 1.0
        exact_at = {}  # frac -> its bound, where every decision is as with the finest format
        for frac in range(8, MAX_FLOW_FRAC, 2):
            fixed = self.run_with(graph, frac)
            got = _decisions(fixed, interp.run(fixed, samples, trace=True))
            if all(np.array_equal(got[name], want[name]) for name in want):
                exact_at[frac] = output_bound(fixed)
                if exact_at[frac] <= peak * self.flow_error / 10**6:
                    return frac
        # No format is that tight (past MAX_FRAC the last layer's rounding grows with frac):
        # the tightest bound among those that decide every sample right.
        return min(exact_at, key=lambda frac: (exact_at[frac], frac), default=MAX_FLOW_FRAC)

    def run_with(self, graph: Graph, frac: int) -> Graph:
        """The graph (already rounded when multiplier-free) with `frac` fraction bits."""
        return FoldFixedPoint(rel_error=self.rel_error, frac=frac, flow_error=self.flow_error).run(graph)

    def _fold(self, graph: Graph, op: Affine, in_error: float = 0.0):
        elem = graph.types[op.inputs[0]].elem
        if not isinstance(elem, (Int, Fixed)) or not qfx.final(graph, op.out):
            return op
        channels = graph.types[op.out].shape[0]
        in_frac = frac_bits(elem)
        code = Fraction(1, 1 << in_frac)

        a = [x * code for x in exact.channel_fractions(op.scale, channels)]
        b = exact.channel_fractions(op.bias, channels)
        acc_max = max(abs(elem.lo), abs(elem.hi))
        frac, err = choose_frac(a, b, acc_max, Fraction(self.rel_error, 10**6))
        unit = 1 << frac
        try:
            mult, bias = (exact.int64_array(_round(x * unit) for x in p) for p in (a, b))
        except exact.RangeError as exc:
            raise PassError(f"{op.kind} from ONNX node '{op.origin}': scale or bias {exc}") from None
        gain = max(abs(float(v)) for v in np.ravel(op.scale))
        return FixedAffine(op.out, op.inputs, mult=mult, bias=bias, frac=frac, error_bound=float(err) + gain * in_error,
                           origin=op.origin)

    def max_error(self, before: Graph, after: Graph) -> float:
        if qfx.flows_on(before) or self.notes(before):  # a sign after a rounded value may flip, or
            return float("inf")                          # the model itself was rounded: report, do not judge
        return output_bound(after)


def _decisions(graph: Graph, values: dict) -> dict[str, np.ndarray]:
    """Every sign's and threshold's output, in graph order, from the interpreter's trace."""
    return {op.out: values[op.out] for op in graph.ops if isinstance(op, (Sign, Threshold))}


def flipped_decision(exact: Graph, fixed: Graph, samples: dict) -> tuple[str, str, int] | None:
    """The first sign or threshold of the fixed-point graph that decides a sample otherwise
    than the exact graph (before this pass) does: (its output, its ONNX node, the sample)."""
    want = _decisions(exact, interp.run(exact, samples, trace=True))
    got = _decisions(fixed, interp.run(fixed, samples, trace=True))
    for op in (op for op in fixed.ops if op.out in got and op.out in want):
        differ = np.any((np.asarray(want[op.out]) != np.asarray(got[op.out])).reshape(len(got[op.out]), -1), axis=1)
        if differ.any():
            return op.out, op.origin, int(np.argmax(differ))
    return None


def output_bound(graph: Graph) -> float:
    """The stated error bound of the scores (0 when exact); with values that flow on in fixed
    point, it holds while no sign or threshold behind a rounded value flips."""
    return max((op.error_bound for op in graph.ops if isinstance(op, FixedAffine) and qfx.final(graph, op.out)),
               default=0.0)



@register
@dataclass(frozen=True)
class QuantizeInputs(Pass):
    """A weight layer that reads float data directly (the model has no input quantizer) gets a
    signed fixed-point quantizer of `bits` bits (0: 8 here; `bnnc compile` then widens it to 10,
    12, 14 or 16 bits until every calibration sample gets the original model's class). Its binary
    point comes from calibration data: enough integer bits for the largest magnitude seen, the
    rest fraction. Models that quantize
    their own input are left alone -- their quantizer is exact and needs no binary point.

    This is the one pass that changes the model's answers: each input moves by at most
    2**-(frac+1) inside the calibrated range (clipped outside it), and a binarized layer after it
    may flip where its pre-activation lands within K * 2**-(frac+1) of a threshold.
    """

    name = "quantize-inputs"
    ensures = (contracts.NO_FLOAT_INTO_LAYERS,)
    bits: int = 0  # 0: 8, widened by the driver until the calibration samples keep their class
    calibrate: str = ""  # a .npy of samples (the CLI's --calibrate)

    def run(self, graph: Graph) -> Graph:
        from ..ir.ops import Conv, Dense, Quantize
        from ..ir.types import Real

        readers = [op for op in graph.ops if isinstance(op, (Dense, Conv)) and isinstance(graph.types[op.inputs[0]].elem, Real)]
        if not readers:
            return graph
        if not self.calibrate:
            op = readers[0]
            raise PassError(f"{op.kind} from ONNX node '{op.origin}' reads float data with no quantizer in "
                            f"the model; give calibration samples (--calibrate X.npy) to choose its fixed-point format")
        samples = np.load(self.calibrate, allow_pickle=False).astype(np.float32)
        # Only the float part in front of the readers runs (the rest would be exact arithmetic).
        host = [op for op in graph.ops if isinstance(graph.types[op.out].elem, Real)]
        env = interp.run(Graph(graph.name, graph.inputs, tuple(host), ()), {graph.inputs[0][0]: samples}, trace=True)
        ops = list(graph.ops)
        for op in readers:
            src = op.inputs[0]
            peak = float(np.max(np.abs(env[src]))) or 1.0
            int_bits = max(0, int(np.floor(np.log2(peak))) + 1)
            bits = self.bits or 8
            frac = bits - 1 - int_bits
            scale = np.float32(2.0 ** -frac)
            code, real = f"{src}_fixed", f"{src}_fixed_value"
            quant = Quantize(code, (src,), scale=np.asarray(scale), zero_point=np.asarray(np.float32(0)),
                             lo=-(1 << (bits - 1)), hi=(1 << (bits - 1)) - 1, rounding="ROUND", origin=op.origin)
            back = Affine(real, (code,), scale=np.asarray(Fraction(1, 1 << frac) if frac >= 0 else Fraction(1 << -frac)),
                          bias=np.asarray(Fraction(0)), origin=op.origin)
            i = ops.index(op)
            ops[i:i + 1] = [quant, back, replace(op, inputs=(real,))]
        return graph.with_ops(ops)

    def max_error(self, before: Graph, after: Graph) -> float:
        # Stated per input in the docstring; the check then reports how many outputs still agree.
        return 0.0 if after is before else float("inf")
