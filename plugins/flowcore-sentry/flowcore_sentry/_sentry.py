"""The Sentry side: whether the application's Sentry client sends, and the report of one failure.

sentry_sdk is looked up in ``sys.modules``, never imported here: an application that called
``sentry_sdk.init`` has imported it, and one that has not need not pay for the import (about a
tenth of a second).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from flowcore import ChatMessage, Context, TaskFailure

if TYPE_CHECKING:
    from sentry_sdk import Scope
    from sentry_sdk.client import BaseClient

__all__ = ["global_client", "global_scope", "initialised", "report", "sends", "tag_value"]

TAG_VALUE_LIMIT = 200
"""The longest tag value Sentry accepts (and a tag value may not hold a newline)."""


def global_scope() -> Scope | None:
    """Sentry's global scope, to which ``sentry_sdk.init`` binds its client; None when
    sentry_sdk is not even imported. (One scope for the life of the process.)"""
    sdk: Any = sys.modules.get("sentry_sdk")
    if sdk is None:
        return None
    scope: Scope = sdk.Scope.get_global_scope()
    return scope


def global_client() -> BaseClient | None:
    """The client ``sentry_sdk.init`` bound (a non-recording one before it); None when
    sentry_sdk is not even imported."""
    scope = global_scope()
    return None if scope is None else scope.client


def sends(client: BaseClient | None) -> bool:
    """Whether ``client`` sends events: initialised, and with somewhere to send them (a DSN, or
    a transport of the application's). ``sentry_sdk.init()`` without a DSN sends nothing."""
    return (
        client is not None and client.is_active() and getattr(client, "transport", None) is not None
    )


def initialised() -> bool:
    """Whether the application called ``sentry_sdk.init`` with somewhere to send events."""
    return sends(global_client())


def report(
    error: BaseException,
    *,
    session_id: str,
    graph_id: str,
    task_id: str,
    attempt: int,
    breadcrumbs: Iterable[dict[str, Any]],
    extra: Mapping[str, object] | None,
) -> str | None:
    """Send ``error`` to Sentry as one event, on a scope of its own: the tags, a ``flowcore``
    context, the breadcrumbs and the extra data go with this event only. Returns the event id
    (None when the client dropped it, or sends nothing)."""
    sdk: Any = sys.modules.get("sentry_sdk")
    if sdk is None or not sends(sdk.get_client()):
        return None
    from sentry_sdk.utils import event_from_exception

    client = sdk.get_client()
    # The exception's frames as the client would show them, but with flowcore's objects that
    # hold context values (the Context, chat messages, a TaskFailure) left out of the locals.
    options = dict(client.options)
    options["custom_repr"] = _hiding_repr(options.get("custom_repr"))
    event, hint = event_from_exception(
        error, client_options=options, mechanism={"type": "flowcore", "handled": True}
    )
    with sdk.new_scope() as scope:
        scope.set_tag("flowcore.session_id", tag_value(session_id))
        scope.set_tag("flowcore.graph_id", tag_value(graph_id))
        scope.set_tag("flowcore.task_id", tag_value(task_id))
        scope.set_tag("flowcore.attempt", str(attempt))
        scope.set_context(
            "flowcore",
            {
                "session_id": session_id,
                "graph_id": graph_id,
                "task_id": task_id,
                "attempt": attempt,
                "timed_out": isinstance(error.__cause__, TimeoutError),
            },
        )
        for crumb in breadcrumbs:
            scope.add_breadcrumb(crumb)
        if extra:
            # Top-level extra keys, each under the context's own key, so that the client's
            # event scrubber matches them against its deny list (password, token...).
            for key, value in extra.items():
                scope.set_extra(key, value)
        scope.add_event_processor(_without_flowcore_locals)
        event_id: str | None = scope.capture_event(event, hint=hint)
        return event_id


def _hiding_repr(
    application_repr: Callable[[object], str | None] | None,
) -> Callable[[object], str | None]:
    """A ``custom_repr`` for the frames' locals that shows flowcore's objects holding context
    values by their size only, and leaves every other value to the application's own."""

    def hiding_repr(value: object) -> str | None:
        if isinstance(value, Context):
            return "<flowcore.Context: values not sent>"
        if isinstance(value, ChatMessage):
            return "<flowcore.ChatMessage: not sent>"
        if isinstance(value, TaskFailure):
            return f"<flowcore.TaskFailure of task {value.task_id!r}: context not sent>"
        return None if application_repr is None else application_repr(value)

    return hiding_repr


def _without_flowcore_locals(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    """Drop the local variables of flowcore's own frames (the engine's, a storage's, this
    plugin's): they are of no use to the application, and some hold the session's encoded
    context."""
    for exception in (event.get("exception") or {}).get("values") or ():
        for frame in (exception.get("stacktrace") or {}).get("frames") or ():
            module = frame.get("module") or ""
            if module == "flowcore" or module.startswith(("flowcore.", "flowcore_")):
                frame.pop("vars", None)
    return event


def tag_value(text: str) -> str:
    """``text`` as a tag value Sentry keeps: newlines escaped, cut to 200 characters with an
    ellipsis. Ids are free text; the event's ``flowcore`` context has them whole."""
    if len(text) <= TAG_VALUE_LIMIT and "\n" not in text:
        return text
    text = text.replace("\n", "\\n")
    return text if len(text) <= TAG_VALUE_LIMIT else text[: TAG_VALUE_LIMIT - 1] + "\u2026"
