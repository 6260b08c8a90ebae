"""A fuzz campaign: case i of seed S mutates one of the seed models with Generator((S, i))."""
from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from .harness import GOOD, Outcome, run_case, run_case_cli
from .mutate import mutate


def case(seeds: dict[str, bytes], seed: int, index: int):
    """(seed model name, model bytes, side files, mutations) of one case, from (seed, index) alone."""
    rng = np.random.default_rng((seed, index))
    names = sorted(seeds)
    name = names[int(rng.integers(len(names)))]
    data, files, applied = mutate(rng, seeds[name])
    return name, data, files, applied


def run(seeds: dict[str, bytes], seed: int, indices, cli: bool = False, timeout: float = 20.0,
        on_case=None) -> tuple[Counter, list[tuple[int, str, list[str], Outcome]]]:
    """Counts of outcome kinds, and the bugs: (index, seed model, mutations, outcome)."""
    counts, bugs = Counter(), []
    for index in indices:
        name, data, files, applied = case(seeds, seed, index)
        folder = Path(tempfile.mkdtemp(prefix="bnnc-fuzz-"))
        try:
            outcome = (run_case_cli if cli else run_case)(folder, data, files, timeout)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        counts[outcome.kind] += 1
        counts["compared"] += outcome.compared
        counts["rounding"] += outcome.rounding
        if outcome.kind not in GOOD:
            bugs.append((index, name, applied, outcome))
        if on_case:
            on_case(index, name, applied, outcome)
    return counts, bugs
