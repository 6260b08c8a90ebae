"""HLS C++ backend: a Design rendered as a self-contained Vitis HLS project.

The hand-written kernels live in hls/include/bnn/ and are copied into the project; the
templates in templates/hls/ only instantiate them. Every number the C++ needs (widths,
folding, array contents, pragmas) is computed here, so templates stay thin and readable.

Project layout (out_dir):
  bnnc_config.hpp   top-level stream types and per-layer constants (namespace layerN)
  bnnc_params.hpp   weight, threshold, affine and channel-reuse arrays, pool modes
  bnnc_top.hpp/cpp  bnnc_top(in, out): one DATAFLOW process per layer, width converters between
  csim_main.cpp     C simulation driver: vectors of element values in, out, one per line
  run_hls.tcl       vitis_hls -f run_hls.tcl: C simulation (when csim_inputs.txt exists), synthesis
  include/bnn/      the kernel library

Streams: a frame of N elements travels as beats of E elements (element i of a beat at bits
[i*W +: W], beat 0 first). Feature maps travel pixel by pixel (HWC), as in hardware.py. The top
input beat is what the first unit reads (a dense layer's SIMD, a pixel for a conv or pool), the
output beat is the last unit's (PE, or a pixel; one index with argmax): the pipeline's edges then
need no buffering.

A conv layer is three processes: the sliding-window generator (bnn/window.hpp), a width converter
when its beat is not the unit's SIMD, and the matrix-vector unit run once per output pixel.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np

from ..diagnostics import BnncError
from ..ir.ops import weight_kind
from ..ir.types import Fixed, int_for_range
from ..resources import resource_dir
from .hardware import Design, Layer, PoolLayer
from .hls_arrays import (
    ElemView,
    braced,
    by_pe,
    chunk_words,
    cpp_bits,
    cpp_int,
    digit_elem,
    digits_literal,
    elem_view,
    rows,
    signed_width,
)
from .hls_residual import ResidualView, residual_view
from .plan import REUSE_POLICY, Padding, Post, SignedDigits, plan, signed_digit_format, window_last_row
from .templating import environment, sanitize

DEFAULT_PART = "xc7z020clg400-1"
DEFAULT_CLOCK_NS = 5.0
VENDOR_MAX_WIDTH = 1 << 15  # ap_int's hard limit (AP_INT_MAX_W)

MULTIPLIER_FREE_KERNELS = "shift_add.hpp"
TEMPLATES = ("bnnc_config.hpp", "bnnc_params.hpp", "bnnc_top.hpp", "bnnc_top.cpp", "csim_main.cpp",
             "run_hls.tcl")


def kernel_dir() -> Path:
    return resource_dir("hls") / "include" / "bnn"


# ---- the view of one layer, of the dataflow chain, and of the project

@dataclass(frozen=True)
class Partition:
    variable: str
    dim: int


@dataclass(frozen=True)
class WindowView:
    """The sliding-window generator in front of a conv layer's matrix-vector unit."""
    shape: str  # the bnn::WindowShape type
    describe: str
    pixel: int  # elements per input beat: one pixel
    pixel_width: int  # bits of an input element
    beat: int  # elements per output beat
    width: int  # bits of an output element (input + valid flag for zero-padded bipolar maps)
    pad: str  # output code of a padded position
    in_count: int  # elements per frame in
    out_count: int  # elements per frame out (every window)


@dataclass(frozen=True)
class ReuseView:
    cpp: str  # the bnn::ReuseTree type
    children: int
    xnors: int  # XNORs (or adds) per vector with the tree
    depth_lines: list[str]
    parent_lines: list[str]
    negate_lines: list[str]
    differ_lines: list[str]


