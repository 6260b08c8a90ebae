"""Bad input: one line naming the node or tensor, exit code 2, no traceback, nothing written."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.onnx_builders import save, sign_bn_mlp


def bnnc(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "compiler.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd)


def good_model(path):
    rng = np.random.default_rng(0)
    w0 = rng.choice([-1.0, 1.0], (8, 6)).astype(np.float32)
    w1 = rng.choice([-1.0, 1.0], (6, 3)).astype(np.float32)
    bn = dict(gamma=np.ones(6), beta=np.full(6, 0.3), mean=np.zeros(6), var=np.ones(6))
    return sign_bn_mlp(path, [w0, w1], [bn])


def gemm_model(path, weights, extra_op=None, node_name="fc1"):
    nodes = [helper.make_node("Sign", ["x"], ["s"]),
             helper.make_node("Gemm", ["s", "w"], ["y0"], name=node_name, transB=1)]
    out = "y0"
    if extra_op:
        nodes.append(helper.make_node(extra_op, ["y0"], ["y1"], name="the_extra"))
        out = "y1"
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, weights.shape[1]])],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, [1, weights.shape[0]])],
                              [numpy_helper.from_array(weights.astype(np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return save(model, path)


def assert_one_line_error(result, *needles):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bnnc: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize("content, needle", [
    (b"", "empty"),
    (b"this is not an onnx model at all\n" * 3, "not a readable ONNX model"),
])
def test_unreadable_files(tmp_path, content, needle):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    result = bnnc("compile", path, "-o", tmp_path / "out")
    assert_one_line_error(result, needle)
    assert not (tmp_path / "out").exists()


def test_truncated_model(tmp_path):
    with open(good_model(tmp_path / "m.onnx"), "rb") as f:
        data = f.read()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    result = bnnc("compile", cut, "-o", tmp_path / "out")
    assert_one_line_error(result, "cut.onnx")
    assert not (tmp_path / "out").exists()


def test_missing_file(tmp_path):
    assert_one_line_error(bnnc("inspect", tmp_path / "nope.onnx"), "no such file")


@pytest.mark.parametrize("where, value, says", [
    ((2, 4), 0.1, "output channel 2 has 0.1 at input 4 and 1 at input 1"),  # float32 0.1, plainly
    ((1, 0), 2.0 ** -30, "output channel 1 has 9.313226e-10 at input 0 and 1 at input 1"),
])
def test_weights_without_a_small_integer_grid_are_refused_not_quantized(tmp_path, where, value, says):
    w = np.ones((3, 5), np.float32)
    w[where] = value
    w[2, 0] = -0.0  # zeros are weights like any other (ternary)
    result = bnnc("compile", gemm_model(tmp_path / "m.onnx", w), "-o", tmp_path / "out")
    assert_one_line_error(result, "'fc1'", "not a scale times integers of at most 8 bits", says)
    assert "np." not in result.stderr and "-0" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_numbers_in_messages_are_plain():
    from compiler.diagnostics import number
    assert [number(v) for v in (np.float32(-0.0), np.float32(0.0), np.float32(0.1), np.float32(2.0), -3)] == \
        ["zero", "zero", "0.1", "2", "-3"]


def test_unsupported_op_is_named(tmp_path):
    w = np.ones((3, 5), np.float32)
    result = bnnc("inspect", gemm_model(tmp_path / "m.onnx", w, extra_op="Relu"))
    assert_one_line_error(result, "'the_extra'", "Relu", "not supported")


def test_hostile_node_name_stays_one_line(tmp_path):
    w = np.ones((3, 5), np.float32)
    w[0, 0] = 0.1  # no small-integer grid with the row's 1s: refused, naming the node
    result = bnnc("inspect", gemm_model(tmp_path / "m.onnx", w, node_name="evil\nname`$(rm -rf /)"))
    assert_one_line_error(result, "evil\\x0aname")


def test_wrong_input_shape_names_the_tensor(tmp_path):
    model = good_model(tmp_path / "m.onnx")
    np.save(tmp_path / "x.npy", np.zeros((4, 7), np.float32))
    result = bnnc("verify", model, "--inputs", tmp_path / "x.npy")
    assert_one_line_error(result, "'x'", "(7,)", "(8,)")


def test_unknown_pass_is_named(tmp_path):
    result = bnnc("inspect", good_model(tmp_path / "m.onnx"), "--pipeline", "fold-constants,fold-everything")
    assert_one_line_error(result, "fold-everything")


def test_bad_folding_is_refused_before_writing(tmp_path):
    fold = tmp_path / "fold.json"
    fold.write_text('{"layers": {"0": {"pe": 5, "simd": 8}}}')
    out = tmp_path / "out"
    result = bnnc("compile", good_model(tmp_path / "m.onnx"), "-o", out, "--fold", fold)
    assert_one_line_error(result, "pe=5")
    assert not out.exists()
    onnx.checker.check_model(onnx.load(tmp_path / "m.onnx"))  # the input is untouched
