"""Yosys LUTs of FINN's SFC (brevitas_examples.bnn_pynq) with 2-bit activations next to binary ones.

SFC 784-256-256-256-10 in 1w1a and 1w2a (random init and BatchNorm statistics as in the tests,
tests/models/bnn_pynq.py), compiled at `--fold auto`, synthesized as `bnnc report` does it
(compiler/report.py `synthesize` with `shared_cells`: Yosys `synth_xilinx -flatten -noiopad`,
each unit of the top and each folded layer's lane synthesized alone and counted per instance).
1w2a layers after the first read 2-bit codes, so each term is an x*w product instead of an XNOR.

    python benchmarks/multibit_luts.py [--models sfc_1w1a,sfc_1w2a] [--timeout S] [--layers]

`--layers` synthesizes each layer's matrix-vector unit alone (`bnnc report --synth-layers all`)
instead of the whole design. Run from the checkout with the package importable as bnnc.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bnnc
from bnnc import driver
from bnnc.backends.verilog import TOP
from bnnc.report import SynthTimeout, shared_cells, synthesize, yosys_version


def measure(name: str, build: Path, timeout: float, layers: bool) -> list[str]:
    design = driver.hardware(driver.open_build(build))
    manifest = json.loads((build / "manifest.json").read_text())["hardware"]
    tops = [(f"bnnc_layer{entry['index']}", f"layer {entry['index']}") for entry in manifest["layers"]
            if (build / "rtl" / f"bnnc_layer{entry['index']}.v").exists()] if layers else [(TOP, "whole design")]
    # products per clock: XNORs of 1-bit layers, +-x terms of the integer first layer, x*w of the rest
    terms = sum(entry["resources"][key] for entry in manifest["layers"]
                for key in ("xnors", "add_sub_terms", "multiply_terms"))
    rows = []
    for top, label in tops:
        start = time.perf_counter()
        try:
            counts = synthesize(build / "rtl", top, timeout, shared_cells(design, top))
            cells = f"{counts['LUT']:>9,} {counts['FF']:>8,} {counts['CARRY']:>7,} {counts['DSP']:>5,}" if counts \
                else "no yosys"
        except SynthTimeout:
            cells = f"did not finish within {timeout:g} s"
        rows.append(f"{name:<10} {label:<13} {manifest['cycles_per_frame']:>13} {terms:>13,} {cells} "
                    f"{time.perf_counter() - start:>8.0f} s")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="sfc_1w1a,sfc_1w2a")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--layers", action="store_true", help="each layer's unit alone, not the whole design")
    args = parser.parse_args()
    print(f"{yosys_version()}, synth_xilinx at --fold auto")
    print(f"{'model':<10} {'synthesized':<13} {'cycles/frame':>13} {'terms/clock':>13} {'LUT':>9} {'FF':>8} "
          f"{'CARRY':>7} {'DSP':>5} {'yosys':>10}")
    from tests.models.bnn_pynq import bnn_pynq

    with tempfile.TemporaryDirectory() as tmp:
        names = args.models.split(",")
        for name in names:  # one after the other: Brevitas' export is not thread-safe
            bnnc.compile(bnn_pynq(Path(tmp) / f"{name}.onnx", name), Path(tmp) / name, fold="auto")
        with ThreadPoolExecutor(max_workers=len(names)) as pool:  # each synthesis is its own Yosys process
            for rows in pool.map(lambda n: measure(n, Path(tmp) / n, args.timeout, args.layers), names):
                print("\n".join(rows), flush=True)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
