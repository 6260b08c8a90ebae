"""ONNX -> IR. Constant sub-graphs are evaluated first; every other node is lowered by the
function registered for its op type (see LOWERINGS at the bottom), or refused by name.

Semantics honoured exactly (see DESIGN.md section 2): QONNX Quant (scale, shift, clamp, round in
float32 on the model input; a multi-level threshold between layers), BipolarQuant (0 -> +1), ONNX
Sign (0 -> 0), MultiThreshold (x >= t), the torch STE forms Add(x, Sub(Sign(x), x)) and
Where(GreaterOrEqual(x, c), a, b), BatchNormalization, and Gemm/MatMul/Conv whose weights are a
scale per output channel times integers (+-1, ternary, up to 8 bits: see weights.py). Other
weights are refused unless the user asks for `weight_bits` (then rounded, and the largest change
reported). The layers around the binary ones: residual Add of two tensors, PReLU/ReLU/LeakyReLU,
average pooling (GlobalAveragePool, AveragePool, ReduceMean) as a sum and an exact division, and
Clip/Hardtanh in front of a sign (where sign(clip(x)) = sign(x)).

A node that cannot be lowered does not fail at once: its outputs become `_Unsupported`, and the
error is raised only if a value the model's output needs depends on it. Straight-through
estimators compute values for the backward pass only (Bi-Real's polynomial ApproxSign:
Sign(x) - p(x) + p(x)), and those must not stop the forward pass from compiling.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

from ..diagnostics import BnncError, node_label, number, quote
from ..ir import exact
from ..ir.graph import Graph
from ..ir.ops import (
    Add,
    Affine,
    ArgMax,
    Conv,
    Dense,
    FloatOp,
    IRError,
    Pool,
    PReLU,
    Quantize,
    Reshape,
    Sign,
    Softmax,
    SumPool,
    Threshold,
    Transpose,
)
from ..ir.types import Real, TensorType, is_integer
from .load import load_model
from .qonnx_ops import ALL_CUSTOM_OPS, QONNX_DOMAINS, int_range, quant_levels
from .weights import MAX_BITS, NotIntegerWeights, integer_rows, quantize_rows


@dataclass(frozen=True)
class _Sub:
    """Sub(a, b) of two tensors, kept symbolic until it turns out to be the STE's Sign(x) - x."""
    a: str
    b: str


@dataclass(frozen=True)
class _Padded:
    """Pad(x) with a constant, kept symbolic so that the Conv reading it pads exactly."""
    x: str
    pads: tuple[int, int, int, int]  # top, left, bottom, right
    value: float


@dataclass(frozen=True)
class _NHWC:
    """An ONNX tensor in N x H x W x C order that is IR value `x` (C x H x W) transposed.

    tf2onnx wraps every conv in NHWC<->NCHW transposes and applies BatchNorm as Mul/Add along
    the last axis; keeping the view lets those transposes cancel instead of reaching hardware.
    """
    x: str


# Ops that act element by element (with per-channel constants): they pass an NHWC view through.
_ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "Sign", "BipolarQuant", "Quant", "Identity", "Dropout",
                "GreaterOrEqual", "Greater", "Less", "LessOrEqual", "Where", "BatchNormalization", "Clip",
                "Relu", "LeakyRelu", "PRelu"}


@dataclass(frozen=True)
class _Compare:
    """x >= c (x > c when `strict`; negated when `negate`: Less, LessOrEqual), kept symbolic
    until a Where turns it into a threshold."""
    x: str
    c: np.ndarray
    strict: bool = False
    negate: bool = False


@dataclass(frozen=True)
class _Clipped:
    """Clip(x, lo, hi), kept symbolic: in front of a sign it is the sign of x when lo < 0 < hi."""
    x: str
    lo: float
    hi: float


@dataclass(frozen=True, eq=False)
class _Unsupported:
    """The outputs of a node that could not be lowered; `error` is raised if anything needs them."""
    error: BnncError


def _safe_name(name: str, taken: set) -> str:
    base = re.sub(r"[^A-Za-z0-9_]", "_", name)[:40].strip("_") or "v"
    if base[0].isdigit():
        base = "v" + base
    name, n = base, 1
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    taken.add(name)
    return name


