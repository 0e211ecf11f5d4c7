"""The claim demo (examples/claim_demo.py): the path it takes, both of its modes, and claims
that outlive the process that started them (the demo keeps them in SQLite by default)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

import pytest

from examples import claim_demo
from examples.claim_demo import (
    SCRIPTED_ANSWERS,
    SMALL_CLAIM_ANSWERS,
    build_graph,
    main,
    parse_amount,
    play,
)
from flowcore import ExecutionResult, ExecutionStatus, FlowRunner, NextAction, open_storage

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "claim_demo.py"
WENT_BACK = ExecutionStatus.Paused("gather_details", "Task requested to go back to previous task")


@pytest.fixture
def runner() -> FlowRunner:
    return FlowRunner(build_graph(), open_storage("memory://"))


def run_demo(
    *args: str, cwd: Path, stdin: str = "", command: Sequence[str] = (sys.executable, str(DEMO))
) -> subprocess.CompletedProcess[str]:
    """Run the demo in a process of its own, in ``cwd`` (where it keeps .flowcore/demo.db)."""
    return run([*command, *args], cwd=cwd, stdin=stdin)


def run(
    command: Sequence[str], *, cwd: Path, stdin: str = "", path: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` as a shell would, with flowcore-sql loaded (``path``: PATH)."""
    # The checkout comes first, so the demo runs this flowcore whether or not it is installed.
    python_path = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(python_path),
        "PYTHONIOENCODING": "utf-8",
        "FLOWCORE_LOAD_PLUGINS": "sql",  # flowcore-sql, for the default storage
    }
    env.pop("FLOWCORE_DEMO_COMMAND", None)
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        list(command),
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        cwd=cwd,
        env=env,
    )


def resume_command(output: str) -> str:
    """The command the demo printed to continue its claim."""
    found = re.search(
        r"^Continue it later, from any process started (?:.*?), with: (.*)$", output, re.M
    )
    assert found is not None, output
    return found.group(1)


async def test_scripted_claim_goes_back_then_to_human_review(runner: FlowRunner) -> None:
    lines: list[str] = []
    started = time.perf_counter()
    transcript = await play(runner, SCRIPTED_ANSWERS, out=lines.append)
    assert time.perf_counter() - started < 1.0

    assert transcript.path == [
        "intake",
        "classify",
        "gather_details",
        "confirm",
        "GoBack",
        "gather_details",
        "confirm",
        "checks",
        "human_review",
        "summary",
        "Completed",
    ]
    steps = {step.number: step for step in transcript.steps}
    assert steps[2].ran == ["intake", "classify"]  # ContinueAndExecute: one step
    assert steps[2].status == ExecutionStatus.Paused(
        "gather_details", "Task completed, continuing to next task"
    )
    assert steps[4].sent == {"amount": "about twelve hundred"}  # not a number: asked again
    assert steps[4].status == ExecutionStatus.WaitingForInput
    assert steps[4].response is not None
    assert steps[4].response.startswith("Sorry")
    assert steps[7].sent == {"confirmation": "change"}
    assert steps[7].status == WENT_BACK
    assert steps[11].ran == ["confirm", "checks", "human_review"]
    assert steps[11].status == ExecutionStatus.WaitingForInput
    assert transcript.steps[-1].status == ExecutionStatus.Completed

    stored = await runner.storage.get(transcript.session_id)
    assert stored is not None
    assert stored.is_completed
    ctx = stored.context
    assert ctx.get("claim_type") == "auto"
    assert ctx.get("amount") == Decimal("2400.00")
    assert ctx.get("outcome") == "approved"
    assert ctx.get("checks.fraud_check.status") == "passed"
    assert ctx.get("checks.coverage_check.status") == "passed"
    summary = ctx.get("summary")
    assert "auto claim" in summary
    assert "$2,400.00" in summary
    assert "approved" in summary
    assert transcript.steps[-1].response == summary
    roles = [m.role.value for m in ctx.get_chat_history()]
    assert roles[:2] == ["assistant", "user"]
    assert "system" in roles

    output = "\n".join(lines)
    assert "Waiting for input" in output
    assert "Paused → confirm" in output
    assert f"Summary: {summary[:40]}" in output
    # A completed session runs nothing more.
    assert await runner.run(transcript.session_id) == ExecutionResult(
        None, ExecutionStatus.Completed
    )


