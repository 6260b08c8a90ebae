"""--multiplier-free K (fold-fixed-point{multiplier-free=K}): every constant the hardware multiplies
by is rounded to at most K signed powers of two, and the backends build those products from
shifts and adds. Checked here: the signed-digit helpers against brute force, the rounding's
promise (every multiplier of the folded graph has at most K digits), RTL and HLS bit-exact to the
interpreter on residual BNNs, no multiplier in the RTL (Yosys), and the user-facing options."""
from __future__ import annotations

import bisect
import json
import re
import shutil
import subprocess
import sys
from fractions import Fraction
from itertools import product

import bnnc
import numpy as np
import pytest
from bnnc import driver
from bnnc.diagnostics import BnncError
from bnnc.ir.ops import Affine, Conv, Dense
from bnnc.ir.signed_digits import digit_count, nearest_integer_digits, nearest_signed_digits, signed_digits
from bnnc.passes.multiplier_free import constrain, multiplier_digits

from sim.lint import lint
from tests.test_residual import _export


def _sums(k: int, exps) -> set[Fraction]:
    """Every sum of at most k signed powers of two 2**e, e in exps."""
    powers = [Fraction(2) ** e for e in exps]
    found = {Fraction(0)}
    for r in range(1, k + 1):
        for picked in product(powers, repeat=r):
            for signs in product((1, -1), repeat=r):
                found.add(sum(s * p for s, p in zip(signs, picked)))
    return found


def _fewest_terms(limit: int) -> dict[int, int]:
    """Brute force (breadth first): the fewest signed powers of two that sum to each integer in
    [-limit, limit], passing through values up to 4 * limit on the way."""
    powers = [1 << e for e in range((4 * limit).bit_length() + 1)]
    fewest, frontier, k = {0: 0}, [0], 0
    while frontier:
        k += 1
        reached = []
        for v in frontier:
            for p in powers:
                for w in (v + p, v - p):
                    if abs(w) <= 4 * limit and w not in fewest:
                        fewest[w] = k
                        reached.append(w)
        frontier = reached
    return {v: n for v, n in fewest.items() if abs(v) <= limit}


# ---- the signed-digit helpers

def test_canonical_signed_digits_are_the_fewest():
    fewest = _fewest_terms(700)
    for n in range(-700, 701):
        digits = signed_digits(n)
        assert sum(s * 2 ** e for s, e in digits) == n
        exps = [e for _, e in digits]
        assert all(b - a >= 2 for a, b in zip(exps, exps[1:]))  # non-adjacent, ascending
        assert len(digits) == digit_count(n) == fewest[n], n


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_nearest_integer_digits_against_brute_force(k):
    candidates = sorted(v for v in _sums(k, range(11)) if v.denominator == 1)
    for n in range(-400, 401):
        got = nearest_integer_digits(n, k)
        best = min(candidates, key=lambda c: (abs(n - c), digit_count(int(c)), abs(c)))
        assert got == best, (n, k)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_nearest_signed_digits_against_brute_force(k):
    """Rationals in [1/32, 4), nearest among all sums of at most k signed powers 2**-24 .. 2**3
    (finer ones never win for these denominators)."""
    candidates = sorted(_sums(k, range(-24, 4)))
    rng = np.random.default_rng(k)
    for _ in range(1500):
        v = Fraction(int(rng.integers(-4000, 4000)), int(rng.integers(1, 1000))) / 8
        if not Fraction(1, 32) <= abs(v) < 4:
            continue
        i = bisect.bisect_left(candidates, v)
        near = candidates[max(0, i - 2):i + 2]
        best = min(near, key=lambda c: (abs(v - c), digit_count(c.numerator), abs(c)))
        assert nearest_signed_digits(v, k) == best, (v, k)


def test_rounding_a_few_digits_to_a_coarser_grid_keeps_them_few():
    """What fold-fixed-point relies on: a multiplier round(a * 2**s) made from a scale a with at
    most k signed digits has at most k digits itself, at every grid (half to even, as it rounds)."""
    for k in (1, 2, 3):
        for v in _sums(k, range(-9, 3)):
            for frac in range(0, 10):
                assert digit_count(round(v * 2 ** frac)) <= k, (v, frac)


# ---- the rounding in fold-fixed-point

def test_folded_multipliers_have_at_most_k_digits(tmp_path):
    path, samples = _export(tmp_path, "reactnet")
    plain = driver.compile_model(path, driver.Options(calibrate=samples, quantize_weights=8))
    assert multiplier_digits(plain.graph) > 3  # without the option: full multipliers
    for k in (1, 2, 3):
        compiled = driver.compile_model(path, driver.Options(calibrate=samples, quantize_weights=8, multiplier_free=k))
        assert 1 <= multiplier_digits(compiled.graph) <= k
        assert compiled.multiplier_free == k and "--multiplier-free" in compiled.rounded_by


