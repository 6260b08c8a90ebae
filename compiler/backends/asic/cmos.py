"""DIR/asic/cmos/: the fully unrolled RTL mapped onto the OSU 0.18 um standard cells.

The cells come from Debian's `qflow-tech-osu018` (GPL, never copied into this repository: the
flow reads the Liberty, Verilog models and SPICE netlists where the package installed them).
Yosys maps the RTL (`synth; dfflibmap -liberty; abc -liberty`, hierarchy kept so that each layer
is counted on its own), OpenSTA times the netlist without wire parasitics (register to register,
ideal clock), and the SPICE netlists give transistors per cell. Gate-level simulation runs the
netlist with the package's own cell models under Icarus; under Verilator with the package's
combinational cells and flip-flop models of our own (`verilator_netlist`: Verilator runs the
package's flip-flop UDPs without flip-flop timing).

Files written by `map_design`: gates/netlist.v, gates/filelist.f (the netlist and the installed
cell models), sta_netlist.v (the same, bit-blasted for OpenSTA), map.ys and sta.tcl (the scripts
as run), stat.txt (Yosys), sta.txt (OpenSTA's critical path) and summary.json (area, cells,
transistors, critical path, Fmax; per module).
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

from ...diagnostics import BnncError
from ..hardware import Design
from ..verilog import TOP, emit, sources

TECH = Path("/usr/share/qflow/tech/osu018")
LIBERTY, CELL_MODELS, SPICE = TECH / "osu018_stdcells.lib", TECH / "osu018_stdcells.v", TECH / "osu018_stdcells.sp"
APT = "apt-get install -y qflow-tech-osu018 opensta yosys iverilog"
# Verilator warnings the unmodified cell models raise: specify blocks and min:typ:max delays
# (timing, which a zero-delay functional simulation ignores anyway) and nets the models declare
# implicitly; and UNOPTFLAT, a performance note: in a mapped netlist one bit of a vector net can
# feed another bit of it through cells (the conv example's window links), which Verilator sees
# as a loop over the whole vector and settles by iterating.
CELL_MODEL_WAIVERS = ("-Wno-SPECIFYIGN", "-Wno-MINTYPMAXDLY", "-Wno-IMPLICIT", "-Wno-UNOPTFLAT")
STA_PERIOD = 10.0  # ns; only the slack matters: min period = STA_PERIOD - slack


def missing_tools() -> str | None:
    """Why the CMOS flow cannot run here, or None."""
    if not LIBERTY.is_file():
        return f"the OSU 0.18 um cells are not installed ({LIBERTY}); {APT}"
    for tool in ("yosys", "sta"):
        if shutil.which(tool) is None:
            return f"'{tool}' is not on PATH; {APT}"
    return None


def emit_cmos(design: Design, out_dir: Path) -> list[Path]:
    """The RTL the CMOS flow maps (the fully unrolled plan, as the TL netlist)."""
    return emit(design, Path(out_dir) / "rtl")


def _digest(files: list[Path]) -> str:
    h = hashlib.sha256(LIBERTY.read_bytes())
    for path in files:
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def map_design(cmos_dir: Path, timeout: float = 3600) -> Path:
    """Map cmos_dir/rtl onto the cells (once: kept until the RTL changes) and time it; returns
    the folder holding the gate-level netlist and its file list."""
    reason = missing_tools()
    if reason:
        raise BnncError(f"CMOS backend: {reason}")
    cmos_dir = Path(cmos_dir)
    rtl = sources(cmos_dir / "rtl")
    gates = cmos_dir / "gates"
    stamp = cmos_dir / "mapped.sha256"
    digest = _digest(rtl)
    if stamp.is_file() and stamp.read_text() == digest and (gates / "netlist.v").is_file():
        return gates
    stamp.unlink(missing_ok=True)
    gates.mkdir(parents=True, exist_ok=True)
    script = "\n".join([
        "read_verilog " + " ".join(str(p.resolve()) for p in rtl),
        f"hierarchy -check -top {TOP}",
        # Hierarchy kept: a layer's dot products share one module per parameter set, with the
        # weights as its inputs, so ABC maps one dot product per layer (flattening them into the
        # layer would fold the constant weights, ~35% fewer cells on a 16-12-8-4 MLP, but took
        # ABC over 40 minutes on the digits MLP's first layer on a loaded machine).
        f"synth -top {TOP}",
        f"dfflibmap -liberty {LIBERTY}",
        f"abc -liberty {LIBERTY}",
        "setundef -zero",  # undriven bits (unused code bits) as 0, not x
        "opt_clean -purge",
        f"tee -q -o {(cmos_dir / 'stat.txt').resolve()} stat -liberty {LIBERTY}",
        f"write_verilog -noattr -noexpr {(gates / 'netlist.v').resolve()}",
        # OpenSTA's reader takes no concatenation on the left of an assign: a bit-blasted copy
        "splitnets -ports",
        "opt_clean -purge",
        f"write_verilog -noattr -noexpr {(cmos_dir / 'sta_netlist.v').resolve()}", ""])
    (cmos_dir / "map.ys").write_text(script)
    _run(["yosys", "-q", "-l", str(cmos_dir / "map.log"), str(cmos_dir / "map.ys")], timeout, "Yosys", cmos_dir / "map.log")
    (gates / "filelist.f").write_text(f"{CELL_MODELS}\nnetlist.v\n")
    critical = time_netlist(cmos_dir, timeout)
    summary = summarize(parse_stat((cmos_dir / "stat.txt").read_text()), critical)
    (cmos_dir / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    stamp.write_text(digest)
    return gates


def _run(cmd: list[str], timeout: float, what: str, log: Path | None = None) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BnncError(f"{what} did not finish in {timeout:.0f} s") from None
    if proc.returncode:
        tail = (log.read_text(errors="replace") if log and log.is_file() else proc.stdout + proc.stderr).splitlines()[-8:]
        raise BnncError(f"{what} failed:\n" + "\n".join(tail))
    return proc


def time_netlist(cmos_dir: Path, timeout: float) -> dict:
    """OpenSTA: the worst register-to-register path (no parasitics, ideal clock), of the whole
    design and into each layer's registers."""
    netlist = (cmos_dir / "sta_netlist.v").resolve()
    layers = re.findall(r"^\s*bnnc_layer(\d+)\s+(\S+)\s*\(", netlist.read_text(), re.M)
    tcl = "\n".join([
        f"read_liberty {LIBERTY}",
        f"read_verilog {netlist}",
        f"link_design {TOP}",
        f"create_clock -name clk -period {STA_PERIOD} [get_ports clk]",
        "report_checks -path_delay max -from [all_registers -clock_pins] -to [all_registers -data_pins] -digits 3"]
        + [f'puts "layer {i}"\nreport_checks -path_delay max -from [all_registers -clock_pins] '
           f"-to [get_pins {inst}/*/D] -digits 3 -format end" for i, inst in layers] + [""])
    (cmos_dir / "sta.tcl").write_text(tcl)
    text = _run(["sta", "-exit", str(cmos_dir / "sta.tcl")], timeout, "OpenSTA").stdout
    (cmos_dir / "sta.txt").write_text(text)
    slack = re.search(r"(-?[0-9.]+)\s+slack", text)
    if not slack:
        raise BnncError(f"OpenSTA reported no register-to-register path:\n{text[-500:]}")
    period = STA_PERIOD - float(slack.group(1))
    start = re.search(r"Startpoint: (\S+)", text)
    end = re.search(r"Endpoint: (\S+)", text)
    per_layer = {}
    for index, block in re.findall(r"^layer (\d+)\n(.*?)(?=^layer |\Z)", text, re.M | re.S):
        found = re.search(r"\s(-?[0-9.]+) \((?:MET|VIOLATED)\)", block)
        if found:
            per_layer[f"bnnc_layer{index}"] = round(STA_PERIOD - float(found.group(1)), 3)
    return {"period_ns": round(period, 3), "fmax_mhz": round(1000 / period, 1), "layer_period_ns": per_layer,
            "from": start.group(1) if start else "?", "to": end.group(1) if end else "?",
            "note": "OpenSTA, no wire parasitics, ideal clock, typical corner"}


