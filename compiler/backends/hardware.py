"""The hardware view of a folded graph: a chain of layers with their folding, shared by backends.

A `Layer` is a binary-weight matrix-vector unit with what follows it fused in: integer
thresholds (a binarized activation), a fixed-point affine (the final scores) or nothing. A conv
layer is the same unit fed by a sliding window (`window`), once per output pixel. A `PoolLayer`
is a streaming max/min pool. Backends render a `Design`; they never look at the IR themselves.

Feature maps stream pixel by pixel in raster order, all channels of a pixel together (HWC); a
conv's weight rows are laid out in the window's order (kernel row, kernel column, channel). A
dense layer reading a map takes the whole map as one vector in that order, and its weight columns
are permuted to match whatever Flatten/Reshape/Transpose the model applied (NCHW or NHWC).

Wire encoding of one element (element i of a vector sits at bits [i*w +: w]):
  Bipolar -> 1 bit, 1 means +1;  Ternary/signed Int/Fixed -> two's complement;  unsigned Int -> binary.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .. import interp
from ..ir.fixed_ops import Add, FixedAffine
from ..ir.graph import Graph
from ..ir.ops import ArgMax, Conv, Dense, IRError, Op, Pool, Reshape, Reuse, Threshold, Transpose, weight_element
from ..ir.types import Bipolar, Int, IntegerElement, Ternary, is_integer
from .hardware_form import unmapped, verify_hardware_form
from .residual_blocks import FIXED_POINT_LIMIT, Block, residual_blocks, sum_pools_as_convs

# Auto folding keeps each layer under this many XNORs (or multiplexed adds) per clock.
AUTO_MAX_PARALLEL = 1 << 14


@dataclass(frozen=True)
class InputThresholds:
    """A residual layer binarizes its own fixed-point input (the block's sign): element x of
    channel c becomes values[c, #{l : x >= thresholds[c, l]}] before the dot product."""

    thresholds: np.ndarray  # (C_in, L) int64, ascending
    values: np.ndarray  # (C_in, L + 1) int64
    elem: IntegerElement  # of the values: what the dot product reads
    masked: bool = False  # zero padding reaches the sign with an in-map bit, and becomes a 0 there


@dataclass(frozen=True)
class AffineStage:
    """One fixed-point affine after a residual layer's shortcut add (ReActNet's RPReLU: the shift
    in, the PReLU, the shift out): out = floor((x * m + bias) / 2**shift), m = neg_mult[c] where
    x < 0 (a PReLU) else mult[c], on the previous stage's code."""

    mult: np.ndarray  # (C,) int64
    neg_mult: np.ndarray | None
    bias: np.ndarray
    shift: int
    in_elem: IntegerElement
    out_elem: IntegerElement


@dataclass(frozen=True)
class Shortcut:
    """Bi-Real's real-valued shortcut, read from the conv's own window: output channel c is
    (post-op code << main_shift) + (sum of channel c at the kernel positions `taps`) << tap_shift
    -- the centre for x + f(x), the 2x2 of an average pool for a stride-2 block."""

    taps: tuple[int, ...]  # kernel positions, row * kw + column
    main_shift: int
    tap_shift: int
    sum_elem: IntegerElement  # of the sum
    after: tuple[AffineStage, ...] = ()  # applied to the sum, in order; the last gives the layer's output


@dataclass(frozen=True, eq=False)
class Layer:
    index: int
    origin: str  # ONNX node the weights came from
    in_elem: IntegerElement
    out_elem: IntegerElement
    weights: np.ndarray  # (C, K) int8: -1/+1, or the integers of ternary / multi-bit weights
    acc_elem: IntegerElement  # type of the dot product sum_k x[k] * w[c, k]
    thresholds: np.ndarray | None = None  # (C, L) int64 on the dot product, ascending
    values: np.ndarray | None = None  # (C, L + 1) int64 output value per level
    mult: np.ndarray | None = None  # (C,) int64: out = floor((acc * mult + bias) / 2**shift)
    bias: np.ndarray | None = None
    shift: int = 0
    pe: int = 1  # output channels computed in parallel (divides C)
    simd: int = 1  # inputs consumed per channel per clock (divides K)
    window: "Window | None" = None  # set for a conv layer
    reuse: Reuse | None = None  # channel-reuse tree over the rows of `weights`
    act: InputThresholds | None = None  # a residual layer: the sign of its fixed-point input
    shortcut: Shortcut | None = None  # ... and the input added back to its output

    @property
    def dot_elem(self) -> IntegerElement:
        """What the dot product reads: the input, or its binarized form in a residual layer."""
        return self.act.elem if self.act is not None else self.in_elem

    @property
    def vectors(self) -> int:
        """Matrix-vector products per frame: one per output pixel of a conv, else one."""
        return self.window.out_hw[0] * self.window.out_hw[1] if self.window else 1

    @property
    def weight_elem(self) -> Bipolar | Ternary | Int:
        """Bipolar for +-1 weights (XNOR-popcount), else Ternary or an Int (multiply-add)."""
        return weight_element(self.weights)

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
        """Clocks of compute per frame: every (channel group, input chunk) pair once per vector."""
        return self.vectors * (self.out_count // self.pe) * (self.in_count // self.simd)


@dataclass(frozen=True)
class Window:
    """Sliding-window geometry of a conv layer. Padded positions hold `pad_value`: 0 means "not
    a bit" -- they must add nothing to the dot product -- while +-1 is an ordinary bit."""

    in_shape: tuple[int, int, int]  # C, H, W
    kernel: tuple[int, int]
    stride: tuple[int, int]
    pads: tuple[int, int, int, int]  # top, left, bottom, right
    pad_value: int
    out_hw: tuple[int, int]

    def valid_counts(self) -> np.ndarray:
        """(OH, OW): how many window positions of each output pixel are inside the image, times C."""
        c, h, w = self.in_shape
        top, left = self.pads[:2]
        rows = np.arange(self.out_hw[0])[:, None] * self.stride[0] - top + np.arange(self.kernel[0])[None]
        cols = np.arange(self.out_hw[1])[:, None] * self.stride[1] - left + np.arange(self.kernel[1])[None]
        vr = ((rows >= 0) & (rows < h)).sum(1)
        vc = ((cols >= 0) & (cols < w)).sum(1)
        return vr[:, None] * vc[None, :] * c


@dataclass(frozen=True, eq=False)
class PoolLayer:
    """Streaming pool over a C x H x W map: per channel max (mode +1) or min (-1); on bipolar
    values that is an OR or an AND of bits."""

    index: int
    origin: str
    elem: IntegerElement
    in_shape: tuple[int, int, int]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    modes: np.ndarray  # (C,) int8

    @property
    def out_shape(self) -> tuple[int, int, int]:
        c, h, w = self.in_shape
        return c, (h - self.kernel[0]) // self.stride[0] + 1, (w - self.kernel[1]) // self.stride[1] + 1

    @property
    def cycles(self) -> int:
        """One input pixel per clock."""
        return self.in_shape[1] * self.in_shape[2]


@dataclass(frozen=True, eq=False)
class Design:
    name: str
    in_elem: IntegerElement
    in_count: int
    in_shape: tuple[int, ...]  # the integer tensor the host hands over
    layers: tuple[Layer | PoolLayer, ...]
    argmax: bool
    out_elem: IntegerElement
    out_count: int

    in_order: str = "flat"  # "flat": row-major; "hwc": a map streamed pixel by pixel
    # K > 0: the model's constants were rounded to at most K signed powers of two
    # (fold-fixed-point{multiplier-free=K}); backends build every product by them as shifts and adds
    multiplier_free: int = 0
    # the Verilog backend registers every matrix-vector unit's datapath and output handshake
    # (`bnnc compile --registered`, for Fmax; verilog_timing says what it costs in clocks)
    registered: bool = False

    @property
    def cycles_per_frame(self) -> int:
        """The slowest layer's own clocks per frame (matrix-vector steps; a pool's pixels). A lower
        bound on the pipeline's interval: the Verilog timing model (verilog_timing.py) adds the
        line buffers' gaps at row ends and between frames."""
        return max(layer.cycles for layer in self.layers)

    def serialize(self, value: np.ndarray) -> np.ndarray:
        """The host's input tensor (batch first) -> (N, in_count) in the hardware's order."""
        if self.in_order == "hwc":
            value = value.transpose(0, 2, 3, 1)
        return value.reshape(len(value), -1)


def _integer_elem(graph: Graph, value: str) -> IntegerElement:
    """The element type of a value that hardware carries: lowering reaches only values that the
    folding passes made integer (it refuses a weight layer reading anything else)."""
    elem = graph.types[value].elem
    assert is_integer(elem), f"%{value} is {elem}, not integer"
    return elem


def _chw(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """The (C, H, W) shape of a map that a conv or pool reads (their result types check it)."""
    c, h, w = shape
    return c, h, w


def _layout_permutation(ops: list[Op], shape: tuple[int, ...], hwc: bool) -> np.ndarray:
    """For each element of the vector a dense layer reads, its position in the stream feeding
    it: the model's reshapes/transposes are replayed on an index array."""
    index = np.arange(int(np.prod(shape))).reshape((1,) + shape)
    for op in ops:
        index = interp.EVAL[type(op)](op, index)
    logical = index.reshape(-1)  # element k of the vector = element logical[k] of the map (row-major)
    if not hwc:
        return logical
    c, h, w = shape
    ch, rest = np.divmod(logical, h * w)
    return rest * c + ch  # (y*W + x)*C + channel


def _weight_layer(op: Dense | Conv, graph: Graph, index: int, after: Threshold | FixedAffine | None, layout: list[Op],
                  src_shape: tuple[int, ...], src_hwc: bool) -> Layer:
    kwargs: dict[str, Any] = {}
    if isinstance(after, Threshold):
        kwargs = dict(thresholds=np.broadcast_to(after.thresholds, (op.weights.shape[0], after.thresholds.shape[1])).copy(),
                      values=np.broadcast_to(after.values, (op.weights.shape[0], after.values.shape[1])).copy())
    elif isinstance(after, FixedAffine):
        if after.neg_mult is not None:
            raise IRError(f"{after.kind} %{after.out} (from ONNX node '{after.origin}'): a PReLU after a weight layer "
                          f"is not built by the Verilog and HLS backends yet")
        kwargs = dict(mult=after.mult, bias=after.bias, shift=after.shift)
    out = after.out if after is not None else op.out
    in_elem = _integer_elem(graph, op.inputs[0])
    if isinstance(op, Conv):
        o, c, kh, kw = op.weights.shape
        weights = op.weights.transpose(0, 2, 3, 1).reshape(o, -1)  # window order: row, column, channel
        in_shape = _chw(graph.types[op.inputs[0]].shape)
        window = Window(in_shape, (kh, kw), op.stride, op.pads, op.pad_value, op.out_hw(*in_shape[1:]))
        return Layer(index=index, origin=op.origin, in_elem=in_elem, out_elem=_integer_elem(graph, out), weights=weights,
                     acc_elem=_integer_elem(graph, op.out), window=window, reuse=op.reuse, **kwargs)
    weights = op.weights
    if layout or src_hwc:
        perm = _layout_permutation(layout, src_shape, src_hwc)
        weights = np.empty_like(op.weights)
        weights[:, perm] = op.weights
    return Layer(index=index, origin=op.origin, in_elem=in_elem, out_elem=_integer_elem(graph, out), weights=weights,
                 acc_elem=_integer_elem(graph, op.out), reuse=op.reuse, **kwargs)


def _residual_layer(block: Block, graph: Graph, index: int) -> Layer:
    conv, th = block.conv, block.threshold
    x_type = graph.types[th.inputs[0]]
    x_shape = _chw(x_type.shape)
    c = x_shape[0]
    thresholds = np.broadcast_to(th.thresholds, (c, th.thresholds.shape[1])).astype(np.int64)
    values = np.broadcast_to(th.values, (c, th.values.shape[1])).astype(np.int64)
    act_elem = _integer_elem(graph, th.out)
    masked = False
    if conv.pad_value == 0 and any(conv.pads):
        # A padded position must add nothing. Where the sign of a 0 code is not 0 (RSign's
        # sign(x - beta)), the window marks padding with an in-map bit and the sign makes it 0.
        zero_level = (0 >= thresholds).sum(axis=1)
        masked = bool(np.any(values[np.arange(c), zero_level] != 0))
        if masked and isinstance(act_elem, Bipolar):
            act_elem = Ternary()  # +-1 and the padding's 0
    o, _, kh, kw = conv.weights.shape
    window = Window(x_shape, (kh, kw), conv.stride, conv.pads, 0, conv.out_hw(*x_shape[1:]))
    stages = tuple(AffineStage(a.mult, a.neg_mult, a.bias, a.shift, _integer_elem(graph, a.inputs[0]),
                               _integer_elem(graph, a.out))
                   for a in block.after)
    return Layer(index=index, origin=conv.origin, in_elem=_integer_elem(graph, th.inputs[0]),
                 out_elem=_integer_elem(graph, block.out), weights=conv.weights.transpose(0, 2, 3, 1).reshape(o, -1),
                 acc_elem=_integer_elem(graph, conv.out), mult=block.post.mult, bias=block.post.bias,
                 shift=block.post.shift, window=window, act=InputThresholds(thresholds, values, act_elem, masked),
                 shortcut=Shortcut(block.taps, block.main_shift, block.tap_shift, _integer_elem(graph, block.add.out),
                                   stages))


def lower(graph: Graph, fold: dict | None = None, reuse: bool = False, multiplier_free: int = 0) -> Design:
    """Turn the device part of a folded graph into a Design, with `fold` = {layer: {pe, simd}}
    (None: auto). `reuse`: channel-reuse will run on this graph (see auto_folding);
    `multiplier_free`: see Design."""
    verify_hardware_form(graph)
    blocks = residual_blocks(graph)
    absorbed = {v for block in blocks.values() for v in block.absorbed}
    stray = next((op for op in graph.ops if isinstance(op, Add) and op.out not in absorbed), None)
    if stray is not None:
        raise IRError(f"residual add %{stray.out} (from ONNX node '{stray.origin}'): its shortcut is not inside the "
                      f"window of the conv in front of it; {FIXED_POINT_LIMIT}")
    graph = sum_pools_as_convs(graph, keep=absorbed)
    device = [op for op in graph.ops if not graph.on_host(op)]
    first = device[0].inputs[0]
    in_type = graph.types[first]
    first_weight = next(op for op in device if isinstance(op, (Dense, Conv)))
    hwc = isinstance(first_weight, Conv)
    layers: list[Layer | PoolLayer] = []
    layout: list[Op] = []
    argmax, i = False, 0
    src_shape, src_hwc = in_type.shape, hwc
    while i < len(device):
        op = device[i]
        if op.out in blocks:
            layers.append(_residual_layer(blocks[op.out], graph, len(layers)))
            src_shape, src_hwc, layout = graph.types[blocks[op.out].out].shape, True, []
        if op.out in absorbed:
            i += 1
            continue
        after = device[i + 1] if i + 1 < len(device) else None
        if isinstance(op, (Reshape, Transpose)):
            layout.append(op)
            i += 1
            continue
        if isinstance(op, ArgMax) and after is None:
            argmax = True
            i += 1
            continue
        if isinstance(op, Pool) and not layout:
            layers.append(PoolLayer(len(layers), op.origin, _integer_elem(graph, op.out),
                                    _chw(graph.types[op.inputs[0]].shape), op.kernel, op.stride, op.modes))
            src_shape, src_hwc = graph.types[op.out].shape, True
            i += 1
            continue
        if not isinstance(op, (Dense, Conv)) or (isinstance(op, Conv) and layout):
            raise unmapped(graph, op)
        fused = after if isinstance(after, (Threshold, FixedAffine)) and (not isinstance(after, Threshold) or after.integer) \
            else None
        layers.append(_weight_layer(op, graph, len(layers), fused, layout, src_shape, src_hwc))
        out = fused.out if fused is not None else op.out
        src_shape, src_hwc, layout = graph.types[out].shape, isinstance(op, Conv), []
        i += 2 if fused is not None else 1
    if not any(isinstance(layer, Layer) for layer in layers):
        raise IRError("the graph has no binary layer to build hardware for")
    out_type = graph.types[device[-1].out]
    layers = _apply_folding(layers, fold, reuse)
    return Design(name=graph.name, in_elem=_integer_elem(graph, first), in_count=in_type.size, in_shape=in_type.shape,
                  layers=tuple(layers), argmax=argmax, out_elem=_integer_elem(graph, device[-1].out), out_count=out_type.size,
                  in_order="hwc" if hwc else "flat", multiplier_free=multiplier_free)


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _smallest_unit(layer: Layer, max_cycles: int, all_channels_first: bool) -> tuple[int, int]:
    """(pe, simd) with the fewest parallel XNORs that still meets max_cycles. Among equals, wide
    SIMD beats wide PE (fewer accumulators) -- unless `all_channels_first`: then PE = C wins, the
    one folding where channel reuse becomes hardware at the same throughput."""
    c, k = layer.out_count, layer.in_count
    best = None
    for pe in _divisors(c):
        for simd in _divisors(k):
            if (c // pe) * (k // simd) <= max_cycles:
                key = (pe * simd, all_channels_first and pe != c, -simd)
                if best is None or key < best[0]:
                    best = (key, (pe, simd))
    assert best is not None  # pe = C, simd = K takes one step, and max_cycles >= 1 (see auto_folding)
    return best[1]


def auto_folding(layers: list[Layer | PoolLayer], reuse: bool = False, interval: int | None = None) -> dict[int, dict]:
    """Balance the pipeline: the slowest layer sets the interval, the others fold down to it.
    Layers with a reuse tree (or all, when `reuse`: the tree is still to be built) prefer all
    channels in parallel among the equally small units. `interval`: fold every layer down to
    this many cycles per frame instead (`bnnc explore` sweeps it; no parallelism limit then, and
    a layer that cannot go that fast -- a conv's pixels, a pool -- runs as fast as it can)."""
    units = [layer for layer in layers if isinstance(layer, Layer)]
    if interval is not None:
        return {layer.index: dict(zip(("pe", "simd"), _smallest_unit(layer, max(1, interval // layer.vectors),
                                                                     reuse or layer.reuse is not None)))
                for layer in units}

    def fastest_cycles(layer):
        return layer.vectors * min((layer.out_count // pe) * (layer.in_count // simd)
                                   for pe in _divisors(layer.out_count) for simd in _divisors(layer.in_count)
                                   if pe * simd <= AUTO_MAX_PARALLEL)
    interval = max([fastest_cycles(layer) for layer in units] +
                   [layer.cycles for layer in layers if isinstance(layer, PoolLayer)])
    return {layer.index: dict(zip(("pe", "simd"), _smallest_unit(layer, interval // layer.vectors,
                                                                 reuse or layer.reuse is not None)))
            for layer in units}


def _apply_folding(layers: list[Layer | PoolLayer], fold: dict | None, reuse: bool) -> list[Layer | PoolLayer]:
    fold = auto_folding(layers, reuse) if fold is None else {int(k): v for k, v in fold.items()}
    out: list[Layer | PoolLayer] = []
    for layer in layers:
        if isinstance(layer, PoolLayer):
            out.append(layer)
            continue
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


def _code_type(bits: int) -> type:
    """int64 holds the wire codes of elements up to 62 bits; wider ones are Python ints."""
    return object if bits >= 63 else np.int64


def encode(values: np.ndarray, elem: IntegerElement) -> np.ndarray:
    """Element values -> unsigned wire codes, per the table at the top of this file (_code_type)."""
    values = np.asarray(values, dtype=_code_type(elem.bits))
    if isinstance(elem, Bipolar):
        return (values + 1) // 2
    if getattr(elem, "signed", False):
        return values & ((1 << elem.bits) - 1)
    return values


def decode(codes: np.ndarray, elem: IntegerElement) -> np.ndarray:
    """Unsigned wire codes -> element values (Fixed stays as its integer code)."""
    codes = np.asarray(codes, dtype=_code_type(elem.bits))
    if isinstance(elem, Bipolar):
        return 2 * codes - 1
    if getattr(elem, "signed", False):
        sign = 1 << (elem.bits - 1)
        return (codes ^ sign) - sign
    return codes


def pack(codes_row: npt.ArrayLike, bits: int) -> int:
    """One vector of wire codes -> one wide integer, element 0 in the least significant bits."""
    word = 0
    for i, c in enumerate(np.ravel(np.asarray(codes_row)).tolist()):  # Python ints: fields may pass 63 bits
        word |= int(c) << (i * bits)
    return word


def unpack(word: int, count: int, bits: int) -> np.ndarray:
    mask = (1 << bits) - 1
    return np.array([(word >> (i * bits)) & mask for i in range(count)], dtype=_code_type(bits))

