"""HLS C++ backend: emitted projects are compiled with g++ (warnings are errors) and their C
simulation must equal the interpreter on every output of every vector.

The designs are hand-built graphs (element types, strides, pads, pools the exporters do not
reach) and every exported test model, each with and without channel-reuse under several
foldings. They are compiled in bundles (one g++ run per group of designs), in the background
while the next groups are prepared: the suite's time is mostly g++.
"""
from __future__ import annotations

import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from bnnc.backends.csim import CsimError, build_bundle, run_csim, run_executable
from bnnc.backends.hardware import Design, Layer, lower
from bnnc.backends.hls import emit
from bnnc.diagnostics import BnncError
from bnnc.driver import device_input, sample_inputs
from bnnc.frontend.onnx import import_onnx
from bnnc.interp import run
from bnnc.ir.fixed_ops import FixedAffine
from bnnc.ir.graph import Graph
from bnnc.ir.ops import ArgMax, Conv, Dense, Pool, Reshape, Threshold
from bnnc.ir.types import Bipolar, Fixed, Int, TensorType, Ternary
from bnnc.passes import DEFAULT_PIPELINE, parse_pipeline, run_pipeline
from bnnc.passes.channel_reuse import ChannelReuse

from tests.models import exporters as ex
from tests.test_conv import CONV_PRODUCERS, conv_model

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")

VECTORS = 256
HOSTILE_NAME = 'mlp */ "quoted"\n#error injected\n'

# ---- graphs built by hand


def _thresholds(rng, dots: np.ndarray, acc_hi: int, kind: str):
    """Thresholds and output values for `kind`, drawn from the dot products `dots` (N, C) that
    the test vectors produce, so that ties (dot == threshold) occur; two channels get thresholds
    beyond the accumulator's range (never or always firing)."""
    n, c = dots.shape
    levels, values = {
        "sign": (1, [-1, 1]),  # some channels reversed below, as a negative BatchNorm scale gives
        "ternary": (2, [-1, 0, 1]),
        "levels": (3, [0, 1, 2, 3]),
    }[kind]
    v = np.tile(np.array(values, dtype=np.int64), (c, 1))
    if kind == "levels":  # one row shared by all channels, as a per-tensor MultiThreshold
        return np.sort(dots[rng.integers(0, n, size=levels), 0])[None, :], v
    t = np.sort(dots[rng.integers(0, n, size=(c, levels)), np.arange(c)[:, None]], axis=1)
    t[0] = acc_hi * 10  # beyond the range: the lowest level always
    t[1] = -acc_hi * 10  # the top level always
    if kind == "sign":
        v[rng.random(c) < 0.3] = [1, -1]
    return t, v


def make_mlp(rng, in_elem, widths, hidden, final, argmax=False, name="mlp") -> Graph:
    """x -> (Dense -> Threshold[hidden kind]) * len(hidden) -> Dense -> final [-> ArgMax].
    final: 'affine' (FixedAffine with frac bits), 'threshold' or 'none' (raw dot products);
    a hidden 'none' feeds the raw dot products to the next layer."""
    assert len(hidden) == len(widths) - 2
    inputs = (("x", TensorType(in_elem, (widths[0],))),)
    test_vectors = {"x": random_inputs(np.random.default_rng(0), in_elem, widths[0])}
    ops, value = [], "x"
    for i, (k, c) in enumerate(zip(widths, widths[1:])):
        weights = rng.choice(np.array([-1, 1], dtype=np.int8), size=(c, k))
        ops.append(Dense(f"dot{i}", (value,), weights=weights, origin=f"MatMul_{i} <*/ weird>"))
        value = f"dot{i}"
        kind = hidden[i] if i < len(hidden) else final
        if kind in ("sign", "ternary", "levels", "threshold"):
            graph = Graph(name, inputs, tuple(ops), (value,))
            dots = run(graph, test_vectors)[value]
            t, v = _thresholds(rng, dots, graph.types[value].elem.hi, "levels" if kind == "threshold" else kind)
            ops.append(Threshold(f"act{i}", (value,), thresholds=t, values=v))
            value = f"act{i}"
        elif kind == "affine":
            mult = rng.integers(-200, 200, size=c)
            bias = rng.integers(-5000, 5000, size=c)
            ops.append(FixedAffine(f"score{i}", (value,), mult=mult, bias=bias, frac=5, error_bound=0.0))
            value = f"score{i}"
    if argmax:
        ops.append(ArgMax("label", (value,)))
        value = "label"
    return Graph(name, inputs, tuple(ops), (value,))


