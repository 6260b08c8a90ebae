"""--target asic: the threshold-logic netlist (tl/) and the CMOS standard-cell baseline (cmos/).

Fast tests read the written netlist back in Python and evaluate it; the tool-based ones skip
with the reason when Icarus, Yosys or Debian's qflow-tech-osu018 / opensta are absent
(.ci/run: apt-get install -y qflow-tech-osu018 opensta). Gate-level runs use Verilator (a
dependency) unless they say Icarus."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from bnnc import driver
from bnnc.backends.asic.cmos import CELL_MODELS, missing_tools
from bnnc.backends.asic.tl import threshold_logic, tl_design
from bnnc.diagnostics import BnncError
from bnnc.passes.threshold_logic import reference

from tests.onnx_builders import sign_bn_mlp

ROOT = Path(__file__).resolve().parents[1]
MLP = ROOT / "examples" / "digits_mlp"
CNV = ROOT / "examples" / "digits_cnv"
needs_icarus = pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog is not installed")
needs_yosys = pytest.mark.skipif(shutil.which("yosys") is None, reason="Yosys is not installed")
needs_cmos = pytest.mark.skipif(missing_tools() is not None, reason=f"CMOS flow unavailable: {missing_tools()}")


def bnnc(*args):
    return subprocess.run([sys.executable, "-m", "bnnc", *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """16 -> 12 -> 8 -> 4 sign MLP: layer 0 reads ternary Sign(x) (CMOS), layer 1 is binary (TL)."""
    folder = tmp_path_factory.mktemp("asic")
    rng = np.random.default_rng(0)
    weights = [rng.choice([-1.0, 1.0], s) for s in ((16, 12), (12, 8), (8, 4))]
    bns = [dict(gamma=rng.uniform(0.5, 1.5, n) * rng.choice([-1, 1], n), beta=rng.normal(0, 1, n),
                mean=rng.normal(0, 2, n), var=rng.uniform(0.5, 2, n)) for n in (12, 8)]
    model = sign_bn_mlp(folder / "small.onnx", weights, bns)
    build = folder / "build"
    result = bnnc("compile", model, "-o", build, "--target", "asic")
    assert result.returncode == 0, result.stderr
    x = rng.normal(0, 1, (40, 16)).astype(np.float32)
    np.save(folder / "x.npy", x)
    return Path(model), build, folder / "x.npy"


_CELL = re.compile(r"bnnc_tlg(\d+) #\((.*?), \.T\((-?\d+)\)\) tlg(\d+) \((.*?), \.y\(g(\d+)\)\);")


def _read_tl_layer(path: Path):
    """The TL module's gates and output assignments, parsed back from the Verilog."""
    gates = []
    for m in _CELL.finditer(path.read_text()):
        weights = [int(w) for w in re.findall(r"\.W\d+\((-?\d+)\)", m.group(2))]
        ins = re.findall(r"\.a\d+\(([^)]*)\)", m.group(5))
        gates.append((weights, int(m.group(3)), ins, int(m.group(6))))
    outs = dict(re.findall(r"assign result\[(\d+)\] = (~?\S+);", path.read_text()))
    return gates, {int(k): v for k, v in outs.items()}


def _eval_tl_layer(path: Path, bits: np.ndarray) -> np.ndarray:
    gates, outs = _read_tl_layer(path)
    values = {}

    def signal(name: str) -> np.ndarray:
        if name.startswith("~"):
            return 1 - signal(name[1:])
        if name.startswith("1'b"):
            return np.full(len(bits), int(name[3:]))
        m = re.fullmatch(r"inputs\[(\d+)\]", name)
        return bits[:, int(m.group(1))] if m else values[name]

    for weights, t, ins, g in gates:  # written in topological order
        total = sum(w * signal(i) for w, i in zip(weights, ins))
        values[f"g{g}"] = (total >= t).astype(np.int64)
    return np.stack([signal(outs[c]) for c in sorted(outs)], axis=1)


