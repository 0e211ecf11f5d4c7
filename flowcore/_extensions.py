"""Selects the compiled or the pure-Python hot path; must be imported before the hot modules.

A module is hot when a ``.pxd`` sits beside its ``.py`` (``flowcore/_kernel.pxd``): that one
rule gives ``HOT_MODULES`` here, the extensions ``setup.py`` builds and the sources the
Makefile rebuilds them from. A hot module is plain typed Python; a build with Cython compiles it
into an extension of the same name beside its ``.py`` source, and Python's import system
prefers the extension. ``FLOWCORE_NO_EXTENSIONS=1`` installs a finder that loads the ``.py``
sources instead, so the same installation runs either implementation.

Why one import finder, not a selector module per compiled module (as yarl and multidict have,
``_quoting.py`` choosing ``_quoting_c`` or ``_quoting_py``): Cython's pure-Python mode makes the
``.py`` the Cython source, so the extension and the source are one module under one name. The
``.pxd`` files ``cimport`` each other by that name, and the rest of flowcore imports it as any
module; a selector would need a second name for every hot module and a third file to keep in
step. The finder serves every hot module, under the names they already have, in a dozen lines.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from types import ModuleType

__all__ = [
    "HOT_MODULES",
    "NO_EXTENSIONS",
    "compiled_modules",
    "is_compiled",
    "loaded_implementation",
]

HOT_MODULES = tuple(
    f"flowcore.{name.removesuffix('.pxd')}"
    for name in sorted(os.listdir(os.path.dirname(__file__)))
    if name.endswith(".pxd")
)
"""The modules with a ``.pxd`` beside their ``.py``: the hot path, compiled where built."""

NO_EXTENSIONS = os.environ.get("FLOWCORE_NO_EXTENSIONS", "") not in ("", "0")


class _PureSourceFinder:
    """Finds the ``.py`` source of a hot module, skipping any compiled extension."""

    @staticmethod
    def find_spec(
        fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in HOT_MODULES or not path:
            return None
        filename = os.path.join(path[0], fullname.rpartition(".")[2] + ".py")
        if not os.path.exists(filename):
            return None
        loader = importlib.machinery.SourceFileLoader(fullname, filename)
        return importlib.util.spec_from_file_location(fullname, filename, loader=loader)


if NO_EXTENSIONS and not any(isinstance(f, _PureSourceFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _PureSourceFinder())


def is_compiled(module: ModuleType) -> bool:
    """Whether ``module`` was loaded from a compiled extension."""
    return isinstance(getattr(module, "__loader__", None), importlib.machinery.ExtensionFileLoader)


def compiled_modules() -> dict[str, bool]:
    """For each hot module: whether the loaded one is compiled."""
    return {name: is_compiled(sys.modules[name]) for name in HOT_MODULES if name in sys.modules}


def loaded_implementation() -> str:
    """``"compiled"`` if every hot module is compiled, ``"pure"`` if none is, else ``"mixed"``."""
    import flowcore  # noqa: F401  (loads every hot module)

    flags = set(compiled_modules().values())
    if flags == {True}:
        return "compiled"
    if flags == {False}:
        return "pure"
    return "mixed"
