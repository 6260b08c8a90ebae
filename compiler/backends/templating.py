"""What both backends' templates share: one Jinja environment per template folder, the one rule
that makes a model-supplied name safe in generated text, and the filters templates format with."""
from __future__ import annotations

import re
from functools import lru_cache

import jinja2

from ..resources import resource_dir


def sanitize(text: str, limit: int = 80) -> str:
    """A model-supplied name made harmless inside a Verilog, C++ or Tcl comment or string:
    letters, digits and _.:+- stay, anything else becomes _; longer than `limit`, it is cut with
    "..." (callers pick what an empty name shows)."""
    clean = re.sub(r"[^A-Za-z0-9_.:+\-]", "_", str(text))
    return clean[:limit] + ("..." if len(clean) > limit else "")


# Wider Verilog constants are written as a concatenation: Verilator rejects numbers over 65,536 bits
# ("exceeds implementation limit"), Icarus tokens over its 16 KB scanner buffer (4,096 hex digits fit).
MAX_LITERAL_BITS = 1 << 14


def verilog_literal(value: int, bits: int, base: str = "d") -> str:
    """A sized unsigned Verilog literal, e.g. 8'd5 or 8'h05 (base "h"); a concatenation of hex
    pieces above MAX_LITERAL_BITS."""
    value = int(value)
    if not 0 <= value < 1 << bits:
        raise ValueError(f"{value} does not fit {bits} unsigned bits")
    if bits > MAX_LITERAL_BITS:  # e.g. the weight word of an unrolled 784 x 256 layer: concatenate
        pieces = [(lo, min(MAX_LITERAL_BITS, bits - lo)) for lo in range(0, bits, MAX_LITERAL_BITS)]
        return "{" + ", ".join(verilog_literal(value >> lo & ((1 << w) - 1), w, "h")
                               for lo, w in reversed(pieces)) + "}"
    if base == "h":
        return f"{bits}'h{value:0{(bits + 3) // 4}x}"
    return f"{bits}'d{value}"


@lru_cache(maxsize=None)
def environment() -> jinja2.Environment:
    """The one environment of templates/ (names like "verilog/layer.v.j2"): undefined names are
    errors, blocks trim their newlines, nothing is escaped (the output is code, names reach it
    only through sanitize)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resource_dir("templates"))),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
        trim_blocks=True, lstrip_blocks=True, autoescape=False,
    )
    env.filters["lit"] = verilog_literal
    env.filters["sanitize"] = sanitize
    return env
