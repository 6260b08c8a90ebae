"""Every producer's real export, imported and folded, equals the original model.

Models come from the real tools (Brevitas export_qonnx on both export paths, torch.onnx.export,
onnx.helper for FINN-ONNX); the original runs in onnxruntime / onnx.reference. Every pass is
checked by the interpreter on the way (run_pipeline with samples).
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from bnnc import interp
from bnnc.driver import sample_inputs
from bnnc.frontend.onnx import import_onnx
from bnnc.ir.ops import Dense, Threshold
from bnnc.original import run_original
from bnnc.passes import DEFAULT_PIPELINE, parse_pipeline, run_pipeline

from tests.models import exporters as ex

PRODUCERS = {
    "brevitas-torchscript": lambda p: ex.brevitas_mlp(p, sizes=(32, 32, 10), in_features=64, dynamo=False),
    "brevitas-dynamo": lambda p: ex.brevitas_mlp(p, sizes=(32, 32, 10), in_features=64, dynamo=True),
    "torch-sign": lambda p: ex.torch_sign_mlp(p, ste="sign"),
    "torch-ste-add": lambda p: ex.torch_sign_mlp(p, ste="ste_add"),
    "torch-where": lambda p: ex.torch_sign_mlp(p, ste="where"),
    "torch-pm1-weights": lambda p: ex.torch_sign_mlp(p, ste="sign", weights="pm1"),
    "finn-multithreshold": lambda p: ex.finn_multithreshold_mlp(p),
}


def inputs_for(graph, n=200):
    rng = np.random.default_rng(1)
    uniform = rng.random((n // 2,) + graph.inputs[0][1].shape).astype(np.float32)
    return np.concatenate([sample_inputs(graph, n - n // 2), uniform])


@pytest.mark.parametrize("producer", sorted(PRODUCERS))
def test_folded_ir_matches_original(tmp_path, producer):
    path = PRODUCERS[producer](tmp_path / f"{producer}.onnx")
    graph = import_onnx(path)
    x = inputs_for(graph)
    folded, records = run_pipeline(graph, parse_pipeline(DEFAULT_PIPELINE), {graph.inputs[0][0]: x})
    assert all(r.verified.startswith("verified") for r in records)
    device = [op for op in folded.ops if not folded.on_host(op)]
    assert {type(op).__name__ for op in device} <= {"Dense", "Threshold", "FixedAffine", "Reshape"}
    assert all(op.integer for op in device if isinstance(op, Threshold))
    assert sum(isinstance(op, Dense) for op in device) == 3
    out = folded.outputs[0]
    got = interp.to_real(interp.run(folded, {graph.inputs[0][0]: x})[out], folded.types[out])
    want = run_original(onnx.load(path), x).reshape(got.shape).astype(np.float64)
    bound = max((getattr(op, "error_bound", 0.0) for op in folded.ops), default=0.0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=bound + 1e-6)


def test_brevitas_weight_scale_is_honoured(tmp_path):
    """hls4ml gets Brevitas' default 0.1 weight scale wrong; bnnc must not."""
    path = ex.brevitas_mlp(tmp_path / "m.onnx", sizes=(16, 10), in_features=64, weight_scale=0.37)
    graph = import_onnx(path)
    x = inputs_for(graph, 64)
    folded, _ = run_pipeline(graph, parse_pipeline(DEFAULT_PIPELINE))
    out = folded.outputs[0]
    got = interp.to_real(interp.run(folded, {graph.inputs[0][0]: x})[out], folded.types[out])
    want = run_original(onnx.load(path), x).reshape(got.shape)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
