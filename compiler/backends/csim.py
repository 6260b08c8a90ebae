"""C simulation of an emitted HLS project: build it with g++, run vectors through it.

The executable is cached under a key made of every source byte, the compiler and its flags, so
a design is compiled once however often it runs (the sources are the design's identity).
A bundle is one executable holding several projects (each in a namespace of its own, its first
argument picks one): one compiler run instead of many, for test suites and sweeps.
"""
from __future__ import annotations

import hashlib
import os
import re
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
# A project's own files in include order, and the lines that include them (or guard them).
BUNDLE_ORDER = ("bnnc_config.hpp", "bnnc_params.hpp", "bnnc_top.hpp", "bnnc_top.cpp", "csim_main.cpp")
_LOCAL = re.compile(r'\s*(#pragma once|#include "bnnc_\w+\.hpp")\s*$')


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


def _key(cxx: str, flags: tuple[str, ...], files: list[tuple[str, bytes]]) -> str:
    key = hashlib.sha256()
    key.update(_compiler_identity(cxx).encode())
    key.update("\0".join((cxx,) + flags).encode())
    for name, data in files:
        key.update(f"\0{name}\0".encode())
        key.update(data)
    return key.hexdigest()[:20]


def _compile(binary: Path, cmd: list[str]) -> Path:
    """Run cmd (which writes its output to the last argument) unless binary exists."""
    if binary.is_file():
        return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    # Compile to a private name and rename, so concurrent runs never see half an executable.
    fd, tmp = tempfile.mkstemp(prefix=binary.name + ".", dir=binary.parent)
    os.close(fd)
    proc = subprocess.run(cmd + [tmp], capture_output=True, text=True)
    if proc.returncode != 0:
        os.unlink(tmp)
        raise CsimError(f"compiling the HLS C simulation failed:\n$ {' '.join(cmd + [tmp])}\n{proc.stderr.strip()}")
    os.replace(tmp, binary)
    return binary


def build(hls_dir: Path, cache_dir: Path | None = None, cxx: str = "g++",
          extra_flags: tuple[str, ...] = ()) -> Path:
    """The C simulation executable of the project in hls_dir, compiled unless cached."""
    hls_dir = Path(hls_dir).resolve()
    own_dir = cache_dir is None
    cache_dir = hls_dir / BUILD_DIR if cache_dir is None else Path(cache_dir)
    files = [(str(path.relative_to(hls_dir)), path.read_bytes()) for path in _source_files(hls_dir)]
    binary = cache_dir / f"csim-{_key(cxx, CXX_FLAGS + tuple(extra_flags), files)}"
    cmd = [cxx, *CXX_FLAGS, *extra_flags, "-I", str(hls_dir), "-I", str(hls_dir / "include"),
           *(str(hls_dir / s) for s in SOURCES), "-o"]
    _compile(binary, cmd)
    if own_dir:  # the project's own build folder holds one design: drop older builds of it
        for stale in cache_dir.glob("csim-*"):
            if stale != binary and "." not in stale.name:
                stale.unlink(missing_ok=True)
    return binary


def build_bundle(hls_dirs: list[Path], cache_dir: Path, cxx: str = "g++",
                 extra_flags: tuple[str, ...] = ()) -> Path:
    """One executable for several projects: `bundle INDEX INPUTS [OUTPUTS]` runs project INDEX.

    Each project's own sources are pasted, in include order, into namespace bnnc_design<INDEX>
    (pasted, not #included: #pragma once would take the same header text of two projects for one
    file). The kernel library, the same bytes in every project (checked), is included once.
    """
    dirs = [Path(d).resolve() for d in hls_dirs]
    libraries = [{str(p.relative_to(d / "include")): p.read_bytes() for p in (d / "include").rglob("*.hpp")}
                 for d in dirs]
    if any(lib != libraries[0] for lib in libraries):
        raise CsimError("a bundle needs projects emitted with the same kernel library")
    for d in dirs:
        _source_files(d)  # each is a complete project
    lines = ["// Generated by bnnc's csim.build_bundle.", "#include <cerrno>", "#include <cstdio>",
             "#include <cstdlib>", '#include "bnn/bnn.hpp"', "#define BNNC_CSIM_ENTRY csim_main"]
    for i, d in enumerate(dirs):
        lines.append(f"namespace bnnc_design{i} {{")
        for name in BUNDLE_ORDER:
            body = (d / name).read_text().splitlines()
            lines += [f"// ---- project {i}: {name}"] + [line for line in body if not _LOCAL.match(line)]
        lines.append(f"}}  // namespace bnnc_design{i}")
    lines += ["int main(int argc, char** argv) {", "  const int index = argc > 1 ? std::atoi(argv[1]) : -1;",
              "  switch (index) {"]
    lines += [f"    case {i}: return bnnc_design{i}::csim_main(argc - 1, argv + 1);" for i in range(len(dirs))]
    lines += ["  }", '  std::fprintf(stderr, "usage: %s INDEX INPUTS [OUTPUTS]\\n", argv[0]);', "  return 2;", "}"]
    text = "\n".join(lines) + "\n"
    files = [("bundle.cpp", text.encode())] + [(name, data) for name, data in sorted(libraries[0].items())]
    binary = Path(cache_dir) / f"bundle-{_key(cxx, CXX_FLAGS + tuple(extra_flags), files)}"
    if binary.is_file():
        return binary
    source = binary.with_suffix(".cpp")
    binary.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=source.name + ".", dir=binary.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, source)
    return _compile(binary, [cxx, *CXX_FLAGS, *extra_flags, "-I", str(dirs[0] / "include"), str(source), "-o"])


def _check_inputs(design: Design, inputs: np.ndarray) -> np.ndarray:
    inputs = np.asarray(inputs)
    if inputs.ndim != 2 or inputs.shape[1] != design.in_count:
        raise CsimError(f"inputs must have shape (N, {design.in_count}), got {inputs.shape}")
    if not np.issubdtype(inputs.dtype, np.integer):  # floats, or the interpreter's exact Fractions
        try:
            as_int = inputs.astype(np.int64)
        except (TypeError, ValueError, OverflowError):
            raise CsimError("inputs must be integer element values") from None
        if not np.all(as_int == inputs):
            raise CsimError("inputs must be integer element values")
        inputs = as_int
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
    (Fixed outputs as integer codes), exactly as bnnc.interp.run gives them."""
    inputs = _check_inputs(design, inputs)
    return run_executable([str(build(hls_dir, cache_dir, cxx, extra_flags))], design, inputs)


def run_executable(command: list[str], design: Design, inputs: np.ndarray) -> np.ndarray:
    """run_csim on a built executable: command is [binary] or, for a bundle, [bundle, index]."""
    inputs = _check_inputs(design, inputs)
    out_count = 1 if design.argmax else design.out_count
    if len(inputs) == 0:
        return np.zeros((0, out_count), dtype=np.int64)
    work = Path(tempfile.mkdtemp(prefix="bnnc-csim-"))
    try:
        in_path, out_path = work / "inputs.txt", work / "outputs.txt"
        in_path.write_text("".join(" ".join(map(str, row)) + "\n" for row in inputs.tolist()))
        proc = subprocess.run([*command, str(in_path), str(out_path)], capture_output=True, text=True)
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
