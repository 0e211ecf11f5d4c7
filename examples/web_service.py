"""A web service on flowcore: each HTTP request takes one step of a session.

    python examples/web_service.py                      # http://127.0.0.1:8000, SQLite storage
    python examples/web_service.py --storage URL        # any URL open_storage accepts
    python examples/web_service.py --port 0             # a free port (the log line names it)
    python examples/web_service.py --token-delay 0.2    # replies typed word by word, slowly

The workflow is an order-support chat: it asks which order a message is about, looks the order
up (in a fake order service), asks what went wrong, then refunds a damaged order or hands the
case to a person. Its replies are written word by word, as a language model streams tokens:
each word is sent with ``flowcore.emit``, which the streaming route passes on as it comes.
Try it with curl:

    curl -s -X POST localhost:8000/sessions                          # {"id": "...", ...}
    curl -s -X POST localhost:8000/sessions/ID/run                   # the first question
    curl -s -X POST localhost:8000/sessions/ID/run -d '{"message": "A-1001"}'
    curl -sN -X POST localhost:8000/sessions/ID/stream -d '{"message": "It arrived broken"}'
    curl -s localhost:8000/sessions/ID                               # context and chat history

| Route | Body (JSON, optional) | Answer |
|---|---|---|
| POST /sessions | {"session_id": str, "context": {...}} | 201: the new session |
| POST /sessions/{id}/run | {"message": str, "context": {...}, "expect_task": str} | 200: the step |
| POST /sessions/{id}/stream | the same | 200: the step's events, as Server-Sent Events |
| GET /sessions/{id} | - | 200: the session, its context and chat history |
| DELETE /sessions/{id} | - | 204 |

A step is answered with what it did, from the ExecutionResult the runner returns::

    {"session_id": "...", "response": "...", "status": "Paused",
     "next_task_id": "...", "reason": "...",         # when Paused ("wake_at" when Scheduled)
     "version": 3, "current_task_id": "...",          # the stored version, the task now current
     "tasks": [{"task_id": "...", "response": "...", "status_message": null,
                "next_action": "ContinueAndExecute"}, ...]}

``tasks`` has every task that ran in the step, in order: a ContinueAndExecute chain shows each
task's response, not only the last one's (which is ``response``).

Two request headers make a step safe to send again:

- ``Idempotency-Key: <1 to 256 visible ASCII characters, e.g. a UUID>`` (quoted or not): the
  step runs once for that key. Sent again, late or at the same time, the request runs nothing
  and gets the body the first one got, with ``Idempotent-Replayed: true`` (the first:
  ``false``). The session records its last 8 keys. A key names one request: a replay is
  answered from the key alone, whatever its body.
- ``If-Match: "7"``: run only if the session is at version 7, the ``ETag`` that GET and every
  step answer with; otherwise ``412`` naming the version expected and the one found (and the
  ETag of the latter), and nothing runs. ``"expect_task"`` in the body does the same for the
  current task (a ``409`` naming both tasks): an answer meant for one question never answers
  the next.

``POST /sessions/{id}/stream`` takes the same step and sends its events as they happen, each
``event: <kind>`` with one line of JSON ``data``: ``task_started`` ``{"task_id"}``, ``output``
``{"task_id", "value"}`` for each value a task emits, ``task_ended`` (a task of ``tasks``),
then ``result`` (the body ``/run`` answers, with ``"replayed"``) or, when the step failed after
the events began, ``error`` (``{"error", "status", ...}``, as an error answer would be; nothing
was saved). An emitted value that JSON cannot carry (a set, bytes, NaN, an object) is sent as
``{"task_id", "repr"}``: its ``repr()``, in place of ``value``. A client that hangs up
mid-stream cancels the step: nothing of it is saved. An error found before the step began (an
unknown session, a bad body or header, a stale If-Match) is an ordinary error answer.

A session is answered as ``flowcore.session_as_json`` shows it (what ``flowcore sessions show``
prints): every value the context can hold comes out as JSON, a Decimal or a date as text.

Errors are JSON ``{"error": ...}``: 400 a bad Idempotency-Key or If-Match header (named in
"header"); 404 unknown session (or an id no session can have); 408 the body came too slowly;
409 the session is busy (another request saved it first: SessionConflict), it is not at the
"expect_task" sent, or the id is taken; 412 it is not at the If-Match version; 413 the body is
too large; 422 a body that is not what the table says; 500 a task failed (the answer names an
incident id, the log has the details); 503 storage is unreachable, or too many connections. A
request uvicorn cannot read (not HTTP, or a head too large) is its own plain-text 400. No
answer ever carries a traceback, a host name or a driver's message: those go to the log, under
the incident id.

What the service takes, and how long it waits (each an option of the command line):

    --max-body-bytes N      1048576 (1 MiB). A larger body is a 413. The body is read as it
                            arrives and refused as soon as it is too large (at once when its
                            Content-Length says so): a huge body is never held in memory.
    --timeout-body S        30. The whole body must arrive within S seconds of the request's
                            head, or the answer is a 408.
    --timeout-header S      10. A request's head (its line and headers) must arrive within S
                            seconds of connecting, or of the previous answer; or the connection
                            is closed.
    --timeout-keep-alive S  5. uvicorn closes a connection idle that long between requests.
    --limit-concurrency N   500. While N connections are open, uvicorn answers 503 to requests
                            (its own, in plain text), and a new connection is answered 503 and
                            closed at once, before it holds a file descriptor for long. Lowered
                            at start-up to fit the open-files limit (ulimit -n), less twice the
                            backlog and 64 for the rest. 0: no limit.
    --backlog N             128. Connections waiting to be accepted that the kernel holds.
    --max-head-bytes N      16384. A request line and headers larger than this are a 400
                            (from uvicorn).

Four of these are uvicorn's own options (limit_concurrency, timeout_keep_alive, backlog, and
h11_max_incomplete_event_size for the head's size). uvicorn has none for a slow head or a
slow body: the head's deadline is kept by a subclass of uvicorn's HTTP/1.1 protocol (h11),
which also refuses the connections past the limit; the body's is kept by the app, around
``request.stream()``.

A body's JSON is refused with a 422 naming the place when it nests more than 32 deep, holds NaN
or Infinity (or a number too large for a float), an integer of more than 4,300 digits, or a
string that is not Unicode text (a lone surrogate such as "\\ud800"), or is not UTF-8. A session
id is 1 to 128 printable characters without "/" (so no NUL, no control character, no lone
surrogate, and a URL can always name it): POST /sessions refuses another id with a 422, and an
id in a URL that breaks the rule is a 404, answered without asking the storage.

The log stays bounded whatever clients do: a warning that repeats (a refused connection, a
request uvicorn could not parse, "too many open files" when accepting) is written at most 10
times in 10 s, then counted and left out; an error past that is cut to one line (its incident
id kept, its traceback left out).

One FlowRunner is made at start-up and shared by every request. It keeps nothing per session:
every request loads its session from storage and saves it back, so any number of processes can
serve the same sessions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import errno
import json
import logging
import math
import os
import re
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

import anyio
import uvicorn
import uvicorn.config
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flowcore import (
    Context,
    ExecutionResult,
    ExecutionStatus,
    FlowRunner,
    Graph,
    GraphBuilder,
    GraphError,
    NextAction,
    SessionConflict,
    SessionMoved,
    SessionNotFound,
    StepEvent,
    StorageError,
    TaskRecord,
    TaskResult,
    emit,
    open_storage,
    quote_id,
    session_as_json,
    task,
)

__all__ = [
    "DEFAULT_STORAGE",
    "ORDERS",
    "BoundedLog",
    "EventStream",
    "Limits",
    "build_graph",
    "create_app",
    "event_data",
    "main",
    "server_config",
]

DEFAULT_STORAGE = "sqlite:///.flowcore/web_service.db?create_dirs=true"
"""In .flowcore/ under the working directory, created if missing (an option of flowcore-sql)."""
USER_INPUT = "user_input"
"""The context key a request's "message" is set under, for the waiting task to read."""

