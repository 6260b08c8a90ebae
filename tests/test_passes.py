"""Threshold folding on the hard cases, each checked against the original ONNX model.

The inputs are chosen so that accumulators land exactly on BatchNorm's tie point, so a fold
that rounds a threshold the wrong way (or flips the comparison for gamma < 0) is caught.
"""
from __future__ import annotations

import itertools

import numpy as np
import onnx
import pytest
from bnnc import interp
from bnnc.frontend.onnx import import_onnx
from bnnc.ir.ops import Threshold
from bnnc.ir.printer import print_graph
from bnnc.ir.types import Bipolar, Ternary
from bnnc.original import run_original
from bnnc.passes import DEFAULT_PIPELINE, parse_pipeline, run_pipeline
from bnnc.passes.fold_thresholds import simplify

from tests.onnx_builders import sign_bn_mlp

K = 4


def all_ternary_inputs() -> np.ndarray:
    """Every input in {-1, 0, 1}^K (as x - 0.5 style values: Sign gives exactly these)."""
    return np.array(list(itertools.product([-1.0, 0.0, 1.0], repeat=K)), dtype=np.float32)


def tie_model(tmp_path, gamma, beta, mean, act="Sign"):
    w0 = np.ones((K, len(gamma)), np.float32)
    w0[::2, 1::2] = -1  # two different accumulators per channel pair
    w1 = np.where(np.arange(len(gamma) * 3).reshape(len(gamma), 3) % 2, 1.0, -1.0).astype(np.float32)
    bn = dict(gamma=gamma, beta=beta, mean=mean, var=np.full(len(gamma), 4.0 - 1e-5, np.float32))
    return sign_bn_mlp(tmp_path / "m.onnx", [w0, w1], [bn], act=act)


def compile_and_compare(path):
    graph = import_onnx(path)
    x = all_ternary_inputs()
    folded, records = run_pipeline(graph, parse_pipeline(DEFAULT_PIPELINE), {graph.inputs[0][0]: x})
    got = interp.run(folded, {graph.inputs[0][0]: x})[folded.outputs[0]]
    want = run_original(onnx.load(path), x)
    np.testing.assert_array_equal(interp.to_real(got, folded.types[folded.outputs[0]]), want)
    return folded


@pytest.mark.parametrize("act", ["Sign", "Where"])
@pytest.mark.parametrize("gamma", [1.0, -1.0, 0.5, -3.0])
def test_ties_fold_exactly_for_both_gamma_signs(tmp_path, act, gamma):
    # beta = 0 and integer means put the BN zero crossing exactly on reachable accumulators
    # (K=4 ternary inputs reach every integer in [-4, 4]).
    g = np.full(4, gamma, np.float32)
    folded = compile_and_compare(tie_model(tmp_path, g, np.zeros(4, np.float32),
                                           np.array([0, 1, -2, 3], np.float32), act))
    th = next(op for op in folded.ops if isinstance(op, Threshold))
    # Sign(0) = 0 is reachable at an exact tie, so the activation must stay ternary.
    assert isinstance(folded.types[th.out].elem, Ternary if act == "Sign" else Bipolar)


def test_sign_without_reachable_zero_becomes_bipolar(tmp_path):
    # Non-integer tie points: BN output can never be exactly 0, so Sign's third value is dead.
    folded = compile_and_compare(tie_model(tmp_path, np.array([1, -1, 2, -0.5], np.float32),
                                           np.zeros(4, np.float32),
                                           np.array([0.5, 1.5, -2.5, 0.5], np.float32)))
    th = next(op for op in folded.ops if isinstance(op, Threshold))
    assert isinstance(folded.types[th.out].elem, Bipolar)


@pytest.mark.parametrize("beta", [0.0, 0.7, -0.7])
def test_zero_gamma_is_a_constant_channel(tmp_path, beta):
    gamma = np.array([0, 1, 0, -1], np.float32)
    folded = compile_and_compare(tie_model(tmp_path, gamma, np.full(4, beta, np.float32), np.zeros(4, np.float32)))
    th = next(op for op in folded.ops if isinstance(op, Threshold))
    for c in (0, 2):  # the gamma = 0 channels give sign(beta) whatever the input
        assert len(set(th.values[c].tolist())) == 1


