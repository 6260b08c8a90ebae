"""The CLI end to end on the bundled example, as a user runs it."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "digits_mlp"
MODEL, X = EXAMPLE / "digits_mlp.onnx", EXAMPLE / "test_x.npy"


def bnnc(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "bnnc", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env)


def tree_bytes(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    out = tmp_path_factory.mktemp("b") / "build"
    result = bnnc("compile", MODEL, "-o", out, "--target", "all", "--verify")
    assert result.returncode == 0, result.stderr
    return out, result.stdout


def test_compile_writes_rtl_hls_ir_and_manifest(build):
    out, stdout = build
    assert sorted(p.name for p in out.iterdir()) == ["asic", "bench", "bnnc.core", "build.json", "dataflow.svg", "hls",
                                                     "ir", "manifest.json", "model.onnx", "rtl"]
    assert list((out / "rtl").glob("*.v")) and list((out / "hls").glob("*.cpp"))
    names = [p.name for p in sorted((out / "ir").iterdir())]
    assert names[0] == "00-import.ir" and names[-1] == "05-fold-fixed-point.ir"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["input"]["shape"] == [64] and manifest["output"]["shape"] == [10]
    assert manifest["hardware"]["cycles_per_frame"] >= 1
    assert all(p["check"].startswith("verified") for p in manifest["passes"])
    assert "verified on 64 samples" in stdout


def test_compile_is_deterministic(build, tmp_path):
    out, _ = build
    again = tmp_path / "again"
    assert bnnc("compile", MODEL, "-o", again, "--target", "all", "--verify").returncode == 0
    assert tree_bytes(again) == tree_bytes(out)


def test_run_hls_equals_reference(build, tmp_path):
    """`bnnc run --backend hls` equals the interpreter. The rtl backend's twin of this check is in
    the installed-package test below, which builds this design in Verilator anyway."""
    out, _ = build
    x = np.load(X)[:60]
    np.save(tmp_path / "x.npy", x)
    for backend in ("interp", "hls"):
        result = bnnc("run", out, "--inputs", tmp_path / "x.npy", "--output", tmp_path / f"{backend}.npy", "--backend", backend)
        assert result.returncode == 0, result.stderr
    ref = np.load(tmp_path / "interp.npy")
    assert ref.shape == (60, 10)
    np.testing.assert_array_equal(np.load(tmp_path / "hls.npy"), ref)


def test_simulator_failure_is_one_clear_error(build, tmp_path):
    """RTL the simulator cannot build (here: a hand-edited build) ends in one line: the
    simulator's first error, clipped (Verilator echoes the whole offending literal), and the
    path of the log holding all of it; exit code 2 and no traceback."""
    out, _ = build
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    top = broken / "rtl" / "bnnc_top.v"
    oops = "wire [3:0] oops = 4'h" + "f" * 20000 + ";"  # far too many digits for 4 bits
    top.write_text(top.read_text().replace("endmodule", oops + "\nendmodule"))
    np.save(tmp_path / "x.npy", np.load(X)[:4])
    result = bnnc("run", broken, "--inputs", tmp_path / "x.npy", "--output", tmp_path / "y.npy", "--backend", "rtl")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    messages = [line for line in result.stderr.splitlines() if not line.startswith("[bnnc]")]
    assert len(messages) == 1 and messages[0].startswith("bnnc: error: verilator could not build")
    assert "%Error" in messages[0] and len(messages[0]) < 600
    log = Path(messages[0].rsplit("full output in ", 1)[1].rstrip(")"))
    assert log.is_file() and "%Error" in log.read_text()
    assert not (tmp_path / "y.npy").exists()


@pytest.mark.slow  # 11 s; the default run's time
def test_wrong_rtl_names_the_frame_time_and_waveform(tmp_path):
    """`run --waves` on RTL that computes something else (a hand-edited build: the top's output
    inverted): exit 2 with the first bad frame, its simulation time and the waveform's path,
    which is in the build folder and shows the output changing at that time. A small model: a
    traced build of the digits MLP compiles for a minute on a cold cache."""
    from tests.onnx_builders import sign_bn_mlp
    rng = np.random.default_rng(3)
    bn = {"gamma": np.ones(8), "beta": np.zeros(8), "mean": rng.integers(-2, 3, 8), "var": np.ones(8)}
    model = sign_bn_mlp(tmp_path / "small.onnx", [rng.choice([-1.0, 1.0], (16, 8)), rng.choice([-1.0, 1.0], (8, 4))], [bn])
    broken = tmp_path / "broken"
    assert bnnc("compile", model, "-o", broken).returncode == 0
    top = broken / "rtl" / "bnnc_top.v"
    text = top.read_text().replace(".out_data(out_data)", ".out_data(raw_out)")
    width = re.search(r"output wire \[(\d+):0\] out_data", text).group(1)
    top.write_text(text.replace("endmodule", f"wire [{width}:0] raw_out;\nassign out_data = ~raw_out;\nendmodule"))
    np.save(tmp_path / "x.npy", rng.normal(0, 1, (4, 16)).astype(np.float32))
    result = bnnc("run", broken, "--inputs", tmp_path / "x.npy", "--output", tmp_path / "y.npy", "--waves")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    match = re.search(r"bnnc: error: checked run: output mismatch at transfer 0 \(frame 0, at (\d+) ns of simulation "
                      r"time\).*\(waveform: (\S+)\)", result.stderr)
    assert match, result.stderr
    waves = Path(match.group(2))
    assert waves.is_relative_to(broken) and f"\n#{int(match.group(1)) * 1000}\n" in waves.read_text()
    assert not (tmp_path / "y.npy").exists()


@pytest.mark.slow  # 32 s; the README's first command runs the same verify (the default run's time)
def test_verify_table(tmp_path):
    result = bnnc("verify", MODEL, "--inputs", X, "--backends", "rtl,hls", "--work", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[2:]}
    for backend in ("reference", "rtl", "hls"):
        assert rows[backend][1] == "200/200" and rows[backend][-1] == "ok"


def test_inspect_prints_every_pass():
    result = bnnc("inspect", MODEL, "--print-after-all", "--verify")
    assert result.returncode == 0, result.stderr
    for name in ("quantize-inputs", "fold-constants", "fold-thresholds", "fold-fixed-point"):
        assert f"// after {name}" in result.stdout
    assert result.stdout.count("graph digits_mlp(") == 6


def test_inspect_full_prints_what_the_parser_reads_back():
    from bnnc import driver, interp
    from bnnc.ir.parser import parse_graph

    result = bnnc("inspect", MODEL, "--print-after", "fold-fixed-point", "--full")
    assert result.returncode == 0, result.stderr
    text = result.stdout.split("// after fold-fixed-point")[1].split("\n", 1)[1]
    graph = parse_graph(text)
    x = np.load(X)[:50]
    want = driver.execute(driver.compile_model(MODEL, driver.Options()), x, "interp")  # not through the text
    got = interp.run(graph, {graph.inputs[0][0]: x})[graph.outputs[0]]
    np.testing.assert_array_equal(interp.to_real(got, graph.types[graph.outputs[0]]), want)


def test_installed_package_finds_its_templates_and_harness(tmp_path):
    """A non-editable install, used from outside the repository."""
    target = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q",
                          "--target", target, str(ROOT)], capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr
    assert (target / "bnnc" / "_data" / "templates").is_dir() and (target / "bnnc" / "_data" / "sim").is_dir()
    # every module of the source folder is in the installed package (setuptools lists subpackages)
    source = {p.relative_to(ROOT / "compiler") for p in (ROOT / "compiler").rglob("*.py")}
    assert source <= {p.relative_to(target / "bnnc") for p in (target / "bnnc").rglob("*.py")}
    # and every file of the resource folders (the compiled bench's C++ main was once left out)
    for folder in ("templates", "hls", "sim"):
        shipped = {p.relative_to(ROOT / folder) for p in (ROOT / folder).rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts}
        assert shipped <= {p.relative_to(target / "bnnc" / "_data" / folder)
                           for p in (target / "bnnc" / "_data" / folder).rglob("*")}, folder
    env = {**os.environ, "PYTHONPATH": str(target)}
    work = tmp_path / "elsewhere"
    work.mkdir()
    x = np.load(X)[:60]
    np.save(work / "x.npy", x)
    assert bnnc("compile", MODEL, "-o", "out", cwd=work, env=env).returncode == 0
    for backend in ("interp", "rtl"):
        result = bnnc("run", "out", "--inputs", "x.npy", "--output", f"{backend}.npy", "--backend", backend,
                      cwd=work, env=env)
        assert result.returncode == 0, result.stderr
    ref = np.load(work / "interp.npy")
    assert ref.shape == (60, 10)
    np.testing.assert_array_equal(np.load(work / "rtl.npy"), ref)
    check = subprocess.run([sys.executable, "-c", "import bnnc, sys; print(bnnc.__file__)"],
                           capture_output=True, text=True, cwd=work, env=env)
    assert str(target) in check.stdout  # the installed copy ran, not the source tree


def test_hls_compiler_failure_is_one_clear_error(build, tmp_path):
    """C++ that g++ refuses (a hand-edited build) ends in one line with g++'s first error and
    the path of the log holding its whole output."""
    out, _ = build
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    top = broken / "hls" / "bnnc_top.cpp"
    top.write_text(top.read_text() + "\nint broken( { return ; }\n")
    np.save(tmp_path / "x.npy", np.load(X)[:4])
    result = bnnc("run", broken, "--inputs", tmp_path / "x.npy", "--output", tmp_path / "y.npy", "--backend", "hls")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    messages = [line for line in result.stderr.splitlines() if not line.startswith("[bnnc]")]
    assert len(messages) == 1 and messages[0].startswith("bnnc: error: compiling the HLS C simulation failed")
    assert "error" in messages[0].split("failed", 1)[1]
    log = Path(messages[0].rsplit("full output in ", 1)[1].rstrip(")"))
    assert log.is_file() and "bnnc_top.cpp" in log.read_text()
    assert not (tmp_path / "y.npy").exists()
