"""Graphs in the forms FINN produces from a Brevitas QONNX export, built with onnx.helper.

``finn_converted_cnv`` is shaped like the CNV after FINN's ConvertQONNXtoFINN: the 8-bit signed
input quantizer becomes a MultiThreshold with 255 levels (out_dtype UINT8) followed by
Add(-128) and Mul(1/128); each BipolarQuant activation becomes a MultiThreshold with out_scale 2
and out_bias -1; convs and MatMuls carry +-1 weights; a scalar Mul and Add end the graph.
Deterministic per ``seed``; thresholds include exact ties on reachable accumulator values.

FINN itself (``ConvertQONNXtoFINN``, the streamlining and ``RoundAndClipThresholds``) is not on
PyPI and not installed here, and qonnx 1.0 has none of those passes, so the forms are built
directly: ``form="converted"`` as the conversion leaves the graph; ``"streamlined"`` with the
input's Add(-128) and Mul(1/128) absorbed into the first layer's thresholds (the first conv then
reads the 0..255 levels; exact because it is unpadded); ``"rounded"`` streamlined with every
threshold on an integer accumulator rounded up to an integer, as RoundAndClipThresholds does.
A depthwise conv (``"dw"`` in ``channels``: 3x3, zero padding 1, group = channels) stays a
``Conv`` with ``group`` in all three forms (FINN lowers it only later, to Im2Col + a sparse
MatMul, which bnnc does not read); a pointwise one is ``("pw", n)``: 1x1 to n channels.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.models.exporters import QONNX_DOMAIN, _datatype_annotations, _prepare

__all__ = ["finn_converted_cnv", "finn_separable_cnv"]


def finn_converted_cnv(path, seed=0, in_shape=(3, 8, 8), channels=(8, "M", 8), dense=(16, 10),
                       shared_input_thresholds=True, weights=(-1.0, 1.0), form="converted") -> str:
    """input [1, C, H, W] in [-1, 1) -> MultiThreshold (255 thresholds (k - 127.5) / 128, levels
    0..255) -> Add(-128) -> Mul(1/128) -> [Conv 3x3 unpadded (+-1) -> MultiThreshold (bipolar)
    -> MaxPool 2x2 where "M" follows]* -> Reshape -> [MatMul (+-1) -> MultiThreshold]* -> MatMul
    -> Mul -> Add.  ``shared_input_thresholds``: one threshold row for all input channels (else
    the row repeated per channel). ``weights``: the values weights are drawn from (e.g. -1, 0, 1
    for ternary, or 2-bit integers times a scale). ``form``: see the module docstring."""
    assert form in ("converted", "streamlined", "rounded"), form
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
    if form == "converted":
        x = node("Add", [x, init("in_shift", -128.0)], "Add_0")
        x = node("Mul", [x, init("in_scale", 1 / 128)], "Mul_0")
    first = True
    for i, spec in enumerate(channels):
        if spec == "M":
            x = node("MaxPool", [x], f"MaxPool_{i}", kernel_shape=[2, 2], strides=[2, 2])
            h, w = h // 2, w // 2
            continue
        ch, k, group, pad = (c, 3, c, 1) if spec == "dw" else (spec[1], 1, 1, 0) if isinstance(spec, tuple) \
            else (spec, 3, 1, 0)
        wv = rs.choice(weights, (ch, c // group, k, k))
        wt = init(f"W_conv_{i}", wv)
        dtypes[wt] = "BIPOLAR" if set(weights) == {-1.0, 1.0} else "FLOAT32"
        x = node("Conv", [x, wt], f"Conv_{i}", kernel_shape=[k, k], pads=[pad] * 4, strides=[1, 1], group=group)
        if first:  # it reads (q - 128) / 128: every multiple of 1/128 in range is a reachable sum
            assert pad == 0, "the first conv is unpadded: a streamlined form moves the input's -128 through it"
            t = np.round(rs.randn(ch, 1) * 3 * 128) / 128
            if form != "converted":  # conv(q - 128) / 128 >= t  <=>  conv(q) >= 128 t + 128 sum(w)
                t = 128 * t + 128 * wv.reshape(ch, -1).sum(axis=1, keepdims=True)
            x = bipolar_threshold(x, t)
        else:
            t = tie_thresholds(ch, c // group * k * k)
            x = bipolar_threshold(x, np.ceil(t) if form == "rounded" and set(weights) <= {-1.0, 0.0, 1.0} else t)
        first, c, h, w = False, ch, h - 2 * (1 - pad) * (k // 2), w - 2 * (1 - pad) * (k // 2)
    inits.append(numpy_helper.from_array(np.array([1, -1], np.int64), "flat_shape"))
    x = node("Reshape", [x, "flat_shape"], "Reshape_0")
    fan_in = c * h * w
    for i, out in enumerate(dense):
        wt = init(f"W_fc_{i}", rs.choice(weights, (fan_in, out)))
        dtypes[wt] = "BIPOLAR" if set(weights) == {-1.0, 1.0} else "FLOAT32"
        x = node("MatMul", [x, wt], f"MatMul_{i}")
        if i < len(dense) - 1:
            t = tie_thresholds(out, fan_in)
            x = bipolar_threshold(x, np.ceil(t) if form == "rounded" and set(weights) <= {-1.0, 0.0, 1.0} else t)
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


def finn_separable_cnv(path, form="converted", seed=0) -> str:
    """A depthwise-separable binary net in FINN-ONNX form: 8-bit input quantizer -> 3x3 conv to 8
    channels -> depthwise 3x3 (zero padding 1, group 8) -> pointwise 1x1 to 16 -> max pool ->
    dense 16 -> dense 10, bipolar maps in between."""
    return finn_converted_cnv(path, seed=seed, in_shape=(3, 8, 8), channels=(8, "dw", ("pw", 16), "M"),
                              dense=(16, 10), form=form)
