"""Long fuzz runs of `bnnc compile` on mutated real models (see tests/fuzz/).

    python benchmarks/fuzz.py --cases 10000 --seed 1
    python benchmarks/fuzz.py --seed 1 --case 4321     # replay one case, full report

Every case must end with exit 0 and answers equal to the original model's (where onnxruntime or
onnx.reference runs it), or exit 2 with one `bnnc: error:` line. Prints the outcome counts, the
time, and each bug (case index, seed model, mutations, traceback or message). The process caps
its own heap (--max-gb) so that an unbounded allocation is a MemoryError bug, not a dead machine.
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fuzz.campaign import case, run  # noqa: E402
from tests.fuzz.seeds import COMMITTED, build_seeds  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--case", type=int, help="replay this one case and print its outcome in full")
    p.add_argument("--cli", type=int, default=20, help="cases also run through a `python -m bnnc` process")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds per case before it counts as a hang")
    p.add_argument("--models", default=str(COMMITTED),
                   help="folder of seed models, exported into it where missing (default: the committed ones)")
    p.add_argument("--save", help="write each bug's model (and side files) into this folder")
    p.add_argument("--max-gb", type=float, default=6.0, help="heap limit for this process")
    args = p.parse_args()

    seeds = build_seeds(Path(args.models))
    limit = int(args.max_gb * (1 << 30))
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    if args.case is not None:
        name, _, _, applied = case(seeds, args.seed, args.case)
        counts, bugs = run(seeds, args.seed, [args.case], timeout=args.timeout,
                           on_case=lambda i, n, a, o: print(f"case {i} ({n}, {', '.join(a)}): {o.kind}\n{o.detail}"))
        return 1 if bugs else 0

    start = time.perf_counter()
    counts, bugs = run(seeds, args.seed, range(args.cases), timeout=args.timeout,
                       on_case=lambda i, *_: i % 1000 == 999 and print(f"  {i + 1} cases, "
                                                                     f"{time.perf_counter() - start:.0f} s", flush=True))
    elapsed = time.perf_counter() - start
    step = max(1, args.cases // max(args.cli, 1))
    cli_counts, cli_bugs = run(seeds, args.seed, range(0, args.cases, step)[:args.cli], cli=True, timeout=120)
    bugs += [(i, n, a, o) for i, n, a, o in cli_bugs]

    bad = ("traceback", "hang", "wrong", "message", "escaped")
    print(f"seed {args.seed}: {args.cases} cases in {elapsed:.0f} s ({1000 * elapsed / max(args.cases, 1):.0f} ms/case)")
    print(f"  exit 0: {counts['compiled']} ({counts['compared']} compared with the original, all equal unless "
          f"listed; {counts['rounding']} of them only with the original run in float64)")
    print(f"  exit 2 (one line): {counts['refused']}")
    print("  " + ", ".join(f"{k}s: {counts[k]}" for k in bad))
    print(f"  through the CLI process: {sum(cli_counts[k] for k in ('compiled', 'refused'))} good of "
          f"{sum(v for k, v in cli_counts.items() if k != 'compared')}")
    for index, name, applied, outcome in bugs:
        print(f"\n--- case {index} ({name}: {', '.join(applied)}): {outcome.kind}\n{outcome.detail.strip()[-1500:]}")
        if args.save:
            from tests.fuzz.campaign import case as make
            _, data, files, _ = make(seeds, args.seed, index)
            folder = Path(args.save) / f"case{index}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "model.onnx").write_bytes(data)
            for fname, content in files.items():
                (folder / fname).write_bytes(content)
    return 1 if bugs else 0


if __name__ == "__main__":
    sys.exit(main())
