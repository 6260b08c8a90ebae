"""Verilog backend: designs lowered under several foldings, with and without channel reuse,
emitted, linted, and simulated against the interpreter bit for bit (random input pauses and
back-pressure); the measured frame interval and latency must equal the manifest's timing model.

Hand-built IR graphs reach corners (threshold clamping, ternary/signed/fixed inputs, strides,
asymmetric and +-1 padding, overlapping pools); exported ONNX models are what users bring.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from bnnc import interp
from bnnc.backends import hardware
from bnnc.backends.hardware import Layer, lower
from bnnc.backends.manifest import design_manifest
from bnnc.backends.plan import popcount_threshold
from bnnc.backends.verilog import cycles_per_frame, emit, latency
from bnnc.backends.verilog_timing import slides, timing, window_tail
from bnnc.diagnostics import BnncError
from bnnc.driver import device_input, sample_inputs
from bnnc.frontend.onnx import import_onnx
from bnnc.ir.fixed_ops import FixedAffine
from bnnc.ir.graph import Graph
from bnnc.ir.ops import ArgMax, Conv, Dense, Pool, Reshape, Threshold
from bnnc.ir.types import Bipolar, Fixed, Int, TensorType, Ternary
from bnnc.passes import DEFAULT_PIPELINE, parse_pipeline, run_pipeline

from sim import simulate
from sim.lint import lint
from sim.runner import SimulationError
from tests.models import exporters as ex
from tests.test_conv import CONV_PRODUCERS, conv_model

VECTORS = 100


# ---- hand-built graphs

def _weights(rng, c, k):
    return rng.choice([-1, 1], size=(c, k)).astype(np.int8)


def _noisy_rows(rng, c, k, prototypes=3, flips=2):
    """Rows that are (possibly negated) copies of a few prototypes with `flips` bits flipped:
    the structure channel reuse feeds on."""
    protos = rng.choice([-1, 1], size=(prototypes, k))
    rows = protos[rng.integers(0, prototypes, c)] * rng.choice([-1, 1], size=(c, 1))
    for row in rows:
        row[rng.choice(k, flips, replace=False)] *= -1
    return rows.astype(np.int8)


def _binary(rng, c, lo, hi):
    """One threshold per channel; about a third of the channels reversed (negative gamma)."""
    t = rng.integers(lo, hi + 1, size=(c, 1))
    values = np.where(rng.random((c, 1)) < 0.35, [[1, -1]], [[-1, 1]])
    return t, values


def _ternary(rng, c, lo, hi):
    """Two ascending thresholds per channel, values -1/0/+1 or reversed +1/0/-1."""
    t = np.sort(rng.integers(lo, hi + 1, size=(c, 2)), axis=1)
    values = np.where(rng.random((c, 1)) < 0.35, [[1, 0, -1]], [[-1, 0, 1]])
    return t, values


def mlp_u8(rng):
    """u8 image (2x8) -> reshape -> 8 bipolar (two thresholds out of range) -> 6 ternary -> Fixed -> argmax."""
    t1, v1 = _binary(rng, 8, -300, 300)
    t1[0, 0], t1[1, 0] = 5000, -5000  # never / always reached: exercise the clamping
    t2, v2 = _ternary(rng, 6, -6, 6)
    ops = (
        Reshape("flat", ("x",), shape=(16,)),
        Dense("d1", ("flat",), weights=_weights(rng, 8, 16)),
        Threshold("a1", ("d1",), thresholds=t1, values=v1),
        Dense("d2", ("a1",), weights=_weights(rng, 6, 8)),
        Threshold("a2", ("d2",), thresholds=t2, values=v2),
        Dense("d3", ("a2",), weights=_weights(rng, 4, 6)),
        FixedAffine("q", ("d3",), mult=rng.integers(-5, 6, 4), bias=rng.integers(-20, 21, 4), frac=3,
                    error_bound=0.0),
        ArgMax("y", ("q",)),
    )
    return Graph("mlp u8 */ `evil\nname", (("x", TensorType(Int(8, False), (2, 8))),), ops, ("y",))


def bipolar_in(rng):
    """Bipolar input -> 16 bipolar (thresholds near 0: many ties) -> 10 Fixed scores."""
    t1, v1 = _binary(rng, 16, -6, 6)
    ops = (
        Dense("d1", ("x",), weights=_weights(rng, 16, 32)),
        Threshold("a1", ("d1",), thresholds=t1, values=v1),
        Dense("d2", ("a1",), weights=_weights(rng, 10, 16)),
        FixedAffine("q", ("d2",), mult=rng.integers(-9, 10, 10), bias=rng.integers(-50, 51, 10), frac=4,
                    error_bound=0.0),
    )
    return Graph("bipolar_in", (("x", TensorType(Bipolar(), (32,))),), ops, ("q",))


def ternary_in(rng):
    """Ternary input -> 12 ternary -> 6 raw dot products (signed Int output)."""
    t1, v1 = _ternary(rng, 12, -5, 5)
    ops = (
        Dense("d1", ("x",), weights=_weights(rng, 12, 24)),
        Threshold("a1", ("d1",), thresholds=t1, values=v1),
        Dense("d2", ("a1",), weights=_weights(rng, 6, 12)),
    )
    return Graph("ternary_in", (("x", TensorType(Ternary(), (24,))),), ops, ("d2",))


def signed_in(rng):
    """s4 input -> 8 raw dot products -> argmax (small ranges: ties test the first-max rule)."""
    ops = (Dense("d1", ("x",), weights=_weights(rng, 8, 6)), ArgMax("y", ("d1",)))
    return Graph("signed_in", (("x", TensorType(Int(4, True), (6,))),), ops, ("y",))


def fixed_in(rng):
    """Fixed-point codes in -> raw Fixed dot products out."""
    ops = (Dense("d1", ("x",), weights=_weights(rng, 5, 12)),)
    return Graph("fixed_in", (("x", TensorType(Fixed(6, 3), (12,))),), ops, ("d1",))


def medium(rng):
    """256 bipolar -> 64 -> 64 -> 10 -> argmax, folded to 128 clocks per frame."""
    t1, v1 = _binary(rng, 64, -20, 20)
    t2, v2 = _binary(rng, 64, -8, 8)
    ops = (
        Dense("d1", ("x",), weights=_weights(rng, 64, 256)),
        Threshold("a1", ("d1",), thresholds=t1, values=v1),
        Dense("d2", ("a1",), weights=_weights(rng, 64, 64)),
        Threshold("a2", ("d2",), thresholds=t2, values=v2),
        Dense("d3", ("a2",), weights=_weights(rng, 10, 64)),
        FixedAffine("q", ("d3",), mult=rng.integers(1, 8, 10), bias=rng.integers(-30, 31, 10), frac=2,
                    error_bound=0.0),
        ArgMax("y", ("q",)),
    )
    return Graph("medium", (("x", TensorType(Bipolar(), (256,))),), ops, ("y",))


def conv_strided(rng):
    """Bipolar 3x9x7 -> conv 3x3 stride 2, zero padding (not a bit: masked) -> overlapping
    3x3 stride-1 max/min pool -> dense -> Fixed -> argmax. Conv rows are noisy prototypes."""
    t, v = _binary(rng, 12, -6, 6)
    ops = (
        Conv("c1", ("x",), weights=_noisy_rows(rng, 12, 27).reshape(12, 3, 3, 3), stride=(2, 2),
             pads=(1, 1, 1, 1), pad_value=0),
        Threshold("a1", ("c1",), thresholds=t, values=v),
        Pool("p1", ("a1",), kernel=(3, 3), stride=(1, 1), modes=np.where(rng.random(12) < 0.3, -1, 1).astype(np.int8)),
        Reshape("f", ("p1",), shape=(72,)),
        Dense("d2", ("f",), weights=_weights(rng, 6, 72)),
        FixedAffine("q", ("d2",), mult=rng.integers(1, 6, 6), bias=rng.integers(-9, 10, 6), frac=2, error_bound=0.0),
        ArgMax("y", ("q",)),
    )
    return Graph("conv_strided", (("x", TensorType(Bipolar(), (3, 9, 7))),), ops, ("y",))


def conv_mixed(rng):
    """s4 2x6x7 -> conv 2x3 stride (1, 2), asymmetric zero padding (the code 0) -> ternary ->
    conv 3x3 padded with +1 -> bipolar -> 2x2 stride (2, 1) max/min pool -> raw dot products."""
    t1, v1 = _ternary(rng, 6, -8, 8)
    t2, v2 = _binary(rng, 5, -5, 5)
    ops = (
        Conv("c1", ("x",), weights=_noisy_rows(rng, 6, 12, 2, 1).reshape(6, 2, 2, 3), stride=(1, 2),
             pads=(0, 1, 1, 0), pad_value=0),
        Threshold("a1", ("c1",), thresholds=t1, values=v1),
        Conv("c2", ("a1",), weights=_noisy_rows(rng, 5, 54).reshape(5, 6, 3, 3), stride=(1, 1),
             pads=(1, 1, 1, 1), pad_value=1),
        Threshold("a2", ("c2",), thresholds=t2, values=v2),
        Pool("p2", ("a2",), kernel=(2, 2), stride=(2, 1), modes=np.array([1, -1, 1, 1, -1], np.int8)),
        Reshape("f", ("p2",), shape=(30,)),
        Dense("d3", ("f",), weights=_weights(rng, 4, 30)),
    )
    return Graph("conv_mixed", (("x", TensorType(Int(4, True), (2, 6, 7))),), ops, ("d3",))


GRAPHS = {f.__name__: f for f in (mlp_u8, bipolar_in, ternary_in, signed_in, fixed_in, medium, conv_strided,
                                  conv_mixed)}

UNROLLED = {}  # every layer PE = C, SIMD = K
# (graph, folding name) -> (folding, channel reuse); folding None = auto
FOLDINGS = {
    ("mlp_u8", "unrolled"): (UNROLLED, True),
    ("mlp_u8", "folded"): ({0: {"pe": 2, "simd": 4}, 1: {"pe": 3, "simd": 2}, 2: {"pe": 2, "simd": 3}}, False),
    ("mlp_u8", "slow_middle"): ({1: {"pe": 1, "simd": 1}}, False),
    ("bipolar_in", "unrolled"): (UNROLLED, True),
    ("bipolar_in", "folded"): ({0: {"pe": 4, "simd": 8}, 1: {"pe": 5, "simd": 16}}, False),
    ("ternary_in", "folded"): ({0: {"pe": 3, "simd": 6}, 1: {"pe": 1, "simd": 12}}, False),
    ("signed_in", "unrolled"): (UNROLLED, False),
    ("fixed_in", "folded"): ({0: {"pe": 5, "simd": 3}}, False),
    ("medium", "folded"): ({0: {"pe": 4, "simd": 32}, 1: {"pe": 8, "simd": 8}, 2: {"pe": 1, "simd": 16}}, False),
    ("conv_strided", "unrolled"): (UNROLLED, True),
    # all channels in parallel, inputs in 3 chunks: children whose |D| fits a chunk reuse their parent
    ("conv_strided", "chunked"): ({0: {"pe": 12, "simd": 9}, 1: {"pe": 2, "simd": 24}}, True),
    ("conv_strided", "auto"): (None, False),
    ("conv_mixed", "unrolled"): (UNROLLED, False),
    ("conv_mixed", "folded"): ({0: {"pe": 3, "simd": 4}, 1: {"pe": 5, "simd": 18}, 2: {"pe": 2, "simd": 5}}, True),
    ("conv_mixed", "auto"): (None, True),
}


def graph_of(name):
    return GRAPHS[name](np.random.default_rng(sorted(GRAPHS).index(name)))


def random_inputs(graph, n, seed=1):
    """Element values over the input's whole range, the extremes first."""
    rng = np.random.default_rng(seed)
    ttype = graph.inputs[0][1]
    elem = ttype.elem
    x = rng.integers(elem.lo, elem.hi + 1, size=(n,) + ttype.shape)
    if isinstance(elem, Bipolar):
        x = 2 * rng.integers(0, 2, size=x.shape) - 1
    x[0], x[1] = elem.lo, elem.hi
    return x


