"""The workflows the benchmarks time, built from one implementation's flowcore API."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

from flowcore.testing import _timing as timing


def hop_tasks(fc: Any) -> SimpleNamespace:
    """Trivial tasks: set one key, go on (sync and async), or chain (ContinueAndExecute)."""

    class SyncHop(fc.Task):
        def __init__(self, id: str, action: Any = fc.NextAction.Continue) -> None:
            self.id = id
            self.action = action

        def run(self, ctx: Any) -> Any:
            ctx.set("last", self.id)
            return fc.TaskResult(None, self.action)

    class AsyncHop(SyncHop):
        async def run(self, ctx: Any) -> Any:  # type: ignore[override]
            ctx.set("last", self.id)
            return fc.TaskResult(None, self.action)

    return SimpleNamespace(sync=SyncHop, async_=AsyncHop)


def cycle_graph(fc: Any, size: int, task_class: Any) -> Any:
    """``size`` tasks in a ring: t0 -> t1 -> ... -> t0, each step moves one on."""
    graph = fc.Graph("ring")
    for i in range(size):
        graph.add_task(task_class(f"t{i}"))
        graph.add_edge(f"t{i}", f"t{(i + 1) % size}")
    return graph


def chain_graph(fc: Any, hops: int) -> Any:
    """``hops`` tasks chained with ContinueAndExecute; the last jumps back to the first."""
    tasks = hop_tasks(fc)
    graph = fc.Graph("chain", max_steps=hops + 1)
    for i in range(hops - 1):
        graph.add_task(tasks.sync(f"t{i}", fc.NextAction.ContinueAndExecute))
        graph.add_edge(f"t{i}", f"t{i + 1}")
    graph.add_task(tasks.sync(f"t{hops - 1}", fc.NextAction.GoTo("t0")))
    return graph


class Stepper:
    """Runs ``runner.run(session_id)`` ``ops`` times per call on a private event loop."""

    def __init__(self, runner: Any, session_id: str, ops: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.runner = runner
        self.session_id = session_id
        self.ops = ops

    def setup(self, **context: Any) -> None:
        self.loop.run_until_complete(
            self.runner.create_session(self.session_id, context=context or None)
        )

    async def _many(self) -> None:
        run = self.runner.run
        session_id = self.session_id
        for _ in range(self.ops):
            await run(session_id)

    def __call__(self) -> None:
        self.loop.run_until_complete(self._many())

    def close(self) -> None:
        self.loop.close()


class _Reference(Stepper):
    def __init__(self, ops: int) -> None:
        super().__init__(None, "s", ops)
        self._run, _ = timing.reference_kernel(self.loop, ops)

    def __call__(self) -> None:
        self._run()


def reference_kernel(ops: int) -> Stepper:
    """flowcore's reference kernel (``flowcore.testing``), ``ops`` operations per call: the least
    a step must do, in plain Python, which the gates divide by."""
    return _Reference(ops)


def representative_context(fc: Any) -> Any:
    """20 scalar keys, a 10-key nested dict, a list of 100 ints, 50 chat messages of ~200 chars."""
    ctx = fc.Context()
    for i in range(20):
        ctx.set(f"scalar_{i}", (i, i * 1.5, f"value {i}", i % 2 == 0)[i % 4])
    ctx.set("profile", {f"field_{i}": f"text {i}" if i % 2 else i for i in range(10)})
    ctx.set("numbers", list(range(100)))
    sentence = "The quick brown fox jumps over the lazy dog while the claims assistant waits. "
    for i in range(50):
        text = (sentence * 3)[: 190 + i % 20]
        (ctx.add_user_message if i % 2 else ctx.add_assistant_message)(text)
    return ctx


def bare_record(session: Any) -> list[Any]:
    """The same data as plain msgpack types, for bare packb/unpackb: the floor of any codec."""
    ctx = session.context
    chat: list[Any] = []
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    for message in ctx.get_chat_history():
        chat += [message.role.value, message.content, (message.timestamp - epoch) / timedelta(1)]
    return [
        session.graph_id,
        session.current_task_id,
        session.status_message,
        session.is_completed,
        list(session.history),
        ctx.max_chat_messages,
        ctx.to_dict(),
        chat,
    ]


def sized_context(size_bytes: int) -> dict[str, str]:
    """About ``size_bytes`` of context as 100-byte strings under short keys."""
    return {f"k{i}": "x" * 100 for i in range(max(1, size_bytes // 110))}


def no_copy_storage(fc: Any) -> Any:
    """A storage that hands back the very session it holds: no codec, no copy.

    Not a valid backend (it breaks copy semantics); it isolates what the engine itself costs.
    """

    class NoCopyStorage(fc.SessionStorage):
        def __init__(self) -> None:
            self.sessions: dict[str, Any] = {}

        async def get(self, session_id: str) -> Any:
            return self.sessions.get(session_id)

        async def save(self, session: Any) -> None:
            session.version += 1
            self.sessions[session.id] = session

        async def delete(self, session_id: str) -> None:
            self.sessions.pop(session_id, None)

    return NoCopyStorage()
