"""The full IR text form and its parser: every stage of real models reads back to the same graph.

Same means op by op: the op class, every field (arrays with their dtype, shape and elements --
Fractions as Fractions, big integers whole, float32 to the bit), the value types, and the
interpreter's value for every op on sample inputs.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from bnnc import interp
from bnnc.driver import Options, compile_model, sample_inputs
from bnnc.ir.graph import Graph
from bnnc.ir.parser import ParseError, parse_graph
from bnnc.ir.printer import print_graph
from bnnc.passes import DEFAULT_PIPELINE

from tests.onnx_builders import sign_bn_mlp

PIPELINES = (DEFAULT_PIPELINE, DEFAULT_PIPELINE + ",channel-reuse", DEFAULT_PIPELINE + ",channel-reuse{max-depth=2}")


def _difference(a, b, where: str) -> str | None:
    """Where two field values differ (None if they are the same), types included."""
    if type(a) is not type(b):
        return f"{where}: {type(a).__name__} became {type(b).__name__}"
    if isinstance(a, np.ndarray):
        if a.dtype != b.dtype or a.shape != b.shape:
            return f"{where}: {a.dtype}{a.shape} became {b.dtype}{b.shape}"
        if a.dtype == object:
            bad = [(x, y) for x, y in zip(a.ravel(), b.ravel()) if type(x) is not type(y) or x != y]
            return f"{where}: {bad[0][0]!r} became {bad[0][1]!r}" if bad else None
        return None if a.tobytes() == b.tobytes() else f"{where}: values differ"
    if dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            if diff := _difference(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}"):
                return diff
        return None
    if isinstance(a, tuple):
        if len(a) != len(b):
            return f"{where}: {a} became {b}"
        return next(filter(None, (_difference(x, y, where) for x, y in zip(a, b))), None)
    if isinstance(a, float) and np.isnan(a):
        return None if np.isnan(b) else f"{where}: nan became {b}"
    return None if a == b else f"{where}: {a!r} became {b!r}"


def graph_difference(a: Graph, b: Graph) -> str | None:
    for field in ("name", "inputs", "outputs"):
        if getattr(a, field) != getattr(b, field):
            return f"graph {field}: {getattr(a, field)} became {getattr(b, field)}"
    if len(a.ops) != len(b.ops):
        return f"{len(a.ops)} ops became {len(b.ops)}"
    for x, y in zip(a.ops, b.ops):
        if diff := _difference(x, y, f"%{x.out}"):
            return diff
    return None if a.types == b.types else "value types differ"


def _export(kind: str, tmp) -> str:
    from tests.models import conv_exporters as conv
    from tests.models import exporters as mlp

    path = tmp / f"{kind}.onnx"
    if kind.startswith("examples/"):
        return kind
    if kind == "sign_bn_ties":  # hand-built: exact BN ties, negative and zero gammas, ternary activations
        bn = {"gamma": np.array([1, -1, 0, 2], np.float32), "beta": np.array([0, 0, 0.5, 0], np.float32),
              "mean": np.array([0, 1, -2, 3], np.float32), "var": np.full(4, 4 - 1e-5, np.float32)}
        w0 = np.where(np.arange(16).reshape(4, 4) % 3, 1.0, -1.0)
        return sign_bn_mlp(path, [w0, np.ones((4, 3))], [bn])
    if kind == "float_input":  # no input quantizer: quantize-inputs inserts a calibrated one
        from tests.test_passes import float_input_model
        return float_input_model(tmp)
    builders = {
        "finn_mt_1bit": lambda: mlp.finn_multithreshold_mlp(path, sizes=(16, 16, 10), in_features=32),
        "finn_mt_8bit": lambda: mlp.finn_multithreshold_mlp(path, sizes=(16, 10), in_features=32, input_bits=8),
        "torch_sign_bias_bn": lambda: mlp.torch_sign_mlp(path, sizes=(16, 16, 10), in_features=32, bias=True,
                                                         final_bn=True, ste="where"),
        "brevitas_mlp": lambda: mlp.brevitas_mlp(path, sizes=(16, 16, 10), in_features=32),
        "brevitas_cnv_pad": lambda: conv.brevitas_cnv(path, channels=(8, "M", 8), dense=(16, 10),
                                                      in_shape=(3, 10, 10), padding=1),
        "torch_sign_cnv": lambda: conv.torch_sign_cnv(path),
        "larq_cnv": lambda: conv.larq_style_cnv(path),
    }
    return builders[kind]()


MODELS = ["examples/digits_mlp/digits_mlp.onnx", "examples/digits_cnv/digits_cnv.onnx", "sign_bn_ties",
          "finn_mt_1bit", "finn_mt_8bit", "torch_sign_bias_bn", "brevitas_mlp", "brevitas_cnv_pad",
          "torch_sign_cnv", "larq_cnv"]


def _stages(path: str, options: Options) -> list[tuple[str, Graph]]:
    compiled = compile_model(path, options)
    return [("import", compiled.source)] + [(name, g) for name, g, _ in compiled.stages]


def assert_round_trip(stage: str, graph: Graph, x: np.ndarray) -> None:
    text = print_graph(graph, full=True)
    parsed = parse_graph(text)
    assert graph_difference(graph, parsed) is None, f"after {stage}: {graph_difference(graph, parsed)}"
    assert print_graph(parsed, full=True) == text
    assert print_graph(parsed) == print_graph(graph)  # the abbreviated form agrees too
    feeds = {graph.inputs[0][0]: x}
    want, got = interp.run(graph, feeds, trace=True), interp.run(parsed, feeds, trace=True)
    for name, value in want.items():
        assert got[name].dtype == value.dtype and np.array_equal(got[name], value), f"after {stage}: %{name} differs"


@pytest.mark.parametrize("model", MODELS)
def test_every_stage_reads_back_identically(tmp_path, model):
    path = _export(model, tmp_path)
    seen = set()
    for pipeline in PIPELINES:
        stages = _stages(path, Options(pipeline=pipeline))
        x = sample_inputs(stages[0][1], n=16)
        for stage, graph in stages:
            text = print_graph(graph, full=True)
            if text not in seen:  # the pipelines share their first stages
                seen.add(text)
                assert_round_trip(stage, graph, x)
    assert len(seen) >= 4


@pytest.mark.slow
def test_full_size_sfc_reads_back():
    """FINN's SFC (784-256-256-256-10, MST-trained): 1.2 MB of text per stage."""
    path = "examples/mst_training/sfc_mst.onnx"
    stages = _stages(path, Options()) + _stages(path, Options(pipeline=PIPELINES[1]))[-1:]  # + channel-reuse
    x = sample_inputs(stages[0][1], n=4)
    for stage, graph in stages:
        assert_round_trip(stage, graph, x)