log = logging.getLogger("web_service")


# -- the workflow ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Order:
    order_id: str
    items: str
    total: Decimal


ORDERS = {
    "A-1001": Order("A-1001", "2 espresso cups", Decimal("24.90")),
    "A-1002": Order("A-1002", "a kettle", Decimal("59.00")),
}
BROKEN_ORDER = "A-9999"
"""Looking this order up fails as an unreachable database would: the answer is a 500."""


class OrderService:
    """A stand-in for the shop's order API: a network call that takes ``latency`` seconds."""

    def __init__(self, latency: float = 0.1) -> None:
        self.latency = latency

    async def find(self, order_id: str) -> Order | None:
        await asyncio.sleep(self.latency)
        if order_id == BROKEN_ORDER:
            raise ConnectionError("orders-db.internal:5432 refused the connection (user shop_rw)")
        return ORDERS.get(order_id)


ORDER_ID = re.compile(r"[A-Z]-\d{4}")
WORDS = re.compile(r"\S+\s*|\s+")
"""A reply's tokens: its words, each with the spaces after it (together they are the reply)."""


def heard(ctx: Context) -> str | None:
    """The user's message for this step, if there is one, kept in the chat history."""
    text: str | None = ctx.remove(USER_INPUT)
    if text is not None:
        ctx.add_user_message(text)
    return text


def build_graph(orders: OrderService | None = None, *, token_delay: float = 0.0) -> Graph:
    """The order-support workflow, looking orders up in ``orders``.

    Each reply is written word by word, ``token_delay`` seconds apart, as a language model
    streams its tokens: each word goes to ``flowcore.emit`` (which a streamed step passes on,
    and a step run with ``runner.run`` ignores), the whole reply into the chat history and the
    task's response.
    """
    service = orders or OrderService()

    async def say(ctx: Context, text: str, action: NextAction) -> TaskResult:
        """Answer the user: the reply streamed word by word, then kept in the chat history."""
        for word in WORDS.findall(text):
            emit(word)
            if token_delay:
                await asyncio.sleep(token_delay)
        ctx.add_assistant_message(text)
        return TaskResult(text, action)

    @task("ask_order")
    async def ask_order(ctx: Context) -> TaskResult:
        text = heard(ctx)
        if text is None:
            return await say(
                ctx, "Hello! Which order is this about? (e.g. A-1001)", NextAction.WaitForInput
            )
        match = ORDER_ID.search(text.upper())
        if match is None:
            return await say(
                ctx, f"{text!r} has no order number in it, like A-1001.", NextAction.WaitForInput
            )
        order = await service.find(match.group())
        if order is None:
            return await say(
                ctx,
                f"I can't find order {match.group()}. Which order is it?",
                NextAction.WaitForInput,
            )
        ctx.set("order", {"id": order.order_id, "items": order.items, "total": order.total})
        return await say(
            ctx, f"Order {order.order_id}: {order.items}. What went wrong?", NextAction.Continue
        )

    @task("describe_issue")
    async def describe_issue(ctx: Context) -> TaskResult:
        text = heard(ctx)
        if text is None:
            return await say(ctx, "What went wrong with your order?", NextAction.WaitForInput)
        ctx.set("issue", text)
        # ContinueAndExecute: refund or hand_over answers too, in this same request.
        return await say(ctx, "Thank you, let me see.", NextAction.ContinueAndExecute)

    @task("refund")
    async def refund(ctx: Context) -> TaskResult:
        order = ctx.get("order")
        return await say(
            ctx,
            f"Sorry about that! {order['total']} EUR for {order['id']} is on its way back to you.",
            NextAction.End,
        )

    @task("hand_over")
    async def hand_over(ctx: Context) -> TaskResult:
        ctx.set("ticket", f"T-{uuid.uuid4().hex[:6]}")
        return await say(
            ctx,
            f"A colleague will look into it: ticket {ctx.get('ticket')}.",
            NextAction.End,
        )

    def damaged(ctx: Context) -> bool:
        return any(w in ctx.get("issue", "").lower() for w in ("broken", "damaged", "cracked"))

    return (
        GraphBuilder("order_support")
        .add_task(ask_order)
        .add_task(describe_issue)
        .add_task(refund)
        .add_task(hand_over)
        .add_edge("ask_order", "describe_issue")
        .add_conditional_edge("describe_issue", damaged, "refund", "hand_over")
        .build()
    )  # fmt: skip


