"""HLS C++ backend: a Design rendered as a self-contained Vitis HLS project.

The hand-written kernels live in hls/include/bnn/ and are copied into the project; the
templates in templates/hls/ only instantiate them. Every number the C++ needs (widths,
folding, array contents, pragmas) is computed here, so templates stay thin and readable.

Project layout (out_dir):
  bnnc_config.hpp   top-level stream types and per-layer constants (namespace layerN)
  bnnc_params.hpp   weight, threshold and affine arrays
  bnnc_top.hpp/cpp  bnnc_top(in, out): one DATAFLOW process per layer, width converters between
  csim_main.cpp     C simulation driver: vectors of element values in, out, one per line
  run_hls.tcl       vitis_hls -f run_hls.tcl: C simulation (when csim_inputs.txt exists), synthesis
  include/bnn/      the kernel library

Streams: a frame of N elements travels as beats of E elements (element i of a beat at bits
[i*W +: W], beat 0 first). The top input beat is the first layer's SIMD, the output beat is the
last layer's PE (one index with argmax): the pipeline's edges then need no buffering.
"""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from ..diagnostics import BnncError
from ..ir.types import Bipolar, Element, Fixed, Int, Ternary, int_for_range
from ..resources import resource_dir
from .hardware import Design, Layer, encode

DEFAULT_PART = "xc7z020clg400-1"
DEFAULT_CLOCK_NS = 5.0
VENDOR_MAX_WIDTH = 1 << 15  # ap_int's hard limit (AP_INT_MAX_W)
LITERALS_PER_LINE = 16

TEMPLATES = ("bnnc_config.hpp", "bnnc_params.hpp", "bnnc_top.hpp", "bnnc_top.cpp", "csim_main.cpp",
             "run_hls.tcl")


def kernel_dir() -> Path:
    return resource_dir("hls") / "include" / "bnn"


def template_dir() -> Path:
    return resource_dir("templates") / "hls"


# ---- element encodings and C++ literals

@dataclass(frozen=True)
class ElemView:
    cpp: str  # the bnn element policy, e.g. bnn::Unsigned<8>
    width: int


def elem_view(elem: Element) -> ElemView:
    if isinstance(elem, Bipolar):
        return ElemView("bnn::Bipolar", 1)
    if isinstance(elem, Ternary):
        return ElemView("bnn::Signed<2>", 2)
    if isinstance(elem, (Int, Fixed)):
        if elem.bits > 63:
            raise BnncError(f"{elem} elements are wider than the HLS backend's 63-bit limit")
        return ElemView(f"bnn::{'Signed' if elem.signed else 'Unsigned'}<{elem.bits}>", elem.bits)
    raise BnncError(f"{elem} values cannot reach the HLS design; fold them to integers first")


def _int(v: int) -> str:
    """A C++ integer literal that keeps its value whatever the width of int."""
    v = int(v)
    return str(v) if -(1 << 31) < v < (1 << 31) else f"{v}LL"


def _bits(word: int, width: int) -> str:
    """An ap_uint<width> constant: a hex literal, or hex string above 64 bits (C++ has no wider literal)."""
    digits = f"0x{word:0{(width + 3) // 4}x}"
    return digits if width <= 64 else f'ap_uint<{width}>("{digits}", 16)'


def _inline(nested, fmt) -> str:
    if nested.ndim == 1:
        return "{" + ", ".join(fmt(v) for v in nested) + "}"
    return "{" + ", ".join(_inline(sub, fmt) for sub in nested) + "}"


def _braced(nested, fmt, indent: int = 4) -> list[str]:
    """Lines of a C++ initializer for an (A, B, ...) array, one brace level per axis: a
    sub-array of few literals on one line, long rows wrapped at LITERALS_PER_LINE literals."""
    pad = " " * indent
    nested = np.asarray(nested, dtype=object)
    if nested.size <= LITERALS_PER_LINE:
        return [f"{pad}{_inline(nested, fmt)},"]
    if nested.ndim == 1:
        items = [fmt(v) for v in nested]
        rows = [", ".join(items[i:i + LITERALS_PER_LINE]) for i in range(0, len(items), LITERALS_PER_LINE)]
        return [f"{pad}{{"] + [f"{pad}    {row}," for row in rows] + [f"{pad}}},"]
    return [f"{pad}{{"] + _rows(nested, fmt, indent + 4) + [f"{pad}}},"]


def _rows(nested, fmt, indent: int = 4) -> list[str]:
    """The braced elements of an array, without the braces around the whole."""
    return [line for sub in nested for line in _braced(sub, fmt, indent)]


