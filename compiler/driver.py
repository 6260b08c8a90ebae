"""The compile flow shared by the CLI commands: import, run the pipeline, lower to hardware,
write a build folder atomically, and execute a model on any backend in the model's own units.
"""
from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx

from . import input_width, interp
from .diagnostics import BnncError, progress, quote
from .frontend.load import load_model
from .frontend.onnx import lower, lower_with_notes  # noqa: F401  (driver.lower: used by the CLI and API)
from .ir.graph import Graph
from .ir.ops import IRError, Quantize, weight_kind
from .ir.printer import print_graph
from .ir.types import Fixed
from .passes import DEFAULT_PIPELINE, PassError, parse_pipeline, run_pipeline
from .passes.channel_reuse import ChannelReuse, skipped_layers
from .resources import resource_dir

BUILD_INFO = "build.json"


@dataclass
class Options:
    pipeline: str = DEFAULT_PIPELINE
    fold: str | dict = "auto"  # "auto", a JSON file, or the folding itself
    targets: tuple[str, ...] = ("verilog",)
    calibrate: str | None = None  # samples that set the fixed-point format of unquantized inputs
    quantize_weights: int = 0  # round weights that are not a scale times integers to this many bits
    multiplier_free: int = 0  # K > 0: scales and weights to at most K signed powers of two (fold-fixed-point)
    wrap: str = "none"  # "axis": an AXI4-Stream top around the RTL (see compiler/integration.py)
    tuser_bits: int = 0  # with wrap="axis": TUSER width, 0 for none
    registered: bool = False  # Verilog: register every matrix-vector unit (hardware.Design.registered)


@dataclass
class Compiled:
    model: onnx.ModelProto
    source: Graph  # as imported
    graph: Graph  # after the pipeline
    stages: list  # (pass name, graph after it, PassRecord)
    options: Options
    output_shape: tuple[int, ...]
    source_path: Path
    design: object = field(default=None)
    rounded_by: tuple[str, ...] = ()  # options that moved the model's constants (no bound against the original)
    multiplier_free: int = 0  # the rounding's K (fold-fixed-point{multiplier-free=K}): backends shift and add

    @property
    def weights_moved(self) -> bool:
        """--quantize-weights moved weights beyond float32 rounding, or --multiplier-free moved
        scales or weights: no output bound against the original holds."""
        return bool(self.rounded_by)


def _output_shape(model: onnx.ModelProto, graph: Graph) -> tuple[int, ...]:
    """The output's per-sample shape as the model declares it, if it declares one."""
    computed = graph.types[graph.outputs[0]].shape
    output = model.graph.output[0]
    dims = [d.dim_value if d.HasField("dim_value") else None for d in output.type.tensor_type.shape.dim]
    if len(dims) >= 1 and all(d is not None and d > 0 for d in dims[1:]):
        declared = tuple(d for d in dims[1:] if d is not None)  # every one: see above
        if int(np.prod(declared)) != int(np.prod(computed)):
            raise BnncError(f"output {quote(output.name)}: declared shape {dims} does not hold the "
                            f"{int(np.prod(computed))} values per sample the model computes")
        return declared
    return computed


def sample_inputs(graph: Graph, n: int = 64, seed: int = 0) -> np.ndarray:
    """Random inputs over the range the model's input quantizer resolves, plus exact zeros."""
    rng = np.random.default_rng(seed)
    shape = (n,) + graph.inputs[0][1].shape
    quant = next((op for op in graph.ops if isinstance(op, Quantize)), None)
    if quant is not None:
        lo = (quant.lo - float(quant.zero_point)) * float(quant.scale)
        hi = (quant.hi - float(quant.zero_point)) * float(quant.scale)
        x = rng.uniform(lo * 1.1, hi * 1.1, shape)
    else:
        x = rng.normal(0.0, 1.0, shape) + rng.integers(0, 2, shape) * 0.5
    x[0] = 0.0  # the all-zero sample exercises Sign(0) and threshold ties
    return x.astype(np.float32)


