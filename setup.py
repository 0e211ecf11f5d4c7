"""Build script for the compiled hot path.

A module is hot when a ``.pxd`` sits beside its ``.py`` (``flowcore/_kernel.pxd``), the rule
``flowcore/_extensions.py`` and the Makefile read too. Each hot module is plain typed Python;
Cython compiles it into an extension of the same name. The ``.py`` sources ship too and are what
runs where no extension was built.

- ``FLOWCORE_NO_EXTENSIONS=1``: build nothing (pure Python).
- ``FLOWCORE_REQUIRE_EXTENSIONS=1``: a failed compile is an error instead of a fallback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HOT_MODULES = [f"flowcore.{pxd.stem}" for pxd in sorted(Path("flowcore").glob("*.pxd"))]


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


NO_EXTENSIONS = _flag("FLOWCORE_NO_EXTENSIONS")
REQUIRE_EXTENSIONS = _flag("FLOWCORE_REQUIRE_EXTENSIONS")

BANNER = """
********************************************************************************
flowcore: the compiled hot path could not be built ({reason}).
flowcore is installed as pure Python: it works the same, only slower.
Install a C compiler and Python's headers, then reinstall, to get the compiled core;
set FLOWCORE_REQUIRE_EXTENSIONS=1 to make this an error.
********************************************************************************
"""


def _fallback(reason: str) -> None:
    if REQUIRE_EXTENSIONS:
        raise SystemExit(f"flowcore: FLOWCORE_REQUIRE_EXTENSIONS=1 but {reason}")
    sys.stderr.write(BANNER.format(reason=reason))


class OptionalBuildExt(build_ext):
    """Compile the extensions, or fall back to pure Python with one banner."""

    failed = False

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler, no headers...
            self._give_up(f"{type(exc).__name__}: {exc}")

    def build_extension(self, ext: Extension) -> None:
        if self.failed:
            return  # one missing compiler is reported once, not once per module
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._give_up(f"{ext.name}: {type(exc).__name__}: {exc}")

    def copy_extensions_to_source(self) -> None:
        if not self.failed:  # nothing was built to copy
            super().copy_extensions_to_source()

    def get_outputs(self) -> list[str]:
        return [] if self.failed else super().get_outputs()

    def _give_up(self, reason: str) -> None:
        if not self.failed:
            self.failed = True
            _fallback(reason)


def _extensions() -> list[Extension]:
    if NO_EXTENSIONS:
        return []
    try:
        from Cython.Build import cythonize
    except ImportError as exc:
        _fallback(f"Cython is not installed: {exc}")
        return []
    modules = [Extension(name, [name.replace(".", "/") + ".py"]) for name in HOT_MODULES]
    return cythonize(
        modules,
        language_level=3,
        compiler_directives={
            # Annotations document the Python API; the .pxd files declare the C types. Typing
            # from annotations would turn the library's own clear errors into Cython's.
            "annotation_typing": False,
            "embedsignature": True,
        },
        quiet=True,
    )


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