def transistors_per_cell() -> dict[str, int]:
    """MOSFETs in each cell's SPICE subcircuit."""
    counts: dict[str, int] = {}
    cell = None
    if not SPICE.is_file():
        return counts
    for line in SPICE.read_text(errors="replace").splitlines():
        words = line.split()
        if not words:
            continue
        head = words[0].upper()
        if head == ".SUBCKT":
            cell = words[1]
            counts[cell] = 0
        elif head == ".ENDS":
            cell = None
        elif cell and head.startswith("M"):
            counts[cell] += 1
    return counts


def parse_stat(text: str) -> dict[str, dict]:
    """Yosys `stat -liberty` text -> {module: {"area": its own cells' area, "cells": {type: n}}}
    (Yosys 0.23's `stat -json` is not valid JSON for a hierarchy)."""
    modules: dict[str, dict] = {}
    name = None
    for line in text.splitlines():
        head = re.match(r"=== (.+) ===$", line.strip())
        if head:
            name = head.group(1).lstrip("\\")
            if name == "design hierarchy":
                break
            modules[name] = {"area": 0.0, "cells": {}}
            continue
        if name is None:
            continue
        area = re.match(r"\s*Chip area for module .*: ([0-9.]+)", line)
        cell = re.match(r"\s{5}(\S+)\s+([0-9]+)$", line)
        if area:
            modules[name]["area"] = float(area.group(1))
        elif cell and not line.strip().startswith("Number"):
            modules[name]["cells"][cell.group(1).lstrip("\\")] = int(cell.group(2))
    return modules