def with_reuse(graph, reuse: bool):
    return run_pipeline(graph, parse_pipeline("channel-reuse"))[0] if reuse else graph


# ---- exported models: (builder, cases); a case is (folding, channel reuse) with folding
# "auto", "folded" (about a third of the parallelism) or "chunked" (PE = C, SIMD ~ K/3)

EXPORTED = {
    **{f"conv-{name}": (build, [("auto", True)]) for name, build in CONV_PRODUCERS.items()},
    "conv-pad0-conv-after": (lambda p: conv_model(p, 0.0, "conv", "after"), [("auto", True), ("folded", False)]),
    "conv-pad0-pad-before": (lambda p: conv_model(p, 0.0, "pad", "before"), [("auto", True)]),
    "conv-pad+1-after": (lambda p: conv_model(p, 1.0, "pad", "after"), [("auto", True)]),
    "conv-pad+1-before": (lambda p: conv_model(p, 1.0, "pad", "before"), [("auto", False)]),
    "conv-pad-1-after": (lambda p: conv_model(p, -1.0, "pad", "after"), [("chunked", True)]),
    "conv-pad-1-before": (lambda p: conv_model(p, -1.0, "pad", "before"), [("auto", False)]),
    "mlp-brevitas": (lambda p: ex.brevitas_mlp(p, sizes=(24, 16, 10), in_features=32), [("auto", True), ("folded", False)]),
    "mlp-torch-sign": (lambda p: ex.torch_sign_mlp(p, sizes=(24, 16, 10), in_features=32), [("auto", True)]),
    "mlp-torch-ste-bias": (lambda p: ex.torch_sign_mlp(p, sizes=(24, 16, 10), in_features=32, ste="ste_add", bias=True,
                                                       final_bn=True), [("folded", False)]),
    "mlp-torch-where-pm1": (lambda p: ex.torch_sign_mlp(p, sizes=(24, 16, 10), in_features=32, ste="where",
                                                        weights="pm1"), [("chunked", True)]),
    "mlp-finn-1bit": (lambda p: ex.finn_multithreshold_mlp(p, sizes=(24, 16, 10), in_features=32), [("auto", True)]),
    "mlp-finn-8bit": (lambda p: ex.finn_multithreshold_mlp(p, sizes=(24, 16, 10), in_features=32, input_bits=8),
                      [("folded", False)]),
}
# The rest of every conv producer's matrix: big enough to be slow.
SLOW_EXPORTED = [(f"conv-{name}", style, reuse) for name in CONV_PRODUCERS
                 for style, reuse in (("auto", False), ("folded", False), ("folded", True), ("chunked", True))]