# -- what a request may carry ----------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """What the app takes from a request (the server's own limits are in ``server_config``)."""

    max_body_bytes: int = 1024 * 1024
    """A larger body is refused with a 413, without being read whole."""
    timeout_body: float = 30.0
    """Seconds for the whole body to arrive, from the request's head; past them, a 408."""
    max_depth: int = 32
    """How deep a body's JSON may nest (the object around it is 1)."""
    max_digits: int = 4300
    """Digits of an integer (Python's own limit for turning text into an int)."""


MAX_ID_CHARS = 128
ID_RULE = f'a session id is 1 to {MAX_ID_CHARS} printable characters, without "/"'
_SURROGATE = re.compile("[\ud800-\udfff]")


class Refused(Exception):
    """The request is not one the service takes: answered with ``status`` and the message."""

    status = 422
    close = False  # True: the answer closes the connection (the rest of the body is unread)


class BodyTooLarge(Refused):
    status = 413
    close = True


class BodyTooSlow(Refused):
    status = 408
    close = True


class BadHeader(Refused):
    """A request header this service reads holds what it cannot use: a 400 naming it."""

    status = 400

    def __init__(self, header: str, message: str) -> None:
        super().__init__(f"the {header} header {message}")
        self.header = header


def id_problem(session_id: str) -> str | None:
    """Why ``session_id`` breaks the rule of ids, or None when it keeps it."""
    if not session_id:
        return "it is empty"
    if len(session_id) > MAX_ID_CHARS:
        return f"it has {len(session_id):,} characters"
    if "/" in session_id:
        return 'it has a "/"'
    if not session_id.isprintable():
        return "it has a character that is not printable (such as NUL, or a lone surrogate)"
    return None


