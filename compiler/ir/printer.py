"""The canonical text form of a graph: one line per op, deterministic, diff-friendly.

Two forms share the line layout `%out = [host] kind %in, ... {attributes} : type`:

- the default form (`bnnc inspect`, `DIR/ir/NN-pass.ir`) is for reading: large arrays print as
  their shape, a short content hash and their first values, so that a change in any weight shows
  up in the text without burying it. It cannot be parsed back.
- the full form (`full=True`) is what `bnnc.ir.parser.parse_graph` reads back: every constant
  written out exactly. Its attributes are the op's dataclass fields by name, i.e. its constructor
  arguments, so the parser needs no code per op and a new op is covered by its fields alone
  (the default form shows a few derived ones instead: quantize's `range`, `reuse_depth`), plus
  the ONNX `origin` when there is one. Arrays carry their dtype and shape like a tensor type:
  `i8[2x3] [[1, -1, 1], [1, 1, -1]]`; `exact` arrays hold Fractions, `n` or `n/d`, and `int`
  arrays Python integers of any size (both are object arrays; an object array mixing integers
  and Fractions is written as `exact` and reads back as Fractions of equal value); `f32` elements are the shortest
  decimal that reads back to the same float32; `bool` is 0/1. Strings are JSON-quoted, and so are
  value and graph names that are not plain identifiers (`%"a/b:0"`). The `: type` and `host`
  are derived, and the parser checks them, so a hand-written file cannot state them wrong.

One form with an option rather than a separate serialisation (JSON, pickle): a golden `.ir`
file, an `inspect` dump and a `DIR/ir` file line up op by op and differ mostly in how constants
are spelled, so they diff against each other and stay reviewable by hand.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from fractions import Fraction

import numpy as np

from .graph import Graph

_SHOWN = 4


def _scalar(v) -> str:
    if isinstance(v, Fraction):
        return str(v) if v.denominator == 1 or v.denominator < 1 << 16 else f"{float(v):.9g}"
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.9g}"
    return str(int(v)) if isinstance(v, (int, np.integer)) else str(v)


def _array(a: np.ndarray) -> str:
    if a.ndim == 0:
        return _scalar(a.item() if a.dtype != object else a[()])
    flat = a.ravel()
    head = ", ".join(_scalar(v) for v in flat[:_SHOWN])
    if a.size <= _SHOWN and a.ndim == 1:
        return f"[{head}]"
    data = ",".join(_scalar(v) for v in flat).encode() if a.dtype == object else \
        np.ascontiguousarray(a, dtype=np.int64 if a.dtype.kind in "iub" else np.float64).tobytes()
    digest = hashlib.sha256(data).hexdigest()[:8]
    return f"<{'x'.join(map(str, a.shape))} #{digest} {head}{', ...' if a.size > _SHOWN else ''}>"


def _attr(v) -> str:
    if isinstance(v, np.ndarray):
        return _array(v)
    if isinstance(v, tuple):
        return "(" + ", ".join(_attr(x) for x in v) + ")"
    return _scalar(v)


# ---- the full form

BARE_NAME = re.compile(r"[A-Za-z0-9_.]+")
DTYPES = {"bool": np.bool_, "i8": np.int8, "i16": np.int16, "i32": np.int32, "i64": np.int64,
          "u8": np.uint8, "u16": np.uint16, "u32": np.uint32, "u64": np.uint64,
          "f32": np.float32, "f64": np.float64, "exact": object, "int": object}
_DTYPE_TAGS = {np.dtype(t): tag for tag, t in DTYPES.items() if t is not object}


def _name(name: str) -> str:
    return name if BARE_NAME.fullmatch(name) else json.dumps(name)


def _exact_scalar(v) -> str:
    if _is_int(v) or isinstance(v, Fraction):
        return str(Fraction(v))
    raise TypeError(f"an exact array holds {v!r}: only integers and Fractions are exact")


def _full_scalar(v, tag: str) -> str:
    if tag == "exact":
        return _exact_scalar(v)
    if tag == "bool":
        return str(int(v))
    if tag == "f32":
        return str(np.float32(v))  # numpy's shortest repr that reads back to this float32
    if tag == "f64":
        return repr(float(v))
    return str(int(v))


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _full_array(a: np.ndarray) -> str:
    tag: str | None
    if a.dtype == object:
        tag = "int" if all(_is_int(v) for v in a.ravel()) else "exact"
    else:
        tag = _DTYPE_TAGS.get(a.dtype)
    if tag is None:
        raise TypeError(f"no text form for arrays of dtype {a.dtype}")

    def nested(x: np.ndarray) -> str:
        if x.ndim == 0:
            return _full_scalar(x[()], tag)
        if x.ndim == 1:
            return "[" + ", ".join(_full_scalar(v, tag) for v in x.tolist()) + "]"
        return "[" + ", ".join(nested(x[i]) for i in range(x.shape[0])) + "]"
    return f"{tag}[{'x'.join(map(str, a.shape))}] {nested(a)}"


def _full_attr(v) -> str:
    if isinstance(v, np.ndarray):
        return _full_array(v)
    if isinstance(v, tuple):
        return "(" + ", ".join(_full_attr(x) for x in v) + ")"
    if dataclasses.is_dataclass(v):  # a Reuse tree: its own fields, in braces
        return "{" + ", ".join(f"{f.name}={_full_attr(getattr(v, f.name))}" for f in dataclasses.fields(v)) + "}"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (bool, np.bool_)):
        raise TypeError("no text form for a bool attribute")
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    return str(int(v))


def _full_attributes(op) -> dict:
    """The op's constructor arguments beyond out and inputs; defaults (no reuse, no origin) left out."""
    attrs = {}
    for f in dataclasses.fields(op):
        v = getattr(op, f.name)
        default = f.default is not dataclasses.MISSING and type(v) is type(f.default) and v == f.default
        if f.name in ("out", "inputs") or default:
            continue
        attrs[f.name] = v
    if "origin" in attrs:
        attrs["origin"] = attrs.pop("origin")  # last: it names the source, it is not a parameter
    return attrs


def print_graph(graph: Graph, full: bool = False) -> str:
    """The graph as text; `full=True` gives the parseable form (see the module docstring)."""
    ref = (lambda n: "%" + _name(n)) if full else (lambda n: "%" + n)
    name = _name(graph.name) if full else graph.name
    args = ", ".join(f"{ref(n)}: {t}" for n, t in graph.inputs)
    lines = [f"graph {name}({args}) -> ({', '.join(ref(o) for o in graph.outputs)}) {{"]
    for op in graph.ops:
        if full:
            attrs = ", ".join(f"{k}={_full_attr(v)}" for k, v in _full_attributes(op).items())
        else:
            attrs = ", ".join(f"{k}={_attr(v)}" for k, v in op.attributes().items())
        operands = ", ".join(ref(i) for i in op.inputs)
        where = "host " if graph.on_host(op) else ""
        braced = " {" + attrs + "}" if attrs else ""
        lines.append(f"  {ref(op.out)} = {where}{op.kind} {operands}{braced} : {graph.types[op.out]}")
    lines.append("}")
    return "\n".join(lines) + "\n"
