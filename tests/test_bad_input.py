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
    return subprocess.run([sys.executable, "-m", "bnnc", *map(str, args)], capture_output=True,
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
    from bnnc.diagnostics import number
    assert [number(v) for v in (np.float32(-0.0), np.float32(0.0), np.float32(0.1), np.float32(2.0), -3)] == \
        ["zero", "zero", "0.1", "2", "-3"]


def test_unsupported_op_is_named(tmp_path):
    w = np.ones((3, 5), np.float32)
    result = bnnc("inspect", gemm_model(tmp_path / "m.onnx", w, extra_op="Softplus"))
    assert_one_line_error(result, "'the_extra'", "Softplus", "not supported")


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


# ---- one regression test per class of traceback the fuzzer (tests/fuzz) found; in-process
# through cli.main (the function the command runs) so that each costs milliseconds.

from bnnc import cli  # noqa: E402
from bnnc.frontend.load import MAX_ELEMENTS  # noqa: E402


def compile_here(path, tmp_path, capsys, *extra):
    """`bnnc compile path -o tmp_path/out` in this process: (exit code, stderr lines)."""
    capsys.readouterr()
    rc = cli.main(["compile", str(path), "-o", str(tmp_path / "out"), *map(str, extra)])
    return rc, capsys.readouterr().err.strip().splitlines()


def assert_refused(tmp_path, capsys, path, *needles, extra=()):
    rc, lines = compile_here(path, tmp_path, capsys, *extra)
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("bnnc: error: "), lines
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not (tmp_path / "out").exists()


def edited(tmp_path, edit, name="m.onnx"):
    """good_model with `edit(model)` applied, saved without the checker (it is meant to be bad)."""
    model = onnx.load(good_model(tmp_path / "good.onnx"))
    edit(model)
    path = tmp_path / name
    path.write_bytes(model.SerializeToString())
    return path


def init(model, name):
    return next(t for t in model.graph.initializer if t.name == name)


def test_huge_declared_dimension_without_data(tmp_path, capsys):
    # was: ValueError: cannot reshape array of size 0 into shape (1099511627776,10)
    def edit(m):
        t = init(m, "w0")
        t.ClearField("raw_data")
        t.dims[:] = [2 ** 40, 10]
    assert_refused(tmp_path, capsys, edited(tmp_path, edit), "'w0'", str(MAX_ELEMENTS))


def test_data_that_does_not_fill_the_shape(tmp_path, capsys):
    # was: ValueError: cannot reshape array of size 48 into shape (96,)
    assert_refused(tmp_path, capsys, edited(tmp_path, lambda m: init(m, "w0").dims.__setitem__(0, 16)),
                   "'w0'", "bytes of data for shape [16, 6]")


@pytest.mark.parametrize("location", ["/etc/passwd", "../w.bin", "sub/../../w.bin"])
def test_external_data_outside_the_model_folder(tmp_path, capsys, location):
    # was: onnx ValidationError traceback
    def edit(m):
        t = init(m, "w0")
        t.ClearField("raw_data")
        t.data_location = TensorProto.EXTERNAL
        t.external_data.add(key="location", value=location)
    assert_refused(tmp_path, capsys, edited(tmp_path, edit), "'w0'", "relative path inside the model's folder")


def test_external_data_of_the_wrong_size(tmp_path, capsys):
    def edit(m):
        t = init(m, "w0")
        (tmp_path / "w.bin").write_bytes(t.raw_data[:-4])
        t.ClearField("raw_data")
        t.data_location = TensorProto.EXTERNAL
        t.external_data.add(key="location", value="w.bin")
    assert_refused(tmp_path, capsys, edited(tmp_path, edit), "'w0'", "does not hold the 192 bytes")


def test_external_data_inside_the_folder_compiles(tmp_path, capsys):
    def edit(m):
        t = init(m, "w0")
        (tmp_path / "w.bin").write_bytes(b"\0" * 8 + t.raw_data)
        t.ClearField("raw_data")
        t.data_location = TensorProto.EXTERNAL
        for k, v in (("location", "w.bin"), ("offset", "8"), ("length", str(8 * 6 * 4))):
            t.external_data.add(key=k, value=v)
    rc, lines = compile_here(edited(tmp_path, edit), tmp_path, capsys)
    assert rc == 0, lines


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_weights(tmp_path, capsys, value):
    # was: ValueError: cannot convert NaN to integer ratio
    def edit(m):
        t = init(m, "beta0")
        a = numpy_helper.to_array(t).copy()
        a[2] = value
        t.CopyFrom(numpy_helper.from_array(a, "beta0"))
    assert_refused(tmp_path, capsys, edited(tmp_path, edit), "'beta0'", "NaN or infinity")


def test_constant_expression_giving_nan(tmp_path, capsys):
    # was: ValueError: cannot convert NaN to integer ratio (a folded Div by zero)
    def edit(m):
        m.graph.initializer.append(numpy_helper.from_array(np.zeros(6, np.float32), "zeros"))
        m.graph.node.insert(0, helper.make_node("Div", ["beta0", "zeros"], ["beta_nan"], name="divide"))
        next(n for n in m.graph.node if n.op_type == "BatchNormalization").input[2] = "beta_nan"
    assert_refused(tmp_path, capsys, edited(tmp_path, edit), "'divide'", "NaN or infinity")


def test_unsupported_element_type(tmp_path, capsys):
    assert_refused(tmp_path, capsys, edited(tmp_path, lambda m: setattr(init(m, "w0"), "data_type", TensorProto.STRING)),
                   "'w0'", "STRING")


@pytest.mark.parametrize("field, value, needle", [("opset", 99, "opset 99"), ("opset", 1, "opset 1"),
                                                  ("ir", 99, "IR version 99"), ("ir", 0, "IR version 0")])
def test_versions_out_of_range(tmp_path, capsys, field, value, needle):
    def edit(m):
        if field == "opset":
            m.opset_import[0].version = value
        else:
            m.ir_version = value
    assert_refused(tmp_path, capsys, edited(tmp_path, edit), needle)


def test_cycle_and_dangling_names(tmp_path, capsys):
    # was: KeyError from the lowering
    def cycle(m):
        m.graph.node[0].input[0] = m.graph.node[2].output[0]
    assert_refused(tmp_path, capsys, edited(tmp_path, cycle, "a.onnx"), "cycle")

    def dangling(m):
        m.graph.node[1].input[0] = "nowhere"
    assert_refused(tmp_path, capsys, edited(tmp_path, dangling, "b.onnx"), "'matmul0'", "'nowhere'")


def test_node_arity_and_attributes_follow_the_schema(tmp_path, capsys):
    # was: IndexError: list index out of range (an Add with one input)
    def one_input(m):
        m.graph.node.insert(3, helper.make_node("Add", ["bn0"], ["bn0_plus"], name="lonely"))
        next(n for n in m.graph.node if n.name == "sign0").input[0] = "bn0_plus"
    assert_refused(tmp_path, capsys, edited(tmp_path, one_input, "a.onnx"), "'lonely'", "1 inputs", "takes 2")

    def bad_attr(m):
        m.graph.node[2].attribute.append(helper.make_attribute("epsilon_typo", 1.0))
    assert_refused(tmp_path, capsys, edited(tmp_path, bad_attr, "b.onnx"), "'bn0'", "'epsilon_typo'")

    def wrong_type(m):
        bn = m.graph.node[2]
        del bn.attribute[:]
        bn.attribute.append(helper.make_attribute("epsilon", "small"))
    assert_refused(tmp_path, capsys, edited(tmp_path, wrong_type, "c.onnx"), "'bn0'", "'epsilon'", "FLOAT")


def test_negative_variance(tmp_path, capsys):
    # was: ValueError: square root of a negative number
    def edit(m):
        init(m, "var0").CopyFrom(numpy_helper.from_array(np.full(6, -1.0, np.float32), "var0"))
    assert_refused(tmp_path, capsys, edited(tmp_path, edit), "'bn0'", "variance")


def test_training_mode_batchnorm_is_refused(tmp_path, capsys):
    # was a wrong answer: onnxruntime uses batch statistics, bnnc used the running ones
    def edit(m):
        m.opset_import[0].version = 15
        m.graph.node[2].attribute.append(helper.make_attribute("training_mode", 1))
    assert_refused(tmp_path, capsys, edited(tmp_path, edit), "'bn0'", "training_mode")


def test_constants_beyond_int64(tmp_path, capsys):
    # was: OverflowError: Python int too large to convert to C long
    rng = np.random.default_rng(3)
    weights = [rng.choice([-1.0, 1.0], (10, 6)), rng.choice([-1.0, 1.0], (6, 3))]
    bn = dict(gamma=np.ones(6), beta=np.zeros(6), mean=np.zeros(6), var=np.ones(6))
    model = onnx.load(sign_bn_mlp(tmp_path / "w.onnx", weights, [bn], act="Where"))
    init(model, "one0").CopyFrom(numpy_helper.from_array(np.float32(1e38), "one0"))  # Where's value if true
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    assert_refused(tmp_path, capsys, path, "64 bits")


def test_where_with_per_channel_threshold_and_scalar_values(tmp_path, capsys):
    # was: numpy AxisError; the model is fine and must compile to the original's answers
    from bnnc import driver
    from bnnc.original import run_original

    rng = np.random.default_rng(3)
    weights = [rng.choice([-1.0, 1.0], (10, 6)), rng.choice([-1.0, 1.0], (6, 3))]
    bn = dict(gamma=np.ones(6), beta=np.zeros(6), mean=np.zeros(6), var=np.ones(6))
    model = onnx.load(sign_bn_mlp(tmp_path / "w.onnx", weights, [bn], act="Where"))
    init(model, "zero0").CopyFrom(numpy_helper.from_array(np.arange(-3, 3, dtype=np.float32), "zero0"))
    path = tmp_path / "where.onnx"
    path.write_bytes(model.SerializeToString())
    rc, lines = compile_here(path, tmp_path, capsys)
    assert rc == 0, lines
    compiled = driver.compile_model(path, driver.Options())
    x = rng.normal(size=(32, 10)).astype(np.float32)
    np.testing.assert_array_equal(driver.execute(compiled, x, "interp"), run_original(compiled.model, x))


def test_shape_constant_that_is_not_1d(tmp_path, capsys):
    # was: TypeError: only 0-dimensional arrays can be converted to Python scalars
    def edit(m):
        m.graph.initializer.append(numpy_helper.from_array(np.array(6, np.int64), "flat"))
        m.graph.node.insert(3, helper.make_node("Reshape", ["bn0", "flat"], ["bn0_r"], name="reshaper"))
        next(n for n in m.graph.node if n.name == "sign0").input[0] = "bn0_r"
    assert_refused(tmp_path, capsys, edited(tmp_path, edit), "'reshaper'", "1-D integer")


def test_declared_output_shape_that_the_model_does_not_compute(tmp_path, capsys):
    # was: ValueError: cannot reshape array of size 48 into shape (16,)
    def edit(m):
        m.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 5
    assert_refused(tmp_path, capsys, edited(tmp_path, edit), "'y'", "declared shape")


def test_names_that_are_not_utf8(tmp_path, capsys):
    # was: TypeError from onnx.defs.get_schema (protobuf hands invalid UTF-8 over as bytes)
    data = onnx.load(good_model(tmp_path / "good.onnx"))
    data.graph.node[1].name = "MARKER"
    raw = data.SerializeToString().replace(b"MARKER", b"\xff\xfeMARK")
    path = tmp_path / "m.onnx"
    path.write_bytes(raw)
    assert_refused(tmp_path, capsys, path, "UTF-8")


def test_quant_bit_width_and_scale(tmp_path, capsys):
    # was: ValueError: negative shift count / OverflowError: too many digits in integer
    nodes = [helper.make_node("Quant", ["x", "s", "z", "b"], ["q"], domain="qonnx.custom_op.general", name="quant"),
             helper.make_node("MatMul", ["q", "w"], ["y"], name="mm")]

    def model(bits, scale, name):
        inits = [numpy_helper.from_array(np.float32(scale), "s"), numpy_helper.from_array(np.float32(0), "z"),
                 numpy_helper.from_array(np.float32(bits), "b"),
                 numpy_helper.from_array(np.ones((4, 2), np.float32), "w")]
        graph = helper.make_graph(nodes, "q", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("qonnx.custom_op.general", 1)])
        m.ir_version = 8
        path = tmp_path / name
        path.write_bytes(m.SerializeToString())
        return path

    assert_refused(tmp_path, capsys, model(-0.0, 0.1, "a.onnx"), "'quant'", "bit width")
    assert_refused(tmp_path, capsys, model(8e30, 0.1, "b.onnx"), "'quant'", "bit width")
    assert_refused(tmp_path, capsys, model(4, 0.0, "c.onnx"), "'quant'", "scale")


