"""Golden pass tests: tests/golden/passes/NAME.in.ir through one pass must print as NAME.out.ir.

Each NAME.in.ir starts with `// RUN: <pipeline>` (and, for quantize-inputs, `// CALIBRATE:` rows
of samples); each NAME.out.ir starts with a comment that derives the expected output by hand.
The expected text is also checked on its own: the interpreter must give the input graph's
outputs on it (bit for bit, except for quantize-inputs, which rounds the input by design).

BNNC_UPDATE_GOLDEN=1 rewrites the graph part of every .out.ir that differs (its comment stays):
review the diff and the comment before committing.
"""
from __future__ import annotations

import difflib
import os
import re
from pathlib import Path

import numpy as np
import pytest
from bnnc.driver import sample_inputs
from bnnc.ir.graph import Graph
from bnnc.ir.parser import parse_graph
from bnnc.ir.printer import print_graph
from bnnc.ir.types import Bipolar, Real, Ternary, is_integer
from bnnc.passes import parse_pipeline, run_pipeline
from bnnc.passes.manager import check

GOLDEN = Path(__file__).parent / "golden" / "passes"
UPDATE = os.environ.get("BNNC_UPDATE_GOLDEN") == "1"
CASES = sorted(p.name[:-len(".in.ir")] for p in GOLDEN.glob("*.in.ir"))


def _header(text: str) -> str:
    """The leading comment lines (kept when a golden is rewritten)."""
    lines = text.splitlines(keepends=True)
    n = next((i for i, line in enumerate(lines) if not line.startswith("//") and line.strip()), len(lines))
    return "".join(lines[:n])


def _directive(text: str, key: str) -> list[str]:
    return [m.group(1).strip() for m in re.finditer(rf"^// {key}:(.*)$", text, re.MULTILINE)]


def _samples(graph: Graph, n: int = 200) -> np.ndarray:
    """Inputs covering the input type: every code of an integer input at random, floats otherwise."""
    name, ttype = graph.inputs[0]
    rng = np.random.default_rng(0)
    if isinstance(ttype.elem, Real):
        return sample_inputs(graph, n)
    assert is_integer(ttype.elem), f"{name}: golden inputs are f32 or integer"
    if isinstance(ttype.elem, (Bipolar, Ternary)):
        values = [-1, 1] if isinstance(ttype.elem, Bipolar) else [-1, 0, 1]
        return rng.choice(values, (n,) + ttype.shape).astype(np.int64)
    return rng.integers(ttype.elem.lo, ttype.elem.hi + 1, (n,) + ttype.shape).astype(np.int64)


def _passes(source: str, tmp_path: Path):
    (pipeline,) = _directive(source, "RUN")
    passes = parse_pipeline(pipeline)
    rows = _directive(source, "CALIBRATE")
    if rows:  # quantize-inputs reads its calibration samples from a .npy file
        np.save(tmp_path / "cal.npy", np.array([[float(v) for v in r.split()] for r in rows], np.float32))
        from dataclasses import replace
        passes = [replace(p, calibrate=str(tmp_path / "cal.npy")) if hasattr(p, "calibrate") else p for p in passes]
    return passes


@pytest.mark.parametrize("case", CASES)
def test_pass_output_matches_golden(case, tmp_path):
    source = (GOLDEN / f"{case}.in.ir").read_text()
    expected_path = GOLDEN / f"{case}.out.ir"
    expected_text = expected_path.read_text()
    graph = parse_graph(source)
    passes = _passes(source, tmp_path)
    x = {graph.inputs[0][0]: _samples(graph)}
    result, _ = run_pipeline(graph, passes, x)  # verified against the interpreter on the way
    got = print_graph(result, full=True)
    want = print_graph(parse_graph(expected_text), full=True)
    if got != want and UPDATE:
        expected_path.write_text(_header(expected_text) + got)
        pytest.skip(f"rewrote {expected_path.name}: review its diff and its comment")
    diff = "".join(difflib.unified_diff(want.splitlines(True), got.splitlines(True), f"{case}.out.ir", "pass output"))
    assert got == want, (f"{' then '.join(map(str, passes))} on {case}.in.ir no longer gives {case}.out.ir:\n{diff}\n"
                         f"If the change is intended, rerun with BNNC_UPDATE_GOLDEN=1 and review the rewritten "
                         f"file and the derivation in its comment.")


@pytest.mark.parametrize("case", CASES)
def test_golden_output_means_the_input(case, tmp_path):
    """The hand-written expectation, independently of the pass: same outputs as the input."""
    source = (GOLDEN / f"{case}.in.ir").read_text()
    before, after = parse_graph(source), parse_graph((GOLDEN / f"{case}.out.ir").read_text())
    passes = _passes(source, tmp_path)
    x = {before.inputs[0][0]: _samples(before)}
    verdict = check(passes[-1], before, after, x)
    assert verdict.startswith(("verified", "approximates")), verdict


def test_every_golden_has_an_expectation_and_a_derivation():
    assert len(CASES) >= 8
    for case in CASES:
        out = (GOLDEN / f"{case}.out.ir").read_text()
        assert "// Why:" in _header(out), f"{case}.out.ir: say in its comment (// Why: ...) why it is right"
        assert len(_directive((GOLDEN / f"{case}.in.ir").read_text(), "RUN")) == 1
