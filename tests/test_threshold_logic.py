"""map-threshold-logic: every binary neuron as an exact network of small threshold-logic gates.
Pure Python (no tools): each network is evaluated gate by gate and compared with its neuron."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from bnnc import driver
from bnnc.backends.asic.tl import threshold_logic
from bnnc.backends.hardware import Layer, Window
from bnnc.ir.types import Bipolar, Int
from bnnc.passes.threshold_logic import (
    MapThresholdLogic,
    ThresholdLogicError,
    check_layer,
    evaluate,
    map_layer,
    parse,
    reference,
)
from bnnc.passes.threshold_logic_text import print_mapping

ROOT = Path(__file__).resolve().parents[1]
MLP = ROOT / "examples" / "digits_mlp" / "digits_mlp.onnx"
CNV = ROOT / "examples" / "digits_cnv" / "digits_cnv.onnx"


def binary_layer(k: int, c: int, seed: int, levels: int = 1, window=None) -> Layer:
    """Random +-1 weights; thresholds spread over and beyond the dot product's range [-K, K]."""
    rng = np.random.default_rng(seed)
    weights = rng.choice([-1, 1], (c, k)).astype(np.int8)
    thresholds = np.sort(rng.integers(-k - 2, k + 3, (c, levels)), axis=1)
    thresholds[0] = -k  # always reached ...
    thresholds[1 % c] = k  # ... only by the all-agreeing input ...
    thresholds[2 % c] = k + 1  # ... never
    values = np.tile(np.arange(levels + 1) * 2 - levels, (c, 1)) if levels > 1 else np.tile([-1, 1], (c, 1))
    out = Int(2, signed=True) if levels > 1 else Bipolar()
    return Layer(0, "n", Bipolar(), out, weights, None, thresholds=thresholds, values=values, window=window)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 9, 17, 64, 257])
def test_network_equals_neuron_on_boundary_and_random_inputs(k):
    layer = binary_layer(k, 12, seed=k)
    net = map_layer(layer, MapThresholdLogic())
    assert check_layer(net, layer) > 12  # raises on the first differing neuron
    assert net.max_fan_in <= 4 and np.abs(net.gate_weights).max(initial=0) <= 2


def test_multi_level_thresholds_and_wider_cells():
    layer = binary_layer(40, 8, seed=1, levels=2)
    for options in (MapThresholdLogic(), MapThresholdLogic(max_fan_in=8, max_weight=4)):
        net = map_layer(layer, options)
        check_layer(net, layer)
        assert net.max_fan_in <= options.max_fan_in
        assert np.abs(net.gate_weights).max() <= options.max_weight


def test_zero_padding_masked_inputs_add_nothing():
    window = Window((4, 3, 3), (3, 3), (1, 1), (1, 1, 1, 1), 0, (3, 3))
    layer = binary_layer(36, 10, seed=2, window=window)
    net = map_layer(layer, MapThresholdLogic())
    assert net.mode == "masked" and net.n_inputs == 72
    check_layer(net, layer)


def test_the_check_finds_a_wrong_gate():
    layer = binary_layer(64, 4, seed=3)
    net = map_layer(layer, MapThresholdLogic())
    first, end = net.neuron_gates[3, 0]
    net.gate_thresholds[end - 1] += 1  # the neuron's last gate
    with pytest.raises(AssertionError, match="channel 3"):
        check_layer(net, layer)


def test_counter_tree_size_and_depth():
    """About 2 TLGs per input (one full adder removes one bit) and logarithmic depth; the issue's
    independent count is about 123 / 505 / 2,039 TLGs for K = 64 / 256 / 1024."""
    for k, most in ((64, 130), (256, 520), (1024, 2080)):
        layer = binary_layer(k, 4, seed=k)
        layer.thresholds[3] = 0
        net = map_layer(layer, MapThresholdLogic())
        sizes = np.diff(net.neuron_gates[:, 0], axis=1).ravel()
        assert sizes[0] == sizes[2] == 0  # constant neurons
        assert 1.5 * k <= sizes[3] <= most
        assert net.depth <= 3 * k.bit_length()


def test_evaluate_and_reference_agree_on_a_model_layer():
    compiled = driver.compile_model(MLP, driver.Options())
    mapping = threshold_logic(compiled.graph)
    assert [n.layer for n in mapping.layers] == [1, 2]
    assert [i for i, _ in mapping.cmos] == [0, 3]  # integer pixels and the scores stay CMOS
    design_layers = {layer.index: layer for layer in driver.hardware(compiled).layers}
    x = np.random.default_rng(0).integers(0, 2, (50, 64))
    for net in mapping.layers:
        assert np.array_equal(evaluate(net, x), reference(net, design_layers[net.layer].weights, x))
        check_layer(net, design_layers[net.layer])


def test_conv_model_layers_map_exactly():
    mapping = threshold_logic(driver.compile_model(CNV, driver.Options()).graph)
    modes = {n.layer: n.mode for n in mapping.layers}
    assert modes == {1: "masked", 3: "xnor"}
    from bnnc.backends.asic.tl import tl_design
    layers = {layer.index: layer for layer in tl_design(driver.compile_model(CNV, driver.Options()).graph).layers}
    for net in mapping.layers:
        check_layer(net, layers[net.layer], random=16)


def test_options_and_printing():
    assert parse("map-threshold-logic{max-fan-in=6,max-weight=4,clocked=0}") == MapThresholdLogic(6, 4, 0)
    with pytest.raises(ThresholdLogicError, match="3:2 counter"):
        parse("map-threshold-logic{max-fan-in=3}")
    with pytest.raises(ThresholdLogicError, match="bad option"):
        parse("map-threshold-logic{fan=3}")
    layer = binary_layer(5, 2, seed=0)
    layer = Layer(**{**layer.__dict__, "thresholds": np.array([[1], [5]])})
    from bnnc.passes.threshold_logic import Mapping
    text = print_mapping(Mapping(MapThresholdLogic(), (map_layer(layer, MapThresholdLogic()),), (), 0.0))
    assert "neuron 1.0: [dot >= 5]" in text and ">= 2]  (level 1)" in text


def test_inspect_prints_the_network_and_refuses_bad_options():
    run = lambda *a: subprocess.run([sys.executable, "-m", "bnnc", "inspect", str(MLP), *a],  # noqa: E731
                                    capture_output=True, text=True)
    result = run("--print-after", "map-threshold-logic{max-fan-in=4}")
    assert result.returncode == 0, result.stderr
    assert "layer 0: stays CMOS" in result.stdout and "layer 1 ('/4/MatMul'): 64 neurons" in result.stdout
    bad = run("--print-after", "map-threshold-logic{max-fan-in=2}")
    assert bad.returncode == 2 and bad.stderr.startswith("bnnc: error: map-threshold-logic") and not bad.stdout
