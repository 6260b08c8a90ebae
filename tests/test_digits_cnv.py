"""The committed conv example (examples/digits_cnv) through the CLI, as its README runs it.

No retraining: the model, its 200 test images and their labels are committed files.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "digits_cnv"
MODEL, X, Y = EXAMPLE / "digits_cnv.onnx", EXAMPLE / "test_x.npy", EXAMPLE / "test_y.npy"

# Measured with the committed files: the compiled reference classifies 195 of the 200 images
# correctly (97.5%; the float Brevitas model and the exported ONNX agree). A few points of slack.
ACCURACY_FLOOR = 0.95


def bnnc(*args):
    return subprocess.run([sys.executable, "-m", "bnnc", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT)


def test_committed_files():
    x, y = np.load(X), np.load(Y)
    assert x.shape == (200, 1, 8, 8) and x.dtype == np.float32
    assert y.shape == (200,) and set(np.unique(y)) <= set(range(10))
    assert MODEL.stat().st_size < 200_000


def test_verify_rtl_and_hls_bit_exact(tmp_path):
    result = bnnc("verify", MODEL, "--inputs", X, "--backends", "rtl,hls", "--work", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("200 samples")
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert sorted(rows) == ["hls", "reference", "rtl"]
    for backend, row in rows.items():
        # backend, = reference, argmax = orig, max |y - orig|, verdict
        assert row[1] == "200/200", (backend, row)
        assert row[2] == "200/200", (backend, row)  # no two class scores tie on these images
        assert row[-1] == "ok", (backend, row)


def test_compiled_reference_accuracy_and_min_pool(tmp_path):
    build = tmp_path / "build"
    result = bnnc("compile", MODEL, "-o", build, "--target", "all")
    assert result.returncode == 0, result.stderr
    result = bnnc("run", build, "--inputs", X, "--output", tmp_path / "y.npy", "--backend", "interp")
    assert result.returncode == 0, result.stderr
    scores = np.load(tmp_path / "y.npy")
    assert scores.shape == (200, 10)
    accuracy = float(np.mean(scores.argmax(1) == np.load(Y)))
    assert accuracy >= ACCURACY_FLOOR, accuracy

    hardware = json.loads((build / "manifest.json").read_text())["hardware"]
    assert hardware["rtl"]["supported"]
    # The max pool sits in front of a BatchNorm with negative gammas on odd channels: after
    # fold-thresholds those channels pool the signs with a min, the others with a max.
    (pool,) = [layer for layer in hardware["layers"] if layer["kind"] == "pool"]
    assert set(pool["modes"]) == {1, -1}