@dataclass(frozen=True)
class LayerView:
    kind: str  # dense or conv
    name: str
    summary: str
    in_count: int
    out_count: int
    simd: int
    pe: int
    nf: int
    sf: int
    vectors: int  # matrix-vector products per frame (output pixels of a conv)
    in_elem: ElemView  # what the matrix-vector unit reads (a window element for a conv)
    out_elem: ElemView
    acc_width: int
    activation: str  # threshold, affine or pass
    activation_type: str  # C++ type of the activation object
    weight_bits: int  # 1: +-1 weights as bits (XNOR); else two's-complement integers (ternary: 2)
    weight_lines: list[str]
    threshold_lines: list[str]
    value_lines: list[str]
    mult_lines: list[str]
    bias_lines: list[str]
    partitions: list[Partition]
    window: WindowView | None
    reuse: ReuseView | None
    residual: "ResidualView | None" = None
    weight_digits: SignedDigits | None = None  # multiplier-free: weights as signed digits (bnn/shift_add.hpp)

    @property
    def unit_in(self) -> tuple[int, int, int]:
        """(elements per beat, element bits, elements per frame) of what the unit reads."""
        if self.window:
            return self.window.pixel, self.window.pixel_width, self.window.in_count
        return self.simd, self.in_elem.width, self.in_count

    @property
    def unit_out(self) -> tuple[int, int, int]:
        return self.pe, self.out_elem.width, self.vectors * self.out_count


@dataclass(frozen=True)
class PoolView:
    kind: str  # pool
    name: str
    summary: str
    channels: int
    height: int
    width: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    elem: ElemView
    max_channels: str  # ap_uint<C> literal: bit c set = max pool, clear = min pool
    out_pixels: int

    @property
    def unit_in(self) -> tuple[int, int, int]:
        return self.channels, self.elem.width, self.channels * self.height * self.width

    @property
    def unit_out(self) -> tuple[int, int, int]:
        return self.channels, self.elem.width, self.channels * self.out_pixels


def _threshold_arrays(layer: Layer) -> tuple[np.ndarray, np.ndarray, int]:
    """The plan's thresholds on the dot product (clamped into [acc.lo, acc.hi + 1]), so that they
    fit an ap_int one bit wider than the accumulator at most, and the codes of the levels."""
    t, acc = plan(layer).thresholds, plan(layer).acc
    assert t is not None, "not a threshold layer"
    return t.dot, t.codes, int_for_range(acc.lo, acc.hi + 1).bits


def _check_affine_range(layer: Layer) -> None:
    """The g++ stand-in for ap_int computes acc * mult + bias in 64-bit integers."""
    acc = max(abs(layer.acc_elem.lo), abs(layer.acc_elem.hi))
    assert layer.mult is not None and layer.bias is not None, "not an affine layer"
    worst = acc * max(abs(int(m)) for m in layer.mult) + max(abs(int(b)) for b in layer.bias)
    if worst >= 1 << 62:
        raise BnncError(f"layer {layer.index}: fixed-point affine needs {worst.bit_length()} bits, more than "
                        f"C simulation's 64-bit arithmetic holds")