def compile_model(model_path: str | Path, options: Options, samples: np.ndarray | None = None,
                  on_stage=None) -> Compiled:
    """Import and run the pipeline; with samples, every pass is checked by the interpreter."""
    model = load_model(model_path)
    source, notes, moved = lower_with_notes(model, Path(model_path).stem, options.quantize_weights)
    for note in notes:
        progress(note)
    feeds = None if samples is None else {source.inputs[0][0]: check_inputs(samples, source)}
    if options.calibrate:
        load_inputs(options.calibrate, source)  # a bad calibration file is bad input: say so now
    try:
        passes = parse_pipeline(options.pipeline)
        if options.calibrate:
            from .passes.fixed_point import FoldFixedPoint, QuantizeInputs
            passes = [replace(p, calibrate=str(options.calibrate)) if isinstance(p, (QuantizeInputs, FoldFixedPoint))
                      else p for p in passes]
        if options.multiplier_free:
            passes = _multiplier_free(passes, options.multiplier_free)
        def run(passes):
            return _run_passes(source, passes, options, feeds)
        if input_width.left_to_bnnc(passes, options.calibrate):
            assert options.calibrate is not None
            x = load_inputs(options.calibrate, source)
            classes = int(np.prod(_output_shape(model, source)))
            graph, stages = input_width.widened(model, passes, x, classes, run)
        else:
            graph, stages = run(passes)
    except (PassError, IRError) as exc:
        raise BnncError(str(exc)) from None
    rounded = [note for _, _, record in stages for note in record.notes]
    for note in rounded:
        progress(note)
    for name, g, record in stages:
        if on_stage:
            on_stage(name, g, record)
    rounded_by = (("--quantize-weights",) if moved else ()) + (("--multiplier-free",) if rounded else ())
    return Compiled(model, source, graph, [(str(p), g, r) for p, g, r in stages], options,
                    _output_shape(model, source), Path(model_path), rounded_by=rounded_by,
                    multiplier_free=_rounding_terms(passes))


def _multiplier_free(passes: list, k: int) -> list:
    """--multiplier-free K: the option of fold-fixed-point, which does the rounding."""
    from .passes.fixed_point import FoldFixedPoint

    if not any(isinstance(p, FoldFixedPoint) for p in passes):
        raise BnncError(f"--multiplier-free {k}: the pipeline has no fold-fixed-point pass, which does the rounding")
    return [replace(p, multiplier_free=k) if isinstance(p, FoldFixedPoint) else p for p in passes]


def _rounding_terms(passes: list) -> int:
    """K of a fold-fixed-point{multiplier-free=K} in the pipeline (0: none)."""
    from .passes.fixed_point import FoldFixedPoint

    return max((p.multiplier_free for p in passes if isinstance(p, FoldFixedPoint)), default=0)


def _run_passes(source: Graph, passes: list, options: Options, feeds) -> tuple[Graph, list]:
    stages = []
    graph = source
    for p in passes:
        if isinstance(p, ChannelReuse) and not p.groups:
            p = replace(p, groups=_reuse_groups(graph, options.fold))
        if isinstance(p, ChannelReuse):
            for op in skipped_layers(graph):
                progress(f"channel-reuse: ONNX node {quote(op.origin)} has {weight_kind(op.weights)} weights; "
                         f"channel reuse is for binary (+-1) weights only, so its channels are computed from scratch")
        graph, _ = run_pipeline(graph, [p], feeds, lambda p, g, record: stages.append((p, g, record)))
    return graph, stages


def _reuse_groups(graph: Graph, fold: str | dict) -> tuple:
    """Per weight layer, the channels a folded layer computes in the same clock (PE of them,
    consecutive): reuse stays inside those groups. 0 = fully parallel, the whole layer."""
    from .backends.hardware import Layer
    from .backends.hardware import lower as lower_hw

    design = lower_hw(graph, folding_spec(fold), reuse=True)
    return tuple(0 if layer.pe == layer.out_count else layer.pe for layer in design.layers if isinstance(layer, Layer))


def check_inputs(x: np.ndarray, graph: Graph) -> np.ndarray:
    name, ttype = graph.inputs[0]
    x = np.asarray(x)
    if x.dtype.kind not in "fiu":
        raise BnncError(f"inputs for {quote(name)} must be numbers, got dtype {x.dtype}")
    if x.ndim == len(ttype.shape):  # a single sample without its batch axis
        x = x[None]
    if x.shape[1:] != ttype.shape:
        raise BnncError(f"inputs for {quote(name)} have shape {x.shape[1:]} per sample; the model "
                        f"expects {ttype.shape} (samples on axis 0)")
    return x.astype(np.float32)


