"""Every per-layer hardware decision, made once: what each backend renders, what the manifest and
`bnnc report` describe.

A `LayerPlan` is a `hardware.Layer` (the numbers) plus the decisions about how to compute it:
- `mode`: how one term of the dot product is formed (XNOR of bits; XNOR of the bits inside the
  map, when zero padding is not a bit; +-x on integer codes; or x * w for ternary and multi-bit
  weights),
- the accumulator: the dot product's range and the narrower counting accumulator of a popcount
  unit (popcount P instead of the dot product 2P - K),
- thresholds normalised (ascending, at least one level, clamped into the accumulator's range
  without changing any comparison) with the output code of every level, or the affine,
- the folding (`Folding`), a window's padding, the channel-reuse children a backend builds, and
  the XNOR (term) counts that follow from them -- counted here and nowhere else.

Channel reuse depends on the backend's architecture (`ReusePolicy`):
- Verilog (`ALL_CHANNELS`): a child is built only when one clock computes every channel (PE = C),
  so that each channel owns fixed hardware with constant weights and a child's correction over D
  is a |D|-input dot product read from the latched input vector. In a layer folded over channel
  groups, lanes are time-shared by channels with different trees, so fixed narrower trees cannot
  exist there. With input chunks (SIMD < K) a child pays off only when |D| <= SIMD (its own
  small tree instead of a lane and an accumulator).
- HLS (`CHANNEL_GROUP`): every child whose parent is in its channel group (the PE channels of one
  clock) is computed from it; the PE lanes stay SIMD XNORs wide, the tree masks the inputs
  outside D, so it saves terms per frame but no XNORs per clock.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from functools import cached_property

import numpy as np

from ..diagnostics import BnncError, quote
from ..ir.signed_digits import signed_digits
from ..ir.types import Bipolar, IntegerElement, int_for_range
from .hardware import Design, Layer, PoolLayer, Window, encode

TOP = "bnnc_top"  # the top module / function of every backend


class _Named(str, Enum):
    """An enum that reads (and formats) as its plain value."""

    def __str__(self) -> str:
        return self.value


class Kind(_Named):
    DENSE = "dense"
    CONV = "conv"


class Mode(_Named):
    """How a term of the dot product is formed."""

    XNOR = "xnor"  # bipolar inputs: popcount of XNOR
    MASKED = "masked"  # the same, but zero padding is not a bit: each input carries an `inside` bit
    INTEGER = "integer"  # sum of +-x over integer (ternary, fixed-point) codes; a zero pad is the code 0
    MULTIPLY = "multiply"  # ternary or multi-bit weights: sum of x * w (x = +-1 for bipolar inputs)


class Post(_Named):
    THRESHOLD = "threshold"
    AFFINE = "affine"
    NONE = "none"


class Padding(_Named):
    NONE = "none"  # no padding
    CONSTANT = "const"  # padded positions hold a constant code
    MASKED = "mask"  # padded positions are not inputs (zero padding of bipolar maps)


class ReusePolicy(_Named):
    ALL_CHANNELS = "all-channels"  # Verilog: children only at PE = C (see the module docstring)
    CHANNEL_GROUP = "channel-group"  # HLS: every child whose parent shares its channel group


REUSE_POLICY = {"verilog": ReusePolicy.ALL_CHANNELS, "hls": ReusePolicy.CHANNEL_GROUP}
POLICY_TEXT = {
    ReusePolicy.ALL_CHANNELS: "children built only when PE = C (every channel in one clock), with input chunks "
                              "only those with |D| <= SIMD; XNORs per clock shrink",
    ReusePolicy.CHANNEL_GROUP: "every child whose parent is in its channel group of PE channels; the lanes stay "
                               "SIMD wide, so XNORs per frame shrink, XNORs per clock do not",
}


@dataclass(frozen=True)
class Folding:
    """PE output channels in parallel, each consuming SIMD inputs per clock."""

    pe: int
    simd: int
    groups: int  # C / PE channel groups, one after the other
    chunks: int  # K / SIMD input chunks per channel group

    @property
    def steps(self) -> int:
        """Clocks per matrix-vector product."""
        return self.groups * self.chunks


def buffer_position(i: int, simd: int, k: int) -> int:
    """Where input i sits in a matrix-vector unit's input buffer during its last step. The buffer
    rotates down by SIMD inputs per step so that the current chunk is always at the bottom; after
    K/SIMD - 1 rotations input i is at (i + SIMD) mod K (templates/verilog/layer.v.j2 reads the
    inputs of reuse children and the `inside` bits from there)."""
    return (i + simd) % k


def window_last_row(win: Window, oy):
    """The newest input row that the windows of output row `oy` (an int or an array) read: once
    it is in the line buffer, the row's windows can be emitted. Rows past H - 1 lie in the bottom
    padding. The Verilog timing model (verilog_timing.window_positions) and the HLS window's
    cycle count use this; hls/include/bnn/window.hpp's WindowShape::last_row is the same rule in
    C++, clamped to the map."""
    return oy * win.stride[0] - win.pads[0] + win.kernel[0] - 1


@dataclass(frozen=True)
class WindowPlan:
    window: Window
    padding: Padding
    pad_code: int  # wire code of a padded position (CONSTANT), else 0
    row_inside: np.ndarray  # (OH, KH) bool: window row u of output row oy lies inside the map
    col_inside: np.ndarray  # (OW, KW) bool


def window_plan(win: Window, elem: IntegerElement, masked: bool, what: str) -> WindowPlan:
    """`masked`: the layer reads zero padding as "not an input" (bipolar inputs, see masked_input)."""
    c, h, w = win.in_shape
    if not any(win.pads):
        padding, code = Padding.NONE, 0
    elif masked:
        padding, code = Padding.MASKED, 0
    elif elem.lo <= win.pad_value <= elem.hi:
        padding, code = Padding.CONSTANT, int(encode(np.array([win.pad_value]), elem)[0])
    else:
        raise BnncError(f"{what}: pads with {win.pad_value}, which {elem} inputs cannot hold")
    rows = (np.arange(win.out_hw[0]) * win.stride[0] - win.pads[0])[:, None] + np.arange(win.kernel[0])[None]
    cols = (np.arange(win.out_hw[1]) * win.stride[1] - win.pads[1])[:, None] + np.arange(win.kernel[1])[None]
    return WindowPlan(win, padding, code, (rows >= 0) & (rows < h), (cols >= 0) & (cols < w))


@dataclass(frozen=True)
class Accumulator:
    """`lo`..`hi` is the dot product's type (the IR's); `width` the accumulator a counting unit
    keeps: the popcount P in XNOR modes (dot = 2P - K), the dot product in integer mode, only
    modulo 2**width when an affine needs the low bits alone. `count_lo`..`count_hi` is the range
    in which that unit's thresholds are meaningful (outside it they are always / never reached)."""

    lo: int
    hi: int
    bits: int  # of the dot product's type
    width: int
    term_width: int  # of one term: 1 (an XNOR) or input bits + 1 (so that -x fits)
    count_lo: int
    count_hi: int
    note: str