def random_inputs(rng, elem, count: int, n: int = VECTORS) -> np.ndarray:
    if isinstance(elem, Bipolar):
        x = rng.choice([-1, 1], size=(n, count))
    else:
        x = rng.integers(elem.lo, elem.hi + 1, size=(n, count))
    x[0], x[1] = (-1 if isinstance(elem, Bipolar) else elem.lo), elem.hi  # the extremes
    return x.astype(np.int64)


def make_cnn(rng, in_elem, in_shape, convs, final, name="cnn") -> Graph:
    """x -> [Conv -> Threshold -> (Pool)] per entry of convs -> flatten -> Dense -> final.
    A conv entry: (channels, kernel, stride, pads, pad_value, activation kind, pool (k, s) or None).
    Thresholds are drawn from the conv outputs of the test vectors (ties occur); pools mix max
    and min channels."""
    inputs = (("x", TensorType(in_elem, in_shape)),)
    x = random_inputs(np.random.default_rng(0), in_elem, int(np.prod(in_shape))).reshape((-1,) + in_shape)
    ops, value, shape = [], "x", in_shape
    for i, (c, kernel, stride, pads, pad_value, kind, pool) in enumerate(convs):
        weights = rng.choice(np.array([-1, 1], dtype=np.int8), size=(c, shape[0]) + kernel)
        ops.append(Conv(f"conv{i}", (value,), weights=weights, stride=stride, pads=pads, pad_value=pad_value,
                        origin=f"Conv_{i} */ <odd>"))
        graph = Graph(name, inputs, tuple(ops), (f"conv{i}",))
        dots = run(graph, {"x": x})[f"conv{i}"]
        t, v = _thresholds(rng, dots.transpose(0, 2, 3, 1).reshape(-1, c), graph.types[f"conv{i}"].elem.hi, kind)
        ops.append(Threshold(f"act{i}", (f"conv{i}",), thresholds=t, values=v))
        value = f"act{i}"
        if pool:
            modes = rng.choice(np.array([-1, 1], dtype=np.int8), size=c)
            ops.append(Pool(f"pool{i}", (value,), kernel=pool[0], stride=pool[1], modes=modes))
            value = f"pool{i}"
        shape = Graph(name, inputs, tuple(ops), (value,)).types[value].shape
    ops.append(Reshape("flat", (value,), shape=(int(np.prod(shape)),)))
    ops.append(Dense("dense", ("flat",), weights=rng.choice(np.array([-1, 1], dtype=np.int8),
                                                            size=(final[0], int(np.prod(shape))))))
    value = "dense"
    if final[1] == "affine":
        ops.append(FixedAffine("score", (value,), mult=rng.integers(-50, 50, size=final[0]),
                               bias=rng.integers(-500, 500, size=final[0]), frac=3, error_bound=0.0))
        value = "score"
    elif final[1] == "argmax":
        ops.append(ArgMax("label", (value,)))
        value = "label"
    return Graph(name, inputs, tuple(ops), (value,))


# ---- foldings


def _largest_divisor(n: int, limit: int) -> int:
    return max(d for d in range(1, min(n, limit) + 1) if n % d == 0)


def small_folding(design: Design, pe_max: int, simd_max: int) -> dict:
    """Small PE/SIMD for every weight layer: beats differ between layers (width converters
    split, gather or both) and conv windows arrive in whole pixels, several, or pieces."""
    return {layer.index: {"pe": _largest_divisor(layer.out_count, pe_max),
                          "simd": _largest_divisor(layer.in_count, simd_max)}
            for layer in design.layers if isinstance(layer, Layer)}


