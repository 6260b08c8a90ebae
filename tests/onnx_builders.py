"""Small ONNX graphs written with onnx.helper, for cases that trained exporters rarely hit
exactly: threshold ties, negative and zero BatchNorm gammas, malformed models."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def save(model: onnx.ModelProto, path) -> str:
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


def sign_bn_mlp(path, weights: list[np.ndarray], bns: list[dict], act: str = "Sign",
                in_features: int | None = None) -> str:
    """x -> Sign -> [MatMul(W) -> BatchNormalization -> act]* -> MatMul(W_last) -> y.

    `weights` are (in, out) float matrices (the last one gives the scores); `bns` holds
    gamma/beta/mean/var per hidden layer; act is "Sign" or "Where" (x >= 0 ? 1 : -1).
    """
    k = in_features or weights[0].shape[0]
    nodes, inits = [helper.make_node("Sign", ["x"], ["h0"])], []
    cur = "h0"
    for i, w in enumerate(weights):
        inits.append(numpy_helper.from_array(w.astype(np.float32), f"w{i}"))
        nodes.append(helper.make_node("MatMul", [cur, f"w{i}"], [f"mm{i}"], name=f"matmul{i}"))
        cur = f"mm{i}"
        if i < len(bns):
            bn = bns[i]
            for key in ("gamma", "beta", "mean", "var"):
                inits.append(numpy_helper.from_array(np.asarray(bn[key], np.float32), f"{key}{i}"))
            nodes.append(helper.make_node("BatchNormalization", [cur, f"gamma{i}", f"beta{i}", f"mean{i}", f"var{i}"],
                                          [f"bn{i}"], name=f"bn{i}", epsilon=float(bn.get("eps", 1e-5))))
            if act == "Sign":
                nodes.append(helper.make_node("Sign", [f"bn{i}"], [f"a{i}"], name=f"sign{i}"))
            else:
                inits += [numpy_helper.from_array(np.float32(0), f"zero{i}"),
                          numpy_helper.from_array(np.float32(1), f"one{i}"),
                          numpy_helper.from_array(np.float32(-1), f"minus{i}")]
                nodes.append(helper.make_node("GreaterOrEqual", [f"bn{i}", f"zero{i}"], [f"ge{i}"]))
                nodes.append(helper.make_node("Where", [f"ge{i}", f"one{i}", f"minus{i}"], [f"a{i}"]))
            cur = f"a{i}"
    nodes.append(helper.make_node("Identity", [cur], ["y"]))
    out = weights[-1].shape[1]
    graph = helper.make_graph(nodes, "sign_bn_mlp",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", out])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return save(model, path)


QONNX = "qonnx.custom_op.general"


def quant_bn_mlp(path, w0: np.ndarray, bn: dict, w1: np.ndarray, act: dict) -> str:
    """x -> Quant(2-bit signed narrow, scale 1: inputs -1/0/+1) -> MatMul(w0) -> BatchNormalization
    -> Quant(**act) -> MatMul(w1) -> y.  `act`: bits, scale, zero_point, signed, narrow,
    rounding_mode (QONNX Quant attributes)."""
    inits = [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in {
        "w0": w0, "w1": w1, "gamma": bn["gamma"], "beta": bn["beta"], "mean": bn["mean"], "var": bn["var"],
        "in_scale": 1.0, "in_zp": 0.0, "in_bits": 2.0,
        "act_scale": act["scale"], "act_zp": act.get("zero_point", 0.0), "act_bits": float(act["bits"])}.items()]
    nodes = [
        helper.make_node("Quant", ["x", "in_scale", "in_zp", "in_bits"], ["q0"], name="in_quant", domain=QONNX,
                         signed=1, narrow=1, rounding_mode="ROUND"),
        helper.make_node("MatMul", ["q0", "w0"], ["mm0"], name="matmul0"),
        helper.make_node("BatchNormalization", ["mm0", "gamma", "beta", "mean", "var"], ["bn0"], name="bn0",
                         epsilon=float(bn["eps"])),
        helper.make_node("Quant", ["bn0", "act_scale", "act_zp", "act_bits"], ["a0"], name="act_quant", domain=QONNX,
                         signed=int(act["signed"]), narrow=int(act["narrow"]), rounding_mode=act["rounding_mode"]),
        helper.make_node("MatMul", ["a0", "w1"], ["y"], name="matmul1"),
    ]
    graph = helper.make_graph(nodes, "quant_bn_mlp",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", w0.shape[0]])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", w1.shape[1]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(QONNX, 1)])
    model.ir_version = 8
    return save(model, path)
