"""A chat bot on flowcore: the chat history lives in the session, the model is a function.

    python examples/chat.py                       # chat with a fake model (no network)
    python examples/chat.py --show-prompt         # also print what the model is sent
    python examples/chat.py --token-delay 0.2     # the fake model writes slowly: watch it stream
    python examples/chat.py --model mymodule:reply     # your model: (messages) -> str
    python examples/chat.py --storage 'sqlite:///.flowcore/chat.db?create_dirs=true' --session mine
        # the conversation outlives the process: run it again to go on

Each line you type is one step: the runner loads the session, the ``chat`` task adds your
message to the context's chat history, sends ``ctx.messages_for_llm()`` to the model, adds the
answer to the history, and the session is saved. Say "bye" to end the session.

A model is any function ``(messages: list[dict[str, str]]) -> str``, plain or ``async``, taking
the messages in the shape most chat-completion APIs accept. The default is ``fake_model``: it
answers from the history alone, so you can see the conversation carried from step to step
(tell it your name, then ask for it).

The answer is printed as it is written. The loop takes each step with ``runner.stream``, and
prints each value a task emits with ``flowcore.emit`` as it comes: ``fake_model`` emits its
answer word by word (a word every ``--token-delay`` seconds: 0.03 on a terminal, none when the
input is piped), as a model's API streams tokens. A model that emits nothing has its answer
printed whole once the step is done. Ctrl-C while an answer is being written cancels the step:
nothing of it is saved.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import importlib
import inspect
import json
import re
import shlex
import sys
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import cast

from flowcore import (
    Context,
    ExecutionResult,
    ExecutionStatus,
    FlowRunner,
    Graph,
    GraphBuilder,
    GraphError,
    NextAction,
    SessionStorage,
    StepEvent,
    Task,
    TaskResult,
    emit,
    open_storage,
)

__all__ = [
    "SYSTEM_PROMPT",
    "ChatTurn",
    "Model",
    "build_graph",
    "fake_answer",
    "fake_model",
    "main",
    "take_step",
]

Messages = list[dict[str, str]]
Model = Callable[[Messages], str | Awaitable[str]]

USER_INPUT = "user_input"
SYSTEM_PROMPT = "You are a friendly assistant of an insurance company. Keep answers short."
GOODBYES = ("bye", "goodbye", "quit", "exit")
TOKENS = re.compile(r"\S+\s*|\s+")
"""A text's tokens: its words, each with the spaces after it (together they are the text)."""


async def fake_model(messages: Messages, *, token_delay: float = 0.0) -> str:
    """A stand-in for a language model that streams: :func:`fake_answer`'s answer, each word
    sent with ``flowcore.emit`` as it is written, ``token_delay`` seconds apart."""
    answer = fake_answer(messages)
    for token in TOKENS.findall(answer):
        emit(token)
        if token_delay:
            await asyncio.sleep(token_delay)
    return answer


def fake_answer(messages: Messages) -> str:
    """A deterministic stand-in for a language model: it reads only the messages it is sent."""
    said = [m["content"] for m in messages if m["role"] == "user"]
    names = [m.group(1) for text in said if (m := re.search(r"my name is (\w+)", text, re.I))]
    last = said[-1]
    if re.search(r"what('s| is) my name", last, re.I):
        if names:
            return f"You told me your name is {names[-1]}."
        return "You haven't told me your name yet."
    if re.search(r"my name is", last, re.I) and names:
        return f"Nice to meet you, {names[-1]}!"
    return f"You said {last!r}. That is message {len(said)} from you; I was sent {len(messages)}."


class ChatTurn(Task):
    """One turn of the conversation: the user's message in, the model's answer out."""

    id = "chat"

    def __init__(self, model: Model, system_prompt: str = SYSTEM_PROMPT) -> None:
        self.model = model
        self.system_prompt = system_prompt

    async def run(self, ctx: Context) -> TaskResult:
        text = ctx.remove(USER_INPUT)
        if text is None:
            return TaskResult("Hello! How can I help?", NextAction.WaitForInput)
        ctx.add_user_message(text)
        if text.strip().lower() in GOODBYES:
            return TaskResult("Goodbye!", NextAction.End)
        # The system prompt is sent first on every turn but is not kept in the history, so the
        # history's cap (max_chat_messages) never drops it.
        messages = [{"role": "system", "content": self.system_prompt}, *ctx.messages_for_llm()]
        answer = self.model(messages)
        if inspect.isawaitable(answer):
            answer = await answer
        ctx.add_assistant_message(answer)
        return TaskResult(answer, NextAction.WaitForInput)


def build_graph(model: Model = fake_model) -> Graph:
    """A graph of one task, ``chat``, answering with ``model``."""
    return GraphBuilder("chat").add_task(ChatTurn(model)).build()


