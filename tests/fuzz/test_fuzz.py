"""Mutated real models never end in a traceback, a hang, a wrong answer or a stray file.

The default run: 300 in-process cases (a few seconds) and three through the CLI process.
benchmarks/fuzz.py runs the same cases at length (--cases 10000).
"""
from __future__ import annotations

import pytest
from bnnc.diagnostics import BnncError
from bnnc.frontend import onnx as frontend

from .campaign import run
from .harness import run_case
from .seeds import build_seeds

SEED = 0


@pytest.fixture(scope="module")
def seeds():
    return build_seeds()


def _report(bugs) -> str:
    return "\n".join(f"case {i} ({name}: {', '.join(applied)}): {o.kind}\n{o.detail[-1200:]}"
                     for i, name, applied, o in bugs)


def test_fuzz_in_process(seeds):
    counts, bugs = run(seeds, SEED, range(300))
    assert not bugs, _report(bugs)
    # the campaign exercises both endings, and checks compiled answers against the original
    assert counts["refused"] > 100 and counts["compiled"] > 10 and counts["compared"] > 10, counts


def test_fuzz_through_the_cli_process(seeds):
    counts, bugs = run(seeds, SEED, range(0, 300, 100), cli=True, timeout=120)
    assert not bugs, _report(bugs)
    assert counts["refused"] + counts["compiled"] == 3


def test_harness_catches_a_traceback_and_a_multi_line_error(seeds, tmp_path, monkeypatch):
    """The harness itself can fail: a lowering that raises, or an error of two lines."""
    def broken(lw):
        raise KeyError(99)

    monkeypatch.setitem(frontend.LOWERINGS, "MatMul", broken)
    assert run_case(tmp_path / "a", seeds["helper_mlp"], {}).kind == "traceback"

    def two_lines(lw):
        raise BnncError("first line\nsecond line")

    monkeypatch.setitem(frontend.LOWERINGS, "MatMul", two_lines)
    assert run_case(tmp_path / "b", seeds["helper_mlp"], {}).kind == "message"
