"""Fmax on an ECP5 (LFE5U-85F, out of context) after Yosys + nextpnr (YoWASP wheels from PyPI):
each design compiled as it is (`bnnc compile`) and with `--registered`, placed and routed with
compiler/fpga.place_and_route; prints logic cells, flip-flops, multipliers, cycles/frame,
latency and Fmax per design (the median over `--seeds` nextpnr placer seeds, with the range).

Designs (random weights for the FINN topologies, tests/models/bnn_pynq.py, exported with
Brevitas' export_qonnx):
  digits_mlp   examples/digits_mlp, folded to 32 cycles/frame (fully unrolled it needs about
               130-150k LUT4: more than the largest ECP5)
  digits_cnv   examples/digits_cnv at auto folding
  tfc          FINN TFC-w1a1 (784-64-64-64-10) at auto folding
  sfc, cnv     FINN SFC-w1a1 / CNV-w1a1 at a folding given with --fold-sfc / --fold-cnv (auto
               folding of either does not fit the 85k part)

Run from the checkout so that `import bnnc` is this compiler (as for the other benchmarks):
    mkdir -p /tmp/shim && ln -sfn $PWD/compiler /tmp/shim/bnnc
    PYTHONPATH=/tmp/shim:. python benchmarks/fmax.py --designs digits_mlp,tfc --seeds 3
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bnnc  # noqa: E402
from bnnc.fpga import place_and_route  # noqa: E402
from bnnc.processes import stop_tools_on_signals  # noqa: E402

DIGITS_MLP_FOLD = {"layers": {"0": {"pe": 4, "simd": 32}, "1": {"pe": 4, "simd": 32}, "2": {"pe": 4, "simd": 32},
                              "3": {"pe": 10, "simd": 2}}}


def model(name: str, work: Path) -> Path:
    if name == "digits_mlp":
        return ROOT / "examples" / "digits_mlp" / "digits_mlp.onnx"
    if name == "digits_cnv":
        return ROOT / "examples" / "digits_cnv" / "digits_cnv.onnx"
    from tests.models.bnn_pynq import bnn_pynq

    path = work / f"{name}.onnx"
    if not path.is_file():
        bnn_pynq(path, f"{name}_1w1a")
    return path


def folding_at(path: Path, interval: int) -> dict:
    """The auto folding rule with a target of `interval` cycles per frame (as `bnnc explore` folds)."""
    from bnnc import driver
    from bnnc.backends.hardware import auto_folding

    design = driver.hardware(driver.compile_model(path, driver.Options()))
    return auto_folding(list(design.layers), interval=interval)


def run(name: str, fold, registered: bool, work: Path, seeds: int, timeout: float, interval: int = 0) -> dict:
    if interval:
        fold = folding_at(model(name, work), interval)
    build = bnnc.compile(model(name, work), work / f"{name}-{'reg' if registered else 'plain'}{interval or ''}",
                         fold=fold, registered=registered)
    hw = build.manifest["hardware"]
    rtl = build.path / "rtl"
    sources = [rtl / line for line in (rtl / "filelist.f").read_text().split()]
    placed = []
    for seed in range(1, seeds + 1):
        start = time.perf_counter()
        placed.append(place_and_route(sources, hw["top"], "ecp5", build.path / f"pnr-{seed}", timeout=timeout,
                                      seed=seed))
        print(f"  {name} {'registered' if registered else 'plain'} seed {seed}: {placed[-1].fmax_mhz:.1f} MHz "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
    fmax = [p.fmax_mhz for p in placed]
    return dict(design=name, registered=registered, cycles=hw["cycles_per_frame"], latency=hw["latency_cycles"],
                cells=placed[0].logic_cells, ffs=placed[0].flip_flops, dsp=placed[0].multipliers,
                fmax=statistics.median(fmax), lo=min(fmax), hi=max(fmax), seconds=statistics.median(p.seconds for p in placed))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--designs", default="digits_mlp,digits_cnv,tfc")
    ap.add_argument("--variants", default="plain,registered")
    ap.add_argument("--seeds", type=int, default=1, help="nextpnr placer seeds per design (median reported)")
    ap.add_argument("--fold-sfc", default=None, help="folding file for the SFC (auto folding does not fit)")
    ap.add_argument("--fold-cnv", default=str(ROOT / "benchmarks" / "cnv_finn_folding.json"),
                    help="folding file for the CNV (default: FINN's own, benchmarks/cnv_finn_folding.json)")
    ap.add_argument("--interval", type=int, default=0,
                    help="fold every design with the auto rule for this many cycles per frame instead")
    ap.add_argument("--timeout", type=float, default=3600.0, help="per Yosys or nextpnr run, seconds")
    ap.add_argument("--work", type=Path, default=None, help="keep builds and place-and-route results here")
    args = ap.parse_args()
    stop_tools_on_signals()  # a kill of this script also stops the Yosys or nextpnr it waits for
    folds = {"digits_mlp": DIGITS_MLP_FOLD, "digits_cnv": "auto", "tfc": "auto",
             "sfc": args.fold_sfc or "auto", "cnv": args.fold_cnv}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = (args.work or Path(tmp)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        for name in args.designs.split(","):
            for variant in args.variants.split(","):
                rows.append(run(name, folds[name], variant == "registered", work, args.seeds, args.timeout,
                                args.interval))
    print()
    print("| design | RTL | cycles/frame | latency | logic cells | FFs | MULT18 | Fmax (MHz) | seeds' range | P&R (s) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|---:|")
    for r in rows:
        print(f"| {r['design']} | {'--registered' if r['registered'] else 'default'} | {r['cycles']} | {r['latency']} | "
              f"{r['cells']:,} | {r['ffs']:,} | {r['dsp']} | {r['fmax']:.1f} | {r['lo']:.1f}-{r['hi']:.1f} | "
              f"{r['seconds']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
