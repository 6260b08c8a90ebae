"""Formal check that a TL layer module computes what the RTL layer module computes (Yosys).

Both modules have the same ports. A miter of the two (`miter -equiv`) is proved by SAT for every
input sequence of `steps` clocks from reset (bounded model check): a vector accepted in clock 2
reaches out_data in clock 4, so with steps >= 4 every possible input vector passes through both
layers, and the TLG network equals the RTL's popcount and threshold on all 2^K of them (plus
the handshake). The SAT problem grows with the popcount: meant for small layers.
"""
from __future__ import annotations

import subprocess
from pathlib import Path


def layer_equivalence(rtl_dir: Path, tl_dir: Path, index: int, steps: int = 4,
                      timeout: float = 900) -> tuple[bool, str]:
    """(proved, Yosys' last lines) for layer `index` of an RTL folder and a TL folder."""
    rtl_dir, tl_dir = Path(rtl_dir), Path(tl_dir)
    module = f"bnnc_layer{index}"
    cells = " ".join(sorted(str(p) for p in tl_dir.glob("bnnc_tlg*.v")))
    script = "; ".join([
        f"read_verilog {rtl_dir / 'bnnc_dot.v'} {rtl_dir / (module + '.v')}",
        f"rename {module} gold",
        f"read_verilog {cells} {tl_dir / (module + '.v')}",
        f"rename {module} gate",
        "hierarchy -check",
        "proc; flatten; opt_clean",
        "miter -equiv -flatten -make_outputs gold gate miter",
        "hierarchy -top miter",
        f"sat -verify -prove trigger 0 -set-at 1 in_rst 1 -seq {steps} -set-init-zero miter"])
    proc = subprocess.run(["yosys", "-p", script], capture_output=True, text=True, timeout=timeout)
    lines = [ln for ln in proc.stdout.splitlines() if "SAT" in ln or "ERROR" in ln or "fail" in ln.lower()]
    proved = proc.returncode == 0 and "no model found: SUCCESS!" in proc.stdout
    return proved, "\n".join(lines[-4:] or (proc.stdout + proc.stderr).splitlines()[-4:])
