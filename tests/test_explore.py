"""`bnnc explore`: the sweep's points are the designs `bnnc compile` builds at those foldings, the
Pareto table is exactly the non-dominated set of the measured points, the SVG is well-formed, and
a two-worker Dask cluster gives the same files as the local process pool."""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from bnnc import api
from bnnc.cli import main
from bnnc.passes import DEFAULT_PIPELINE

from tests.onnx_builders import sign_bn_mlp

HAVE_YOSYS = shutil.which("yosys") is not None


def bnnc(*args, timeout=600):
    """The CLI in a subprocess (the slow tests: its process pool and Dask's workers are its own)."""
    return subprocess.run([sys.executable, "-m", "bnnc", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def bnnc_here(capsys, *args) -> tuple[int, str, str]:
    """The CLI in this process (fast): exit code, stdout, stderr."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def correlated_mlp(path, k=32, c=16, classes=4, seed=0) -> str:
    """x -> Sign -> k -> c -> c -> classes, each with BN and Sign; the hidden layers' rows are noisy copies (or negations) of
    three prototypes, so channel reuse has children to build when a layer is not folded."""
    rng = np.random.default_rng(seed)

    def rows(fan_in: int, flips: int) -> np.ndarray:
        protos = rng.choice([-1.0, 1.0], (3, fan_in))
        out = protos[np.arange(c) % 3] * rng.choice([-1.0, 1.0], (c, 1))
        for row in out:
            row[rng.choice(fan_in, flips, replace=False)] *= -1
        return out

    def bn(n: int) -> dict:
        return {"gamma": rng.uniform(0.5, 2, n), "beta": rng.normal(0, 1, n) + 0.5, "mean": rng.integers(-4, 4, n),
                "var": np.ones(n)}
    # the last layer is thresholded too (outputs are signs, not scores): no multiply-add head,
    # whose multiplier Yosys 0.23's ABC takes minutes over, so a point synthesizes in seconds
    return sign_bn_mlp(path, [rows(k, 2).T, rows(c, 1).T, rng.choice([-1.0, 1.0], (c, classes))],
                       [bn(c), bn(c), bn(classes)])


def read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def non_dominated(points: list[tuple[int, int]]) -> list[bool]:
    """(size, cycles) pairs: True where no other pair is as small and as fast and better in one."""
    return [not any(s2 <= s and c2 <= c and (s2, c2) != (s, c) for s2, c2 in points) for s, c in points]


def folding(text: str) -> dict:
    """'0:16x32 1:16x16' -> a folding file's layers."""
    return {i: {"pe": int(pe), "simd": int(simd)}
            for i, pe, simd in (part.replace(":", "x").split("x") for part in text.split())}


def check_outputs(out, model, tmp_path, size: str) -> list[dict]:
    """What every explore run must satisfy; returns the CSV rows."""
    rows = read_csv(out / "explore.csv")
    assert rows, "no design explored"
    sizes = [(int(r[size]), int(r["cycles_per_frame"])) for r in rows]
    assert [r["pareto"] == "yes" for r in rows] == non_dominated(sizes)
    # the markdown's front lists exactly the CSV's front rows
    md = (out / "explore.md").read_text()
    front_md = md.split("## Pareto front")[1].split("## Every design")[0]
    listed = [line for line in front_md.splitlines() if line.startswith("| ") and not line.startswith("| variant")]
    assert len(listed) == sum(r["pareto"] == "yes" for r in rows)
    # the SVG is well-formed XML with a marker per design
    root = ET.parse(out / "explore.svg").getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert len(root.findall("{http://www.w3.org/2000/svg}circle")) == len(rows) + 3  # + the legend's three
    # every point is the design `bnnc compile` builds at its folding: same cycles per frame
    for r in rows[:2]:
        fold = tmp_path / f"fold-{r['variant']}-{r['target_cycles']}.json"
        fold.write_text(json.dumps({"layers": {str(k): v for k, v in folding(r["folding"]).items()}}))
        pipeline = DEFAULT_PIPELINE + (",channel-reuse" if r["variant"] == "reuse" else "")
        build = api.compile(model, tmp_path / f"build-{r['variant']}-{r['target_cycles']}", fold=str(fold),
                            pipeline=pipeline)
        hw = build.manifest["hardware"]
        assert hw["cycles_per_frame"] == int(r["cycles_per_frame"]) <= int(r["target_cycles"])
        assert hw["latency_cycles"] == int(r["latency_cycles"])
    return rows


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return correlated_mlp(tmp_path_factory.mktemp("explore") / "mlp.onnx")


def test_counts_only_sweep(model, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, err = bnnc_here(capsys, "explore", model, "-o", out, "--no-synth", "--cycles", "1,2,4,8,16")
    assert code == 0, err
    rows = check_outputs(out, model, tmp_path, "xnors_per_clock")
    assert {r["variant"] for r in rows} == {"plain", "reuse"}
    one = {r["variant"]: int(r["xnors_per_clock"]) for r in rows if r["cycles_per_frame"] == "1"}
    assert one["reuse"] < one["plain"] == 32 * 16 + 16 * 16 + 16 * 4  # unrolled: every channel, children built
    assert "## Pareto front" in stdout and "| LUT |" not in stdout
    again = tmp_path / "again"
    assert bnnc_here(capsys, "explore", model, "-o", again, "--no-synth", "--cycles", "16,8,4,2,1")[0] == 0
    for name in ("explore.csv", "explore.md", "explore.svg"):  # deterministic, whatever the order asked
        assert (again / name).read_bytes() == (out / name).read_bytes()


@pytest.mark.parametrize("args, message", [
    (["--cluster", "not an address"], "--cluster 'not an address'"),
    (["--cluster", "tcp://127.0.0.1:9", "--cluster-timeout", "1"], "no Dask scheduler answered within 1 s"),
    (["--cycles", "4,x"], "--cycles: '4,x'"),
    (["--cycles", "0"], "--cycles: '0'"),
    (["--jobs", "0"], "--jobs: 0"),
])
def test_bad_options_are_one_line(model, tmp_path, capsys, args, message):
    code, _, err = bnnc_here(capsys, "explore", model, "-o", tmp_path / "out",
                             *(args if "--cycles" in args else ["--cycles", "4", *args]))
    assert code == 2, err
    assert err.startswith("bnnc: error: ") and message in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_bad_model_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    code, _, err = bnnc_here(capsys, "explore", bad, "-o", tmp_path / "out", "--no-synth")
    assert code == 2 and err.startswith("bnnc: error: ") and "bad.onnx" in err
    assert len(err.strip().splitlines()) == 1


SYNTH_CYCLES = "2,4"  # four designs (two foldings, with and without reuse), four Yosys runs of about 5 s


@pytest.fixture(scope="module")
def local_run(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "out"
    done = bnnc("explore", model, "-o", out, "--cycles", SYNTH_CYCLES, "--jobs", "2")
    assert done.returncode == 0, done.stderr
    assert "synthesizing on 2 local processes" in done.stderr
    return out


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_YOSYS, reason="Yosys not installed")
def test_local_pool_measures_luts(model, local_run, tmp_path):
    rows = check_outputs(local_run, model, tmp_path, "LUT")
    assert len(rows) == 4
    assert all(int(r["LUT"]) > 0 and int(r["lut_x_cycles"]) == int(r["LUT"]) * int(r["cycles_per_frame"]) for r in rows)
    luts = {(r["variant"], r["cycles_per_frame"]): int(r["LUT"]) for r in rows}
    assert luts["reuse", "2"] < luts["plain", "2"]  # all channels in one clock: the children are built


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_YOSYS, reason="Yosys not installed")
def test_dask_cluster_gives_the_same_results(model, local_run, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        out = tmp_path / "out"
        done = bnnc("explore", model, "-o", out, "--cycles", SYNTH_CYCLES, "--cluster", cluster.scheduler_address)
        assert done.returncode == 0, done.stderr
        assert "synthesizing on the Dask cluster" in done.stderr and "(2 workers)" in done.stderr
        jobs = cluster.scheduler.task_prefixes["synth_job"]  # the scheduler's own record: they ran on its workers
        assert jobs.state_counts["memory"] == 4 and jobs.all_durations["compute"] > 0
    for name in ("explore.csv", "explore.md", "explore.svg"):
        assert (out / name).read_bytes() == (local_run / name).read_bytes()


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_YOSYS, reason="Yosys not installed")
def test_flat_lanes_merge_rom_and_xnor(model, local_run, tmp_path):
    """--flat: a folded layer's lanes synthesized with their weight ROM; Yosys then merges each
    weight bit's ROM with its XNOR, which the lane boundary forbids: fewer LUTs, same design."""
    out = tmp_path / "flat"
    done = bnnc("explore", model, "-o", out, "--cycles", "4", "--flat")
    assert done.returncode == 0, done.stderr
    flat = {r["variant"]: r for r in read_csv(out / "explore.csv")}
    kept = {r["variant"]: r for r in read_csv(local_run / "explore.csv") if r["target_cycles"] == "4"}
    assert set(flat) == set(kept) == {"plain", "reuse"}
    for variant in flat:
        assert flat[variant]["folding"] == kept[variant]["folding"]
        assert int(flat[variant]["LUT"]) < int(kept[variant]["LUT"]), (flat[variant], kept[variant])
    assert "lanes flat" in (out / "explore.md").read_text()
