"""C simulation of an emitted HLS project: build it with g++, run vectors through it.

The executable is cached under a key made of every source byte, the compiler and its flags, so
a design is compiled once however often it runs (the sources are the design's identity).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..diagnostics import BnncError
from ..ir.types import Bipolar
from .hardware import Design

# -Wno-unknown-pragmas: the HLS pragmas are for Vitis; g++ before 13 cannot silence that
# warning from inside the source (GCC bug 53431).
CXX_FLAGS = ("-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", "-Wno-unknown-pragmas")
SOURCES = ("bnnc_top.cpp", "csim_main.cpp")
BUILD_DIR = "build"


class CsimError(BnncError):
    """The C simulation could not be built or did not run cleanly."""


@lru_cache(maxsize=None)
def _compiler_identity(cxx: str) -> str:
    try:
        return subprocess.run([cxx, "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        raise CsimError(f"C++ compiler '{cxx}' is not usable: {err}") from err


def _source_files(hls_dir: Path) -> list[Path]:
    files = [hls_dir / name for name in SOURCES] + sorted(hls_dir.glob("*.hpp"))
    files += sorted((hls_dir / "include").rglob("*.hpp"))
    missing = [f.name for f in files[:len(SOURCES)] if not f.is_file()]
    if missing:
        raise CsimError(f"{hls_dir}: not an emitted HLS project (missing {', '.join(missing)})")
    return files


def build(hls_dir: Path, cache_dir: Path | None = None, cxx: str = "g++",
          extra_flags: tuple[str, ...] = ()) -> Path:
    """The C simulation executable of the project in hls_dir, compiled unless cached."""
    hls_dir = Path(hls_dir).resolve()
    own_dir = cache_dir is None
    cache_dir = hls_dir / BUILD_DIR if own_dir else Path(cache_dir)
    flags = CXX_FLAGS + tuple(extra_flags) + ("-I", str(hls_dir), "-I", str(hls_dir / "include"))
    key = hashlib.sha256()
    key.update(_compiler_identity(cxx).encode())
    key.update("\0".join((cxx,) + CXX_FLAGS + tuple(extra_flags)).encode())
    for path in _source_files(hls_dir):
        key.update(f"\0{path.relative_to(hls_dir)}\0".encode())
        key.update(path.read_bytes())
    binary = cache_dir / f"csim-{key.hexdigest()[:20]}"
    if binary.is_file():
        return binary
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Compile to a private name and rename, so concurrent runs never see half an executable.
    fd, tmp = tempfile.mkstemp(prefix=binary.name + ".", dir=cache_dir)
    os.close(fd)
    cmd = [cxx, *flags, *(str(hls_dir / s) for s in SOURCES), "-o", tmp]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        os.unlink(tmp)
        raise CsimError(f"compiling the HLS C simulation failed:\n$ {' '.join(cmd)}\n{proc.stderr.strip()}")
    os.replace(tmp, binary)
    if own_dir:  # the project's own build folder holds one design: drop older builds of it
        for stale in cache_dir.glob("csim-*"):
            if stale != binary and "." not in stale.name:
                stale.unlink(missing_ok=True)
    return binary


def _check_inputs(design: Design, inputs: np.ndarray) -> np.ndarray:
    inputs = np.asarray(inputs)
    if inputs.ndim != 2 or inputs.shape[1] != design.in_count:
        raise CsimError(f"inputs must have shape (N, {design.in_count}), got {inputs.shape}")
    if inputs.size and not np.issubdtype(inputs.dtype, np.integer):
        if not np.array_equal(inputs, np.round(inputs)):
            raise CsimError("inputs must be integer element values")
    inputs = inputs.astype(np.int64)
    elem = design.in_elem
    valid = np.isin(inputs, (-1, 1)) if isinstance(elem, Bipolar) else (inputs >= elem.lo) & (inputs <= elem.hi)
    if not valid.all():
        row, col = np.argwhere(~valid)[0]
        raise CsimError(f"input {row}, element {col}: {inputs[row, col]} is not a valid {elem} value")
    return inputs


def run_csim(hls_dir: Path, design: Design, inputs: np.ndarray, cache_dir: Path | None = None,
             cxx: str = "g++", extra_flags: tuple[str, ...] = ()) -> np.ndarray:
    """Outputs (N, out_count) of the C simulation for inputs (N, in_count), as element values
    (Fixed outputs as integer codes), exactly as compiler.interp.run gives them."""
    inputs = _check_inputs(design, inputs)
    binary = build(hls_dir, cache_dir, cxx, extra_flags)
    out_count = 1 if design.argmax else design.out_count
    if len(inputs) == 0:
        return np.zeros((0, out_count), dtype=np.int64)
    work = Path(tempfile.mkdtemp(prefix="bnnc-csim-"))
    try:
        in_path, out_path = work / "inputs.txt", work / "outputs.txt"
        in_path.write_text("".join(" ".join(map(str, row)) + "\n" for row in inputs.tolist()))
        proc = subprocess.run([str(binary), str(in_path), str(out_path)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise CsimError(f"the HLS C simulation failed (exit {proc.returncode}):\n{proc.stderr.strip()}")
        text = out_path.read_text()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = [line.split() for line in text.splitlines()]
    if len(rows) != len(inputs) or any(len(r) != out_count for r in rows):
        raise CsimError(f"the HLS C simulation wrote {len(rows)} lines for {len(inputs)} inputs, "
                        f"expected {out_count} values each")
    return np.array(rows, dtype=np.int64).reshape(len(inputs), out_count)
