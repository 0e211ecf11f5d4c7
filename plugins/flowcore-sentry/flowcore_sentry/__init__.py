"""flowcore-sentry: flowcore's task failures reported to Sentry.

Installed next to flowcore, it is inert until the application calls ``sentry_sdk.init`` (with a
DSN); from then on every failed attempt of a task is one Sentry event, tagged
``flowcore.session_id``, ``flowcore.graph_id``, ``flowcore.task_id`` and ``flowcore.attempt``,
with the step's tasks as breadcrumbs. It sends no context value and changes no step's outcome
unless :func:`configure` asks it to.
"""

from __future__ import annotations

from flowcore_sentry._settings import configure

__version__ = "0.1.0"

__all__ = ["__version__", "configure"]

configure.__module__ = __name__  # reprs, tracebacks and docs say flowcore_sentry.configure