def load_inputs(path: str | Path, graph: Graph) -> np.ndarray:
    """Samples from a .npy file: numbers only (never unpickled), bounded in size, finite."""
    from .frontend.load import MAX_ELEMENTS

    if not Path(path).is_file():
        raise BnncError(f"{path}: no such file")
    try:  # memory-mapped: the header is checked before any data is read
        x = np.load(path, allow_pickle=False, mmap_mode="r")
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise BnncError(f"{path}: holds Python objects (a pickle); bnnc reads numeric .npy arrays only") from None
        raise BnncError(f"{path}: not a readable .npy array ({type(exc).__name__})") from None
    except Exception as exc:
        raise BnncError(f"{path}: not a readable .npy array ({type(exc).__name__})") from None
    if not isinstance(x, np.ndarray):
        raise BnncError(f"{path}: an .npz archive, not one .npy array")
    if x.size > MAX_ELEMENTS:
        raise BnncError(f"{path}: {x.size} values, over bnnc's limit of {MAX_ELEMENTS}")
    x = check_inputs(np.array(x), graph)
    if len(x) == 0:
        raise BnncError(f"{path}: no samples")
    if not np.all(np.isfinite(x)):
        raise BnncError(f"{path}: sample {int(np.argwhere(~np.isfinite(x))[0][0])} contains NaN or infinity")
    return x


def folding_spec(fold: str | dict) -> dict | None:
    """None for auto folding, else {layer index: {pe, simd}} from a dict or a JSON file."""
    if isinstance(fold, dict):  # as in a folding file: {"layers": {...}} or the inner dict
        return fold.get("layers", fold)
    if fold == "auto":
        return None
    from .backends.hardware import load_folding

    try:
        spec = load_folding(fold)
    except FileNotFoundError:
        raise BnncError(f"{fold}: no such folding file") from None
    except (OSError, ValueError, AttributeError) as exc:
        raise BnncError(f"{fold}: not a folding file ({str(exc).splitlines()[0][:200]})") from None
    _check_folding(spec, fold)
    return spec


def _check_folding(spec, path) -> None:
    """{"<layer index>": {"pe": n, "simd": m}}: positive integers, nothing else."""
    if not isinstance(spec, dict):
        raise BnncError(f"{path}: a folding file holds {{\"layers\": {{\"0\": {{\"pe\": 8, \"simd\": 64}}}}}}")
    for key, layer in spec.items():
        if not (isinstance(key, str) and key.isdigit()) or not isinstance(layer, dict):
            raise BnncError(f"{path}: layer {quote(key)}: expected a layer index and {{\"pe\": n, \"simd\": m}}")
        for name, value in layer.items():
            if name not in ("pe", "simd") or type(value) is not int or value < 1:
                raise BnncError(f"{path}: layer {key}: {quote(name)} = {str(value)[:40]} (pe and simd are positive integers)")


def hardware(compiled: Compiled):
    if compiled.design is None:
        from .backends.hardware import lower as lower_hw

        try:
            compiled.design = lower_hw(compiled.graph, folding_spec(compiled.options.fold),
                                       multiplier_free=compiled.multiplier_free)
            if compiled.options.registered:
                compiled.design = replace(compiled.design, registered=True)
        except IRError as exc:
            raise BnncError(str(exc)) from None
    return compiled.design


def device_input(graph: Graph) -> str:
    """The value the hardware receives: the first one not computed on the host."""
    device = [op for op in graph.ops if not graph.on_host(op)]
    if not device:
        raise BnncError("nothing is left for hardware after the host pre-processing")
    return device[0].inputs[0]


def rounded_what(rounded_by: tuple[str, ...]) -> str:
    """What the options in `rounded_by` rounded: the weights (--quantize-weights), and scales too
    (--multiplier-free)."""
    return "weights and scales" if "--multiplier-free" in rounded_by else "weights"


def error_bound(graph: Graph) -> float:
    from .passes.fixed_point import output_bound

    return output_bound(graph)


def manifest(compiled: Compiled) -> dict:
    from .backends.manifest import design_manifest

    graph = compiled.graph
    out_type = graph.types[graph.outputs[0]]
    host = [f"{op.kind} ({quote(op.origin)})" for op in graph.ops if graph.on_host(op)]
    data = {
        "bnnc_manifest": 1,
        "model": compiled.source.name,
        "pipeline": compiled.options.pipeline,
        "targets": list(compiled.options.targets),
        "input": {"shape": list(graph.inputs[0][1].shape), "dtype": "float32",
                  "host_preprocessing": host},
        "output": {"shape": list(compiled.output_shape), "type": str(out_type),
                   "scale": 2.0 ** -out_type.elem.frac if isinstance(out_type.elem, Fixed) else 1.0,
                   "error_bound": error_bound(graph),
                   "meaning": "output code * scale = the model's output; |difference| <= error_bound"
                              + (f", for the {rounded_what(compiled.rounded_by)} as {' and '.join(compiled.rounded_by)} "
                                 "rounded them (the original's differ: no bound holds against it)"
                                 if compiled.weights_moved else "")},
        # no timings here: the same model must give the same bytes
        "passes": [{"name": n, "check": r.verified} for n, _, r in compiled.stages],
    }
    data["hardware"] = design_manifest(hardware(compiled))
    return data