class _Lowering:
    def __init__(self, model: onnx.ModelProto, name: str, weight_bits: int = 0):
        self.model = model
        self.weight_bits = weight_bits  # 0: refuse weights that are not a scale times integers
        self.weight_notes: list[str] = []  # what quantizing weights changed, for the user
        self.weights_moved = False  # by more than float32 rounding: no error bound is left
        self.levels: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # a weight Quant's (integers, scale)
        self.name = _safe_name(name, set())
        self.consts: dict[str, np.ndarray] = {}
        self.values: dict[str, object] = {}  # ONNX tensor -> IR value name, or a symbolic _Sub/_Compare
        self.types: dict[str, TensorType] = {}
        self.ops: list = []
        self.taken: set = set()
        self.node = None
        self.label = ""
        self.nhwc = False  # constants align to an N x H x W x C view while lowering this node

    # -- helpers used by the lowering functions

    def fail(self, message: str) -> BnncError:
        return BnncError(f"{self.label}: {message}")

    def const(self, index: int, what: str) -> np.ndarray:
        name = self.node.input[index] if index < len(self.node.input) else ""
        if name not in self.consts:
            raise self.fail(f"{what} (input {index}, {quote(name)}) must be a constant")
        return self.consts[name]

    def const_ints(self, index: int, what: str) -> list[int]:
        """A 1-D integer constant such as a shape, axes or pads."""
        c = np.asarray(self.const(index, what))
        if c.ndim != 1 or c.dtype.kind not in "iu":
            raise self.fail(f"{what} must be a 1-D integer tensor, got {c.dtype} of shape {c.shape}")
        return [int(v) for v in c]

    def window_attr(self, name: str, default: list[int], minimum: int) -> list[int]:
        """kernel_shape, strides, dilations (2 entries) or pads (4) of a 2-D window op."""
        values = list(self.attr(name, default))
        count = 4 if name == "pads" else 2
        if len(values) != count or any(v < minimum for v in values):
            raise self.fail(f"{name} {values} must be {count} integers >= {minimum} (2-D windows only)")
        return values

    def value(self, index: int) -> str:
        name = self.node.input[index]
        v = self.values.get(name)
        if isinstance(v, _Clipped):
            raise self.fail(f"input {quote(name)} is a Clip; bnnc supports Clip (Hardtanh) only straight in "
                            f"front of a Sign, where it does not change the sign")
        if not isinstance(v, str):
            raise self.fail(f"input {quote(name)} is not a tensor this lowering can use here")
        return v

    def type_of(self, value: str) -> TensorType:
        return self.types[value]

    def emit(self, cls, inputs, out_name: str | None = None, **attrs) -> str:
        out = _safe_name(out_name or self.node.output[0], self.taken)
        op = cls(out, tuple(inputs), origin=self.node.name or self.node.output[0], **attrs)
        try:
            self.types[out] = op.result_type([self.types[i] for i in inputs])
        except IRError as exc:
            raise self.fail(str(exc).split(": ", 1)[-1]) from None
        self.ops.append(op)
        return out

    def bind(self, value) -> None:
        self.values[self.node.output[0]] = value

    def attr(self, name: str, default=None):
        for a in self.node.attribute:
            if a.name == name:
                v = onnx.helper.get_attribute_value(a)
                return v.decode() if isinstance(v, bytes) else v
        return default

    def channel_param(self, const: np.ndarray, value: str) -> np.ndarray:
        """A constant broadcast against a value, as a () or (C,) array of Fractions."""
        shape = self.type_of(value).shape
        c = np.asarray(const)
        while c.ndim > len(shape):
            if c.shape[0] != 1:
                raise self.fail(f"constant of shape {c.shape} does not broadcast over the batch")
            c = c[0]
        if c.size == 1:
            return exact.fractions(c.reshape(()))
        c = c.reshape((1,) * (len(shape) - c.ndim) + c.shape)
        if self.nhwc:  # aligned to (H, W, C): move its channel axis to the front like the IR's
            c = np.moveaxis(c, -1, 0)
        if c.shape[0] not in (1, shape[0]):
            raise self.fail(f"constant of shape {const.shape} has {c.shape[0]} channels where {shape} has {shape[0]}")
        # A per-channel constant may come materialised at full size (ReActNet's
        # `bias.expand_as(x)`, folded by the exporter): what counts is that its values do not vary.
        first = c[(slice(None),) + (slice(0, 1),) * (c.ndim - 1)]
        if np.any(c != first):
            raise self.fail(f"constant of shape {const.shape} varies within a channel of {shape}; "
                            f"only per-tensor or per-channel constants are supported")
        return exact.fractions(first.reshape(-1))

    def host_const(self, const: np.ndarray, value: str) -> np.ndarray:
        """A constant for float pre-processing, aligned to the value's per-sample shape."""
        shape = self.type_of(value).shape
        c = np.asarray(const, dtype=np.float32)
        while c.ndim > len(shape):
            if c.shape[0] != 1:
                raise self.fail(f"constant of shape {c.shape} does not broadcast over the batch")
            c = c[0]
        return c

    # -- the walk

    def run(self) -> Graph:
        graph = self.model.graph
        for init in graph.initializer:
            self.consts[init.name] = numpy_helper.to_array(init)
        inputs = [i for i in graph.input if i.name not in self.consts]
        if len(inputs) != 1:
            raise BnncError(f"the model has {len(inputs)} non-constant inputs "
                            f"({', '.join(quote(i.name) for i in inputs)}); bnnc needs exactly one")
        inp = inputs[0]
        dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
        if len(dims) < 2 or any(d is None or d <= 0 for d in dims[1:]):
            raise BnncError(f"input {quote(inp.name)}: shape {dims} must be (batch, ...) with fixed "
                            f"per-sample dimensions")
        if inp.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            raise BnncError(f"input {quote(inp.name)}: only float32 inputs are supported")
        in_name = _safe_name(inp.name, self.taken)
        self.types[in_name] = TensorType(Real(), tuple(dims[1:]))
        self.values[inp.name] = in_name
        for index, node in enumerate(graph.node):
            self.node, self.label = node, node_label(node, index)
            known = all(i == "" or i in self.consts for i in node.input)
            if known and node.op_type not in ("Shape",):
                self._fold_constant(node)
                continue
            poisoned = next((v for n in node.input if isinstance(v := self.values.get(n), _Unsupported)), None)
            if poisoned is not None and node.op_type not in ("Add", "Sub"):  # Add/Sub: maybe an STE
                self._bind_all(node, poisoned)
                continue
            try:
                lower = LOWERINGS.get(node.op_type)
                if lower is None or (node.domain not in ("", "ai.onnx") + QONNX_DOMAINS):
                    raise self.fail(f"op {node.op_type} (domain {quote(node.domain or 'ai.onnx')}) is not "
                                    f"supported by bnnc")
                self._lower_with_layout(lower, node)
            except BnncError as exc:
                self._bind_all(node, _Unsupported(exc))
        if len(graph.output) != 1:
            raise BnncError(f"the model has {len(graph.output)} outputs; bnnc needs exactly one")
        out = self.values.get(graph.output[0].name)
        if isinstance(out, _Unsupported):
            raise out.error
        if isinstance(out, _NHWC):
            self.node = graph.node[-1]
            out = self.emit(Transpose, [out.x], f"{graph.output[0].name}_nhwc", perm=(1, 2, 0))
        if not isinstance(out, str):
            raise BnncError(f"output {quote(graph.output[0].name)} is not computed from the input")
        try:
            return Graph(self.name, ((in_name, self.types[in_name]),), tuple(self.ops), (out,))
        except IRError as exc:
            raise BnncError(str(exc)) from None

    def _bind_all(self, node, value: _Unsupported) -> None:
        for name in node.output:
            self.values[name] = value

    def _lower_with_layout(self, lower, node) -> None:
        """Lower one node, passing NHWC views through elementwise ops and materialising them
        (as a Transpose) for anything else."""
        views = {n: v for n in node.input if isinstance(v := self.values.get(n), _NHWC)}
        if views and node.op_type in _ELEMENTWISE and node.op_type != "BatchNormalization":
            saved = dict(self.values)
            self.values.update({n: v.x for n, v in views.items()})
            self.nhwc = True
            try:
                lower(self)
            finally:
                self.nhwc = False
            result = self.values[node.output[0]]
            self.values = {**saved, node.output[0]: _NHWC(result) if isinstance(result, str) else result}
            return
        if views and node.op_type == "Transpose" and list(self.attr("perm") or []) == [0, 3, 1, 2]:
            self.bind(next(iter(views.values())).x)
            return
        for n, v in views.items():
            self.values[n] = self.emit(Transpose, [v.x], f"{n}_nhwc", perm=(1, 2, 0))
        lower(self)

    def _fold_constant(self, node) -> None:
        feeds = {i: self.consts[i] for i in node.input if i}
        try:
            with np.errstate(all="ignore"):  # a NaN or infinity is refused below, not warned about
                results = ReferenceEvaluator(node, new_ops=ALL_CUSTOM_OPS).run(None, feeds)
        except Exception as exc:
            raise self.fail(f"cannot evaluate this constant expression: {str(exc).splitlines()[0][:200]}") from None
        for name, value in zip(node.output, results):
            value = np.asarray(value)
            if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
                raise self.fail(f"this constant expression evaluates to NaN or infinity in {quote(name)}")
            self.consts[name] = value
        if node.op_type == "Quant" and node.domain in QONNX_DOMAINS:
            self._keep_levels(node, feeds)

    def _keep_levels(self, node, feeds) -> None:
        """A weight quantizer's integers and scale, kept beside its float32 output: the float
        product scale * n is rounded to 24 bits, so the weights it gives are not exactly a scale
        times integers any more, while the quantizer's own integers are."""
        args = [feeds.get(i) for i in node.input[:4]]
        if any(a is None for a in args) or np.any(np.asarray(args[2]) != 0):
            return
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        try:
            levels = quant_levels(*args, signed=attrs.get("signed", 1), narrow=attrs.get("narrow", 0),
                                  rounding_mode=attrs.get("rounding_mode", "ROUND"))
            scale = np.broadcast_to(np.asarray(args[1], dtype=np.float32), levels.shape)
        except (ValueError, KeyError, AttributeError):
            return  # the float evaluation above stands
        if np.all(np.abs(levels) <= 1 << (MAX_BITS - 1)):
            self.levels[node.output[0]] = (levels.astype(np.int64), scale)


