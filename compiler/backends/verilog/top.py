"""bnnc_top (templates/verilog/top.v.j2): the chain of units with FIFOs and a pacer where the
timing model (verilog_timing.py) asks for them, and the checks that a design can be built."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...diagnostics import BnncError
from ..hardware import Design, PoolLayer
from ..plan import verilog_unsupported as unsupported
from ..templating import sanitize
from ..verilog_timing import Timing, Unit, timing
from .common import msb
from .window import window_view


@dataclass(frozen=True)
class Stage:
    module: str
    params: str  # "#(...)" for the parameterized primitives, else ""
    instance: str
    source: str  # prefix of the stream it reads: "in" or "linkN"
    sink: str
    width: int | None  # of the stream it writes (None for the argmax: it writes the top's output)


@dataclass(frozen=True)
class TopView:
    design: str
    in_note: str
    in_msb: int
    out_note: str
    out_msb: int
    cycles_per_frame: int
    latency: int
    links: tuple[tuple[str, int], ...]  # internal streams: (prefix, data msb)
    stages: tuple[Stage, ...]


# ---- timing model of this architecture (verilog_timing; the tests check it against simulation)

def cycles_per_frame(design: Design) -> int:
    """Steady-state clocks between frames with no gaps and no back-pressure."""
    return timing(design).interval


def latency(design: Design) -> int:
    """Clock edges from a frame's first input transfer to its (last) output transfer, through an
    idle pipeline with out_ready high."""
    return timing(design).latency


def stream_beats(design: Design) -> tuple[int, int]:
    """Transfers per frame at the top's input and output: a conv net's input image streams one
    pixel per transfer; the output is always one vector."""
    return timing(design).in_beats, 1


# ---- the chain of modules

def _unit_modules(unit: Unit) -> list[tuple[str, str, str, int | None]]:
    """(module, parameters, instance name, width of the stream it writes) for the modules of one
    unit, in stream order (None: the argmax, which writes the top's output)."""
    layer = unit.layer
    if layer is None:  # the argmax
        return [("bnnc_argmax", "", "argmax", None)]
    i = layer.index
    out: list[tuple[str, str, str, int | None]] = []
    if unit.kind in ("conv", "pool"):
        view = window_view(unit)
        out.append((view.module, "", view.module.removeprefix("bnnc_"), view.out_msb + 1))
        if unit.kind == "conv" and unit.slots:  # registered: a register slice between window and MVU
            out.append(("bnnc_skid", f"#(.W({view.out_msb + 1}))", f"slice{i}", view.out_msb + 1))
    if isinstance(layer, PoolLayer):
        c, b = layer.in_shape[0], layer.elem.bits
        out.append((f"bnnc_pool{i}", "", f"pool{i}", c * b))
    else:
        if unit.kind == "gather":
            out.append((f"bnnc_gather{i}", "", f"gather{i}", layer.in_count * layer.in_elem.bits))
        out.append((f"bnnc_layer{i}", "", f"layer{i}", layer.out_count * layer.out_elem.bits))
    return out


def _width(width: int | None) -> int:
    """The width of a stream between two modules: only the argmax, always last, writes none."""
    assert width is not None
    return width


def top_view(design: Design, schedule: Timing | None = None) -> TopView:
    schedule = schedule or timing(design)
    in_w = design.in_count * design.in_elem.bits // schedule.in_beats
    modules: list[tuple[str, str, str, int | None]] = []  # (module, params, name, out width)
    if schedule.paced:
        modules.append(("bnnc_pacer", f"#(.W({in_w}), .BEATS({schedule.in_beats}), .INTERVAL({schedule.interval}))",
                        "pacer", in_w))
    for u, unit in enumerate(schedule.units):
        modules += _unit_modules(unit)
        if u < len(schedule.fifo_depths) and schedule.fifo_depths[u]:
            width = modules[-1][3]
            modules.append(("bnnc_fifo", f"#(.W({width}), .DEPTH({schedule.fifo_depths[u]}))", f"fifo{u}", width))
    links = tuple((f"link{i + 1}", msb(_width(modules[i][3]))) for i in range(len(modules) - 1))
    prefixes = ["in"] + [name for name, _ in links] + ["out"]
    stages = tuple(Stage(module=m, params=params, instance=f"stage{i}_{name}", source=prefixes[i],
                         sink=prefixes[i + 1], width=width)
                   for i, (m, params, name, width) in enumerate(modules))
    if schedule.in_beats > 1:
        c, h, w = design.in_shape
        in_note = (f"a {c} x {h} x {w} map of {design.in_elem}, one pixel ({c} element(s)) per transfer, "
                   f"{h * w} transfers per frame in raster order")
    else:
        in_note = f"{design.in_count} x {design.in_elem}, one vector per transfer"
    out_note = f"{design.out_count} x {design.out_elem}, one vector per frame"
    return TopView(design=sanitize(design.name), in_note=in_note, in_msb=msb(in_w), out_note=out_note,
                   out_msb=msb(design.out_count * design.out_elem.bits),
                   cycles_per_frame=schedule.interval, latency=schedule.latency, links=links, stages=stages)


def check_design(design: Design) -> None:
    """Refuse what this backend cannot build; stream widths must chain."""
    reason = unsupported(design)
    if reason:
        raise BnncError(reason)
    count, elem = design.in_count, design.in_elem
    for layer in design.layers:
        if isinstance(layer, PoolLayer):
            if int(np.prod(layer.in_shape)) != count or layer.elem.bits != elem.bits:
                raise ValueError(f"pool {layer.index} reads {layer.in_shape} x {layer.elem}, but gets {count} x {elem}")
            count = int(np.prod(layer.out_shape))
            continue
        width = layer.window.in_shape if layer.window is not None else (layer.in_count,)
        if int(np.prod(width)) != count or layer.in_elem.bits != elem.bits:
            raise ValueError(f"layer {layer.index} reads {width} x {layer.in_elem}, but gets {count} x {elem}")
        count, elem = layer.out_count * layer.vectors, layer.out_elem
    if not design.argmax and design.out_count * design.out_elem.bits != count * elem.bits:
        raise ValueError(f"design output {design.out_count} x {design.out_elem} is not the last layer's")


