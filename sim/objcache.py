"""A minimal ccache for Verilator's runtime library, used as the OBJCACHE of its makefile.

Verilator's makefile runs every compile as `$(OBJCACHE) $(CXX) ...`. The runtime sources
(verilated.cpp, verilated_vpi.cpp, ...) and cocotb's Verilator main (verilator.cpp) are identical
for every design, yet a fresh build folder compiles them again, which is most of the C++ time of
a small design. This wrapper keeps their objects (and -MMD dependency files) keyed by the exact
command line, the source, the compiler and the build folder's headers the source includes
(cocotb's main includes the design's Vtop.h, which is the same for every design with the same
bench ports); anything else, in particular the design's own C++, is compiled as usual.

Usage: objcache.py CACHE_DIR COMPILER ARGS...
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

COCOTB_MAIN = Path("share") / "lib" / "verilator" / "verilator.cpp"  # inside the cocotb package
LOCAL_INCLUDE = re.compile(rb'^\s*#\s*include\s+"([^"]+)"', re.MULTILINE)


def _cacheable_source(cmd: list[str]) -> Path | None:
    root = os.environ.get("VERILATOR_ROOT")
    sources = [a for a in cmd if a.endswith(".cpp")]
    if root is None or len(sources) != 1 or "-o" not in cmd or "-c" not in cmd:
        return None
    source = Path(sources[0]).resolve()
    runtime = source.is_relative_to(Path(root).resolve() / "include")
    return source if runtime or source.as_posix().endswith("/cocotb/" + COCOTB_MAIN.as_posix()) else None


def _local_headers(text: bytes, seen: set[Path]) -> list[Path]:
    """The build folder's headers a source includes, directly or through each other."""
    found = []
    for name in LOCAL_INCLUDE.findall(text):
        header = Path(name.decode()).resolve()
        if header.is_file() and header.parent == Path.cwd().resolve() and header not in seen:
            seen.add(header)
            found += [header] + _local_headers(header.read_bytes(), seen)
    return found


def _key(cmd: list[str], source: Path) -> str:
    compiler = shutil.which(cmd[0]) or cmd[0]
    stat = os.stat(compiler)
    h = hashlib.sha256("\0".join(cmd).encode())
    h.update(f"\0{compiler}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    text = source.read_bytes()
    h.update(text)
    for header in _local_headers(text, set()):
        h.update(f"\0{header.name}\0".encode() + header.read_bytes())
    return h.hexdigest()[:40]


def main(argv: list[str]) -> int:
    cache_root, cmd = Path(argv[1]), argv[2:]
    source = _cacheable_source(cmd)
    if source is None:
        return subprocess.call(cmd)
    out = Path(cmd[cmd.index("-o") + 1])
    products = [out, out.with_suffix(".d")]
    entry = cache_root / _key(cmd, source)
    if all((entry / p.name).is_file() for p in products[:1]):
        for p in products:
            if (entry / p.name).is_file():
                shutil.copyfile(entry / p.name, p)
        return 0
    status = subprocess.call(cmd)
    if status == 0:
        cache_root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=cache_root))
        for p in products:
            if p.is_file():
                shutil.copyfile(p, staging / p.name)
        try:
            staging.rename(entry)  # atomic: concurrent builds never see half an entry
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)  # another build stored it first
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
