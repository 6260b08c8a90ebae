"""Residual BNNs with full-precision stem and head (Bi-Real Net, ReActNet) and the layers around
binary ones (Hardtanh, GAP/AveragePool/ReduceMean heads, bias, PReLU): imported from torch
exports, folded to fixed point by fold-fixed-point (QFX), and checked against onnxruntime on
digits-sized inputs. The Verilog/HLS backends do not build fixed-point values between layers
yet; that refusal is tested here too."""
from __future__ import annotations

from fractions import Fraction

import bnnc
import numpy as np
import onnx
import pytest
import torch
from bnnc import driver, interp
from bnnc.diagnostics import BnncError
from bnnc.frontend.weights import quantize_rows
from bnnc.ir.fixed_ops import Add, FixedAffine, PReLU, SumPool
from bnnc.ir.printer import print_graph
from sklearn.datasets import load_digits

from sim.lint import lint
from sim.runner import simulate
from tests.models import residual as R

DIGITS = load_digits().images.astype(np.float32)[:, None] / 16.0  # multiples of 1/16 in [0, 1]


def _inputs(kind: str) -> torch.Tensor:
    x = torch.from_numpy(DIGITS[:256])
    return x.reshape(len(x), -1) if kind == "mlp" else x


MODELS = {
    "bireal": lambda: R.bireal_net(),
    "bireal-approxsign": lambda: R.bireal_net(approx=True),
    "reactnet": lambda: R.reactnet(),
    "hardtanh-mlp": lambda: R.HardtanhSignMLP(),
    "gap-head": lambda: R.PoolHeadNet("gap"),
    "reducemean-head": lambda: R.PoolHeadNet("mean"),
    "avgpool": lambda: R.PoolHeadNet("avgpool"),
}


def _export(tmp_path, kind: str, dynamo: bool = False, grid: bool = True) -> tuple[str, str]:
    x = _inputs("mlp" if kind == "hardtanh-mlp" else kind)
    model = R.calibrated(MODELS[kind](), x, grid=grid)
    path = R.export(model, tmp_path / f"{kind}.onnx", x, dynamo=dynamo)
    samples = tmp_path / "x.npy"
    np.save(samples, x[:48].numpy())
    return path, str(samples)


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_exact_within_the_stated_bound(tmp_path, kind):
    """Full-precision layers on an 8-bit grid are taken exactly; the binary ones as the papers
    write them (+-s up to float32 rounding) need --quantize-weights, which makes them binary
    again (the weights move by one float32 ulp). The fixed-point IR then matches the original
    within its stated bound on every calibration sample."""
    path, samples = _export(tmp_path, kind)
    x = np.load(samples)
    check = bnnc.verify(path, x, backends=(), calibrate=samples, quantize_weights=8)
    ref = check.rows[0]
    assert ref.argmax_agreement == len(x)
    # the one change --quantize-weights made is float32 rounding of +-s: far below the bound
    stated = driver.error_bound(driver.compile_model(path, driver.Options(calibrate=samples, quantize_weights=8)).graph)
    assert 0 < stated < 0.01 * float(np.abs(check.original).max())  # a small fraction of the scores
    assert ref.max_error <= stated + 1e-5 * max(1.0, float(np.abs(check.original).max()))


def test_bireal_graph_has_fixed_point_shortcuts(tmp_path):
    path, samples = _export(tmp_path, "bireal")
    graph = driver.compile_model(path, driver.Options(calibrate=samples, quantize_weights=8)).graph
    kinds = {type(op) for op in graph.ops}
    assert {Add, SumPool, FixedAffine} <= kinds
    adds = [op for op in graph.ops if isinstance(op, Add)]
    assert len(adds) == 3  # one shortcut per block
    # the stride-2 block's shortcut averages 2x2: an exact division (two more fraction bits), so
    # the add lines up binary points by shifting, never by rounding
    assert any(any(op.shifts) for op in adds)
    text = print_graph(graph)
    assert "sum_pool" in text and " add " in text


