"""Verilog backend: hand-built IR graphs, lowered under several foldings, emitted, linted, and
simulated against the interpreter bit for bit (with random input gaps and back-pressure); the
measured timing must equal the manifest's model."""
from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from compiler import interp
from compiler.backends import hardware
from compiler.backends.hardware import lower
from compiler.backends.manifest import design_manifest
from compiler.backends.verilog import emit, popcount_threshold
from compiler.ir.graph import Graph
from compiler.diagnostics import BnncError
from compiler.ir.ops import ArgMax, Conv, Dense, FixedAffine, Reshape, Threshold
from compiler.ir.types import Bipolar, Fixed, Int, Ternary, TensorType
from sim import simulate
from sim.lint import lint

VECTORS = 200


# ---- graphs

def _weights(rng, c, k):
    return rng.choice([-1, 1], size=(c, k)).astype(np.int8)


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


GRAPHS = {f.__name__: f for f in (mlp_u8, bipolar_in, ternary_in, signed_in, fixed_in, medium)}

UNROLLED = {}  # every layer PE = C, SIMD = K
FOLDINGS = {
    ("mlp_u8", "unrolled"): UNROLLED,
    ("mlp_u8", "folded"): {0: {"pe": 2, "simd": 4}, 1: {"pe": 3, "simd": 2}, 2: {"pe": 2, "simd": 3}},
    ("mlp_u8", "slow_middle"): {1: {"pe": 1, "simd": 1}},
    ("mlp_u8", "auto"): None,
    ("bipolar_in", "unrolled"): UNROLLED,
    ("bipolar_in", "folded"): {0: {"pe": 4, "simd": 8}, 1: {"pe": 5, "simd": 16}},
    ("ternary_in", "folded"): {0: {"pe": 3, "simd": 6}, 1: {"pe": 1, "simd": 12}},
    ("signed_in", "unrolled"): UNROLLED,
    ("fixed_in", "folded"): {0: {"pe": 5, "simd": 3}},
    ("medium", "folded"): {0: {"pe": 4, "simd": 32}, 1: {"pe": 8, "simd": 8}, 2: {"pe": 1, "simd": 16}},
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


# ---- one emitted + simulated design per case, shared by the tests below

_CACHE = {}


def build(case, tmp_path_factory, auto_budget=None):
    key = case if auto_budget is None else case + (auto_budget,)
    if key not in _CACHE:
        graph = graph_of(case[0])
        if auto_budget is not None:
            saved, hardware.AUTO_MAX_PARALLEL = hardware.AUTO_MAX_PARALLEL, auto_budget
            try:
                design = lower(graph, None)
            finally:
                hardware.AUTO_MAX_PARALLEL = saved
        else:
            design = lower(graph, FOLDINGS[case])
        rtl = tmp_path_factory.mktemp("rtl")
        emit(design, rtl)
        _CACHE[key] = graph, design, rtl
    return _CACHE[key]


def run_case(case, tmp_path_factory, simulator="verilator", auto_budget=None):
    graph, design, rtl = build(case, tmp_path_factory, auto_budget)
    x = random_inputs(graph, VECTORS)
    expected = interp.run(graph, {"x": x})[graph.outputs[0]].reshape(VECTORS, -1)
    result = simulate(rtl, x.reshape(VECTORS, -1), design, expected, simulator=simulator, seed=7)
    return design, result, expected


@pytest.mark.parametrize("case", sorted(FOLDINGS), ids=lambda c: "-".join(c))
def test_rtl_matches_interpreter(case, tmp_path_factory):
    design, result, expected = run_case(case, tmp_path_factory)
    np.testing.assert_array_equal(result.outputs, expected)
    manifest = design_manifest(design)
    # The timing model is exact: no hidden overhead per frame or per layer.
    assert result.cycles_per_frame_measured == manifest["cycles_per_frame"]
    assert result.latency_measured == manifest["latency_cycles"]


def test_auto_folding_balances_the_pipeline(tmp_path_factory):
    # A small parallelism budget makes auto folding fold these small layers.
    design, result, expected = run_case(("mlp_u8", "auto"), tmp_path_factory, auto_budget=8)
    assert [layer.pe * layer.simd for layer in design.layers] != [8 * 16, 6 * 8, 4 * 6]
    np.testing.assert_array_equal(result.outputs, expected)
    assert result.cycles_per_frame_measured == design.cycles_per_frame == max(l.cycles for l in design.layers)


@pytest.mark.parametrize("case", sorted(FOLDINGS), ids=lambda c: "-".join(c))
def test_lint_clean(case, tmp_path_factory):
    _, _, rtl = build(case, tmp_path_factory)
    assert lint(rtl) == []


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog not installed")
def test_icarus(tmp_path_factory):
    design, result, expected = run_case(("mlp_u8", "folded"), tmp_path_factory, simulator="icarus")
    np.testing.assert_array_equal(result.outputs, expected)
    assert result.cycles_per_frame_measured == design_manifest(design)["cycles_per_frame"]


@pytest.mark.skipif(shutil.which("yosys") is None, reason="Yosys not installed")
def test_yosys_synth_xilinx(tmp_path_factory, tmp_path):
    _, _, rtl = build(("mlp_u8", "folded"), tmp_path_factory)
    files = " ".join(str(rtl / name) for name in (rtl / "filelist.f").read_text().split())
    proc = subprocess.run(["yosys", "-q", "-p", f"read_verilog {files}; synth_xilinx -top bnnc_top; "
                           f"select -assert-none t:$dlatch t:LD*; tee -o {tmp_path / 'stat.txt'} stat"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "LUT" in (tmp_path / "stat.txt").read_text()


def test_emit_is_deterministic_and_stays_in_out_dir(tmp_path):
    graph = graph_of("mlp_u8")
    first = emit(lower(graph, FOLDINGS[("mlp_u8", "folded")]), tmp_path / "a" / "rtl")
    second = emit(lower(graph_of("mlp_u8"), FOLDINGS[("mlp_u8", "folded")]), tmp_path / "b" / "rtl")
    assert [p.name for p in first] == [p.name for p in second]
    for a, b in zip(first, second):
        assert a.read_bytes() == b.read_bytes(), a.name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["rtl"]
    assert sorted(p.name for p in (tmp_path / "a" / "rtl").iterdir()) == sorted(p.name for p in first)


def test_design_name_only_in_a_sanitised_comment(tmp_path):
    files = emit(lower(graph_of("mlp_u8"), UNROLLED), tmp_path)
    top = (tmp_path / "bnnc_top.v").read_text()
    assert "module bnnc_top (" in top
    assert "// Generated by bnnc from design 'mlp u8 __ _evil_name'" in top
    for path in files:
        text = path.read_text()
        assert "`evil" not in text and "*/" not in text


def test_popcount_threshold_is_exact():
    # dot = 2P - K >= T  <=>  P >= popcount_threshold(T, K), for every P and T around the range
    for k in (1, 2, 7, 8):
        for t in range(-k - 3, k + 4):
            p_min = popcount_threshold(t, k)
            for p in range(0, k + 1):
                assert (2 * p - k >= t) == (p >= p_min), (k, t, p)


def test_manifest(tmp_path):
    design = lower(graph_of("mlp_u8"), FOLDINGS[("mlp_u8", "folded")])
    manifest = design_manifest(design)
    assert json.loads(json.dumps(manifest)) == manifest
    assert json.dumps(manifest) == json.dumps(design_manifest(lower(graph_of("mlp_u8"),
                                                                    FOLDINGS[("mlp_u8", "folded")])))
    assert manifest["input"]["element"]["kind"] == "int" and manifest["input"]["shape"] == [16]  # the reshape runs on the host
    assert manifest["input"]["width_bits"] == 128
    assert [(l["pe"], l["simd"], l["cycles"]) for l in manifest["layers"]] == [(2, 4, 16), (3, 2, 8), (2, 3, 4)]
    assert manifest["cycles_per_frame"] == 16
    assert manifest["latency_cycles"] == (16 + 1) + (8 + 1) + (4 + 1) + 1
    assert manifest["resources"]["xnors"] == 3 * 2  # only layer 1 has bipolar inputs
    assert manifest["resources"]["add_sub_terms"] == 2 * 4 + 2 * 3


def test_conv_designs_are_refused_clearly(tmp_path):
    rng = np.random.default_rng(5)
    t, v = _binary(rng, 4, -3, 3)
    ops = (
        Conv("c1", ("x",), weights=rng.choice([-1, 1], size=(4, 2, 3, 3)).astype(np.int8), stride=(1, 1),
             pads=(0, 0, 0, 0), pad_value=0, origin="conv_1"),
        Threshold("a1", ("c1",), thresholds=t, values=v),
        Reshape("flat", ("a1",), shape=(16,)),
        Dense("d1", ("flat",), weights=_weights(rng, 3, 16)),
    )
    design = lower(Graph("conv", (("x", TensorType(Bipolar(), (2, 4, 4))),), ops, ("d1",)), UNROLLED)
    with pytest.raises(BnncError, match="'conv_1'.*convolution"):
        emit(design, tmp_path / "rtl")
    assert not (tmp_path / "rtl").exists()
    manifest = design_manifest(design)
    assert manifest["rtl"]["supported"] is False and manifest["latency_cycles"] is None
    assert manifest["layers"][0]["kind"] == "conv" and manifest["layers"][0]["window"]["vectors"] == 4
    json.dumps(manifest)
