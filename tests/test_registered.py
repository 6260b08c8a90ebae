"""Registered matrix-vector units (`bnnc compile --registered`, Design.registered): the datapath
pipelined in register stages and the output handed on through a registered queue, for Fmax.

The same hand-built designs as test_verilog, registered, simulated against the interpreter bit
for bit (random input pauses and back-pressure), with the measured frame interval and latency
equal to the timing model's; and structurally: no combinational path from a unit's out_ready to
its in_ready, so the ready chain no longer runs through every layer.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import bnnc
import numpy as np
import pytest
from bnnc import driver, interp
from bnnc.backends.hardware import lower
from bnnc.backends.verilog import emit
from bnnc.backends.verilog_timing import part_inputs, step_copies, timing
from bnnc.ir.fixed_ops import FixedAffine
from bnnc.ir.graph import Graph
from bnnc.ir.ops import Dense, Threshold
from bnnc.ir.types import Bipolar, TensorType

from sim import simulate
from sim.lint import lint
from tests.test_verilog import FOLDINGS, _binary, _weights, check_run, graph_of, random_inputs

VECTORS = 60
# every folding of test_verilog without channel reuse (registered units do not build it)
CASES = sorted(case for case, (_, reuse) in FOLDINGS.items() if not reuse)
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DIGITS = EXAMPLES / "digits_mlp"
# the digits MLP at 32 cycles/frame (fully unrolled it does not fit an ECP5); benchmarks/fmax.py
FOLD32 = {"layers": {"0": {"pe": 4, "simd": 32}, "1": {"pe": 4, "simd": 32}, "2": {"pe": 4, "simd": 32},
                     "3": {"pe": 10, "simd": 2}}}


def registered_design(case):
    fold, _ = FOLDINGS[case]
    plain = lower(graph_of(case[0]), fold)
    return plain, replace(plain, registered=True)


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(c))
def test_registered_keeps_the_interval_and_adds_the_stages_to_the_latency(case):
    plain, registered = registered_design(case)
    before, after = timing(plain), timing(registered)
    assert after.interval == before.interval
    mvus = [u for u in after.units if u.slots]
    # inputs and weights (a stage more from a block RAM: 128 steps or more), parts, the levels of
    # their adder tree (4 values a level: the fewest L with 4^L >= parts), the accumulated sum (+ a
    # multiply-add's input, product and its copy)
    for u in mvus:
        parts = -(-u.layer.simd // part_inputs(u.layer))
        tree = next(levels for levels in range(1, 20) if 4 ** levels >= parts)
        extra = u.steps >= 128
        assert u.post_stages == 2 + extra + tree + (1 if u.layer.post == "threshold" else 4)
    assert mvus
    # the stages are the only new clocks on an idle pipeline: each unit's result arrives later, and
    # a conv unit's MVU takes each window from a register slice, a clock after the window is complete
    slices = sum(u.kind == "conv" for u in mvus)
    assert after.latency == before.latency + sum(u.post_stages for u in mvus) + slices


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(c))
def test_registered_rtl_matches_interpreter(case, tmp_path):
    graph = graph_of(case[0])
    _, design = registered_design(case)
    emit(design, tmp_path)
    assert lint(tmp_path) == []
    x = random_inputs(graph, VECTORS)
    expected = interp.run(graph, {"x": x})[graph.outputs[0]].reshape(VECTORS, -1)
    result = simulate(tmp_path, design.serialize(x), design, expected, seed=11)
    check_run(design, result, expected)


def _select_in_top(rtl: Path, selection: str, tmp_path: Path) -> list[str]:
    """What a Yosys `selection` names in bnnc_top after `proc` (every flip-flop a $dff) and
    `flatten`."""
    files = " ".join(f"read_verilog {rtl / name};" for name in (rtl / "filelist.f").read_text().split())
    listing = tmp_path / "selection.txt"
    script = f"{files} hierarchy -top bnnc_top; proc; flatten; select -write {listing} {selection}"
    subprocess.run(["yosys", "-q", "-p", script], check=True, capture_output=True, text=True, timeout=600)
    return [line.split("/", 1)[-1] for line in listing.read_text().split()]


def _ready_cone(rtl: Path, tmp_path: Path) -> list[str]:
    """The ready wires of bnnc_top that its out_ready reaches through logic alone (the cone stops
    at flip-flops)."""
    names = _select_in_top(rtl, "w:out_ready %co*:-$dff w:*_ready %i", tmp_path)
    return sorted(name for name in names if "." not in name)  # the top's own wires: unit boundaries


@pytest.mark.skipif(shutil.which("yosys") is None, reason="Yosys not installed")
def test_out_ready_stops_at_the_last_unit(tmp_path):
    fold = {"layers": {"0": {"pe": 8, "simd": 16}, "1": {"pe": 8, "simd": 16}, "2": {"pe": 8, "simd": 16},
                       "3": {"pe": 5, "simd": 32}}}
    cones, ready_logic = {}, {}
    for registered in (False, True):
        build = bnnc.compile(DIGITS / "digits_mlp.onnx", tmp_path / str(registered), fold=fold, registered=registered)
        cones[registered] = _ready_cone(build.path / "rtl", tmp_path)
        # the logic cells that drive a unit's in_ready (links 1-4: layers 0-3), up to flip-flops
        ready_logic[registered] = _select_in_top(build.path / "rtl", "w:link*_ready %ci*:-$dff t:* %i", tmp_path)
    # unregistered, the top's out_ready ripples through every layer's ready logic to its in_ready
    assert {"in_ready", "link1_ready", "link2_ready", "link3_ready"} <= set(cones[False])
    # registered, it reaches only itself: the last layer's queue pops, and no ready upstream
    assert cones[True] == ["out_ready"]
    # and each layer's in_ready is a flip-flop, so the unit before it pops on a register
    assert ready_logic[False] and ready_logic[True] == []


def test_registered_is_recorded_in_the_build(tmp_path):
    build = bnnc.compile(DIGITS / "digits_mlp.onnx", tmp_path / "b", registered=True,
                         fold={"layers": {"0": {"pe": 16, "simd": 64}}})
    assert json.loads((build.path / "build.json").read_text())["options"]["registered"] is True
    assert "bnnc_queue.v" in (build.path / "rtl" / "filelist.f").read_text().split()
    # layer 0 (64 u8 inputs a step, 2 a part: 32 parts, summed 4 a clock in 3 levels) takes 4 steps:
    # 6 stages, and its result needs ceil((6 + 2) / 4) places; layer 1 (64 bits, 12 a part: 6 parts,
    # two levels), unrolled, 5 stages and a place per clock of them and of the handshake
    assert build.manifest["hardware"]["pipeline"]["registered_units"][:2] == [
        {"layer": 0, "stages": 6, "queue": 2, "weights": "LUT ROM"}, {"layer": 1, "stages": 5, "queue": 7, "weights": "LUT ROM"}]
    # `bnnc run` rebuilds the design from the record: registered again, with the manifest's latency
    design = driver.hardware(driver.open_build(build.path))
    assert design.registered and timing(design).latency == build.manifest["hardware"]["latency_cycles"]


# the digits CNV's layer 3 unrolled: 32 x 288 weights a step, a wide step (two input stages)
WIDE = {"layers": {"3": {"pe": 32, "simd": 288}}}


@pytest.mark.slow
@pytest.mark.parametrize("example, fold, multiplier_free", [
    ("digits_mlp", FOLD32, 0), ("digits_mlp", FOLD32, 3), ("digits_cnv", "auto", 0),
    ("digits_cnv", {"layers": {"1": {"pe": 8, "simd": 72}}}, 0),
    ("digits_cnv", {"layers": {"3": {"pe": 16, "simd": 288}}}, 0), ("digits_cnv", WIDE, 0)],
    ids=["digits_mlp-32", "digits_mlp-32-multiplier-free", "digits_cnv-auto", "digits_cnv-masked-blocks",
         "digits_cnv-80-blocks", "digits_cnv-wide"])
def test_registered_examples_are_exact_and_on_time(example, fold, multiplier_free, tmp_path):
    """The examples as benchmarks/fmax.py places them: the head's multiply split into 17-bit
    products (digits MLP), convs with zero padding and a pool (digits CNV); and foldings with
    weight blocks (masked terms; 80 blocks)."""
    build = bnnc.compile(EXAMPLES / example / f"{example}.onnx", tmp_path / "b", fold=fold, registered=True,
                         multiplier_free=multiplier_free)
    compiled = driver.open_build(build.path)
    design = driver.hardware(compiled)
    graph = compiled.graph
    env = interp.run(graph, {graph.inputs[0][0]: np.load(EXAMPLES / example / "test_x.npy")[:40]}, trace=True)
    expected = env[[op for op in graph.ops if not graph.on_host(op)][-1].out].reshape(40, -1)
    result = simulate(build.path / "rtl", design.serialize(env[driver.device_input(graph)]), design, expected, seed=5)
    np.testing.assert_array_equal(result.outputs, expected)
    assert result.cycles_per_frame_measured == build.manifest["hardware"]["cycles_per_frame"]
    assert result.latency_measured == build.manifest["hardware"]["latency_cycles"]


def test_registered_conv_behind_the_axis_wrapper_defines_each_module_once(tmp_path):
    # both the registered conv units (window -> slice -> MVU) and the AXI4-Stream wrapper use
    # bnnc_skid: the design's copy serves both, and the whole set lints clean
    from bnnc.backends import axis
    from bnnc.backends.verilog import sources

    from sim.lint import verilator_command

    build = bnnc.compile(EXAMPLES / "digits_cnv" / "digits_cnv.onnx", tmp_path / "b", registered=True, wrap="axis")
    files = sources(build.path / "rtl") + [build.path / "axis" / name for name in axis.wrapper_files(build.path / "rtl")]
    assert [f.name for f in files].count("bnnc_skid.v") == 1
    assert not (build.path / "axis" / "bnnc_skid.v").exists()
    assert "bnnc_skid #(" in (build.path / "rtl" / "bnnc_top.v").read_text()
    exe, env = verilator_command()
    proc = subprocess.run(exe + ["--lint-only", "-Wall", "--top-module", axis.TOP] + [str(f) for f in files], env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "%Warning" not in proc.stderr, proc.stderr


def _yosys_on_layer(rtl: Path, commands: str, tmp_path: Path, index: int = 1) -> str:
    """Debian's Yosys on one layer alone: what `commands`' last command prints."""
    reads = " ".join(f"read_verilog {rtl / name};" for name in ("bnnc_dot.v", "bnnc_sum.v", "bnnc_queue.v",
                                                                 f"bnnc_layer{index}.v"))
    first, last = commands.rsplit("; ", 1)
    out = tmp_path / "yosys_out.txt"
    subprocess.run(["yosys", "-q", "-p", f"{reads} {first}; tee -q -o {out} {last}"],
                   check=True, capture_output=True, text=True, timeout=600)
    return out.read_text()


# the digits MLP folded deep: 256, 128 and 160 steps per vector in layers 0 (u8 inputs), 1 (XNOR)
# and 3 (the affine head), 32 in layer 2
DEEP = {"layers": {"0": {"pe": 1, "simd": 16}, "1": {"pe": 1, "simd": 32}, "2": {"pe": 2, "simd": 64},
                   "3": {"pe": 1, "simd": 4}}}


# the digits CNV's layer 1 (masked terms) and 3 (XNOR) at 128 steps per vector
DEEP_CNV = {"layers": {"1": {"pe": 1, "simd": 36}, "3": {"pe": 1, "simd": 72}}}


@pytest.mark.slow  # a Verilator build each; the default run's time
@pytest.mark.parametrize("example, fold, stores, frames", [
    ("digits_mlp", DEEP, ["block RAM", "block RAM", "LUT ROM", "block RAM"], 12),
    ("digits_cnv", DEEP_CNV, ["LUT ROM", "block RAM", "block RAM", "LUT ROM"], 4)])
def test_deep_weight_memories_are_block_ram_and_exact(example, fold, stores, frames, tmp_path):
    build = bnnc.compile(EXAMPLES / example / f"{example}.onnx", tmp_path / "b", fold=fold, registered=True)
    rtl = build.path / "rtl"
    units = build.manifest["hardware"]["pipeline"]["registered_units"]
    assert [u["weights"] for u in units] == stores
    for u in units:
        text = (rtl / f"bnnc_layer{u['layer']}.v").read_text()
        assert ('(* rom_style = "block" *) reg' in text) == (u["weights"] == "block RAM")
    assert lint(rtl) == []
    compiled = driver.open_build(build.path)
    design, graph = driver.hardware(compiled), compiled.graph
    env = interp.run(graph, {graph.inputs[0][0]: np.load(EXAMPLES / example / "test_x.npy")[:frames]}, trace=True)
    expected = env[[op for op in graph.ops if not graph.on_host(op)][-1].out].reshape(frames, -1)
    result = simulate(rtl, design.serialize(env[driver.device_input(graph)]), design, expected, seed=3)
    np.testing.assert_array_equal(result.outputs, expected)
    assert result.cycles_per_frame_measured == build.manifest["hardware"]["cycles_per_frame"]
    assert result.latency_measured == build.manifest["hardware"]["latency_cycles"]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("yosys") is None, reason="Yosys not installed")
@pytest.mark.parametrize("arch, cell", [("ecp5", "DP16KD"), ("xilinx", "RAMB18E1")])
def test_yosys_maps_a_deep_weight_memory_to_block_ram(arch, cell, tmp_path):
    build = bnnc.compile(DIGITS / "digits_mlp.onnx", tmp_path / "b", fold=DEEP, registered=True, target="verilog")
    stat = _yosys_on_layer(build.path / "rtl", f"synth_{arch} -top bnnc_layer1; stat", tmp_path)
    # layer 1's 128 words of 32 weight bits: one block, read into stage 1 by its own output register
    assert re.search(rf"\b{cell} 1\b", " ".join(stat.split())), stat


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("yosys") is None, reason="Yosys not installed")
def test_weight_blocks_keep_their_own_address_registers(tmp_path):
    """Layer 1 of the digits MLP at PE 16 x SIMD 64: 4 steps, 16 lanes of one block of 64 weights,
    each block with its own step address: 2 group bits (its chunk bit, with one chunk always 0, is
    a constant Yosys removes). Merged, one pair would drive every weight of the layer."""
    build = bnnc.compile(DIGITS / "digits_mlp.onnx", tmp_path / "b", registered=True, target="verilog",
                         fold={"layers": {"1": {"pe": 16, "simd": 64}}})
    count = _yosys_on_layer(build.path / "rtl", "synth -top bnnc_layer1 -flatten; "
                             "select -count w:*block*_addr* %ci1:+[Q] t:*DFF* %i", tmp_path)
    assert count.split()[0] == str(16 * 2)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("yosys") is None, reason="Yosys not installed")
def test_a_wide_step_keeps_its_input_copies(tmp_path):
    """The digits CNV's layer 3 unrolled (WIDE) registers its inputs twice, the second time in 8
    copies, one per 4 lanes, which synthesis must not merge back into one register feeding all
    32 lanes (the route the copies are there to shorten); likewise the 5 copies of its 288-bit
    input buffer's load enable, one per 64 bits."""
    build = bnnc.compile(EXAMPLES / "digits_cnv" / "digits_cnv.onnx", tmp_path / "b", registered=True,
                         target="verilog", fold=WIDE)
    # 2 input stages, the parts' dot products, 3 tree levels (24 parts of 12, 6, 2, 1), the sum
    unit = next(u for u in build.manifest["hardware"]["pipeline"]["registered_units"] if u["layer"] == 3)
    assert unit["stages"] == 2 + 1 + 3 + 1
    count = _yosys_on_layer(build.path / "rtl", "synth -top bnnc_layer3 -flatten; "
                            "select -count w:*input_copy*x* %ci1:+[Q] t:*DFF* %i", tmp_path, index=3)
    assert count.split()[0] == str(8 * 288)
    count = _yosys_on_layer(build.path / "rtl", "synth -top bnnc_layer3 -flatten; "
                            "select -count w:*load_copy*load %ci1:+[Q] t:*DFF* %i", tmp_path, index=3)
    assert count.split()[0] == str(5)


