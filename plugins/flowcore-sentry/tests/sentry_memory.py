"""A real Sentry client for the tests, with a transport that keeps the events in memory."""

from __future__ import annotations

from typing import Any

import sentry_sdk

DSN = "https://public@sentry.invalid/1"
"""A DSN that names no real server: the memory transport below is what receives the events."""


class MemoryTransport(sentry_sdk.Transport):
    """A Sentry transport that keeps each event it is given."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.events: list[dict[str, Any]] = []

    def capture_envelope(self, envelope: Any) -> None:
        event = envelope.get_event()
        if event is not None:
            self.events.append(event)


def reset_sentry() -> None:
    """Sentry as before ``sentry_sdk.init``: no client."""
    client = sentry_sdk.get_global_scope().client
    client.close()
    sentry_sdk.get_global_scope().set_client(None)
