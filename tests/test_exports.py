"""The public surface: ``flowcore.__all__`` is sorted and complete, and its classes and functions
report themselves as ``flowcore.X``."""

from __future__ import annotations

import inspect
import sys
from types import ModuleType

import flowcore
from flowcore import _extensions


def test_all_is_sorted():
    assert flowcore.__all__ == sorted(flowcore.__all__)
    assert len(set(flowcore.__all__)) == len(flowcore.__all__)


def test_every_name_in_all_exists():
    missing = [name for name in flowcore.__all__ if not hasattr(flowcore, name)]
    assert missing == []


def test_every_public_name_of_the_package_is_in_all():
    # Submodules (flowcore.codec, flowcore.testing) are reached by their own import; anything
    # else without an underscore is public, and must be exported on purpose. (pytest rewrites
    # the asserts of flowcore, a pytest plugin's package, adding names no import can spell.)
    public = {
        name
        for name, value in vars(flowcore).items()
        if name.isidentifier()
        and not name.startswith("_")
        and not (isinstance(value, ModuleType) and value.__name__.startswith("flowcore."))
    }
    assert public - set(flowcore.__all__) == set()


def test_classes_and_functions_report_flowcore_as_their_module():
    wrong = {}
    for name in flowcore.__all__:
        value = getattr(flowcore, name)
        if not (inspect.isclass(value) or inspect.isroutine(value)):
            continue  # COMPILED, __version__, and pluggy's hookimpl/hookspec markers
        module = value.__module__
        if (
            flowcore.COMPILED
            and module in _extensions.HOT_MODULES
            and _extensions.is_compiled(sys.modules[module])
        ):
            # An extension type is immutable: it keeps the module name Cython compiled into it
            # (the pure-Python run of this test holds those classes to "flowcore" as well).
            continue
        if module != "flowcore":
            wrong[name] = module
    assert wrong == {}
