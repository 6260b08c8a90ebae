"""The conv model builders in tests/models/conv_exporters.py produce the graphs they promise.

Standard-op models run in onnxruntime; the Brevitas (QONNX) ones run in onnx.reference with the
QONNX op implementations of test_exporters. Where a torch model exists, the ONNX output is
compared with it (on the tie-free variant: at an exact BN tie float runtimes may disagree).
"""

import time

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

from tests.models import conv_exporters as C
from tests.test_exporters import QONNX, QONNX_OPS, attrs, data_input, load_checked


def types(model):
    return [n.op_type for n in model.graph.node]


def nodes(model, op_type):
    return [n for n in model.graph.node if n.op_type == op_type]


def dims(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def ort_run(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


# --------------------------------------------------------------------------------------------
# Brevitas


@pytest.mark.parametrize("padding", [0, 1])
def test_brevitas_cnv(tmp_path, padding):
    path = C.brevitas_cnv(tmp_path / "m.onnx", padding=padding, ties=False)
    model = load_checked(path)
    t = types(model)
    assert t.count("Conv") == 3 and t.count("MaxPool") == 1 and t.count("MatMul") == 2
    assert t.count("BatchNormalization") == 4 and t.count("BipolarQuant") == 3 + 3 + 2 + 1
    assert {n.domain for n in model.graph.node if "Quant" in n.op_type} == {QONNX}
    assert t[t.index("MaxPool") - 1] == "BipolarQuant"  # FINN order: pool after the sign
    assert all(attrs(n)["pads"] == [padding] * 4 and attrs(n)["group"] == 1 for n in nodes(model, "Conv"))
    assert dims(data_input(model)) == [1, 3, 16, 16] and dims(model.graph.output[0]) == [1, 10]
    gammas = [numpy_helper.to_array(i) for i in model.graph.initializer if i.name.endswith(".weight") and list(i.dims) == [16]]
    assert any((g < 0).any() for g in gammas)

    x = np.random.RandomState(0).uniform(-1, 1, (3, 3, 16, 16)).astype(np.float32)
    sess = ReferenceEvaluator(model, new_ops=QONNX_OPS)
    out = np.concatenate([sess.run(None, {data_input(model).name: row[None]})[0] for row in x])
    with torch.no_grad():
        expected = C.build_brevitas_cnv(padding=padding, ties=False)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_brevitas_cnv_dynamo(tmp_path):
    model = load_checked(C.brevitas_cnv(tmp_path / "m.onnx", dynamo=True))
    t = types(model)
    assert t.count("Conv") == 3 and t.count("Gemm") == 2 and "Reshape" in t  # Flatten -> Reshape [1, 512]


def test_brevitas_cnv_deterministic(tmp_path):
    def weights(path):
        return [numpy_helper.to_array(i) for i in onnx.load(path).graph.initializer]

    kw = dict(channels=(4, "M", 4), dense=(8, 10), in_shape=(1, 8, 8))
    a = weights(C.brevitas_cnv(tmp_path / "a.onnx", seed=5, **kw))
    b = weights(C.brevitas_cnv(tmp_path / "b.onnx", seed=5, **kw))
    c = weights(C.brevitas_cnv(tmp_path / "c.onnx", seed=6, **kw))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


@pytest.mark.slow
def test_finn_cnv(tmp_path):
    start = time.perf_counter()
    model = load_checked(C.finn_cnv(tmp_path / "cnv.onnx"))
    print(f"finn_cnv export + check: {time.perf_counter() - start:.1f} s")
    t = types(model)
    assert t.count("Conv") == 6 and t.count("MaxPool") == 2 and t.count("MatMul") == 3
    assert dims(data_input(model)) == [1, 3, 32, 32]
    matrices = [list(i.dims) for i in model.graph.initializer if len(i.dims) == 2]
    assert matrices == [[512, 256], [512, 512], [10, 512]]  # 256 x 1 x 1 after the last conv


# --------------------------------------------------------------------------------------------
# plain torch


def test_torch_sign_cnv(tmp_path):
    path = C.torch_sign_cnv(tmp_path / "m.onnx", ties=False)
    model = load_checked(path)
    core = [t for t in types(model) if t in ("Sign", "Pad", "Conv", "MaxPool", "BatchNormalization", "Flatten", "MatMul")]
    assert core == ["Sign", "Pad", "Sign", "Conv", "MaxPool", "BatchNormalization", "Sign",
                    "Pad", "Sign", "Conv", "BatchNormalization", "Sign", "Flatten", "Sign", "MatMul"]
    for pad in nodes(model, "Pad"):
        assert attrs(pad)["mode"] == b"constant" and len(pad.input) == 3  # pads, value as inputs
    assert all(attrs(n)["pads"] == [0, 0, 0, 0] for n in nodes(model, "Conv"))
    assert dims(model.graph.input[0])[1:] == [1, 8, 8] and isinstance(dims(model.graph.input[0])[0], str)

    x = (np.random.RandomState(1).randint(0, 5, (7, 1, 8, 8)) / 4).astype(np.float32)  # has 0.5
    with torch.no_grad():
        expected = C.build_torch_sign_cnv(ties=False)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ort_run(path, x), expected, rtol=1e-5, atol=1e-5)


def test_torch_sign_cnv_hard_cases():
    """Pool in front of a BN with negative gammas; exact BN ties after the pool."""
    model = C.build_torch_sign_cnv()
    pool, bn = model.body[1], model.body[2]
    assert isinstance(pool, torch.nn.MaxPool2d) and isinstance(bn, torch.nn.BatchNorm2d)
    assert (bn.weight < 0).sum() >= 2
    seen = []
    pool.register_forward_hook(lambda m, i, o: seen.append(o))
    with torch.no_grad():
        model(torch.from_numpy((np.random.RandomState(2).randint(0, 5, (50, 1, 8, 8)) / 4).astype(np.float32)))
    assert (seen[0][:, 2] == bn.running_mean[2]).any()  # tie channel reached


# --------------------------------------------------------------------------------------------
# Larq, tf2onnx-style


def test_larq_style_cnv(tmp_path):
    path = C.larq_style_cnv(tmp_path / "m.onnx")
    model = load_checked(path)
    t = types(model)
    assert t.count("Conv") == 2 and t.count("MaxPool") == 1 and t[-1] == "Softmax"
    assert model.opset_import[0].version == 13
    perms = [attrs(n)["perm"] for n in nodes(model, "Transpose")]
    assert perms == [[0, 3, 1, 2], [0, 2, 3, 1]] * 3  # conv0, its pool, conv1
    (pad,) = nodes(model, "Pad")
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    assert inits[pad.input[2]] == 1.0 and list(inits[pad.input[1]]) == [0, 0, 1, 1, 0, 0, 1, 1]
    assert (inits["bn0/mul"] < 0).sum() >= 2 and (inits["conv0/kernel"] == 0).any()
    assert t.index("MaxPool") < t.index("Mul")  # pool before the BN
    assert dims(model.graph.input[0]) == ["N", 8, 8, 1] and dims(model.graph.output[0]) == ["N", 10]

    x = np.random.RandomState(0).randn(6, 8, 8, 1).astype(np.float32)
    x[:, ::2, ::2] = 0.0  # ste_sign(0) = +1
    out = ort_run(path, x)
    assert out.shape == (6, 10)
    np.testing.assert_allclose(out.sum(1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(ReferenceEvaluator(model).run(None, {"input": x})[0], out, rtol=1e-5)

    # every binarized activation is +-1 (no Sign(0) = 0 leaks through ste_sign)
    plus_point1 = {n.output[0] for n in nodes(model, "Add") if n.input[1] == "ste_sign_0.1"}
    ste = [n.output[0] for n in nodes(model, "Sign") if n.input[0] in plus_point1]
    assert len(ste) == 6  # 3 activations, 3 kernels
    model.graph.output.extend(onnx.helper.make_tensor_value_info(s, onnx.TensorProto.FLOAT, None) for s in ste)
    for value in ReferenceEvaluator(model).run(ste, {"input": x}):
        assert set(np.unique(value)) <= {-1.0, 1.0}


def test_larq_style_cnv_deterministic(tmp_path):
    a = onnx.load(C.larq_style_cnv(tmp_path / "a.onnx", seed=3)).SerializeToString()
    b = onnx.load(C.larq_style_cnv(tmp_path / "b.onnx", seed=3)).SerializeToString()
    c = onnx.load(C.larq_style_cnv(tmp_path / "c.onnx", seed=4)).SerializeToString()
    assert a == b != c