async def test_each_step_is_told_by_its_result_with_one_load_per_step(runner: FlowRunner) -> None:
    loads = 0
    storage = runner.storage
    real_get = storage.get

    async def get(session_id: str):  # counts the loads of the demo and of runner.run alike
        nonlocal loads
        loads += 1
        return await real_get(session_id)

    storage.get = get  # type: ignore[method-assign]
    lines: list[str] = []
    transcript = await play(runner, SCRIPTED_ANSWERS, out=lines.append)

    # runner.run loads the session once per step; the demo twice in all (is it waiting at a
    # question? how did it end?), never to see what a step did.
    assert loads == len(transcript.steps) + 2
    chain = transcript.steps[10]
    assert [(r.task_id, r.next_action) for r in chain.tasks] == [
        ("confirm", NextAction.ContinueAndExecute),
        ("checks", NextAction.ContinueAndExecute),
        ("human_review", NextAction.WaitForInput),
    ]
    assert [step.version for step in transcript.steps] == list(range(2, 15))
    output = "\n".join(lines)
    # Every task of a chain is shown with its answer, not only the last one.
    assert "confirm       ContinueAndExecute  Thank you. Running the fraud and coverage" in output
    assert "checks        ContinueAndExecute  FanOutTask 'checks' completed 2 child task(s)" in (
        output
    )
    assert "saved:  version 12" in output


async def test_small_claim_is_approved_automatically(runner: FlowRunner) -> None:
    transcript = await play(runner, SMALL_CLAIM_ANSWERS, out=lambda line: None)

    assert transcript.completed
    assert "auto_approve" in transcript.path
    assert "human_review" not in transcript.path
    assert "GoBack" not in transcript.path
    assert transcript.path[-2:] == ["summary", "Completed"]
    assert transcript.session is not None
    summary = transcript.session.context.get("summary")
    assert "travel claim" in summary
    assert "$320.50" in summary
    assert "automatically" in summary


async def test_running_out_of_answers_leaves_the_session_waiting(runner: FlowRunner) -> None:
    transcript = await play(runner, SCRIPTED_ANSWERS[:2], out=lambda line: None)

    assert not transcript.completed
    assert transcript.steps[-1].status == ExecutionStatus.WaitingForInput
    stored = await runner.storage.get(transcript.session_id)
    assert stored is not None
    assert stored.current_task_id == "gather_details"


@pytest.mark.parametrize(
    ("typed", "amount"),
    [("450", "450.00"), ("$2,400", "2400.00"), (" 1,250.5 ", "1250.50"), (99, "99.00")],
)
def test_amounts_people_type(typed: object, amount: str) -> None:
    assert parse_amount(typed) == Decimal(amount)


@pytest.mark.parametrize("typed", ["lots", "", "-5", "0", "nan", "1e9", "inf", None, True])
def test_amounts_that_are_asked_again(typed: object) -> None:
    with pytest.raises(ValueError, match=r"."):
        parse_amount(typed)


def test_an_unknown_storage_is_a_message_not_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--storage", "nosuch://x"]) == 2
    assert "No storage backend for scheme 'nosuch'" in capsys.readouterr().err