def folding(graph: Graph, style: str):
    """{} = fully unrolled, None = auto; 'folded' and 'folded-odd' give small PE/SIMD."""
    if style == "unrolled":
        return {}
    if style == "auto":
        return None
    return small_folding(lower(graph, {}), *{"folded": (4, 6), "folded-odd": (3, 8)}[style])


def with_reuse(graph: Graph, fold) -> Graph:
    """channel-reuse with the groups the folding needs (as the driver does it)."""
    layers = [layer for layer in lower(graph, fold).layers if isinstance(layer, Layer)]
    groups = tuple(0 if layer.pe == layer.out_count else layer.pe for layer in layers)
    return run_pipeline(graph, [ChannelReuse(groups=groups)])[0]


# ---- checks, compiled in bundles


@dataclass(frozen=True)
class Check:
    """A design and its test vectors: the device's input in stream order (design.serialize of
    the value feeding the device) and the interpreter's value of the last device op."""
    design: Design
    inputs: np.ndarray
    expected: np.ndarray


def graph_check(graph: Graph, fold, x: np.ndarray) -> Check:
    """A check of `graph` with model inputs x: what the device sees and must produce."""
    env = run(graph, {graph.inputs[0][0]: x}, trace=True)
    design = lower(graph, fold)
    last = [op for op in graph.ops if not graph.on_host(op)][-1].out
    return Check(design, design.serialize(env[device_input(graph)]), env[last].reshape(len(x), -1))


class Bundles:
    """Named groups of checks, each group compiled into one executable (csim.build_bundle) in
    the background, two compiler runs at a time, while the next groups are prepared."""

    def __init__(self, root: Path, workers: int = 2):
        self.root = root
        self.pool = ThreadPoolExecutor(workers)
        self.groups = {}  # name -> (future bundle, {label: Check}), or the error preparing it

    def add(self, name: str, make) -> None:
        try:
            checks = make()
            dirs = [self.root / name / label for label in checks]
            for check, folder in zip(checks.values(), dirs):
                emit(check.design, folder)
            self.groups[name] = (self.pool.submit(build_bundle, dirs, self.root / "cache"), checks)
        except Exception as exc:  # reported by the tests of this group
            self.groups[name] = exc

    def check(self, name: str, label: str) -> Design:
        entry = self.groups[name]
        if isinstance(entry, Exception):
            raise entry
        bundle, checks = entry
        check = checks[label]
        got = run_executable([str(bundle.result()), str(list(checks).index(label))], check.design, check.inputs)
        assert got.shape == check.expected.shape
        mismatches = np.argwhere(got != check.expected)
        assert len(mismatches) == 0, f"{len(mismatches)} mismatches, first at {mismatches[0]}"
        return check.design


# hand-built MLPs: element types, activations, widths that straddle words
CASES = {
    # in_elem, widths, hidden activations, final, argmax
    "u8-sign-ternary-affine": (Int(8, False), [32, 24, 16, 10], ["sign", "ternary"], "affine", False),
    "ternary-sign-affine-argmax": (Ternary(), [30, 24, 12], ["sign"], "affine", True),
    "bipolar-levels-threshold": (Bipolar(), [48, 24, 16, 8], ["sign", "levels"], "threshold", False),
    "fixed8-dot": (Fixed(8, 3), [18, 6], [], "none", False),
    # 7-, 14- and 19-bit elements straddle the 64-bit words of wide beats
    "u7-dot-dot": (Int(7, False), [60, 20, 12], ["none"], "none", False),
    "s4-ternary-dot-argmax": (Int(4, True), [20, 12, 6], ["ternary"], "none", True),
}
FOLDINGS = ("unrolled", "folded", "folded-odd", "auto")


