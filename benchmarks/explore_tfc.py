"""`bnnc explore` on FINN's TFC (bnn_pynq tfc_1w1a, Brevitas export, random weights as in
tests/models/bnn_pynq.py): locally on a process pool, then on a two-worker Dask LocalCluster;
prints the wall time of each, the number of designs and of Pareto points, and whether the two
runs wrote the same files.

    python benchmarks/explore_tfc.py [--out DIR] [--local-only | --dask-only] [explore options...]

Extra options go to `bnnc explore` (e.g. --synth-layers, --points 4, --cycles 4,8,16).
"""
from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def explore(model: Path, out: Path, extra: list[str], cluster: str | None = None) -> float:
    cmd = [sys.executable, "-m", "bnnc", "explore", str(model), "-o", str(out), *extra]
    if cluster:
        cmd += ["--cluster", cluster]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    (out.parent / f"{out.name}.log").write_text(done.stderr)
    if done.returncode != 0:
        sys.exit(f"bnnc explore failed ({out}): {done.stderr.strip().splitlines()[-1:]}")
    return seconds


def summary(out: Path) -> str:
    with open(out / "explore.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    front = [r for r in rows if r["pareto"] == "yes"]
    return f"{len(rows)} designs, {len(front)} on the Pareto front"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="/tmp/bnnc-explore-tfc")
    parser.add_argument("--local-only", action="store_true")
    parser.add_argument("--dask-only", action="store_true")
    args, extra = parser.parse_known_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from tests.models.bnn_pynq import bnn_pynq

    model = Path(bnn_pynq(out / "tfc_1w1a.onnx", "tfc_1w1a"))
    if not args.dask_only:
        seconds = explore(model, out / "local", extra)
        print(f"local process pool: {seconds:.0f} s, {summary(out / 'local')}")
    if not args.local_only:
        from distributed import LocalCluster

        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
            seconds = explore(model, out / "dask", extra, cluster.scheduler_address)
        print(f"Dask LocalCluster, 2 workers: {seconds:.0f} s, {summary(out / 'dask')}")
    if (out / "local").is_dir() and (out / "dask").is_dir():
        same = all((out / "local" / n).read_bytes() == (out / "dask" / n).read_bytes()
                   for n in ("explore.csv", "explore.md", "explore.svg"))
        print(f"local and Dask files {'identical' if same else 'DIFFER'}")


if __name__ == "__main__":
    main()
