"""Graphs in the forms FINN produces from a Brevitas QONNX export, built with onnx.helper.

``finn_converted_cnv`` is shaped like the CNV after FINN's ConvertQONNXtoFINN: the 8-bit signed
input quantizer becomes a MultiThreshold with 255 levels (out_dtype UINT8) followed by
Add(-128) and Mul(1/128); each BipolarQuant activation becomes a MultiThreshold with out_scale 2
and out_bias -1; convs and MatMuls carry +-1 weights; a scalar Mul and Add end the graph.
Deterministic per ``seed``; thresholds include exact ties on reachable accumulator values.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.models.exporters import QONNX_DOMAIN, _datatype_annotations, _prepare

__all__ = ["finn_converted_cnv"]


def finn_converted_cnv(path, seed=0, in_shape=(3, 8, 8), channels=(8, "M", 8), dense=(16, 10),
                       shared_input_thresholds=True, weights=(-1.0, 1.0)) -> str:
    """input [1, C, H, W] in [-1, 1) -> MultiThreshold (255 thresholds (k - 127.5) / 128, levels
    0..255) -> Add(-128) -> Mul(1/128) -> [Conv 3x3 unpadded (+-1) -> MultiThreshold (bipolar)
    -> MaxPool 2x2 where "M" follows]* -> Reshape -> [MatMul (+-1) -> MultiThreshold]* -> MatMul
    -> Mul -> Add.  ``shared_input_thresholds``: one threshold row for all input channels (else
    the row repeated per channel). ``weights``: the values weights are drawn from (e.g. -1, 0, 1
    for ternary, or 2-bit integers times a scale)."""
    path = _prepare(path)
    rs = np.random.RandomState(seed)
    nodes, inits, dtypes = [], [], {}

    def init(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name))
        return name

    def node(op, inputs, name, domain="", **attrs):
        out = f"{name}_out0"
        nodes.append(helper.make_node(op, inputs, [out], name=name, domain=domain, **attrs))
        return out

    def bipolar_threshold(x, thresholds):
        out = node("MultiThreshold", [x, init(f"T_{len(nodes)}", thresholds)], f"MultiThreshold_{len(nodes)}",
                   QONNX_DOMAIN, out_dtype="BIPOLAR", out_scale=2.0, out_bias=-1.0)
        dtypes[out] = "BIPOLAR"
        return out

    def tie_thresholds(n, fan_in):
        """Random thresholds over the accumulator's spread; every other one an exact reachable
        accumulator value (a tie: x >= t counts)."""
        t = np.round(rs.randn(n) * np.sqrt(fan_in) * 0.5)
        t[1::2] += 0.5
        t[0::2] += (t[0::2] - fan_in) % 2  # parity of fan_in: reachable with +-1 inputs
        return t[:, None]

    c, h, w = in_shape
    levels = ((np.arange(255) - 127.5) / 128)[None, :]
    rows = levels if shared_input_thresholds else np.repeat(levels, c, axis=0)
    x = node("MultiThreshold", ["global_in", init("T_in", rows)], "MultiThreshold_0", QONNX_DOMAIN, out_dtype="UINT8")
    dtypes[x] = "UINT8"
    x = node("Add", [x, init("in_shift", -128.0)], "Add_0")
    x = node("Mul", [x, init("in_scale", 1 / 128)], "Mul_0")
    first = True
    for i, ch in enumerate(channels):
        if ch == "M":
            x = node("MaxPool", [x], f"MaxPool_{i}", kernel_shape=[2, 2], strides=[2, 2])
            h, w = h // 2, w // 2
            continue
        wt = init(f"W_conv_{i}", rs.choice(weights, (ch, c, 3, 3)))
        dtypes[wt] = "BIPOLAR" if set(weights) == {-1.0, 1.0} else "FLOAT32"
        x = node("Conv", [x, wt], f"Conv_{i}", kernel_shape=[3, 3], pads=[0, 0, 0, 0], strides=[1, 1])
        if first:  # it reads (q - 128) / 128: every multiple of 1/128 in range is a reachable sum
            x = bipolar_threshold(x, np.round(rs.randn(ch, 1) * 3 * 128) / 128)
        else:
            x = bipolar_threshold(x, tie_thresholds(ch, c * 9))
        first, c, h, w = False, ch, h - 2, w - 2
    inits.append(numpy_helper.from_array(np.array([1, -1], np.int64), "flat_shape"))
    x = node("Reshape", [x, "flat_shape"], "Reshape_0")
    fan_in = c * h * w
    for i, out in enumerate(dense):
        wt = init(f"W_fc_{i}", rs.choice(weights, (fan_in, out)))
        dtypes[wt] = "BIPOLAR" if set(weights) == {-1.0, 1.0} else "FLOAT32"
        x = node("MatMul", [x, wt], f"MatMul_{i}")
        if i < len(dense) - 1:
            x = bipolar_threshold(x, tie_thresholds(out, fan_in))
        fan_in = out
    x = node("Mul", [x, init("out_scale", np.float32(0.5 + rs.rand()))], "Mul_1")
    nodes.append(helper.make_node("Add", [x, init("out_bias", np.float32(rs.randn()))], ["global_out"], name="Add_1"))

    graph = helper.make_graph(
        nodes, "finn_cnv_converted",
        [helper.make_tensor_value_info("global_in", TensorProto.FLOAT, [1, *in_shape])],
        [helper.make_tensor_value_info("global_out", TensorProto.FLOAT, [1, dense[-1]])],
        initializer=inits,
    )
    graph.quantization_annotation.extend(_datatype_annotations(dtypes))
    model = helper.make_model(graph, producer_name="bnnc-tests",
                              opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(QONNX_DOMAIN, 1)])
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path