def mlp_checks(case: str) -> dict[str, Check]:
    in_elem, widths, hidden, final, argmax = CASES[case]
    graph = make_mlp(np.random.default_rng(sum(map(ord, case))), in_elem, widths, hidden, final, argmax,
                     name=HOSTILE_NAME)
    x = random_inputs(np.random.default_rng(0), in_elem, widths[0])
    return {style: graph_check(graph, folding(graph, style), x) for style in FOLDINGS}


# hand-built conv nets: what the exported models below do not reach -- strides (with rows no
# window uses), asymmetric pads, overlapping pools, integer maps padded with 1, windows of
# several pixels or pieces of one
CONV_CASES = {
    "bipolar-stride2-asymmetric-zero-pad": (Bipolar(), (3, 9, 7), [
        (8, (3, 2), (2, 1), (1, 0, 2, 1), 0, "sign", ((3, 3), (2, 2)))], (6, "none")),
    "u4-gaps-then-integer-pad-one": (Int(4, False), (2, 9, 8), [
        (6, (2, 2), (3, 3), (0, 0, 0, 0), 0, "levels", None),
        (4, (3, 3), (1, 1), (1, 1, 1, 1), 1, "ternary", ((2, 2), (1, 1)))], (5, "affine")),
    "bipolar-minus-one-pad-then-zero-pad-stride2": (Bipolar(), (4, 6, 6), [
        (8, (3, 3), (1, 1), (1, 1, 1, 1), -1, "sign", None),
        (6, (3, 3), (2, 2), (1, 1, 1, 1), 0, "sign", None)], (7, "argmax")),
}
CONV_VARIANTS = ("unrolled", "auto", "folded", "reuse-unrolled", "reuse-folded")


def cnn_checks(case: str) -> dict[str, Check]:
    in_elem, in_shape, convs, final = CONV_CASES[case]
    graph = make_cnn(np.random.default_rng(sum(map(ord, case))), in_elem, in_shape, convs, final, name=HOSTILE_NAME)
    x = random_inputs(np.random.default_rng(1), in_elem, int(np.prod(in_shape))).reshape((-1,) + in_shape)
    checks = {}
    for variant in CONV_VARIANTS:
        fold = folding(graph, variant.removeprefix("reuse-"))
        checks[variant] = graph_check(with_reuse(graph, fold) if "reuse" in variant else graph, fold, x)
    return checks


# exported models: every conv producer of test_conv, the onnx.helper conv nets, the MLP exporters
# (not torch_sign_mlp(dynamo=True): its weights go to an external .data file, which the
# frontend's load_model does not read yet)
MODELS = dict(CONV_PRODUCERS)
for _pads_as, _pad_value in (("conv", 0.0), ("pad", 0.0), ("pad", 1.0), ("pad", -1.0)):
    for _pool in ("after", "before"):
        MODELS[f"onnx-{_pads_as}{_pad_value:+g}-pool-{_pool}"] = (
            lambda p, a=_pads_as, v=_pad_value, o=_pool: conv_model(p, v, a, o))
MODELS.update({
    "brevitas-mlp": lambda p: ex.brevitas_mlp(p, sizes=(32, 16, 10), in_features=64),
    "brevitas-mlp-bipolar-in": lambda p: ex.brevitas_mlp(p, sizes=(32, 16, 10), in_features=64, input_quant="bipolar"),
    "brevitas-mlp-dynamo": lambda p: ex.brevitas_mlp(p, sizes=(32, 16, 10), in_features=64, dynamo=True),
    "torch-sign-mlp": lambda p: ex.torch_sign_mlp(p),
    "torch-ste-add-mlp": lambda p: ex.torch_sign_mlp(p, ste="ste_add"),
    "torch-where-mlp": lambda p: ex.torch_sign_mlp(p, ste="where"),
    "torch-pm1-bias-bn-mlp": lambda p: ex.torch_sign_mlp(p, weights="pm1", bias=True, final_bn=True),
    "finn-multithreshold-mlp": lambda p: ex.finn_multithreshold_mlp(p),
    "finn-multithreshold-mlp-8bit": lambda p: ex.finn_multithreshold_mlp(p, input_bits=8),
})
MODEL_VARIANTS = ("auto", "folded", "reuse-auto", "reuse-folded")
VECTORS_PER_MODEL = 128


