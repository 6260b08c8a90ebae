"""Run the user's original ONNX model, for comparison with everything bnnc builds from it.

Standard graphs run in onnxruntime. Graphs with QONNX custom ops run in onnx.reference with our
own implementations of those ops (qonnx 1.0's executor breaks with onnx 1.23 + onnxruntime 1.31).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx.reference import ReferenceEvaluator

from .frontend.qonnx_ops import ALL_CUSTOM_OPS

# onnxruntime 1.31 reads models up to this IR version; onnx 1.23 may write newer ones.
ORT_MAX_IR_VERSION = 10


def _runner(model: onnx.ModelProto):
    custom = any(n.domain not in ("", "ai.onnx") for n in model.graph.node)
    if custom:
        evaluator = ReferenceEvaluator(model, new_ops=ALL_CUSTOM_OPS)

        def evaluate(feeds):
            outputs = evaluator.run(None, feeds)
            assert isinstance(outputs, list)  # run() gives a dict only for intermediate=True
            return outputs[0]
        return evaluate
    import onnxruntime as ort

    model = onnx.ModelProto.FromString(model.SerializeToString())
    model.ir_version = min(model.ir_version, ORT_MAX_IR_VERSION)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    # Node by node, as written: fusing e.g. BatchNorm into MatMul re-rounds in float32 and moves
    # exact ties (BN output exactly 0 before a Sign), which would make the reference itself wrong.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return lambda feeds: session.run(None, feeds)[0]


def run_original(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """Outputs for samples x (axis 0); a model with a fixed batch of 1 runs one sample at a time."""
    inits = {i.name for i in model.graph.initializer}
    inp = next(i for i in model.graph.input if i.name not in inits)
    batch_dim = inp.type.tensor_type.shape.dim[0]
    run = _runner(model)
    x = np.asarray(x, dtype=np.float32)
    if batch_dim.HasField("dim_value") and batch_dim.dim_value == 1:
        return np.concatenate([np.asarray(run({inp.name: x[i:i + 1]})) for i in range(len(x))])
    return np.asarray(run({inp.name: x}))
