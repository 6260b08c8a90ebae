"""Tests run this checkout's compiler/ as the package `bnnc`, whatever copy is installed.

The README installs bnnc non-editable (`pip install .`), and the folder is called compiler/, so a
plain `import bnnc` would test the installed copy, not the code under test. A symlink named bnnc
in a temporary folder, first on sys.path and on PYTHONPATH (for `python -m bnnc` in
subprocesses), makes both mean the checkout.
"""
from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE_PATH = Path(tempfile.mkdtemp(prefix="bnnc-source-"))
atexit.register(shutil.rmtree, SOURCE_PATH, True)
(SOURCE_PATH / "bnnc").symlink_to(ROOT / "compiler", target_is_directory=True)
sys.path.insert(0, str(SOURCE_PATH))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SOURCE_PATH), str(ROOT), os.environ.get("PYTHONPATH")]))


# pytest-xdist (addopts: -n auto --dist loadgroup) hands out single tests, which balances the
# workers; these modules' module-scoped fixtures (compiled builds, Yosys runs, the HLS bundles
# compiled for all of the module's tests) would then be built once per worker, so each of these
# modules runs whole in one worker.
WHOLE_MODULES = {"test_asic", "test_axis", "test_channel_reuse", "test_cli", "test_hls", "test_report"}


# Modules whose tests take longest (whole groups, or single long simulations), handed out first so
# that the short tests fill the other worker at the end instead of one worker finishing alone.
LONG_FIRST = ("test_hls", "test_report", "test_end_to_end", "test_cli", "test_residual", "test_axis")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups into node ids
def pytest_collection_modifyitems(config, items):
    for item in items:
        name = item.module.__name__.rsplit(".", 1)[-1]
        if name in WHOLE_MODULES:
            item.add_marker(pytest.mark.xdist_group(name))

    def rank(item) -> int:
        name = item.module.__name__.rsplit(".", 1)[-1]
        return LONG_FIRST.index(name) if name in LONG_FIRST else len(LONG_FIRST)
    items.sort(key=rank)  # stable: each module keeps its own order
