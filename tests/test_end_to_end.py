"""Real exports through the whole flow: simulated RTL equals the interpreter on every one of
200 vectors (checked inside the testbench), and the outputs match the original ONNX model."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from compiler import driver
from compiler.original import run_original
from tests.models import exporters as ex

VECTORS = 200

MODELS = {
    # TFC and SFC sizes with 8-bit inputs; ties=False because with weight scale 0.1 the original's
    # float32 sums are not exact, so at an exact BatchNorm tie its sign is rounding noise.
    "brevitas-tfc-784-64-64-64-10": lambda p: ex.brevitas_mlp(p, sizes=(64, 64, 64, 10), in_features=784, ties=False),
    "brevitas-sfc-784-256-256-256-10": lambda p: ex.brevitas_mlp(p, sizes=(256, 256, 256, 10), in_features=784, ties=False),
    "torch-sign-ternary-input": lambda p: ex.torch_sign_mlp(p, sizes=(64, 64, 10), ste="sign"),
    "finn-multithreshold": lambda p: ex.finn_multithreshold_mlp(p, sizes=(64, 64, 10), input_bits=8),
}


@pytest.mark.parametrize("model", sorted(MODELS))
def test_rtl_equals_interpreter_and_original(tmp_path, model):
    path = MODELS[model](tmp_path / "m.onnx")
    compiled = driver.compile_model(path, driver.Options())
    rng = np.random.default_rng(7)
    shape = compiled.source.inputs[0][1].shape
    x = np.concatenate([driver.sample_inputs(compiled.source, VECTORS // 2),
                        rng.random((VECTORS // 2,) + shape).astype(np.float32)])
    # execute() hands the expected interpreter outputs to the testbench, which asserts each one
    rtl = driver.execute(compiled, x, "rtl", tmp_path / "work")
    reference = driver.execute(compiled, x, "interp")
    np.testing.assert_array_equal(rtl, reference)
    original = run_original(onnx.load(path), x).reshape(rtl.shape).astype(np.float64)
    bound = driver.error_bound(compiled.graph)
    np.testing.assert_allclose(rtl, original, rtol=1e-5, atol=bound + 1e-6)
    top = original.max(axis=1)
    picked = original[np.arange(len(x)), rtl.argmax(axis=1)]
    assert np.all(picked >= top - 2 * (bound + 1e-5 * np.abs(top).clip(1)))  # argmax, up to exact ties