def test_conv_kernel_shape_must_match_the_kernel(tmp_path, capsys):
    from tests.models.conv_exporters import torch_sign_cnv

    model = onnx.load(torch_sign_cnv(tmp_path / "cnv.onnx", channels=(4,), dense=(3,), in_shape=(1, 5, 5)))
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    next(a for a in conv.attribute if a.name == "kernel_shape").ints[:] = [3, 2147483647]
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    assert_refused(tmp_path, capsys, path, "Conv", "kernel_shape")


# ---- .npy inputs and folding files


def test_pickled_inputs_are_refused(tmp_path, capsys):
    model = good_model(tmp_path / "m.onnx")
    np.save(tmp_path / "x.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    capsys.readouterr()
    assert cli.main(["inspect", model, "--verify", "--inputs", str(tmp_path / "x.npy")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pickle" in err[0], err


@pytest.mark.parametrize("x, needle", [(np.array([[1.0] * 8, [np.nan] * 8], np.float32), "sample 1"),
                                       (np.array(["a"] * 8), "must be numbers"),
                                       (np.zeros((0, 8), np.float32), "no samples")])
def test_bad_inputs_are_refused(tmp_path, capsys, x, needle):
    model = good_model(tmp_path / "m.onnx")
    np.save(tmp_path / "x.npy", x)
    capsys.readouterr()
    assert cli.main(["inspect", model, "--verify", "--inputs", str(tmp_path / "x.npy")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err


@pytest.mark.parametrize("text, needle", [("[1, 2]", "not a folding file"), ('{"x": {}}', "layer 'x'"),
                                          ('{"0": {"pe": "8"}}', "'pe' = 8"), ('{"0": {"pe": -1}}', "'pe' = -1"),
                                          ('{"0": {"pf": 2}}', "'pf'"), ("{", "not a folding file")])
def test_bad_folding_files(tmp_path, capsys, text, needle):
    fold = tmp_path / "fold.json"
    fold.write_text(text)
    assert_refused(tmp_path, capsys, good_model(tmp_path / "m.onnx"), needle, extra=("--fold", fold))


def test_straight_through_estimator_beyond_float32_integers(tmp_path, capsys):
    # was a wrong answer: with |x| >= 2**24, x + (Sign(x) - x) is 0 in float32, not Sign(x)
    from tests.models.exporters import torch_sign_mlp

    model = onnx.load(torch_sign_mlp(tmp_path / "ste.onnx", sizes=(8, 8, 4), in_features=12, ste="ste_add"))
    gamma = next(t for t in model.graph.initializer if t.name.endswith("1.weight"))
    gamma.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(gamma) * np.float32(1e30), gamma.name))
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    assert_refused(tmp_path, capsys, path, "Add", "straight-through", "2**24")


def test_op_type_with_a_line_break(tmp_path, capsys):
    # was a two-line message: the op type reached it unquoted
    assert_refused(tmp_path, capsys, edited(tmp_path, lambda m: setattr(m.graph.node[1], "op_type", "Mat\x1cMul")),
                   "'Mat\\x1cMul'", "not an ONNX op name")


@pytest.mark.parametrize("record", ["{", '{"options": 3}', '{"settings": {}}'])
def test_damaged_build_record(tmp_path, capsys, record):
    rc, lines = compile_here(good_model(tmp_path / "m.onnx"), tmp_path, capsys)
    assert rc == 0, lines
    (tmp_path / "out" / "build.json").write_text(record)
    np.save(tmp_path / "x.npy", np.zeros((2, 8), np.float32))
    capsys.readouterr()
    assert cli.main(["run", str(tmp_path / "out"), "--inputs", str(tmp_path / "x.npy"), "--output",
                     str(tmp_path / "y.npy"), "--backend", "interp"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "build.json" in err[0] and "not a readable build record" in err[0], err
    assert not (tmp_path / "y.npy").exists()


def test_conv_pads_of_the_wrong_length(tmp_path, capsys):
    # was: IndexError: list index out of range
    from tests.models.conv_exporters import torch_sign_cnv

    model = onnx.load(torch_sign_cnv(tmp_path / "cnv.onnx", channels=(4,), dense=(3,), in_shape=(1, 5, 5)))
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    next(a for a in conv.attribute if a.name == "pads").ints[:] = [0, 0, 0]
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    assert_refused(tmp_path, capsys, path, "Conv", "pads [0, 0, 0]")


def test_multithreshold_levels_are_float32(tmp_path):
    # was a wrong answer: QONNX computes out_scale * level + out_bias in float32, where a bias of
    # 2**30 swallows the level (2**30 + 2 rounds to 2**30); bnnc kept the two levels apart
    from bnnc.frontend.onnx import import_onnx
    from bnnc.ir.ops import Threshold

    from tests.models.exporters import finn_multithreshold_mlp

    model = onnx.load(finn_multithreshold_mlp(tmp_path / "finn.onnx", sizes=(8, 4), in_features=6))
    first = next(n for n in model.graph.node if n.op_type == "MultiThreshold")
    next(a for a in first.attribute if a.name == "out_bias").f = 2.0 ** 30
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    graph = import_onnx(path)
    levels = next(op for op in graph.ops if isinstance(op, Threshold)).values
    assert levels.tolist() == [[2 ** 30, 2 ** 30]]