def test_calibrated_input_quantizer_reads_back(tmp_path):
    path = _export("float_input", tmp_path)
    from bnnc.frontend.onnx import import_onnx
    x = sample_inputs(import_onnx(path), n=32)
    np.save(tmp_path / "cal.npy", x)
    stages = _stages(path, Options(calibrate=str(tmp_path / "cal.npy")))
    assert any(op.kind == "quantize" for op in stages[1][1].ops)
    for stage, g in stages:
        assert_round_trip(stage, g, x)


def _hand_built() -> dict:
    from tests.test_verilog import GRAPHS
    return GRAPHS


@pytest.mark.parametrize("name", sorted(_hand_built()))
def test_hand_built_hardware_graphs_read_back(name):
    """The backends' corner-case graphs (argmax, fixed-point codes, strides, +-1 padding, a name
    with a comment terminator and a newline), as built and after channel-reuse."""
    from bnnc.passes import parse_pipeline, run_pipeline

    graph = _hand_built()[name](np.random.default_rng(0))
    reused, _ = run_pipeline(graph, parse_pipeline("channel-reuse"))
    elem = graph.inputs[0][1].elem
    x = np.random.default_rng(1).integers(elem.lo, elem.hi + 1, (8,) + graph.inputs[0][1].shape)
    if elem.lo == -1 and elem.hi == 1 and elem.bits == 1:  # bipolar: -1 or +1, never 0
        x = np.where(x >= 0, 1, -1)
    for stage, g in (("built", graph), ("channel-reuse", reused)):
        assert_round_trip(stage, g, x)


def test_exact_constants_survive():
    """Values the abbreviated form rounds or elides: huge Fractions, float32 ulps, -0.0, inf, nan."""
    text = """graph g(%x: f32[3]) -> (%z) {
      %y = host float %x {fn="mul", const=f32[3] [1.0000001, -0.0, inf]} : f32[3]
      %z = host float %y {fn="add", const=f32[] nan} : f32[3]
    }"""
    g = parse_graph(text)
    assert g.ops[0].const.tobytes() == np.array([1.0000001, -0.0, np.inf], np.float32).tobytes()
    assert g.ops[1].const.tobytes() == np.float32(np.nan).tobytes()
    assert graph_difference(g, parse_graph(print_graph(g, full=True))) is None
    big = "3" * 80 + "/" + "7" * 79
    g = parse_graph(f"graph g(%x: s4[2]) -> (%y) {{ %y = host affine %x {{scale=exact[2] [{big}, -1/3], "
                    f"bias=exact[] 0}} : exact[2] }}")
    from fractions import Fraction
    assert g.ops[0].scale[0] == Fraction(int("3" * 80), int("7" * 79)) and g.ops[0].scale[1] == Fraction(-1, 3)
    assert big in print_graph(g, full=True)
    assert graph_difference(g, parse_graph(print_graph(g, full=True))) is None
    huge = 10**30  # integers beyond int64 stay Python integers in an object array
    g = parse_graph(f"graph g(%x: s4[2]) -> (%y) {{ %y = host threshold %x {{thresholds=int[1x1] [[{huge}]], "
                    f"values=int[1x2] [[-1, 1]]}} : bipolar[2] }}")
    assert g.ops[0].thresholds.dtype == object and type(g.ops[0].thresholds[0, 0]) is int
    assert g.ops[0].thresholds[0, 0] == huge and f"int[1x1] [[{huge}]]" in print_graph(g, full=True)
    assert graph_difference(g, parse_graph(print_graph(g, full=True))) is None


