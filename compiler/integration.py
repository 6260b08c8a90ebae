"""The hardware-integration files of a build, next to rtl/ and hls/: the AXI4-Stream wrapper
(`--wrap axis`), the FuseSoC core with its self-checking bench, the Vivado and Vitis HLS
packaging scripts, and a picture of the dataflow. Each comes from its own module; this one
decides what a build gets and computes the bench's vectors with the interpreter.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import interp
from .backends.verilog import sources
from .diagnostics import BnncError

DATAFLOW_SVG = "dataflow.svg"
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


def write(compiled, build_dir: Path, manifest: dict) -> list[Path]:
    """Write the integration files of a build into build_dir (the staging folder of
    driver.write_build, which already holds rtl/ and hls/ as the targets ask)."""
    from .backends import axis, dataflow_svg, fusesoc, vivado
    from .driver import hardware, sample_inputs

    design, hw = hardware(compiled), manifest["hardware"]
    options = compiled.options
    rtl_dir, hls_dir = build_dir / "rtl", build_dir / "hls"
    if options.wrap == "axis" and not rtl_dir.is_dir():
        raise BnncError("--wrap axis wraps the Verilog: compile with --target verilog or all")
    if options.wrap == "none" and options.tuser_bits:
        raise BnncError("--tuser-bits needs --wrap axis")
    svg = build_dir / DATAFLOW_SVG
    svg.write_text(dataflow_svg.render(hw), encoding="utf-8", newline="\n")
    written = [svg]
    if rtl_dir.is_dir():
        wrapper = axis.emit(hw, rtl_dir, build_dir / "axis", options.tuser_bits) if options.wrap == "axis" else []
        x = sample_inputs(compiled.source, BENCH_FRAMES, seed=1)
        inputs, expected = reference_vectors(compiled, x)
        rtl = sources(rtl_dir)
        written += fusesoc.emit(build_dir, design, hw, rtl, wrapper, inputs, expected, options.tuser_bits)
        if wrapper:
            written += [build_dir / "axis", vivado.emit_package_ip(build_dir, design.name, rtl + wrapper)]
    if hls_dir.is_dir():
        written.append(vivado.emit_hls_export(hls_dir, design.name))
    return written
