"""The terminal examples: the interactive loop, the chat bot and the batch job, run as a user
runs them (a process of their own, answers on stdin) and, where it shows more, in-process."""

from __future__ import annotations

import asyncio
import functools
import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from examples import batch, chat, interactive
from flowcore import Context, FlowRunner, InMemorySessionStorage, open_storage

ROOT = Path(__file__).resolve().parent.parent


def example_env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "PYTHONIOENCODING": "utf-8",
        "FLOWCORE_LOAD_PLUGINS": "sql",
    }


def run_example(
    name: str, *args: str, stdin: str = "", cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = example_env()
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / f"{name}.py"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        cwd=cwd or ROOT,
        env=env,
        check=False,
    )


# -- interactive.py --------------------------------------------------------------------------------


def test_the_interactive_loop_asks_until_the_claim_is_complete():
    done = run_example("interactive", stdin="Ada Lovelace\nlots\n1,200\nno\n900\nyes\n")

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "Who is the policy holder?",
        "> Ada Lovelace",
        "Hello, Ada Lovelace.",
        "How much are you claiming, in EUR?",
        "> lots",
        "'lots' is not an amount; in EUR?",
        "> 1,200",
        "Claim 1200 EUR for Ada Lovelace: is that right? (yes/no)",
        "> no",
        "Let's fix the amount.",  # GoBack: Paused at ask_amount, and the loop runs it at once
        "How much are you claiming, in EUR?",
        "> 900",
        "Claim 900 EUR for Ada Lovelace: is that right? (yes/no)",
        "> yes",
        "Thank you.",
        "Claim of 900 EUR approved.",
        "Done.",
    ]