def test_reactnet_prelu_becomes_fixed_point(tmp_path):
    path, samples = _export(tmp_path, "reactnet")
    source = driver.compile_model(path, driver.Options(pipeline="fold-constants", quantize_weights=8)).graph
    assert any(isinstance(op, PReLU) for op in source.ops)
    graph = driver.compile_model(path, driver.Options(calibrate=samples, quantize_weights=8)).graph
    prelus = [op for op in graph.ops if isinstance(op, FixedAffine) and op.neg_mult is not None]
    assert len(prelus) == 2 and all(op.shift > 0 for op in prelus)  # RPReLU slope 0.25 on codes


# The Bi-Real net's dynamo export is a slow test (half a minute); the torch.onnx TorchScript export
# of the same net runs in the default suite (test_bireal_net_is_exact_in_rtl_and_hls).
@pytest.mark.parametrize("kind", [pytest.param("bireal", marks=pytest.mark.slow), "gap-head"])
def test_dynamo_exports_compile(tmp_path, kind):
    """The dynamo exporter fuses each BatchNorm into the conv before it, so the stem's weights are
    no longer on a grid: --quantize-weights rounds them, the table says there is no bound, the
    reference still agrees with the original's class on most samples, and RTL and HLS equal it."""
    path, samples = _export(tmp_path, kind, dynamo=True)
    x = np.load(samples)[:24]
    check = bnnc.verify(path, x, backends=("rtl", "hls"), calibrate=samples, quantize_weights=8)
    assert check.bound == float("inf") and "no output bound" in check.table()
    assert check.rows[0].argmax_agreement >= len(x) // 2  # a random stem, rounded: most classes hold
    assert [row.equal_to_reference for row in check.rows] == [len(x)] * 3, check.table()


def test_near_binary_weights_are_refused_with_the_reason(tmp_path):
    path, _ = _export(tmp_path, "bireal")
    with pytest.raises(BnncError, match="equal in magnitude up to float32 rounding.*--quantize-weights"):
        driver.compile_model(path, driver.Options())


def test_quantize_rows_binarizes_rows_that_are_binary_up_to_rounding():
    s = np.float32(0.043708768)
    w = np.array([[s, -s, np.nextafter(s, np.float32(1)), -np.nextafter(s, np.float32(0))]], dtype=np.float32)
    ints, scales, moved, relative = quantize_rows(w, 8)
    assert ints.tolist() == [[1, -1, 1, -1]]
    assert moved < 1e-8 and relative < 2.0 ** -21 and abs(float(scales[0]) - float(s)) < 1e-8
    ints, _, moved, _ = quantize_rows(np.array([[0.5, -0.25, 0.1]], np.float32), 4)
    assert ints.tolist() == [[7, -4, 1]] or ints.tolist() == [[7, -3, 1]]
    assert moved <= 0.5 / 7 / 2 + 1e-9  # half a step of the 4-bit grid


