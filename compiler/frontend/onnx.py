"""ONNX -> IR. Constant sub-graphs are evaluated first; every other node is lowered by the
function registered for its op type (see LOWERINGS at the bottom), or refused by name. The
lowering functions live by kind: layout.py (reshapes, transposes, pools, the head), quantizers.py,
weight_layers.py, real_valued.py; this module walks the graph and handles the arithmetic (BatchNorm,
Add/Sub/Mul/Div with constants, the STE and the residual Add).

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

from ..diagnostics import BnncError, node_label, quote
from ..ir import exact
from ..ir.fixed_ops import Add
from ..ir.graph import Graph
from ..ir.ops import Affine, Conv, Dense, FloatOp, IRError, Pool, Reshape, Transpose
from ..ir.types import Real, TensorType, is_integer
from .layout import (
    _NHWC,
    _argmax,
    _flatten,
    _identity,
    _maxpool,
    _reshape,
    _shape,
    _softmax,
    _squeeze_like,
    _transpose,
)
from .load import load_model
from .qonnx_ops import ALL_CUSTOM_OPS, QONNX_DOMAINS, quant_levels
from .quantizers import _bipolar_quant, _multithreshold, _quant, _sign
from .real_valued import _average_pool, _clip, _Clipped, _compare, _global_average_pool, _prelu, _reduce_mean, _where
from .weight_layers import _conv, _gemm, _matmul, _pad
from .weights import MAX_BITS


@dataclass(frozen=True)
class _Sub:
    """Sub(a, b) of two tensors, kept symbolic until it turns out to be the STE's Sign(x) - x."""
    a: str
    b: str | _Unsupported


# Ops that act element by element (with per-channel constants): they pass an NHWC view through.
_ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "Sign", "BipolarQuant", "Quant", "Identity", "Dropout",
                "GreaterOrEqual", "Greater", "Less", "LessOrEqual", "Where", "BatchNormalization", "Clip",
                "Relu", "LeakyRelu", "PRelu"}


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
        self._node: onnx.NodeProto | None = None
        self.label = ""
        self.nhwc = False  # constants align to an N x H x W x C view while lowering this node

    @property
    def node(self) -> onnx.NodeProto:
        """The node being lowered; the walk in `run` sets it before any helper reads it."""
        assert self._node is not None, "no node is being lowered"
        return self._node

    @node.setter
    def node(self, node: onnx.NodeProto) -> None:
        self._node = node

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
        self.types[in_name] = TensorType(Real(), tuple(d for d in dims[1:] if d is not None))  # none is: see above
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
            levels = quant_levels(args[0], args[1], args[2], args[3], signed=attrs.get("signed", 1),
                                  narrow=attrs.get("narrow", 0),
                                  rounding_mode=attrs.get("rounding_mode", "ROUND"))
            scale = np.broadcast_to(np.asarray(args[1], dtype=np.float32), levels.shape)
        except (ValueError, KeyError, AttributeError):
            return  # the float evaluation above stands
        if np.all(np.abs(levels) <= 1 << (MAX_BITS - 1)):
            self.levels[node.output[0]] = (levels.astype(np.int64), scale)


# ---- lowering functions, one per ONNX op type


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
    if is_integer(elem):  # bipolar, ternary, integers
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