# ---- lowering functions, one per ONNX op type


def _identity(lw: _Lowering) -> None:
    lw.bind(lw.values[lw.node.input[0]])


def _shape(lw: _Lowering) -> None:
    # A shape read from a dynamic tensor (e.g. x.view(x.size(0), -1)): batch is taken as 1, which
    # is exactly how the reshape lowering below reads a leading batch dimension.
    lw.consts[lw.node.output[0]] = np.array((1,) + lw.type_of(lw.value(0)).shape, dtype=np.int64)


def _reshape_to(lw: _Lowering, target: list[int]) -> None:
    x = lw.value(0)
    shape = lw.type_of(x).shape
    size = int(np.prod(shape))
    dims = [shape[i - 1] if (d == 0 and 0 < i <= len(shape)) else d for i, d in enumerate(target)]
    if not dims or dims[0] not in (1, -1, 0):
        raise lw.fail(f"reshape to {target} must keep the batch as its first dimension")
    rest = [int(d) for d in dims[1:]]
    if rest.count(-1) > 1:
        raise lw.fail(f"reshape to {target} has more than one unknown dimension")
    if -1 in rest:
        known = int(np.prod([d for d in rest if d != -1])) or 1
        rest[rest.index(-1)] = size // known
    if int(np.prod(rest)) != size:
        raise lw.fail(f"cannot reshape a tensor of shape {shape} per sample to {target}")
    lw.bind(x if tuple(rest) == shape else lw.emit(Reshape, [x], shape=tuple(rest)))


def _reshape(lw: _Lowering) -> None:
    _reshape_to(lw, lw.const_ints(1, "the target shape"))


def _flatten(lw: _Lowering) -> None:
    axis = lw.attr("axis", 1)
    if axis != 1:
        raise lw.fail(f"Flatten with axis={axis} would mix samples; only axis=1 is supported")
    _reshape_to(lw, [1, -1])


def _squeeze_like(lw: _Lowering) -> None:
    shape = lw.type_of(lw.value(0)).shape
    axes = lw.attr("axes")
    if axes is None and len(lw.node.input) > 1:
        axes = lw.const_ints(1, "the axes")
    full = [1] + list(shape)
    rank_out = len(full) + (len(axes or []) if lw.node.op_type == "Unsqueeze" else -len(axes or []))
    axes = [a % (rank_out if lw.node.op_type == "Unsqueeze" else len(full)) for a in (axes or [])]
    if 0 in axes:
        raise lw.fail("squeezing or unsqueezing the batch axis is not supported")
    if lw.node.op_type == "Squeeze":
        new = [d for i, d in enumerate(full) if i not in axes] if axes else [1] + [d for d in shape if d != 1]
    else:
        new = full[:]
        for a in sorted(axes):
            new.insert(a, 1)
    _reshape_to(lw, new)