def model_checks(model: str, folder: Path) -> dict[str, Check]:
    """The model through bnnc's passes, with and without channel-reuse (grouped by the folding,
    as the driver does), under auto folding and a small one; the reference is the interpreter
    on the model's sample inputs."""
    path = MODELS[model](folder / f"{model}.onnx")
    source = import_onnx(path)
    graph = run_pipeline(source, parse_pipeline(DEFAULT_PIPELINE))[0]
    x = sample_inputs(source, VECTORS_PER_MODEL)
    fold = small_folding(lower(graph), 4, 6)
    graphs = {"auto": (graph, None), "folded": (graph, fold),
              "reuse-auto": (with_reuse(graph, None), None), "reuse-folded": (with_reuse(graph, fold), fold)}
    return {variant: graph_check(g, f, x) for variant, (g, f) in graphs.items()}


# every bundled group by name: a function of a scratch folder giving its checks by label
GROUPS = {
    **{f"mlp-{case}": lambda folder, case=case: mlp_checks(case) for case in CASES},
    **{f"cnn-{case}": lambda folder, case=case: cnn_checks(case) for case in CONV_CASES},
    **{model: lambda folder, model=model: model_checks(model, folder) for model in MODELS},
}


def _group(item) -> str | None:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("group") if callspec else None


@pytest.fixture(scope="module")
def bundles(request, tmp_path_factory):
    """The groups the selected tests use, prepared in their order while g++ compiles the
    previous ones."""
    root = tmp_path_factory.mktemp("bundles")
    wanted = [_group(item) for item in request.session.items if item.module is request.module]
    groups = Bundles(root)
    for name in dict.fromkeys(name for name in wanted if name):
        groups.add(name, lambda name=name: GROUPS[name](root))
    yield groups
    groups.pool.shutdown(cancel_futures=True)


@pytest.mark.parametrize("group, style", [(f"mlp-{c}", s) for c in CASES for s in FOLDINGS])
def test_mlp_bit_exact(bundles, group, style):
    bundles.check(group, style)


@pytest.mark.parametrize("group, variant", [(f"cnn-{c}", v) for c in CONV_CASES for v in CONV_VARIANTS])
def test_conv_bit_exact(bundles, group, variant):
    design = bundles.check(group, variant)
    layers = [layer for layer in design.layers if isinstance(layer, Layer)]
    assert ("reuse" in variant) == any(layer.reuse is not None for layer in layers)


@pytest.mark.parametrize("group, variant", [(m, v) for m in MODELS for v in MODEL_VARIANTS])
def test_exported_model_bit_exact(bundles, group, variant):
    """HLS csim == bnnc.interp on every output of VECTORS_PER_MODEL sample inputs."""
    design = bundles.check(group, variant)
    layers = [layer for layer in design.layers if isinstance(layer, Layer)]
    if variant.startswith("reuse"):
        assert any(layer.reuse is not None for layer in layers)
    if variant.endswith("folded"):
        assert any(layer.pe < layer.out_count for layer in layers)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("csim-cache")


def check_bit_exact(graph: Graph, fold, tmp_path: Path, cache: Path, seed: int = 0, **csim):
    design = lower(graph, fold)
    emit(design, tmp_path / "hls")
    x = random_inputs(np.random.default_rng(seed), graph.inputs[0][1].elem, design.in_count)
    expected = run(graph, {"x": x})[graph.outputs[0]]
    got = run_csim(tmp_path / "hls", design, x, cache_dir=cache, **csim)
    assert got.shape == expected.shape
    mismatches = np.argwhere(got != expected)
    assert len(mismatches) == 0, f"{len(mismatches)} mismatches, first at {mismatches[0]}"
    return design


