"""FINN's own bnn_pynq models (brevitas_examples inside the Brevitas wheel), exported with
export_qonnx on both export paths: within the stated bound of the original ONNX, and the
simulated HLS and RTL equal to the interpreter. Random weights and BatchNorm statistics with
ties on the rounding boundaries (tests/models/bnn_pynq.py); small ones by default, the big ones
behind the slow marker."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from bnnc import driver
from bnnc.original import run_original

from tests.models.bnn_pynq import bnn_pynq

SMALL = ["tfc_1w1a", "tfc_1w2a"]
BIG = ["tfc_2w2a", "sfc_1w1a", "sfc_1w2a", "sfc_2w2a", "lfc_1w1a", "lfc_1w2a", "cnv_1w1a", "cnv_1w2a", "cnv_2w2a"]


def samples(compiled, n: int) -> np.ndarray:
    """Pixels in [0, 1] (the models compute 2x - 1 first), some exactly on the input quantizer's
    rounding boundaries, plus the input quantizer's whole range."""
    shape = compiled.source.inputs[0][1].shape
    rng = np.random.default_rng(5)
    x = rng.random((n,) + shape).astype(np.float32)
    x[::3].flat[::5] = 0.25  # 2x - 1 = -0.5: a tie of a 2-bit input quantizer
    x[1] = 0.0
    x[2] = 1.0
    return x


def check(tmp_path, name, dynamo, n_hls, n_rtl):
    path = bnn_pynq(tmp_path / f"{name}.onnx", name, dynamo=dynamo)
    compiled = driver.compile_model(path, driver.Options(targets=("verilog", "hls")))
    x = samples(compiled, max(n_hls, n_rtl, 32))
    reference = driver.execute(compiled, x, "interp")
    original = run_original(onnx.load(path), x).reshape(reference.shape)
    np.testing.assert_allclose(reference, original, rtol=1e-5, atol=driver.error_bound(compiled.graph) + 1e-6)
    if n_hls:
        np.testing.assert_array_equal(driver.execute(compiled, x[:n_hls], "hls", tmp_path / "hls"), reference[:n_hls])
    if n_rtl:
        np.testing.assert_array_equal(driver.execute(compiled, x[:n_rtl], "rtl", tmp_path / "rtl"), reference[:n_rtl])


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
@pytest.mark.parametrize("name", SMALL)
def test_small_models_in_hls(tmp_path, name, dynamo):
    check(tmp_path, name, dynamo, n_hls=64, n_rtl=0)


@pytest.mark.slow
@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
@pytest.mark.parametrize("name", SMALL)
def test_small_models_in_rtl(tmp_path, name, dynamo):
    check(tmp_path, name, dynamo, n_hls=0, n_rtl=16)


@pytest.mark.slow
@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
@pytest.mark.parametrize("name", BIG)
def test_big_models(tmp_path, name, dynamo):
    check(tmp_path, name, dynamo, n_hls=64, n_rtl=2)
