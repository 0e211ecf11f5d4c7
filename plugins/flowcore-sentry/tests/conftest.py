"""Fixtures for flowcore-sentry's tests: the plugin loaded, and a real Sentry client whose
transport keeps the events in memory (nothing goes over the network).

Each test starts with Sentry not initialised and the plugin's default settings, and ends so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import flowcore_sentry
import flowcore_sentry.plugin
import pytest
import sentry_sdk
from sentry_memory import DSN, MemoryTransport, reset_sentry

from flowcore.testing import plugin_registered


@pytest.fixture(autouse=True)
def sentry_plugin() -> Iterator[None]:
    """The plugin loaded for the test: through its entry point when the test run loads the
    installed plugins, else registered for the test (flowcore's own tests load none)."""
    reset_sentry()
    with plugin_registered(flowcore_sentry.plugin, "sentry-under-test"):
        flowcore_sentry.configure()  # the defaults; runners look again at what it registers
        yield
        reset_sentry()
        flowcore_sentry.configure()


@pytest.fixture
def init_sentry() -> Callable[..., MemoryTransport]:
    """``init_sentry(**options)``: ``sentry_sdk.init`` with a memory transport, which it returns;
    its ``events`` are what Sentry would have received. Then ``flowcore_sentry.configure()``,
    as an application does whose plugins loaded before it initialised Sentry."""

    def init(**options: Any) -> MemoryTransport:
        transport = MemoryTransport()
        options.setdefault("dsn", DSN)
        options.setdefault("auto_enabling_integrations", False)
        sentry_sdk.init(transport=transport, **options)
        flowcore_sentry.configure()
        return transport

    return init


@pytest.fixture
def events(init_sentry: Callable[..., MemoryTransport]) -> list[dict[str, Any]]:
    """Sentry initialised before the test's runners are made; the events it receives."""
    return init_sentry().events