def showing_prompt(model: Model) -> Model:
    """``model``, printing the messages it is sent before each call."""

    def show_then_call(messages: Messages) -> str | Awaitable[str]:
        print(f"[model is sent] {json.dumps(messages, ensure_ascii=False)}")
        return model(messages)

    return show_then_call


def load_model(target: str) -> Model:
    """The function ``MODULE:NAME`` names."""
    module_name, _, name = target.partition(":")
    model = getattr(importlib.import_module(module_name), name)
    if not callable(model):
        raise TypeError(f"{target} is not a function")
    return model  # type: ignore[no-any-return]


async def chat(
    runner: FlowRunner,
    session_id: str,
    read: Callable[[str], str],
    *,
    storage_url: str | None = None,
) -> int:
    """Chat until the session ends or the input does.

    ``storage_url``, where ``runner`` keeps its sessions, is named when the input ends: how to
    go on, or (for storage that is not ``persistent``) that the conversation ends here.
    """
    updates = None
    while True:
        result = await take_step(runner, session_id, updates)
        if result.status != ExecutionStatus.WaitingForInput:
            return 0
        try:
            updates = {USER_INPUT: read("you> ")}
        except EOFError:
            if storage_url is not None:
                print(f"\n({how_to_go_on(runner.storage, storage_url, session_id)})")
            return 0


async def take_step(
    runner: FlowRunner, session_id: str, updates: dict[str, str] | None
) -> ExecutionResult:
    """One step, streamed: what the tasks emit is printed as it comes, after ``bot> ``.

    A step whose tasks emitted nothing (the greeting, a model that does not stream) has its
    response printed once it is done. If the step is interrupted (Ctrl-C), closing the stream
    cancels it: nothing of it is saved.
    """
    streaming = False
    result: ExecutionResult | None = None
    # runner.stream is an async generator: aclose() cancels a step still running.
    events = cast(
        AsyncGenerator[StepEvent | ExecutionResult, None],
        runner.stream(session_id, context_updates=updates),
    )
    try:
        async with contextlib.aclosing(events):
            async for event in events:
                if isinstance(event, ExecutionResult):
                    result = event
                elif event.kind == "output":
                    print(event.value if streaming else f"bot> {event.value}", end="", flush=True)
                    streaming = True
    finally:
        if streaming:
            print()  # the end of the line the tokens were written on
    assert result is not None  # a stream that ends without raising ends with its result
    if result.response and not streaming:
        print(f"bot> {result.response}")
    return result


def echoed(prompt: str) -> str:
    """Read a line that was piped in, and show it as if it had been typed."""
    line = sys.stdin.readline()
    if not line:
        raise EOFError
    print(prompt + line, end="")
    return line.rstrip("\n")


async def amain(args: argparse.Namespace) -> int:
    interactive = sys.stdin.isatty()
    if args.model:
        model = load_model(args.model)
    else:
        delay = args.token_delay if args.token_delay is not None else (0.03 if interactive else 0)
        model = functools.partial(fake_model, token_delay=delay)
    if args.show_prompt:
        model = showing_prompt(model)
    async with open_storage(args.storage) as storage:
        runner = FlowRunner(build_graph(model), storage)
        session_id = args.session
        if session_id is None or await storage.get(session_id) is None:
            context = Context(max_chat_messages=args.max_messages)
            session_id = (await runner.create_session(session_id, context=context)).id
        read = input if interactive else echoed
        return await chat(runner, session_id, read, storage_url=args.storage)


def how_to_go_on(storage: SessionStorage, storage_url: str, session_id: str) -> str:
    if storage.persistent:
        return (
            "The conversation is stored: go on with the same --storage and "
            f"--session {shlex.quote(session_id)}"
        )
    return (
        f"The conversation was kept in memory ({storage_url}) and ends here: "
        "a storage such as --storage 'sqlite:///.flowcore/chat.db?create_dirs=true' keeps it "
        "between runs"
    )


def seconds(text: str) -> float:
    """An argparse type: a number of seconds, 0 or more."""
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds, 0 or more, not {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Chat with a model, one step per message.")
    parser.add_argument("--model", metavar="MODULE:NAME", help="default: the fake model")
    parser.add_argument("--show-prompt", action="store_true", help="print what the model is sent")
    parser.add_argument("--storage", default="memory://", metavar="URL", help="default: memory://")
    parser.add_argument("--session", metavar="ID", help="a conversation to go on with")
    parser.add_argument(
        "--max-messages", type=int, default=20, metavar="N", help="history kept (default 20)"
    )
    parser.add_argument(
        "--token-delay",
        type=seconds,
        metavar="S",
        help="seconds between the fake model's words (default: 0.03 on a terminal, else 0)",
    )
    args = parser.parse_args(argv)
    try:
        return asyncio.run(amain(args))
    except KeyboardInterrupt:
        return 130
    except GraphError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