def test_odd_widths_split_wide_beats(tmp_path, cache):
    """140-bit beats of 14-bit elements split to 2 elements, then gathered to 4."""
    in_elem, widths, hidden, final, argmax = CASES["u7-dot-dot"]
    graph = make_mlp(np.random.default_rng(2), in_elem, widths, hidden, final, argmax)
    check_bit_exact(graph, {0: {"pe": 10, "simd": 12}, 1: {"pe": 4, "simd": 4}}, tmp_path, cache)


def test_wide_first_layer_folded(tmp_path, cache):
    """784 8-bit inputs (a 784 x 64 layer), SIMD above 64 so weight words need hex strings."""
    rng = np.random.default_rng(784)
    graph = make_mlp(rng, Int(8, False), [784, 64, 10], ["sign"], "affine", argmax=True)
    design = check_bit_exact(graph, {0: {"pe": 8, "simd": 112}, 1: {"pe": 2, "simd": 16}}, tmp_path, cache)
    assert design.layers[0].cycles == 56


def test_wide_bipolar_unrolled(tmp_path, cache):
    """A 784-bit input beat and 784-bit weight words, fully parallel."""
    rng = np.random.default_rng(7)
    graph = make_mlp(rng, Bipolar(), [784, 16, 10], ["sign"], "none")
    check_bit_exact(graph, {}, tmp_path, cache)


@pytest.mark.parametrize("style", ["auto", pytest.param("unrolled", marks=pytest.mark.slow)])
def test_sfc_sized(style, tmp_path, cache):
    """FINN's SFC topology, 784-256-256-256-10 with 8-bit inputs."""
    rng = np.random.default_rng(256)
    graph = make_mlp(rng, Int(8, False), [784, 256, 256, 256, 10], ["sign"] * 3, "affine", argmax=True)
    check_bit_exact(graph, folding(graph, style), tmp_path, cache)


@pytest.mark.skipif(not os.environ.get("BNNC_AP_TYPES"), reason="set BNNC_AP_TYPES to a folder with ap_int.h")
@pytest.mark.parametrize("case", ["u8-sign-ternary-affine", "bipolar-levels-threshold"])
def test_vendor_headers(case, tmp_path, cache):
    """The same kernels on Xilinx's own ap_int/hls_stream (their headers warn under -Wextra)."""
    in_elem, widths, hidden, final, argmax = CASES[case]
    graph = make_mlp(np.random.default_rng(1), in_elem, widths, hidden, final, argmax)
    check_bit_exact(graph, folding(graph, "folded-odd"), tmp_path, cache, extra_flags=vendor_flags())


def vendor_flags() -> tuple[str, ...]:
    """Xilinx's headers (hls4ml ships them in templates/vivado/ap_types) warn under -Wextra."""
    return ("-isystem", os.environ["BNNC_AP_TYPES"], "-Wno-uninitialized", "-Wno-maybe-uninitialized")


@pytest.mark.skipif(not os.environ.get("BNNC_AP_TYPES"), reason="set BNNC_AP_TYPES to a folder with ap_int.h")
@pytest.mark.parametrize("case, variant", [("bipolar-stride2-asymmetric-zero-pad", "reuse-folded"),
                                           ("u4-gaps-then-integer-pad-one", "reuse-unrolled"),
                                           ("bipolar-minus-one-pad-then-zero-pad-stride2", "folded")])
def test_vendor_headers_conv(case, variant, tmp_path, cache):
    """Windows, pools and reuse trees on Xilinx's ap_int/hls_stream."""
    check = cnn_checks(case)[variant]
    emit(check.design, tmp_path)
    got = run_csim(tmp_path, check.design, check.inputs, cache_dir=cache, extra_flags=vendor_flags())
    np.testing.assert_array_equal(got, check.expected)