def summarize(modules: dict, critical: dict) -> dict:
    """Per module of the hierarchy: area, cells and transistors including its submodules."""
    tcount = transistors_per_cell()
    totals: dict[str, dict] = {}

    def total(name: str) -> dict:
        if name in totals:
            return totals[name]
        mod = modules[name]
        area, cells, trans = mod["area"], 0, 0
        for cell, n in mod["cells"].items():
            if cell in modules:  # a submodule instance
                sub = total(cell)
                area += n * sub["area_um2"]
                cells += n * sub["cells"]
                trans += n * sub["transistors"]
            else:
                cells += n
                trans += n * tcount.get(cell, 0)
        totals[name] = {"area_um2": area, "cells": cells, "transistors": trans}
        return totals[name]

    for name in modules:
        total(name)
    return {"top": totals[TOP], "modules": {n: v for n, v in totals.items() if not n.startswith("$paramod")},
            "critical_path": critical, "library": str(LIBERTY),
            "flow": "yosys synth; dfflibmap -liberty; abc -liberty (hierarchy kept); stat -liberty"}


# Verilator evaluates the OSU flip-flops' sequential UDP (udp_dff) like a blocking assignment, so a
# value runs through a chain of flip-flops in one clock: four DFFPOSX1 in a row pass a pulse in 1
# clock under Verilator 5.48 and in 4 under Icarus (the conv example's line buffers, whose CMOS
# netlist therefore gave wrong outputs under Verilator while the MLP's, with no flip-flop feeding
# another, gave right ones). Under Verilator the flip-flop cells are these models instead, the
# Liberty's `ff (IQ, IQN) { next_state: "D"; clocked_on: "CLK" | "!CLK" }` as non-blocking
# assignments; the other cells stay the package's.
FLIP_FLOP_MODELS = {
    "DFFPOSX1": "module DFFPOSX1 (CLK, D, Q);\ninput CLK;\ninput D;\noutput reg Q;\n"
                "always @(posedge CLK) Q <= D;\nendmodule\n",
    "DFFNEGX1": "module DFFNEGX1 (CLK, D, Q);\ninput CLK;\ninput D;\noutput reg Q;\n"
                "always @(negedge CLK) Q <= D;\nendmodule\n",
}
_MODULE = re.compile(r"^module (\w+)\b.*?^endmodule\n", re.MULTILINE | re.DOTALL)


def verilator_netlist(gates: Path) -> Path:
    """A folder whose filelist.f simulates gates/netlist.v under Verilator: the package's cell
    models with the flip-flops replaced (above). A netlist using another sequential cell (a latch,
    a flip-flop with set/reset) is refused: Verilator would run it wrong."""
    gates = Path(gates)
    library = CELL_MODELS.read_text()
    sequential = {m.group(1) for m in _MODULE.finditer(library) if re.search(r"\budp_(dff|tlat|rslat)\b", m.group(0))}
    used = set(re.findall(r"^\s*(\w+)\s+\S+\s*\(", (gates / "netlist.v").read_text(), re.MULTILINE))
    unmodelled = sorted((sequential & used) - set(FLIP_FLOP_MODELS))
    if unmodelled:
        raise BnncError(f"the CMOS netlist uses {', '.join(unmodelled)}, which Verilator does not simulate as a "
                        f"flip-flop or latch; run it with --simulator icarus")
    cells = _MODULE.sub(lambda m: FLIP_FLOP_MODELS.get(m.group(1), m.group(0)), library)
    view = gates.parent / "gates-verilator"
    view.mkdir(exist_ok=True)
    (view / "cells.v").write_text(cells)
    (view / "filelist.f").write_text(f"cells.v\n{(gates / 'netlist.v').resolve()}\n")
    return view