def test_an_interactive_session_stopped_with_end_of_input_continues_in_a_new_process(tmp_path):
    storage = ["--storage", "sqlite:///claims.db", "--session", "claim-9"]

    first = run_example("interactive", *storage, stdin="Grace Hopper\n", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.endswith(
        "How much are you claiming, in EUR?\n\n"
        "Stopped. The session is stored: continue it with the same --storage and "
        "--session claim-9\n"
    )

    second = run_example("interactive", *storage, stdin="4500\nyes\n", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert second.stdout.startswith("Continuing session claim-9.\n")
    assert "Claim 4500 EUR for Grace Hopper: is that right? (yes/no)" in second.stdout
    assert second.stdout.endswith("Claim of 4500 EUR sent to an adjuster.\nDone.\n")


def test_an_interactive_session_in_memory_is_not_said_to_be_stored():
    stopped = run_example("interactive", "--session", "claim 9", stdin="Grace Hopper\n")

    assert stopped.returncode == 0, stopped.stderr
    assert "stored" not in stopped.stdout
    assert "--session" not in stopped.stdout
    assert stopped.stdout.endswith(
        "How much are you claiming, in EUR?\n\n"
        "Stopped. The session was kept in memory (memory://) and ends with this process: "
        "a storage such as --storage 'sqlite:///.flowcore/interactive.db?create_dirs=true' "
        "keeps it between runs\n"
    )


@pytest.mark.parametrize(
    ("name", "first", "then", "shows"),
    [
        ("interactive", "Grace Hopper\n", "4500\n", "Claim 4500 EUR for Grace Hopper"),
        ("chat", "My name is Grace\n", "What's my name?\n", "your name is Grace."),
    ],
)
def test_the_storage_the_end_of_input_names_keeps_sessions_between_runs(
    tmp_path, name, first, then, shows
):
    # Run from a directory with no .flowcore/ in it: the storage named creates it.
    said = run_example(name, stdin="", cwd=tmp_path).stdout
    url = re.search(r"--storage '(sqlite:///[^']+)'", said).group(1)
    storage = ["--storage", url, "--session", "s1"]

    run_example(name, *storage, stdin=first, cwd=tmp_path)
    second = run_example(name, *storage, stdin=then, cwd=tmp_path)

    assert second.returncode == 0, second.stderr
    assert shows in second.stdout
    assert (tmp_path / ".flowcore").is_dir()


def test_a_stored_session_id_is_quoted_for_the_shell(tmp_path):
    storage = ["--storage", "sqlite:///claims.db", "--session", "Grace's claim"]

    stopped = run_example("interactive", *storage, stdin="Grace Hopper\n", cwd=tmp_path)

    assert stopped.stdout.endswith("--session 'Grace'\"'\"'s claim'\n")


@pytest.mark.parametrize(
    ("url", "persistent"),
    [
        ("memory://", False),
        ("sqlite:///:memory:", False),
        ("sqlite+aiosqlite:///:memory:", False),
        ("sqlite:///claims.db", True),
        ("sqlite:////var/lib/claims.db", True),
        ("postgresql://postgres@127.0.0.1/test", True),
    ],
)
def test_only_a_storage_outside_the_process_is_said_to_keep_sessions(
    url, persistent, installed_plugins
):
    installed_plugins("sql")
    storage = open_storage(url)  # opening connects to nothing yet
    assert storage.persistent is persistent
    said = interactive.how_to_continue(storage, url, "s-1")
    assert said.startswith("The session is stored") is persistent
    said = chat.how_to_go_on(storage, url, "s-1")
    assert said.startswith("The conversation is stored") is persistent


async def test_the_loop_takes_any_source_of_answers():
    runner = FlowRunner(interactive.build_graph(), InMemorySessionStorage())
    session = await runner.create_session()
    answers = iter(["Ada", "250", "y"])
    said: list[str] = []

    code = await interactive.interact(runner, session.id, lambda _: next(answers), said.append)

    assert code == 0
    assert said[-2:] == ["Claim of 250 EUR approved.", "Done."]


# -- chat.py ---------------------------------------------------------------------------------------


def test_the_chat_remembers_what_was_said_through_the_stored_history():
    done = run_example("chat", stdin="Hello there\nMy name is Ada\nWhat is my name?\nbye\n")

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "bot> Hello! How can I help?",
        "you> Hello there",
        "bot> You said 'Hello there'. That is message 1 from you; I was sent 2.",
        "you> My name is Ada",
        "bot> Nice to meet you, Ada!",
        "you> What is my name?",
        "bot> You told me your name is Ada.",
        "you> bye",
        "bot> Goodbye!",
    ]


def test_show_prompt_prints_the_messages_the_model_is_sent():
    done = run_example("chat", "--show-prompt", stdin="Hi\n")

    sent = [line for line in done.stdout.splitlines() if line.startswith("[model is sent]")]
    assert sent == [
        '[model is sent] [{"role": "system", "content": "' + chat.SYSTEM_PROMPT + '"}, '
        '{"role": "user", "content": "Hi"}]'
    ]


def test_a_conversation_goes_on_in_a_new_process(tmp_path):
    storage = ["--storage", "sqlite:///chat.db", "--session", "c1"]

    first = run_example("chat", *storage, stdin="My name is Grace\n", cwd=tmp_path)
    done = run_example("chat", *storage, stdin="What's my name?\n", cwd=tmp_path)

    assert first.stdout.endswith(
        "\n(The conversation is stored: go on with the same --storage and --session c1)\n"
    )
    assert "bot> You told me your name is Grace." in done.stdout


def test_a_conversation_in_memory_is_not_said_to_be_stored():
    done = run_example("chat", "--session", "c1", stdin="My name is Grace\n")

    assert done.returncode == 0, done.stderr
    assert "stored" not in done.stdout
    assert done.stdout.endswith(
        "\n(The conversation was kept in memory (memory://) and ends here: "
        "a storage such as --storage 'sqlite:///.flowcore/chat.db?create_dirs=true' keeps it "
        "between runs)\n"
    )


async def test_the_model_is_any_function_and_gets_messages_for_llm_after_the_system_prompt():
    sent: list[list[dict[str, str]]] = []

    async def model(messages):
        sent.append(messages)
        return f"answer {len(sent)}"

    runner = FlowRunner(chat.build_graph(model), InMemorySessionStorage())
    session = await runner.create_session(context=Context(max_chat_messages=2))
    await runner.run(session.id)  # the greeting
    for text in ("one", "two"):
        result = await runner.run(session.id, context_updates={"user_input": text})

    assert result.response == "answer 2"
    system = {"role": "system", "content": chat.SYSTEM_PROMPT}
    # The history is capped at two messages; the system prompt is sent all the same.
    assert sent[-1] == [
        system,
        {"role": "assistant", "content": "answer 1"},
        {"role": "user", "content": "two"},
    ]


def test_the_chat_prints_the_answer_word_by_word_as_the_model_writes_it():
    command = [sys.executable, str(ROOT / "examples" / "chat.py"), "--token-delay", "0.2"]
    seen = b""
    arrivals: list[tuple[float, bytes]] = []  # when the output had grown to what
    with subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=example_env(), cwd=ROOT
    ) as process:
        assert process.stdin is not None
        assert process.stdout is not None
        process.stdin.write(b"Hi\n")
        process.stdin.close()
        while chunk := process.stdout.read1():  # what has arrived, as soon as it has
            seen += chunk
            arrivals.append((time.monotonic(), seen))
    assert process.returncode == 0

    answer = b"bot> You said 'Hi'. That is message 1 from you; I was sent 2.\n"
    assert answer in seen
    began = next(at for at, text in arrivals if b"bot> You " in text)
    ended = next(at for at, text in arrivals if answer in text)
    # 13 words, 0.2 s apart: the first was on the screen about 2.4 s before the last.
    assert ended - began > 1.0


