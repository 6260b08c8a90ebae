"""bnnc command line: compile, inspect, run, verify.

Bad input ends with one line naming the problem on stderr and exit code 2; a verification that
finds a mismatch exits 1.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from . import driver
from .backends.manifest import design_manifest
from .diagnostics import BnncError
from .ir.printer import print_graph
from .passes import DEFAULT_PIPELINE

TL_PASS = "map-threshold-logic"

# Float32 execution of the original model differs from exact arithmetic by rounding only.
ORIGINAL_RTOL = 1e-5


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pipeline", default=DEFAULT_PIPELINE, help="passes to run, e.g. 'fold-constants,fold-thresholds'")
    p.add_argument("--fold", default="auto", help="'auto' or a JSON file {\"layers\": {\"0\": {\"pe\": 8, \"simd\": 64}}}")
    p.add_argument("--calibrate", help="samples (.npy) that set the fixed-point format of an input the model does not quantize")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bnnc", description="Compile binarized neural networks (ONNX) to hardware.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("compile", help="ONNX -> Verilog/HLS build folder with a manifest")
    p.add_argument("model")
    p.add_argument("-o", "--output", default="build", help="build folder (default: build)")
    p.add_argument("--target", default="verilog", choices=["verilog", "hls", "asic", "all"],
                   help="asic: DIR/asic/tl (threshold-logic netlist) and DIR/asic/cmos (RTL for the standard-cell mapping)")
    p.add_argument("--verify", action="store_true", help="check every pass with the interpreter")
    p.add_argument("--inputs", help="samples (.npy) for --verify; default: random ones")
    _common(p)

    p = sub.add_parser("inspect", help="print the IR after passes")
    p.add_argument("model")
    p.add_argument("--print-after-all", action="store_true", help="print the IR after every pass")
    p.add_argument("--print-after", action="append", default=[], help="print the IR after this pass")
    p.add_argument("--verify", action="store_true", help="check every pass with the interpreter")
    p.add_argument("--inputs", help="samples (.npy) for --verify; default: random ones")
    _common(p)

    p = sub.add_parser("run", help="run samples through a build's reference, RTL or HLS")
    p.add_argument("build")
    p.add_argument("--inputs", required=True, help="X.npy: samples on axis 0")
    p.add_argument("--output", required=True, help="Y.npy to write, in the model's units")
    p.add_argument("--backend", default="rtl", choices=["interp", "rtl", "hls", "tl", "cmos"],
                   help="tl / cmos: gate-level simulation of the ASIC netlists (cmos needs qflow-tech-osu018 and Icarus)")
    p.add_argument("--simulator", default="verilator", choices=["verilator", "icarus"])

    p = sub.add_parser("report", help="what channel reuse saves: XNORs per layer and Yosys synth_xilinx resources")
    p.add_argument("build")
    p.add_argument("--no-synth", action="store_true", help="skip synthesis (counts only)")
    p.add_argument("--synth-timeout", type=float, default=1800, help="seconds per Yosys run (default: 1800)")
    p.add_argument("--synth-jobs", type=int, default=2, help="Yosys runs at a time, one process each (default: 2; "
                   "a whole SFC-sized design takes 6-9 GB per run)")
    p.add_argument("--synth-layers", help="'all' or a comma list of layer indices: synthesize each layer's "
                   "matrix-vector module alone instead of the whole design (for designs too large for Yosys)")

    p = sub.add_parser("verify", help="original ONNX vs reference vs RTL (vs HLS), one table")
    p.add_argument("model")
    p.add_argument("--inputs", required=True, help="X.npy: samples on axis 0")
    p.add_argument("--backends", default="rtl", help="comma list of rtl, hls, tl, cmos (default: rtl)")
    p.add_argument("--simulator", default="verilator", choices=["verilator", "icarus"])
    p.add_argument("--work", default=None, help="folder for simulation builds (default: a temporary one)")
    _common(p)
    return parser


def _samples(args, graph) -> np.ndarray:
    return driver.load_inputs(args.inputs, graph) if args.inputs else driver.sample_inputs(graph)


def _layer_summary(layer: dict) -> str:
    """One line per manifest layer: its shape, folding and clocks per frame on its own."""
    cycles = layer["unit_cycles"] if layer["unit_cycles"] is not None else layer["cycles"]
    if layer["kind"] == "pool":
        shape = "x".join(map(str, layer["in_shape"])) + " -> " + "x".join(map(str, layer["out_shape"]))
        return f"layer {layer['index']}: pool {layer['kernel'][0]}x{layer['kernel'][1]}, {shape}, {cycles} cycles/frame"
    what = "conv" if "window" in layer else "dense"
    return (f"layer {layer['index']}: {what} {layer['in_count']} -> {layer['out_count']} ({layer['post']['kind']}), "
            f"pe={layer['pe']} simd={layer['simd']}, {cycles} cycles/frame")


def cmd_compile(args) -> int:
    start = time.perf_counter()
    targets = ("verilog", "hls", "asic") if args.target == "all" else (args.target,)
    options = driver.Options(args.pipeline, args.fold, targets, args.calibrate)
    samples = None
    if args.verify:
        source = driver.lower(driver.load_model(args.model), Path(args.model).stem)
        samples = _samples(args, source)
    compiled = driver.compile_model(args.model, options, samples)
    written = driver.write_build(compiled, Path(args.output), Path(args.model))
    design = compiled.design
    print(f"compiled {args.model} -> {args.output}/ in {time.perf_counter() - start:.2f} s")
    manifest = design_manifest(design)
    for layer in manifest["layers"]:
        print("  " + _layer_summary(layer))
    print(f"  pipeline interval {manifest['cycles_per_frame']} cycles/frame, latency "
          f"{manifest['latency_cycles']} cycles; output error bound {driver.error_bound(compiled.graph):.3g}")
    if args.verify:
        for name, _, record in compiled.stages:
            print(f"  {name}: {record.verified}")
    print("  wrote " + ", ".join(p.name + ("/" if p.is_dir() else "") for p in written))
    return 0


def cmd_inspect(args) -> int:
    model = driver.load_model(args.model)
    source = driver.lower(model, Path(args.model).stem)
    wanted = {n.split("{")[0] for n in args.print_after}
    # map-threshold-logic runs on the hardware plan after the IR pipeline, not on the IR
    tl = [n for n in args.print_after if n.split("{")[0] == TL_PASS]
    if args.print_after_all and not tl:
        tl = [TL_PASS]
    if tl:
        from .backends.asic.tl import tl_pass, threshold_logic
        from .passes.threshold_logic import print_mapping

        for text in tl:
            tl_pass(text)  # bad options fail before anything is printed
    print("// after import")
    print(print_graph(source))

    def show(p, graph, record):
        if args.print_after_all or p.name in wanted:
            print(f"// after {p}  ({record.verified}, {record.seconds * 1000:.1f} ms)")
            print(print_graph(graph))
        elif args.verify:
            print(f"// {p}: {record.verified}")

    samples = _samples(args, source) if args.verify else None
    compiled = driver.compile_model(args.model, driver.Options(args.pipeline, args.fold, calibrate=args.calibrate),
                                    samples, on_stage=show)
    for text in tl:
        print(f"// after {text} (on the hardware plan, every layer fully unrolled)")
        print(print_mapping(threshold_logic(compiled.graph, text)), end="")
    return 0


def cmd_run(args) -> int:
    compiled = driver.open_build(Path(args.build))
    x = driver.load_inputs(args.inputs, compiled.source)
    y = driver.execute(compiled, x, args.backend, Path(args.build), args.simulator)
    np.save(args.output, y)
    print(f"wrote {args.output}: {y.shape[0]} samples of shape {y.shape[1:]} ({args.backend})")
    return 0


def cmd_report(args) -> int:
    from .report import report

    layers = args.synth_layers
    if layers and layers != "all":
        try:
            layers = [int(i) for i in layers.split(",") if i.strip()]
        except ValueError:
            raise BnncError(f"--synth-layers: '{layers}' is not 'all' or a comma list of layer indices") from None
    if args.synth_jobs < 1:
        raise BnncError(f"--synth-jobs: {args.synth_jobs} is not a positive number of Yosys runs")
    text = report(Path(args.build), synth=not args.no_synth, timeout=args.synth_timeout, layers=layers,
                  jobs=args.synth_jobs)
    print(text, end="")
    print(f"(also written to {Path(args.build) / 'report.md'})")
    return 0


def _argmax_agreement(y: np.ndarray, original: np.ndarray, allowed: np.ndarray) -> int:
    """Samples whose predicted class is a top class of the original. Classes whose original
    scores are equal up to float32 rounding are ties: the original's own pick among them
    depends on summation order, so any of them counts."""
    n = len(y)
    y, original, allowed = y.reshape(n, -1), original.reshape(n, -1), allowed.reshape(n, -1)
    picked = original[np.arange(n), y.argmax(1)]
    return int(np.sum(picked >= original.max(1) - 2 * allowed.max(1)))


def cmd_verify(args) -> int:
    import tempfile

    from .original import run_original

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for b in backends:
        if b not in ("rtl", "hls", "tl", "cmos"):
            raise BnncError(f"unknown backend '{b}' in --backends (choose rtl, hls, tl, cmos)")
    targets = tuple(dict.fromkeys({"rtl": "verilog", "hls": "hls", "tl": "asic", "cmos": "asic"}[b] for b in backends))
    compiled = driver.compile_model(args.model, driver.Options(args.pipeline, args.fold, targets, args.calibrate))
    x = driver.load_inputs(args.inputs, compiled.source)
    driver.progress(f"running the original model on {len(x)} samples...")
    original = run_original(compiled.model, x).astype(np.float64).reshape((len(x),) + compiled.output_shape)
    reference = driver.execute(compiled, x, "interp")
    bound = driver.error_bound(compiled.graph)
    rows = [("reference", reference)]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        for b in backends:
            # check=False: mismatches are counted in the table rather than stopping the run.
            rows.append((b, driver.execute(compiled, x, b, work / b, args.simulator, check=False)))
    ok = True
    n = len(x)
    classes = original.reshape(n, -1).shape[1] > 1
    print(f"{n} samples, output bound {bound:.3g} (+ rtol {ORIGINAL_RTOL:g} for float32 rounding in the original)")
    print(f"{'backend':<10} {'= reference':>12} {'argmax = orig':>14} {'max |y - orig|':>15}  verdict")
    for name, y in rows:
        same = int(np.sum(np.all((y == reference).reshape(n, -1), axis=1)))
        err = np.abs(y - original)
        allowed = bound + ORIGINAL_RTOL * np.maximum(1.0, np.abs(original))
        within = bool(np.all(err <= allowed))
        agree = _argmax_agreement(y, original, allowed) if classes else None
        good = within and same == n
        ok &= good
        print(f"{name:<10} {f'{same}/{n}':>12} {(f'{agree}/{n}' if classes else '-'):>14} {float(err.max()):>15.3g}  "
              f"{'ok' if good else 'MISMATCH'}")
    return 0 if ok else 1


COMMANDS = {"compile": cmd_compile, "inspect": cmd_inspect, "run": cmd_run, "verify": cmd_verify, "report": cmd_report}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except BnncError as exc:
        print(f"bnnc: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bnnc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
