"""`bnnc report`: per-layer counts on a conv net with a pool, and Yosys resources on a small MLP."""
from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from bnnc.passes import DEFAULT_PIPELINE

from tests.onnx_builders import sign_bn_mlp
from tests.test_cli import bnnc
from tests.test_conv import CONV_PRODUCERS
from tests.test_verilog import rtl_reuse_children

REUSE_PIPELINE = DEFAULT_PIPELINE + ",channel-reuse"


def table(text: str) -> dict[str, list[str]]:
    """The per-layer table: first cell -> the row's cells."""
    rows = [line.strip("|").split("|") for line in text.splitlines() if line.startswith("| ")]
    header = next(i for i, r in enumerate(rows) if r[0].strip() == "layer")
    return {r[0].strip(): [c.strip() for c in r] for r in rows[header + 1:] if not r[0].strip().startswith("RTL")}


def number(cell: str) -> int:
    return int(cell.split(" (")[0].replace(",", ""))


@pytest.fixture(scope="module")
def conv_build(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("conv")
    model = CONV_PRODUCERS["brevitas-padded"](tmp / "cnv.onnx")  # int8 conv, conv, pool, conv, dense, dense
    out = tmp / "build"
    done = bnnc("compile", model, "-o", out, "--pipeline", REUSE_PIPELINE)
    assert done.returncode == 0, done.stderr
    return out


def test_conv_net_counts_without_synthesis(conv_build):
    done = bnnc("report", conv_build, "--no-synth")
    assert done.returncode == 0, done.stderr
    text = (conv_build / "report.md").read_text()
    assert text in done.stdout and (conv_build / "report.svg").read_text().startswith("<svg")
    assert "Synthesized" not in text
    rows = table(text)
    hw = json.loads((conv_build / "manifest.json").read_text())["hardware"]
    per_frame = {"full": 0, "tree": 0, "built": 0}
    for layer in hw["layers"]:
        row = rows[str(layer["index"])]
        assert int(row[4]) == layer["unit_cycles"]  # the Verilog timing model, as in the manifest
        if layer["kind"] == "pool":
            assert row[1].startswith("pool 2x2") and row[5:10] == ["-"] * 5
            continue
        full, tree, built = number(row[5]), number(row[6]), number(row[7])
        assert full == layer["in_count"] * layer["out_count"] and row[3] == f"{layer['pe']} x {layer['simd']}"
        assert tree <= built <= full
        # what the report says the RTL builds is what the emitted RTL holds: a child is a dot
        # product over the |D| inputs where it differs from its parent, instead of K
        children = rtl_reuse_children(conv_build / "rtl", layer["index"])
        assert full - built == sum(layer["in_count"] - d for d in children.values())
        before, after = (number(c) for c in row[10].split(" -> "))
        assert (before, after) == (layer["pe"] * layer["simd"],
                                   (layer["pe"] - len(children)) * layer["simd"] + sum(children.values()))
        if layer["kind"] == "conv":
            px = layer["window"]["vectors"]
            assert f"{px} px" in row[1]
        else:
            px = 1
        if layer["pe"] < layer["out_count"] and tree < full:  # folded over channel groups: nothing built
            assert built == full and f"layer {layer['index']}: folded over channel groups" in text
        for key, value in zip(per_frame, (full, tree, built)):
            per_frame[key] += value * px
    total = rows["all, per frame"]
    assert int(total[4]) == hw["cycles_per_frame"]
    assert [number(total[i]) for i in (5, 6, 7)] == list(per_frame.values())
    assert per_frame["tree"] < per_frame["full"]  # trained-looking conv rows share structure


def test_report_refuses_a_pool_as_synthesis_layer(conv_build):
    done = bnnc("report", conv_build, "--synth-layers", "2")
    assert done.returncode == 2 and "--synth-layers" in done.stderr
    done = bnnc("report", conv_build, "--synth-jobs", "0")
    assert done.returncode == 2 and "--synth-jobs: 0 is not a positive number" in done.stderr
    assert "Traceback" not in done.stderr


def structured_mlp(path, k=24, c=12, seed=0):
    """x -> Sign -> k -> c (rows: noisy copies of 3 prototypes) -> BN -> Sign -> c -> 10."""
    rng = np.random.default_rng(seed)
    protos = rng.choice([-1.0, 1.0], (3, k))
    rows = protos[np.arange(c) % 3] * rng.choice([-1.0, 1.0], (c, 1))
    for row in rows:
        row[rng.choice(k, 2, replace=False)] *= -1
    bn = {"gamma": rng.uniform(0.5, 2, c), "beta": rng.normal(0, 1, c), "mean": rng.integers(-4, 4, c),
          "var": np.ones(c)}
    return sign_bn_mlp(path, [rows.T, rng.choice([-1.0, 1.0], (c, 10))], [bn])


# Slow (about a minute of Yosys, never cached): test_verilog.py's test_channel_reuse_saves_luts
# checks the same saving on one layer in the default run.
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("yosys") is None, reason="Yosys not installed")
def test_yosys_luts_with_and_without_reuse(tmp_path):
    model = structured_mlp(tmp_path / "m.onnx")
    fold = tmp_path / "fold.json"  # layer 0 fully parallel: every child is built; layer 1 one channel per clock
    fold.write_text(json.dumps({"layers": {"0": {"pe": 12, "simd": 24}, "1": {"pe": 1, "simd": 12}}}))
    out = tmp_path / "build"
    done = bnnc("compile", model, "-o", out, "--pipeline", REUSE_PIPELINE, "--fold", fold)
    assert done.returncode == 0, done.stderr
    done = bnnc("report", out, "--synth-timeout", "600")
    assert done.returncode == 0, done.stderr
    text = (out / "report.md").read_text()
    assert text in done.stdout
    rows = table(text)
    full, tree, built = (number(rows["0"][i]) for i in (5, 6, 7))
    assert full == 24 * 12 and built == tree < full / 2
    assert [number(rows["1"][i]) for i in (5, 6, 7)] == [120] * 3  # one channel per clock: no tree
    synth = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
             for line in text.splitlines() if line.startswith("| whole design")}
    luts = {name: int(cells[0].replace(",", "")) for name, cells in synth.items()}
    assert set(luts) == {"whole design, without reuse", "whole design, with reuse"}
    assert all(n > 0 for n in luts.values()) and all(cells[-1].endswith(" s") for cells in synth.values())
    assert luts["whole design, with reuse"] < 0.8 * luts["whole design, without reuse"], luts
    assert "whole design: " in text and "LUTs with reuse" in text

    done = bnnc("report", out, "--synth-layers", "1")  # layer 1 builds no child: the same RTL, synthesized once
    assert done.returncode == 0, done.stderr
    text = (out / "report.md").read_text()
    assert "| layer 1, same RTL with and without reuse |" in text and "| whole design" not in text


