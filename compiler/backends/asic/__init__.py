"""The ASIC target: a threshold-logic netlist (tl/) and a CMOS standard-cell baseline (cmos/).

Both build the fully unrolled plan (tl.py says why). `emit` writes what needs no tools; the CMOS
mapping (Yosys + ABC onto the OSU 0.18 um Liberty, OpenSTA) runs when a netlist is needed:
`bnnc run/verify --backend cmos` and `bnnc report` (cmos.py).
"""
from __future__ import annotations

from pathlib import Path

from ...ir.graph import Graph
from .tl import threshold_logic, tl_design


def emit(graph: Graph, out_dir: Path, pass_text: str = "map-threshold-logic") -> list[Path]:
    """DIR/asic/tl/ (netlist, cells, Liberty model, program.json) and DIR/asic/cmos/ (the RTL and
    the scripts that map it)."""
    from .cmos import emit_cmos
    from .tl_netlist import emit_tl

    out_dir = Path(out_dir)
    design = tl_design(graph)
    emit_tl(design, threshold_logic(graph, pass_text), out_dir / "tl")
    emit_cmos(design, out_dir / "cmos")
    return sorted(out_dir.iterdir())


def simulation_options(backend: str, simulator: str, engine: str) -> dict:
    """runner.simulate options for a gate-level netlist. Verilator runs the compiled bench, also for
    short runs (chosen when cocotb's builds made every net public, of which a netlist has far
    more; sim/native.py), and Verilator runs the OSU combinational cell models (UDPs
    included; its flip-flops are cmos.verilator_netlist's, tested against Icarus in
    tests/test_asic.py) once the warnings about their specify blocks, min:typ:max delays and
    implicit nets are waived."""
    if simulator != "verilator":
        return {"engine": engine}
    from .cmos import CELL_MODEL_WAIVERS
    return {"engine": "native" if engine == "auto" else engine,
            "verilator_args": CELL_MODEL_WAIVERS if backend == "cmos" else ()}


def hardware_dir(graph: Graph, backend: str, build_dir: Path | None, work: Path) -> Path:
    """The folder of the TL netlist or of the mapped CMOS netlist, made in `work` when the build
    folder has none (a CMOS netlist is mapped once and kept in the build folder)."""
    from .cmos import map_design
    from .tl_netlist import emit_tl

    asic = Path(build_dir) / "asic" if build_dir and (Path(build_dir) / "asic").is_dir() else None
    if backend == "tl":
        if asic is not None:
            return asic / "tl"
        emit_tl(tl_design(graph), threshold_logic(graph), work / "tl")
        return work / "tl"
    if asic is None:
        from .cmos import emit_cmos
        emit_cmos(tl_design(graph), work / "cmos")
        asic = work
    return map_design(asic / "cmos")
