"""Grouped and depthwise convolutions: lowered as the full convolution whose weights outside a
channel's group are 0 (ternary / multi-bit weights to the backends), exact against onnxruntime
and Brevitas' export, and in HLS and RTL simulation."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from bnnc import driver
from bnnc.backends.asic.tl import threshold_logic
from bnnc.original import run_original
from onnx import TensorProto, helper, numpy_helper

from tests.models.separable import separable_cnv
from tests.onnx_builders import save


def grouped_conv_model(path, groups: int, c_in=4, c_out=6, seed=0) -> str:
    """x -> Sign -> Conv(group, +-1 weights, pad 1) -> Sign -> Flatten -> MatMul(+-1) -> y."""
    rng = np.random.default_rng(seed)
    w = rng.choice([-1.0, 1.0], (c_out, c_in // groups, 3, 3)).astype(np.float32)
    fc = rng.choice([-1.0, 1.0], (c_out * 5 * 5, 3)).astype(np.float32)
    nodes = [helper.make_node("Sign", ["x"], ["s"]),
             helper.make_node("Conv", ["s", "w"], ["c"], name="grouped", group=groups, pads=[1, 1, 1, 1],
                              kernel_shape=[3, 3]),
             helper.make_node("Sign", ["c"], ["a"]),
             helper.make_node("Flatten", ["a"], ["f"]),
             helper.make_node("MatMul", ["f", "fc"], ["y"])]
    graph = helper.make_graph(nodes, "grouped", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", c_in, 5, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(fc, "fc")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return save(model, path)


@pytest.mark.parametrize("groups", [2, 4], ids=["group2", "depthwise"])
def test_grouped_conv_equals_onnxruntime_and_hls(tmp_path, groups):
    path = grouped_conv_model(tmp_path / "m.onnx", groups, c_out=4 if groups == 4 else 6)
    compiled = driver.compile_model(path, driver.Options(targets=("verilog", "hls")))
    rng = np.random.default_rng(1)
    x = rng.integers(-1, 2, (40, 4, 5, 5)).astype(np.float32)  # Sign gives -1/0/+1 (a ternary map)
    ours = driver.execute(compiled, x, "interp")
    np.testing.assert_array_equal(ours, run_original(onnx.load(path), x))
    np.testing.assert_array_equal(driver.execute(compiled, x, "hls", tmp_path), ours)


def test_group_that_does_not_fit_is_refused(tmp_path):
    path = grouped_conv_model(tmp_path / "m.onnx", 2)
    model = onnx.load(path)
    model.graph.node[1].attribute[0].i = 3  # group=3: 4 input channels do not split in 3
    onnx.save(model, path)
    with pytest.raises(driver.BnncError, match="group=3 does not fit"):
        driver.compile_model(path, driver.Options())


def separable(tmp_path, dynamo):
    path = separable_cnv(tmp_path / "sep.onnx", dynamo=dynamo, ties=False)  # weight scale 0.1: see README limits
    compiled = driver.compile_model(path, driver.Options(targets=("verilog", "hls")))
    x = driver.sample_inputs(compiled.source, 32)
    reference = driver.execute(compiled, x, "interp")
    original = run_original(onnx.load(path), x).reshape(reference.shape)
    np.testing.assert_allclose(reference, original, rtol=1e-5, atol=driver.error_bound(compiled.graph) + 1e-6)
    return compiled, x, reference


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
def test_brevitas_depthwise_separable_within_bound_and_hls(tmp_path, dynamo):
    compiled, x, reference = separable(tmp_path, dynamo)
    np.testing.assert_array_equal(driver.execute(compiled, x, "hls", tmp_path / "hls"), reference)
    # In the threshold-logic netlist (--target asic) the depthwise conv's zero weights are no
    # literal of a TLG bit heap: it stays CMOS and says why (this was a KeyError), while the
    # binary pointwise conv after it becomes TLGs.
    mapping = threshold_logic(compiled.graph)
    assert "ternary weights: x*w products" in dict(mapping.cmos)[1]
    assert mapping.network(2) is not None


@pytest.mark.slow  # about a minute of Verilator build
def test_brevitas_depthwise_separable_in_rtl(tmp_path):
    compiled, x, reference = separable(tmp_path, False)
    np.testing.assert_array_equal(driver.execute(compiled, x[:8], "rtl", tmp_path / "rtl"), reference[:8])