def _quant(lw: _Lowering) -> None:
    x = lw.value(0)
    scale, zp = lw.const(1, "the scale"), lw.const(2, "the zero point")
    width = np.asarray(lw.const(3, "the bit width"))
    if width.size != 1 or not np.isfinite(width).all() or width.item() != int(width.item()) \
            or not 1 <= int(width.item()) <= 32:
        raise lw.fail(f"the bit width must be one integer from 1 to 32, got {width.ravel()[:4].tolist()}")
    bits = int(width.item())
    signed, narrow = bool(lw.attr("signed", 1)), bool(lw.attr("narrow", 0))
    rounding = str(lw.attr("rounding_mode", "ROUND")).upper()
    if np.asarray(scale).size != 1 or np.asarray(zp).size != 1:
        raise lw.fail("only per-tensor scale and zero point are supported on activations")
    s, z = np.float32(np.asarray(scale).item()), np.float32(np.asarray(zp).item())
    if not s > 0:
        raise lw.fail(f"the scale must be positive, got {s}")
    if bits == 1 and signed:  # QONNX reads this as bipolar: (x/s + z >= 0) ? 1 : -1
        shifted = lw.emit(Affine, [x], f"{lw.node.output[0]}_shifted",
                          scale=exact.fractions(np.float32(1) / s), bias=exact.fractions(z))
        sign = lw.emit(Sign, [shifted], f"{lw.node.output[0]}_sign", zero=1)
        lw.bind(lw.emit(Affine, [sign], scale=exact.fractions(s), bias=exact.fractions(-z * s)))
        return
    lo, hi = int_range(bits, signed, narrow)
    if not isinstance(lw.type_of(x).elem, Real):
        _quant_between_layers(lw, x, s, z, lo, hi, rounding)
        return
    if rounding not in ("ROUND", "CEIL", "FLOOR"):
        raise lw.fail(f"rounding mode {rounding} is not supported")
    q = lw.emit(Quantize, [x], f"{lw.node.output[0]}_int", scale=np.asarray(s), zero_point=np.asarray(z),
                lo=lo, hi=hi, rounding=rounding)
    # The dequantization is exact: (q - z) * s with the float32 constants as rationals.
    lw.bind(lw.emit(Affine, [q], scale=exact.fractions(s), bias=-exact.fractions(z) * exact.fractions(s)))


# Where round(clip(v)) reaches level k, as (threshold, strict): the level holds from v >= t, or
# from v > t. Half to even: v = k - 1/2 rounds up to k only for an even k.
_LEVEL_START = {
    "ROUND": lambda k: (Fraction(2 * k - 1, 2), k % 2 == 1),
    "FLOOR": lambda k: (Fraction(k), False),
    "CEIL": lambda k: (Fraction(k - 1), True),
    "ROUND_TO_ZERO": lambda k: (Fraction(k), False) if k > 0 else (Fraction(k - 1), True),
}


def _quant_between_layers(lw: _Lowering, x: str, s, z, lo: int, hi: int, rounding: str) -> None:
    """A multi-bit Quant on exact values: q = round(clip(x / s + z, lo, hi)) is a threshold with
    one level per integer in [lo, hi], then (q - z) * s."""
    if rounding not in _LEVEL_START:
        raise lw.fail(f"rounding mode {rounding} is not supported")
    if s == 0:
        raise lw.fail("a Quant with scale zero is not supported")
    scale, shift = exact.fractions(s), exact.fractions(z)
    scaled = lw.emit(Affine, [x], f"{lw.node.output[0]}_scaled", scale=1 / scale[()], bias=shift)
    starts = [_LEVEL_START[rounding](k) for k in range(lo + 1, hi + 1)]
    q = lw.emit(Threshold, [scaled], f"{lw.node.output[0]}_int",
                thresholds=np.array([[t for t, _ in starts]], dtype=object),
                values=np.array([list(range(lo, hi + 1))], dtype=np.int64), strict=tuple(gt for _, gt in starts))
    lw.bind(lw.emit(Affine, [q], scale=scale, bias=-shift * scale))


def _bipolar_quant(lw: _Lowering) -> None:
    x = _unclipped(lw, zero=1)
    scale = lw.const(1, "the scale")
    sign = lw.emit(Sign, [x], f"{lw.node.output[0]}_sign", zero=1)
    lw.bind(lw.emit(Affine, [sign], scale=lw.channel_param(scale, sign), bias=exact.fractions(np.float32(0))))


def _sign(lw: _Lowering) -> None:
    lw.bind(lw.emit(Sign, [_unclipped(lw, zero=0)], zero=0))


def _multithreshold(lw: _Lowering) -> None:
    x = lw.value(0)
    t = np.asarray(lw.const(1, "the thresholds"), dtype=np.float32)
    if t.ndim != 2:
        raise lw.fail(f"thresholds must have shape (channels, steps), got {t.shape}")
    if lw.attr("data_layout", "NCHW") != "NCHW" and len(lw.type_of(x).shape) > 1:
        raise lw.fail("MultiThreshold with data_layout NHWC is not supported")
    if np.any(np.diff(t, axis=1) < 0):
        raise lw.fail("thresholds must be ascending along each row")
    # out_scale * level + out_bias in float32, as QONNX defines it (a huge bias swallows the level)
    levels = np.arange(t.shape[1] + 1, dtype=np.float32)
    values = exact.fractions(np.float32(lw.attr("out_scale", 1.0)) * levels + np.float32(lw.attr("out_bias", 0.0)))[None]
    lw.bind(lw.emit(Threshold, [x], thresholds=exact.fractions(t), values=values))


def _integer_weights(lw: _Lowering, w: np.ndarray, levels=None) -> tuple[np.ndarray, np.ndarray]:
    """(C, K) float weights -> (int8 integers, per-channel Fraction scale), exactly; `levels`:
    the (integers, scale) of the weight quantizer that produced them, laid out like w."""
    w = np.asarray(w, dtype=np.float32)
    try:
        return integer_rows(w)
    except NotIntegerWeights as bad:
        if levels is not None and _per_row(levels[1]) is not None:
            ints, scale = integer_rows(levels[0].astype(np.float32))  # reduced: +-n rows become +-1
            return ints, scale * _per_row(levels[1])
        if lw.weight_bits:
            ints, scales, moved, relative = quantize_rows(w, lw.weight_bits)
            # Binary rows within float32 noise of +-s: the rounding of XNOR-Net's
            # w + (s*sign(w) - w).detach(), a few ulps of the larger of |w| and s (the original
            # carries that noise itself, and the verify tolerance covers it).
            noise = bool(np.all(np.abs(ints) <= 1)) and relative <= 2.0 ** -16
            lw.weight_notes.append(f"{lw.label}: weights rounded to {lw.weight_bits}-bit integers times a scale "
                                   f"per output channel; the largest weight moved by {moved:.3g}"
                                   f"{' (float32 rounding of the export)' if noise else ''}")
            lw.weights_moved |= not noise
            return ints, scales
        c, (k1, k2) = bad.channel, bad.inputs
        a, b = w[c, k1], w[c, k2]
        near = " -- equal in magnitude up to float32 rounding" if abs(abs(a) - abs(b)) <= 4e-7 * abs(b) else ""
        raise lw.fail(f"weights are not a scale times integers of at most {MAX_BITS} bits: output channel {c} "
                      f"has {number(a)} at input {k1} and {number(b)} at input {k2}{near} (export them through a "
                      f"weight quantizer, or let bnnc round them: --quantize-weights BITS)") from None


