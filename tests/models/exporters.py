"""Build small binarized networks with the real tools and export them to ONNX.

Used by the tests (writing into a tmp dir) and by the examples. Every builder:
- is deterministic for a given ``seed`` (module init runs under a forked, seeded torch RNG),
- gives BatchNorm layers random, non-trivial statistics, including the cases a threshold folder
  must get right (see DESIGN.md section 3): negative gammas, one gamma exactly 0 and BN channels
  whose threshold lies exactly on a reachable accumulator value (a tie),
- calls ``model.eval()`` before exporting and returns ``path``.

Nothing here trains or downloads anything; ``load_digits_split`` uses the copy of the digits data
set that ships inside scikit-learn.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

__all__ = [
    "TensorNorm",
    "brevitas_mlp",
    "torch_sign_mlp",
    "build_brevitas_mlp",
    "build_torch_sign_mlp",
    "finn_multithreshold_mlp",
    "load_digits_split",
    "randomize_bn",
    "QONNX_DOMAIN",
]

QONNX_DOMAIN = "qonnx.custom_op.general"


# --------------------------------------------------------------------------------------------
# shared helpers


def _rng(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@torch.no_grad()
def randomize_bn(bn, gen: torch.Generator, fan_in: int, w_scale: float, zero_beta: bool,
                 ties: bool = True) -> list[int]:
    """Give ``bn`` (a BatchNorm1d) random eval-mode statistics.

    The accumulator feeding the BN is a sum of ``fan_in`` products of +-w_scale with +-1 (or 0)
    inputs, so its natural spread is w_scale*sqrt(fan_in); mean/var are drawn on that scale so
    that the folded thresholds land inside the reachable range.

    Hard cases, placed on fixed channels so tests can find them:
    - channel 0: gamma == 0 exactly (constant output); beta[0] == 0 when ``zero_beta`` (the
      output is then exactly 0 before the sign: BipolarQuant gives +1, ONNX Sign gives 0);
    - every third channel from 1 on: negative gamma;
    - channel 2 (and the last one): beta == 0 and running_mean on the accumulator grid
      w_scale*(fan_in % 2 + 2m), so with +-1 inputs x == mean is reachable (an exact tie).
    Returns the tie channels (none when ``ties`` is False). Float runtimes disagree on a tie:
    at x == mean one returns exactly 0 and another +-1 ulp (seen: onnxruntime 1.31 gives 0, torch
    2.13's CPU BatchNorm often does not), so Sign/Where downstream differ on tie inputs. Exact
    arithmetic says 0. Use ``ties=False`` when comparing float runtimes with each other.
    """
    n = bn.running_mean.numel()
    spread = w_scale * math.sqrt(fan_in)
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(n, generator=gen)  # noqa: E731
    gamma = u(0.5, 1.5)
    gamma[1::3] *= -1.0
    beta = 0.5 * torch.randn(n, generator=gen)
    mean = 0.5 * spread * torch.randn(n, generator=gen)
    var = spread**2 * u(0.5, 2.0)
    ties = sorted({2, n - 1}) if (ties and n > 2) else []
    for c in ties:
        m = int(torch.randint(-2, 3, (1,), generator=gen))
        beta[c] = 0.0
        mean[c] = w_scale * (fan_in % 2 + 2 * m)
    gamma[0] = 0.0
    if zero_beta:
        beta[0] = 0.0
    bn.weight.copy_(gamma)
    bn.bias.copy_(beta)
    bn.running_mean.copy_(mean)
    bn.running_var.copy_(var)
    return ties


class TensorNorm(nn.Module):
    """FINN's TensorNorm (brevitas_examples/bnn_pynq): a BatchNorm with one scalar for all channels.

    Eval: y = (x - running_mean) / sqrt(running_var + eps) * weight + bias; training uses the
    batch statistics and updates the running ones, like BatchNorm.
    """

    def __init__(self, eps: float = 1e-4, momentum: float = 0.1):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(1))
        self.bias = nn.Parameter(torch.zeros(1))
        self.register_buffer("running_mean", torch.zeros(1))
        self.register_buffer("running_var", torch.ones(1))

    def forward(self, x):
        if self.training:
            mean, var = x.mean(), x.var(unbiased=False)
            with torch.no_grad():
                self.running_mean.lerp_(mean.reshape(1), self.momentum)
                self.running_var.lerp_(x.var(unbiased=True).reshape(1), self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        return (x - mean) / (var + self.eps).pow(0.5) * self.weight + self.bias


class Centre(nn.Module):
    """x -> 2x - 1, as FINN's bnn_pynq FC.forward does before its input quantizer: [0, 1] pixels
    become [-1, 1], so a bipolar input quantizer thresholds them at 0.5."""

    def forward(self, x):
        return 2.0 * x - 1.0


@contextlib.contextmanager
def _quiet():
    """Silence the exporters' warnings, log lines and the dynamo exporter's progress prints."""
    log = logging.getLogger("torch.onnx")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)


def _prepare(path) -> str:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return str(path)


# --------------------------------------------------------------------------------------------
# 1. Brevitas (QONNX)


def brevitas_input_quant(kind: str):
    from brevitas.nn import QuantIdentity
    from brevitas.quant import (
        Int8ActPerTensorFloatMinMaxInit,
        SignedBinaryActPerTensorConst,
        Uint8ActPerTensorFloatMaxInit,
    )

    if kind == "uint8":  # inputs in [0, 1]: scale 1/255 (learned, initialised from max_val)
        return QuantIdentity(act_quant=Uint8ActPerTensorFloatMaxInit, max_val=1.0)
    if kind == "int8":  # FINN-style inputs in [-1, 1): scale 1/128
        return QuantIdentity(act_quant=Int8ActPerTensorFloatMinMaxInit, min_val=-1.0, max_val=1.0)
    if kind == "bipolar":  # FINN TFC/SFC as published (IN_BIT_WIDTH = 1)
        return QuantIdentity(act_quant=SignedBinaryActPerTensorConst)
    if kind == "bipolar-centred":  # the same after FC.forward's 2x - 1: Mul, Sub, BipolarQuant
        return nn.Sequential(Centre(), QuantIdentity(act_quant=SignedBinaryActPerTensorConst))
    raise ValueError(f"input_quant must be 'uint8', 'int8', 'bipolar' or 'bipolar-centred', not {kind!r}")


def build_brevitas_mlp(
    sizes=(64, 64, 64, 10),
    in_features=64,
    weight_scale=None,
    input_quant="uint8",
    final="tensornorm",
    seed=0,
    randomize=True,
    zero_beta=True,
    ties=True,
) -> nn.Sequential:
    """The FINN TFC/SFC/LFC layer stack (brevitas_examples/bnn_pynq/models/FC.py) without dropout.

    QuantIdentity(8 bit) -> [QuantLinear(1-bit w, no bias) -> BatchNorm1d -> QuantIdentity(bipolar)]*
    -> QuantLinear(1-bit w) -> TensorNorm (``final="tensornorm"``) or nothing (``final=None``).
    ``weight_scale=None`` keeps Brevitas' default binary weight scale (0.1).
    ``randomize=False`` leaves the BN/TensorNorm at their defaults (for training).
    """
    from brevitas.nn import QuantIdentity, QuantLinear
    from brevitas.quant import SignedBinaryActPerTensorConst, SignedBinaryWeightPerTensorConst

    wq = {"weight_quant": SignedBinaryWeightPerTensorConst}
    if weight_scale is not None:
        wq["weight_scaling_const"] = float(weight_scale)  # overrides the injector's 0.1
    ws = 0.1 if weight_scale is None else float(weight_scale)
    gen = _rng(seed + 1)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        layers = [brevitas_input_quant(input_quant)]
        fan_in = in_features
        for i, out in enumerate(sizes[:-1]):
            bn = nn.BatchNorm1d(out)
            if randomize:
                randomize_bn(bn, gen, fan_in, ws, zero_beta=zero_beta and i == 0, ties=ties)
            layers += [
                QuantLinear(fan_in, out, bias=False, **wq),
                bn,
                QuantIdentity(act_quant=SignedBinaryActPerTensorConst),
            ]
            fan_in = out
        layers.append(QuantLinear(fan_in, sizes[-1], bias=False, **wq))
        if final == "tensornorm":
            tn = TensorNorm()
            if randomize:
                with torch.no_grad():  # positive scale keeps argmax; mean/bias are arbitrary
                    tn.weight.fill_(0.5 + float(torch.rand(1, generator=gen)))
                    tn.bias.fill_(float(torch.randn(1, generator=gen)))
                    tn.running_mean.fill_(ws * float(torch.randn(1, generator=gen)))
                    tn.running_var.fill_(ws**2 * fan_in * (0.5 + float(torch.rand(1, generator=gen))))
            layers.append(tn)
        elif final is not None:
            raise ValueError(f"final must be 'tensornorm' or None, not {final!r}")
    return nn.Sequential(*layers).eval()


def export_brevitas(model: nn.Module, path, in_features: int, dynamo: bool = False) -> str:
    """``brevitas.export.export_qonnx`` on a (1, in_features) float input.

    Brevitas 0.13.4 picks the exporter from a ``dynamo`` kwarg (default True on torch >= 2.9):
    False -> QONNXManager (torch.onnx.export TorchScript + onnxoptimizer passes),
    True  -> QONNXDynamoManager (torch.export + onnxscript, which must be installed).
    """
    from brevitas.export import export_qonnx

    path = _prepare(path)
    model.eval()
    kwargs = {"dynamo": dynamo}
    if dynamo:
        kwargs["optimize"] = True  # what Brevitas recommends (it warns otherwise)
    with _quiet():
        export_qonnx(model, input_t=torch.zeros(1, in_features), export_path=path, **kwargs)
    return path


def brevitas_mlp(
    path,
    sizes=(64, 64, 64, 10),
    in_features=64,
    export="qonnx",
    dynamo=False,
    weight_scale=None,
    seed=0,
    input_quant="uint8",
    final="tensornorm",
    zero_beta=True,
    ties=True,
) -> str:
    """FINN-TFC-like Brevitas BNN exported to QONNX. TFC: in_features=784, sizes=(64, 64, 64, 10);
    SFC: sizes=(256, 256, 256, 10). See ``build_brevitas_mlp`` for the options."""
    if export != "qonnx":
        # Brevitas' QCDQ exporter asserts 'Binary quant not supported' for 1-bit quantizers.
        raise ValueError("only export='qonnx' exists for binary Brevitas models")
    model = build_brevitas_mlp(sizes, in_features, weight_scale, input_quant, final, seed,
                               zero_beta=zero_beta, ties=ties)
    return export_brevitas(model, path, in_features, dynamo=dynamo)


# --------------------------------------------------------------------------------------------
# 2. Plain torch with Sign / STE


class _PM1Linear(nn.Linear):
    """Linear with +-1 weights: Sign(W) inside the graph, or W stored already as +-1."""

    def __init__(self, fan_in, out, bias, sign_in_graph):
        super().__init__(fan_in, out, bias=bias)
        self.sign_in_graph = sign_in_graph
        with torch.no_grad():
            if not sign_in_graph:
                self.weight.copy_(torch.where(self.weight >= 0, 1.0, -1.0))
            if bias:  # multiples of 1/8: every partial sum is exact in float32, whatever the
                self.bias.copy_(torch.round(self.bias * 8) / 8)  # order (ties stay ties)

    def forward(self, x):
        w = torch.sign(self.weight) if self.sign_in_graph else self.weight
        return nn.functional.linear(x, w, self.bias)


class _Binarize(nn.Module):
    def __init__(self, ste):
        super().__init__()
        if ste not in ("sign", "ste_add", "where"):
            raise ValueError(f"ste must be 'sign', 'ste_add' or 'where', not {ste!r}")
        self.ste = ste

    def forward(self, x):
        if self.ste == "sign":  # ONNX Sign: Sign(0) = 0
            return torch.sign(x)
        if self.ste == "ste_add":  # straight-through estimator: Add(x, Sub(Sign(x), x))
            return x + (torch.sign(x) - x).detach()
        return torch.where(x >= 0, 1.0, -1.0)  # Where(GreaterOrEqual(x, 0), 1, -1): 0 -> +1


class SignMLP(nn.Module):
    def __init__(self, sizes, in_features, ste, weights, bias, final_bn):
        super().__init__()
        sign_in_graph = {"sign_in_graph": True, "pm1": False}[weights]
        layers, fan_in = [], in_features
        for out in sizes[:-1]:
            layers += [_PM1Linear(fan_in, out, bias, sign_in_graph), nn.BatchNorm1d(out), _Binarize(ste)]
            fan_in = out
        layers.append(_PM1Linear(fan_in, sizes[-1], bias, sign_in_graph))
        if final_bn:
            layers.append(nn.BatchNorm1d(sizes[-1]))
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        # Ternary input: Sign(x - 0.5) is 0 where x == 0.5 exactly, so layer 1 sees {-1, 0, +1}.
        return self.body(torch.sign(x - 0.5))


def build_torch_sign_mlp(sizes=(32, 32, 10), in_features=64, ste="sign", weights="sign_in_graph",
                         bias=False, final_bn=False, seed=0, zero_beta=True, ties=True) -> SignMLP:
    """The eval-mode torch model behind ``torch_sign_mlp``."""
    gen = _rng(seed + 1)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = SignMLP(sizes, in_features, ste, weights, bias, final_bn)
    lin = None
    for m in model.modules():  # modules() walks in layer order: each BN follows its Linear
        if isinstance(m, _PM1Linear):
            lin = m
        if isinstance(m, nn.BatchNorm1d):
            ties = randomize_bn(m, gen, lin.in_features, 1.0, zero_beta and lin is model.body[0], ties)
            if lin.bias is not None:  # the tie is at acc + b == mean + b
                with torch.no_grad():
                    m.running_mean[ties] += lin.bias[ties]
    return model.eval()


def torch_sign_mlp(
    path,
    sizes=(32, 32, 10),
    in_features=64,
    ste="sign",
    seed=0,
    dynamic_batch=True,
    dynamo=False,
    weights="sign_in_graph",
    bias=False,
    final_bn=False,
    zero_beta=True,
    ties=True,
    optimize=True,
) -> str:
    """Plain torch BNN (no quantization library) exported with ``torch.onnx.export``.

    Input "input" [batch, in_features] float, output "output" [batch, sizes[-1]] float.
    ``weights="sign_in_graph"`` exports the latent float weights with a Sign node on each
    (constant folding is switched off so Sign stays in the graph); ``"pm1"`` stores +-1 values.
    Biases (``bias=True``) are random multiples of 1/8; the BNs are randomized with
    ``randomize_bn`` (weight scale 1: the accumulator is an exact integer (+ bias) in float, so
    the tie channels are reached exactly).
    ``dynamo=True`` uses torch.export; its default ``optimize=True`` folds Sign(W) and every
    BatchNorm into the Gemm weights/bias (rows become +-gamma/sigma, a gamma=0 row becomes all
    zeros); ``optimize=False`` keeps Sign and BatchNormalization nodes.
    """
    path = _prepare(path)
    model = build_torch_sign_mlp(sizes, in_features, ste, weights, bias, final_bn, seed, zero_beta, ties)
    # batch 2 when dynamic: torch.export specialises a batch of 1 to a constant
    x = torch.rand(2 if dynamic_batch else 1, in_features, generator=_rng(seed + 2))
    kwargs = dict(input_names=["input"], output_names=["output"], dynamo=dynamo)
    if dynamic_batch:
        if dynamo:
            kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch")},)
        else:
            kwargs["dynamic_axes"] = {"input": {0: "batch"}, "output": {0: "batch"}}
    if dynamo:
        kwargs["optimize"] = optimize
    else:
        kwargs["opset_version"] = 17
        kwargs["do_constant_folding"] = weights == "pm1"  # folding would turn Sign(W) into W'
    with _quiet():
        torch.onnx.export(model, (x,), path, **kwargs)
    return path


# --------------------------------------------------------------------------------------------
# 3. FINN-ONNX (streamlined) MultiThreshold graph, hand-built


def _datatype_annotations(dtypes):
    """qonnx keeps datatypes as graph.quantization_annotation entries keyed "finn_datatype"."""
    anns = []
    for name, dtype in dtypes.items():
        ann = onnx.TensorAnnotation(tensor_name=name)
        ann.quant_parameter_tensor_names.append(onnx.StringStringEntryProto(key="finn_datatype", value=dtype))
        anns.append(ann)
    return anns


def finn_multithreshold_mlp(path, sizes=(32, 32, 10), in_features=64, seed=0, input_bits=1) -> str:
    """A graph shaped like FINN's streamlined TFC-w1a1 (MatMul / MultiThreshold chain).

    input "global_in" float [1, in_features] with values in [0, 1]
      -> MultiThreshold (input quantizer): input_bits=1 -> one threshold 0.5 per channel,
         out_scale 2, out_bias -1, BIPOLAR;  input_bits=8 -> 255 shared thresholds (k-0.5)/255,
         UINT8 levels 0..255 (no scale/bias)
      -> [MatMul(W in {-1,+1}, shape [in, out]) -> MultiThreshold(T [out, 1], BIPOLAR)]*
      -> MatMul -> Mul(scalar) -> Add(scalar) -> "global_out" float [1, sizes[-1]].
    Hidden thresholds mix non-integers, reachable integers (exact ties: x >= t counts),
    unreachable integers and out-of-range values (constant channels).
    """
    path = _prepare(path)
    rs = np.random.RandomState(seed)
    nodes, inits, dtypes = [], [], {}

    def init(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name))
        return name

    def multithreshold(x, thresholds, y, dtype, scale=None, bias=None):
        attrs = {"out_dtype": dtype}
        if scale is not None:
            attrs.update(out_scale=float(scale), out_bias=float(bias))
        nodes.append(helper.make_node("MultiThreshold", [x, thresholds], [y], name=f"MultiThreshold_{len(nodes)}",
                                      domain=QONNX_DOMAIN, **attrs))

    if input_bits == 1:
        multithreshold("global_in", init("T_in", np.full((in_features, 1), 0.5)), "act_0", "BIPOLAR", 2.0, -1.0)
        dtypes["act_0"] = "BIPOLAR"
        lo, hi = -in_features, in_features  # accumulator range of the first MatMul
    elif input_bits == 8:
        multithreshold("global_in", init("T_in", ((np.arange(1, 256) - 0.5) / 255)[None, :]), "act_0", "UINT8")
        dtypes["act_0"] = "UINT8"
        lo, hi = -255 * in_features, 255 * in_features
    else:
        raise ValueError("input_bits must be 1 or 8")

    fan_in, x = in_features, "act_0"
    for i, out in enumerate(sizes):
        w = init(f"W_{i}", np.where(rs.rand(fan_in, out) < 0.5, -1.0, 1.0))
        dtypes[w] = "BIPOLAR"
        acc = f"acc_{i}"
        nodes.append(helper.make_node("MatMul", [x, w], [acc], name=f"MatMul_{i}"))
        if i == len(sizes) - 1:
            break
        if i > 0:
            lo, hi = -fan_in, fan_in
        # random thresholds in the middle of the range; some exact integers of the accumulator's parity
        # (reachable: ties), some of the other parity, and one channel each below/above the range.
        spread = math.sqrt(fan_in) * (255 if (i == 0 and input_bits == 8) else 1)
        t = rs.randn(out) * spread * 0.5
        t[0::4] = np.round(t[0::4])  # integers
        if i > 0 or input_bits == 1:
            t[0::8] += (t[0::8] - fan_in) % 2  # force parity of fan_in on half of them: reachable ties
        t[1 % out] = lo - 1.5  # always +1
        t[2 % out] = hi + 1.0  # always -1
        y = f"act_{i + 1}"
        multithreshold(acc, init(f"T_{i}", t[:, None]), y, "BIPOLAR", 2.0, -1.0)
        dtypes[y] = "BIPOLAR"
        fan_in, x = out, y

    # FINN leaves the final TensorNorm / scaling as scalar Mul and Add after the last MatMul.
    mul = float(np.float32(0.5 + rs.rand()))
    add = float(np.float32(rs.randn()))
    nodes.append(helper.make_node("Mul", [acc, init("out_scale", mul)], ["scaled"], name="Mul_0"))
    nodes.append(helper.make_node("Add", ["scaled", init("out_bias", add)], ["global_out"], name="Add_0"))

    graph = helper.make_graph(
        nodes,
        "finn_tfc_like",
        [helper.make_tensor_value_info("global_in", TensorProto.FLOAT, [1, in_features])],
        [helper.make_tensor_value_info("global_out", TensorProto.FLOAT, [1, sizes[-1]])],
        initializer=inits,
    )
    graph.quantization_annotation.extend(_datatype_annotations(dtypes))
    model = helper.make_model(
        graph,
        producer_name="bnnc-tests",
        opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(QONNX_DOMAIN, 1)],
    )
    model.ir_version = 8  # what FINN/qonnx tooling writes; also readable by onnxruntime
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


# --------------------------------------------------------------------------------------------
# 4. Data


def load_digits_split(seed=0, test_size=0.25):
    """sklearn's bundled 8x8 digits: (x_train, y_train, x_test, y_test), x float32 in [0, 1]
    (pixel / 16), shape (N, 64); y int64. Stratified, seeded split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    y = data.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_size, random_state=seed, stratify=y)
    return x_tr, y_tr, x_te, y_te
