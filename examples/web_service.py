"""A web service on flowcore: each HTTP request takes one step of a session.

    python examples/web_service.py                      # http://127.0.0.1:8000, SQLite storage
    python examples/web_service.py --storage URL        # any URL open_storage accepts
    python examples/web_service.py --port 0             # a free port (the log line names it)

The workflow is an order-support chat: it asks which order a message is about, looks the order
up (in a fake order service), asks what went wrong, then refunds a damaged order or hands the
case to a person. Try it with curl:

    curl -s -X POST localhost:8000/sessions                          # {"session_id": "...", ...}
    curl -s -X POST localhost:8000/sessions/ID/run                   # the first question
    curl -s -X POST localhost:8000/sessions/ID/run -d '{"message": "A-1001"}'
    curl -s -X POST localhost:8000/sessions/ID/run -d '{"message": "It arrived broken"}'
    curl -s localhost:8000/sessions/ID                               # context and chat history

| Route | Body (JSON, optional) | Answer |
|---|---|---|
| POST /sessions | {"session_id": str, "context": {...}} | 201: the new session |
| POST /sessions/{id}/run | {"message": str, "context": {...}} | 200: {"response", "status", ...} |
| GET /sessions/{id} | - | 200: the session, its context and chat history |
| DELETE /sessions/{id} | - | 204 |

Errors: 404 unknown session; 409 the session is busy (another request saved it first:
SessionConflict) or the id is taken; 422 a body that is not what the table says; 500 a task
failed (the answer names an incident id, the log has the details); 503 storage is unreachable.

One FlowRunner is made at start-up and shared by every request. It keeps nothing per session:
every request loads its session from storage and saves it back, so any number of processes can
serve the same sessions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from flowcore import (
    Context,
    ExecutionResult,
    ExecutionStatus,
    FlowRunner,
    Graph,
    GraphBuilder,
    GraphError,
    NextAction,
    Session,
    SessionConflict,
    SessionNotFound,
    StorageError,
    TaskResult,
    open_storage,
    task,
)

__all__ = ["DEFAULT_STORAGE", "ORDERS", "build_graph", "create_app", "main"]

DEFAULT_STORAGE = "sqlite:///.flowcore/web_service.db"
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


def say(ctx: Context, text: str, action: NextAction) -> TaskResult:
    """Answer the user: the reply goes into the chat history and into the response."""
    ctx.add_assistant_message(text)
    return TaskResult(text, action)


def heard(ctx: Context) -> str | None:
    """The user's message for this step, if there is one, kept in the chat history."""
    text = ctx.remove(USER_INPUT)
    if text is not None:
        ctx.add_user_message(text)
    return text


