"""What --multiplier-free K costs and saves on the residual examples (examples/bireal_digits).

For each model, without the option and with K = 1, 2, 3 signed powers of two per multiplier:
  - accuracy on the 200 saved test images (test_x.npy / test_y.npy) of the compiled model (the
    interpreter, which RTL and HLS equal bit for bit) and of the original ONNX (onnxruntime), and
    how often the compiled model's class is the original's;
  - the stated fixed-point error bound (against the rounded model when K > 0: against the
    original no bound holds then);
  - $mul cells in the emitted RTL as Yosys elaborates it (`proc; flatten`), and the resources of
    Yosys' `synth_xilinx -flatten` (DSP48E1, LUT) with its run time -- `bnnc report`'s synthesis
    (compiler/report.py: the top's units and the lanes of folded layers synthesized as modules of
    their own, counted once per instance), which keeps Yosys 0.23 tractable here.

    python benchmarks/multiplier_free.py [--no-synth] [--models bireal_digits,...] [--ks 0,1,2,3]

Run from the checkout with the package importable as bnnc (pip install ., or PYTHONPATH pointing
at a folder with a bnnc -> compiler link). Synthesis takes most of the time: 51 min for the
four Bi-Real variants here (Yosys 0.23, 2 shared cores), the larger K the longer.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import bnnc
import numpy as np
from bnnc import driver
from bnnc.backends.verilog import sources
from bnnc.original import run_original
from bnnc.report import shared_cells, synthesize

HERE = Path(__file__).resolve().parents[1] / "examples" / "bireal_digits"
MODELS = ("bireal_digits", "reactnet_digits")


def multipliers(rtl_dir: Path) -> int:
    """$mul cells of the design as Yosys elaborates and flattens it (before optimisation: `opt`
    takes minutes on these designs, and a multiplier the RTL describes is what this counts)."""
    files = " ".join(str(p) for p in sources(rtl_dir))
    stat = rtl_dir.parent / "mul_stat.txt"
    subprocess.run(["yosys", "-q", "-p", f"read_verilog {files}; hierarchy -top bnnc_top; proc; flatten; "
                    f"tee -q -o {stat} stat"], check=True, capture_output=True)
    found = re.search(r"\$mul\s+(\d+)", stat.read_text())
    return int(found.group(1)) if found else 0


def measure(name: str, k: int, work: Path, synth: bool, timeout: float) -> dict:
    model, x, y = HERE / f"{name}.onnx", np.load(HERE / "test_x.npy"), np.load(HERE / "test_y.npy")
    samples = str(HERE / "test_x.npy")
    build = work / f"{name}_k{k}"
    bnnc.compile(model, build, calibrate=samples, quantize_weights=8, multiplier_free=k)
    compiled = driver.open_build(build)
    scores = driver.execute(compiled, x, "interp").reshape(len(x), -1)
    original = run_original(compiled.model, x).reshape(len(x), -1)
    row = {"model": name, "K": k or "-", "accuracy": float(np.mean(scores.argmax(1) == y)),
           "original accuracy": float(np.mean(original.argmax(1) == y)),
           "agreement": float(np.mean(scores.argmax(1) == original.argmax(1))),
           "bound": driver.error_bound(compiled.graph), "$mul": "-", "DSP48E1": "-", "LUT": "-", "yosys s": "-"}
    if shutil.which("yosys"):
        row["$mul"] = multipliers(build / "rtl")
        if synth:
            start = time.perf_counter()
            cells = synthesize(build / "rtl", timeout=timeout, shared=shared_cells(driver.hardware(compiled), "bnnc_top"))
            row.update({"DSP48E1": cells["DSP"], "LUT": cells["LUT"], "yosys s": f"{time.perf_counter() - start:.0f}"})
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-synth", action="store_true", help="skip synth_xilinx (accuracy and $mul only)")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--ks", default="0,1,2,3", help="signed powers of two per multiplier; 0: without the option")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per synth_xilinx run")
    args = parser.parse_args()
    columns = ("model", "K", "accuracy", "original accuracy", "agreement", "bound", "$mul", "DSP48E1", "LUT", "yosys s")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    with tempfile.TemporaryDirectory(prefix="bnnc-mf-") as tmp:
        for name in args.models.split(","):
            for k in (int(v) for v in args.ks.split(",")):
                row = measure(name, k, Path(tmp), not args.no_synth, args.timeout)
                cells = [f"{v:.1%}" if c in ("accuracy", "original accuracy", "agreement") else
                         f"{v:.3g}" if c == "bound" else str(v) for c, v in ((c, row[c]) for c in columns)]
                print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