def test_clip_that_changes_the_sign_is_refused(tmp_path):
    class ReluSign(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.linear(torch.sign(torch.clamp(x, 0.0, 1.0)), torch.ones(3, 4))

    path = str(tmp_path / "m.onnx")
    torch.onnx.export(ReluSign(), (torch.zeros(1, 4),), path, opset_version=18)
    with pytest.raises(BnncError, match=r"Clip to \[0, 1\] in front of a sign changes the sign"):
        driver.compile_model(path, driver.Options())


def test_backward_only_nodes_do_not_block_but_needed_ones_fail_by_name(tmp_path):
    """An unsupported node whose value the output needs is reported as before (by node)."""
    class Squares(torch.nn.Module):
        def forward(self, x):
            h = torch.sign(x)
            return torch.nn.functional.linear(h * h, torch.ones(3, 4))  # Mul of two tensors

    path = str(tmp_path / "m.onnx")
    torch.onnx.export(Squares(), (torch.zeros(1, 4),), path, opset_version=18)
    with pytest.raises(BnncError, match=r"\(Mul\): Mul of two tensors is only supported"):
        driver.compile_model(path, driver.Options())


def test_fixed_affine_rounds_to_the_nearest_code():
    """q = floor((x*m + n) / 2**s) is within one unit of the exact a*x + b for every x (here:
    every code of an 8-bit input), the bound the pass states."""
    from bnnc import interp
    from bnnc.ir.graph import Graph
    from bnnc.ir.ops import Affine
    from bnnc.ir.types import Int, TensorType
    from bnnc.passes.qfx import to_fixed

    a = np.array([Fraction(1, 3), Fraction(-7, 5)], dtype=object)
    b = np.array([Fraction(2, 7), Fraction(0)], dtype=object)
    ops = (Affine("y", ("x",), scale=a, bias=b), Add("z", ("y", "y")))
    graph = Graph("g", (("x", TensorType(Int(8, True), (2,))),), ops, ("z",))
    fixed, error = to_fixed(graph, frac=10)
    x = np.stack([np.arange(-128, 128)] * 2, axis=1)
    y = interp.run(fixed, {"x": x}, trace=True)["y"]
    exact = [[(a[c] * int(v) + b[c]) * 1024 for c, v in enumerate(row)] for row in x]
    worst = max(abs(Fraction(int(q)) - e) for qrow, erow in zip(y, exact) for q, e in zip(qrow, erow))
    assert worst <= 1
    # the stated bound (value units) covers what was measured, and an add of y to itself doubles it
    assert float(worst) / 1024 <= error["y"] <= 1.0 / 1024
    assert error["z"] == pytest.approx(2 * error["y"])


class TwoConvBlock(torch.nn.Module):
    """x + BN(conv(sign(BN(conv(sign(x)))))): the shortcut skips two convs, so it is not inside
    the second conv's window (it would need a FIFO beside both): not built yet."""

    def __init__(self, channels: int = 4):
        super().__init__()
        self.stem = torch.nn.Conv2d(1, channels, 3, padding=1, bias=False)
        self.conv1 = R.BinaryConv(channels, channels, 3, padding=1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(channels)
        self.conv2 = R.BinaryConv(channels, channels, 3, padding=1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(channels)
        self.head = torch.nn.Linear(channels, 10)

    def forward(self, x):
        x = self.stem(x)
        h = self.bn2(self.conv2(torch.sign(self.bn1(self.conv1(torch.sign(x))))))
        return self.head(torch.nn.functional.adaptive_avg_pool2d(h + x, 1).flatten(1))


def test_a_shortcut_outside_the_window_is_refused_by_name(tmp_path):
    x = _inputs("conv")
    path = R.export(R.calibrated(TwoConvBlock(), x), tmp_path / "m.onnx", x)
    np.save(tmp_path / "x.npy", x[:48].numpy())
    out = tmp_path / "build"
    with pytest.raises(BnncError, match=r"residual add .*\(from ONNX node '/Add'\): its shortcut is not inside the "
                                        r"window of the conv in front of it; the Verilog and HLS backends do not build"):
        bnnc.compile(path, out, calibrate=str(tmp_path / "x.npy"), quantize_weights=8)
    assert not out.exists()
    check = bnnc.verify(path, x[:48].numpy(), backends=(), calibrate=str(tmp_path / "x.npy"), quantize_weights=8)
    assert check.ok  # the interpreter runs it, within the bound


@pytest.mark.slow  # 18 s; test_multiplier_free runs ReActNet in RTL by default
def test_reactnet_is_exact_in_rtl_and_hls(tmp_path):
    """RSign (sign(x - beta), whose sign of 0 is not 0: padding carries an in-map bit) and RPReLU
    after the shortcut (three fixed-point affines, one with a negative-side slope, in the layer)."""
    path, samples = _export(tmp_path, "reactnet")
    x = np.load(samples)[:16]
    check = bnnc.verify(path, x, backends=("rtl", "hls"), calibrate=samples, quantize_weights=8)
    assert [row.equal_to_reference for row in check.rows] == [len(x)] * 3, check.table()
    assert check.ok, check.table()
    rtl = bnnc.compile(path, tmp_path / "rtl", calibrate=samples, quantize_weights=8)
    assert lint(rtl.path / "rtl") == []
    text = (rtl.path / "rtl" / "bnnc_layer1.v").read_text()
    assert "in_map ? code" in text and "stage1_neg" in text  # padding made 0; the PReLU's slope


def test_bireal_net_is_exact_in_rtl_and_hls(tmp_path):
    """Each Bi-Real block is one layer that signs its fixed-point input and adds the shortcut
    from its own window (the centre; an average pool's 2x2 in the stride-2 block): RTL and HLS
    equal the interpreter on every sample, the RTL lints clean, and the measured cycles per
    frame and latency equal the manifest's."""
    path, samples = _export(tmp_path, "bireal-approxsign")
    x = np.load(samples)[:24]
    check = bnnc.verify(path, x, backends=("rtl", "hls"), calibrate=samples, quantize_weights=8)
    assert [row.equal_to_reference for row in check.rows] == [len(x)] * 3, check.table()
    assert check.ok, check.table()
    build = bnnc.compile(path, tmp_path / "build", calibrate=samples, quantize_weights=8, target="hls")
    kinds = [layer["post"]["kind"] for layer in build.manifest["hardware"]["layers"]]
    assert len(kinds) == 6  # stem, three residual blocks, the global average (a 0/1 conv), the head
    rtl = bnnc.compile(path, tmp_path / "rtl", calibrate=samples, quantize_weights=8)
    assert lint(rtl.path / "rtl") == []
    text = (rtl.path / "rtl" / "bnnc_layer2.v").read_text()
    assert "sign_of_input" in text and "group_taps" in text  # the stride-2 block: sign and shortcut
    # the timing model's cycles per frame and latency are what the RTL does
    compiled = driver.open_build(rtl.path)
    design = driver.hardware(compiled)
    env = interp.run(compiled.graph, {compiled.graph.inputs[0][0]: x}, trace=True)
    codes = design.serialize(env[driver.device_input(compiled.graph)])
    result = simulate(rtl.path / "rtl", codes, design, env[compiled.graph.outputs[0]].reshape(len(x), -1))
    hw = rtl.manifest["hardware"]
    assert (result.cycles_per_frame_measured, result.latency_measured) == (hw["cycles_per_frame"], hw["latency_cycles"])


@pytest.mark.parametrize("kind", ["gap-head", "reducemean-head", "avgpool"])
def test_fixed_point_chains_are_exact_in_rtl_and_hls(tmp_path, kind):
    """A BN output that flows on in fixed point (rounding shift in the layer's affine), a sum pool
    built as a 0/1-weight conv (global before the dense head, or 2x2 before a sign, whose exact
    division folds into the sign's threshold): Verilog and HLS C simulation equal the
    interpreter bit for bit, and the emitted RTL lints clean."""
    path, samples = _export(tmp_path, kind)
    x = np.load(samples)[:24]
    check = bnnc.verify(path, x, backends=("rtl", "hls"), calibrate=samples, quantize_weights=8)
    assert [row.equal_to_reference for row in check.rows] == [len(x)] * 3, check.table()
    assert check.rows[0].argmax_agreement == len(x)
    build = bnnc.compile(path, tmp_path / "build", calibrate=samples, quantize_weights=8)
    layers = build.manifest["hardware"]["layers"]
    assert any(layer["post"]["kind"] == "affine" for layer in layers[:-1])  # a fixed-point value flows on
    assert lint(tmp_path / "build" / "rtl") == []


def test_hardtanh_mlp_builds_hardware(tmp_path):
    """Sign(Hardtanh(x)) is Sign(x): the MLP is an ordinary binary MLP in hardware."""
    path, samples = _export(tmp_path, "hardtanh-mlp")
    assert "Clip" in {n.op_type for n in onnx.load(path).graph.node}
    build = bnnc.compile(path, tmp_path / "build", calibrate=samples, target="all")
    assert [layer["post"]["kind"] for layer in build.manifest["hardware"]["layers"]] == ["threshold", "affine"]


def test_run_warns_when_inputs_leave_the_calibrated_format(tmp_path, capfd):
    """quantize-inputs fixed the input format from calibration samples; inputs off its grid
    (digits plus noise) or outside its range are counted, not silently rounded."""
    path, samples = _export(tmp_path, "gap-head")
    x = np.load(samples)
    noisy = (x + np.random.default_rng(0).normal(0, 0.05, x.shape)).astype(np.float32)
    noisy[:3] += 5.0  # three samples far outside the calibrated range
    bnnc.verify(path, x, backends=(), calibrate=samples, quantize_weights=8)
    assert "calibrated range" not in capfd.readouterr().err  # the calibration set itself fits
    bnnc.verify(path, noisy, backends=(), calibrate=samples, quantize_weights=8)
    err = capfd.readouterr().err
    assert f"3 of {len(x)} samples leave the calibrated range" in err
    assert f"and {len(x) - 3} have values off its grid" in err


def _brevitas_bireal(seed: int, tmp_path) -> tuple[str, np.ndarray]:
    """A seeded Brevitas Bi-Real (unseeded, it depended on what ran before in the worker) with
    BatchNorm statistics from the test inputs, and 24 samples."""
    x = _inputs("conv")
    torch.manual_seed(seed)
    model = R.BrevitasBiReal()
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
    with torch.no_grad():
        model(x)
    path = R.export_qonnx(model, tmp_path / "m.onnx", x)
    assert {"Quant", "BipolarQuant", "Add"} <= {n.op_type for n in onnx.load(path).graph.node}
    return path, x[:24].numpy()


@pytest.mark.slow  # 14 s each; the default run's time
@pytest.mark.parametrize("seed", [0, 2])
def test_brevitas_bireal_is_exact_without_rounding_weights(seed, tmp_path):
    """Brevitas' 8-bit weight quantizer gives float32 products scale * n, which are not exactly
    a scale times integers; bnnc takes the quantizer's own integers (no --quantize-weights),
    and the residual blocks behind BipolarQuant (Sign(0) = +1, so padding carries an in-map bit)
    are exact in RTL and HLS. Seed 2 has a shortcut sum of -3.8e-6 in front of a sign, within
    the default 16 fraction bits' rounding (2.1e-5): calibrated on the samples, bnnc chooses
    enough bits for every sign to decide as in exact arithmetic."""
    path, samples = _brevitas_bireal(seed, tmp_path)
    np.save(tmp_path / "cal.npy", samples)
    check = bnnc.verify(path, samples, backends=("rtl", "hls"), calibrate=tmp_path / "cal.npy")
    assert [row.equal_to_reference for row in check.rows] == [len(samples)] * 3, check.table()
    assert check.ok and check.bound < float("inf"), check.table()


@pytest.mark.slow  # 5 s
def test_a_flipped_sign_is_named_with_its_remedy(tmp_path):
    """Uncalibrated (16 fraction bits), seed 2's sign after the first residual add flips on
    sample 14: verify says which node, on which sample, and what to do. Calibration used to
    compare against its finest format's scores, whose last layer rounds coarsely, and accepted
    the flip (it chose 14 bits, bound 5.2e-4, error 0.017)."""
    path, samples = _brevitas_bireal(2, tmp_path)
    check = bnnc.verify(path, samples, backends=())
    assert not check.ok and check.rows[0].max_error > 10 * check.bound
    assert "sample 14: ONNX node '/signs.1/act_quant/export_handler/BipolarQuant'" in check.why
    assert "--calibrate" in check.why and check.why in check.table()


def test_interpreter_lines_up_binary_points_beyond_int64():
    """Codes past int64 are Python integers in the interpreter; an add still shifts them (it once
    dropped the shifts there, and the RTL, which was right, disagreed with the reference)."""
    from bnnc import interp
    from bnnc.ir.graph import Graph
    from bnnc.ir.types import Int, TensorType

    one = np.array([1], dtype=np.int64)
    ops = (FixedAffine("a", ("x",), mult=one << 58, bias=0 * one, frac=58, error_bound=0.0),
           FixedAffine("b", ("x",), mult=one, bias=0 * one, frac=0, error_bound=0.0),
           Add("y", ("a", "b"), shifts=(0, 58)))
    graph = Graph("g", (("x", TensorType(Int(8, True), (1,))),), ops, ("y",))
    x = np.arange(-128, 128).reshape(-1, 1)
    y = interp.run(graph, {"x": x})["y"]
    assert [int(v) for v in y.ravel()] == [int(v) << 59 for v in x.ravel()]


def test_wire_codes_of_64_bits_and_more_round_trip():
    """Scores of fixed<64,...> and wider (many fraction bits on a shortcut) once overflowed
    int64 when the bench's vectors were written and its outputs read."""
    from bnnc.backends.hardware import decode, encode, pack, unpack
    from bnnc.ir.types import Fixed

    for bits in (63, 64, 70):
        elem = Fixed(bits, 40)
        values = np.array([elem.lo, elem.lo + 1, -1, 0, 1, elem.hi], dtype=object)
        word = pack(encode(values, elem), bits)
        assert word.bit_length() <= bits * len(values)
        assert decode(unpack(word, len(values), bits), elem).tolist() == values.tolist()


@pytest.mark.slow  # 20 s
def test_scores_wider_than_64_bits_are_exact_in_rtl(tmp_path):
    """28 fraction bits on the shortcuts make the head's score codes 64 bits wide on the wire."""
    path, samples = _brevitas_bireal(2, tmp_path)
    pipeline = "quantize-inputs,fold-constants,fold-thresholds,fold-constants,fold-fixed-point{frac=28}"
    build = bnnc.compile(path, tmp_path / "b", pipeline=pipeline)
    assert build.manifest["hardware"]["output"]["packing"] == "element i of a transfer at bits [i*64 +: 64]"
    check = bnnc.verify(path, samples, backends=("rtl",), pipeline=pipeline)
    assert [row.equal_to_reference for row in check.rows] == [len(samples)] * 2 and check.ok, check.table()


def test_input_width_is_widened_until_calibration_samples_keep_their_class(tmp_path, capfd):
    """A float model without an input quantizer, calibrated on digits plus noise (off any 8-bit
    grid): 8-bit inputs flip classes, so quantize-inputs (no width given) goes wider, and says so."""

    class FloatMLP(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.bn, self.fc2 = torch.nn.Linear(64, 64), torch.nn.BatchNorm1d(64), torch.nn.Linear(64, 10)

        def forward(self, x):
            w = self.fc2.weight
            return torch.nn.functional.linear(torch.sign(self.bn(self.fc1(x))), w + (torch.sign(w) - w).detach())

    torch.manual_seed(0)
    model = FloatMLP()
    with torch.no_grad():
        model.fc1.weight.copy_(torch.round(model.fc1.weight * 256) / 256)
    x = torch.from_numpy(DIGITS.reshape(len(DIGITS), -1)[:512])
    model.train()
    model(x)
    path = R.export(model.eval(), tmp_path / "m.onnx", x)
    noisy = (x[:200].numpy() + np.random.default_rng(0).normal(0, 0.05, (200, 64))).astype(np.float32)
    np.save(tmp_path / "noisy.npy", noisy)
    eight = "quantize-inputs{bits=8},fold-constants,fold-thresholds,fold-constants,fold-fixed-point"
    fixed = bnnc.verify(path, noisy, backends=(), calibrate=tmp_path / "noisy.npy", pipeline=eight)
    assert fixed.rows[0].argmax_agreement < len(noisy)  # 8 bits are not enough here
    capfd.readouterr()
    auto = bnnc.verify(path, noisy, backends=(), calibrate=tmp_path / "noisy.npy")
    assert auto.rows[0].argmax_agreement == len(noisy)
    assert "-bit inputs, the fewest with which all 200 calibration samples get the original's class" in capfd.readouterr().err
