"""Real exports through the whole flow, with and without `channel-reuse`: the simulated RTL
equals the interpreter on every one of 200 vectors (checked inside the testbench), both
variants give identical outputs, and they match the original ONNX model.

Models: TFC/SFC-sized Brevitas MLPs, a torch Sign MLP, a FINN MultiThreshold MLP, and the conv
producers of test_conv (Brevitas CNV-style unpadded and padded, torch Sign + Pad, Larq-style
NHWC with negative-gamma channels and a max pool in front of its batch norm)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from bnnc import driver
from bnnc.original import run_original
from bnnc.passes import DEFAULT_PIPELINE

from tests.models import exporters as ex
from tests.test_conv import CONV_PRODUCERS

VECTORS = 200

MODELS = {
    # TFC and SFC sizes with 8-bit inputs; ties=False because with weight scale 0.1 the original's
    # float32 sums are not exact, so at an exact BatchNorm tie its sign is rounding noise.
    "brevitas-tfc-784-64-64-64-10": lambda p: ex.brevitas_mlp(p, sizes=(64, 64, 64, 10), in_features=784, ties=False),
    "brevitas-sfc-784-256-256-256-10": lambda p: ex.brevitas_mlp(p, sizes=(256, 256, 256, 10), in_features=784, ties=False),
    # FINN's bnn_pynq FC with 1-bit input: 2x - 1, then a bipolar input quantizer (pixels at 0.5)
    "brevitas-tfc-binarized-input": lambda p: ex.brevitas_mlp(p, sizes=(64, 64, 64, 10), in_features=784,
                                                              input_quant="bipolar-centred", ties=False),
    # the same 8-bit-input Brevitas flow on a design small enough for the default run
    "brevitas-mlp-64-32-32-10": lambda p: ex.brevitas_mlp(p, sizes=(32, 32, 10), in_features=64, ties=False),
    # 32-wide hidden layers: at 64 their four unrolled designs were a fifth of the default run's
    # Verilator compile time on an empty simulation cache
    "torch-sign-ternary-input": lambda p: ex.torch_sign_mlp(p, sizes=(32, 32, 10), ste="sign"),
    "finn-multithreshold": lambda p: ex.finn_multithreshold_mlp(p, sizes=(32, 32, 10), input_bits=8),
    **{f"conv-{name}": build for name, build in CONV_PRODUCERS.items()},
}


def samples(compiled, n):
    """Half over the input quantizer's range (its extremes included), half uniform floats."""
    shape = compiled.source.inputs[0][1].shape
    rng = np.random.default_rng(7)
    return np.concatenate([driver.sample_inputs(compiled.source, n // 2),
                           rng.random((n - n // 2,) + shape).astype(np.float32)])


# Slow tests, all of them (CI runs them after the default run): two unrolled designs (plain and
# reuse) each, mostly Verilator compiling them -- on a loaded 2-core machine the SFC took 24 of the
# suite's minutes and each TFC about 8. The default run covers the same flows with fewer vectors or
# smaller designs: every producer here through RTL with reuse (test_verilog.py's
# test_exported_model), the bundled MLP and conv examples against the original ONNX model on 200
# samples in RTL and HLS (test_cli.py's test_verify_table, test_digits_cnv.py).
SLOW = set(MODELS)


@pytest.mark.parametrize("model", [pytest.param(m, marks=pytest.mark.slow) if m in SLOW else m for m in sorted(MODELS)])
def test_rtl_equals_interpreter_and_original_with_and_without_reuse(tmp_path, model):
    path = MODELS[model](tmp_path / "m.onnx")
    plain = driver.compile_model(path, driver.Options())
    reused = driver.compile_model(path, driver.Options(pipeline=DEFAULT_PIPELINE + ",channel-reuse"))
    assert any(layer.reuse is not None for layer in driver.hardware(reused).layers if hasattr(layer, "reuse"))
    x = samples(plain, VECTORS)
    reference = driver.execute(plain, x, "interp")
    # execute() hands the expected interpreter outputs to the testbench, which asserts each one
    outputs = {name: driver.execute(c, x, "rtl", tmp_path / name) for name, c in (("plain", plain), ("reuse", reused))}
    np.testing.assert_array_equal(outputs["plain"], reference)
    np.testing.assert_array_equal(outputs["reuse"], outputs["plain"])

    rtl = outputs["plain"]
    original = run_original(onnx.load(path), x).reshape(rtl.shape).astype(np.float64)
    bound = driver.error_bound(plain.graph)
    np.testing.assert_allclose(rtl, original, rtol=1e-5, atol=bound + 1e-6)
    top = original.max(axis=1)
    picked = original[np.arange(len(x)), rtl.argmax(axis=1)]
    assert np.all(picked >= top - 2 * (bound + 1e-5 * np.abs(top).clip(1)))  # argmax, up to exact ties
