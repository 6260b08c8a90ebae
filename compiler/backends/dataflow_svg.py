"""A picture of the dataflow (dataflow.svg in every build), drawn from the manifest's "hardware"
part: the input stream, the pacer, every layer with its folding and clocks per frame (a bar
shows how busy the unit is at the pipeline's interval), the FIFOs between units with their
depths, and the output. Plain SVG text with fixed number formats, so equal manifests give equal
bytes.
"""
from __future__ import annotations

from html import escape

WIDTH = 520
BOX_W = 440
BOX_H = 46
GAP = 34  # vertical space between boxes, where the arrows and FIFO labels go
LEFT = (WIDTH - BOX_W) // 2
FILL = {"stream": "#eef2f7", "conv": "#dbeafe", "dense": "#dcfce7", "pool": "#fef3c7", "control": "#f3f4f6"}


def _shape(dims) -> str:
    return "x".join(str(d) for d in dims)


def _layer_lines(layer: dict) -> tuple[str, str]:
    cycles = layer["unit_cycles"] if layer["unit_cycles"] is not None else layer["cycles"]
    if layer["kind"] == "pool":
        modes = sorted(set(layer["modes"]))
        what = {(1,): "max", (-1,): "min", (-1, 1): "max/min"}[tuple(modes)]
        return (f"layer {layer['index']}: {what} pool {_shape(layer['kernel'])}, "
                f"{_shape(layer['in_shape'])} -> {_shape(layer['out_shape'])}",
                f"one pixel per clock, {cycles} clocks/frame")
    if layer["kind"] == "conv":
        w = layer["window"]
        title = (f"layer {layer['index']}: conv {_shape(w['kernel'])} stride {_shape(w['stride'])}, "
                 f"{_shape(w['in_shape'])} -> {layer['out_count']} x {_shape(w['out_hw'])}")
        if any(w["pads"]):
            title += f", pad {w['pads'][0]}" if len(set(w["pads"])) == 1 else f", pads {_shape(w['pads'])}"
    else:
        title = f"layer {layer['index']}: dense {layer['in_count']} -> {layer['out_count']}"
    title += f" ({layer['post']['kind']})"
    units = layer["resources"]
    ops = f"{units['xnors']} XNORs" if units["xnors"] else f"{units['add_sub_terms']} add/sub terms"
    return title, f"PE {layer['pe']} x SIMD {layer['simd']}, {ops}/clock, {cycles} clocks/frame"


def _box(y: int, fill: str, title: str, detail: str, busy: float | None = None) -> list[str]:
    out = [f'<rect x="{LEFT}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="6" fill="{fill}" stroke="#475569"/>',
           f'<text x="{LEFT + 10}" y="{y + 19}" font-weight="bold">{escape(title)}</text>',
           f'<text x="{LEFT + 10}" y="{y + 36}">{escape(detail)}</text>']
    if busy is not None:  # share of the interval this unit needs
        bar = round(min(busy, 1.0) * (BOX_W - 12))
        out.append(f'<rect x="{LEFT + 6}" y="{y + BOX_H - 6}" width="{bar}" height="3" fill="#2563eb"/>')
    return out


def _arrow(y: int, label: str) -> list[str]:
    x = WIDTH // 2
    out = [f'<line x1="{x}" y1="{y}" x2="{x}" y2="{y + GAP - 6}" stroke="#475569" stroke-width="1.5"/>',
           f'<path d="M{x - 5},{y + GAP - 8} L{x},{y + GAP - 1} L{x + 5},{y + GAP - 8} Z" fill="#475569"/>']
    if label:
        out.append(f'<text x="{x + 10}" y="{y + GAP // 2 + 4}" fill="#b45309">{escape(label)}</text>')
    return out


def render(hardware: dict) -> str:
    """SVG text for a manifest's "hardware" dict."""
    inp, outp = hardware["input"], hardware["output"]
    interval = hardware["cycles_per_frame"]
    fifos = {f["after_layer"]: f for f in hardware["pipeline"]["fifos"]}
    boxes = [("stream", "input: " + _shape(inp["shape"]) + f" x {inp['element']['type']}",
              f"{inp['transfers_per_frame']} transfer(s)/frame of {inp['width_bits']} bits", None, "")]
    if hardware["pipeline"]["pacer_interval"]:
        boxes.append(("control", "pacer", f"starts a frame at most every {hardware['pipeline']['pacer_interval']} clocks",
                      None, ""))
    for layer in hardware["layers"]:
        title, detail = _layer_lines(layer)
        cycles = layer["unit_cycles"] if layer["unit_cycles"] is not None else layer["cycles"]
        fifo = fifos.get(layer["index"])
        label = f"FIFO {fifo['depth']} x {fifo['width_bits']} bits" if fifo else ""
        boxes.append((layer["kind"], title, detail, cycles / interval, label))
    if hardware["argmax"]:
        boxes.append(("control", "argmax", "index of the first maximum", None, ""))
    boxes.append(("stream", f"output: {outp['count']} x {outp['element']['type']}",
                  f"1 transfer/frame of {outp['width_bits']} bits", None, ""))

    latency = hardware["latency_cycles"]
    head = 52
    height = head + len(boxes) * BOX_H + (len(boxes) - 1) * GAP + 16
    body = [f'<text x="{LEFT}" y="24" font-size="15" font-weight="bold">{escape(hardware["top"])}: '
            f'{escape(str(hardware["design"]))}</text>',
            f'<text x="{LEFT}" y="42">a frame every {interval} clocks'
            + (f", latency {latency} clocks" if latency is not None else "") + "; bars: share of that interval</text>"]
    y = head
    for i, (kind, title, detail, busy, label) in enumerate(boxes):
        body += _box(y, FILL[kind], title, detail, busy)
        if i + 1 < len(boxes):
            body += _arrow(y + BOX_H, label)
        y += BOX_H + GAP
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
            f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">\n'
            f'<rect width="{WIDTH}" height="{height}" fill="white"/>\n' + "\n".join(body) + "\n</svg>\n")