def _window_view(layer: Layer, in_elem: ElemView) -> WindowView:
    """The generator's output beat is the unit's SIMD when a beat holds whole pixels or part of
    one; otherwise the largest part of a pixel dividing SIMD, gathered into SIMD afterwards."""
    win, window = layer.window, plan(layer).window
    assert win is not None and window is not None, "not a conv layer"
    c, h, w = win.in_shape
    beat = layer.simd if layer.simd % c == 0 or c % layer.simd == 0 else gcd(layer.simd, c)
    masked = window.padding == Padding.MASKED
    pad = window.pad_code
    width = in_elem.width + (1 if masked else 0)
    top, left = win.pads[:2]
    oh, ow = win.out_hw

    def last_row(oy: int) -> int:  # as WindowShape::last_row
        return -1 if oy < 0 else h - 1 if oy >= oh else min(window_last_row(win, oy), h - 1)
    cycles = sum(max((last_row(oy + 1) - last_row(oy)) * w, ow * layer.in_count // beat if oy >= 0 else 0)
                 for oy in range(-1, oh))
    shape = (f"bnn::WindowShape<{c}, {h}, {w}, {win.kernel[0]}, {win.kernel[1]}, {win.stride[0]}, "
             f"{win.stride[1]}, {top}, {left}, {win.out_hw[0]}, {win.out_hw[1]}>")
    flag = " (a valid flag: adds nothing)" if masked else ""
    describe = (f"{win.kernel[0]}x{win.kernel[1]} window, stride {win.stride[0]}x{win.stride[1]}, pads "
                f"{'/'.join(map(str, win.pads))} of {win.pad_value}{flag}, "
                f"{beat} elements per beat in {cycles} cycles per frame")
    return WindowView(shape=shape, describe=describe, pixel=c, pixel_width=in_elem.width, beat=beat, width=width,
                      pad=cpp_bits(pad, width), in_count=c * h * w, out_count=layer.vectors * layer.in_count)


def _reuse_view(layer: Layer) -> ReuseView:
    reuse, pe, simd = layer.reuse, layer.pe, layer.simd
    assert reuse is not None, "a layer without a reuse tree"
    c, k = layer.weights.shape
    lp, policy = plan(layer), REUSE_POLICY["hls"]
    built = lp.reuse(policy)
    if len(built.children) != lp.tree_children:
        raise BnncError(f"layer {layer.index} (ONNX node '{sanitize(layer.origin)}'): {built.note}; run "
                        f"channel-reuse with this folding's groups (bnnc compile does)")
    depth = reuse.depths()
    differ = np.zeros((c, k), dtype=bool)
    for child in built.children:
        differ[child.channel, child.differing] = True
    return ReuseView(
        cpp=f"bnn::ReuseTree<{pe}, {c // pe}, {k // simd}, {simd}, {lp.tree_depth}>",
        children=len(built.children),
        xnors=lp.terms_per_vector(policy),
        depth_lines=braced(by_pe(depth, pe), cpp_int),
        parent_lines=braced(by_pe(np.where(reuse.parent >= 0, reuse.parent % pe, 0), pe), cpp_int),
        negate_lines=braced(by_pe(reuse.negate, pe), lambda v: "true" if v else "false"),
        differ_lines=braced(chunk_words(differ, pe, simd), lambda w: cpp_bits(w, simd)))


def layer_view(layer: Layer, multiplier_free: int = 0) -> LayerView:
    """multiplier_free: K > 0 for a design rounded to at most K signed digits per constant
    (hardware.Design.multiplier_free): weights and multipliers as signed digits, products by
    shifts and adds (bnn/shift_add.hpp)."""
    name = f"layer{layer.index}"
    c, k, pe, simd = layer.out_count, layer.in_count, layer.pe, layer.simd
    nf, sf = c // pe, k // simd
    in_elem, out_elem = elem_view(layer.in_elem), elem_view(layer.out_elem)
    acc_width = layer.acc_elem.bits
    if acc_width > 62:
        raise BnncError(f"layer {layer.index}: a {acc_width}-bit accumulator exceeds the HLS backend's 62 bits")

    window = _window_view(layer, in_elem) if layer.window else None
    unit_elem = in_elem
    if window and window.width != in_elem.width:  # {in_map, code}: a bipolar bit, or a residual layer's code
        unit_elem = ElemView("bnn::MaskedBipolar" if layer.act is None else f"bnn::Unsigned<{window.width}>", window.width)
    weight_bits = plan(layer).weight_bits
    digits = None
    if multiplier_free and weight_bits > 1:
        digits = signed_digit_format(layer.weights, multiplier_free, f"layer {layer.index}'s weights")
        codes = np.vectorize(digits.encode, otypes=[object])(layer.weights.astype(np.int64))
        weight_bits = digits.bits
        weights = chunk_words(codes, pe, simd, weight_bits)
        if layer.act is None:
            unit_elem = digit_elem(unit_elem, digits)
    else:
        weights = chunk_words((layer.weights > 0) if weight_bits == 1 else layer.weights, pe, simd, weight_bits)
    partitions = [Partition(f"{name}_weights", 1)] if pe > 1 else []

    threshold_lines = value_lines = mult_lines = bias_lines = []
    if plan(layer).post == Post.THRESHOLD:
        t, v, t_width = _threshold_arrays(layer)
        levels = t.shape[1]
        activation = "threshold"
        activation_type = (f"bnn::ThresholdActivation<{pe}, {nf}, {levels}, ap_int<{t_width}>, "
                           f"{out_elem.width}>")
        threshold_lines = braced(by_pe(t, pe), cpp_int)
        value_lines = braced(by_pe(v, pe), cpp_int)
        partitions += [Partition(f"{name}_activation.thresholds", 1)] if pe > 1 else []
        partitions += [Partition(f"{name}_activation.thresholds", 3)] if levels > 1 else []
        partitions += [Partition(f"{name}_activation.values", 1)] if pe > 1 else []
    elif plan(layer).post == Post.AFFINE:
        _check_affine_range(layer)
        activation = "affine"
        code_width = layer.shortcut.sum_elem.bits if layer.shortcut is not None else out_elem.width
        shift = f"{', ' + str(layer.shift) if layer.shift else ''}"
        if multiplier_free:
            d = signed_digit_format(plan(layer).mult, multiplier_free, f"layer {layer.index}'s post-op")
            activation_type = (f"bnn::DigitAffineActivation<{pe}, {nf}, {d.terms}, {d.exp_bits}, "
                               f"ap_int<{signed_width(layer.bias)}>, {code_width}{shift}>")
            mult_lines = braced(by_pe(np.array(plan(layer).mult, dtype=object), pe), digits_literal(d))
        else:
            activation_type = (f"bnn::AffineActivation<{pe}, {nf}, ap_int<{signed_width(layer.mult)}>, "
                               f"ap_int<{signed_width(layer.bias)}>, {code_width}{shift}>")
            mult_lines = braced(by_pe(np.array(plan(layer).mult, dtype=object), pe), cpp_int)
        bias_lines = braced(by_pe(np.array(plan(layer).bias, dtype=object), pe), cpp_int)
        if pe > 1:
            partitions += [Partition(f"{name}_activation.mult", 1), Partition(f"{name}_activation.bias", 1)]
    else:
        activation = "pass"
        activation_type = f"bnn::PassActivation<{out_elem.width}>"
        if out_elem.width != acc_width:
            raise BnncError(f"layer {layer.index}: output {layer.out_elem} is not its accumulator {layer.acc_elem}")

    reuse = _reuse_view(layer) if layer.reuse is not None else None
    if reuse and pe > 1:
        partitions += [Partition(f"{name}_reuse.{table}", 1) for table in ("depths", "parents", "negates", "differs")]
    weights_note = f"{weight_kind(layer.weights)} weights, " if weight_bits > 1 else ""
    what = f"conv {window.describe}" if window else "dense"
    pixels = f" x {layer.vectors} pixels" if window else ""
    reused = f", reuse: {reuse.children} channels from a parent, {reuse.xnors} of {c * k} XNORs" if reuse else ""
    summary = (f"layer {layer.index} (ONNX node {sanitize(layer.origin) or '?'}): {what}, {k} -> {c}{pixels}, "
               f"{layer.in_elem} in, {weights_note}{layer.out_elem} out, PE={pe} SIMD={simd}, "
               f"{layer.cycles} cycles per frame{reused}")
    return LayerView(kind="conv" if window else "dense", name=name, summary=summary, in_count=k, out_count=c,
                     simd=simd, pe=pe, nf=nf, sf=sf, vectors=layer.vectors, in_elem=unit_elem, out_elem=out_elem,
                     acc_width=acc_width, activation=activation, activation_type=activation_type,
                     weight_bits=weight_bits, weight_lines=rows(weights, lambda w: cpp_bits(w, simd * weight_bits)),
                     threshold_lines=threshold_lines, value_lines=value_lines, mult_lines=mult_lines,
                     bias_lines=bias_lines, partitions=partitions, window=window, reuse=reuse,
                     residual=residual_view(layer, multiplier_free, digits) if layer.act is not None else None,
                     weight_digits=digits)


def pool_view(layer: PoolLayer) -> PoolView:
    c, h, w = layer.in_shape
    _, oh, ow = layer.out_shape
    mask = sum(1 << i for i, mode in enumerate(layer.modes) if mode > 0)
    kinds = "max" if all(layer.modes > 0) else "min" if all(layer.modes < 0) else "max/min"
    summary = (f"layer {layer.index} (ONNX node {sanitize(layer.origin) or '?'}): {kinds} pool "
               f"{layer.kernel[0]}x{layer.kernel[1]} stride {layer.stride[0]}x{layer.stride[1]}, "
               f"{c}x{h}x{w} -> {c}x{oh}x{ow} {layer.elem}, {layer.cycles} cycles per frame")
    return PoolView(kind="pool", name=f"layer{layer.index}", summary=summary, channels=c, height=h, width=w,
                    kernel=layer.kernel, stride=layer.stride, elem=elem_view(layer.elem),
                    max_channels=cpp_bits(mask, c), out_pixels=oh * ow)


def unit_view(layer, multiplier_free: int = 0) -> LayerView | PoolView:
    return pool_view(layer) if isinstance(layer, PoolLayer) else layer_view(layer, multiplier_free)


@dataclass(frozen=True)
class Stream:
    name: str
    width: int  # bits per beat


@dataclass(frozen=True)
class Stage:
    """One DATAFLOW process of bnnc_top."""
    kind: str  # layer, window, pool, split, gather or argmax
    source: str
    sink: str
    layer: str = ""  # layer / window / pool: the layer's name
    elem_width: int = 0  # split / gather: element bits
    elem: str = ""  # argmax: element policy
    elems_in: int = 0  # elements per input beat
    elems_out: int = 0  # elements per output beat
    count: int = 0  # elements per frame
    index_width: int = 0  # argmax: bits of the index it writes


def _rebeat(source: str, target: str, width: int, elems_in: int, elems_out: int, count: int):
    """Stages (and their streams) carrying a frame from beats of elems_in to elems_out elements."""
    if elems_in == elems_out:
        return [], [], source
    common = gcd(elems_in, elems_out)
    stages, streams, current = [], [], source
    if common != elems_in:
        sink = target if common == elems_out else f"{target}_split"
        stages.append(Stage("split", current, sink, elem_width=width, elems_in=elems_in, elems_out=common,
                            count=count))
        streams.append(Stream(sink, common * width))
        current = sink
    if common != elems_out:
        stages.append(Stage("gather", current, target, elem_width=width, elems_in=common,
                            elems_out=elems_out, count=count))
        streams.append(Stream(target, elems_out * width))
    return stages, streams, target


def dataflow(design: Design, units: list) -> tuple[list[Stage], list[Stream]]:
    """The chain of processes from the top's `in` to its `out`, with the streams between them:
    per layer, a width converter from the previous layer's beats when they differ, then a conv's
    window generator (and a converter to its SIMD), the matrix-vector unit or the pool."""
    stages, streams = [], []
    source = "in"
    for i, (layer, view) in enumerate(zip(design.layers, units)):
        if i > 0:
            prev, prev_view = design.layers[i - 1], units[i - 1]
            prev_elem = prev.elem if isinstance(prev, PoolLayer) else prev.out_elem
            this_elem = layer.elem if isinstance(layer, PoolLayer) else layer.in_elem
            if prev_elem != this_elem:
                raise BnncError(f"layer {prev.index} produces {prev_elem} but layer {layer.index} reads {this_elem}")
            (beat_in, width, count), (beat_out, _, count_in) = prev_view.unit_out, view.unit_in
            if count != count_in:
                raise BnncError(f"layer {prev.index} produces {count} elements per frame but layer {layer.index} "
                                f"reads {count_in}")
            more, extra, source = _rebeat(source, f"{view.name}_in", width, beat_in, beat_out, count)
            stages += more
            streams += extra
        if view.kind == "conv":
            win = view.window
            stages.append(Stage("window", source, f"{view.name}_windows", layer=view.name))
            streams.append(Stream(f"{view.name}_windows", win.beat * win.width))
            more, extra, source = _rebeat(f"{view.name}_windows", f"{view.name}_vectors", win.width, win.beat,
                                          view.simd, win.out_count)
            stages += more
            streams += extra
        last = i == len(units) - 1
        sink = "out" if last and not design.argmax else f"{view.name}_out"
        stages.append(Stage("pool" if view.kind == "pool" else "layer", source, sink, layer=view.name))
        if sink != "out":
            streams.append(Stream(sink, view.unit_out[0] * view.unit_out[1]))
        source = sink
    if design.argmax:
        last = units[-1]
        elem = last.elem if last.kind == "pool" else last.out_elem
        stages.append(Stage("argmax", source, "out", elem=elem.cpp, elems_in=last.unit_out[0],
                            count=last.unit_out[2], index_width=elem_view(design.out_elem).width))
    return stages, streams


@dataclass(frozen=True)
class Frame:
    """How the top-level port carries one vector."""
    count: int
    beat_elems: int
    elem: ElemView

    @property
    def beats(self) -> int:
        return self.count // self.beat_elems


def project_view(design: Design, part: str, clock_ns: float) -> dict:
    units = [unit_view(layer, design.multiplier_free) for layer in design.layers]
    stages, streams = dataflow(design, units)
    first, last = units[0], units[-1]
    in_beat, _, in_count = first.unit_in
    layer0 = design.layers[0]
    first_elem = layer0.elem if isinstance(layer0, PoolLayer) else layer0.in_elem
    if design.in_elem != first_elem or design.in_count != in_count:
        raise BnncError(f"the design input ({design.in_count} x {design.in_elem}) is not what its first layer "
                        f"reads ({in_count} x {first_elem})")
    frame_in = Frame(design.in_count, in_beat, elem_view(design.in_elem))
    if design.argmax:
        frame_out = Frame(1, 1, elem_view(design.out_elem))
    else:
        frame_out = Frame(design.out_count, last.unit_out[0], elem_view(design.out_elem))
    widest = max([s.width for s in streams] + [view.simd for view in units if isinstance(view, LayerView)]
                 + [f.beat_elems * f.elem.width for f in (frame_in, frame_out)])
    if widest > VENDOR_MAX_WIDTH:
        raise BnncError(f"a {widest}-bit stream or weight word exceeds ap_uint's {VENDOR_MAX_WIDTH}-bit limit; "
                        f"fold the layers further (smaller PE/SIMD)")
    out_frac = design.out_elem.frac if isinstance(design.out_elem, Fixed) and not design.argmax else 0
    return dict(
        name=sanitize(design.name) or "unnamed",
        layers=units, stages=stages, streams=streams, frame_in=frame_in, frame_out=frame_out,
        out_frac=out_frac, cycles_per_frame=design.cycles_per_frame,
        ap_int_max_w=max(1024, -(-widest // 1024) * 1024),
        part=sanitize(part), clock_ns=f"{float(clock_ns):g}", multiplier_free=design.multiplier_free,
    )


def emit(design: Design, out_dir: Path, part: str = DEFAULT_PART, clock_ns: float = DEFAULT_CLOCK_NS) -> list[Path]:
    """Write the HLS project for `design` into out_dir; returns the files written, sorted."""
    out_dir = Path(out_dir)
    if (out_dir / "include" / "bnn").resolve() == kernel_dir().resolve():
        raise BnncError(f"{out_dir}: is the kernel library's own folder; emit the project elsewhere")
    view = project_view(design, part, clock_ns)
    env = environment()
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in TEMPLATES:
        path = out_dir / name
        path.write_text(env.get_template(f"hls/{name}.j2").render(**view), encoding="utf-8")
        written.append(path)
    include = out_dir / "include" / "bnn"
    shutil.rmtree(include, ignore_errors=True)
    include.mkdir(parents=True)
    for header in sorted(kernel_dir().glob("*.hpp")):
        if header.name == MULTIPLIER_FREE_KERNELS and not design.multiplier_free:
            continue  # only multiplier-free designs use it: other projects stay as they were
        shutil.copyfile(header, include / header.name)
        written.append(include / header.name)
    return sorted(written)
