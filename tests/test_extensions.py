"""Which hot path is loaded, and that FLOWCORE_NO_EXTENSIONS forces the pure-Python one."""

from __future__ import annotations

import importlib.machinery
import os
import subprocess
import sys
from pathlib import Path

import pytest

import flowcore
from flowcore import _extensions

HOT_MODULES = _extensions.HOT_MODULES


def test_a_module_is_hot_when_a_pxd_sits_beside_it():
    package = Path(flowcore.__file__).parent
    with_pxd = {f"flowcore.{pxd.stem}" for pxd in package.glob("*.pxd")}
    assert set(HOT_MODULES) == with_pxd
    assert {"flowcore._kernel", "flowcore._codec"} <= with_pxd
    if flowcore.COMPILED:  # setup.py built an extension for each, and for nothing else
        built = {
            f"flowcore.{path.name.partition('.')[0]}"
            for path in package.iterdir()
            if path.name.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
        }
        assert built == with_pxd


def test_compiled_flag_matches_the_modules_loaded():
    flags = _extensions.compiled_modules()
    assert set(flags) == set(HOT_MODULES)
    assert all(flags.values()) == flowcore.COMPILED


def test_the_requested_implementation_is_the_one_loaded(pytestconfig):
    wanted = pytestconfig.getoption("--impl")
    loaded = _extensions.loaded_implementation()
    if wanted == "any":
        assert loaded in ("compiled", "pure")
    else:
        assert loaded == wanted
    if os.environ.get("FLOWCORE_NO_EXTENSIONS", "") not in ("", "0"):
        assert loaded == "pure"
        assert not flowcore.COMPILED


def test_no_extensions_forces_the_python_sources_in_a_new_process():
    env = {**os.environ, "FLOWCORE_NO_EXTENSIONS": "1"}
    code = (
        "import sys, flowcore; "
        "print(flowcore.COMPILED, *(sys.modules[m].__file__ for m in "
        "flowcore._extensions.HOT_MODULES))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[0] == "False"
    assert all(path.endswith(".py") for path in out[1:])


@pytest.mark.skipif(not flowcore.COMPILED, reason="checks a compiled build; this run is pure")
def test_compiled_modules_are_not_older_than_their_sources():
    # A stale extension would test yesterday's code: make rebuilds it when a source changes.
    for name in HOT_MODULES:
        module = sys.modules[name]
        built = Path(module.__file__).stat().st_mtime
        source = Path(module.__file__).with_name(name.rpartition(".")[2] + ".py")
        for path in (source, source.with_suffix(".pxd")):
            if path.exists():
                assert built >= path.stat().st_mtime, f"{module.__file__} is older than {path}"