def test_tl_netlist_read_back_equals_the_neurons(small):
    model, build, _ = small
    tl = build / "asic" / "tl"
    assert (tl / "program.json").is_file() and (tl / "tlg_cells.lib").is_file()
    compiled = driver.compile_model(model, driver.Options())
    mapping = threshold_logic(compiled.graph)
    layer = {layer.index: layer for layer in tl_design(compiled.graph).layers}[1]
    net = mapping.network(1)
    x = np.random.default_rng(1).integers(0, 2, (300, 12))
    got = _eval_tl_layer(tl / "bnnc_layer1.v", x)
    reached = reference(net, layer.weights, x)[:, :, 0]
    values = np.where(reached, net.codes[:, 1], net.codes[:, 0])  # bipolar output value per neuron
    assert np.array_equal(got, (values + 1) // 2)
    program = json.loads((tl / "program.json").read_text())
    assert [entry["layer"] for entry in program["layers"]] == [1]
    assert len(program["layers"][0]["cells"]) == net.gates == len(_read_tl_layer(tl / "bnnc_layer1.v")[0])
    assert "MODELLED" in (tl / "tlg_cells.lib").read_text()
    assert "bnnc_tlg" not in (tl / "bnnc_layer0.v").read_text()  # the ternary-input layer stays RTL


def test_asic_output_is_deterministic(small, tmp_path):
    model, build, _ = small
    again = tmp_path / "again"
    assert bnnc("compile", model, "-o", again, "--target", "asic").returncode == 0
    for path in sorted((build / "asic").rglob("*")):
        if path.is_file() and "cmos/gates" not in str(path) and path.parent.name in ("tl", "rtl"):
            assert path.read_bytes() == (again / path.relative_to(build)).read_bytes(), path


def test_cmos_backend_without_the_cells_names_what_to_install(small, tmp_path, monkeypatch):
    """Without Debian's qflow-tech-osu018 the CMOS flow stops with one line saying what to install
    (the tests' needs_cmos skips with the same reason)."""
    from bnnc.backends.asic import cmos

    monkeypatch.setattr(cmos, "LIBERTY", tmp_path / "absent" / "osu018_stdcells.lib")
    reason = cmos.missing_tools()
    assert reason is not None and "qflow-tech-osu018" in reason and "apt-get install" in reason
    model, build, x = small
    compiled = driver.compile_model(model, driver.Options())
    with pytest.raises(BnncError, match=r"^CMOS backend: the OSU 0\.18 um cells are not installed .*qflow-tech-osu018"):
        driver.execute(compiled, np.load(x), "cmos", tmp_path / "nowhere")


def test_tl_netlist_lints_clean(small):
    from sim.lint import lint

    assert lint(small[1] / "asic" / "tl") == []


@needs_icarus
def test_tl_gate_level_simulation_equals_interpreter_and_catches_a_wrong_cell(small, tmp_path):
    """Under Icarus, whose build takes seconds (Verilator gives the same outputs: the slow
    test_verilator_gate_level_simulation_equals_icarus)."""
    model, build, x = small
    result = bnnc("run", build, "--inputs", x, "--output", tmp_path / "y.npy", "--backend", "tl", "--simulator", "icarus")
    assert result.returncode == 0, result.stderr
    reference_y = bnnc("run", build, "--inputs", x, "--output", tmp_path / "r.npy", "--backend", "interp")
    assert reference_y.returncode == 0
    assert np.array_equal(np.load(tmp_path / "y.npy"), np.load(tmp_path / "r.npy"))
    broken = tmp_path / "broken"
    shutil.copytree(build, broken)
    layer = broken / "asic" / "tl" / "bnnc_layer1.v"
    _, outs = _read_tl_layer(layer)
    out_gate = next(v for v in outs.values() if v.lstrip("~").startswith("g")).lstrip("~")
    text = re.sub(rf"\.T\((-?\d+)\)\) tlg{out_gate[1:]} ", lambda m: f".T({int(m.group(1)) + 1})) tlg{out_gate[1:]} ",
                  layer.read_text())
    layer.write_text(text)
    failed = bnnc("run", broken, "--inputs", x, "--output", tmp_path / "b.npy", "--backend", "tl", "--simulator", "icarus")
    assert failed.returncode == 2 and "output mismatch" in failed.stderr


@pytest.mark.slow
@needs_yosys
def test_tl_layer_is_formally_equal_to_the_rtl_layer(small, tmp_path):
    from bnnc.backends.asic.equiv import layer_equivalence
    from bnnc.backends.verilog import emit

    model, build, _ = small
    rtl = tmp_path / "rtl"
    emit(tl_design(driver.compile_model(model, driver.Options()).graph), rtl)
    proved, log = layer_equivalence(rtl, build / "asic" / "tl", 1)
    assert proved, log
    wrong = tmp_path / "wrong"
    shutil.copytree(build / "asic" / "tl", wrong)
    layer = wrong / "bnnc_layer1.v"
    layer.write_text(layer.read_text().replace(".T(2)) tlg", ".T(1)) tlg", 1))
    assert not layer_equivalence(rtl, wrong, 1)[0]


@pytest.mark.slow
@needs_cmos
def test_cmos_mapping_simulation_and_report(small, tmp_path):
    model, build, x = small
    result = bnnc("run", build, "--inputs", x, "--output", tmp_path / "y.npy", "--backend", "cmos")
    assert result.returncode == 0, result.stderr
    assert bnnc("run", build, "--inputs", x, "--output", tmp_path / "r.npy", "--backend", "interp").returncode == 0
    assert np.array_equal(np.load(tmp_path / "y.npy"), np.load(tmp_path / "r.npy"))
    summary = json.loads((build / "asic" / "cmos" / "summary.json").read_text())
    layers = {k: v for k, v in summary["modules"].items() if k.startswith("bnnc_layer")}
    assert sorted(layers) == ["bnnc_layer0", "bnnc_layer1", "bnnc_layer2"]
    assert sum(v["area_um2"] for v in layers.values()) == pytest.approx(summary["top"]["area_um2"])
    assert all(v["cells"] > 0 and v["transistors"] >= 2 * v["cells"] for v in layers.values())
    assert 0 < summary["critical_path"]["period_ns"] < 20
    # the GPL cell models are read where Debian installed them, never copied into the build
    assert str(CELL_MODELS) in (build / "asic" / "cmos" / "gates" / "filelist.f").read_text()
    assert [p.name for p in (build / "asic" / "cmos" / "gates").glob("*.v")] == ["netlist.v"]
    report = bnnc("report", build, "--no-synth")
    assert report.returncode == 0, report.stderr
    assert "## ASIC" in report.stdout and "not mapped (--no-synth)" in report.stdout


def _fault(text: str, backend: str, n: int) -> str:
    """A netlist with its n-th cell of one kind changed: a NAND2X1 made an AND2X1 (CMOS), or a
    TLG's threshold raised by one (TL)."""
    pattern = r"\bNAND2X1(\s)" if backend == "cmos" else r"\.T\((-?\d+)\)\) tlg"
    m = list(re.finditer(pattern, text))[n]
    new = f"AND2X1{m.group(1)}" if backend == "cmos" else f".T({int(m.group(1)) + 1})) tlg"
    return text[:m.start()] + new + text[m.end():]


@pytest.mark.slow
@needs_cmos
@needs_icarus
@pytest.mark.parametrize("backend", ["tl", "cmos"])
def test_verilator_gate_level_simulation_equals_icarus(small, tmp_path, backend):
    """Verilator (the default, fast) runs the netlists as Icarus does: both give the interpreter's
    outputs from the netlist as written, and the same wrong outputs from one with a wrong cell.
    For CMOS both run Debian's own OSU cell models (UDP flip-flops included). Faults whose
    outputs Icarus shows as x (Verilator has two states, so it shows some 0/1) are skipped."""
    model, build, x = small
    compiled = driver.compile_model(model, driver.Options())
    samples = np.load(x)
    want = driver.execute(compiled, samples, "interp")
    work = tmp_path / "build"
    shutil.copytree(build, work)
    for simulator in ("icarus", "verilator"):
        got = driver.execute(compiled, samples, backend, work, simulator, check=False)
        assert np.array_equal(got, want), simulator
    netlist = work / "asic" / ("cmos/gates/netlist.v" if backend == "cmos" else "tl/bnnc_layer1.v")
    original = netlist.read_text()
    for n in range(8):  # the first fault that shows at the outputs
        netlist.write_text(_fault(original, backend, n))
        try:
            icarus = driver.execute(compiled, samples, backend, work, "icarus", check=False)
        except BnncError as exc:
            assert "unknown (x/z) bits" in str(exc)
            continue
        if not np.array_equal(icarus, want):
            break
    else:
        pytest.fail("none of 8 faults showed at the outputs")
    verilator = driver.execute(compiled, samples, backend, work, "verilator", check=False)
    assert np.array_equal(verilator, icarus)


def _tfc(tmp_path: Path, in_features: int):
    """FINN's TFC-w1a1 form (MultiThreshold, 1-bit input: every layer but the score layer is TL)
    and 200 samples for it."""
    from tests.models.exporters import finn_multithreshold_mlp

    tfc = finn_multithreshold_mlp(tmp_path / "tfc.onnx", sizes=(64, 64, 64, 10), in_features=in_features, input_bits=1)
    x = np.random.default_rng(0).uniform(0, 1, (200, in_features)).astype(np.float32)
    np.save(tmp_path / "tfc_x.npy", x)
    return tfc, tmp_path / "tfc_x.npy"


def _verify(model, x, work: Path, backend: str = "tl", samples: int = 200):
    result = bnnc("verify", model, "--inputs", x, "--backends", backend, "--work", work)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(rf"^{backend}\s+{samples}/{samples}", result.stdout, re.M), result.stdout


# Gate-level runs use Verilator's compiled bench: Icarus had not compiled the full TFC's TL
# netlist (about 100k TLG instances) after 15 minutes, nor finished the digits MLP's CMOS netlist
# (280k cells) in 38 minutes. CI checks the same FINN form and topology with 64 inputs here, the
# full TFC's TL netlist and the conv's CMOS netlist below; the digits MLP's CMOS netlist (ABC's
# mapping of it is long) is marked huge (pytest -m huge, not run by CI).
@pytest.mark.slow
def test_digits_mlp_and_tfc_tl_netlists_equal_the_interpreter(tmp_path):
    _verify(MLP / "digits_mlp.onnx", MLP / "test_x.npy", tmp_path / "digits_mlp")
    _verify(*_tfc(tmp_path, in_features=64), tmp_path / "tfc")


@pytest.mark.slow  # 5 min 17 s under Verilator on a loaded 2-core machine (Icarus: not compiled in 15 min)
def test_full_tfc_tl_netlist_equals_the_interpreter(tmp_path):
    _verify(*_tfc(tmp_path, in_features=784), tmp_path / "tfc")


@pytest.mark.huge
@needs_cmos
def test_digits_mlp_cmos_netlist_equals_the_interpreter(tmp_path):
    """The whole digits MLP mapped to OSU cells (Yosys + ABC: the slow part) on 200 samples."""
    _verify(MLP / "digits_mlp.onnx", MLP / "test_x.npy", tmp_path / "work", "cmos")


@pytest.mark.huge  # 5 min 12 s and 8.5 GB (Verilator's build of the netlist) on an idle 2-core machine
@needs_cmos
def test_full_tfc_cmos_netlist_equals_the_interpreter(tmp_path):
    _verify(*_tfc(tmp_path, in_features=784), tmp_path / "tfc", "cmos")


def _cnv_samples(tmp_path: Path, n: int) -> Path:
    np.save(tmp_path / "x.npy", np.load(CNV / "test_x.npy")[:n])
    return tmp_path / "x.npy"


@pytest.mark.slow
def test_digits_cnv_tl_netlist_equals_the_interpreter(tmp_path):
    _verify(CNV / "digits_cnv.onnx", _cnv_samples(tmp_path, 10), tmp_path / "work", "tl", 10)


@pytest.mark.slow  # mapping ~15 s, Verilator build of the 129k-cell netlist ~2 min, 10 samples ~10 s
@needs_cmos
def test_digits_cnv_cmos_netlist_equals_the_interpreter(tmp_path):
    _verify(CNV / "digits_cnv.onnx", _cnv_samples(tmp_path, 10), tmp_path / "work", "cmos", 10)


SHIFT_REGISTER = """
module chain(input clk, input d, output q3);
  wire q0, q1, q2;
  DFFPOSX1 f0(.CLK(clk), .D(d), .Q(q0));
  DFFPOSX1 f1(.CLK(clk), .D(q0), .Q(q1));
  DFFPOSX1 f2(.CLK(clk), .D(q1), .Q(q2));
  DFFPOSX1 f3(.CLK(clk), .D(q2), .Q(q3));
endmodule
module tb;
  reg clk = 0, d = 0;
  wire q3;
  integer i;
  chain dut(.clk(clk), .d(d), .q3(q3));
  initial begin
    for (i = 0; i < 8; i = i + 1) begin
      d = i == 1;
      #5 clk = 1;
      #5 clk = 0;
      $display("q3=%b", q3);
    end
    $finish;
  end
endmodule
"""


@pytest.mark.slow
@needs_cmos
@needs_icarus
def test_verilator_flip_flops_keep_their_clock(tmp_path):
    """A pulse through four DFFPOSX1 in a row leaves after the fourth clock: under Icarus with the
    package's cell models, and under Verilator with the cell file the cmos backend gives it
    (Verilator runs the package's UDP flip-flop like a blocking assignment: the pulse would pass
    all four in one clock, which made the conv example's CMOS netlist fail)."""
    from bnnc.backends.asic.cmos import CELL_MODEL_WAIVERS, verilator_netlist

    from sim.runner import tool_environment

    gates = tmp_path / "gates"
    gates.mkdir()
    (gates / "netlist.v").write_text(SHIFT_REGISTER)
    subprocess.run(["iverilog", "-o", tmp_path / "chain.vvp", "-s", "tb", gates / "netlist.v", CELL_MODELS], check=True)
    icarus = subprocess.run(["vvp", "-n", tmp_path / "chain.vvp"], capture_output=True, text=True, check=True).stdout
    trace = [line for line in icarus.splitlines() if line.startswith("q3=")]
    assert trace[3:] == ["q3=0", "q3=1", "q3=0", "q3=0", "q3=0"]  # x until the 4th clock; the pulse after the 5th
    view = verilator_netlist(gates)
    files = [view / name for name in (view / "filelist.f").read_text().split()]
    with tool_environment():
        subprocess.run(["verilator", "--binary", "--timing", "-CFLAGS", "-std=c++20 -fcoroutines", "-Wno-fatal",
                        "-Wno-lint", "-Wno-style", *CELL_MODEL_WAIVERS, "--top-module", "tb", "-Mdir",
                        str(tmp_path / "obj"), *map(str, files)], check=True, capture_output=True)
    verilator = subprocess.run([tmp_path / "obj" / "Vtb"], capture_output=True, text=True, check=True).stdout
    assert [line for line in verilator.splitlines() if line.startswith("q3=")][3:] == trace[3:]


def test_verilator_refuses_a_netlist_with_latches(tmp_path):
    if missing_tools() is not None:
        pytest.skip(f"CMOS flow unavailable: {missing_tools()}")
    from bnnc.backends.asic.cmos import verilator_netlist
    (tmp_path / "netlist.v").write_text("module t(input e, input d, output q);\n  LATCH l0 (.CLK(e), .D(d), .Q(q));\nendmodule\n")
    with pytest.raises(BnncError, match="uses LATCH, which Verilator does not simulate"):
        verilator_netlist(tmp_path)
