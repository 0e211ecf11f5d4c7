"""What the application asked of the plugin: :func:`configure` and the settings it keeps."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from types import MappingProxyType

__all__ = ["Settings", "configure", "current", "hooks_called", "note_hooks_called"]


@dataclasses.dataclass(frozen=True)
class Settings:
    """The plugin's settings; :func:`configure` replaces them whole."""

    send_context: bool | frozenset[str] = False
    """False: no context value is sent; True: every value; a set of keys: those values only."""

    route_to: str | Mapping[str, str] | None = None
    """Where a failed task goes after its last attempt: one fallback task for every task, a
    fallback per failed task id, or None (no decision)."""

    def fallback_for(self, task_id: str) -> str | None:
        """The task a failure of ``task_id`` is routed to; None for no decision.

        A fallback is never routed to itself: its own failure is left to the next handler.
        """
        route_to = self.route_to
        if route_to is None:
            return None
        target = route_to if isinstance(route_to, str) else route_to.get(task_id)
        return None if target == task_id else target


_settings = Settings()
_hooks_called = False


def current() -> Settings:
    """The settings in force."""
    return _settings


def note_hooks_called() -> None:
    """flowcore called the plugin's hooks: runners may hold what they registered."""
    global _hooks_called
    _hooks_called = True


def hooks_called() -> bool:
    """Whether flowcore has called the plugin's hooks (so runners must look again)."""
    return _hooks_called


def configure(
    *,
    send_context: bool | Iterable[str] = False,
    route_to: str | Mapping[str, str] | None = None,
) -> None:
    """Set what flowcore-sentry sends and decides; each call replaces every setting.

    ``send_context``: False (the default) sends no context value, as they may hold personal
    data; True sends every value of the failed task's context; a list of keys sends those.
    The values go in the event's extra data, through the Sentry client's own scrubbing
    (``event_scrubber``, ``before_send``).

    ``route_to``: a task id that every failed task goes to after its last attempt (as
    ``ErrorDecision.Route(NextAction.GoTo(task_id))``), or a mapping of failed task id to
    fallback task id for some tasks only. None (the default) decides nothing: the failure
    goes on to the next error handler, or is raised.

    Raises TypeError or ValueError, naming the argument, for a value it cannot use. Runners
    apply the new settings from their next step.
    """
    global _settings
    settings = Settings(_checked_send_context(send_context), _checked_route_to(route_to))
    from flowcore_sentry._observers import refresh  # the observers read these settings

    _settings = settings
    if _hooks_called:
        refresh()


def _checked_send_context(value: object) -> bool | frozenset[str]:
    if isinstance(value, bool):
        return value
    if isinstance(value, (str, bytes)):
        raise TypeError(
            f"send_context takes True, False or a list of context keys, got the string "
            f"{value!r}: to send that key only, pass send_context=[{value!r}]"
        )
    if not isinstance(value, Iterable):
        raise TypeError(
            "send_context takes True, False or a list of context keys, got "
            f"{type(value).__name__}: {value!r}"
        )
    keys = list(value)
    wrong = [key for key in keys if type(key) is not str]
    if wrong:
        raise TypeError(
            f"send_context lists context keys, which are strings; got {wrong[0]!r} "
            f"({type(wrong[0]).__name__})"
        )
    return frozenset(keys)


def _checked_route_to(value: object) -> str | Mapping[str, str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        if not value:
            raise ValueError(
                "route_to is an empty task id: name the fallback task, or pass None to route "
                "nothing"
            )
        return value
    if isinstance(value, Mapping):
        routes = MappingProxyType(dict(value))
        for failed, fallback in routes.items():
            if type(failed) is not str or type(fallback) is not str or not failed or not fallback:
                raise TypeError(
                    "route_to maps a failed task's id to its fallback task's id, both "
                    f"non-empty strings; got {failed!r}: {fallback!r}"
                )
        return routes
    raise TypeError(
        "route_to takes a fallback task id (str), a mapping of failed task id to fallback "
        f"task id, or None; got {type(value).__name__}: {value!r}"
    )