def _per_row(scale: np.ndarray) -> np.ndarray | None:
    """A quantizer's scale laid out like its (C, ...) weights, as one Fraction per row (None if it
    varies within a row)."""
    rows = scale.reshape(scale.shape[0], -1)
    if np.any(rows != rows[:, :1]):
        return None
    return exact.fractions(rows[:, 0])


def _levels_of(lw: _Lowering, index: int, arrange) -> tuple[np.ndarray, np.ndarray] | None:
    """The weight quantizer's (integers, scale) behind input `index`, arranged like the weights."""
    found = lw.levels.get(lw.node.input[index])
    return None if found is None else tuple(arrange(np.asarray(a)) for a in found)


def _dense(lw: _Lowering, x: str, w: np.ndarray, bias: np.ndarray | None, alpha: float = 1.0, levels=None) -> None:
    shape = lw.type_of(x).shape
    if len(shape) != 1 or shape[0] != w.shape[1]:
        raise lw.fail(f"weights of shape {w.shape[::-1]} do not fit an input of shape {shape}")
    ints, scale = _integer_weights(lw, w, levels)
    acc = lw.emit(Dense, [x], f"{lw.node.output[0]}_acc", weights=ints)
    a = scale * Fraction(alpha)
    b = exact.fractions(np.zeros(w.shape[0], np.float32)) if bias is None else lw.channel_param(bias, acc)
    if len(set(a.tolist())) == 1:
        a = np.asarray(a[0], dtype=object)
    lw.bind(lw.emit(Affine, [acc], scale=a, bias=b))


def _gemm(lw: _Lowering) -> None:
    if lw.attr("transA", 0):
        raise lw.fail("Gemm with transA=1 is not supported")
    w = lw.const(1, "the weight matrix B")
    if w.ndim != 2:
        raise lw.fail(f"weight matrix B must be 2-D, got shape {w.shape}")
    arrange = (lambda a: a) if lw.attr("transB", 0) else (lambda a: a.T)  # noqa: E731
    w = arrange(w)
    bias = None
    if len(lw.node.input) > 2 and lw.node.input[2]:
        bias = np.asarray(lw.const(2, "the bias C"), dtype=np.float32) * np.float32(lw.attr("beta", 1.0))
    _dense(lw, lw.value(0), w, bias, lw.attr("alpha", 1.0), _levels_of(lw, 1, arrange))


def _matmul(lw: _Lowering) -> None:
    w = lw.const(1, "the weight matrix")
    if w.ndim != 2:
        raise lw.fail(f"weight matrix must be 2-D, got shape {w.shape}")
    _dense(lw, lw.value(0), w.T, None, levels=_levels_of(lw, 1, lambda a: a.T))


def _batchnorm(lw: _Lowering) -> None:
    x = lw.value(0)
    channels = lw.type_of(x).shape[0]
    if lw.attr("training_mode", 0):
        raise lw.fail("training_mode BatchNormalization (batch statistics) is not supported; export in eval mode")

    def per_channel(i, what):  # BatchNormalization parameters are (C,), along axis 1
        p = np.asarray(lw.const(i, what), np.float32).reshape(-1)
        if p.size != channels:
            raise lw.fail(f"{what} has {p.size} entries for {channels} channels")
        return p

    gamma, beta, mean = (exact.fractions(per_channel(i, n)) for i, n in
                         enumerate(("the scale", "the bias", "the mean"), 1))
    # var + eps is rounded to float32 as every runtime does (it decides where exact ties sit);
    # the square root and everything after it are exact.
    var = per_channel(4, "the variance") + np.float32(lw.attr("epsilon", 1e-5))
    if np.any(~(var > 0)):
        raise lw.fail(f"variance + epsilon is {var[~(var > 0)][0]} in channel {np.flatnonzero(~(var > 0))[0]}; "
                      f"it must be positive")
    sigma = np.array([exact.sqrt(v) for v in exact.fractions(var)], dtype=object)
    scale = gamma / sigma
    lw.bind(lw.emit(Affine, [x], scale=scale, bias=beta - mean * scale))


_FLOAT_FN = {"Add": ("add", "add"), "Sub": ("sub", "rsub"), "Mul": ("mul", "mul"),
             "Div": ("div", "rdiv"), "Pow": ("pow", None)}


def _arith(lw: _Lowering) -> None:
    op = lw.node.op_type
    names = lw.node.input
    dynamic = [n for n in names if n not in lw.consts]
    if len(dynamic) == 2:
        return _two_tensors(lw)
    const_first = names[0] in lw.consts
    c = lw.consts[names[0 if const_first else 1]]
    x = lw.values.get(names[1 if const_first else 0])
    if not isinstance(x, str):
        raise lw.fail("operand is not a tensor this lowering can use here")
    if isinstance(lw.type_of(x).elem, Real):
        fn = _FLOAT_FN[op][1 if const_first else 0]
        if fn is None:
            raise lw.fail("a tensor as exponent is not supported")
        return lw.bind(lw.emit(FloatOp, [x], fn=fn, const=lw.host_const(c, x)))
    if op == "Pow":
        raise lw.fail("Pow between layers is not supported (only in input pre-processing)")
    p = lw.channel_param(c, x)
    one, zero = np.asarray(Fraction(1), dtype=object), np.asarray(Fraction(0), dtype=object)
    if op == "Div" and const_first:
        raise lw.fail("dividing a constant by a tensor is not supported between layers")
    if op == "Div" and any(v == 0 for v in np.atleast_1d(p)):
        raise lw.fail("division by zero")
    if op == "Add":
        scale, bias = one, p
    elif op == "Mul":
        scale, bias = p, zero
    elif op == "Sub":
        scale, bias = (-one, p) if const_first else (one, -p)
    else:  # Div by a constant
        scale, bias = np.vectorize(lambda v: 1 / v, otypes=[object])(p), zero
    lw.bind(lw.emit(Affine, [x], scale=np.asarray(scale, dtype=object), bias=np.asarray(bias, dtype=object)))


