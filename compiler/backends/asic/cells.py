"""TLG cells: Verilog models and a Liberty file whose area and delay are a MODEL, not a library.

No per-cell area or delay of a threshold-logic (FTL) cell has been published that we could find
(DESIGN.md section 7). The FTL paper's claim is relative: per cell, -79.4% area and -40.3% delay
against the CMOS logic plus flip-flop it replaces (40 nm). The model applies exactly those
ratios to the CMOS cost of each fan-in's reference function on the OSU 0.18 um library
(qflow-tech-osu018), measured once with Yosys 0.23 + ABC + OpenSTA (no parasitics) on a
register-to-register path:

  fan-in  reference function            OSU cells                 logic um2  + DFFPOSX1  delay ns*
  2       [a + b >= 2] (AND)            AND2X1                    32         96         0.417
  3       [a + b + c >= 2] (majority)   2 NAND2X1 + OAI21X1       71         96         0.469
  4       [a + b + c - 2d >= 1] (sum)   NAND3X1 + NOR3X1 + OAI21X1 123        96         0.497
  1       identity (a clocked delay)    BUFX2                     24         96         -
  * clock-to-Q + logic + setup

Modelled TLG = 20.6% of that area and 59.7% of that delay. Fan-ins above 4 (options
max-fan-in > 4) are extrapolated linearly from fan-in 4 and say so. Whether TL wins therefore
depends on these assumptions: `bnnc report` sweeps the assumed cell cost instead of claiming it.
"""
from __future__ import annotations

AREA_RATIO = 1 - 0.794  # FTL: -79.4% area per cell
DELAY_RATIO = 1 - 0.403  # FTL: -40.3% delay per cell
DFF_AREA = 96.0  # OSU 0.18 DFFPOSX1, um2
REFERENCE = {  # fan-in: (CMOS logic area um2 without the flip-flop, register-to-register delay ns)
    1: (24.0, 0.417),
    2: (32.0, 0.417),
    3: (71.0, 0.469),
    4: (123.0, 0.497),
}


def cell_name(fan_in: int) -> str:
    return f"bnnc_tlg{fan_in}"


def reference_cost(fan_in: int) -> tuple[float, float, bool]:
    """(CMOS area with its flip-flop in um2, delay in ns, measured) of the logic a TLG replaces."""
    if fan_in in REFERENCE:
        area, delay = REFERENCE[fan_in]
        return area + DFF_AREA, delay, True
    area, delay = REFERENCE[4]
    return area * fan_in / 4 + DFF_AREA, delay * fan_in / 4, False


def modelled_cost(fan_in: int, area_ratio: float = AREA_RATIO) -> tuple[float, float]:
    """(area um2, delay ns) of a TLG cell under the FTL ratios (area_ratio: for sweeps)."""
    area, delay, _ = reference_cost(fan_in)
    return area * area_ratio, delay * DELAY_RATIO


def cell_model(n: int) -> str:
    """Combinational Verilog model of the fan-in n cell: y = [sum_i W_i * a_i >= T], weights and
    threshold programmed per instance (parameters), in signed integer arithmetic."""
    out = ["// Threshold-logic gate model (combinational): y = [W0*a0 + W1*a1 + ... >= T].",
           "// An FTL cell is clocked and its weights are programmed after fabrication; see program.json.", ""]
    params = ", ".join(f"W{i} = 1" for i in range(n))
    ports = ", ".join(f"a{i}" for i in range(n))
    total = " + ".join(f"(a{i} ? W{i} : 0)" for i in range(n))
    out += [f"module {cell_name(n)} #(parameter integer {params}, T = 1) (",
            f"    input  wire {ports},",
            "    output wire y",
            ");",
            f"    assign y = {total} >= T;",
            "endmodule", ""]
    return "\n".join(out)


def liberty(fan_ins: list[int]) -> str:
    """A Liberty library of the TLG cells with the MODELLED area and a scalar pin-to-output
    delay. No `function`: a cell's function is its programmed weights (program.json)."""
    out = ["/* bnnc threshold-logic gate cells: MODELLED costs, not a characterised library.",
           f"   area = {AREA_RATIO:.3f} x (OSU 0.18 CMOS reference logic + DFFPOSX1), delay = {DELAY_RATIO:.3f} x its",
           "   register-to-register delay (FTL ratios -79.4% area, -40.3% delay); see compiler/backends/asic/cells.py. */",
           "library (bnnc_tlg_modelled) {",
           '  delay_model : table_lookup;',
           '  time_unit : "1ns";',
           '  voltage_unit : "1V";',
           '  current_unit : "1uA";',
           '  capacitive_load_unit (1,pf);',
           '  pulling_resistance_unit : "1kohm";',
           '  leakage_power_unit : "1nW";',
           "  nom_process : 1;",
           "  nom_voltage : 1.8;",
           "  nom_temperature : 25;"]
    for n in fan_ins:
        area, delay = modelled_cost(n)
        measured = reference_cost(n)[2]
        out += [f"  cell ({cell_name(n)}) {{",
                f"    /* fan-in {n}: {'from the measured reference' if measured else 'EXTRAPOLATED from fan-in 4'} */",
                f"    area : {area:.3f};"]
        for i in range(n):
            out += [f"    pin (a{i}) {{ direction : input; capacitance : 0.01; }}"]
        out += ["    pin (y) {", "      direction : output;"]
        for i in range(n):
            out += [f'      timing () {{ related_pin : "a{i}"; '
                    f'cell_rise (scalar) {{ values ("{delay:.4f}"); }} cell_fall (scalar) {{ values ("{delay:.4f}"); }} '
                    f'rise_transition (scalar) {{ values ("0.05"); }} fall_transition (scalar) {{ values ("0.05"); }} }}']
        out += ["    }", "  }"]
    out.append("}")
    return "\n".join(out) + "\n"
