"""Convolutions: exact zero padding, +-1 padding, pool/threshold order, against the original.

Each case also shows that the tempting wrong choice (padding with a bit, a max pool left in
front of a negative-gamma threshold) gives different answers, so the right one is tested.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
import pytest
from bnnc import interp
from bnnc.frontend.onnx import import_onnx
from bnnc.ir.ops import Conv, Pool, Threshold
from bnnc.original import run_original
from bnnc.passes import DEFAULT_PIPELINE, parse_pipeline, run_pipeline
from onnx import TensorProto, helper, numpy_helper

from tests.models import conv_exporters as cx
from tests.onnx_builders import save

C_IN, C_OUT, H = 2, 4, 6


def conv_model(path, pad_value=0.0, pads_as="conv", pool="after", gamma_sign=(1, -1, 1, -1)):
    """x -> Sign -> [Pad] -> Conv 3x3 -> (MaxPool) -> BN -> Sign -> (MaxPool) -> Flatten -> MatMul."""
    rng = np.random.default_rng(3)
    w = rng.choice([-1.0, 1.0], (C_OUT, C_IN, 3, 3)).astype(np.float32)
    gamma = (np.array(gamma_sign) * rng.uniform(0.5, 2, C_OUT)).astype(np.float32)
    beta = rng.normal(0, 1, C_OUT).astype(np.float32)
    mean = rng.integers(-3, 3, C_OUT).astype(np.float32)  # integer means: exact ties are reachable
    var = np.ones(C_OUT, np.float32)
    nodes = [helper.make_node("Sign", ["x"], ["s"])]
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(gamma, "g"), numpy_helper.from_array(beta, "b"),
             numpy_helper.from_array(mean, "m"), numpy_helper.from_array(var, "v")]
    conv_in, conv_pads = "s", [1, 1, 1, 1]
    if pads_as == "pad":
        inits += [numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads"),
                  numpy_helper.from_array(np.float32(pad_value), "padv")]
        nodes.append(helper.make_node("Pad", ["s", "pads", "padv"], ["sp"], mode="constant"))
        conv_in, conv_pads = "sp", [0, 0, 0, 0]
    nodes.append(helper.make_node("Conv", [conv_in, "w"], ["c"], name="conv", kernel_shape=[3, 3], pads=conv_pads))
    bn_in = "c"
    if pool == "before":
        nodes.append(helper.make_node("MaxPool", ["c"], ["cp"], kernel_shape=[2, 2], strides=[2, 2]))
        bn_in = "cp"
    nodes += [helper.make_node("BatchNormalization", [bn_in, "g", "b", "m", "v"], ["bn"], name="bn"),
              helper.make_node("Sign", ["bn"], ["a"])]
    act = "a"
    if pool == "after":
        nodes.append(helper.make_node("MaxPool", ["a"], ["ap"], kernel_shape=[2, 2], strides=[2, 2]))
        act = "ap"
    flat = C_OUT * (H // 2) ** 2
    inits.append(numpy_helper.from_array(rng.choice([-1.0, 1.0], (flat, 5)).astype(np.float32), "wd"))
    nodes += [helper.make_node("Flatten", [act], ["f"]), helper.make_node("MatMul", ["f", "wd"], ["y"])]
    graph = helper.make_graph(nodes, "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", C_IN, H, H])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return save(model, path)


def inputs(n=300):
    rng = np.random.default_rng(0)
    return rng.choice([-1.0, 0.0, 1.0], (n, C_IN, H, H), p=[0.4, 0.2, 0.4]).astype(np.float32)


def fold(path):
    graph = import_onnx(path)
    folded, _ = run_pipeline(graph, parse_pipeline(DEFAULT_PIPELINE), {graph.inputs[0][0]: inputs(64)})
    return folded


def outputs(graph, x):
    out = graph.outputs[0]
    return interp.to_real(interp.run(graph, {graph.inputs[0][0]: x})[out], graph.types[out])


@pytest.mark.parametrize("pads_as, pad_value", [("conv", 0.0), ("pad", 0.0), ("pad", 1.0), ("pad", -1.0)])
@pytest.mark.parametrize("pool", ["after", "before"])
def test_conv_matches_original(tmp_path, pads_as, pad_value, pool):
    path = conv_model(tmp_path / "m.onnx", pad_value, pads_as, pool)
    folded = fold(path)
    x = inputs()
    np.testing.assert_array_equal(outputs(folded, x), run_original(onnx.load(path), x))
    conv = next(op for op in folded.ops if isinstance(op, Conv))
    assert conv.pad_value == int(pad_value) and conv.pads == (1, 1, 1, 1)
    # Pooling ends up behind the threshold, on bits, whichever order the model used.
    kinds = [type(op) for op in folded.ops if not folded.on_host(op)]
    assert kinds.index(Pool) > kinds.index(Threshold)


@pytest.mark.parametrize("wrong_value", [-1, 1])
def test_padding_zeros_with_a_bit_would_be_caught(tmp_path, wrong_value):
    """FINN pads binary convs with a bit; a zero pad is not a bit, and the outputs show it."""
    path = conv_model(tmp_path / "m.onnx", 0.0, "conv", "after")
    folded = fold(path)
    ops = [replace(op, pad_value=wrong_value) if isinstance(op, Conv) else op for op in folded.ops]
    x = inputs()
    assert not np.array_equal(outputs(folded.with_ops(ops), x), run_original(onnx.load(path), x))


def test_max_pool_before_negative_gamma_becomes_a_min_pool_on_bits(tmp_path):
    path = conv_model(tmp_path / "m.onnx", 0.0, "conv", "before", gamma_sign=(-1, -1, 1, -1))
    x = inputs()
    want = run_original(onnx.load(path), x)
    folded = fold(path)
    pool = next(op for op in folded.ops if isinstance(op, Pool))
    assert isinstance(folded.producer(pool.inputs[0]), Threshold)
    assert pool.modes.tolist() == [-1, -1, 1, -1]
    np.testing.assert_array_equal(outputs(folded, x), want)
    naive = folded.with_ops([replace(op, modes=np.ones(4, np.int8)) if isinstance(op, Pool) else op for op in folded.ops])
    assert not np.array_equal(outputs(naive, x), want)


CONV_PRODUCERS = {
    # ties=False: with weight scale 0.1 the original's float32 conv sums are not exact, so at an
    # exact BN tie its sign is rounding noise (the exact tie cases are tested above instead).
    "brevitas-unpadded": lambda p: cx.brevitas_cnv(p, padding=0, ties=False, channels=(8, 8, "M", 16), in_shape=(3, 10, 10)),
    "brevitas-padded": lambda p: cx.brevitas_cnv(p, padding=1, ties=False, channels=(8, 8, "M", 16), in_shape=(3, 10, 10)),
    "brevitas-padded-dynamo": lambda p: cx.brevitas_cnv(p, padding=1, ties=False, dynamo=True,
                                                        channels=(8, "M", 16), in_shape=(3, 8, 8)),
    "torch-sign-pad": lambda p: cx.torch_sign_cnv(p),
    "larq-nhwc": lambda p: cx.larq_style_cnv(p),
}


@pytest.mark.parametrize("producer", sorted(CONV_PRODUCERS))
def test_exported_conv_models_match_original(tmp_path, producer):
    from bnnc.driver import sample_inputs
    path = CONV_PRODUCERS[producer](tmp_path / "m.onnx")
    graph = import_onnx(path)
    shape = graph.inputs[0][1].shape
    x = np.concatenate([sample_inputs(graph, 100), np.random.default_rng(1).random((100,) + shape).astype(np.float32)])
    folded, records = run_pipeline(graph, parse_pipeline(DEFAULT_PIPELINE), {graph.inputs[0][0]: x[:24]})
    device = [op for op in folded.ops if not folded.on_host(op)]
    assert {op.kind for op in device} <= {"conv", "threshold", "pool", "reshape", "transpose", "dense", "fixed_affine"}
    got = outputs(folded, x)
    want = run_original(onnx.load(path), x).reshape(got.shape)
    bound = max((getattr(op, "error_bound", 0.0) for op in folded.ops), default=0.0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=bound + 1e-6)
