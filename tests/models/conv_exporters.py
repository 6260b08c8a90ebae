"""Build small convolutional binarized networks and export them to ONNX (the conv companions of
``exporters.py``; same conventions: deterministic per ``seed``, random weights, BatchNorms with
non-trivial statistics incl. negative gammas, eval mode, returns ``path``).

- ``brevitas_cnv`` / ``finn_cnv``: Brevitas QONNX, FINN CNV layer order (pool after the sign).
- ``torch_sign_cnv``: plain torch, explicit zero ``Pad`` nodes, a max pool in front of a BN.
- ``larq_style_cnv``: hand-built graph shaped like tf2onnx's output for a Larq model (NHWC,
  transposes around every conv, ``Pad`` with 1.0, BN as Mul/Add, ``Softmax``).

Each one carries a padding case of DESIGN.md section 4 and the pool/threshold order question
(a max pool in front of a negative-gamma BN does not commute with the sign).
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from tests.models.exporters import (
    _Binarize,
    _PM1Linear,
    _prepare,
    _quiet,
    _rng,
    brevitas_input_quant,
    build_brevitas_mlp,
    randomize_bn,
)

__all__ = [
    "brevitas_cnv",
    "build_brevitas_cnv",
    "finn_cnv",
    "FINN_CNV",
    "torch_sign_cnv",
    "build_torch_sign_cnv",
    "larq_style_cnv",
]

# FINN's CNV (brevitas_examples/bnn_pynq/models/CNV.py): unpadded 3x3 convs, pool after the sign.
FINN_CNV = dict(channels=(64, 64, "M", 128, 128, "M", 256, 256), dense=(512, 512, 10), in_shape=(3, 32, 32))


def _conv_out(size: int, padding: int) -> int:
    return size - 2 + 2 * padding  # 3x3 kernel, stride 1


# --------------------------------------------------------------------------------------------
# 1. Brevitas (QONNX)


def build_brevitas_cnv(
    channels=(16, 16, "M", 32),
    dense=(64, 10),
    in_shape=(3, 16, 16),
    padding=0,
    weight_scale=None,
    input_quant="int8",
    final="tensornorm",
    seed=0,
    ties=True,
) -> nn.Sequential:
    """QuantIdentity(8 bit) -> [QuantConv2d 3x3 (1-bit w, no bias) -> BatchNorm2d -> QuantIdentity
    (bipolar) | 'M' = MaxPool2d(2)]* -> Flatten -> the ``build_brevitas_mlp`` dense stack on ``dense``.

    'M' comes after the bipolar activation, as in FINN CNV. ``padding=1`` pads each conv with
    zeros (Conv pads attribute), which is not a bipolar value. Weight quantizer:
    SignedBinaryWeightPerTensorConst (scale 0.1, or ``weight_scale``); FINN's own CommonWeightQuant
    is the same binary quantizer with scale 1.0.
    """
    from brevitas.nn import QuantConv2d, QuantIdentity
    from brevitas.quant import SignedBinaryActPerTensorConst, SignedBinaryWeightPerTensorConst

    wq = {"weight_quant": SignedBinaryWeightPerTensorConst}
    if weight_scale is not None:
        wq["weight_scaling_const"] = float(weight_scale)
    ws = 0.1 if weight_scale is None else float(weight_scale)
    gen = _rng(seed + 1)
    c, h, w = in_shape
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        layers = [brevitas_input_quant(input_quant)]
        for ch in channels:
            if ch == "M":
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
                continue
            bn = nn.BatchNorm2d(ch, eps=1e-4)  # FINN CNV's eps
            randomize_bn(bn, gen, c * 9, ws, zero_beta=len(layers) == 1, ties=ties)
            layers += [
                QuantConv2d(c, ch, 3, padding=padding, bias=False, **wq),
                bn,
                QuantIdentity(act_quant=SignedBinaryActPerTensorConst),
            ]
            c, h, w = ch, _conv_out(h, padding), _conv_out(w, padding)
    # The dense tail is exactly the FINN FC stack; drop its input quantizer (the conv output is
    # already bipolar). Its own seed keeps it deterministic and independent of the conv part.
    tail = build_brevitas_mlp(dense, c * h * w, weight_scale, "bipolar", final, seed + 1000, ties=ties)
    return nn.Sequential(*layers, nn.Flatten(), *tail[1:]).eval()


def _export_qonnx(model: nn.Module, path, in_shape, dynamo: bool) -> str:
    """``export_qonnx`` on a (1, *in_shape) input (see ``exporters.export_brevitas`` for ``dynamo``)."""
    from brevitas.export import export_qonnx

    path = _prepare(path)
    kwargs = {"dynamo": dynamo}
    if dynamo:
        kwargs["optimize"] = True
    with _quiet():
        export_qonnx(model.eval(), input_t=torch.zeros(1, *in_shape), export_path=path, **kwargs)
    return path


def brevitas_cnv(path, channels=(16, 16, "M", 32), dense=(64, 10), in_shape=(3, 16, 16), padding=0,
                 dynamo=False, seed=0, **kw) -> str:
    """Brevitas conv BNN exported with ``export_qonnx``; ``kw`` goes to ``build_brevitas_cnv``
    (weight_scale, input_quant, final, ties)."""
    model = build_brevitas_cnv(channels, dense, in_shape, padding, seed=seed, **kw)
    return _export_qonnx(model, path, in_shape, dynamo)


def finn_cnv(path, seed=0, dynamo=False) -> str:
    """FINN CNV topology (32x32x3, 64,64,M,128,128,M,256,256 unpadded, FC 512,512,10), random
    weights: for compile-time benchmarks."""
    return brevitas_cnv(path, padding=0, dynamo=dynamo, seed=seed, **FINN_CNV)


# --------------------------------------------------------------------------------------------
# 2. Plain torch with Sign


class _PM1Conv(nn.Conv2d):
    """3x3 conv, +-1 weights (Sign(W) in the graph), behind an explicit zero pad.

    F.pad exports as an ONNX Pad node rather than the Conv's pads attribute: the compiler must
    see that the padded value 0 is not a bipolar bit (DESIGN.md section 4).
    """

    def __init__(self, c_in, c_out):
        super().__init__(c_in, c_out, 3, padding=0, bias=False)

    def forward(self, x):
        return F.conv2d(F.pad(x, (1, 1, 1, 1), value=0.0), torch.sign(self.weight))


class SignCNV(nn.Module):
    """Sign(x - 0.5) -> [Pad -> Conv -> (MaxPool if 'M' follows) -> BN2d -> Sign]* -> Flatten
    -> [Linear(+-1) -> BN1d -> Sign]* -> Linear(+-1).

    The pool sits in front of the BN (not after the sign as in FINN): with a negative gamma,
    max-then-threshold is min-then-threshold in the sign domain, so the order matters.
    """

    def __init__(self, channels, dense, in_shape):
        super().__init__()
        c, h, w = in_shape
        layers = []
        for i, ch in enumerate(channels):
            if ch == "M":
                if i == 0 or channels[i - 1] == "M":
                    raise ValueError("'M' must follow a conv channel count")
                continue
            layers.append(_PM1Conv(c, ch))
            if i + 1 < len(channels) and channels[i + 1] == "M":
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            layers += [nn.BatchNorm2d(ch), _Binarize("sign")]
            c = ch
        layers.append(nn.Flatten())
        fan_in = c * h * w
        for out in dense[:-1]:
            layers += [_PM1Linear(fan_in, out, False, True), nn.BatchNorm1d(out), _Binarize("sign")]
            fan_in = out
        layers.append(_PM1Linear(fan_in, dense[-1], False, True))
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return self.body(torch.sign(x - 0.5))  # ternary input: 0 where x == 0.5 exactly


def build_torch_sign_cnv(channels=(8, "M", 16), dense=(10,), in_shape=(1, 8, 8), seed=0, ties=True) -> SignCNV:
    gen = _rng(seed + 1)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = SignCNV(channels, dense, in_shape)
    fan_in, first = None, True
    for m in model.modules():  # layer order: each BN follows its conv / linear
        if isinstance(m, _PM1Conv):
            fan_in = m.in_channels * 9
        elif isinstance(m, _PM1Linear):
            fan_in = m.in_features
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            # weight scale 1: accumulators are exact integers, so the tie channels are reached
            randomize_bn(m, gen, fan_in, 1.0, zero_beta=first, ties=ties)
            first = False
    return model.eval()


def torch_sign_cnv(path, channels=(8, "M", 16), dense=(10,), in_shape=(1, 8, 8), seed=0, ties=True) -> str:
    """``SignCNV`` exported with torch.onnx.export (TorchScript, opset 17, torch's default
    constant folding). Input "input" [batch, *in_shape], output "output" [batch, dense[-1]],
    dynamic batch. Even with folding, torch 2.13 keeps Sign(W) on the float weights and computes
    each Pad's pads input with a small constant subgraph (Constant -> ConstantOfShape -> Concat
    -> Reshape -> Slice -> Transpose -> Reshape -> Cast): the frontend has to fold it."""
    path = _prepare(path)
    model = build_torch_sign_cnv(channels, dense, in_shape, seed, ties)
    x = torch.rand(2, *in_shape, generator=_rng(seed + 2))
    with _quiet():
        torch.onnx.export(
            model, (x,), path, dynamo=False, opset_version=17,
            input_names=["input"], output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        )
    return path


# --------------------------------------------------------------------------------------------
# 3. Larq, as tf2onnx writes it (hand-built: no TensorFlow here)


def _larq_bn(rs: np.random.RandomState, n: int, fan_in: int):
    """An inference BatchNorm as tf2onnx leaves it, y = x * mul + add, per channel (last axis).

    mul and add are multiples of 1/16, so on integer accumulators x * mul + add is exact in
    float32 and a tie (y == 0, which ste_sign sends to +1) is a tie in every runtime.
    Hard cases on fixed channels: 0 has mul = add = 0 (constant 0 -> +1); every third from 1
    has a negative mul; 2 has its threshold -add/mul on an integer of fan_in's parity (reachable).
    """
    q = lambda a: np.round(np.asarray(a) * 16) / 16  # noqa: E731
    spread = math.sqrt(fan_in)
    mul = np.maximum(q(rs.uniform(0.5, 1.5, n) / spread), 1 / 16)
    mul[1::3] *= -1
    add = q(-mul * rs.randn(n) * 0.5 * spread)
    if n > 2:
        add[2] = -mul[2] * (fan_in % 2 + 2 * rs.randint(-2, 3))
    mul[0] = add[0] = 0.0
    return mul.astype(np.float32), add.astype(np.float32)


def larq_style_cnv(path, seed=0, in_shape_nhwc=(8, 8, 1), channels=(8, 16), dense=10) -> str:
    """A Larq BNN as tf2onnx converts it, built directly with onnx.helper (opset 13).

    Keras model: [QuantConv2D 3x3 (input & kernel ste_sign, no bias) -> (MaxPool2D) -> BN]*
    -> Flatten -> QuantDense (ste_sign) -> BN -> softmax. The first conv has pad_values=1,
    padding="same" (and the max pool, in front of its BN); the others are "valid".
    In ONNX: input "input" float [N, H, W, C] (N symbolic), output "output" [N, dense].
    - ste_sign(x) = Sign(Add(Sign(x), 0.1)): sign with 0 -> +1, on activations (NHWC) and on
      the float kernels; some latent kernel weights are exactly 0 to exercise that.
    - each Conv (pads 0; kernels stored as OIHW initializers, i.e. the transpose of the Keras
      HWIO kernel already folded) sits between Transpose [0,3,1,2] and
      [0,2,3,1]; the pad_values=1 padding is a Pad (constant 1.0, pads as an input) between them.
    - the MaxPool is wrapped in its own transposes (tf2onnx before its transpose optimizer).
    - BN is Mul/Add with (C,) constants broadcasting on the last (NHWC channel) axis.
    - Flatten is Reshape to [-1, H*W*C] in NHWC order; the dense weights are [H*W*C, dense].
    """
    path = _prepare(path)
    rs = np.random.RandomState(seed)
    nodes, inits = [], []

    def const(name, value, dtype=np.float32):
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def node(op, *inputs, out=None, **attrs):
        out = out or f"{op}_{len(nodes)}"
        nodes.append(helper.make_node(op, list(inputs), [out], name=f"{op}_{len(nodes)}", **attrs))
        return out

    point1 = const("ste_sign_0.1", 0.1)

    def ste_sign(x):  # larq.quantizers.ste_sign: tf.sign(tf.sign(x) + 0.1)
        return node("Sign", node("Add", node("Sign", x), point1))

    h, w, c = in_shape_nhwc
    x = "input"
    for i, ch in enumerate(channels):
        kernel = rs.randn(ch, c, 3, 3)
        kernel.flat[::7] = 0.0  # ste_sign(0) = +1
        wk = ste_sign(const(f"conv{i}/kernel", kernel))
        xt = node("Transpose", ste_sign(x), perm=[0, 3, 1, 2])
        if i == 0:  # pad_values=1 (a +1 bit), padding="same"
            pads = const("conv0/pads", [0, 0, 1, 1, 0, 0, 1, 1], np.int64)
            xt = node("Pad", xt, pads, const("conv0/pad_value", 1.0), mode="constant")
        else:
            h, w = h - 2, w - 2
        y = node("Conv", xt, wk, kernel_shape=[3, 3], pads=[0, 0, 0, 0], strides=[1, 1])
        x = node("Transpose", y, perm=[0, 2, 3, 1])
        if i == 0:  # tf2onnx wraps the NHWC pool in its own transposes (its optimizer may cancel them)
            x = node("MaxPool", node("Transpose", x, perm=[0, 3, 1, 2]), kernel_shape=[2, 2], strides=[2, 2])
            x = node("Transpose", x, perm=[0, 2, 3, 1])
            h, w = h // 2, w // 2
        mul, add = _larq_bn(rs, ch, 9 * c)
        x = node("Add", node("Mul", x, const(f"bn{i}/mul", mul)), const(f"bn{i}/add", add))
        c = ch

    flat = h * w * c
    x = node("Reshape", x, const("flatten/shape", [-1, flat], np.int64))
    wd = rs.randn(flat, dense)
    wd.flat[::11] = 0.0
    x = node("MatMul", ste_sign(x), ste_sign(const("dense/kernel", wd)))
    mul, add = _larq_bn(rs, dense, flat)
    x = node("Add", node("Mul", x, const("bn_out/mul", mul)), const("bn_out/add", add))
    node("Softmax", x, out="output", axis=-1)

    graph = helper.make_graph(
        nodes, "larq_style_cnv",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *in_shape_nhwc])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", dense])],
        initializer=inits,
    )
    model = helper.make_model(graph, producer_name="bnnc-tests (tf2onnx-style)",
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)
    return path