def test_off_by_one_threshold_would_be_caught(tmp_path):
    """Move one folded threshold by one step: the comparison against the original must fail."""
    path = tie_model(tmp_path, np.ones(4, np.float32), np.zeros(4, np.float32), np.array([0, 1, -2, 3], np.float32))
    graph = import_onnx(path)
    x = all_ternary_inputs()
    folded, _ = run_pipeline(graph, parse_pipeline(DEFAULT_PIPELINE))
    ops = list(folded.ops)
    i = next(i for i, op in enumerate(ops) if isinstance(op, Threshold) and not folded.on_host(op))
    from dataclasses import replace
    ops[i] = replace(ops[i], thresholds=ops[i].thresholds + 1)
    broken = folded.with_ops(ops)
    got = interp.run(broken, {graph.inputs[0][0]: x})[broken.outputs[0]]
    assert not np.array_equal(interp.to_real(got, broken.types[broken.outputs[0]]), run_original(onnx.load(path), x))


def test_simplify_drops_only_dead_levels():
    v = np.array([[-1, 0, 1], [-1, 0, 1]])
    # channel 0: tie at 2 (three live levels) stays; channel 1: empty middle level goes
    t2, v2 = simplify(np.array([[2, 3], [5, 5]]), v, -10, 10)
    assert t2.tolist() == [[2, 3], [5, 11]] and v2.tolist() == [[-1, 0, 1], [-1, 1, 1]]
    t3, v3 = simplify(np.array([[4, 4], [5, 5]]), v, -10, 10)
    assert t3.tolist() == [[4], [5]] and v3.tolist() == [[-1, 1], [-1, 1]]
    # different channels merge different levels: both end with one threshold
    t4, v4 = simplify(np.array([[0, 1], [3, 4]]), np.array([[1, 1, -1], [-1, 1, 1]]), -10, 10)
    assert t4.tolist() == [[1], [3]] and v4.tolist() == [[1, -1], [-1, 1]]


def test_printer_is_canonical(tmp_path):
    path = tie_model(tmp_path, np.ones(4, np.float32), np.zeros(4, np.float32), np.zeros(4, np.float32))
    graph = import_onnx(path)
    text = print_graph(graph)
    assert text == print_graph(import_onnx(path))
    assert text.splitlines()[0] == "graph m(%x: f32[4]) -> (%mm1) {"  # Identity aliases mm1
    assert "  %h0 = host sign %x {zero=0} : ternary[4]" in text.splitlines()


