"""The model builders in tests/models/exporters.py produce what the other tests rely on.

Standard-op models run in onnxruntime and are compared with torch. QONNX/FINN models cannot run
there, so they run in onnx.reference with the small op implementations below (the QONNX
semantics of DESIGN.md section 2), which also pins down what the exported graphs mean.
"""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import OpRun

from tests.models import exporters as E

QONNX = E.QONNX_DOMAIN


class Quant(OpRun):
    op_domain = QONNX

    def _run(self, x, scale, zeropt, bitwidth, signed=1, narrow=0, rounding_mode="ROUND"):
        assert rounding_mode in ("ROUND", b"ROUND")  # np.round is half to even, like ROUND
        n = int(bitwidth)
        qmin = -(2 ** (n - 1)) + narrow if signed else 0
        qmax = 2 ** (n - 1) - 1 if signed else 2**n - 1 - narrow
        q = np.clip(np.round(x / scale + zeropt), qmin, qmax)
        return (((q - zeropt) * scale).astype(np.float32),)


class BipolarQuant(OpRun):
    op_domain = QONNX

    def _run(self, x, scale):
        return ((np.where(x >= 0, 1.0, -1.0) * scale).astype(np.float32),)


class MultiThreshold(OpRun):
    op_domain = QONNX

    def _run(self, x, t, out_dtype=None, out_scale=1.0, out_bias=0.0, data_layout=None):
        count = (x[..., None] >= t).sum(-1)  # 2-D input [N, C]; t is [C or 1, steps]
        return ((out_scale * count + out_bias).astype(np.float32),)


QONNX_OPS = [Quant, BipolarQuant, MultiThreshold]


def ops(model):
    return [(n.domain, n.op_type) for n in model.graph.node]


def attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def data_input(model):
    """The first graph input that is not an initializer (Brevitas lists weights as inputs too)."""
    inits = {i.name for i in model.graph.initializer}
    return next(i for i in model.graph.input if i.name not in inits)


def load_checked(path):
    model = onnx.load(path)
    onnx.checker.check_model(model)
    return model


def digits_like(n=64, in_features=64, seed=0):
    """Inputs k/16 like the digits data: includes exact 0.5, where Sign(x - 0.5) is 0."""
    return (np.random.RandomState(seed).randint(0, 17, (n, in_features)) / 16).astype(np.float32)


def run_reference(model, x):
    sess = ReferenceEvaluator(model, new_ops=QONNX_OPS)
    name = data_input(model).name
    return np.concatenate([sess.run(None, {name: row[None]})[0] for row in x])  # batch 1 graphs