@pytest.mark.skipif(shutil.which("yosys") is None, reason="Yosys not installed")
def test_folded_lanes_are_synthesized_once_and_counted_per_lane(tmp_path):
    """A folded layer's lanes are one module in Yosys, counted once per lane in the totals; ABC
    maps that lane alone no worse than inside the flattened layer."""
    from bnnc import driver
    from bnnc.backends.verilog import emit
    from bnnc.report import shared_cells, synthesize

    model = structured_mlp(tmp_path / "m.onnx")
    fold = tmp_path / "fold.json"  # layer 0: 4 lanes, 3 channel groups x 4 input chunks
    fold.write_text(json.dumps({"layers": {"0": {"pe": 4, "simd": 6}, "1": {"pe": 2, "simd": 12}}}))
    out = tmp_path / "build"
    assert bnnc("compile", model, "-o", out, "--fold", fold).returncode == 0
    design = driver.hardware(driver.open_build(out))
    rtl = tmp_path / "rtl"
    emit(design, rtl)
    assert shared_cells(design, "bnnc_layer0") == ("bnnc_layer0/lane*dot",)
    assert shared_cells(design, "bnnc_top") == ("bnnc_top/stage*", "bnnc_layer0/lane*dot", "bnnc_layer1/lane*dot")
    shared = synthesize(rtl, "bnnc_layer0", 300, shared_cells(design, "bnnc_layer0"))
    stat = (tmp_path / "yosys_stat_bnnc_layer0.txt").read_text()
    sections = dict(re.findall(r"=== (.+?) ===\n(.*?)(?====|\Z)", stat, re.S))

    def luts(text):
        return sum(int(n) for n in re.findall(r"LUT\d\s+(\d+)", text))

    lane = next(name for name in sections if name.endswith("bnnc_dot"))
    assert re.search(r"bnnc_dot\s+4\n", sections["design hierarchy"])  # one module, four instances
    assert luts(sections[lane]) > 0 and shared["LUT"] == luts(sections["bnnc_layer0"]) + 4 * luts(sections[lane])
    flat = synthesize(rtl, "bnnc_layer0", 300)
    assert shared["LUT"] <= flat["LUT"] and shared["FF"] == flat["FF"], (shared, flat)