@pytest.mark.slow
def test_a_wide_folded_step_advances_its_weight_blocks_a_clock_late(tmp_path):
    """256 bipolar inputs -> 64 channels at PE 64 x SIMD 128 (8,192 weights a step, 2 chunks):
    its 128 weight blocks advance on 8 registered copies of `step` and its inputs take three
    stages; bit for bit, on time, with pauses and back-pressure. The head multiplies its
    popcount (7 bits) by signed multipliers in LUTs."""
    rng = np.random.default_rng(7)
    t1, v1 = _binary(rng, 64, -20, 20)
    ops = (Dense("d1", ("x",), weights=_weights(rng, 64, 256)),
           Threshold("a1", ("d1",), thresholds=t1, values=v1),
           Dense("d2", ("a1",), weights=_weights(rng, 10, 64)),
           FixedAffine("q", ("d2",), mult=rng.integers(-300, 301, 10), bias=rng.integers(-99, 100, 10), frac=4,
                       error_bound=0.0))
    graph = Graph("wide", (("x", TensorType(Bipolar(), (256,))),), ops, ("q",))
    design = replace(lower(graph, {0: {"pe": 64, "simd": 128}, 1: {"pe": 5, "simd": 32}}), registered=True)
    # 3 input stages, the parts' dot products (11 parts of 12), 2 tree levels (3, 1), the sum
    assert step_copies(design.layers[0]) == 8 and timing(design).units[0].post_stages == 3 + 1 + 2 + 1
    emit(design, tmp_path)
    assert lint(tmp_path) == []
    x = random_inputs(graph, VECTORS)
    expected = interp.run(graph, {"x": x})["q"].reshape(VECTORS, -1)
    check_run(design, simulate(tmp_path, design.serialize(x), design, expected, seed=3), expected)