def test_constant_channels(tmp_path, cache):
    """A threshold with no levels (a BatchNorm with zero scale) outputs its one value."""
    rng = np.random.default_rng(11)
    x = ("x", TensorType(Int(3, True), (12,)))
    ops = (Dense("dot0", ("x",), weights=rng.choice(np.array([-1, 1], dtype=np.int8), size=(8, 12))),
           Threshold("act0", ("dot0",), thresholds=np.zeros((8, 0), dtype=np.int64),
                     values=rng.choice([-1, 1], size=(8, 1))),
           Dense("dot1", ("act0",), weights=rng.choice(np.array([-1, 1], dtype=np.int8), size=(4, 8))))
    graph = Graph("constant", (x,), ops, ("dot1",))
    check_bit_exact(graph, {0: {"pe": 2, "simd": 4}}, tmp_path, cache)


MULTI_VECTOR_CPP = r"""
// matrix_vector with VECTORS=3 in one call equals three calls with one vector each.
#include <cstdio>
#include "bnn/bnn.hpp"
constexpr int K = 12, C = 6, SIMD = 4, PE = 2, ACC_W = 12;
typedef bnn::Signed<5> elem;
static const ap_uint<SIMD> weights[PE][(C / PE) * (K / SIMD)] = {
    {0x1, 0x2, 0x3, 0x4, 0x5, 0x6, 0x7, 0x8, 0x9}, {0xa, 0xb, 0xc, 0xd, 0xe, 0xf, 0x0, 0x5, 0xa}};
static const bnn::PassActivation<ACC_W> pass = {};
int main() {
  hls::stream<ap_uint<SIMD * 5> > in_one("in_one"), in_three("in_three");
  hls::stream<ap_uint<PE * ACC_W> > out_one("out_one"), out_three("out_three");
  for (int v = 0; v < 3; v++) {
    for (int b = 0; b < K / SIMD; b++) {
      ap_uint<SIMD * 5> beat = 0;
      for (int e = 0; e < SIMD; e++) bnn::set_field<5>(beat, e, elem::code((v * 7 + b * 5 + e * 3) % 31 - 15));
      in_one.write(beat);
      in_three.write(beat);
    }
    bnn::matrix_vector<K, C, SIMD, PE, elem, ACC_W>(in_one, out_one, weights, pass);
  }
  bnn::matrix_vector<K, C, SIMD, PE, elem, ACC_W, 3>(in_three, out_three, weights, pass);
  int beats = 0;
  while (!out_one.empty()) {
    if (static_cast<long long>(out_one.read()) != static_cast<long long>(out_three.read())) return 1;
    beats++;
  }
  std::printf("%d\n", beats);
  return out_three.empty() && beats == 3 * C / PE ? 0 : 1;
}
"""


def test_matrix_vector_several_vectors_per_frame(tmp_path):
    """The hook for convolutions: several input vectors (output pixels) per call."""
    import subprocess

    from bnnc.backends.csim import CXX_FLAGS
    from bnnc.backends.hls import kernel_dir

    (tmp_path / "multi.cpp").write_text(MULTI_VECTOR_CPP)
    binary = tmp_path / "multi"
    subprocess.run(["g++", *CXX_FLAGS, "-I", str(kernel_dir().parent), str(tmp_path / "multi.cpp"),
                    "-o", str(binary)], check=True)
    assert subprocess.run([str(binary)], capture_output=True, text=True).stdout.strip() == "9"


@pytest.mark.parametrize("net", ["mlp", "cnn"])
def test_emit_is_deterministic(tmp_path, net):
    """Same bytes twice; names from the model stay inside comments and strings, sanitised."""
    rng = np.random.default_rng(3)
    if net == "mlp":
        graph = make_mlp(rng, Int(8, False), [32, 24, 16, 10], ["sign", "ternary"], "affine", name=HOSTILE_NAME)
    else:
        in_elem, in_shape, convs, final = CONV_CASES["u4-gaps-then-integer-pad-one"]
        graph = make_cnn(rng, in_elem, in_shape, convs, final, name=HOSTILE_NAME)
        graph = with_reuse(graph, None)
    a = emit(lower(graph, None), tmp_path / "a")
    b = emit(lower(graph, None), tmp_path / "b")
    assert [p.relative_to(tmp_path / "a") for p in a] == [p.relative_to(tmp_path / "b") for p in b]
    for pa, pb in zip(a, b):
        assert pa.read_bytes() == pb.read_bytes(), pa.name
    generated = "".join(p.read_text() for p in a)
    assert "#error" not in generated and "*/ \"" not in generated and "<" + "odd>" not in generated
    assert ("weird" if net == "mlp" else "odd") in generated