def build_graph(orders: OrderService | None = None) -> Graph:
    """The order-support workflow, looking orders up in ``orders``."""
    service = orders or OrderService()

    @task("ask_order")
    async def ask_order(ctx: Context) -> TaskResult:
        text = heard(ctx)
        if text is None:
            return say(
                ctx, "Hello! Which order is this about? (e.g. A-1001)", NextAction.WaitForInput
            )
        match = ORDER_ID.search(text.upper())
        if match is None:
            return say(
                ctx, f"{text!r} has no order number in it, like A-1001.", NextAction.WaitForInput
            )
        order = await service.find(match.group())
        if order is None:
            return say(
                ctx,
                f"I can't find order {match.group()}. Which order is it?",
                NextAction.WaitForInput,
            )
        ctx.set("order", {"id": order.order_id, "items": order.items, "total": order.total})
        return say(
            ctx, f"Order {order.order_id}: {order.items}. What went wrong?", NextAction.Continue
        )

    @task("describe_issue")
    def describe_issue(ctx: Context) -> TaskResult:
        text = heard(ctx)
        if text is None:
            return say(ctx, "What went wrong with your order?", NextAction.WaitForInput)
        ctx.set("issue", text)
        return TaskResult.move_to_next_direct()  # refund or hand_over answers in this request

    @task("refund")
    def refund(ctx: Context) -> TaskResult:
        order = ctx.get("order")
        return say(
            ctx,
            f"Sorry about that! {order['total']} EUR for {order['id']} is on its way back to you.",
            NextAction.End,
        )

    @task("hand_over")
    def hand_over(ctx: Context) -> TaskResult:
        ctx.set("ticket", f"T-{uuid.uuid4().hex[:6]}")
        return say(
            ctx,
            f"Thanks. A colleague will look into it: ticket {ctx.get('ticket')}.",
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


# -- HTTP ------------------------------------------------------------------------------------------


class BadRequest(Exception):
    """The request body is not what the route takes: a 422."""


def error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


async def body_of(request: Request, allowed: set[str]) -> dict[str, Any]:
    """The request's JSON object (empty for an empty body), with only ``allowed`` fields."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the body is not JSON") from None
    if not isinstance(body, dict):
        raise BadRequest(f"the body must be a JSON object, not {type(body).__name__}")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise BadRequest(
            f"unknown field(s) {', '.join(unknown)}; expected {', '.join(sorted(allowed))}"
        )
    if "context" in body and not isinstance(body["context"], dict):
        raise BadRequest('"context" must be a JSON object of values to set')
    for field in ("message", "session_id"):
        if field in body and not isinstance(body[field], str):
            raise BadRequest(f'"{field}" must be a string')
    if body.get("session_id") == "":
        raise BadRequest('"session_id" must not be empty: a URL could not name the session')
    return body


def runner_of(request: Request) -> FlowRunner:
    runner: FlowRunner = request.app.state.runner
    return runner


def status_json(status: ExecutionStatus) -> dict[str, Any]:
    match status:
        case ExecutionStatus.Paused(next_task_id=next_task_id, reason=reason):
            return {"status": "Paused", "next_task_id": next_task_id, "reason": reason}
        case ExecutionStatus.Error(message=message):
            return {"status": "Error", "message": message}
    return {"status": status.name}  # Completed, WaitingForInput


def session_json(session: Session) -> dict[str, Any]:
    ctx = session.context
    return {
        "session_id": session.id,
        "graph_id": session.graph_id,
        "current_task_id": session.current_task_id,
        "status_message": session.status_message,
        "is_completed": session.is_completed,
        "version": session.version,
        # Values JSON has no type for (the order total is a Decimal) are sent as text.
        "context": json.loads(json.dumps(ctx.to_dict(), default=str)),
        "chat": ctx.messages_for_llm(),
    }


async def create_session(request: Request) -> JSONResponse:
    body = await body_of(request, {"session_id", "context"})
    session = await runner_of(request).create_session(
        body.get("session_id"), context=body.get("context")
    )
    return JSONResponse(session_json(session), status_code=201)


async def run_step(request: Request) -> JSONResponse:
    session_id = request.path_params["session_id"]
    body = await body_of(request, {"message", "context"})
    updates: dict[str, Any] = dict(body.get("context", {}))
    if "message" in body:
        if USER_INPUT in updates:
            raise BadRequest(f'send the text as "message" or as context["{USER_INPUT}"], not both')
        updates[USER_INPUT] = body["message"]
    result: ExecutionResult = await runner_of(request).run(session_id, context_updates=updates)
    return JSONResponse(
        {"session_id": session_id, "response": result.response, **status_json(result.status)}
    )


async def get_session(request: Request) -> JSONResponse:
    session_id = request.path_params["session_id"]
    session = await runner_of(request).storage.get(session_id)
    if session is None:
        raise SessionNotFound(session_id)
    return JSONResponse(session_json(session))


async def delete_session(request: Request) -> Response:
    session_id = request.path_params["session_id"]
    storage = runner_of(request).storage
    if await storage.get(session_id) is None:
        raise SessionNotFound(session_id)
    await storage.delete(session_id)
    return Response(status_code=204)


async def bad_request(request: Request, exc: Exception) -> JSONResponse:
    return error(422, str(exc))


async def not_found(request: Request, exc: Exception) -> JSONResponse:
    return error(
        404,
        f"no session {request.path_params.get('session_id', '')!r}; create one with POST /sessions",
    )


async def conflict(request: Request, exc: Exception) -> JSONResponse:
    if request.url.path == "/sessions":
        return error(409, "a session with this id exists already; choose another id, or none")
    return error(
        409,
        "another request changed this session meanwhile, and nothing of this one was saved: "
        "send it again",
    )


async def storage_failed(request: Request, exc: Exception) -> JSONResponse:
    incident = uuid.uuid4().hex[:12]
    log.error("incident %s: storage failed: %s", incident, exc)
    return error(503, "session storage is unavailable; try again later", incident=incident)


async def step_failed(request: Request, exc: Exception) -> JSONResponse:
    # The details (a host name, a user, a stack) are for the log, not for the caller.
    incident = uuid.uuid4().hex[:12]
    log.error("incident %s: %s %s failed", incident, request.method, request.url.path, exc_info=exc)
    return error(500, "the step failed and was not saved; try again later", incident=incident)


def create_app(
    storage_url: str = DEFAULT_STORAGE, *, orders: OrderService | None = None
) -> Starlette:
    """The web service, keeping its sessions at ``storage_url``."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # One storage and one runner for the life of the process, shared by every request.
        async with open_storage(storage_url) as storage:
            app.state.runner = FlowRunner(build_graph(orders), storage)
            yield

    exception_handlers: Mapping[Any, Any] = {
        BadRequest: bad_request,
        SessionNotFound: not_found,
        SessionConflict: conflict,  # a StorageError, but the most specific handler wins
        StorageError: storage_failed,
        GraphError: step_failed,  # TaskExecutionFailed and any other failed step
    }
    return Starlette(
        routes=[
            Route("/sessions", create_session, methods=["POST"]),
            Route("/sessions/{session_id}/run", run_step, methods=["POST"]),
            Route("/sessions/{session_id}", get_session, methods=["GET"]),
            Route("/sessions/{session_id}", delete_session, methods=["DELETE"]),
        ],
        exception_handlers=dict(exception_handlers),
        lifespan=lifespan,
    )


def make_room_for(storage_url: str) -> None:
    """Create the directory of a SQLite file (such as .flowcore/), so the file can be made."""
    parts = urlsplit(storage_url)
    path = parts.path[1:]
    if parts.scheme.split("+")[0] == "sqlite" and path not in ("", ":memory:"):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="An order-support chat as a web service.")
    parser.add_argument(
        "--storage",
        default=DEFAULT_STORAGE,
        metavar="URL",
        help=f"where sessions are kept (default: {DEFAULT_STORAGE})",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    args = parser.parse_args(argv)
    make_room_for(args.storage)
    uvicorn.run(create_app(args.storage), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
