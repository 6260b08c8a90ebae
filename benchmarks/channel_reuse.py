"""Runtime of the channel-reuse tree on a 512 x 4608 layer (FINN CNV's last conv is 256 x 2304;
512 x 4608 is a 3x3 conv from 512 to 512 channels). Goal: under 2 s.

Prints the median of several runs, for random weights and for weights with structure (noisy
copies of a few prototypes, as MST-aware training produces), with the XNOR counts it achieves.
No peer has this pass, so there is no ratio to quote.
"""
from __future__ import annotations

import statistics
import time

import numpy as np
from bnnc.passes.channel_reuse import build_tree, tree_stats

RUNS = 5


def layer(structured: bool, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if not structured:
        return rng.choice([-1, 1], (512, 4608)).astype(np.int8)
    proto = rng.choice([-1, 1], (16, 4608))
    rows = proto[rng.integers(0, 16, 512)] * np.where(rng.random((512, 4608)) < 0.1, -1, 1)
    return rows.astype(np.int8)


def main() -> None:
    print(f"channel-reuse on a 512 x 4608 layer, median of {RUNS} runs")
    print(f"{'weights':<11} {'seconds':>8} {'XNORs before':>13} {'after':>10} {'ratio':>6} {'depth':>6}")
    for structured in (False, True):
        rows = layer(structured)
        times = []
        for _ in range(RUNS):
            start = time.perf_counter()
            tree = build_tree(rows, add_cost=14)
            times.append(time.perf_counter() - start)
        s = tree_stats(rows, tree)
        print(f"{'structured' if structured else 'random':<11} {statistics.median(times):>8.3f} "
              f"{s['xnor_before']:>13} {s['xnor_after']:>10} {s['xnor_before'] / s['xnor_after']:>6.2f} {s['depth']:>6}")


if __name__ == "__main__":
    main()