# --------------------------------------------------------------------------------------------
# Brevitas


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
@pytest.mark.parametrize("input_quant", ["uint8", "int8", "bipolar", "bipolar-centred"])
def test_brevitas_mlp(tmp_path, dynamo, input_quant):
    sizes = (16, 12, 10)
    path = E.brevitas_mlp(tmp_path / "m.onnx", sizes=sizes, dynamo=dynamo, input_quant=input_quant)
    model = load_checked(path)
    types = [t for _, t in ops(model)]
    assert {d for d, t in ops(model) if t in ("Quant", "BipolarQuant")} == {QONNX}
    bipolar_in = input_quant.startswith("bipolar")
    assert types.count("BipolarQuant") == 2 * len(sizes) - 1 + bipolar_in
    assert types.count("BatchNormalization") == len(sizes) - 1
    assert types.count("MatMul" if not dynamo else "Gemm") == len(sizes)
    # TensorNorm: TorchScript keeps Pow(var + eps, 0.5) as a node, dynamo folds it
    assert [t for t in types if t != "Pow"][-4:] == ["Sub", "Div", "Mul", "Add"]
    assert [d.dim_value for d in data_input(model).type.tensor_type.shape.dim] == [1, 64]
    if input_quant == "bipolar-centred":  # 2x - 1 in front of the input quantizer
        assert types[:3] == ["Mul", "Sub", "BipolarQuant"]
    if not bipolar_in:
        q = model.graph.node[0]
        assert q.op_type == "Quant"
        assert attrs(q) == {"signed": int(input_quant == "int8"), "narrow": 0, "rounding_mode": b"ROUND"}
    # default binary weight scale is Brevitas' 0.1
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    wq = next(n for n in model.graph.node if n.op_type == "BipolarQuant" and n.input[0] in inits)
    assert np.allclose(inits[wq.input[1]], 0.1)

    # same model without the exact-tie BN channels: at a tie, float results depend on the order
    # of summation (torch vs numpy), so only the tie-free model compares bit-for-bit
    E.brevitas_mlp(tmp_path / "nt.onnx", sizes=sizes, dynamo=dynamo, input_quant=input_quant, ties=False)
    model = onnx.load(tmp_path / "nt.onnx")
    torch_model = E.build_brevitas_mlp(sizes, 64, input_quant=input_quant, ties=False)
    x = digits_like(20)
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run_reference(model, x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
def test_brevitas_tfc_784(tmp_path, dynamo):
    path = E.brevitas_mlp(tmp_path / "tfc.onnx", sizes=(64, 64, 64, 10), in_features=784, dynamo=dynamo)
    model = load_checked(path)
    assert [d.dim_value for d in data_input(model).type.tensor_type.shape.dim] == [1, 784]
    assert [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim] == [1, 10]


def test_brevitas_sfc_784_and_weight_scale(tmp_path):
    path = E.brevitas_mlp(tmp_path / "sfc.onnx", sizes=(256, 256, 256, 10), in_features=784, weight_scale=1.0)
    model = load_checked(path)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    scales = {float(inits[n.input[1]].item()) for n in model.graph.node if n.op_type == "BipolarQuant" and n.input[0] in inits}
    assert scales == {1.0}


def test_brevitas_bn_hard_cases():
    bn = E.build_brevitas_mlp((16, 12, 10), 64)[2]
    gamma, beta = bn.weight.detach(), bn.bias.detach()
    assert gamma[0] == 0 and beta[0] == 0  # constant channel exactly on the tie
    assert (gamma < 0).sum() >= 3 and (gamma > 0).sum() >= 3
    assert beta[2] == 0 and beta[-1] == 0  # tie channels


def test_brevitas_qcdq_rejected(tmp_path):
    with pytest.raises(ValueError, match="qonnx"):
        E.brevitas_mlp(tmp_path / "m.onnx", export="qcdq")


def test_deterministic(tmp_path):
    def weights(path):
        return [numpy_helper.to_array(i) for i in onnx.load(path).graph.initializer]

    a = weights(E.brevitas_mlp(tmp_path / "a.onnx", sizes=(8, 4), seed=3))
    b = weights(E.brevitas_mlp(tmp_path / "b.onnx", sizes=(8, 4), seed=3))
    c = weights(E.brevitas_mlp(tmp_path / "c.onnx", sizes=(8, 4), seed=4))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))
    sa = onnx.load(E.torch_sign_mlp(tmp_path / "sa.onnx", seed=1)).SerializeToString()
    sb = onnx.load(E.torch_sign_mlp(tmp_path / "sb.onnx", seed=1)).SerializeToString()
    assert sa == sb


# --------------------------------------------------------------------------------------------
# plain torch


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
@pytest.mark.parametrize("weights", ["sign_in_graph", "pm1"])
@pytest.mark.parametrize("ste", ["sign", "ste_add", "where"])
def test_torch_sign_mlp(tmp_path, ste, weights, dynamo):
    kw = dict(sizes=(32, 16, 10), ste=ste, weights=weights, bias=True, final_bn=True, ties=False)
    path = E.torch_sign_mlp(tmp_path / "m.onnx", dynamo=dynamo, **kw)
    model = load_checked(path)
    types = [t for _, t in ops(model)]
    assert types[:2] == ["Sub", "Sign"] or types[:3] == ["Constant", "Sub", "Sign"]  # ternary input
    act = {"sign": ["Sign"], "ste_add": ["Sign", "Sub", "Add"], "where": ["GreaterOrEqual", "Where"]}[ste]
    assert all(t in types for t in act)
    if not dynamo:  # dynamo's default optimizer folds BN and Sign(W) into the Gemm (see exporters)
        assert types.count("BatchNormalization") == 3
        assert types.count("Sign") == 1 + (ste != "where") * 2 + (weights == "sign_in_graph") * 3
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1] == 64 and isinstance(dims[0], str)  # dynamic batch

    x = digits_like(50)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, {"input": x})
    with torch.no_grad():
        expected = E.build_torch_sign_mlp(**kw)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_torch_sign_mlp_dynamo_unoptimized_keeps_bn(tmp_path):
    path = E.torch_sign_mlp(tmp_path / "m.onnx", dynamo=True, optimize=False, dynamic_batch=False)
    model = load_checked(path)
    types = [t for _, t in ops(model)]
    assert types.count("BatchNormalization") == 2 and types.count("Sign") == 1 + 2 + 3
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [1, 64]


