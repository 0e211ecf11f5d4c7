"""Benchmarks run both implementations of the hot path in one process, so ratios between them
(and to the reference kernel) are measured under the same machine noise.

The ``impl`` fixture hands a benchmark a namespace with the flowcore API of one implementation:
``impl.flowcore`` (the package) and ``impl.codec``. The compiled one is the normal import; the
pure-Python one is a second, private copy of the package loaded from the ``.py`` sources.
"""

from __future__ import annotations

import importlib
import os
import sys
from types import SimpleNamespace

import pytest

import flowcore
import flowcore.codec

__all__ = ["implementation", "per_op"]

# Time flowcore itself, not whatever plugins happen to be installed on the machine (a plugin's
# tracer or error handler would sit in every step). Benchmarks of a plugin opt in themselves.
os.environ.setdefault("FLOWCORE_LOAD_PLUGINS", "")


def _is_flowcore(name: str) -> bool:
    return name == "flowcore" or name.startswith("flowcore.")


def _load_pure_copy() -> SimpleNamespace:
    """Import flowcore again from its .py sources, leaving the normal import untouched."""
    saved = {name: mod for name, mod in sys.modules.items() if _is_flowcore(name)}
    saved_meta_path = list(sys.meta_path)
    saved_env = os.environ.get("FLOWCORE_NO_EXTENSIONS")
    for name in saved:
        del sys.modules[name]
    os.environ["FLOWCORE_NO_EXTENSIONS"] = "1"
    try:
        package = importlib.import_module("flowcore")
        codec = importlib.import_module("flowcore.codec")
        assert not package.COMPILED
    finally:
        for name in [n for n in sys.modules if _is_flowcore(n)]:
            del sys.modules[name]
        sys.modules.update(saved)
        sys.meta_path[:] = saved_meta_path
        if saved_env is None:
            os.environ.pop("FLOWCORE_NO_EXTENSIONS", None)
        else:
            os.environ["FLOWCORE_NO_EXTENSIONS"] = saved_env
    return SimpleNamespace(name="pure", flowcore=package, codec=codec)


_IMPLS: dict[str, SimpleNamespace] = {}


def implementation(name: str) -> SimpleNamespace:
    if name not in _IMPLS:
        if name == "compiled":
            if not flowcore.COMPILED:
                raise RuntimeError(
                    "the compiled hot path is not built: run `make build` (needs Cython and a "
                    "C compiler) before the benchmarks"
                )
            _IMPLS[name] = SimpleNamespace(name=name, flowcore=flowcore, codec=flowcore.codec)
        else:
            _IMPLS[name] = _load_pure_copy()
    return _IMPLS[name]


@pytest.fixture(params=["compiled", "pure"])
def impl(request: pytest.FixtureRequest) -> SimpleNamespace:
    return implementation(request.param)


def per_op(benchmark, ops: int, group: str, **info: object) -> None:
    """Record how many operations one round runs, so reports can show µs per operation."""
    benchmark.group = group
    benchmark.extra_info["ops_per_round"] = ops
    benchmark.extra_info.update(info)