def _magnitude_bound(lw: _Lowering, value: str):
    """An upper bound on |value| from the ops computing it, or None where it depends on float data."""
    elem = lw.type_of(value).elem
    if hasattr(elem, "lo"):  # bipolar, ternary, integers
        return max(abs(elem.lo), abs(elem.hi))
    op = next((o for o in lw.ops if o.out == value), None)
    src = _magnitude_bound(lw, op.inputs[0]) if op is not None and op.inputs else None
    if src is None:
        return None
    if isinstance(op, Affine):
        return max(abs(v) for v in np.ravel(op.scale)) * src + max(abs(v) for v in np.ravel(op.bias))
    if isinstance(op, (Dense, Conv)):
        return src * int(np.prod(op.weights.shape[1:]))
    return src if isinstance(op, (Reshape, Transpose, Pool)) else None


def _two_tensors(lw: _Lowering) -> None:
    """The straight-through-estimator form p + (Sign(x) - p), which is Sign(x) in float32 while
    |p| < 2**24 (beyond that Sign(x) - p rounds to -p and the sum is 0) -- p is x, or a value
    only the backward pass uses; else Add of two tensors is a residual shortcut."""
    op, (a, b) = lw.node.op_type, (lw.values.get(n) for n in lw.node.input[:2])
    if op == "Sub" and isinstance(a, str) and isinstance(b, (str, _Unsupported)):
        return lw.bind(_Sub(a, b))
    if op == "Add":
        for x, d in ((a, b), (b, a)):
            if isinstance(d, _Sub) and d.b is x:
                bound = _magnitude_bound(lw, x) if isinstance(x, str) else None
                if bound is not None and bound >= 2 ** 24:
                    raise lw.fail(f"straight-through estimator on values up to {float(bound):.3g}: in float32 "
                                  f"it is Sign(x) only while |x| < 2**24")
                return lw.bind(d.a)
    poisoned = next((v for v in (a, b) if isinstance(v, _Unsupported)), None)
    if poisoned is not None:
        return lw.bind(poisoned)
    if op == "Add":
        x, y = lw.value(0), lw.value(1)
        if isinstance(lw.type_of(x).elem, Real) or isinstance(lw.type_of(y).elem, Real):
            raise lw.fail("Add of two tensors on float input data (before the first quantizer) is not supported")
        if lw.type_of(x).shape != lw.type_of(y).shape:
            raise lw.fail(f"Add of tensors of shapes {lw.type_of(x).shape} and {lw.type_of(y).shape}: "
                          f"only equal shapes (a residual shortcut) are supported")
        return lw.bind(lw.emit(Add, [x, y]))
    raise lw.fail(f"{op} of two tensors is only supported as a residual Add or as the straight-through "
                  f"estimator x + (Sign(x) - x)")


def _compare(lw: _Lowering) -> None:
    strict = lw.node.op_type in ("Greater", "LessOrEqual")
    negate = lw.node.op_type in ("Less", "LessOrEqual")
    lw.bind(_Compare(lw.value(0), lw.const(1, "the comparison constant"), strict, negate))


def _where(lw: _Lowering) -> None:
    cond = lw.values.get(lw.node.input[0])
    if not isinstance(cond, _Compare):
        raise lw.fail("Where is only supported as Where(x >= c, a, b) (or >, <, <=) with constants c, a, b")
    a, b = lw.const(1, "the value if true"), lw.const(2, "the value if false")
    if cond.negate:
        a, b = b, a
    t = lw.channel_param(cond.c, cond.x)
    hi, lo = lw.channel_param(a, cond.x), lw.channel_param(b, cond.x)
    channels = lw.type_of(cond.x).shape[0]
    per = lambda p: np.broadcast_to(p, (channels,))  # noqa: E731
    if t.ndim == 0 and lo.ndim == 0 and hi.ndim == 0:
        thresholds, values = np.array([[t[()]]], dtype=object), np.array([[lo[()], hi[()]]], dtype=object)
    else:
        thresholds = per(t).reshape(-1, 1).astype(object)
        values = np.stack([per(lo), per(hi)], axis=1).astype(object)
    lw.bind(lw.emit(Threshold, [cond.x], thresholds=thresholds, values=values, strict=(True,) if cond.strict else ()))


def _clip(lw: _Lowering) -> None:
    x = lw.value(0)
    lo, hi = lw.attr("min", -np.inf), lw.attr("max", np.inf)
    if len(lw.node.input) > 1 and lw.node.input[1]:
        lo = float(np.asarray(lw.const(1, "the minimum")).item())
    if len(lw.node.input) > 2 and lw.node.input[2]:
        hi = float(np.asarray(lw.const(2, "the maximum")).item())
    lw.bind(_Clipped(x, float(lo), float(hi)))


def _unclipped(lw: _Lowering, zero: int) -> str:
    """The input of a sign; a Clip in front of it is dropped where it cannot change the sign:
    lo < 0 < hi (for a sign that maps 0 to +1, lo < 0 <= hi)."""
    v = lw.values.get(lw.node.input[0])
    if not isinstance(v, _Clipped):
        return lw.value(0)
    if v.lo < 0 and (v.hi > 0 or (zero == 1 and v.hi == 0)):
        return v.x
    raise lw.fail(f"Clip to [{v.lo:g}, {v.hi:g}] in front of a sign changes the sign of some "
                  f"values; only clips with min < 0 < max are supported there")