def test_names_that_are_not_identifiers_are_quoted():
    g = parse_graph('graph "my model"(%"in put": s3[2]) -> (%"a,b") '
                    '{ %"a,b" = host sign %"in put" {zero=1, origin="node \\"1\\""} : bipolar[2] }')
    assert (g.name, g.inputs[0][0], g.outputs, g.ops[0].origin) == ("my model", "in put", ("a,b",), 'node "1"')
    assert graph_difference(parse_graph(print_graph(g, full=True)), g) is None


GOOD = """graph g(%x: s3[2]) -> (%t) {
  %d = dense %x {weights=i8[3x2] [[1, -1], [1, 1], [-1, -1]]} : s5[3]
  %t = threshold %d {thresholds=i64[1x1] [[0]], values=i64[1x2] [[-1, 1]]} : bipolar[3]
}
"""


# (replace, by, where the error must point: a unique piece of the broken text, what it says)
@pytest.mark.parametrize("old, new, at, message", [
    ("dense %x", "dense %y", "%y {", "%y is not defined before it is used"),
    ("dense %x", "dens %x", "dens ", "unknown op 'dens'"),
    ("[1, 1], [-1", "[1, 1, 1], [-1", ", 1], [-1", "expected ']' after 2 entries"),
    ("[1, 1], [-1", "[1, 1], [-200", "-200", "-200 does not fit in i8"),
    ("i8[3x2] [[1", "i8[3x2] [[1/2", "1/2", "i8 arrays hold integers"),
    (": s5[3]", ": s6[3]", "s6[3]", "%d has type s5[3], not s6[3]"),
    ("values=i64[1x2] [[-1, 1]]", "values=<1x2 #0 -1, 1>", "<1x2", "abbreviated array"),
    ("{weights=", "{weight=", "weight=", "dense has no attribute 'weight'"),
    ("{weights=i8", "{weights=(1, 2), w=i8", "(1, 2)", "weights must be an array"),
    ("%d = dense", "%d = host dense", "dense", "is not on the host"),
    ("-> (%t)", "-> (%u)", "%u)", "graph output %u is not defined"),
    ("[[0]]", "[[0]", ", values", "expected ']' after 1 entries"),
    ("thresholds=i64[1x1] [[0]], ", "", "threshold %d", "threshold needs the attribute thresholds"),
    ("%t = threshold", "%d = threshold", "%d = threshold", "%d is defined twice"),
    ("[-1, -1]]}", "[-1, -1]], reuse={parent=i64[3] [-1, 2, 1], negate=bool[3] [0, 0, 1]}}", "dense", "cycle"),
    ("[-1, -1]]}", "[-1, -1]], reuse={parent=i64[3] [-1, 3, 0], negate=bool[3] [0, 0, 1]}}", "dense", "parents must"),
    ("[-1, -1]]}", "[-1, -1]], reuse={parent=i64[2] [-1, 0], negate=bool[2] [0, 0]}}", "dense", "each of the 3"),
    ("dense %x {", "dense %x, %x {", "dense", "dense %d: too many values to unpack (expected 1)"),
])
def test_parse_errors_name_line_and_column(old, new, at, message):
    assert GOOD.count(old) == 1
    broken = GOOD.replace(old, new)
    assert broken.count(at) == 1
    pos = broken.index(at)
    line, column = broken.count("\n", 0, pos) + 1, pos - broken.rfind("\n", 0, pos)
    with pytest.raises(ParseError) as err:
        parse_graph(broken)
    assert str(err.value).startswith(f"line {line}, column {column}: "), str(err.value)
    assert (err.value.line, err.value.column) == (line, column)
    assert message in str(err.value), str(err.value)


def test_good_text_parses():
    g = parse_graph(GOOD)
    assert [op.kind for op in g.ops] == ["dense", "threshold"] and g.ops[0].weights.dtype == np.int8


def test_mangled_text_gives_parse_errors_only():
    """Random edits of a valid text: either a ParseError, or a graph that prints and reads back."""
    import random
    from pathlib import Path

    golden = Path(__file__).parent / "golden" / "passes"
    bases = [GOOD] + [(golden / f"{name}.out.ir").read_text() for name in ("fold_fixed_point_exact", "channel_reuse_tree")]
    rng = random.Random(0)
    pieces = list('%{}[]()=,:<>x-/."\\\n 0123456789') + ["host", "i8", "exact", "1/0", "//", "nan", "fixed<"]
    for _ in range(3000):
        text = rng.choice(bases)
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(text))
            text = text[:i] + rng.choice(pieces) + text[i + rng.randint(0, 3):]
        try:
            graph = parse_graph(text)
        except ParseError:
            continue
        assert graph_difference(graph, parse_graph(print_graph(graph, full=True))) is None, text
