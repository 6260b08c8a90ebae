"""FINN-ONNX forms (graphs after FINN's conversion from QONNX) through the whole flow.

The converted CNV's 8-bit input quantizer is a MultiThreshold followed by Add(-128) and
Mul(1/128): fold-constants must merge those affines into the threshold's values and still move
the common scale through the first conv. The original runs in qonnx's own executor.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from bnnc import driver
from bnnc.original import ORT_MAX_IR_VERSION, run_original
from bnnc.passes.fold_constants import FoldConstants, first_rewrite

from tests.models.finn_forms import finn_converted_cnv, finn_separable_cnv


def qonnx_outputs(path, x: np.ndarray) -> np.ndarray:
    """qonnx 1.0's execute_onnx, one sample at a time (DESIGN.md section 9: lower ir_version)."""
    pytest.importorskip("qonnx")
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes

    model = onnx.load(path)
    model.ir_version = min(model.ir_version, ORT_MAX_IR_VERSION)
    wrapper = ModelWrapper(model).transform(InferShapes())
    name_in, name_out = model.graph.input[0].name, model.graph.output[0].name
    return np.concatenate([execute_onnx(wrapper, {name_in: xi[None]})[name_out] for xi in x])


def inputs(compiled, n: int) -> np.ndarray:
    """Uniform over [-1, 1), plus every input-quantizer threshold exactly (ties) and its ends."""
    shape = compiled.source.inputs[0][1].shape
    rng = np.random.default_rng(3)
    x = rng.uniform(-1.05, 1.05, (n,) + shape).astype(np.float32)
    x[0] = ((np.arange(255) - 127.5) / 128).astype(np.float32)[rng.integers(0, 255, shape)]
    x[1] = -1.0
    x[2] = 1.0
    return x


# shared thresholds in the slow set (8.4 s: the default run's time); the per-channel form stays
@pytest.mark.parametrize("shared", [pytest.param(True, marks=pytest.mark.slow), False],
                         ids=["shared-input-thresholds", "per-channel-input-thresholds"])
def test_converted_cnv_compiles_exactly(tmp_path, shared):
    path = finn_converted_cnv(tmp_path / "cnv.onnx", shared_input_thresholds=shared)
    probe = driver.compile_model(path, driver.Options())
    x = inputs(probe, 24)
    # every pass checked by the interpreter on these samples
    compiled = driver.compile_model(path, driver.Options(targets=("verilog", "hls")), samples=x)
    assert first_rewrite(compiled.graph) is None  # fold-constants reached its fixed point
    reference = driver.execute(compiled, x, "interp")
    expected = qonnx_outputs(path, x).reshape(reference.shape)
    np.testing.assert_array_equal(run_original(onnx.load(path), x).reshape(reference.shape), expected)
    np.testing.assert_allclose(reference, expected, rtol=1e-5, atol=driver.error_bound(compiled.graph) + 1e-6)
    hls = driver.execute(compiled, x, "hls", tmp_path / "hls")
    np.testing.assert_array_equal(hls, reference)


WEIGHTS = {"ternary": (-1.0, 0.0, 1.0), "3bit": tuple(0.25 * np.arange(-4, 4))}


@pytest.mark.parametrize("weights", sorted(WEIGHTS))
def test_converted_cnv_with_multibit_weights_in_hls(tmp_path, weights):
    """Ternary and 3-bit weights on 8-bit integer pixels (first conv), on bipolar maps (second
    conv, after a max pool) and on bipolar vectors (dense)."""
    path = finn_converted_cnv(tmp_path / "cnv.onnx", weights=WEIGHTS[weights])
    compiled = driver.compile_model(path, driver.Options(targets=("verilog", "hls")))
    x = inputs(compiled, 24)
    reference = driver.execute(compiled, x, "interp")
    np.testing.assert_allclose(reference, run_original(onnx.load(path), x).reshape(reference.shape), rtol=1e-5,
                               atol=driver.error_bound(compiled.graph) + 1e-6)
    np.testing.assert_array_equal(driver.execute(compiled, x, "hls", tmp_path / "hls"), reference)


@pytest.mark.slow  # about 20-40 s of Verilator build each
@pytest.mark.parametrize("weights", ["binary", *sorted(WEIGHTS)])
def test_converted_cnv_in_rtl(tmp_path, weights):
    path = finn_converted_cnv(tmp_path / "cnv.onnx", weights=WEIGHTS.get(weights, (-1.0, 1.0)))
    compiled = driver.compile_model(path, driver.Options())
    x = inputs(compiled, 8)
    np.testing.assert_array_equal(driver.execute(compiled, x, "rtl", tmp_path / "rtl"),
                                  driver.execute(compiled, x, "interp"))


FORMS = ["converted", "streamlined", "rounded"]


def separable(tmp_path, form, n):
    """The depthwise-separable net in a FINN form, compiled with every pass checked on n samples,
    within the bound of qonnx's executor."""
    path = finn_separable_cnv(tmp_path / f"sep_{form}.onnx", form)
    x = inputs(driver.compile_model(path, driver.Options()), n)
    compiled = driver.compile_model(path, driver.Options(targets=("verilog", "hls")), samples=x)
    reference = driver.execute(compiled, x, "interp")
    expected = qonnx_outputs(path, x).reshape(reference.shape)
    np.testing.assert_allclose(reference, expected, rtol=1e-5, atol=driver.error_bound(compiled.graph) + 1e-6)
    return compiled, x, reference


@pytest.mark.slow  # qonnx's executor, the pass checks and a g++ build: 35-50 s each under load
@pytest.mark.parametrize("form", FORMS)
def test_finn_separable_forms_in_hls(tmp_path, form):
    compiled, x, reference = separable(tmp_path, form, 24)
    np.testing.assert_array_equal(driver.execute(compiled, x, "hls", tmp_path / "hls"), reference)


@pytest.mark.slow  # a Verilator build each (converted reads s8 pixels, the others u8): 80-95 s under load
@pytest.mark.parametrize("form", FORMS)
def test_finn_separable_forms_in_rtl(tmp_path, form):
    compiled, x, reference = separable(tmp_path, form, 8)
    np.testing.assert_array_equal(driver.execute(compiled, x, "rtl", tmp_path / "rtl"), reference)


def test_fold_constants_is_a_fixed_point_on_its_own_output(tmp_path):
    """Running the pass again changes nothing (no rule undoes another)."""
    compiled = driver.compile_model(finn_converted_cnv(tmp_path / "cnv.onnx"), driver.Options())
    again = FoldConstants().run(compiled.graph)
    assert again.ops == compiled.graph.ops