async def test_an_answer_interrupted_while_it_is_written_leaves_the_conversation_as_it_was(
    capsys,
):
    model = functools.partial(chat.fake_model, token_delay=0.05)
    runner = FlowRunner(chat.build_graph(model), InMemorySessionStorage())
    session = await runner.create_session()
    await chat.take_step(runner, session.id, None)  # the greeting
    before = await runner.storage.get(session.id)
    printed = capsys.readouterr().out

    step = asyncio.create_task(chat.take_step(runner, session.id, {"user_input": "Hello"}))
    while "bot> You " not in printed:  # the answer is being written
        await asyncio.sleep(0.01)
        printed += capsys.readouterr().out
    step.cancel()  # what Ctrl-C does under asyncio.run
    with pytest.raises(asyncio.CancelledError):
        await step
    await asyncio.sleep(1.0)  # longer than the whole answer takes to write

    after = await runner.storage.get(session.id)
    assert before is not None
    assert after is not None
    assert after.version == before.version
    assert after.context.get_chat_history() == before.context.get_chat_history()
    printed += capsys.readouterr().out
    assert printed.endswith("\n")  # the cut answer's line is ended
    assert "I was sent" not in printed


async def test_a_model_that_does_not_stream_has_its_answer_printed_whole(capsys):
    runner = FlowRunner(
        chat.build_graph(lambda messages: "A plain answer."), InMemorySessionStorage()
    )
    session = await runner.create_session()

    await chat.take_step(runner, session.id, None)
    result = await chat.take_step(runner, session.id, {"user_input": "Hi"})

    assert result.response == "A plain answer."
    assert capsys.readouterr().out == "bot> Hello! How can I help?\nbot> A plain answer.\n"


# -- batch.py --------------------------------------------------------------------------------------


def test_the_batch_runs_ten_thousand_sessions_to_completion_and_reports_steps_per_second():
    done = run_example("batch")

    assert done.returncode == 0, done.stderr
    summary, speed = done.stdout.splitlines()
    assert summary == "10,000 sessions completed: 6,675 approved, 3,325 sent for review"
    assert re.fullmatch(
        r"40,000 steps in [\d.]+ s: [\d,]+ steps/s \(storage memory://, 100 at a time\)", speed
    )
    # Not a terminal: the progress bar is a line every tenth of the way.
    progress = done.stderr.splitlines()
    assert len(progress) == 10
    assert progress[-1].startswith("[" + "#" * 30 + "] 10,000/10,000 sessions ")


def test_the_batch_runs_on_sqlite_too(tmp_path):
    storage = "sqlite:///.flowcore/batch.db?create_dirs=true"  # as the docstring says
    args = ["--sessions", "40", "--concurrency", "4", "--storage", storage]

    for _ in range(2):  # a second run in the same storage adds its own sessions
        done = run_example("batch", *args, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("40 sessions completed: ")
    assert (tmp_path / ".flowcore" / "batch.db").is_file()


def test_the_batch_report_hides_the_storage_password():
    totals = batch.Totals()
    totals.steps = 300
    line = batch.speed(totals, 1.5, "postgresql://app:s3cret@db.internal/claims", 8)
    assert line == (
        "300 steps in 1.50 s: 200 steps/s (storage postgresql://app:***@db.internal/claims, "
        "8 at a time)"
    )


@pytest.mark.parametrize("concurrency", [1, 7])
async def test_never_more_than_the_given_number_of_sessions_are_in_flight(concurrency):
    in_flight = 0
    most = 0

    class Counting(InMemorySessionStorage):
        async def save(self, session):
            nonlocal in_flight, most
            if session.version == 0:
                in_flight += 1
                most = max(most, in_flight)
            elif session.is_completed:
                in_flight -= 1
            await super().save(session)

    runner = FlowRunner(batch.build_graph(), Counting())
    totals = await batch.run_batch(runner, iter(range(50)), concurrency=concurrency)

    assert (totals.sessions, totals.steps, most) == (50, 200, concurrency)


def test_the_progress_bar_redraws_one_line_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    screen = Terminal()
    progress = batch.Progress(4, stream=screen, width=4)
    for done in range(1, 5):
        progress.update(done, steps=done * 4)

    assert screen.getvalue().startswith("\r[#---] 1/4 sessions ")
    assert screen.getvalue().count("\n") == 1
    assert "\r[####] 4/4 sessions " in screen.getvalue()
