"""Pipelines of passes: parsing `"a,b{opt=1},c"`, running them, and checking each one.

A pass is a small frozen dataclass with a kebab-case `name`, its options as fields, and
`run(graph) -> graph`. After each pass a hook may print the IR, and `verify` re-runs the
interpreter on sample inputs: the outputs must be identical, or, for a pass that rounds
(`max_error` returns a bound), within that stated bound.
"""
from __future__ import annotations

import dataclasses
import re
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np

from .. import interp
from ..ir.graph import Graph
from ..ir.types import Exact, Fixed
from . import contracts
from .contracts import Condition

REGISTRY: dict[str, type] = {}


class PassError(Exception):
    """A pass could not run or changed the meaning of the graph; the message names the pass."""


def register(cls):
    REGISTRY[cls.name] = cls
    return cls


@dataclass(frozen=True)
class Pass:
    name: ClassVar[str] = "pass"
    requires: ClassVar[tuple[Condition, ...]] = ()  # of the graph it is given (contracts.py)
    ensures: ClassVar[tuple[Condition, ...]] = ()  # of the graph it returns, whatever it was given

    def run(self, graph: Graph) -> Graph:
        raise NotImplementedError

    def max_error(self, before: Graph, after: Graph) -> float:
        """Largest change of any output this pass may cause; 0 for exact passes."""
        return 0.0

    def notes(self, before: Graph) -> list[str]:
        """How this pass changes the model itself (beyond its stated error), one line each; none
        for passes that keep its meaning."""
        return []

    def __str__(self) -> str:
        """The pass as a pipeline item, with the options that differ from their defaults (a
        samples file by its name only, so that builds do not record where the user keeps it)."""
        opts = ",".join(f"{f.name.replace('_', '-')}={_shown(f.name, getattr(self, f.name))}"
                        for f in dataclasses.fields(self) if getattr(self, f.name) != f.default)
        return self.name + (f"{{{opts}}}" if opts else "")


def _shown(name: str, value) -> str:
    return Path(value).name if name == "calibrate" else str(value)


_ITEM = re.compile(r"\s*([a-z][a-z0-9-]*)\s*(?:\{([^}]*)\})?\s*(?:,|$)")


def parse_pipeline(text: str) -> list[Pass]:
    """`"fold-constants,fold-fixed-point{frac-bits=20}"` -> pass instances."""
    passes, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _ITEM.match(text, pos)
        if not m or m.end() == pos:
            raise PassError(f"cannot parse pipeline at '{text[pos:]}'")
        name, opts = m.group(1), m.group(2)
        if name not in REGISTRY:
            raise PassError(f"unknown pass '{name}' (known: {', '.join(sorted(REGISTRY))})")
        cls = REGISTRY[name]
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kwargs = {}
        for item in _OPTION.findall(opts or ""):
            key, _, value = item.partition("=")
            key = key.strip().replace("-", "_")
            if key not in fields:
                raise PassError(f"pass '{name}' has no option '{key.replace('_', '-')}'")
            kind = fields[key].type  # a string under `from __future__ import annotations`
            kwargs[key] = _option_value(name, key, kind if isinstance(kind, str) else kind.__name__, value.strip())
        passes.append(cls(**kwargs))
        pos = m.end()
    return passes


_OPTION = re.compile(r"[^,(]+(?:\([^)]*\))?")  # key=value, where a value may be a (tuple, of, ints)


def _option_value(pass_name: str, key: str, kind: str, text: str):
    """An option's text as its field's type: str, int, or tuple[int, ...] written (a,b,c)."""
    if kind == "str":
        return text
    try:
        if kind == "int":
            return int(text)
        if kind == "tuple[int, ...]" and text.startswith("(") and text.endswith(")"):
            return tuple(int(v) for v in text[1:-1].split(",") if v.strip())
    except ValueError:
        pass
    want = "an integer" if kind == "int" else "integers in parentheses, e.g. (4,0,2)"
    raise PassError(f"pass '{pass_name}' option '{key.replace('_', '-')}' wants {want}, got '{text}'")


def exact_outputs(graph: Graph, values: dict) -> list[np.ndarray]:
    """Graph outputs as exact numbers (Fractions or ints), for comparing two graphs."""
    out = []
    for name in graph.outputs:
        v, t = values[name], graph.types[name]
        if isinstance(t.elem, Fixed):
            v = v.astype(object) * Fraction(1, 1 << t.elem.frac)
        elif not isinstance(t.elem, Exact) and v.dtype.kind == "f":
            v = v.astype(np.float64)
        out.append(v)
    return out


def check(pass_: Pass, before: Graph, after: Graph, samples: dict) -> str:
    """Compare the interpreter on both graphs; raise PassError naming the pass on a difference."""
    bound = pass_.max_error(before, after)
    old = exact_outputs(before, interp.run(before, samples))
    new = exact_outputs(after, interp.run(after, samples))
    worst, n = 0.0, len(next(iter(samples.values())))
    same = np.ones(n, dtype=bool)
    for name, a, b in zip(after.outputs, old, new):
        diff = np.abs(np.asarray(a - b, dtype=object)) if a.dtype == object or b.dtype == object else np.abs(a - b)
        worst = max(worst, float(np.max(diff)) if diff.size else 0.0)
        same &= np.all((diff == 0).reshape(n, -1), axis=1)
        if (bound == 0 and np.any(diff != 0)) or worst > bound:
            idx = np.unravel_index(int(np.argmax(np.asarray(diff, dtype=np.float64))), diff.shape)
            raise PassError(f"pass '{pass_}' changed output %{name} at sample {idx[0]}, element "
                            f"{idx[1:]}: {a[idx]} became {b[idx]} (allowed error {bound})")
    if bound == 0:
        return f"verified on {n} samples: identical outputs"
    if bound == float("inf"):  # a pass that rounds the model's input: report, do not judge
        return f"approximates: {int(same.sum())}/{n} samples keep identical outputs, max error {worst:.3g}"
    return f"verified on {n} samples: max error {worst:.3g} <= bound {bound:.3g}"


@dataclass
class PassRecord:
    name: str
    seconds: float
    verified: str
    notes: tuple[str, ...] = ()  # Pass.notes: how it changed the model


def run_pipeline(graph: Graph, passes: list[Pass], samples: dict | None = None,
                 after_each: Callable[[Pass, Graph, PassRecord], None] | None = None) -> tuple[Graph, list[PassRecord]]:
    """Run the passes in order; verify each against the interpreter when samples are given."""
    records = []
    for p in passes:
        contracts.check(str(p), p.requires, graph, "requires")
        start = time.perf_counter()
        new = p.run(graph)
        seconds = time.perf_counter() - start
        contracts.check(str(p), p.ensures, new, "ensures")
        verified = check(p, graph, new, samples) if samples is not None else "not verified"
        record = PassRecord(str(p), seconds, verified, tuple(p.notes(graph)))
        records.append(record)
        if after_each:
            after_each(p, new, record)
        graph = new
    return graph, records