def test_torch_sign_mlp_has_ternary_values():
    """The hard cases really occur: Sign(0) on the input, a gamma=beta=0 BN channel (Sign(0) on
    every input) and accumulators exactly at the BN mean (ties)."""
    model = E.build_torch_sign_mlp()
    lin, bn = model.body[0], model.body[1]
    acc, out = [], []
    lin.register_forward_hook(lambda m, i, o: acc.append(o))
    bn.register_forward_hook(lambda m, i, o: out.append(o))
    x = torch.from_numpy(digits_like(200))
    with torch.no_grad():
        model(x)
    assert (torch.sign(x - 0.5) == 0).any()
    assert (out[0][:, 0] == 0).all()
    ties = acc[0] == bn.running_mean
    assert ties[:, 2].any() and ties[:, -1].any()
    assert not ties[:, 1].any()  # random mean elsewhere


# --------------------------------------------------------------------------------------------
# FINN MultiThreshold graph


@pytest.mark.parametrize("input_bits", [1, 8])
def test_finn_multithreshold_mlp(tmp_path, input_bits):
    path = E.finn_multithreshold_mlp(tmp_path / "m.onnx", sizes=(32, 16, 10), input_bits=input_bits)
    model = load_checked(path)
    assert [t for _, t in ops(model)] == ["MultiThreshold", "MatMul"] * 3 + ["Mul", "Add"]
    mts = [n for n in model.graph.node if n.op_type == "MultiThreshold"]
    assert {n.domain for n in mts} == {QONNX}
    assert all(attrs(n) == {"out_dtype": b"BIPOLAR", "out_scale": 2.0, "out_bias": -1.0} for n in mts[1:])
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    assert inits["T_1"].shape == (16, 1) and inits["W_1"].shape == (32, 16)
    assert set(np.unique(inits["W_0"])) == {-1.0, 1.0}
    t = inits["T_1"].ravel()
    assert (t == np.round(t)).sum() >= 2 and (t != np.round(t)).sum() >= 2
    annotated = {a.tensor_name for a in model.graph.quantization_annotation}
    assert {"W_0", "act_1"} <= annotated

    out = run_reference(model, digits_like(10))
    assert out.shape == (10, 10) and np.isfinite(out).all()
    # hidden activations are bipolar
    hidden = onnx.helper.make_tensor_value_info("act_1", onnx.TensorProto.FLOAT, None)
    model.graph.output.append(hidden)
    sess = ReferenceEvaluator(model, new_ops=QONNX_OPS)
    act = sess.run(["act_1"], {"global_in": digits_like(1)})[0]
    assert set(np.unique(act)) <= {-1.0, 1.0}


# --------------------------------------------------------------------------------------------
# data


def test_load_digits_split():
    x_tr, y_tr, x_te, y_te = E.load_digits_split(seed=0)
    assert x_tr.dtype == np.float32 and x_tr.shape[1] == 64 and x_te.shape[1] == 64
    assert len(x_tr) + len(x_te) == 1797 and len(y_tr) == len(x_tr)
    assert x_tr.min() == 0.0 and x_tr.max() == 1.0
    assert set(np.unique(y_te)) == set(range(10))
    again = E.load_digits_split(seed=0)
    assert np.array_equal(again[2], x_te)
