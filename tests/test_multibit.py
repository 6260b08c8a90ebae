"""Multi-bit activations between layers: a QONNX Quant of 2-4 bits after a BatchNorm becomes a
threshold with up to 2^n - 1 integer levels per channel, exact for every sign of gamma, gamma = 0
and inputs that land exactly on a rounding boundary.

The models are written so that the original computes exactly in float32 (integer accumulators,
dyadic BatchNorm parameters, var + eps = 1/4), so the interpreter must equal it bit for bit.
"""
from __future__ import annotations

import itertools

import numpy as np
import onnx
import pytest
from bnnc import driver
from bnnc.ir.ops import Threshold
from bnnc.original import run_original

from tests.onnx_builders import quant_bn_mlp

K, C = 6, 12
EPS = 2.0 ** -10


def build(path, bits, signed, narrow, rounding, scale=0.5, zero_point=0.0, seed=0):
    """Channel c's BatchNorm output at x = mean is a rounding boundary of the quantizer (k - 1/2
    on even channels, k on odd ones): reachable ties for every rounding mode."""
    rng = np.random.default_rng(seed)
    lo = -(1 << (bits - 1)) + narrow if signed else 0
    hi = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1 - narrow
    gamma = rng.choice([-1.25, -0.75, -0.5, 0.25, 0.5, 1.0, 1.5], C)
    gamma[0] = 0.0
    gamma[1::3] = -np.abs(gamma[1::3])
    boundary = rng.integers(lo + 1, hi + 1, C) - np.where(np.arange(C) % 2 == 0, 0.5, 0.0)
    bn = dict(gamma=gamma, beta=(boundary - zero_point) * scale, mean=rng.integers(-3, 4, C),
              var=np.full(C, 0.25 - EPS), eps=EPS)
    w0 = rng.choice([-1.0, 1.0], (K, C))
    w1 = rng.choice([-1.0, 1.0], (C, 5))
    act = dict(bits=bits, scale=scale, zero_point=zero_point, signed=signed, narrow=narrow, rounding_mode=rounding)
    return quant_bn_mlp(path, w0, bn, w1, act), bn


def inputs(n, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.6, 1.6, (n, K)).astype(np.float32)
    x[::7, 0] = 0.5  # the input quantizer's own tie (half to even: 0)
    return x


CASES = [(bits, signed, narrow, rounding)
         for bits, signed, narrow, rounding in itertools.product((2, 3, 4), (True, False), (False, True),
                                                                 ("ROUND", "FLOOR", "CEIL", "ROUND_TO_ZERO"))]


@pytest.mark.parametrize("bits, signed, narrow, rounding", CASES,
                         ids=[f"{b}bit-{'s' if s else 'u'}{'-narrow' if n else ''}-{r}" for b, s, n, r in CASES])
def test_quant_between_layers_equals_the_original(tmp_path, bits, signed, narrow, rounding):
    path, bn = build(tmp_path / "m.onnx", bits, signed, narrow, rounding)
    x = inputs(600)
    compiled = driver.compile_model(path, driver.Options(), samples=x[:64])  # every pass checked
    ours = driver.execute(compiled, x, "interp")
    np.testing.assert_array_equal(ours, run_original(onnx.load(path), x))

    acc = np.round(x).clip(-1, 1) @ np.asarray(onnx.numpy_helper.to_array(onnx.load(path).graph.initializer[0]))
    assert (acc == bn["mean"]).any(axis=0)[2:].sum() >= 6  # ties on the boundaries were reached
    levels = 1 << bits
    th = [op for op in compiled.graph.ops if isinstance(op, Threshold) and not compiled.graph.on_host(op)]
    assert len(th) == 1 and th[0].integer and th[0].thresholds.shape[1] <= levels - 1 - narrow


@pytest.mark.parametrize("bits, signed, narrow, rounding", [(2, True, True, "ROUND"), (3, False, False, "ROUND"),
                                                           (4, True, False, "FLOOR")])
def test_quant_between_layers_in_hls(tmp_path, bits, signed, narrow, rounding):
    path, _ = build(tmp_path / "m.onnx", bits, signed, narrow, rounding, scale=0.25, zero_point=0.0)
    compiled = driver.compile_model(path, driver.Options(targets=("verilog", "hls")))
    x = inputs(200)
    np.testing.assert_array_equal(driver.execute(compiled, x, "hls", tmp_path), driver.execute(compiled, x, "interp"))


def test_quant_between_layers_in_rtl(tmp_path):
    path, _ = build(tmp_path / "m.onnx", 3, True, False, "ROUND")
    compiled = driver.compile_model(path, driver.Options())
    x = inputs(100)
    np.testing.assert_array_equal(driver.execute(compiled, x, "rtl", tmp_path), driver.execute(compiled, x, "interp"))


def test_manifest_and_rtl_count_products_not_xnors(tmp_path):
    """A ternary-weight layer is built as x*w products; the manifest says so, and the emitted
    RTL instantiates 2-bit-weight dot products for exactly those layers."""
    import re

    from bnnc.backends.verilog import emit

    from tests.models.finn_forms import finn_converted_cnv

    path = finn_converted_cnv(tmp_path / "cnv.onnx", weights=(-1.0, 0.0, 1.0))
    compiled = driver.compile_model(path, driver.Options())
    design = driver.hardware(compiled)
    emit(design, tmp_path / "rtl")
    checked = 0
    for layer in driver.manifest(compiled)["hardware"]["layers"]:
        if layer["kind"] not in ("dense", "conv"):
            continue  # a pool
        res = layer["resources"]
        assert res["unit"] == "multiply_add" and res["xnors"] == 0
        module = (tmp_path / "rtl" / f"bnnc_layer{layer['index']}.v").read_text()
        lanes = int(re.search(r"localparam LANES\s*=\s*(\d+)", module).group(1))
        simd = int(re.search(r"localparam SIMD\s*=\s*(\d+)", module).group(1))
        assert ".W_W(2)" in module
        assert res["multiply_terms"] == lanes * simd
        checked += 1
    assert checked == 4  # two convs, two dense layers