def test_weights_make_up_for_their_scale(tmp_path):
    """A multi-bit weight layer feeding an affine: each weight is rounded with its channel
    scale's rounding folded in, so with one digit each product a' * w' is the power of two
    nearest to a * w (within a third of it) instead of compounding two roundings."""
    path, samples = _export(tmp_path, "bireal")
    graph = driver.compile_model(path, driver.Options(quantize_weights=8, pipeline="fold-constants")).graph
    rounded, moves = constrain(graph, 1)
    stem = next(op for op in graph.ops if isinstance(op, Conv) and np.abs(op.weights).max() > 1)
    affine = graph.consumers(stem.out)[0]
    new_stem = next(op for op in rounded.ops if op.out == stem.out)
    new_affine = next(op for op in rounded.ops if op.out == affine.out)
    assert isinstance(affine, Affine) and any(m.what == "weights" and m.compensated for m in moves)
    c = stem.weights.shape[0]
    a = np.broadcast_to(affine.scale, (c,))
    a2 = np.broadcast_to(new_affine.scale, (c,))
    for ch in range(c):
        for w, w2 in zip(stem.weights[ch].ravel().tolist(), new_stem.weights[ch].ravel().tolist()):
            exact, got = Fraction(a[ch]) * w, Fraction(a2[ch]) * w2
            assert abs(got - exact) <= abs(exact) / 3
            assert digit_count(w2) <= 1 and (Fraction(a2[ch]).denominator & (Fraction(a2[ch]).denominator - 1)) == 0
    # and the unrounded weights (times their rounded scale) would have moved further somewhere
    worst = max(abs(Fraction(a2[ch]) * nearest_integer_digits(w, 1) - Fraction(a[ch]) * w) / abs(Fraction(a[ch]) * w)
                for ch in range(c) for w in stem.weights[ch].ravel().tolist() if w)
    assert worst > Fraction(1, 3)


def test_binary_weights_stay_binary(tmp_path):
    path, samples = _export(tmp_path, "bireal")
    compiled = driver.compile_model(path, driver.Options(calibrate=samples, quantize_weights=8, multiplier_free=1))
    plain = driver.compile_model(path, driver.Options(calibrate=samples, quantize_weights=8))
    rounded = {op.out: op for op in compiled.graph.ops}
    layers = [(op, rounded[op.out]) for op in plain.graph.ops if isinstance(op, (Dense, Conv))]
    binary = [(a, b) for a, b in layers if np.all(np.abs(a.weights) == 1)]
    assert binary and all(np.array_equal(a.weights, b.weights) for a, b in binary)
    assert any(not np.array_equal(a.weights, b.weights) for a, b in layers)


# ---- hardware: bit-exact, and no multipliers

DATA_PRODUCT = re.compile(r"\w+(\[[^\]]*\])? \* \w")  # signal * signal (widths and indices aside)


def _products(rtl_dir) -> list[str]:
    """Lines of the layers' RTL that multiply two signals (not parameters or localparams)."""
    lines = []
    for path in sorted(rtl_dir.glob("bnnc_layer*.v")):
        for line in path.read_text().splitlines():
            code = line.split("//")[0]
            if "localparam" in code or "parameter" in code:
                continue
            if DATA_PRODUCT.search(re.sub(r"\[[^\]]*\]", "", code)):
                lines.append(f"{path.name}: {line.strip()}")
    return lines


# ReActNet (K = 1: RPReLU stages with digit multipliers on both sides) in the default run; the
# Bi-Real net at K = 2 is a slow test (CI runs it) -- test_yosys_finds_no_multiplier compiles it.
@pytest.mark.parametrize("kind,k", [pytest.param("bireal-approxsign", 2, marks=pytest.mark.slow), ("reactnet", 1)])
def test_residual_nets_are_exact_in_rtl_and_hls(tmp_path, kind, k):
    """Multi-bit stem and head weights as digits (bnnc_shift_dot), the affine post-ops and the
    RPReLU stages after the shortcut (one a PReLU with its negative-side slope) by shifts and
    adds: RTL and HLS equal the interpreter bit for bit; the table says the model was rounded
    and still states the fixed-point bound against the rounded model."""
    path, samples = _export(tmp_path, kind)
    x = np.load(samples)[:16]
    check = bnnc.verify(path, x, backends=("rtl", "hls"), calibrate=samples, quantize_weights=8, multiplier_free=k)
    assert [row.equal_to_reference for row in check.rows] == [len(x)] * 3, check.table()
    assert check.ok and check.bound == float("inf") and 0 < check.stated < float("inf")
    assert "--multiplier-free rounded weights and scales" in check.table()
    assert f"rounded model {check.stated:.3g}" in check.table()
    build = bnnc.compile(path, tmp_path / "build", calibrate=samples, quantize_weights=8, multiplier_free=k,
                         target="all")
    rtl = build.path / "rtl"
    assert lint(rtl) == []
    assert _products(rtl) == []
    assert (build.path / "hls" / "include" / "bnn" / "shift_add.hpp").is_file()
    plain = bnnc.compile(path, tmp_path / "plain", calibrate=samples, quantize_weights=8, target="all")
    assert _products(plain.path / "rtl")  # the check finds the multipliers that are there without it
    assert not (plain.path / "rtl" / "bnnc_shift_add.v").exists()
    assert not (plain.path / "hls" / "include" / "bnn" / "shift_add.hpp").exists()