def test_the_default_mode_plays_the_scripted_claim_across_two_processes(
    tmp_path: Path,
) -> None:
    done = run_demo(cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    first, second = done.stdout.split("This process stops here")
    assert "Stopped after 6 steps" in first
    assert "Continuing session" in second  # the new process found the claim in storage
    assert "Paused → gather_details  (Task requested to go back" in second
    assert "claims handler> approve" in second
    assert "Completed in 13 steps." in second
    assert "Summary: Your auto claim for $2,400.00 was approved by a claims handler" in second
    assert (tmp_path / ".flowcore" / "demo.db").is_file()


def test_a_claim_stopped_half_way_resumes_where_it_was(tmp_path: Path) -> None:
    first = run_demo("--session", "claim-1", "--stop-after", "4", cwd=tmp_path)

    assert first.returncode == 0, first.stderr
    assert "Stopped after 4 steps; session 'claim-1' waits at task 'gather_details'" in first.stdout
    command = resume_command(first.stdout)
    assert command.endswith(f"{DEMO} --session claim-1")  # from here, the script's path

    second = run(shlex.split(command), cwd=tmp_path)

    assert second.returncode == 0, second.stderr
    assert "Continuing session 'claim-1' at task 'gather_details'" in second.stdout
    assert "step 1 " not in second.stdout  # numbered on from the steps already stored
    assert "step 5  runner.run(session_id, context_updates={'amount': '450'})" in second.stdout
    assert "Completed in 13 steps." in second.stdout

    again = run_demo("--session", "claim-1", cwd=tmp_path)
    assert "Session 'claim-1' is already completed." in again.stdout
    assert "Completed in 13 steps." in again.stdout
    assert re.search(r"^step \d", again.stdout, re.MULTILINE) is None  # nothing ran


def test_an_interactive_claim_continues_in_another_process(tmp_path: Path) -> None:
    first = run_demo(
        "--interactive", "--session", "mine", stdin="My suitcase never arrived.\n", cwd=tmp_path
    )
    assert "Stopped after 3 steps; session 'mine' waits at task 'gather_details'" in first.stdout
    command = resume_command(first.stdout)
    assert command.endswith("--interactive --session mine")

    second = run(shlex.split(command), stdin="320\nconfirm\n", cwd=tmp_path)

    assert second.returncode == 0, second.stderr
    assert "Continuing session 'mine' at task 'gather_details'" in second.stdout
    assert "Summary: Your travel claim for $320.00 was approved automatically" in second.stdout


BIN = Path(sys.executable).parent
"""Where the flowcore command is installed, beside the Python running the tests."""


def flowcore_command() -> str:
    found = shutil.which("flowcore", path=str(BIN))
    assert found is not None, f"the flowcore command is not installed in {BIN}"
    return found


def path_without(directory: Path) -> str:
    entries = os.environ.get("PATH", "").split(os.pathsep)
    return os.pathsep.join(e for e in entries if e and Path(e).resolve() != directory.resolve())


@pytest.mark.parametrize("on_path", [True, False], ids=["on-PATH", "by-path"])
def test_flowcore_demo_outside_the_checkout_prints_a_command_that_continues_the_claim(
    tmp_path: Path, on_path: bool
) -> None:
    path = os.pathsep.join([str(BIN), path_without(BIN)]) if on_path else path_without(BIN)
    started = [flowcore_command(), "demo", "--session", "claim-1", "--stop-after", "4"]

    first = run(started, cwd=tmp_path, path=path)

    assert first.returncode == 0, first.stderr
    command = resume_command(first.stdout)
    typed = "flowcore" if on_path else shlex.quote(flowcore_command())
    assert command == f"{typed} demo --session claim-1"
    second = run(shlex.split(command), cwd=tmp_path, path=path)
    assert second.returncode == 0, second.stderr
    assert "Continuing session 'claim-1' at task 'gather_details'" in second.stdout
    assert "Completed in 13 steps." in second.stdout
    assert f"Now play it yourself: {typed} demo --interactive" in second.stdout


def test_python_m_flowcore_demo_prints_python_m_flowcore_to_continue(tmp_path: Path) -> None:
    started = [sys.executable, "-m", "flowcore", "demo", "--session", "c-2", "--stop-after", "2"]

    first = run(started, cwd=tmp_path, path=path_without(BIN))

    command = resume_command(first.stdout)
    assert command == f"{shlex.quote(sys.executable)} -m flowcore demo --session c-2"
    assert "Completed in 13 steps." in run(shlex.split(command), cwd=tmp_path).stdout


@pytest.mark.parametrize("storage", ["memory://", "sqlite:///:memory:"])
def test_a_storage_that_forgets_is_said_to_and_no_command_is_printed(
    tmp_path: Path, storage: str
) -> None:
    done = run_demo("--storage", storage, "--stop-after", "4", cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert f"{storage} forgets it when the demo exits" in done.stdout
    assert "Continue it later" not in done.stdout
    assert "This process stops here" not in done.stdout


def test_with_memory_storage_the_claim_stays_in_one_process(tmp_path: Path) -> None:
    done = run_demo("--storage", "memory://", cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert "This process stops here" not in done.stdout
    assert "Completed in 13 steps." in done.stdout
    assert not (tmp_path / ".flowcore").exists()


def test_interactive_mode_reads_answers_from_stdin(tmp_path: Path) -> None:
    answers = [
        "The storm damaged the roof of my house.",
        "a lot",  # re-asked, no traceback
        "7,500",
        "change",
        "750",
        "confirm",
    ]
    done = run_demo("--interactive", stdin="\n".join(answers) + "\n", cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert "Sorry, I can't read 'a lot' as an amount" in done.stdout
    assert "instead of $7,500.00?" in done.stdout
    assert "Summary: Your home claim for $750.00 was approved automatically" in done.stdout


@pytest.mark.parametrize("ending", ["", "quit\n"], ids=["eof", "quit"])
def test_interactive_mode_stops_cleanly(ending: str, tmp_path: Path) -> None:
    done = run_demo("--interactive", stdin="My suitcase never arrived.\n" + ending, cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "Stopped after 3 steps" in done.stdout
    assert "waits at task 'gather_details'" in done.stdout


def test_the_demo_module_documents_its_graph() -> None:
    graph = build_graph()
    assert graph.start_task_id == "intake"
    assert "yes: small_and_clean" in graph.to_mermaid()
    assert set(claim_demo.QUESTIONS) <= set(graph.task_ids)
