"""An interactive loop in the terminal: run a step, and when the workflow waits, ask the user.

    python examples/interactive.py                        # sessions in memory
    python examples/interactive.py --session mine \
        --storage 'sqlite:///.flowcore/interactive.db?create_dirs=true'
        # stop any time with Ctrl-D: run the same command again to continue where you were

The loop is the one of graph-flow's FlowRunner page, in Python:

- Completed: print the answer and stop;
- WaitingForInput: read a line, and pass it to the next run as ``context_updates`` (one call
  that loads the session, sets the input, runs the step and saves, where graph-flow needs a
  get, a set and a save before the run);
- Paused: run again at once (the next task runs on the next call);
- Error: print it and stop.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
from collections.abc import Callable
from decimal import Decimal, InvalidOperation

from flowcore import (
    ExecutionStatus,
    FlowRunner,
    Graph,
    GraphBuilder,
    GraphError,
    NextAction,
    SessionStorage,
    TaskResult,
    open_storage,
    task,
)

__all__ = ["build_graph", "interact", "main"]

USER_INPUT = "user_input"


@task("ask_name")
def ask_name(ctx):
    name = (ctx.remove(USER_INPUT) or "").strip()
    if not name:
        return TaskResult("Who is the policy holder?", NextAction.WaitForInput)
    ctx.set("name", name)
    return TaskResult(f"Hello, {name}.", NextAction.Continue)


@task("ask_amount")
def ask_amount(ctx):
    answer = ctx.remove(USER_INPUT)
    if answer is None:
        return TaskResult("How much are you claiming, in EUR?", NextAction.WaitForInput)
    try:
        amount = Decimal(answer.strip().replace(",", ""))
    except InvalidOperation:
        amount = Decimal(0)
    if not amount.is_finite() or amount <= 0:
        return TaskResult(f"{answer.strip()!r} is not an amount; in EUR?", NextAction.WaitForInput)
    ctx.set("amount", amount)
    return TaskResult.move_to_next_direct()  # confirm asks in this same step


@task("confirm")
def confirm(ctx):
    answer = (ctx.remove(USER_INPUT) or "").strip().lower()
    if answer in ("y", "yes"):
        return TaskResult("Thank you.", NextAction.Continue)
    if answer in ("n", "no"):
        return TaskResult("Let's fix the amount.", NextAction.GoBack)
    return TaskResult(
        f"Claim {ctx.get('amount')} EUR for {ctx.get('name')}: is that right? (yes/no)",
        NextAction.WaitForInput,
    )


@task("summary")
def summary(ctx):
    verdict = "approved" if ctx.get("amount") <= 1000 else "sent to an adjuster"
    return TaskResult(f"Claim of {ctx.get('amount')} EUR {verdict}.", NextAction.End)


def build_graph() -> Graph:
    return (
        GraphBuilder("claim_intake")
        .add_task(ask_name)
        .add_task(ask_amount)
        .add_task(confirm)
        .add_task(summary)
        .add_edge("ask_name", "ask_amount")
        .add_edge("ask_amount", "confirm")
        .add_edge("confirm", "summary")
        .build()
    )


async def interact(
    runner: FlowRunner,
    session_id: str,
    read: Callable[[str], str] = input,
    write: Callable[[str], object] = print,
    *,
    storage_url: str | None = None,
) -> int:
    """Run the session until it completes, asking ``read`` whenever it waits for input.

    ``storage_url``, where ``runner`` keeps its sessions, is named when the input ends: how to
    continue, or (for storage that is not ``persistent``) that the session ends with the process.
    """
    updates = None
    while True:
        result = await runner.run(session_id, context_updates=updates)
        updates = None
        if result.response:
            write(result.response)
        match result.status:
            case ExecutionStatus.Completed:
                write("Done.")
                return 0
            case ExecutionStatus.WaitingForInput:
                try:
                    updates = {USER_INPUT: read("> ")}
                except EOFError:
                    stopped = how_to_continue(runner.storage, storage_url, session_id)
                    write(f"\nStopped. {stopped}".rstrip())
                    return 0
            case ExecutionStatus.Paused():
                continue  # the next task runs on the next call
            case ExecutionStatus.Error(message=message):
                write(f"error: {message}")
                return 1


def how_to_continue(storage: SessionStorage, storage_url: str | None, session_id: str) -> str:
    if storage_url is None:
        return ""
    if storage.persistent:
        return (
            "The session is stored: continue it with the same --storage and "
            f"--session {shlex.quote(session_id)}"
        )
    return (
        f"The session was kept in memory ({storage_url}) and ends with this process: "
        "a storage such as --storage 'sqlite:///.flowcore/interactive.db?create_dirs=true' "
        "keeps it between runs"
    )


async def amain(storage_url: str, session_id: str | None) -> int:
    async with open_storage(storage_url) as storage:
        runner = FlowRunner(build_graph(), storage)
        if session_id is None or await storage.get(session_id) is None:
            session_id = (await runner.create_session(session_id)).id
        else:
            print(f"Continuing session {session_id}.")
        read = input if sys.stdin.isatty() else echoed
        return await interact(runner, session_id, read=read, storage_url=storage_url)


def echoed(prompt: str) -> str:
    """Read a line that was piped in, and show it as if it had been typed."""
    line = sys.stdin.readline()
    if not line:
        raise EOFError
    print(prompt + line, end="")
    return line.rstrip("\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="File a claim, one question at a time.")
    parser.add_argument("--storage", default="memory://", metavar="URL", help="default: memory://")
    parser.add_argument(
        "--session", metavar="ID", help="a session to continue, or the new one's id"
    )
    args = parser.parse_args(argv)
    try:
        return asyncio.run(amain(args.storage, args.session))
    except KeyboardInterrupt:
        return 130
    except GraphError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