def _yosys_multipliers(rtl_dir) -> int:
    """$mul cells in the design as Yosys elaborates and flattens it (before any optimisation or mapping)."""
    files = " ".join(str(rtl_dir / name) for name in (rtl_dir / "filelist.f").read_text().split())
    stat = rtl_dir.parent / "mul_stat.txt"
    subprocess.run(["yosys", "-q", "-p", f"read_verilog {files}; hierarchy -top bnnc_top; proc; flatten; "
                    f"tee -q -o {stat} stat"], check=True, capture_output=True)
    found = re.search(r"\$mul\s+(\d+)", stat.read_text())
    return int(found.group(1)) if found else 0


@pytest.mark.skipif(shutil.which("yosys") is None, reason="yosys is not installed")
def test_yosys_finds_no_multiplier(tmp_path):
    """Yosys' own count: $mul cells in the RTL of a Bi-Real net (8-bit stem and head, residual
    blocks with fixed-point affines) without the option, none with it."""
    path, samples = _export(tmp_path, "bireal")
    with_mf = bnnc.compile(path, tmp_path / "mf", calibrate=samples, quantize_weights=8, multiplier_free=2)
    plain = bnnc.compile(path, tmp_path / "plain", calibrate=samples, quantize_weights=8)
    assert _yosys_multipliers(plain.path / "rtl") > 0
    assert _yosys_multipliers(with_mf.path / "rtl") == 0


# ---- the options

def test_cli_reports_the_rounding_and_records_it(tmp_path):
    path, samples = _export(tmp_path, "bireal")
    out = tmp_path / "build"
    done = subprocess.run([sys.executable, "-m", "bnnc", "compile", path, "-o", str(out), "--quantize-weights", "8",
                           "--calibrate", samples, "--multiplier-free", "2"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    notes = [line for line in done.stderr.splitlines() if "multiplier-free:" in line]
    assert any("scales rounded to at most 2 signed powers of two" in line for line in notes)
    assert any("weights rounded" in line for line in notes)
    assert json.loads((out / "build.json").read_text())["options"]["multiplier_free"] == 2
    manifest = json.loads((out / "manifest.json").read_text())
    assert "weights and scales as --multiplier-free rounded them" in manifest["output"]["meaning"]
    assert any("multiplier-free=2" in record["name"] for record in manifest["passes"])
    # `bnnc run` recompiles with the recorded option: the same (rounded) model
    x = np.load(samples)[:4]
    assert np.array_equal(bnnc.run(out, x, backend="interp"),
                          driver.execute(driver.compile_model(path, driver.Options(
                              calibrate=samples, quantize_weights=8, multiplier_free=2)), x, "interp"))
    bad = subprocess.run([sys.executable, "-m", "bnnc", "compile", path, "-o", str(tmp_path / "bad"),
                          "--multiplier-free", "9"], capture_output=True, text=True)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "--multiplier-free 9: choose 1 to 8" in bad.stderr


def test_the_pass_option_does_the_same(tmp_path):
    """fold-fixed-point{multiplier-free=K} in a pipeline is what --multiplier-free K sets."""
    path, samples = _export(tmp_path, "reactnet")
    pipeline = "quantize-inputs,fold-constants,fold-thresholds,fold-constants,fold-fixed-point{multiplier-free=2}"
    by_pass = driver.compile_model(path, driver.Options(pipeline=pipeline, calibrate=samples, quantize_weights=8))
    by_option = driver.compile_model(path, driver.Options(calibrate=samples, quantize_weights=8, multiplier_free=2))
    x = np.load(samples)
    assert np.array_equal(driver.execute(by_pass, x, "interp"), driver.execute(by_option, x, "interp"))
    assert by_pass.multiplier_free == 2 and by_pass.weights_moved
    with pytest.raises(BnncError, match="no fold-fixed-point pass"):
        driver.compile_model(path, driver.Options(pipeline="fold-constants", quantize_weights=8, multiplier_free=2))
