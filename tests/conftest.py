"""Shared test setup: the suite never loads the plugins that happen to be installed.

``FLOWCORE_LOAD_PLUGINS`` is set to empty before any test runs, so only the built-in plugin
loads. A test that needs installed plugins asks for the ``installed_plugins`` fixture.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from flowcore import _plugins

os.environ[_plugins.LOAD_PLUGINS_ENV] = ""


@pytest.fixture(autouse=True)
def _plugins_as_installed() -> Iterator[None]:
    """Undo whatever a test did to the plugins (registered one, loaded installed ones)."""
    before = _plugins.registry()
    yield
    if _plugins.active_registry is not before:
        _plugins.reset()


@pytest.fixture
def installed_plugins(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """``installed_plugins("name", ...)``: load these installed plugins (by entry-point name)."""

    def load(*names: str) -> None:
        monkeypatch.setenv(_plugins.LOAD_PLUGINS_ENV, ",".join(names))
        _plugins.reset()

    return load