def _prelu(lw: _Lowering) -> None:
    x = lw.value(0)
    if isinstance(lw.type_of(x).elem, Real):
        raise lw.fail(f"{lw.node.op_type} on float input data (before the first quantizer) is not supported")
    if lw.node.op_type == "Relu":
        slope = exact.fractions(np.float32(0))
    elif lw.node.op_type == "LeakyRelu":
        slope = exact.fractions(np.float32(lw.attr("alpha", 0.01)))
    else:
        slope = lw.channel_param(lw.const(1, "the slope"), x)
    if is_integer(lw.type_of(x).elem) and all(v == 1 for v in np.ravel(slope)):
        return lw.bind(x)
    lw.bind(lw.emit(PReLU, [x], slope=slope))


def _average(lw: _Lowering, x: str, kernel: tuple[int, int], stride: tuple[int, int]) -> str:
    total = lw.emit(SumPool, [x], f"{lw.node.output[0]}_sum", kernel=kernel, stride=stride)
    return lw.emit(Affine, [total], scale=np.asarray(Fraction(1, kernel[0] * kernel[1]), dtype=object),
                   bias=np.asarray(Fraction(0), dtype=object))


def _global_average_pool(lw: _Lowering) -> None:
    x = lw.value(0)
    shape = lw.type_of(x).shape
    if len(shape) != 3:
        raise lw.fail(f"GlobalAveragePool expects an N x C x H x W map, got {shape} per sample")
    lw.bind(_average(lw, x, shape[1:], shape[1:]))


def _average_pool(lw: _Lowering) -> None:
    x = lw.value(0)
    if any(lw.window_attr("pads", [0, 0, 0, 0], 0)) or lw.attr("ceil_mode", 0) \
            or any(d != 1 for d in lw.window_attr("dilations", [1, 1], 1)):
        raise lw.fail("AveragePool with padding, ceil_mode or dilation is not supported")
    if len(lw.type_of(x).shape) != 3:
        raise lw.fail(f"AveragePool expects an N x C x H x W map, got {lw.type_of(x).shape} per sample")
    kernel = tuple(lw.window_attr("kernel_shape", [], 1))
    lw.bind(_average(lw, x, kernel, tuple(lw.window_attr("strides", list(kernel), 1))))


def _reduce_mean(lw: _Lowering) -> None:
    x = lw.value(0)
    shape = lw.type_of(x).shape
    axes = lw.attr("axes")
    if axes is None and len(lw.node.input) > 1 and lw.node.input[1]:
        axes = lw.const_ints(1, "the axes")
    if len(shape) != 3 or sorted(a % 4 for a in (axes or [])) != [2, 3]:
        raise lw.fail(f"ReduceMean is supported over the two spatial axes of an N x C x H x W map "
                      f"(axes {axes} of a {shape} map)")
    mean = _average(lw, x, shape[1:], shape[1:])
    lw.bind(mean if lw.attr("keepdims", 1) else lw.emit(Reshape, [mean], shape=(shape[0],)))


def _integer_kernels(lw: _Lowering, w: np.ndarray, levels=None) -> tuple[np.ndarray, np.ndarray]:
    flat = None if levels is None else tuple(a.reshape(a.shape[0], -1) for a in levels)
    ints, scale = _integer_weights(lw, w.reshape(w.shape[0], -1), flat)
    return ints.reshape(w.shape), scale


def _ungrouped(lw: _Lowering, w: np.ndarray, groups: int, in_shape) -> np.ndarray:
    """A grouped (or depthwise) kernel as the full one: output channel o reads only the input
    channels of its group, every other weight is 0 -- the same sums, exactly."""
    if groups == 1:
        return w
    o, per_group = w.shape[:2]
    if groups < 1 or o % groups or len(in_shape) != 3 or in_shape[0] != per_group * groups:
        raise lw.fail(f"group={groups} does not fit a kernel of shape {w.shape} on an input of shape {in_shape}")
    full = np.zeros((o, per_group * groups) + w.shape[2:], dtype=w.dtype)
    for out in range(o):
        g = out // (o // groups)
        full[out, g * per_group:(g + 1) * per_group] = w[out]
    return full


