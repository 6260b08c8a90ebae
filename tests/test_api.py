"""bnnc as a library: compile, run and verify from Python, on the bundled digits MLP."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import bnnc
import numpy as np
import onnx
import pytest

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "examples" / "digits_mlp" / "digits_mlp.onnx"
X = np.load(ROOT / "examples" / "digits_mlp" / "test_x.npy")[:30]


def test_compile_run_verify_return_results(tmp_path):
    build = bnnc.compile(MODEL, tmp_path / "b", target="hls", verify_inputs=X[:8])
    assert build.path == tmp_path / "b"
    assert json.loads((build.path / "manifest.json").read_text()) == build.manifest
    assert {p.name for p in build.files} >= {"hls", "ir", "manifest.json", "model.onnx"}
    assert all(p["check"].startswith("verified on 8 samples") for p in build.manifest["passes"])

    y = bnnc.run(build.path, X, backend="hls")
    from bnnc.original import run_original  # onnxruntime on the original model
    original = run_original(onnx.load(MODEL), X)
    bound = build.manifest["output"]["error_bound"]
    assert y.shape == original.shape and np.all(np.abs(y - original) <= bound + 1e-5 * np.abs(original))

    check = bnnc.verify(MODEL, X, backends=("hls",))
    assert check.ok and [r.backend for r in check.rows] == ["reference", "hls"]
    np.testing.assert_array_equal(check.rows[1].outputs, y)
    assert check.rows[1].equal_to_reference == len(X)
    assert "hls" in check.table() and "MISMATCH" not in check.table()


def test_errors_raise_bnnc_error_with_the_cli_message(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(bnnc.BnncError):
        bnnc.compile(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(bnnc.BnncError, match="shape"):
        bnnc.verify(MODEL, np.zeros((3, 5), np.float32), backends=())


def test_python_dash_m_bnnc_is_the_cli(tmp_path):
    result = subprocess.run([sys.executable, "-m", "bnnc", "compile", str(MODEL), "-o", str(tmp_path / "b")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "b" / "rtl").is_dir()
