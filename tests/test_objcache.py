"""sim/objcache.py shares compiled objects between Verilator builds: only sources that are the
same for every design are cached, and a cached object is reused only when everything it was
compiled from is the same -- including the build folder's headers that cocotb's main includes."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("objcache", ROOT / "sim" / "objcache.py")
assert SPEC and SPEC.loader
objcache = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(objcache)


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """A fake Verilator runtime and cocotb main, and a build folder as the working directory."""
    runtime = tmp_path / "verilator" / "include" / "verilated.cpp"
    main = tmp_path / "site" / "cocotb" / "share" / "lib" / "verilator" / "verilator.cpp"
    for path, text in ((runtime, "int runtime() { return 1; }\n"),
                       (main, '#include "Vtop.h"\n#include "verilated.h"\nint main() { return top(); }\n')):
        path.parent.mkdir(parents=True)
        path.write_text(text)
    build = tmp_path / "build"
    build.mkdir()
    (build / "Vtop.h").write_text('#include "Vtop_ports.h"\n')
    (build / "Vtop_ports.h").write_text("inline int top() { return 0; }\n")
    (build / "Vtop__root.cpp").write_text("int design() { return 2; }\n")
    monkeypatch.setenv("VERILATOR_ROOT", str(tmp_path / "verilator"))
    monkeypatch.chdir(build)
    return runtime, main, build


def compile_cmd(source: Path) -> list[str]:
    return ["c++", "-O1", "-I.", "-c", "-o", source.with_suffix(".o").name, str(source)]


def test_only_sources_shared_by_every_design_are_cached(installed):
    runtime, main, build = installed
    assert objcache._cacheable_source(compile_cmd(runtime)) == runtime.resolve()
    assert objcache._cacheable_source(compile_cmd(main)) == main.resolve()
    assert objcache._cacheable_source(compile_cmd(build / "Vtop__root.cpp")) is None
    assert objcache._cacheable_source(["c++", "-E", str(runtime)]) is None  # not a compile to an object


def test_the_key_follows_the_build_folders_headers(installed):
    runtime, main, build = installed
    cmd = compile_cmd(main)
    key = objcache._key(cmd, main.resolve())
    assert objcache._key(cmd, main.resolve()) == key
    (build / "Vtop_ports.h").write_text("inline int top() { return 1; }\n")  # included through Vtop.h
    changed = objcache._key(cmd, main.resolve())
    assert changed != key
    (build / "Vtop.h").write_text('#include "Vtop_ports.h"\n// another design\n')
    assert objcache._key(cmd, main.resolve()) not in (key, changed)
    assert objcache._key(["c++", "-O0"] + cmd[2:], main.resolve()) != objcache._key(cmd, main.resolve())


def test_a_cached_object_is_reused_and_a_changed_header_recompiles(installed, tmp_path):
    runtime, main, build = installed
    cache = tmp_path / "cache"
    (build / "verilated.h").write_text("int runtime();\n")
    cmd = [sys.executable, str(ROOT / "sim" / "objcache.py"), str(cache)] + compile_cmd(main)
    assert subprocess.call(cmd, env=os.environ) == 0
    first = (build / "verilator.o").read_bytes()
    (build / "verilator.o").unlink()
    assert subprocess.call(cmd, env=os.environ) == 0 and (build / "verilator.o").read_bytes() == first
    assert len(list(cache.iterdir())) == 1
    (build / "Vtop_ports.h").write_text("inline int top() { return 7; }\n")
    assert subprocess.call(cmd, env=os.environ) == 0
    assert len(list(cache.iterdir())) == 2 and (build / "verilator.o").read_bytes() != first
