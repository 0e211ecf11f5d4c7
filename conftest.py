"""Which implementation of the hot path a test run checks: ``--impl compiled|pure|any``.

``make test`` runs the suite twice: ``--impl compiled`` (errors, never skips, when the compiled
modules are not the ones loaded) and, with ``FLOWCORE_NO_EXTENSIONS=1``, ``--impl pure``.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--impl",
        choices=("compiled", "pure", "any"),
        default="any",
        help="require the compiled or the pure-Python hot path (default: whichever loads)",
    )


def pytest_configure(config: pytest.Config) -> None:
    wanted = config.getoption("--impl")
    if wanted == "any":
        return
    from flowcore import _extensions

    loaded = _extensions.loaded_implementation()
    if loaded != wanted:
        detail = ", ".join(
            f"{name}: {'compiled' if compiled else 'pure'}"
            for name, compiled in _extensions.compiled_modules().items()
        )
        raise pytest.UsageError(
            f"--impl {wanted} was asked for, but the {loaded} hot path is loaded ({detail}). "
            + (
                "Build the extensions first: make build (needs Cython and a C compiler)."
                if wanted == "compiled"
                else "Set FLOWCORE_NO_EXTENSIONS=1 to load the pure-Python modules."
            )
        )
