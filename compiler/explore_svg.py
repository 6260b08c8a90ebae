"""explore.svg: size against frames per second for every design `bnnc explore` measured, both axes
logarithmic (foldings double the cycles per frame), the Pareto front joined by a line. Plain SVG
text with fixed number formats, as dataflow_svg.py: equal measurements give equal bytes.
"""
from __future__ import annotations

import math
from html import escape

W, H = 660, 420
LEFT, RIGHT, TOP, BOTTOM = 80, 170, 30, 50  # margins around the plot area
COLOUR = {"plain": "#6b7280", "reuse": "#2563eb"}


def _decades(lo: float, hi: float) -> tuple[float, float]:
    """Log10 range covering [lo, hi], widened to whole decades (at least one)."""
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    return float(a), float(max(b, a + 1))


def _label(value: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= div:
            return f"{value / div:g}{unit}"
    return f"{value:g}"


def svg(points, costs: list[int | None], clock_mhz: float, cost_name: str) -> str:
    """`costs[i]`: the size of points[i] (None: not measured, left out)."""
    shown = [(p, c) for p, c in zip(points, costs) if c]
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
           f'<text x="{LEFT}" y="18" font-size="13">Pareto front: {escape(cost_name)} vs frames/s at {clock_mhz:g} MHz</text>',
           f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#9ca3af"/>']
    if not shown:
        out.append(f'<text x="{LEFT + 10}" y="{TOP + 20}">no design was measured</text>')
        return "\n".join(out + ["</svg>"]) + "\n"
    fps = [clock_mhz * 1e6 / p.cycles for p, _ in shown]
    x0, x1 = _decades(min(c for _, c in shown), max(c for _, c in shown))
    y0, y1 = _decades(min(fps), max(fps))

    def x(v: float) -> float:
        return LEFT + pw * (math.log10(v) - x0) / (x1 - x0)

    def y(v: float) -> float:
        return TOP + ph * (1 - (math.log10(v) - y0) / (y1 - y0))

    for d in range(int(x0), int(x1) + 1):  # decade grid lines and labels
        out.append(f'<line x1="{x(10.0 ** d):.1f}" y1="{TOP}" x2="{x(10.0 ** d):.1f}" y2="{TOP + ph}" stroke="#e5e7eb"/>'
                   f'<text x="{x(10.0 ** d):.1f}" y="{TOP + ph + 15}" text-anchor="middle">{_label(10.0 ** d)}</text>')
    for d in range(int(y0), int(y1) + 1):
        out.append(f'<line x1="{LEFT}" y1="{y(10.0 ** d):.1f}" x2="{LEFT + pw}" y2="{y(10.0 ** d):.1f}" stroke="#e5e7eb"/>'
                   f'<text x="{LEFT - 6}" y="{y(10.0 ** d) + 4:.1f}" text-anchor="end">{_label(10.0 ** d)}</text>')
    out.append(f'<text x="{LEFT + pw / 2:.1f}" y="{H - 12}" text-anchor="middle">{escape(cost_name)}</text>'
               f'<text x="16" y="{TOP + ph / 2:.1f}" transform="rotate(-90 16 {TOP + ph / 2:.1f})" '
               f'text-anchor="middle">frames/s</text>')
    front = sorted(((c, f) for (p, c), f in zip(shown, fps) if p.pareto))
    if len(front) > 1:
        path = " ".join(f"{x(c):.1f},{y(f):.1f}" for c, f in front)
        out.append(f'<polyline points="{path}" fill="none" stroke="#dc2626" stroke-width="1.5"/>')
    for (p, c), f in sorted(zip(shown, fps), key=lambda t: (t[0][0].cycles, t[0][0].variant, t[0][1])):
        colour = COLOUR.get(p.variant, "#000000")
        ring = ' stroke="#dc2626" stroke-width="2"' if p.pareto else ""
        out.append(f'<circle cx="{x(c):.1f}" cy="{y(f):.1f}" r="4" fill="{colour}"{ring}>'
                   f'<title>{escape(p.variant)}, {p.cycles} cycles/frame, {c:,}</title></circle>'
                   + (f'<text x="{x(c) + 6:.1f}" y="{y(f) - 5:.1f}" font-size="9">{p.cycles}</text>' if p.variant != "plain"
                      else f'<text x="{x(c) - 6:.1f}" y="{y(f) - 5:.1f}" font-size="9" text-anchor="end">{p.cycles}</text>'))
    legend = [("without channel reuse", COLOUR["plain"], ""), ("with channel reuse", COLOUR["reuse"], ""),
              ("on the Pareto front", "#ffffff", ' stroke="#dc2626" stroke-width="2"')]
    for i, (name, colour, ring) in enumerate(legend):
        ly = TOP + 10 + 18 * i
        out.append(f'<circle cx="{LEFT + pw + 16}" cy="{ly}" r="4" fill="{colour}"{ring}/>'
                   f'<text x="{LEFT + pw + 26}" y="{ly + 4}">{name}</text>')
    out.append(f'<text x="{LEFT + pw + 10}" y="{TOP + 74}" font-size="9">labels: cycles/frame</text>')
    return "\n".join(out + ["</svg>"]) + "\n"