def test_reuse_across_channel_groups_is_refused(tmp_path):
    """A tree built for the whole layer cannot run on PE=2: a parent would be in another clock."""
    graph = make_mlp(np.random.default_rng(9), Bipolar(), [64, 16, 4], ["sign"], "none")
    graph = with_reuse(graph, {})  # groups for the fully parallel layer
    with pytest.raises(BnncError, match="another clock"):
        emit(lower(graph, {0: {"pe": 2, "simd": 64}}), tmp_path)


def test_compile_errors_carry_the_compiler_message(tmp_path):
    graph = make_mlp(np.random.default_rng(5), Bipolar(), [8, 4, 2], ["sign"], "none")
    design = lower(graph, {})
    emit(design, tmp_path)
    with (tmp_path / "bnnc_top.cpp").open("a") as f:
        f.write("int broken = ;\n")
    with pytest.raises(CsimError, match="expected primary-expression"):
        run_csim(tmp_path, design, np.ones((1, 8), dtype=np.int64))


def test_invalid_input_values_are_rejected(tmp_path):
    graph = make_mlp(np.random.default_rng(5), Bipolar(), [8, 4, 2], ["sign"], "none")
    design = lower(graph, {})
    emit(design, tmp_path)
    with pytest.raises(CsimError, match="not a valid bipolar value"):
        run_csim(tmp_path, design, np.zeros((1, 8), dtype=np.int64))


def hls_reuse_children(project: Path, layer: str) -> int:
    """Channels the generated C++ computes from a parent: nonzero entries of the reuse tree's
    depth table in bnnc_params.hpp (the first initializer of `<layer>_reuse`)."""
    text = (project / "bnnc_params.hpp").read_text()
    rest = text[text.index(f"{layer}_reuse = {{") + len(f"{layer}_reuse = {{"):]
    start, level = rest.index("{"), 0
    for end, char in enumerate(rest[start:], start):  # noqa: B007 (end is used after the loop)
        level += {"{": 1, "}": -1}.get(char, 0)
        if level == 0:
            break
    return sum(int(v) != 0 for v in re.findall(r"-?\d+", rest[start:end]))


def test_manifest_states_each_backends_reuse(tmp_path):
    """Folded over channel groups (PE < C), the HLS backend computes children from their
    parent in the same group while the Verilog backend computes every channel from scratch. The
    manifest says both, and each count is what that backend's generated code holds."""
    from bnnc.backends.manifest import design_manifest
    from bnnc.backends.verilog import emit as emit_rtl

    from tests.test_verilog import rtl_reuse_children

    fold = {0: {"pe": 4, "simd": 16}}
    graph = with_reuse(make_mlp(np.random.default_rng(3), Bipolar(), [64, 16, 4], ["sign"], "none"), fold)
    design = lower(graph, fold)
    emit(design, tmp_path / "hls")
    emit_rtl(design, tmp_path / "rtl")
    reuse = design_manifest(design)["layers"][0]["reuse"]
    built_in_hls = hls_reuse_children(tmp_path / "hls", "layer0")
    assert reuse["tree_children"] == built_in_hls == reuse["hls"]["children_in_hardware"] > 0
    assert reuse["children_in_hardware"] == len(rtl_reuse_children(tmp_path / "rtl", 0)) == 0
    assert reuse["policy"].startswith("verilog: ") and "channel group" in reuse["hls"]["policy"]
