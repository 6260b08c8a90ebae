"""The hardware view of a folded graph: a chain of layers with their folding, shared by backends.

A layer is a binary-weight matrix-vector unit (`Dense`) with what follows it fused in:
integer thresholds (a binarized activation), a fixed-point affine (the final scores) or nothing.
Backends render a `Design`; they never look at the IR themselves.

Wire encoding of one element (element i of a vector sits at bits [i*w +: w]):
  Bipolar -> 1 bit, 1 means +1;  Ternary/signed Int/Fixed -> two's complement;  unsigned Int -> binary.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from ..ir.graph import Graph
from ..ir.ops import ArgMax, Dense, FixedAffine, IRError, Reshape, Threshold
from ..ir.types import Bipolar, Element

# Auto folding keeps each layer under this many XNORs (or multiplexed adds) per clock.
AUTO_MAX_PARALLEL = 1 << 14


@dataclass(frozen=True, eq=False)
class Layer:
    index: int
    origin: str  # ONNX node the weights came from
    in_elem: Element
    out_elem: Element
    weights: np.ndarray  # (C, K) int8, -1/+1
    acc_elem: Element  # type of the dot product sum_k x[k] * w[c, k]
    thresholds: np.ndarray | None = None  # (C, L) int64 on the dot product, ascending
    values: np.ndarray | None = None  # (C, L + 1) int64 output value per level
    mult: np.ndarray | None = None  # (C,) int64: out = acc * mult + bias
    bias: np.ndarray | None = None
    pe: int = 1  # output channels computed in parallel (divides C)
    simd: int = 1  # inputs consumed per channel per clock (divides K)

    @property
    def in_count(self) -> int:
        return self.weights.shape[1]

    @property
    def out_count(self) -> int:
        return self.weights.shape[0]

    @property
    def post(self) -> str:
        return "threshold" if self.thresholds is not None else "affine" if self.mult is not None else "none"

    @property
    def cycles(self) -> int:
        """Clocks of compute per frame: every (channel group, input chunk) pair once."""
        return (self.out_count // self.pe) * (self.in_count // self.simd)


@dataclass(frozen=True, eq=False)
class Design:
    name: str
    in_elem: Element
    in_count: int
    in_shape: tuple[int, ...]  # the integer tensor the host hands over, row-major
    layers: tuple[Layer, ...]
    argmax: bool
    out_elem: Element
    out_count: int

    @property
    def cycles_per_frame(self) -> int:
        """Initiation interval of the whole pipeline: its slowest layer."""
        return max(layer.cycles for layer in self.layers)


def lower(graph: Graph, fold: dict | None = None) -> Design:
    """Turn the device part of a folded graph into a Design, with `fold` = {layer: {pe, simd}}."""
    device = [op for op in graph.ops if not graph.on_host(op)]
    if len(graph.outputs) != 1:
        raise IRError("hardware needs exactly one graph output")
    first = device[0].inputs[0] if device else graph.outputs[0]
    in_type = graph.types[first]
    layers, argmax, i = [], False, 0
    while i < len(device):
        op = device[i]
        if isinstance(op, Reshape):
            i += 1
            continue
        if isinstance(op, ArgMax) and i == len(device) - 1:
            argmax = True
            i += 1
            continue
        if not isinstance(op, Dense):
            raise IRError(f"{op.kind} %{op.out} (from ONNX node '{op.origin}') has no hardware "
                          f"mapping here; run the default pipeline first")
        after = device[i + 1] if i + 1 < len(device) else None
        kwargs = {}
        if isinstance(after, Threshold):
            kwargs = dict(thresholds=after.thresholds, values=after.values)
        elif isinstance(after, FixedAffine):
            kwargs = dict(mult=after.mult, bias=after.bias)
        fused = after is not None and kwargs
        out = after.out if fused else op.out
        layers.append(Layer(index=len(layers), origin=op.origin, in_elem=graph.types[op.inputs[0]].elem,
                            out_elem=graph.types[out].elem, weights=op.weights,
                            acc_elem=graph.types[op.out].elem, **kwargs))
        i += 2 if fused else 1
    if not layers:
        raise IRError("the graph has no binary layer to build hardware for")
    out_type = graph.types[graph.outputs[0]]
    layers = _apply_folding(layers, fold)
    return Design(name=graph.name, in_elem=in_type.elem, in_count=in_type.size, in_shape=in_type.shape,
                  layers=tuple(layers), argmax=argmax, out_elem=out_type.elem, out_count=out_type.size)


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _smallest_unit(layer: Layer, max_cycles: int) -> tuple[int, int]:
    """(pe, simd) with the fewest parallel XNORs that still meets max_cycles."""
    c, k = layer.out_count, layer.in_count
    best = None
    for pe in _divisors(c):
        for simd in _divisors(k):
            if (c // pe) * (k // simd) <= max_cycles:
                key = (pe * simd, -simd)  # fewer XNORs first; wide SIMD beats wide PE (fewer accumulators)
                if best is None or key < best[0]:
                    best = (key, (pe, simd))
    return best[1]


def auto_folding(layers: list[Layer]) -> dict[int, dict]:
    """Balance the pipeline: the slowest layer sets the interval, the others fold down to it."""
    def fastest_cycles(layer):
        return min((layer.out_count // pe) * (layer.in_count // simd)
                   for pe in _divisors(layer.out_count) for simd in _divisors(layer.in_count)
                   if pe * simd <= AUTO_MAX_PARALLEL)
    interval = max(fastest_cycles(layer) for layer in layers)
    return {layer.index: dict(zip(("pe", "simd"), _smallest_unit(layer, interval))) for layer in layers}


def _apply_folding(layers: list[Layer], fold: dict | None) -> list[Layer]:
    fold = auto_folding(layers) if fold is None else {int(k): v for k, v in fold.items()}
    out = []
    for layer in layers:
        spec = fold.get(layer.index, {"pe": layer.out_count, "simd": layer.in_count})
        pe, simd = int(spec.get("pe", layer.out_count)), int(spec.get("simd", layer.in_count))
        if layer.out_count % pe or layer.in_count % simd:
            raise IRError(f"layer {layer.index} (ONNX node '{layer.origin}'): pe={pe} must divide "
                          f"{layer.out_count} outputs and simd={simd} must divide {layer.in_count} inputs")
        out.append(Layer(**{**layer.__dict__, "pe": pe, "simd": simd}))
    return out


def load_folding(path: str) -> dict:
    """A folding file: {"layers": {"0": {"pe": 16, "simd": 64}, ...}} or the inner dict itself."""
    with open(path) as f:
        data = json.load(f)
    return data.get("layers", data)


def encode(values: np.ndarray, elem: Element) -> np.ndarray:
    """Element values -> unsigned wire codes (int64), per the table at the top of this file."""
    values = np.asarray(values, dtype=np.int64)
    if isinstance(elem, Bipolar):
        return (values + 1) // 2
    if getattr(elem, "signed", False):
        return values & ((1 << elem.bits) - 1)
    return values


def decode(codes: np.ndarray, elem: Element) -> np.ndarray:
    """Unsigned wire codes -> element values (Fixed stays as its integer code)."""
    codes = np.asarray(codes, dtype=np.int64)
    if isinstance(elem, Bipolar):
        return 2 * codes - 1
    if getattr(elem, "signed", False):
        sign = 1 << (elem.bits - 1)
        return (codes ^ sign) - sign
    return codes


def pack(codes_row: np.ndarray, bits: int) -> int:
    """One vector of wire codes -> one wide integer, element 0 in the least significant bits."""
    word = 0
    for i, c in enumerate(np.asarray(codes_row, dtype=np.int64).tolist()):
        word |= int(c) << (i * bits)
    return word


def unpack(word: int, count: int, bits: int) -> np.ndarray:
    mask = (1 << bits) - 1
    return np.array([(word >> (i * bits)) & mask for i in range(count)], dtype=np.int64)