def _by_pe(per_channel: np.ndarray, pe: int) -> np.ndarray:
    """(C, ...) -> (PE, NF, ...): channel c = nf * PE + pe sits at [pe, nf]."""
    c = per_channel.shape[0]
    return np.swapaxes(per_channel.reshape((c // pe, pe) + per_channel.shape[1:]), 0, 1)


def sanitize(text: str, limit: int = 80) -> str:
    """A model-supplied name made harmless inside a C++ or Tcl comment."""
    clean = re.sub(r"[^A-Za-z0-9_.:+\-]", "_", str(text))
    return clean[:limit] + ("..." if len(clean) > limit else "")


def _signed_width(values) -> int:
    values = [int(v) for v in np.ravel(values)]
    return int_for_range(min(values + [-1]), max(values + [0])).bits


# ---- the view of one layer, of the dataflow chain, and of the project

@dataclass(frozen=True)
class Partition:
    variable: str
    dim: int


@dataclass(frozen=True)
class LayerView:
    name: str
    summary: str
    in_count: int
    out_count: int
    simd: int
    pe: int
    nf: int
    sf: int
    cycles: int
    in_elem: ElemView
    out_elem: ElemView
    acc_width: int
    activation: str  # threshold, affine or pass
    activation_type: str  # C++ type of the activation object
    weight_lines: list[str]
    threshold_lines: list[str]
    value_lines: list[str]
    mult_lines: list[str]
    bias_lines: list[str]
    partitions: list[Partition]


def _threshold_arrays(layer: Layer) -> tuple[np.ndarray, np.ndarray, int]:
    """Thresholds clamped into [acc.lo, acc.hi + 1] (no comparison result changes), so that
    they fit an ap_int one bit wider than the accumulator at most; at least one level."""
    acc = layer.acc_elem
    t = np.broadcast_to(layer.thresholds, (layer.out_count, layer.thresholds.shape[1]))
    v = encode(layer.values, layer.out_elem)
    if t.shape[1] == 0:  # a constant channel: one threshold that never fires
        t = np.full((layer.out_count, 1), acc.hi + 1, dtype=np.int64)
        v = np.repeat(v, 2, axis=1)
    t = np.clip(t.astype(object), acc.lo, acc.hi + 1)
    return t, v, int_for_range(acc.lo, acc.hi + 1).bits


def _check_affine_range(layer: Layer) -> None:
    """The g++ stand-in for ap_int computes acc * mult + bias in 64-bit integers."""
    acc = max(abs(layer.acc_elem.lo), abs(layer.acc_elem.hi))
    worst = acc * max(abs(int(m)) for m in layer.mult) + max(abs(int(b)) for b in layer.bias)
    if worst >= 1 << 62:
        raise BnncError(f"layer {layer.index}: fixed-point affine needs {worst.bit_length()} bits, more than "
                        f"C simulation's 64-bit arithmetic holds")


def layer_view(layer: Layer) -> LayerView:
    name = f"layer{layer.index}"
    c, k, pe, simd = layer.out_count, layer.in_count, layer.pe, layer.simd
    nf, sf = c // pe, k // simd
    in_elem, out_elem = elem_view(layer.in_elem), elem_view(layer.out_elem)
    acc_width = layer.acc_elem.bits

    # weights[pe][nf * SF + sf]: bit i is input sf * SIMD + i of channel nf * PE + pe.
    bits = (layer.weights > 0).reshape(c, sf, simd)
    words = np.zeros((c, sf), dtype=object)
    for i in range(simd):
        words += bits[:, :, i].astype(object) << i
    weights = _by_pe(words, pe).reshape(pe, nf * sf)
    partitions = [Partition(f"{name}_weights", 1)] if pe > 1 else []

    threshold_lines = value_lines = mult_lines = bias_lines = []
    if layer.post == "threshold":
        t, v, t_width = _threshold_arrays(layer)
        levels = t.shape[1]
        activation = "threshold"
        activation_type = (f"bnn::ThresholdActivation<{pe}, {nf}, {levels}, ap_int<{t_width}>, "
                           f"{out_elem.width}>")
        threshold_lines = _braced(_by_pe(t, pe), _int)
        value_lines = _braced(_by_pe(v, pe), _int)
        partitions += [Partition(f"{name}_activation.thresholds", 1)] if pe > 1 else []
        partitions += [Partition(f"{name}_activation.thresholds", 3)] if levels > 1 else []
        partitions += [Partition(f"{name}_activation.values", 1)] if pe > 1 else []
    elif layer.post == "affine":
        _check_affine_range(layer)
        activation = "affine"
        activation_type = (f"bnn::AffineActivation<{pe}, {nf}, ap_int<{_signed_width(layer.mult)}>, "
                           f"ap_int<{_signed_width(layer.bias)}>, {out_elem.width}>")
        mult_lines = _braced(_by_pe(np.asarray(layer.mult), pe), _int)
        bias_lines = _braced(_by_pe(np.asarray(layer.bias), pe), _int)
        if pe > 1:
            partitions += [Partition(f"{name}_activation.mult", 1), Partition(f"{name}_activation.bias", 1)]
    else:
        activation = "pass"
        activation_type = f"bnn::PassActivation<{out_elem.width}>"
        if out_elem.width != acc_width:
            raise BnncError(f"layer {layer.index}: output {layer.out_elem} is not its accumulator {layer.acc_elem}")

    summary = (f"layer {layer.index} (ONNX node {sanitize(layer.origin) or '?'}): {k} -> {c}, "
               f"{layer.in_elem} in, {layer.out_elem} out, PE={pe} SIMD={simd}, {layer.cycles} cycles per frame")
    return LayerView(name=name, summary=summary, in_count=k, out_count=c, simd=simd, pe=pe, nf=nf, sf=sf,
                     cycles=layer.cycles, in_elem=in_elem, out_elem=out_elem, acc_width=acc_width,
                     activation=activation, activation_type=activation_type,
                     weight_lines=_rows(weights, lambda w: _bits(w, simd)),
                     threshold_lines=threshold_lines, value_lines=value_lines, mult_lines=mult_lines,
                     bias_lines=bias_lines, partitions=partitions)


@dataclass(frozen=True)
class Stream:
    name: str
    width: int  # bits per beat


@dataclass(frozen=True)
class Stage:
    """One DATAFLOW process of bnnc_top."""
    kind: str  # layer, split, gather or argmax
    source: str
    sink: str
    layer: str = ""  # kind == layer: the layer function
    elem_width: int = 0  # split / gather / argmax: element bits
    elem: str = ""  # argmax: element policy
    elems_in: int = 0  # elements per input beat
    elems_out: int = 0  # elements per output beat (argmax: output bits)
    count: int = 0  # elements per frame


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


def dataflow(design: Design, layers: list[LayerView]) -> tuple[list[Stage], list[Stream]]:
    """The chain of processes from the top's `in` to its `out`, with the streams between them."""
    stages, streams = [], []
    source = "in"
    for i, (layer, view) in enumerate(zip(design.layers, layers)):
        if i > 0:
            prev = design.layers[i - 1]
            if prev.out_elem != layer.in_elem:
                raise BnncError(f"layer {prev.index} produces {prev.out_elem} but layer {layer.index} "
                                f"reads {layer.in_elem}")
            more, extra, source = _rebeat(source, f"{view.name}_in", view.in_elem.width, prev.pe, layer.simd,
                                          layer.in_count)
            stages += more
            streams += extra
        last = i == len(layers) - 1
        sink = "out" if last and not design.argmax else f"{view.name}_out"
        stages.append(Stage("layer", source, sink, layer=view.name))
        if sink != "out":
            streams.append(Stream(sink, view.pe * view.out_elem.width))
        source = sink
    if design.argmax:
        last = layers[-1]
        stages.append(Stage("argmax", source, "out", elem=last.out_elem.cpp, elem_width=last.out_elem.width,
                            elems_in=last.pe, elems_out=elem_view(design.out_elem).width,
                            count=last.out_count))
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
    layers = [layer_view(layer) for layer in design.layers]
    stages, streams = dataflow(design, layers)
    first, last = layers[0], layers[-1]
    if elem_view(design.in_elem) != first.in_elem:
        raise BnncError(f"the design input {design.in_elem} is not its first layer's input {design.layers[0].in_elem}")
    frame_in = Frame(design.in_count, first.simd, first.in_elem)
    if design.argmax:
        frame_out = Frame(1, 1, elem_view(design.out_elem))
    else:
        frame_out = Frame(design.out_count, last.pe, last.out_elem)
    widest = max([s.width for s in streams] + [layer.simd for layer in layers]
                 + [f.beat_elems * f.elem.width for f in (frame_in, frame_out)])
    if widest > VENDOR_MAX_WIDTH:
        raise BnncError(f"a {widest}-bit stream or weight word exceeds ap_uint's {VENDOR_MAX_WIDTH}-bit limit; "
                        f"fold the layers further (smaller PE/SIMD)")
    out_frac = design.out_elem.frac if isinstance(design.out_elem, Fixed) and not design.argmax else 0
    return dict(
        name=sanitize(design.name) or "unnamed",
        layers=layers, stages=stages, streams=streams, frame_in=frame_in, frame_out=frame_out,
        out_frac=out_frac, cycles_per_frame=design.cycles_per_frame,
        ap_int_max_w=max(1024, -(-widest // 1024) * 1024),
        part=sanitize(part), clock_ns=f"{float(clock_ns):g}",
    )


def _environment() -> Environment:
    return Environment(loader=FileSystemLoader(str(template_dir())), undefined=StrictUndefined,
                       trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False)


def emit(design: Design, out_dir: Path, part: str = DEFAULT_PART, clock_ns: float = DEFAULT_CLOCK_NS) -> list[Path]:
    """Write the HLS project for `design` into out_dir; returns the files written, sorted."""
    out_dir = Path(out_dir)
    view = project_view(design, part, clock_ns)
    env = _environment()
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in TEMPLATES:
        path = out_dir / name
        path.write_text(env.get_template(name + ".j2").render(**view), encoding="utf-8")
        written.append(path)
    include = out_dir / "include" / "bnn"
    shutil.rmtree(include, ignore_errors=True)
    include.mkdir(parents=True)
    for header in sorted(kernel_dir().glob("*.hpp")):
        shutil.copyfile(header, include / header.name)
        written.append(include / header.name)
    return sorted(written)