async def read_body(request: Request, limits: Limits) -> bytes:
    """The request's body, read as it arrives: refused once past the limits of size and time."""
    too_large = BodyTooLarge(
        f"the body is larger than {limits.max_body_bytes:,} bytes, the most this service takes"
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise too_large  # refused before a byte of it is read
    body = bytearray()
    try:
        with anyio.fail_after(limits.timeout_body):
            async with contextlib.aclosing(request.stream()) as chunks:
                async for chunk in chunks:
                    body += chunk
                    if len(body) > limits.max_body_bytes:
                        raise too_large
    except TimeoutError:
        raise BodyTooSlow(
            f"the body did not arrive within {limits.timeout_body:g} s; send it again"
        ) from None
    return bytes(body)


def parse_json(raw: bytes, limits: Limits) -> Any:
    """``raw`` as JSON, refused (422) unless every value in it can be stored and shown again."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Refused(f"the body is not UTF-8 text (byte {exc.start})") from None

    def integer(digits: str) -> int:
        if len(digits.lstrip("-")) > limits.max_digits:
            raise Refused(f"the body has an integer of more than {limits.max_digits:,} digits")
        return int(digits)

    try:
        value = json.loads(text, parse_int=integer)
    except RecursionError:
        raise Refused(f"the body nests more than {limits.max_depth} deep") from None
    except ValueError as exc:
        where = f": {exc.msg} at line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise Refused(f"the body is not JSON{where}") from None
    check_values(value, limits.max_depth)
    return value


def check_values(value: Any, max_depth: int) -> None:
    """Refuse what JSON parsing lets through but storage or a JSON answer could not take back.

    Walks the value without recursing (so depth costs no stack): containers nested more than
    ``max_depth`` deep, numbers that are not finite (NaN, Infinity, 1e999), and strings with a
    lone surrogate (which no UTF-8 text can hold). The place is named, as ``body['context']['x']``.
    """

    def place(path: tuple[Any, ...]) -> str:
        keys: list[str] = []
        while path:
            path, key = path
            keys.append(f"[{quote_id(key)}]")
        return "body" + "".join(reversed(keys))

    stack: list[tuple[Any, tuple[Any, ...], int]] = [(value, (), 1)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > max_depth:
                raise Refused(f"{place(path)} nests more than {max_depth} deep")
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in pairs:
                if isinstance(key, str) and _SURROGATE.search(key):
                    raise Refused(f"a key in {place(path)} has a lone surrogate: not Unicode text")
                stack.append((child, (path, key), depth + 1))
        elif isinstance(item, str):
            if _SURROGATE.search(item):
                raise Refused(f"{place(path)} has a lone surrogate: it is not Unicode text")
        elif isinstance(item, float) and not math.isfinite(item):
            raise Refused(
                f"{place(path)} is {json.dumps(item)}: "
                "JSON numbers must be finite (send a string, or null)"
            )


async def body_of(request: Request, allowed: set[str]) -> dict[str, Any]:
    """The request's JSON object (empty for an empty body), with only ``allowed`` fields."""
    limits: Limits = request.app.state.limits
    raw = await read_body(request, limits)
    if not raw.strip():
        return {}
    body = parse_json(raw, limits)
    if not isinstance(body, dict):
        raise Refused(f"the body must be a JSON object, not {type(body).__name__}")
    unknown = sorted(set(body) - allowed)
    if unknown:
        named = ", ".join(map(quote_id, unknown[:5]))
        more = f" and {len(unknown) - 5:,} more" if len(unknown) > 5 else ""
        raise Refused(f"unknown field(s) {named}{more}; expected {', '.join(sorted(allowed))}")
    if "context" in body and not isinstance(body["context"], dict):
        raise Refused('"context" must be a JSON object of values to set')
    for field in ("message", "session_id", "expect_task"):
        if field in body and not isinstance(body[field], str):
            raise Refused(f'"{field}" must be a string')
    if "session_id" in body:
        problem = id_problem(body["session_id"])
        if problem is not None:
            raise Refused(
                f'"session_id" {quote_id(body["session_id"])} cannot be used: {problem}; {ID_RULE}'
            )
    return body


def session_id_of(request: Request) -> str:
    """The session id of the URL; an id that breaks the rule names no session: a 404."""
    session_id: str = request.path_params["session_id"]
    problem = id_problem(session_id)
    if problem is not None:
        raise NoSuchId(f"no session can be {quote_id(session_id)}: {problem}; {ID_RULE}")
    return session_id


class NoSuchId(Exception):
    """A URL names an id that no session can have: a 404."""


IDEMPOTENCY_KEY = "Idempotency-Key"
MAX_KEY_CHARS = 256
"""The longest Idempotency-Key taken: the longest request id ``runner.run`` takes."""
_KEY = re.compile(r"[\x21-\x7e]+")
_ETAG = re.compile(r'"(\d{1,18})"')


def one_header(request: Request, name: str) -> str | None:
    """The value of the header ``name``, None when it is absent; refused when sent twice."""
    values = request.headers.getlist(name)
    if len(values) > 1:
        raise BadHeader(name, f"was sent {len(values)} times; send it once")
    return values[0].strip() if values else None


def idempotency_key(request: Request) -> str | None:
    """The request's Idempotency-Key (what ``runner.run`` takes as ``request_id``), or None.

    1 to 256 visible ASCII characters, as sent or in double quotes (the form of the IETF
    draft: a structured-field string); ``"abc"`` and ``abc`` are the same key.
    """
    raw = one_header(request, IDEMPOTENCY_KEY)
    if raw is None:
        return None
    key = raw[1:-1] if len(raw) >= 2 and raw[0] == raw[-1] == '"' else raw
    if not key or len(key) > MAX_KEY_CHARS or not _KEY.fullmatch(key):
        raise BadHeader(
            IDEMPOTENCY_KEY,
            f"must be 1 to {MAX_KEY_CHARS} visible ASCII characters (no spaces), such as a "
            f"UUID made for the request, not {quote_id(key[:80])}"
            + (f" ({len(key):,} characters)" if len(key) > MAX_KEY_CHARS else ""),
        )
    return key


def if_match(request: Request) -> int | None:
    """The version the request's If-Match header expects (``expect_version``), or None.

    The value is one ETag as this service sends it, ``"7"``; ``*`` (any version) expects none.
    """
    raw = one_header(request, "If-Match")
    if raw is None or raw == "*":
        return None
    found = _ETAG.fullmatch(raw)
    if found is None:
        raise BadHeader(
            "If-Match",
            f'must be one ETag as this service sends it, such as "7" (with the quotes), or *; '
            f"not {quote_id(raw[:80])}",
        )
    return int(found.group(1))


@dataclass(frozen=True)
class StepRequest:
    """What a request to take a step asks for: ``runner.run``'s keywords, and the key."""

    updates: dict[str, Any]
    request_id: str | None
    expect_task: str | None
    expect_version: int | None

    @classmethod
    async def read(cls, request: Request) -> StepRequest:
        body = await body_of(request, {"message", "context", "expect_task"})
        updates: dict[str, Any] = dict(body.get("context", {}))
        if "message" in body:
            if USER_INPUT in updates:
                raise Refused(f'send the text as "message" or as context["{USER_INPUT}"], not both')
            updates[USER_INPUT] = body["message"]
        return cls(updates, idempotency_key(request), body.get("expect_task"), if_match(request))

    def keywords(self) -> dict[str, Any]:
        return {
            "context_updates": self.updates,
            "request_id": self.request_id,
            "expect_task": self.expect_task,
            "expect_version": self.expect_version,
        }


# -- answers ---------------------------------------------------------------------------------------


class JSON(JSONResponse):
    """A JSON answer that can always be written.

    Text stays readable (not ``\\u``-escaped), and a lone surrogate (in a session stored before
    the input was checked, or set by a task) is written as its JSON escape ``\\udXXX`` instead of
    failing the answer: it is the one character UTF-8 cannot encode, and outside strings JSON
    text is plain ASCII.
    """

    def render(self, content: Any) -> bytes:
        return json_bytes(content)


def json_bytes(content: Any) -> bytes:
    """``content`` as compact JSON text in UTF-8, as :class:`JSON` writes it (one line)."""
    text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.encode("utf-8", "backslashreplace")


def error(status: int, message: str, *, close: bool = False, **extra: Any) -> JSONResponse:
    headers = {"connection": "close"} if close else None
    return JSON({"error": message, **extra}, status_code=status, headers=headers)


def new_incident() -> str:
    return uuid.uuid4().hex[:12]


def runner_of(request: Request) -> FlowRunner:
    runner: FlowRunner = request.app.state.runner
    return runner


def status_json(status: ExecutionStatus) -> dict[str, Any]:
    match status:
        case ExecutionStatus.Paused(next_task_id=next_task_id, reason=reason):
            return {"status": "Paused", "next_task_id": next_task_id, "reason": reason}
        case ExecutionStatus.Scheduled(next_task_id=next_task_id, wake_at=wake_at):
            return {"status": "Scheduled", "next_task_id": next_task_id, "wake_at": str(wake_at)}
        case ExecutionStatus.Error(message=message):
            return {"status": "Error", "message": message}
    return {"status": status.name}  # Completed, WaitingForInput


def task_json(record: TaskRecord) -> dict[str, Any]:
    """What one task of a step did."""
    action = record.next_action
    return {
        "task_id": record.task_id,
        "response": record.response,
        "status_message": record.status_message,
        "next_action": None if action is None else str(action),  # e.g. "End", "GoTo(refund)"
    }


def step_json(session_id: str, result: ExecutionResult) -> dict[str, Any]:
    """The answer to a step: its response and status, and the story the result tells.

    Read from the result alone (``version``, ``current_task_id``, ``tasks``), so a replay of a
    recorded request is answered with the same body as the request that took the step.
    """
    return {
        "session_id": session_id,
        "response": result.response,
        **status_json(result.status),
        "version": result.version,
        "current_task_id": result.current_task_id,
        "tasks": [task_json(record) for record in result.tasks],
    }


def etag(version: int | None) -> dict[str, str]:
    """The ETag header of a session at ``version``: what If-Match sends back."""
    return {} if version is None else {"etag": f'"{version}"'}


def step_headers(step: StepRequest, result: ExecutionResult) -> dict[str, str]:
    """The headers of an answer to a step: its ETag, and whether it replays a recorded one."""
    headers = etag(result.version)
    if step.request_id is not None:
        headers["idempotent-replayed"] = "true" if result.replayed else "false"
    return headers


# -- a step as Server-Sent Events ------------------------------------------------------------------

MAX_REPR_CHARS = 10_000


def event_data(event: StepEvent) -> dict[str, Any]:
    """The JSON ``data`` of one event of a streamed step.

    An emitted value goes as it is when JSON can carry it (a str, a number, a list or object
    of those); otherwise (a set, bytes, a Decimal, NaN, any other object) as its ``repr()``,
    under ``"repr"`` in place of ``"value"``, so a client never mistakes the one for the other.
    """
    if event.kind == "task_ended":
        return task_json(event.value)
    if event.kind != "output":
        return {"task_id": event.task_id}
    try:
        json_bytes(event.value)  # what the event will be written as, checked first
    except (TypeError, ValueError, RecursionError):
        pass
    else:
        return {"task_id": event.task_id, "value": event.value}
    try:
        shown = repr(event.value)
    except Exception:
        shown = f"<a {type(event.value).__name__} that cannot be shown>"
    if len(shown) > MAX_REPR_CHARS:
        shown = shown[:MAX_REPR_CHARS] + "..."
    return {"task_id": event.task_id, "repr": shown}


def sse(event: str, data: Any) -> bytes:
    """One Server-Sent Event: its kind, and its data as one line of JSON."""
    return b"event: " + event.encode() + b"\ndata: " + json_bytes(data) + b"\n\n"


async def step_events(
    session_id: str,
    first: StepEvent | ExecutionResult,
    events: AsyncGenerator[StepEvent | ExecutionResult, None],
) -> AsyncGenerator[bytes, None]:
    """The events of a streamed step, as Server-Sent Events, ``first`` first.

    A failure once the events began is sent as an ``error`` event (the step was not saved).
    However this generator ends (the step done, the client gone), ``events`` is closed, which
    cancels a step still running: nothing of it is saved.
    """
    async with contextlib.aclosing(events):
        item = first
        while not isinstance(item, ExecutionResult):
            yield sse(item.kind, event_data(item))
            try:
                item = await anext(events)
            except Exception as exc:
                status, answer, _ = failure(exc, f"stream of session {quote_id(session_id)}")
                yield sse("error", {**answer, "status": status})
                return
        yield sse("result", {**step_json(session_id, item), "replayed": item.replayed})


class EventStream(StreamingResponse):
    """Starlette's StreamingResponse for Server-Sent Events, that always closes its events.

    When the client hangs up, Starlette cancels the task that iterates the events, on an ASGI
    server of spec 2.3 such as uvicorn's HTTP/1.1: it listens for the disconnect itself while
    it streams. On a server of spec 2.4 it relies on a write failing instead, and then leaves
    the iterator suspended, for the garbage collector to finalize. Here the iterator is closed
    as soon as the response ends, however it ends: the step it streams is cancelled then and
    there, and nothing of it is saved.
    """

    media_type = "text/event-stream"

    def __init__(
        self, events: AsyncGenerator[bytes, None], headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(events, headers=headers)
        self.events = events

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.events.aclose()


# -- routes ----------------------------------------------------------------------------------------


async def create_session(request: Request) -> JSONResponse:
    body = await body_of(request, {"session_id", "context"})
    session = await runner_of(request).create_session(
        body.get("session_id"), context=body.get("context")
    )
    return JSON(session_as_json(session), status_code=201, headers=etag(session.version))


async def run_step(request: Request) -> JSONResponse:
    session_id = session_id_of(request)
    step = await StepRequest.read(request)
    result = await runner_of(request).run(session_id, **step.keywords())
    return JSON(step_json(session_id, result), headers=step_headers(step, result))


async def stream_step(request: Request) -> Response:
    """The step ``run_step`` takes, its events sent as they happen (Server-Sent Events)."""
    session_id = session_id_of(request)
    step = await StepRequest.read(request)
    # An async generator: aclose() stops the step (FlowRunner.stream's documented contract).
    events = cast(
        AsyncGenerator[StepEvent | ExecutionResult, None],
        runner_of(request).stream(session_id, **step.keywords()),
    )
    # The first event is awaited here, before the answer begins: a step that cannot start (an
    # unknown session, a stale If-Match...) is answered with its error status, not a 200.
    try:
        first = await anext(events)
    except BaseException:
        await events.aclose()
        raise
    headers = {"cache-control": "no-store", "x-accel-buffering": "no"}  # no proxy buffering
    if isinstance(first, ExecutionResult):  # nothing runs: a replay, or a completed session
        headers.update(step_headers(step, first))
    elif step.request_id is not None:
        headers["idempotent-replayed"] = "false"  # a step runs; its result event says more
    return EventStream(step_events(session_id, first, events), headers=headers)


async def get_session(request: Request) -> JSONResponse:
    session_id = session_id_of(request)
    session = await runner_of(request).storage.get(session_id)
    if session is None:
        raise SessionNotFound(session_id)
    return JSON(session_as_json(session), headers=etag(session.version))


async def delete_session(request: Request) -> Response:
    session_id = session_id_of(request)
    storage = runner_of(request).storage
    if await storage.get(session_id) is None:
        raise SessionNotFound(session_id)
    await storage.delete(session_id)
    return Response(status_code=204)


# -- errors ----------------------------------------------------------------------------------------


async def refused(request: Request, exc: Exception) -> JSONResponse:
    status = getattr(exc, "status", 422)
    named = {"header": exc.header} if isinstance(exc, BadHeader) else {}
    return error(status, str(exc), close=getattr(exc, "close", False), **named)


async def no_such_id(request: Request, exc: Exception) -> JSONResponse:
    return error(404, str(exc))


async def not_found(request: Request, exc: Exception) -> JSONResponse:
    session_id = request.path_params.get("session_id", "")
    return error(404, f"no session {quote_id(session_id)}; create one with POST /sessions")


def failure(exc: Exception, doing: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    """How a step that failed is answered: the status, the JSON and the headers.

    Conflicts are the caller's to resolve, and say how. Anything else is logged under an
    incident id, which the answer names; the details (a host name, a user, a stack) are for
    the log, not for the caller. ``doing`` says in the log what failed.
    """
    if isinstance(exc, SessionMoved):
        found, expected = quote_id(exc.found), quote_id(exc.expected)
        fields = {"what": exc.what, "expected": exc.expected, "found": exc.found}
        if exc.what == "version":
            message = f"the session is at version {found}, not {expected} as If-Match said"
            status, headers = 412, etag(exc.found if isinstance(exc.found, int) else None)
        else:
            message = f'the session is at task {found}, not {expected} as "expect_task" said'
            status, headers = 409, {}
        answer = {"error": f"{message}; nothing ran: GET it to see where it is now", **fields}
        return status, answer, headers
    if isinstance(exc, SessionConflict):
        answer = {
            "error": "another request changed this session meanwhile, and nothing of this one "
            "was saved: send it again"
        }
        return 409, answer, {}
    incident = new_incident()
    if isinstance(exc, StorageError):
        log.error("incident %s: storage failed: %s", incident, exc)
        answer = {"error": "session storage is unavailable; try again later", "incident": incident}
        return 503, answer, {}
    log.error("incident %s: %s failed", incident, doing, exc_info=exc)
    if isinstance(exc, GraphError):  # TaskExecutionFailed and any other failed step
        answer = {
            "error": "the step failed and was not saved; try again later",
            "incident": incident,
        }
        return 500, answer, {}
    return 500, {"error": "the service failed; try again later", "incident": incident}, {}


async def step_error(request: Request, exc: Exception) -> JSONResponse:
    """A step (or a request to storage) that failed, answered as :func:`failure` says."""
    if isinstance(exc, SessionConflict) and request.url.path == "/sessions":
        return error(409, "a session with this id exists already; choose another id, or none")
    status, answer, headers = failure(exc, f"{request.method} {quote_id(request.url.path)}")
    return JSON(answer, status_code=status, headers=headers)


async def client_gone(request: Request, exc: Exception) -> Response:
    return Response(status_code=400)  # nobody reads it: the client hung up while sending


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    status = getattr(exc, "status_code", 500)
    return error(status, getattr(exc, "detail", "") or "not a route of this service")


class Incidents:
    """The last guard: an exception no handler expected is a JSON 500 with an incident id.

    The details go to the log once (Starlette's own guard would answer, then raise again for
    the server to log a second traceback).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:
            incident = new_incident()
            path = quote_id(scope.get("path", ""))
            log.error("incident %s: %s %s failed", incident, scope["method"], path, exc_info=exc)
            if not started:
                answer = error(500, "the service failed; try again later", incident=incident)
                await answer(scope, receive, send)


def create_app(
    storage_url: str = DEFAULT_STORAGE,
    *,
    orders: OrderService | None = None,
    limits: Limits | None = None,
    token_delay: float = 0.0,
) -> Starlette:
    """The web service, keeping its sessions at ``storage_url``; its replies are written a word
    every ``token_delay`` seconds (see :func:`build_graph`)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        handler = loop.get_exception_handler()
        loop.set_exception_handler(quiet_accept_errors)
        try:
            # One storage and one runner for the life of the process, shared by every request.
            async with open_storage(storage_url) as storage:
                app.state.runner = FlowRunner(build_graph(orders, token_delay=token_delay), storage)
                yield
        finally:
            loop.set_exception_handler(handler)

    exception_handlers: Mapping[Any, Any] = {
        Refused: refused,
        NoSuchId: no_such_id,
        ClientDisconnect: client_gone,
        SessionNotFound: not_found,
        # The most specific handler wins: SessionMoved is a SessionConflict, a StorageError,
        # a GraphError. step_error answers each as failure() says (so does a stream's error).
        GraphError: step_error,
        404: http_error,  # no such route
        405: http_error,  # no such method on this route
    }
    app = Starlette(
        routes=[
            Route("/sessions", create_session, methods=["POST"]),
            Route("/sessions/{session_id}/run", run_step, methods=["POST"]),
            Route("/sessions/{session_id}/stream", stream_step, methods=["POST"]),
            Route("/sessions/{session_id}", get_session, methods=["GET"]),
            Route("/sessions/{session_id}", delete_session, methods=["DELETE"]),
        ],
        middleware=[Middleware(Incidents)],
        exception_handlers=dict(exception_handlers),
        lifespan=lifespan,
    )
    app.state.limits = limits or Limits()
    return app


# -- the server ------------------------------------------------------------------------------------

FD_RESERVE = 64
"""File descriptors kept out of --limit-concurrency for the storage, the log and the rest."""
OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


def quiet_accept_errors(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The event loop's handler of errors: "too many open files" is one line, not a traceback.

    asyncio logs a traceback each time accepting a connection fails for want of a file
    descriptor, and on a busy listening socket that is thousands a second. Here it is a
    warning, which the log's bound (``BoundedLog``) keeps to a few.
    """
    exc = context.get("exception")
    if isinstance(exc, OSError) and exc.errno in OUT_OF_RESOURCES:
        log.warning(
            "cannot accept connections for now: %s; lower --limit-concurrency, "
            "or raise the open-files limit (ulimit -n)",
            os.strerror(exc.errno or 0),
        )
        return
    loop.default_exception_handler(context)


class BoundedLog(logging.Filter):
    """A log handler's filter that keeps the log from growing with what clients do.

    Each kind of warning (its logger and message template) is let through ``burst`` times per
    ``interval`` seconds; past that, warnings are left out and counted, and the next one let
    through says how many were. An error past that is kept but cut to its one line: its
    incident id stays findable, its traceback is left out.
    """

    def __init__(self, burst: int = 10, interval: float = 10.0) -> None:
        super().__init__()
        self.burst = burst
        self.interval = interval
        self.kinds: dict[tuple[str, str], list[float]] = {}  # [window start, seen, left out]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        kind = (record.name, str(record.msg))
        now = time.monotonic()
        window = self.kinds.get(kind)
        if window is None or now - window[0] >= self.interval:
            if len(self.kinds) > 1000:  # messages without a template: forget old kinds
                self.kinds.clear()
            left_out = int(window[2]) if window is not None else 0
            self.kinds[kind] = [now, 1, 0]
            if left_out:
                record.msg = f"{record.msg} [{left_out:,} more like this left out before]"
            return True
        window[1] += 1
        if window[1] <= self.burst:
            return True
        if record.levelno >= logging.ERROR:
            record.exc_info = record.exc_text = record.stack_info = None
            record.msg = f"{record.msg} [traceback left out: too many like this]"
            return True
        window[2] += 1
        return False


def log_config() -> dict[str, Any]:
    """uvicorn's logging, with ``BoundedLog`` on its handlers and this service's loggers."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["filters"] = {"bounded": {"()": BoundedLog}}
    for handler in config["handlers"].values():
        handler["filters"] = ["bounded"]
    for name in (log.name, "asyncio"):
        config["loggers"][name] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def guarded_h11(timeout_header: float) -> type[asyncio.Protocol]:
    """uvicorn's HTTP/1.1 protocol (h11), with two guards uvicorn has no option for.

    - A request's head must arrive within ``timeout_header`` seconds of the connection, or of
      the previous answer on it; otherwise the connection is closed (a client sending its
      headers a byte at a time holds nothing for long). While the app works on a request,
      the app's own limits apply (``Limits.timeout_body``).
    - A connection made while ``limit_concurrency`` connections are open is answered 503 and
      closed at once: it never holds a file descriptor while it waits (uvicorn itself would
      answer 503 only once the client sent a request, which an idle client never does).
    """
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11Protocol(H11Protocol):
        head_deadline: asyncio.TimerHandle | None = None
        turned_away = False

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            limit = self.config.limit_concurrency
            if limit is not None and len(self.connections) >= limit:
                self.turned_away = True
                assert isinstance(transport, asyncio.WriteTransport)
                transport.write(TOO_MANY_CONNECTIONS)
                transport.close()
                log.warning("refused a connection: %s are open (--limit-concurrency)", limit)
                return
            super().connection_made(transport)  # type: ignore[arg-type]
            self.watch_head()

        def data_received(self, data: bytes) -> None:
            if not self.turned_away:
                super().data_received(data)
                self.watch_head()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self.watch_head()

        def connection_lost(self, exc: Exception | None) -> None:
            self.forget_head()
            if not self.turned_away:
                super().connection_lost(exc)

        def watch_head(self) -> None:
            """Start the head's deadline when the connection waits for a request, else stop it."""
            serving = self.cycle is not None and not self.cycle.response_complete
            if serving or self.transport.is_closing():
                self.forget_head()
            elif self.head_deadline is None:
                self.head_deadline = self.loop.call_later(timeout_header, self.head_too_slow)

        def forget_head(self) -> None:
            if self.head_deadline is not None:
                self.head_deadline.cancel()
                self.head_deadline = None

        def head_too_slow(self) -> None:
            self.head_deadline = None
            if not self.transport.is_closing():
                self.transport.close()

    return GuardedH11Protocol


_BUSY = b'{"error":"too many connections; try again in a moment"}'
TOO_MANY_CONNECTIONS = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\nretry-after: 1\r\nconnection: close\r\n\r\n%s" % (len(_BUSY), _BUSY)
)


def connection_limit(wanted: int, backlog: int) -> tuple[int | None, str | None]:
    """``wanted`` (0: none), lowered to fit the open-files limit; and why it was lowered.

    The event loop accepts up to ``backlog`` connections at a time, and may do so twice before
    the protocol has turned any away: they need room too.
    """
    if wanted == 0:
        return None, None
    try:
        import resource
    except ImportError:  # not on Windows
        return wanted, None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    room = soft - 2 * backlog - FD_RESERVE
    if soft == resource.RLIM_INFINITY or wanted <= room:
        return wanted, None
    fitted = max(room, 1)
    return fitted, (
        f"--limit-concurrency lowered from {wanted:,} to {fitted:,} to fit the open-files limit "
        f"(ulimit -n) of {soft:,}: {2 * backlog:,} are kept for twice the --backlog, "
        f"{FD_RESERVE} for the rest"
    )


def server_config(
    app: Starlette,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    limit_concurrency: int = 500,
    backlog: int = 128,
    timeout_header: float = 10.0,
    timeout_keep_alive: int = 5,
    max_head_bytes: int = 16 * 1024,
) -> uvicorn.Config:
    """uvicorn's configuration for ``app``, with the limits of the table in this module's doc."""
    limit, lowered = connection_limit(limit_concurrency, backlog)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=guarded_h11(timeout_header),
        limit_concurrency=limit,
        backlog=backlog,
        timeout_keep_alive=timeout_keep_alive,
        h11_max_incomplete_event_size=max_head_bytes,
        log_config=log_config(),
    )
    if lowered:
        log.warning("%s", lowered)
    return config


def more_than_zero(kind: type[int] | type[float], *, or_zero: bool = False) -> Any:
    """An argparse type: a number of ``kind`` above 0 (or 0 too, with ``or_zero``)."""
    least = "0 or more" if or_zero else "more than 0"

    def read(text: str) -> int | float:
        value = kind(text)
        if value < 0 or (value == 0 and not or_zero) or not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be {least}, not {text}")
        return value

    read.__name__ = kind.__name__  # what argparse calls it in "invalid int value"
    return read


def main(argv: list[str] | None = None) -> None:
    defaults = Limits()
    parser = argparse.ArgumentParser(description="An order-support chat as a web service.")
    parser.add_argument(
        "--storage",
        default=DEFAULT_STORAGE,
        metavar="URL",
        help=f"where sessions are kept (default: {DEFAULT_STORAGE})",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument(
        "--token-delay",
        type=more_than_zero(float, or_zero=True),
        default=0.0,
        metavar="S",
        help="seconds between the words of a reply, as a model streams tokens (default: 0)",
    )
    limits = parser.add_argument_group("limits (see the module's documentation)")
    limits.add_argument(
        "--max-body-bytes",
        type=more_than_zero(int),
        default=defaults.max_body_bytes,
        metavar="N",
        help="a larger body is a 413 (default: %(default)s)",
    )
    limits.add_argument(
        "--timeout-body",
        type=more_than_zero(float),
        default=defaults.timeout_body,
        metavar="S",
        help="seconds for a body to arrive, or a 408 (default: %(default)s)",
    )
    limits.add_argument(
        "--timeout-header",
        type=more_than_zero(float),
        default=10.0,
        metavar="S",
        help="seconds for a request's head to arrive, or the connection closes (default: 10)",
    )
    limits.add_argument(
        "--timeout-keep-alive",
        type=more_than_zero(int),
        default=5,
        metavar="S",
        help="seconds an idle connection is kept between requests (default: %(default)s)",
    )
    limits.add_argument(
        "--limit-concurrency",
        type=more_than_zero(int, or_zero=True),
        default=500,
        metavar="N",
        help="connections at once; past them, 503 (default: %(default)s; 0: no limit)",
    )
    limits.add_argument(
        "--backlog",
        type=more_than_zero(int),
        default=128,
        metavar="N",
        help="connections waiting to be accepted (default: %(default)s)",
    )
    limits.add_argument(
        "--max-head-bytes",
        type=more_than_zero(int),
        default=16 * 1024,
        metavar="N",
        help="a request line and headers larger than this are a 400 (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    app = create_app(
        args.storage,
        limits=Limits(max_body_bytes=args.max_body_bytes, timeout_body=args.timeout_body),
        token_delay=args.token_delay,
    )
    config = server_config(
        app,
        host=args.host,
        port=args.port,
        limit_concurrency=args.limit_concurrency,
        backlog=args.backlog,
        timeout_header=args.timeout_header,
        timeout_keep_alive=args.timeout_keep_alive,
        max_head_bytes=args.max_head_bytes,
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