def _conv(lw: _Lowering) -> None:
    src = lw.values.get(lw.node.input[0])
    pads, pad_value = (0, 0, 0, 0), 0.0
    if isinstance(src, _Padded):
        src, pads, pad_value = src.x, src.pads, src.value
    if not isinstance(src, str):
        raise lw.fail("input is not a tensor this lowering can use here")
    w = np.asarray(lw.const(1, "the kernel"), np.float32)
    if w.ndim != 4:
        raise lw.fail(f"only 2-D convolutions are supported (kernel shape {w.shape})")
    if lw.attr("kernel_shape") is not None and list(lw.attr("kernel_shape")) != list(w.shape[2:]):
        raise lw.fail(f"kernel_shape {lw.attr('kernel_shape')} does not match the kernel's shape {w.shape}")
    w = _ungrouped(lw, w, int(lw.attr("group", 1)), lw.type_of(src).shape)
    if any(d != 1 for d in lw.window_attr("dilations", [1, 1], 1)):
        raise lw.fail("dilated convolutions are not supported")
    if lw.attr("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise lw.fail(f"auto_pad={lw.attr('auto_pad')} is not supported; export with explicit pads")
    own = lw.window_attr("pads", [0, 0, 0, 0], 0)
    if any(own) and any(pads):
        if pad_value != 0:
            raise lw.fail("a Pad with a non-zero value followed by a zero-padding Conv is not supported")
    top, left, bottom, right = pads
    pads = (top + own[0], left + own[1], bottom + own[2], right + own[3])
    if not any(pads):
        pad_value = 0.0
    if pad_value not in (0.0, 1.0, -1.0):
        raise lw.fail(f"padding with {number(pad_value)} is not supported: binary convolutions pad with 0 "
                      f"(no contribution) or with a bit (+1 or -1)")
    levels = _levels_of(lw, 1, lambda a: a) if int(lw.attr("group", 1)) == 1 else None
    ints, scale = _integer_kernels(lw, w, levels)
    acc = lw.emit(Conv, [src], f"{lw.node.output[0]}_acc", weights=ints,
                  stride=tuple(lw.window_attr("strides", [1, 1], 1)), pads=pads, pad_value=int(pad_value))
    a = scale
    if len(set(a.tolist())) == 1:
        a = np.asarray(a[0], dtype=object)
    bias = np.zeros(w.shape[0], np.float32)
    if len(lw.node.input) > 2 and lw.node.input[2]:
        bias = np.asarray(lw.const(2, "the bias"), np.float32)
    # A pad value of +-1 is in the units of the padded tensor; fold-constants rescales it.
    lw.bind(lw.emit(Affine, [acc], scale=a, bias=exact.fractions(bias)))


def _pad(lw: _Lowering) -> None:
    x = lw.value(0)
    mode = lw.attr("mode", "constant")
    pads = lw.attr("pads")
    if pads is None:
        pads = lw.const_ints(1, "the pads")
    value = 0.0
    if len(lw.node.input) > 2 and lw.node.input[2]:
        value = float(np.asarray(lw.const(2, "the pad value")).item())
    rank = len(lw.type_of(x).shape) + 1
    if mode != "constant" or len(pads) != 2 * rank or rank != 4:
        raise lw.fail("only constant padding of N x C x H x W maps is supported")
    begin, end = pads[:rank], pads[rank:]
    if begin[0] or begin[1] or end[0] or end[1]:
        raise lw.fail("padding the batch or channel axis is not supported")
    lw.bind(_Padded(x, (begin[2], begin[3], end[2], end[3]), value))


def _maxpool(lw: _Lowering) -> None:
    x = lw.value(0)
    if any(lw.window_attr("pads", [0, 0, 0, 0], 0)) or lw.attr("ceil_mode", 0) \
            or any(d != 1 for d in lw.window_attr("dilations", [1, 1], 1)):
        raise lw.fail("MaxPool with padding, ceil_mode or dilation is not supported")
    if len(lw.node.output) > 1 and lw.node.output[1]:
        raise lw.fail("MaxPool's indices output is not supported")
    kernel = tuple(lw.window_attr("kernel_shape", [], 1))
    stride = tuple(lw.window_attr("strides", list(kernel), 1))
    channels = lw.type_of(x).shape[0]
    lw.bind(lw.emit(Pool, [x], kernel=kernel, stride=stride, modes=np.ones(channels, dtype=np.int8)))


def _transpose(lw: _Lowering) -> None:
    x = lw.value(0)
    rank = len(lw.type_of(x).shape)
    perm = list(lw.attr("perm", list(range(rank, -1, -1))))
    if perm[0] != 0:
        raise lw.fail(f"transposing the batch axis away (perm {perm}) is not supported")
    perm = tuple(p - 1 for p in perm[1:])
    if perm == (1, 2, 0) and not isinstance(lw.type_of(x).elem, Real):
        return lw.bind(_NHWC(x))  # a layout view; materialised only if something needs it
    lw.bind(x if perm == tuple(range(rank)) else lw.emit(Transpose, [x], perm=perm))


def _softmax(lw: _Lowering) -> None:
    x = lw.value(0)
    if len(lw.type_of(x).shape) != 1 or lw.attr("axis", -1) not in (1, -1):
        raise lw.fail("Softmax is supported over the class vector only")
    lw.bind(lw.emit(Softmax, [x]))


def _argmax(lw: _Lowering) -> None:
    x = lw.value(0)
    shape = lw.type_of(x).shape
    if len(shape) != 1 or lw.attr("axis", 0) not in (1, -1) or lw.attr("select_last_index", 0):
        raise lw.fail("ArgMax is supported over the class axis of a vector (axis=1), first index")
    lw.bind(lw.emit(ArgMax, [x]))


LOWERINGS = {
    "Identity": _identity, "Dropout": _identity, "Shape": _shape,
    "Reshape": _reshape, "Flatten": _flatten, "Squeeze": _squeeze_like, "Unsqueeze": _squeeze_like,
    "Quant": _quant, "BipolarQuant": _bipolar_quant, "Sign": _sign, "MultiThreshold": _multithreshold,
    "Gemm": _gemm, "MatMul": _matmul, "BatchNormalization": _batchnorm,
    "Add": _arith, "Sub": _arith, "Mul": _arith, "Div": _arith, "Pow": _arith,
    "GreaterOrEqual": _compare, "Greater": _compare, "Less": _compare, "LessOrEqual": _compare,
    "Where": _where, "ArgMax": _argmax, "Clip": _clip,
    "Relu": _prelu, "LeakyRelu": _prelu, "PRelu": _prelu,
    "GlobalAveragePool": _global_average_pool, "AveragePool": _average_pool, "ReduceMean": _reduce_mean,
    "Conv": _conv, "Pad": _pad, "MaxPool": _maxpool, "Transpose": _transpose, "Softmax": _softmax,
}


def lower(model: onnx.ModelProto, name: str = "model", weight_bits: int = 0) -> Graph:
    """The IR of a loaded model; BnncError names the node for anything unsupported.
    weight_bits: round weights that are not a scale times integers to this many bits (0: refuse)."""
    return lower_with_notes(model, name, weight_bits)[0]


def lower_with_notes(model: onnx.ModelProto, name: str = "model", weight_bits: int = 0) -> tuple[Graph, list[str], bool]:
    """lower(), one note per weight layer that weight_bits rounded (what it changed), and whether
    any moved by more than float32 rounding (then the model's outputs have no stated bound)."""
    lowering = _Lowering(model, name, weight_bits)
    return lowering.run(), lowering.weight_notes, lowering.weights_moved


def import_onnx(path: str | Path, weight_bits: int = 0) -> Graph:
    return lower(load_model(path), Path(path).stem, weight_bits)