def write_build(compiled: Compiled, out_dir: Path, model_path: Path) -> list[Path]:
    """Write everything into out_dir atomically: a staging folder inside it, then a swap."""
    out_dir = Path(out_dir)
    existed = out_dir.exists()
    if existed and not out_dir.is_dir():
        raise BnncError(f"{out_dir}: exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    stage = out_dir / ".bnnc-staging"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        design = hardware(compiled)
        ir_dir = stage / "ir"
        ir_dir.mkdir()
        (ir_dir / "00-import.ir").write_text(print_graph(compiled.source))
        for i, (name, g, _) in enumerate(compiled.stages, 1):
            (ir_dir / f"{i:02d}-{name.split('{')[0]}.ir").write_text(print_graph(g))
        shutil.copyfile(model_path, stage / "model.onnx")
        if compiled.options.calibrate:
            shutil.copyfile(compiled.options.calibrate, stage / "calibration.npy")
        if "verilog" in compiled.options.targets:
            from .backends.verilog import emit as emit_verilog
            emit_verilog(design, stage / "rtl")
        if "hls" in compiled.options.targets:
            from .backends.hls import emit as emit_hls
            emit_hls(design, stage / "hls")
        build_manifest = manifest(compiled)
        from .integration import write as write_integration
        write_integration(compiled, stage, build_manifest)
        if "asic" in compiled.options.targets:
            from .backends.asic import emit as emit_asic
            emit_asic(compiled.graph, stage / "asic")
        info = {"options": {"pipeline": compiled.options.pipeline, "fold": _fold_record(compiled.options.fold),
                            "targets": list(compiled.options.targets),
                            "calibrate": "calibration.npy" if compiled.options.calibrate else None,
                            "quantize_weights": compiled.options.quantize_weights}}
        if compiled.options.multiplier_free:  # recorded only when set: other builds stay as they were
            info["options"]["multiplier_free"] = compiled.options.multiplier_free
        if compiled.options.registered:  # likewise
            info["options"]["registered"] = True
        (stage / BUILD_INFO).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        (stage / "manifest.json").write_text(json.dumps(build_manifest, indent=2) + "\n")
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        if not existed:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    written = []
    for item in sorted(stage.iterdir()):
        target = out_dir / item.name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        item.rename(target)
        written.append(target)
    stage.rmdir()
    return written


def _fold_record(fold: str | dict):
    """The folding as stored in the build, so `bnnc run` rebuilds the same design."""
    return "auto" if fold == "auto" else folding_spec(fold)


def open_build(build_dir: Path) -> Compiled:
    """Recompile a build folder's model with its recorded options (deterministic and fast)."""
    build_dir = Path(build_dir)
    info_path = build_dir / BUILD_INFO
    if not info_path.is_file():
        raise BnncError(f"{build_dir}: not a bnnc build folder (no {BUILD_INFO}); run `bnnc compile` first")
    try:
        opts = json.loads(info_path.read_text())["options"]
        calibrate = build_dir / opts["calibrate"] if opts.get("calibrate") else None
        options = Options(pipeline=str(opts["pipeline"]), targets=tuple(opts["targets"]), fold=opts["fold"],
                          calibrate=calibrate, quantize_weights=int(opts.get("quantize_weights", 0)),
                          multiplier_free=int(opts.get("multiplier_free", 0)),
                          registered=bool(opts.get("registered", False)))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # a hand-edited or damaged build
        raise BnncError(f"{info_path}: not a readable build record ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:100] if str(exc) else ''})") from None
    return compile_model(build_dir / "model.onnx", options)


def _sim_runner():
    """The simulation harness ships as data (sim/), so it is loaded from its file."""
    path = resource_dir("sim") / "runner.py"
    spec = importlib.util.spec_from_file_location("bnnc_sim_runner", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bnnc_sim_runner", module)
    spec.loader.exec_module(module)
    return module


def tool_failure(exc: Exception, folder: Path) -> BnncError:
    """A simulator or compiler failure as one line: what failed, its first error line, and the
    file holding its whole output (compiler and simulator logs run to many lines)."""
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "error.log"
    log.write_text(str(exc) + "\n")
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
    detail = next((line for line in lines[1:] if "error" in line.lower()), lines[1] if len(lines) > 1 else "")
    head = lines[0].rstrip(":") + (f": {detail[:200]}" if detail else "")
    return BnncError(f"{head} (full output in {log})")


def device_output(graph: Graph) -> str:
    """The value the hardware returns: the last one it computes."""
    return [op for op in graph.ops if not graph.on_host(op)][-1].out


def execute(compiled: Compiled, x: np.ndarray, backend: str, build_dir: Path | None = None,
            simulator: str = "verilator", check: bool = True, engine: str = "auto",
            waves: bool = False) -> np.ndarray:
    """Run samples x (model input units) through a backend; outputs in the model's units.

    rtl/hls run the host part in numpy, hand the integer codes to the simulated hardware (which
    checks every output against the interpreter: a mismatch is an error when check=True, a note
    otherwise), and finish any host post-processing (a final Softmax) on what the hardware
    returned. engine: the RTL bench's driver (sim/runner.simulate); waves: keep a waveform of
    the RTL run in the build folder.
    """
    graph = compiled.graph
    name = graph.inputs[0][0]
    x = check_inputs(x, graph)
    env = interp.run(graph, {name: x}, trace=True)
    input_width.warn_uncalibrated(graph, env)
    out_name = graph.outputs[0]
    if backend != "interp":
        design = hardware(compiled)
        last = device_output(graph)
        codes = design.serialize(env[device_input(graph)])
        expected = env[last].reshape(len(x), -1) if check or backend == "rtl" else None
        start = time.perf_counter()
        if backend == "rtl":
            from .backends.verilog import emit as emit_verilog
            rtl_dir = (build_dir / "rtl") if build_dir and (build_dir / "rtl").is_dir() else None
            work = Path(build_dir or ".") / "sim_build"
            if rtl_dir is None:
                rtl_dir = work / "rtl"
                emit_verilog(design, rtl_dir)
            progress(f"simulating {len(x)} vectors on the RTL with {simulator}...")
            runner = _sim_runner()
            try:
                sim = runner.simulate(rtl_dir, codes, design, expected, simulator=simulator, build_dir=work,
                                      engine=engine, waves=waves, on_mismatch="raise" if check else "return")
            except runner.SimulationError as exc:  # the simulator's own explanation, no traceback
                raise tool_failure(exc, work) from None
            except ValueError as exc:
                raise BnncError(str(exc)) from None
            result = sim.outputs
            if sim.mismatch:
                progress(f"rtl: {sim.mismatch}")
            elif sim.waves:
                progress(f"rtl: waveform in {sim.waves}")
        elif backend == "hls":
            from .backends.csim import CsimError, run_csim
            from .backends.hls import emit as emit_hls
            hls_dir = (build_dir / "hls") if build_dir and (build_dir / "hls").is_dir() else None
            if hls_dir is None:
                hls_dir = Path(build_dir or ".") / "csim_build" / "hls"
                emit_hls(design, hls_dir)
            progress(f"running the HLS C simulation on {len(x)} vectors...")
            try:
                result = run_csim(hls_dir, design, codes)
            except CsimError as exc:  # g++'s or the executable's own explanation, no traceback
                raise tool_failure(exc, hls_dir.parent) from None
        elif backend in ("tl", "cmos"):
            from .backends.asic import hardware_dir, simulation_options, tl_design
            asic_dir = hardware_dir(graph, backend, build_dir, Path(build_dir or ".") / "asic_build")
            if backend == "cmos" and simulator == "verilator":
                from .backends.asic.cmos import verilator_netlist
                asic_dir = verilator_netlist(asic_dir)  # flip-flop models Verilator times right
            options = simulation_options(backend, simulator, engine)
            progress(f"simulating {len(x)} vectors on the {backend.upper()} netlist with {simulator}...")
            runner = _sim_runner()
            try:  # the same stream and timing as the RTL of the fully unrolled plan
                result = runner.simulate(asic_dir, codes, tl_design(graph), expected, simulator=simulator,
                                         build_dir=Path(build_dir or ".") / "asic_build" / backend, **options).outputs
            except runner.SimulationError as exc:
                raise tool_failure(exc, Path(build_dir or ".") / "asic_build" / backend) from None
        else:
            raise BnncError(f"unknown backend {quote(backend)} (choose interp, rtl, hls, tl or cmos)")
        progress(f"{backend}: {len(x)} vectors in {time.perf_counter() - start:.1f} s")
        hw = np.asarray(result).reshape(env[last].shape)
        env = interp.run(graph, {name: x}, trace=True, overrides={last: hw})
    real = interp.to_real(env[out_name], graph.types[out_name])
    return real.reshape((len(x),) + compiled.output_shape)
