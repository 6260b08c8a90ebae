"""The hardware-integration files of a build, next to rtl/ and hls/: the AXI4-Stream wrapper
(`--wrap axis`), the FuseSoC core with its self-checking bench, the Vivado and Vitis HLS
packaging scripts, and a picture of the dataflow. Each comes from its own module; this one
decides what a build gets and computes the bench's vectors with the interpreter.
"""
from __future__ import annotations

import numpy as np

from . import interp

BENCH_FRAMES = 16  # frames the FuseSoC bench checks: enough to fill every pipeline here


def reference_vectors(compiled, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, expected outputs) of the device part for samples x in the model's units, as
    element values in the hardware's order: what the RTL must turn the inputs into."""
    from .driver import check_inputs, device_input, device_output, hardware

    graph = compiled.graph
    x = check_inputs(x, graph)
    env = interp.run(graph, {graph.inputs[0][0]: x}, trace=True)
    design = hardware(compiled)
    return design.serialize(env[device_input(graph)]), env[device_output(graph)].reshape(len(x), -1)