@dataclass(frozen=True)
class Thresholds:
    """Per channel: `levels` ascending thresholds on the dot product and the output code of each
    level (codes[c, n] when n thresholds are reached). A constant channel gets one threshold that
    is never reached, so every unit stays uniform."""

    levels: int
    dot: np.ndarray  # (C, levels) object ints, clamped into [acc.lo, acc.hi + 1]
    counting: np.ndarray  # (C, levels): the same on the counting accumulator, clamped to its range
    codes: np.ndarray  # (C, levels + 1) int64 wire codes


@dataclass(frozen=True)
class ReuseChild:
    """A channel computed from its parent: s * y[parent] + 2 * (dot product over `differing`)."""

    channel: int
    parent: int
    negate: bool
    differing: np.ndarray  # positions where w[channel] != s * w[parent]


@dataclass(frozen=True)
class ReuseBuild:
    """The children a backend builds under `policy`, and why not more."""

    policy: ReusePolicy
    children: tuple[ReuseChild, ...]
    note: str


def popcount_threshold(t: int, k: int) -> int:
    """The popcount form of a dot-product threshold over k bipolar inputs:
    dot = 2P - k >= t  <=>  P >= (t + k) / 2  <=>  P >= ceil((t + k) / 2)   (P is an integer)."""
    return -((-(t + k)) // 2)


def masked_input(layer: Layer) -> bool:
    """Inputs behind zero padding that carry an `inside` bit: bipolar ones (modes MASKED and,
    with multi-bit weights, MULTIPLY), and a residual layer's fixed-point ones whose sign of 0 is
    not 0 (the sign turns padding into 0 before the dot product: see dot_masked)."""
    win = layer.window
    if layer.act is not None:
        return layer.act.masked
    return isinstance(layer.in_elem, Bipolar) and win is not None and win.pad_value == 0 and any(win.pads)


def dot_masked(layer: Layer) -> bool:
    """The dot product itself reads {inside, bit} inputs."""
    return masked_input(layer) and layer.act is None


def layer_mode(layer: Layer) -> Mode:
    if not isinstance(layer.weight_elem, Bipolar):
        return Mode.MULTIPLY
    if not isinstance(layer.dot_elem, Bipolar):
        return Mode.INTEGER
    return Mode.MASKED if dot_masked(layer) else Mode.XNOR


def largest_weight(layer: Layer) -> int:
    return int(np.abs(np.asarray(layer.weights, dtype=np.int64)).max(initial=1))


def _accumulator(layer: Layer, mode: Mode, post: Post) -> Accumulator:
    """Thresholds need the exact value; an affine output only needs it modulo 2**out_bits, so its
    accumulator is that narrow. bnnc_dot extends each term to the sum's width, which must hold one
    term (and be >= 2)."""
    k, acc = layer.in_count, layer.acc_elem
    term_w = 1 if mode in (Mode.XNOR, Mode.MASKED) else layer.dot_elem.bits + 1
    if mode == Mode.MULTIPLY:  # a product of the (W_IN + 1)-bit input value and the weight
        term_w += layer.weight_elem.bits
    span = k * max(abs(layer.dot_elem.lo), abs(layer.dot_elem.hi)) * largest_weight(layer)
    count_lo, count_hi = {Mode.XNOR: (0, k + 1), Mode.MASKED: (-k, k + 1)}.get(mode, (-span, span + 1))
    common = dict(lo=acc.lo, hi=acc.hi, bits=acc.bits, term_width=term_w, count_lo=count_lo, count_hi=count_hi)
    if post == Post.THRESHOLD:
        if mode == Mode.XNOR:
            return Accumulator(width=max((k + 1).bit_length(), 2), note=f"popcount P in [0, {k}] (dot = 2P - {k})",
                               **common)
        if mode == Mode.MASKED:  # P in [0, K] and the dot product 2P - inside in [-K, K] (thresholds up to K + 1)
            return Accumulator(width=(k + 1).bit_length() + 1, note=f"popcount P in [0, {k}] over the inputs inside "
                               f"the map; dot = 2P - inside, signed", **common)
        return Accumulator(width=max(int_for_range(-span, span + 1).bits, term_w),
                           note=f"dot product in [-{span}, {span}], signed", **common)
    # floor(y / 2**shift) modulo 2**out_bits needs y modulo 2**(out_bits + shift) only
    code = layer.shortcut.sum_elem if layer.shortcut is not None else layer.out_elem  # what the affine yields
    width = max(code.bits + layer.shift, term_w, 2)
    what = {Mode.XNOR: "popcount P", Mode.MASKED: "popcount P (inside inputs)"}.get(mode, "dot product")
    return Accumulator(width=width, note=f"{what} modulo 2^{width}", **common)


def _thresholds(layer: Layer, mode: Mode, acc: Accumulator) -> Thresholds:
    c, k = layer.out_count, layer.in_count
    assert layer.thresholds is not None and layer.values is not None  # post THRESHOLD: plan_layer checks
    t = np.broadcast_to(layer.thresholds, (c, np.asarray(layer.thresholds).shape[-1]))
    codes = encode(np.broadcast_to(layer.values, (c, t.shape[1] + 1)), layer.out_elem)
    for ch, row in enumerate(t):
        if np.any(row[:-1] > row[1:]):
            raise ValueError(f"layer {layer.index}: thresholds of channel {ch} are not ascending")
    if t.shape[1] == 0:  # a constant channel: one threshold that is never reached
        t = np.full((c, 1), acc.hi + 1, dtype=np.int64)
        codes = np.repeat(codes, 2, axis=1)
    # Outside the accumulator's range a threshold is always / never reached: clamping keeps that.
    dot = np.clip(t.astype(object), acc.lo, acc.hi + 1)
    counting = np.vectorize(lambda v: popcount_threshold(v, k), otypes=[object])(dot) if mode == Mode.XNOR else dot
    counting = np.clip(counting, acc.count_lo, acc.count_hi)
    return Thresholds(t.shape[1], dot, counting, codes)


@dataclass(frozen=True, eq=False)
class LayerPlan:
    layer: Layer
    kind: Kind
    mode: Mode
    post: Post
    folding: Folding
    acc: Accumulator
    thresholds: Thresholds | None
    mult: tuple[int, ...] | None  # affine: out = acc * mult + bias per channel
    bias: tuple[int, ...] | None
    window: WindowPlan | None

    @property
    def in_bits(self) -> int:
        """Bits of one input of the matrix-vector unit: {inside, bit} for bipolar inputs behind
        zero padding (MASKED, and MULTIPLY on such inputs)."""
        return 2 if dot_masked(self.layer) else self.layer.dot_elem.bits

    @property
    def weight_bits(self) -> int:
        """1: +-1 weights as bits (1 means +1); else two's-complement integers (MULTIPLY)."""
        return self.layer.weight_elem.bits if self.mode == Mode.MULTIPLY else 1

    @property
    def cycles_per_frame(self) -> int:
        """Matrix-vector steps per frame: every (channel group, input chunk) once per vector."""
        return self.layer.vectors * self.folding.steps

    @property
    def tree_children(self) -> int:
        reuse = self.layer.reuse
        return 0 if reuse is None else int((reuse.parent >= 0).sum())

    @property
    def tree_depth(self) -> int:
        """Levels of the reuse tree (1: no reuse)."""
        return 1 if self.layer.reuse is None else int(self.layer.reuse.depths().max()) + 1

    def reuse(self, policy: ReusePolicy) -> ReuseBuild:
        return self._reuse[policy]

    @cached_property
    def _reuse(self) -> dict:
        return {policy: _reuse_build(self.layer, policy) for policy in ReusePolicy}

    # ---- XNOR (term) counts: the only place they are computed

    def terms_per_vector(self, policy: ReusePolicy | None) -> int:
        """Terms (XNORs, or +-x) of one matrix-vector product: K per channel computed from
        scratch, |D| per child. `policy` None: every child of the reuse tree (its ideal saving)."""
        if self.layer.reuse is None:
            return self.layer.out_count * self.layer.in_count
        built = None if policy is None else [ch.channel for ch in self.reuse(policy).children]
        return self.layer.reuse.terms(self.layer.weights, built)

    def terms_per_frame(self, policy: ReusePolicy | None) -> int:
        return self.layer.vectors * self.terms_per_vector(policy)

    def terms_per_clock(self, policy: ReusePolicy) -> int:
        """Terms instantiated: a lane of SIMD per channel computed in one clock; a child the Verilog
        backend builds replaces its lane by its |D| terms (a layer built so has one clock per
        vector or |D| <= SIMD). HLS lanes stay SIMD wide."""
        full = self.folding.pe * self.folding.simd
        if policy == ReusePolicy.CHANNEL_GROUP or self.layer.reuse is None:
            return full
        children = self.reuse(policy).children
        return full - len(children) * self.folding.simd + sum(len(ch.differing) for ch in children)


def _tree_children(layer: Layer) -> tuple[ReuseChild, ...]:
    reuse = layer.reuse
    if reuse is None:
        return ()
    return tuple(ReuseChild(c, int(reuse.parent[c]), bool(reuse.negate[c]), reuse.differing(layer.weights, c))
                 for c in reuse.order if reuse.parent[c] >= 0)


def _reuse_build(layer: Layer, policy: ReusePolicy) -> ReuseBuild:
    if layer.reuse is None:
        return ReuseBuild(policy, (), "no reuse tree")
    tree = _tree_children(layer)
    if policy == ReusePolicy.CHANNEL_GROUP:
        for ch in sorted(tree, key=lambda ch: ch.channel):
            if ch.parent // layer.pe != ch.channel // layer.pe:
                return ReuseBuild(policy, (), f"channel {ch.channel} reuses channel {ch.parent}, which PE={layer.pe} "
                                              f"computes in another clock")
        return ReuseBuild(policy, tree, f"{len(tree)} channel(s) from a parent")
    if layer.pe != layer.out_count:
        return ReuseBuild(policy, (), f"folded over channel groups (PE = {layer.pe} < {layer.out_count} channels)")
    chunks = layer.in_count // layer.simd
    children = tuple(ch for ch in tree if chunks == 1 or len(ch.differing) <= layer.simd)
    return ReuseBuild(policy, children, f"{len(children)} channel(s) from a parent")


def plan_layer(layer: Layer) -> LayerPlan:
    mode = layer_mode(layer)
    post = Post(layer.post)
    acc = _accumulator(layer, mode, post)
    c = layer.out_count
    mult = bias = thresholds = None
    if post == Post.THRESHOLD:
        thresholds = _thresholds(layer, mode, acc)
    elif post == Post.AFFINE:
        mult = tuple(int(v) for v in np.broadcast_to(np.asarray(layer.mult).reshape(-1), (c,)))
        bias = tuple(int(v) for v in np.broadcast_to(np.asarray(layer.bias).reshape(-1), (c,)))
    window = None
    if layer.window is not None:
        what = f"layer {layer.index} (ONNX node {quote(layer.origin)})"
        window = window_plan(layer.window, layer.in_elem, masked_input(layer), what)
    folding = Folding(layer.pe, layer.simd, c // layer.pe, layer.in_count // layer.simd)
    return LayerPlan(layer, Kind.CONV if layer.window is not None else Kind.DENSE, mode, post, folding, acc,
                     thresholds, mult, bias, window)


_PLANS: dict[int, tuple[Layer, LayerPlan]] = {}


def plan(layer: Layer) -> LayerPlan:
    """The plan of `layer`, made once per layer object (layers are immutable)."""
    key = id(layer)
    if key not in _PLANS or _PLANS[key][0] is not layer:
        if len(_PLANS) > 256:
            _PLANS.clear()
        _PLANS[key] = (layer, plan_layer(layer))
    return _PLANS[key][1]


@dataclass(frozen=True)
class SignedDigits:
    """How a multiplier-free design stores the constants of one multiplier (a ROM of them, or a
    weight array): each as `terms` signed power-of-two digits, digit t at bits [t*width +: width]
    holding {nonzero, negative, exponent} (exponent in the low `exp_bits`). x * m is then the sum
    over the nonzero digits of +-(x << exponent): templates/verilog/bnnc_shift_add.v and
    hls/include/bnn/shift_add.hpp."""

    terms: int
    exp_bits: int

    @property
    def width(self) -> int:
        """Bits of one digit."""
        return self.exp_bits + 2

    @property
    def bits(self) -> int:
        """Bits of one constant."""
        return self.terms * self.width

    def encode(self, value: int) -> int:
        word = 0
        for t, (sign, exp) in enumerate(signed_digits(int(value))):
            word |= ((1 << (self.exp_bits + 1)) | (int(sign < 0) << self.exp_bits) | exp) << (t * self.width)
        return word


def signed_digit_format(values, k: int, what: str) -> SignedDigits:
    """The digit format of a multiplier by `values` in a multiplier-free design (K = k): as many
    terms as the constant with the most canonical signed digits has, exponents as wide as the
    largest. The compiler rounded every such constant to at most k digits (fold-fixed-point's
    multiplier-free option); a constant with more is a compiler bug, not bad input."""
    digits = [signed_digits(int(v)) for v in np.ravel(np.asarray(values, dtype=object))]
    terms = max((len(d) for d in digits), default=0)
    if terms > k:
        raise RuntimeError(f"bnnc internal error: {what} multiplies by a constant with {terms} signed digits in a "
                           f"design rounded to at most {k} (multiplier-free={k})")
    top = max((exp for d in digits for _, exp in d), default=0)
    return SignedDigits(max(terms, 1), max(top.bit_length(), 1))


def verilog_unsupported(design: Design) -> str | None:
    """Why the Verilog backend cannot build `design`, or None."""
    last = design.layers[-1]
    if isinstance(last, PoolLayer) or last.window is not None:
        return (f"layer {last.index} (ONNX node {quote(last.origin)}) ends the network with a feature map; "
                f"the Verilog backend needs a dense layer (or an argmax) at the end")
    if design.in_order != "hwc" and isinstance(design.layers[0], PoolLayer):
        return f"layer 0 (ONNX node {quote(design.layers[0].origin)}) pools the raw input; it must follow a convolution"
    for layer in design.layers:
        win = layer.window if isinstance(layer, Layer) else None
        if win is not None and (win.pads[0] + win.pads[2] >= win.kernel[0] or win.pads[1] + win.pads[3] >= win.kernel[1]):
            return (f"layer {layer.index} (ONNX node {quote(layer.origin)}) pads by as much as its kernel "
                    f"({win.pads} for {win.kernel}); the Verilog backend needs less padding than that")
    return None


def input_sign_thresholds(layer: Layer) -> np.ndarray:
    """A residual layer's sign thresholds on its input codes, clamped to one past the codes'
    range (beyond it a threshold compares the same), so they fit code bits + 1."""
    assert layer.act is not None, "not a residual layer"
    return np.clip(layer.act.thresholds.astype(object), layer.in_elem.lo, layer.in_elem.hi + 1)


def shortcut_bits(layer: Layer) -> int:
    """Bits of a residual layer's shortcut sum: a code, plus what adding its taps can carry."""
    assert layer.shortcut is not None, "not a residual layer"
    return layer.in_elem.bits + (len(layer.shortcut.taps) - 1).bit_length()