def _largest_divisor(n, at_most):
    return max(d for d in range(1, n + 1) if n % d == 0 and d <= max(1, at_most))


def folding(design, style):
    if style == "auto":
        return None
    if style == "slow-second-layer":  # auto, but layer 1 (a conv) at half its channels in parallel
        fold = {layer.index: {"pe": layer.pe, "simd": layer.simd} for layer in design.layers if isinstance(layer, Layer)}
        fold[1]["pe"] //= 2
        return fold
    fold = {}
    for layer in design.layers:
        if isinstance(layer, Layer):
            c, k = layer.out_count, layer.in_count
            pe = c if style == "chunked" else _largest_divisor(c, c // 3)
            fold[layer.index] = {"pe": pe, "simd": _largest_divisor(k, k // 3)}
    return fold


_MODELS = {}


def exported(name, tmp_path_factory):
    if name not in _MODELS:
        _MODELS[name] = import_onnx(EXPORTED[name][0](tmp_path_factory.mktemp("onnx") / "m.onnx"))
    return _MODELS[name]


def run_exported(name, style, reuse, tmp_path_factory):
    graph = exported(name, tmp_path_factory)
    folded, _ = run_pipeline(graph, parse_pipeline(DEFAULT_PIPELINE + (",channel-reuse" if reuse else "")))
    design = lower(folded, folding(lower(folded), style))
    rtl = tmp_path_factory.mktemp("rtl")
    emit(design, rtl)
    assert lint(rtl) == []
    x = sample_inputs(graph, VECTORS)
    env = interp.run(folded, {graph.inputs[0][0]: x}, trace=True)
    last = [op for op in folded.ops if not folded.on_host(op)][-1].out
    expected = env[last].reshape(VECTORS, -1)
    result = simulate(rtl, design.serialize(env[device_input(folded)]), design, expected, seed=3)
    return design, result, expected


def check_run(design, result, expected):
    np.testing.assert_array_equal(result.outputs, expected)
    manifest = design_manifest(design)
    # The timing model is exact: no hidden overhead per frame or per layer.
    assert result.cycles_per_frame_measured == manifest["cycles_per_frame"]
    assert result.latency_measured == manifest["latency_cycles"]


# ---- one emitted + simulated design per case, shared by the tests below

_CACHE = {}


def build(case, tmp_path_factory, auto_budget=None):
    key = case if auto_budget is None else case + (auto_budget,)
    if key not in _CACHE:
        fold, reuse = FOLDINGS.get(case, (None, False))
        graph = with_reuse(graph_of(case[0]), reuse)
        if auto_budget is not None:
            saved, hardware.AUTO_MAX_PARALLEL = hardware.AUTO_MAX_PARALLEL, auto_budget
            try:
                design = lower(graph, None)
            finally:
                hardware.AUTO_MAX_PARALLEL = saved
        else:
            design = lower(graph, fold)
        rtl = tmp_path_factory.mktemp("rtl")
        emit(design, rtl)
        _CACHE[key] = graph, design, rtl
    return _CACHE[key]


def rtl_reuse_children(rtl, index: int) -> dict[int, int]:
    """Read from the emitted RTL of layer `index`: channel -> |D| for every channel computed from
    another channel (a bnnc_dot over the |D| inputs where it differs, or equal to its parent)."""
    text = (rtl / f"bnnc_layer{index}.v").read_text()
    children = {int(c): int(d) for c, d in re.findall(r"agree(\d+);\s+// channel \d+: (\d+) input\(s\) differ", text)}
    children.update({int(c): 0 for c in re.findall(r"// channel (\d+): equal to -?channel", text)})
    return children


def reuse_units(rtl, index: int) -> int:
    return len(rtl_reuse_children(rtl, index))


def run_case(case, tmp_path_factory, simulator="verilator", auto_budget=None):
    graph, design, rtl = build(case, tmp_path_factory, auto_budget)
    x = random_inputs(graph, VECTORS)
    expected = interp.run(graph, {"x": x})[graph.outputs[0]].reshape(VECTORS, -1)
    result = simulate(rtl, design.serialize(x), design, expected, simulator=simulator, seed=7)
    return design, result, expected


@pytest.mark.parametrize("case", sorted(FOLDINGS), ids=lambda c: "-".join(c))
def test_rtl_matches_interpreter(case, tmp_path_factory):
    design, result, expected = run_case(case, tmp_path_factory)
    check_run(design, result, expected)
    if FOLDINGS[case][1]:
        _, _, rtl = build(case, tmp_path_factory)
        assert any(reuse_units(rtl, layer.index) for layer in design.layers if isinstance(layer, Layer))


@pytest.mark.parametrize("case", sorted(FOLDINGS), ids=lambda c: "-".join(c))
def test_lint_clean(case, tmp_path_factory):
    _, _, rtl = build(case, tmp_path_factory)
    assert lint(rtl) == []


@pytest.mark.parametrize("name, style, reuse", [(n, s, r) for n, (_, cases) in EXPORTED.items() for s, r in cases],
                         ids=lambda v: {True: "reuse", False: "no-reuse"}.get(v, v) if isinstance(v, bool) else v)
def test_exported_model(name, style, reuse, tmp_path_factory):
    check_run(*run_exported(name, style, reuse, tmp_path_factory))


@pytest.mark.slow
@pytest.mark.parametrize("name, style, reuse", SLOW_EXPORTED)
def test_exported_conv_matrix(name, style, reuse, tmp_path_factory):
    check_run(*run_exported(name, style, reuse, tmp_path_factory))


def test_exported_conv_folded_no_reuse(tmp_path_factory):
    """A folded conv net without reuse whose first conv outpaces the second in bursts: a FIFO
    between them (where the first may simply wait, the model leaves the FIFO out)."""
    design, result, expected = run_exported("conv-brevitas-unpadded", "slow-second-layer", False, tmp_path_factory)
    check_run(design, result, expected)
    assert any(timing(design).fifo_depths)


def test_auto_folding_balances_the_pipeline(tmp_path_factory):
    # A small parallelism budget makes auto folding fold these small layers.
    design, result, expected = run_case(("mlp_u8", "auto"), tmp_path_factory, auto_budget=8)
    assert [layer.pe * layer.simd for layer in design.layers] != [8 * 16, 6 * 8, 4 * 6]
    check_run(design, result, expected)
    assert result.cycles_per_frame_measured == max(l.cycles for l in design.layers)


def test_bench_reports_a_wrong_output(tmp_path_factory):
    """The bench's own check (what `bnnc run` and `verify` rely on) names the first bad transfer,
    its frame and simulation time, and the waveform of the run when one was asked for."""
    graph, design, rtl = build(("conv_mixed", "folded"), tmp_path_factory)
    x = random_inputs(graph, 8)
    right = interp.run(graph, {"x": x})[graph.outputs[0]].reshape(8, -1)
    times = {}
    for frame in (5, 7):
        expected = right.copy()
        expected[frame, 2] += 1
        with pytest.raises(SimulationError) as failure:
            simulate(rtl, design.serialize(x), design, expected, seed=7, engine="native", waves=True)
        message = str(failure.value)
        match = re.search(rf"output mismatch at transfer {frame} \(frame {frame}, at (\d+) ns of simulation time\), "
                          r"element 2.*1 transfer\(s\) differ\) \(waveform: (\S+)\)", message)
        assert match, message
        times[frame] = int(match.group(1))
        waves = Path(match.group(2)).read_text()
        # a VCD in picoseconds with a change at the reported nanosecond (the clock edge)
        assert "$timescale 1ps $end" in waves.replace("\n", " ").replace("  ", " ") and "out_data" in waves
        assert f"\n#{times[frame] * 1000}\n" in waves
    # 10 ns clocks: frame 5 leaves after the pipeline's latency and five frame intervals, frame 7
    # at least two intervals later
    interval = cycles_per_frame(design)
    assert times[5] >= 10 * (5 * interval + latency(design))
    assert times[7] - times[5] >= 2 * 10 * interval


def test_compiled_bench_runs_the_same_checks_as_cocotb(tmp_path_factory, tmp_path):
    """Same bench, two drivers: the same outputs, clocks and timing; and one build serves runs of
    any length (the bench streams its files instead of sizing memories by the run)."""
    graph, design, rtl = build(("conv_mixed", "folded"), tmp_path_factory)
    x = random_inputs(graph, VECTORS)
    expected = interp.run(graph, {"x": x})[graph.outputs[0]].reshape(VECTORS, -1)
    runs = {engine: simulate(rtl, design.serialize(x), design, expected, seed=7, engine=engine, build_dir=tmp_path)
            for engine in ("cocotb", "native")}
    for engine, result in runs.items():
        assert result.engine == engine
        check_run(design, result, expected)
    assert runs["native"].cycles == runs["cocotb"].cycles
    assert (tmp_path / "verilator-native" / "run" / "outputs.hex").is_file()  # the run's files go to build_dir
    stamp = runs["native"].build / "bnnc_build.sha256"
    built = stamp.stat().st_mtime_ns
    short = simulate(rtl, design.serialize(x[:3]), design, expected[:3], seed=7, engine="native", build_dir=tmp_path / "b")
    np.testing.assert_array_equal(short.outputs, expected[:3])
    assert short.build == runs["native"].build and not short.built and stamp.stat().st_mtime_ns == built


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog not installed")
def test_icarus(tmp_path_factory):
    design, result, expected = run_case(("conv_mixed", "folded"), tmp_path_factory, simulator="icarus")
    check_run(design, result, expected)


@pytest.mark.slow  # 8.6 s: the default run's time
@pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog not installed")
def test_weight_word_wider_than_a_verilator_number(tmp_path):
    """An unrolled 520 -> 128 layer reads a 66,560-bit weight word, more than Verilator (65,536
    bits) and Icarus (a 16 KB token) accept in one number: the word is written as a
    concatenation, which lints clean and computes what the interpreter does in Icarus."""
    rng = np.random.default_rng(11)
    t1, v1 = _binary(rng, 128, -20, 20)
    ops = (Dense("d1", ("x",), weights=_weights(rng, 128, 520)),
           Threshold("a1", ("d1",), thresholds=t1, values=v1),
           Dense("d2", ("a1",), weights=_weights(rng, 10, 128)))
    graph = Graph("wide", (("x", TensorType(Bipolar(), (520,))),), ops, ("d2",))
    design = lower(graph, {0: {"pe": 128, "simd": 520}})
    emit(design, tmp_path)
    assert "{1024'h" in (tmp_path / "bnnc_layer0.v").read_text()  # 66,560 = 1,024 + 4 x 16,384 bits
    assert lint(tmp_path) == []
    x = random_inputs(graph, 20)
    expected = interp.run(graph, {"x": x})["d2"].reshape(20, -1)
    result = simulate(tmp_path, design.serialize(x), design, expected, simulator="icarus", seed=5)
    np.testing.assert_array_equal(result.outputs, expected)


def _yosys(rtl, top, tmp_path, flatten=False):
    files = " ".join(str(rtl / name) for name in (rtl / "filelist.f").read_text().split())
    stat = tmp_path / f"{top}.stat"
    proc = subprocess.run(["yosys", "-q", "-p", f"read_verilog {files}; synth_xilinx {'-flatten ' if flatten else ''}"
                           f"-top {top}; select -assert-none t:$dlatch t:LD*; tee -q -o {stat} stat"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = stat.read_text().split("=== design hierarchy ===")[-1]
    return sum(int(n) for n in re.findall(r"LUT\d\s+(\d+)", text))


@pytest.mark.skipif(shutil.which("yosys") is None, reason="Yosys not installed")
def test_yosys_synth_xilinx(tmp_path_factory, tmp_path):
    _, _, rtl = build(("conv_mixed", "folded"), tmp_path_factory)  # windows (both paddings), pool, FIFO-less chain
    assert _yosys(rtl, "bnnc_top", tmp_path) > 0


@pytest.mark.skipif(shutil.which("yosys") is None, reason="Yosys not installed")
def test_channel_reuse_saves_luts(tmp_path):
    """A fully parallel layer whose 12 rows are noisy copies of 3 prototypes (2 of 24 bits
    flipped): a child costs a popcount over the <= 4 inputs where it differs from its parent plus
    two adds, instead of a 24-input popcount, and Yosys agrees (243 -> 113 LUTs with the
    current bnnc_dot)."""
    rng = np.random.default_rng(0)
    protos = rng.choice([-1, 1], size=(3, 24))
    rows = protos[np.arange(12) % 3].copy()
    for row in rows:
        row[rng.choice(24, 2, replace=False)] *= -1
    ops = (Dense("d", ("x",), weights=rows.astype(np.int8)),
           Threshold("a", ("d",), thresholds=rng.integers(-4, 5, size=(12, 1)), values=np.tile([[-1, 1]], (12, 1))))
    graph = Graph("reuse_demo", (("x", TensorType(Bipolar(), (24,))),), ops, ("a",))
    luts = {}
    for reuse in (False, True):
        design = lower(with_reuse(graph, reuse), UNROLLED)
        emit(design, tmp_path / str(reuse))
        luts[reuse] = _yosys(tmp_path / str(reuse), "bnnc_layer0", tmp_path, flatten=True)
    assert reuse_units(tmp_path / "False", 0) == 0 and reuse_units(tmp_path / "True", 0) >= 8
    assert luts[True] < 0.6 * luts[False], luts


def test_emit_is_deterministic_and_stays_in_out_dir(tmp_path):
    for name, case in (("mlp_u8", ("mlp_u8", "folded")), ("conv_mixed", ("conv_mixed", "folded"))):
        fold, reuse = FOLDINGS[case]
        first = emit(lower(with_reuse(graph_of(name), reuse), fold), tmp_path / name / "a" / "rtl")
        second = emit(lower(with_reuse(graph_of(name), reuse), fold), tmp_path / name / "b" / "rtl")
        assert [p.name for p in first] == [p.name for p in second]
        for a, b in zip(first, second):
            assert a.read_bytes() == b.read_bytes(), a.name
        assert sorted(p.name for p in (tmp_path / name).iterdir()) == ["a", "b"]
        assert [p.name for p in (tmp_path / name / "a").iterdir()] == ["rtl"]
        assert sorted(p.name for p in (tmp_path / name / "a" / "rtl").iterdir()) == sorted(p.name for p in first)


def test_design_name_only_in_a_sanitised_comment(tmp_path):
    files = emit(lower(graph_of("mlp_u8"), UNROLLED), tmp_path)
    top = (tmp_path / "bnnc_top.v").read_text()
    assert "module bnnc_top (" in top
    assert "// Generated by bnnc from design 'mlp_u8_____evil_name'" in top
    for path in files:
        text = path.read_text()
        assert "`evil" not in text and "*/" not in text


def test_popcount_threshold_is_exact():
    # dot = 2P - K >= T  <=>  P >= popcount_threshold(T, K), for every P and T around the range
    for k in (1, 2, 7, 8):
        for t in range(-k - 3, k + 4):
            p_min = popcount_threshold(t, k)
            for p in range(k + 1):
                assert (2 * p - k >= t) == (p >= p_min), (k, t, p)


def test_window_geometry():
    """A same-padded stride-1 conv slides one pixel per output pixel, shifts W + 1 padding
    positions after a frame's last pixel and needs W + 2 pixels of the next frame for its first
    window; an unpadded one jumps at row ends and across frames."""
    same = hardware.Window((4, 6, 5), (3, 3), (1, 1), (1, 1, 1, 1), 0, (6, 5))
    assert window_tail(same) == 5 + 1
    assert slides(same).tolist() == [5 + 2] + [1] * 29  # 6 * 5 pixels + 6 padding shifts per frame
    valid = hardware.Window((4, 6, 5), (3, 3), (1, 1), (0, 0, 0, 0), 0, (4, 3))
    assert window_tail(valid) == 0
    assert slides(valid).tolist() == [2 * 5 + 3, 1, 1, 3, 1, 1, 3, 1, 1, 3, 1, 1]
    assert slides(valid).sum() == 6 * 5  # every input pixel shifts in once per frame


def test_manifest(tmp_path):
    fold, _ = FOLDINGS[("mlp_u8", "folded")]
    design = lower(graph_of("mlp_u8"), fold)
    manifest = design_manifest(design)
    assert json.loads(json.dumps(manifest)) == manifest
    assert json.dumps(manifest) == json.dumps(design_manifest(lower(graph_of("mlp_u8"), fold)))
    assert manifest["input"]["element"]["kind"] == "int" and manifest["input"]["shape"] == [16]  # the reshape runs on the host
    assert manifest["input"]["width_bits"] == 128 and manifest["input"]["transfers_per_frame"] == 1
    assert [(l["pe"], l["simd"], l["cycles"]) for l in manifest["layers"]] == [(2, 4, 16), (3, 2, 8), (2, 3, 4)]
    assert manifest["cycles_per_frame"] == 16
    assert manifest["latency_cycles"] == (16 + 1) + (8 + 1) + (4 + 1) + 1
    assert manifest["resources"]["xnors"] == 3 * 2  # only layer 1 has bipolar inputs
    assert manifest["resources"]["add_sub_terms"] == 2 * 4 + 2 * 3


def test_manifest_of_a_conv_net(tmp_path_factory):
    fold, reuse = FOLDINGS[("conv_strided", "chunked")]
    design = lower(with_reuse(graph_of("conv_strided"), reuse), fold)
    manifest = design_manifest(design)
    json.dumps(manifest)
    stream = manifest["input"]
    assert stream["order"] == "hwc" and stream["transfers_per_frame"] == 9 * 7 and stream["width_bits"] == 3
    conv, pool, dense = manifest["layers"]
    assert conv["kind"] == "conv" and conv["window"]["vectors"] == 20 and conv["window"]["padding"].startswith("zero pads")
    assert pool["kind"] == "pool" and dense["gathers_map"]
    # the reuse the manifest counts is the reuse in the emitted RTL
    _, _, rtl = build(("conv_strided", "chunked"), tmp_path_factory)
    children = rtl_reuse_children(rtl, 0)
    assert conv["reuse"]["children_in_hardware"] == len(children) > 0
    assert conv["resources"]["xnors"] == (conv["pe"] - len(children)) * conv["simd"] + sum(children.values()) < 12 * 27
    # and its timing is the simulated one
    _, result, _ = run_case(("conv_strided", "chunked"), tmp_path_factory)
    assert result.cycles_per_frame_measured == manifest["cycles_per_frame"]
    assert result.latency_measured == manifest["latency_cycles"] > manifest["cycles_per_frame"]
    assert manifest["rtl"]["supported"]


def test_designs_ending_in_a_map_are_refused_clearly(tmp_path):
    rng = np.random.default_rng(5)
    t, v = _binary(rng, 4, -3, 3)
    ops = (
        Conv("c1", ("x",), weights=rng.choice([-1, 1], size=(4, 2, 3, 3)).astype(np.int8), stride=(1, 1),
             pads=(0, 0, 0, 0), pad_value=0, origin="conv_1"),
        Threshold("a1", ("c1",), thresholds=t, values=v),
    )
    design = lower(Graph("conv", (("x", TensorType(Bipolar(), (2, 4, 4))),), ops, ("a1",)), UNROLLED)
    with pytest.raises(BnncError, match="'conv_1'.*feature map"):
        emit(design, tmp_path / "rtl")
    assert not (tmp_path / "rtl").exists()
    manifest = design_manifest(design)
    assert manifest["rtl"]["supported"] is False and manifest["latency_cycles"] is None
    json.dumps(manifest)


# (N, W_IN, W_OUT, BIPOLAR, MASKED, SIGNED): widths below the group count's 3 bits, group
# remainders, padding with MASKED, signed and unsigned integers, and a sum that wraps.
DOT_CASES = [(1, 1, 2, 1, 0, 0), (3, 1, 2, 1, 0, 0), (7, 1, 3, 1, 0, 0), (13, 1, 4, 1, 0, 0), (64, 1, 7, 1, 0, 0),
             (11, 2, 4, 1, 1, 0), (5, 4, 7, 0, 0, 1), (9, 3, 8, 0, 0, 0), (6, 8, 8, 0, 0, 1)]


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog not installed")
@pytest.mark.parametrize("lut_inputs", [6, 4])
@pytest.mark.parametrize("n,w_in,w_out,bipolar,masked,signed", DOT_CASES)
def test_dot_primitive_matches_numpy(tmp_path, n, w_in, w_out, bipolar, masked, signed, lut_inputs):
    """bnnc_dot alone, on random inputs and weights, against its definition modulo 2^W_OUT; with
    the popcount groups for 6-input LUTs (the default) and for 4-input ones (`--fpga` builds)."""
    from bnnc.resources import resource_dir

    rng = np.random.default_rng(n * 100 + w_out)
    count = 200
    x = rng.integers(0, 2, (count, n, w_in))  # bit b of element i
    w = rng.integers(0, 2, (count, n))
    if bipolar:
        agree = x[..., 0] == w
        terms = agree & (x[..., 1] == 1) if masked else agree
    else:
        value = (x * (1 << np.arange(w_in))).sum(-1)
        if signed:
            value = np.where(value >= 1 << (w_in - 1), value - (1 << w_in), value)
        terms = np.where(w == 1, value, -value)
    expected = terms.sum(-1) % (1 << w_out)

    def hex_word(bits):
        return format(int("".join(str(int(b)) for b in bits[::-1]), 2), "x")

    (tmp_path / "x.hex").write_text("\n".join(hex_word(v.reshape(-1)) for v in x) + "\n")
    (tmp_path / "w.hex").write_text("\n".join(hex_word(v) for v in w) + "\n")
    (tmp_path / "tb.v").write_text(f"""module tb;
    reg [{n * w_in - 1}:0] x [0:{count - 1}];
    reg [{n - 1}:0] w [0:{count - 1}];
    reg [{n * w_in - 1}:0] xi;
    reg [{n - 1}:0] wi;
    wire [{w_out - 1}:0] sum;
    integer t;
    bnnc_dot #(.N({n}), .W_IN({w_in}), .W_OUT({w_out}), .BIPOLAR({bipolar}), .MASKED({masked}), .SIGNED({signed}))
        dut (.x(xi), .w(wi), .sum(sum));
    initial begin
        $readmemh("{tmp_path / 'x.hex'}", x);
        $readmemh("{tmp_path / 'w.hex'}", w);
        for (t = 0; t < {count}; t = t + 1) begin
            xi = x[t]; wi = w[t]; #1 $display("%0d", sum);
        end
    end
endmodule
""")
    sim = tmp_path / "tb.vvp"
    dot = resource_dir("templates") / "verilog" / "bnnc_dot.v"
    subprocess.run(["iverilog", "-g2005", f"-DBNNC_LUT_INPUTS={lut_inputs}", "-o", str(sim), str(dot), str(tmp_path / "tb.v")],
                   check=True)
    out = subprocess.run(["vvp", "-n", str(sim)], capture_output=True, text=True, check=True).stdout.split()
    assert [int(v) for v in out] == expected.tolist()
