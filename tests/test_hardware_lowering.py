"""Lowering to a hardware Design keeps the interpreter's answers: weight orders, conv windows
with zero/+-1 padding, flatten permutations (NCHW and NHWC), pool modes, reuse trees."""
from __future__ import annotations

import numpy as np
import pytest
from bnnc import interp
from bnnc.backends.hardware import PoolLayer, lower
from bnnc.driver import device_input, sample_inputs
from bnnc.frontend.onnx import import_onnx
from bnnc.passes import DEFAULT_PIPELINE, parse_pipeline, run_pipeline

from tests.design_model import run_design
from tests.models import exporters as ex
from tests.test_conv import CONV_PRODUCERS, conv_model

MODELS = dict(CONV_PRODUCERS)
MODELS["onnx-pad-one-pool-first"] = lambda p: conv_model(p, 1.0, "pad", "before")
MODELS["brevitas-mlp"] = lambda p: ex.brevitas_mlp(p, sizes=(32, 16, 10), in_features=64)


@pytest.mark.parametrize("reuse", [False, True])
@pytest.mark.parametrize("model", sorted(MODELS))
def test_design_equals_interpreter(tmp_path, model, reuse):
    graph = import_onnx(MODELS[model](tmp_path / "m.onnx"))
    pipeline = DEFAULT_PIPELINE + (",channel-reuse" if reuse else "")
    folded, _ = run_pipeline(graph, parse_pipeline(pipeline))
    x = sample_inputs(graph, 40)
    env = interp.run(folded, {graph.inputs[0][0]: x}, trace=True)
    design = lower(folded)
    last = [op for op in folded.ops if not folded.on_host(op)][-1].out
    got = run_design(design, design.serialize(env[device_input(folded)]))
    np.testing.assert_array_equal(got, env[last].reshape(len(x), -1))
    if "cnv" in model or "conv" in model or "pad" in model:
        assert any(isinstance(layer, PoolLayer) for layer in design.layers)