def float_input_model(tmp_path):
    """x (float, unquantized) -> MatMul(+-1) -> BN -> Sign -> MatMul(+-1): no input quantizer."""
    from onnx import TensorProto, helper, numpy_helper

    from tests.onnx_builders import save
    rng = np.random.default_rng(5)
    inits = [numpy_helper.from_array(rng.choice([-1.0, 1.0], (16, 8)).astype(np.float32), "w0"),
             numpy_helper.from_array(rng.choice([-1.0, 1.0], (8, 3)).astype(np.float32), "w1")]
    for key, val in dict(g=rng.uniform(0.5, 2, 8), b=rng.normal(0, 1, 8), m=rng.normal(0, 2, 8), v=np.ones(8)).items():
        inits.append(numpy_helper.from_array(val.astype(np.float32), key))
    nodes = [helper.make_node("MatMul", ["x", "w0"], ["h"], name="first_matmul"),
             helper.make_node("BatchNormalization", ["h", "g", "b", "m", "v"], ["bn"]),
             helper.make_node("Sign", ["bn"], ["s"]), helper.make_node("MatMul", ["s", "w1"], ["y"])]
    graph = helper.make_graph(nodes, "float_in", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return save(model, tmp_path / "float_in.onnx")


def test_unquantized_input_needs_calibration(tmp_path):
    from bnnc.passes.manager import PassError
    graph = import_onnx(float_input_model(tmp_path))
    with pytest.raises(PassError, match="first_matmul.*--calibrate"):
        run_pipeline(graph, parse_pipeline(DEFAULT_PIPELINE))


def test_calibrated_fixed_point_input_error_is_bounded(tmp_path):
    from bnnc.ir.ops import Dense, Quantize
    graph = import_onnx(float_input_model(tmp_path))
    x = np.random.default_rng(2).normal(0, 3, (200, 16)).astype(np.float32)
    np.save(tmp_path / "cal.npy", x)
    passes = parse_pipeline("quantize-inputs{bits=10}")
    from dataclasses import replace as dc_replace
    passes = [dc_replace(passes[0], calibrate=str(tmp_path / "cal.npy"))]
    quantized, records = run_pipeline(graph, passes, {graph.inputs[0][0]: x})
    assert records[0].verified.startswith("approximates")
    quant = next(op for op in quantized.ops if isinstance(op, Quantize))
    frac = -int(np.log2(float(quant.scale)))
    assert 2.0 ** (9 - frac) > np.abs(x).max() >= 2.0 ** (8 - frac)  # integer bits cover the data
    dense_before = next(op.out for op in graph.ops if isinstance(op, Dense))
    dense_after = next(op.out for op in quantized.ops if isinstance(op, Dense))
    a = interp.run(graph, {graph.inputs[0][0]: x}, trace=True)[dense_before]
    b = interp.run(quantized, {graph.inputs[0][0]: x}, trace=True)[dense_after]
    err = np.abs(np.asarray(a - b, dtype=np.float64))
    assert err.max() <= 16 * 2.0 ** -(frac + 1)


def test_a_pass_refuses_a_graph_that_breaks_its_requirement(tmp_path):
    from bnnc.passes.manager import PassError
    graph = import_onnx(float_input_model(tmp_path))  # the first layer reads float data
    with pytest.raises(PassError, match=r"pass 'channel-reuse' requires that every weight layer reads integer codes, "
                                        r"but dense %\S+ \(from ONNX node 'first_matmul'\) reads f32"):
        run_pipeline(graph, parse_pipeline("channel-reuse"))


def test_a_pass_that_breaks_its_promise_is_named(tmp_path):
    from dataclasses import dataclass

    from bnnc.passes.fold_thresholds import FoldThresholds
    from bnnc.passes.manager import PassError

    @dataclass(frozen=True)
    class ForgetfulFold(FoldThresholds):  # promises what fold-thresholds promises, folds nothing
        def run(self, graph):
            return graph

    path = tie_model(tmp_path, np.ones(4, np.float32), np.zeros(4, np.float32), np.zeros(4, np.float32))
    graph = run_pipeline(import_onnx(path), parse_pipeline("fold-constants"))[0]
    with pytest.raises(PassError, match=r"pass 'fold-thresholds' ensures that every sign on integer codes is an "
                                        r"integer threshold, but sign %"):
        run_pipeline(graph, [ForgetfulFold()])
    assert run_pipeline(graph, parse_pipeline("fold-thresholds"))[0] is not graph  # the real pass keeps it


def test_pipeline_options_round_trip_with_their_types():
    from bnnc.passes.manager import REGISTRY, PassError
    text = "channel-reuse{groups=(4, 0,2),max-depth=3},fold-fixed-point{frac=12,calibrate=cal.npy},quantize-inputs{bits=10}"
    passes = parse_pipeline(text)
    assert passes[0].groups == (4, 0, 2) and passes[0].max_depth == 3
    assert passes[1].frac == 12 and passes[1].calibrate == "cal.npy" and passes[2].bits == 10
    for p in passes + [cls() for cls in REGISTRY.values()]:
        assert parse_pipeline(str(p)) == [p]
    for bad, why in [("channel-reuse{groups=4}", "option 'groups' wants integers in parentheses"),
                     ("fold-fixed-point{frac=many}", "option 'frac' wants an integer, got 'many'"),
                     ("channel-reuse{groups=(1,x)}", "got '\\(1,x\\)'")]:
        with pytest.raises(PassError, match=why):
            parse_pipeline(bad)
