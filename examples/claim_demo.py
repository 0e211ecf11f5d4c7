"""An insurance claim, one step at a time: the flowcore demo.

    python examples/claim_demo.py                  # a scripted claim (what `make demo` runs)
    python examples/claim_demo.py --stop-after 5   # stop half way: the claim stays stored
    python examples/claim_demo.py --session ID     # continue a stored claim where it stopped
    python examples/claim_demo.py --interactive    # you play the claimant and the claims handler
    python examples/claim_demo.py --interactive --session ID   # continue a claim yourself
    python examples/claim_demo.py --storage URL    # another backend, e.g. memory:// or postgresql://...
    python examples/claim_demo.py --mermaid        # print the workflow as a Mermaid chart

Sessions are kept in SQLite, in ``.flowcore/demo.db`` under the current directory (created if
missing), so a claim outlives the process that started it: any later run can take its next step.

The workflow is a graph of tasks. Each call of ``await runner.run(session_id, context_updates=...)``
loads the claim's session from storage, runs its current task (and any task chained to it with
ContinueAndExecute), picks the next task by the graph's edges and saves the session again. Between
calls nothing is kept in memory: a web handler or a chat bot would make one call per request.

    intake → classify → gather_details → confirm → checks (fraud ∥ coverage, concurrently)
    checks → auto_approve if the amount is under $1,000 and both checks passed, else human_review
    auto_approve, human_review → summary
    confirm → back to gather_details (GoBack) when the claimant answers "change"

The application answers a question (a WaitingForInput step) by setting one context key in the next
run: ``description``, ``amount``, ``confirmation`` or ``decision`` (see ``QUESTIONS``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from flowcore import (
    Context,
    ExecutionStatus,
    FanOutTask,
    FlowRunner,
    Graph,
    GraphBuilder,
    GraphError,
    MessageRole,
    NextAction,
    Session,
    SessionNotFound,
    SessionStorage,
    StorageError,
    Task,
    TaskRecord,
    TaskResult,
    open_storage,
    task,
)

__all__ = [
    "AUTO_APPROVE_LIMIT",
    "DEFAULT_STORAGE",
    "QUESTIONS",
    "SCRIPTED_ANSWERS",
    "SMALL_CLAIM_ANSWERS",
    "Step",
    "Transcript",
    "answers_given",
    "build_graph",
    "drive",
    "main",
    "play",
]

GRAPH_ID = "insurance-claim"
DEFAULT_STORAGE = "sqlite:///.flowcore/demo.db?create_dirs=true"
"""Where the demo keeps its sessions: a SQLite file that outlives the process."""
AUTO_APPROVE_LIMIT = Decimal("1000")
"""Claims under this amount whose checks pass are approved without a person looking at them."""
MAX_AMOUNT = Decimal("1000000")
COVERAGE_LIMITS = {
    "auto": Decimal("5000"),
    "home": Decimal("20000"),
    "travel": Decimal("3000"),
    "general": Decimal("2000"),
}
KEYWORDS = {
    "auto": (
        "car", "vehicle", "bumper", "crash", "collision", "rear-ended", "windshield",
        "windscreen", "tyre", "tire", "parked", "motorbike", "truck", "traffic",
    ),
    "home": (
        "house", "home", "roof", "flood", "leak", "pipe", "kitchen", "basement", "burglar",
        "break-in", "fire", "storm", "ceiling", "apartment", "garden",
    ),
    "travel": (
        "flight", "luggage", "baggage", "suitcase", "trip", "hotel", "cancel", "delay",
        "passport", "holiday", "vacation", "airport", "airline",
    ),
}  # fmt: skip

# Which context key answers the question a waiting task asked, and who is asked.
QUESTIONS: dict[str, tuple[str, str]] = {
    "intake": ("description", "you"),
    "gather_details": ("amount", "you"),
    "confirm": ("confirmation", "you"),
    "human_review": ("decision", "claims handler"),
}

SCRIPTED_ANSWERS = (
    "My car was rear-ended at a red light and the rear bumper is cracked.",
    "about twelve hundred",  # not a number: gather_details asks again
    "450",
    "change",  # confirm goes back to gather_details
    "$2,400",  # above the auto-approval limit: a person reviews it
    "confirm",
    "approve",  # the claims handler's decision
)
SMALL_CLAIM_ANSWERS = (
    "Our flight was cancelled and the airline lost my suitcase.",
    "320.50",
    "confirm",
)


def money(amount: Decimal) -> str:
    return f"${amount:,.2f}"


def parse_amount(raw: object) -> Decimal:
    """A positive amount of dollars from what the claimant typed; ValueError says what is wrong."""
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float, Decimal)):
        raise ValueError(f"an amount must be a number, got {type(raw).__name__}")
    text = str(raw).strip()
    try:
        value = Decimal(text.lower().removeprefix("usd").strip().lstrip("$").replace(",", ""))
    except InvalidOperation:
        raise ValueError(f"I can't read {text!r} as an amount") from None
    if not value.is_finite() or value < Decimal("0.01"):
        raise ValueError(f"{text!r} is not an amount I can pay out")
    if value > MAX_AMOUNT:
        raise ValueError(f"claims above {money(MAX_AMOUNT)} are handled by phone")
    return value.quantize(Decimal("0.01"))


# -- the tasks ---------------------------------------------------------------------------------
# Every task reads and writes the session's Context. A question is a TaskResult whose response is
# the question and whose next_action is WaitForInput; the answer arrives as a context key in the
# next run, and the same task runs again to read it.


def ask_claimant(ctx: Context, question: str) -> TaskResult:
    ctx.add_assistant_message(question)
    return TaskResult(question, NextAction.WaitForInput, "waiting for the claimant")


class Intake(Task):
    """Greets the claimant and records what happened, then classifies it at once."""

    id = "intake"

    def run(self, ctx: Context) -> TaskResult:
        description = ctx.get("description")
        if not isinstance(description, str) or not description.strip():
            ctx.remove("description")
            if ctx.chat_history_len() == 0:
                return ask_claimant(
                    ctx,
                    "Hello! I'm the claims assistant and I'll help you file a claim. "
                    "In a sentence or two, what happened?",
                )
            return ask_claimant(ctx, "Please tell me in a few words what happened.")
        ctx.add_user_message(description)
        ctx.set("description", description.strip())
        # ContinueAndExecute: classify runs in this same step, with no round trip.
        return TaskResult.move_to_next_direct()


@task("classify")
def classify(ctx: Context) -> TaskResult:
    """Picks the kind of claim from keywords in the description."""
    text = ctx.get("description", "").lower()
    hits = {
        kind: [word for word in words if re.search(rf"\b{re.escape(word)}", text)]
        for kind, words in KEYWORDS.items()
    }
    kind = max(hits, key=lambda k: len(hits[k]))
    if not hits[kind]:
        kind = "general"
        reply = "I'll file this as a general claim."
    else:
        reply = (
            f"This looks like {article(kind)} {kind} claim (I noticed: {', '.join(hits[kind])})."
        )
    ctx.set("claim_type", kind)
    ctx.add_assistant_message(reply)
    return TaskResult(reply, NextAction.Continue)


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


class GatherDetails(Task):
    """Asks for the amount until it gets one it can read."""

    id = "gather_details"

    def run(self, ctx: Context) -> TaskResult:
        if "amount" not in ctx:
            previous = ctx.get("previous_amount")
            if previous is not None:
                return ask_claimant(
                    ctx, f"What amount should I put down instead of {money(previous)}?"
                )
            return ask_claimant(
                ctx, "How much are you claiming, in dollars? (e.g. 1250 or 1,250.50)"
            )
        raw = ctx.remove("amount")
        ctx.add_user_message(str(raw))
        try:
            amount = parse_amount(raw)
        except ValueError as problem:
            return ask_claimant(
                ctx, f"Sorry, {problem}. Please type a number of dollars, e.g. 1250 or 1,250.50."
            )
        ctx.set("amount", amount)
        reply = f"Noted: {money(amount)}."
        ctx.add_assistant_message(reply)
        return TaskResult(reply, NextAction.Continue)


class Confirm(Task):
    """Shows the amount; "change" goes back to gather_details, "confirm" runs the checks."""

    id = "confirm"

    def run(self, ctx: Context) -> TaskResult:
        amount: Decimal = ctx.get("amount")
        if "confirmation" not in ctx:
            return ask_claimant(
                ctx,
                f"You are claiming {money(amount)} for {article(ctx.get('claim_type'))} "
                f"{ctx.get('claim_type')} claim. Type 'confirm' to submit it or 'change' "
                "to change the amount.",
            )
        answer = str(ctx.remove("confirmation"))
        ctx.add_user_message(answer)
        match answer.strip().lower():
            case "confirm" | "yes" | "y" | "ok":
                reply = "Thank you. Running the fraud and coverage checks..."
                ctx.add_assistant_message(reply)
                return TaskResult(reply, NextAction.ContinueAndExecute)
            case "change" | "no" | "n":
                ctx.set("previous_amount", ctx.remove("amount"))
                reply = "No problem, let's change your answer."
                ctx.add_assistant_message(reply)
                # GoBack: the session returns to the task it came from, gather_details.
                return TaskResult(reply, NextAction.GoBack)
            case _:
                return ask_claimant(ctx, "Please type 'confirm' or 'change'.")


@task("fraud_check")
async def fraud_check(ctx: Context) -> TaskResult:
    """A stand-in for a call to a fraud-scoring service."""
    await asyncio.sleep(0.05)
    amount: Decimal = ctx.get("amount")
    if "cash" in ctx.get("description", "").lower() or amount > Decimal("10000"):
        return TaskResult("flagged for a closer look", status_message="flagged")
    return TaskResult("no fraud signals", status_message="passed")


class CoverageCheck(Task):
    """A stand-in for a look-up in the policy system."""

    id = "coverage_check"

    async def run(self, ctx: Context) -> TaskResult:
        await asyncio.sleep(0.05)
        amount: Decimal = ctx.get("amount")
        kind = ctx.get("claim_type")
        limit = COVERAGE_LIMITS[kind]
        if amount <= limit:
            return TaskResult(f"within the {money(limit)} {kind} limit", status_message="passed")
        return TaskResult(f"above the {money(limit)} {kind} limit", status_message="flagged")


# The fan-out writes each check's result into the context as checks.<child id>.response/.status.
checks = FanOutTask(
    "checks",
    [fraud_check, CoverageCheck()],
    prefix="checks",
    next_action=NextAction.ContinueAndExecute,
)


def check_results(ctx: Context) -> str:
    return "; ".join(
        f"{name}: {ctx.get(f'checks.{child}.response')}"
        for name, child in (("fraud", "fraud_check"), ("coverage", "coverage_check"))
    )


def small_and_clean(ctx: Context) -> bool:
    """The edge after the checks: small claims that pass both checks need no person."""
    return ctx.get("amount") < AUTO_APPROVE_LIMIT and all(
        ctx.get(f"checks.{child}.status") == "passed" for child in ("fraud_check", "coverage_check")
    )


@task("auto_approve")
def auto_approve(ctx: Context) -> TaskResult:
    ctx.set("outcome", "approved")
    ctx.set("decided_by", "automatically")
    reply = f"Good news: your claim is approved automatically ({check_results(ctx)})."
    ctx.add_assistant_message(reply)
    return TaskResult(reply, NextAction.Continue)


class HumanReview(Task):
    """Waits for a claims handler's decision: approve or reject."""

    id = "human_review"

    async def run(self, ctx: Context) -> TaskResult:
        if "decision" not in ctx:
            reason = (
                f"{money(ctx.get('amount'))} is not under the {money(AUTO_APPROVE_LIMIT)} "
                "auto-approval limit"
                if ctx.get("amount") >= AUTO_APPROVE_LIMIT
                else "a check flagged it"
            )
            question = (
                f"A claims handler reviews this claim: {reason} ({check_results(ctx)}). "
                "Claims handler: 'approve' or 'reject'?"
            )
            ctx.add_assistant_message(question)
            return TaskResult(question, NextAction.WaitForInput, "waiting for a claims handler")
        decision = str(ctx.remove("decision")).strip().lower()
        if decision not in ("approve", "reject"):
            return TaskResult(
                "Claims handler: please type 'approve' or 'reject'.",
                NextAction.WaitForInput,
                "waiting for a claims handler",
            )
        ctx.add_system_message(f"Claims handler decision: {decision}")
        ctx.set("outcome", "approved" if decision == "approve" else "rejected")
        ctx.set("decided_by", "by a claims handler")
        return TaskResult(f"The claims handler decided: {decision}.", NextAction.Continue)


@task("summary")
async def summary(ctx: Context) -> TaskResult:
    text = (
        f"Your {ctx.get('claim_type')} claim for {money(ctx.get('amount'))} was "
        f"{ctx.get('outcome')} {ctx.get('decided_by')}. ({check_results(ctx)})"
    )
    ctx.set("summary", text)
    ctx.add_assistant_message(text)
    return TaskResult(text, NextAction.End, "claim closed")


def build_graph() -> Graph:
    """The claim workflow: the first task added (intake) is where a session starts."""
    return (
        GraphBuilder(GRAPH_ID, task_timeout=30.0)
        .add_task(Intake())
        .add_task(classify)
        .add_task(GatherDetails())
        .add_task(Confirm())
        .add_task(checks)
        .add_task(auto_approve)
        .add_task(HumanReview())
        .add_task(summary)
        .add_edge("intake", "classify")
        .add_edge("classify", "gather_details")
        .add_edge("gather_details", "confirm")
        .add_edge("confirm", "checks")
        .add_conditional_edge("checks", small_and_clean, "auto_approve", "human_review")
        .add_edge("auto_approve", "summary")
        .add_edge("human_review", "summary")
        .build()
    )


# -- driving a session -------------------------------------------------------------------------


@dataclass
class Step:
    """One ``runner.run`` call as the demo saw it, read from the ExecutionResult it returned."""

    number: int
    sent: dict[str, Any]  # the context_updates of the call
    tasks: tuple[TaskRecord, ...]  # what each task that ran did, in order (result.tasks)
    response: str | None
    status: ExecutionStatus
    version: int  # the session's stored version after the step (result.version)

    @property
    def ran(self) -> list[str]:
        """The ids of the tasks that ran, in order."""
        return [record.task_id for record in self.tasks]

    @property
    def last_action(self) -> NextAction | None:
        """What the last task that ran asked for next."""
        return self.tasks[-1].next_action if self.tasks else None


@dataclass
class Transcript:
    """What :func:`drive` did: every step, and the session as stored at the end."""

    session_id: str
    steps: list[Step] = field(default_factory=list)
    session: Session | None = None

    @property
    def completed(self) -> bool:
        return self.session is not None and self.session.is_completed

    @property
    def path(self) -> list[str]:
        """The tasks that ran, with ``GoBack`` where the session went back and ``Completed``."""
        out: list[str] = []
        for step in self.steps:
            for task_id in step.ran:
                if not out or out[-1] != task_id:  # a task asking again is one visit
                    out.append(task_id)
            if went_back(step):
                out.append("GoBack")
        if self.completed:
            out.append("Completed")
        return out


def went_back(step: Step) -> bool:
    """The step's last task asked to go back, and the session did (to the task before)."""
    match step.status:
        case ExecutionStatus.Paused():
            return step.last_action == NextAction.GoBack
    return False


def stuck(step: Step) -> bool:
    """The step's last task asked to go on, but no edge led anywhere: it is still current.

    (Running it again would do the same. In a graph with an edge from a task back to itself,
    staying put would be that edge; this graph has none.)
    """
    match step.status:
        case ExecutionStatus.Paused(next_task_id=next_id):
            action = step.last_action
            return (
                next_id == step.ran[-1]
                and action != NextAction.GoBack
                and not isinstance(action, NextAction.GoTo)
            )
    return False


Ask = Callable[[str, str, str | None], str | None]
"""``ask(key, who, question) -> answer`` (None: stop here)."""


async def drive(
    runner: FlowRunner,
    session_id: str,
    ask: Ask,
    out: Callable[[str], object] = print,
    *,
    max_steps: int = 200,
) -> Transcript:
    """Run the session step by step until it completes, fails, or ``ask`` gives no answer.

    Each step is told by the ExecutionResult that ``runner.run`` returns: which tasks ran and
    what each said (``tasks``), where the session is now (``current_task_id``) and its stored
    version (``version``). The session is loaded twice only: before the first step, to see
    whether it stopped at a question, and after the last, to show how it ended.
    """
    transcript = Transcript(session_id)
    stored = await runner.storage.get(session_id)
    if stored is None:
        raise SessionNotFound(session_id)
    updates: dict[str, Any] = {}
    if is_waiting(stored):  # stopped at a question (in this process or another): answer it
        history = stored.context.get_last_messages(1)
        question = history[0].content if history else None
        if question is not None:
            out(wrap(question, "        asked:    "))
        key, who = QUESTIONS[stored.current_task_id]
        answer = ask(key, who, question)
        if answer is None:
            transcript.session = stored
            return transcript
        updates = {key: answer}
    while len(transcript.steps) < max_steps:
        result = await runner.run(session_id, context_updates=updates)
        assert result.version is not None  # a step that ran was saved, at this version
        assert result.current_task_id is not None
        # Creating the session saved it once, and every step saves it once more: the step
        # that left it at version v is step v - 1, in whichever process took the others.
        step = Step(
            result.version - 1,
            updates,
            result.tasks,
            result.response,
            result.status,
            result.version,
        )
        transcript.steps.append(step)
        show_step(step, out)
        updates = {}
        match result.status:
            case ExecutionStatus.WaitingForInput:
                if len(transcript.steps) >= max_steps:
                    break  # the answer waits for the next run
                key, who = QUESTIONS[result.current_task_id]
                answer = ask(key, who, result.response)
                if answer is None:
                    break
                updates = {key: answer}
            case ExecutionStatus.Paused(next_task_id=next_id) if stuck(step):
                out(f"  (stopping: task {next_id!r} has nowhere to go)")
                break
            case ExecutionStatus.Paused():
                pass  # moved on: the next run runs the next task
            case _:  # Completed, or an Error reported by an error handler
                break
    transcript.session = await runner.storage.get(session_id)
    return transcript


def is_waiting(session: Session) -> bool:
    """Whether the session's last step asked a question that has not been answered yet."""
    return (
        session.current_task_id in QUESTIONS
        and session.status_message is not None
        and session.status_message.startswith("waiting for")
    )


def describe(step: Step) -> str:
    """The step's status, in words."""
    match step.status:
        case ExecutionStatus.Completed:
            return "Completed"
        case ExecutionStatus.WaitingForInput:
            return "Waiting for input"
        case ExecutionStatus.Paused(next_task_id=next_id, reason=reason):
            if went_back(step) or stuck(step) or isinstance(step.last_action, NextAction.GoTo):
                return f"Paused → {next_id}  ({reason})"
            return f"Paused → {next_id}"  # along an edge, to the next task
        case ExecutionStatus.Scheduled(next_task_id=next_id, wake_at=wake_at):
            return f"Scheduled → {next_id} at {wake_at:%Y-%m-%d %H:%M:%S %Z}"
        case ExecutionStatus.Error(message=message):
            return f"Error: {message}"
    return repr(step.status)


def show_step(step: Step, out: Callable[[str], object]) -> None:
    """The call, then each task that ran: what it asked for next and what it answered."""
    call = "runner.run(session_id"
    if step.sent:
        call += f", context_updates={shorten_dict(step.sent)}"
    out(f"\nstep {step.number:<2} {call})")
    width = max((len(task_id) for task_id in step.ran), default=0)
    actions = [str(record.next_action or "failed") for record in step.tasks]
    action_width = max(map(len, actions), default=0)
    for record, action in zip(step.tasks, actions, strict=True):
        head = f"        {record.task_id:<{width}}  {action:<{action_width}}  "
        out(wrap(record.response or "(no response)", head))
    out(f"        status: {describe(step)}")
    out(f"        saved:  version {step.version}")


def shorten_dict(values: Mapping[str, Any]) -> str:
    items = ", ".join(
        f"{k!r}: {textwrap.shorten(str(v), 32, placeholder='…')!r}" for k, v in values.items()
    )
    return "{" + items + "}"


def wrap(text: str, first: str, width: int = 100) -> str:
    return textwrap.fill(
        text,
        width,
        initial_indent=first,
        subsequent_indent=" " * len(first),
        break_on_hyphens=False,
    )


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def show_ending(transcript: Transcript, out: Callable[[str], object], *, chat: bool) -> None:
    session = transcript.session
    if session is None:
        return
    if chat:
        history = session.context.get_chat_history()
        out(f"\nChat history of session {session.id} ({len(history)} messages):")
        for message in history:
            out(wrap(message.content, f"  {message.role.value:>9}: "))
    taken = transcript.steps[-1].number if transcript.steps else session.version - 1
    if session.is_completed:
        out(f"\nCompleted in {plural(taken, 'step')}.")
        out(wrap(session.context.get("summary", ""), "Summary: "))
    else:
        out(
            f"\nStopped after {plural(taken, 'step')}; session {session.id!r} "
            f"waits at task '{session.current_task_id}'."
        )


def answers_given(session: Session) -> int:
    """How many answers a claim has had: the chat history keeps each one.

    The claimant's answers are user messages; the claims handler's decision is a system message.
    """
    return sum(
        message.role == MessageRole.USER or message.content.startswith("Claims handler decision")
        for message in session.context.get_chat_history()
    )


async def play(
    runner: FlowRunner,
    answers: Sequence[str] = SCRIPTED_ANSWERS,
    *,
    session_id: str | None = None,
    out: Callable[[str], object] = print,
    stop_after: int | None = None,
) -> Transcript:
    """Play a claim with canned answers, printing each step; return what happened.

    A stored ``session_id`` continues where it stopped, with the answers it has not had yet.
    ``stop_after`` stops after that many steps, leaving the claim stored.
    """
    stored = None if session_id is None else await runner.storage.get(session_id)
    if stored is None:
        session = await runner.create_session(session_id)
        canned = iter(answers)
    else:
        session = stored
        if session.is_completed:
            out(f"\nSession {session.id!r} is already completed.")
        else:
            out(f"\nContinuing session {session.id!r} at task '{session.current_task_id}'.")
        canned = iter(answers[answers_given(stored) :])

    def answer(key: str, who: str, question: str | None) -> str | None:
        reply = next(canned, None)
        if reply is not None:
            out(f"        {who}> {reply}")
        return reply

    if session.is_completed:
        transcript = Transcript(session.id, session=session)
    else:
        limit = 200 if stop_after is None else stop_after
        transcript = await drive(runner, session.id, answer, out, max_steps=limit)
    show_ending(transcript, out, chat=transcript.completed)
    return transcript


def read_answer(key: str, who: str, question: str | None) -> str | None:
    """Ask the person at the terminal; None on end of input, Ctrl-C or 'quit'."""
    # Under asyncio.run a first Ctrl-C only cancels the main task, which cannot notice while it
    # sits here in input(): let Ctrl-C interrupt input() itself.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        reply = input(f"        {who}> ")
    except (EOFError, KeyboardInterrupt):
        print()
        return None
    finally:
        signal.signal(signal.SIGINT, previous)
    if reply.strip().lower() in ("quit", "exit", "q"):
        return None
    return reply


# -- command line ------------------------------------------------------------------------------

INTRO = """\
flowcore demo: an insurance claim, one step at a time

Each step below is one `await runner.run(session_id, context_updates=...)` call: flowcore loads
the session from storage, runs the current task (and any task chained with ContinueAndExecute),
follows the graph's edges to the next task and saves the session. A task that needs an answer
returns WaitForInput; the answer goes into the next call's context_updates.

Each step is shown as the ExecutionResult it returned tells it: every task that ran (result.tasks:
what it asked for next and what it answered), the status, and the version saved (result.version)."""


def workflow_outline(graph: Graph) -> str:
    return "\n".join(
        [
            f"Workflow {graph.id!r}:",
            "  intake → classify → gather_details → confirm → checks (fraud ∥ coverage)",
            f"  checks → auto_approve   if the amount is under {money(AUTO_APPROVE_LIMIT)} "
            "and both checks passed",
            "         → human_review   otherwise",
            "  auto_approve, human_review → summary",
            "  confirm goes back to gather_details when the claimant answers 'change' (GoBack)",
        ]
    )


async def play_interactively(runner: FlowRunner, session_id: str, storage_url: str) -> int:
    """Let the person at the terminal answer; resume ``session_id`` if it is stored."""
    stored = await runner.storage.get(session_id)
    if stored is None:
        await runner.create_session(session_id)
    elif stored.is_completed:
        print(f"\nSession {session_id!r} is already completed.")
        print(wrap(stored.context.get("summary", ""), "Summary: "))
        return 0
    else:
        print(f"\nContinuing session {session_id!r} at task '{stored.current_task_id}'.")
    print(
        "\nYou play the claimant (and the claims handler, if the claim needs one)."
        "\nType your answer at each prompt; 'quit' or Ctrl-D leaves."
    )
    transcript = await drive(runner, session_id, read_answer)
    show_ending(transcript, print, chat=False)
    if not transcript.completed:
        print(how_to_continue(runner.storage, storage_url, session_id, "--interactive"))
    return 0


def how_to_continue(storage: SessionStorage, storage_url: str, session_id: str, *flags: str) -> str:
    """The command that takes the next step of a stored claim, in another process."""
    if not storage.persistent:
        return (
            f"{storage_url} forgets it when the demo exits; with the default storage, a SQLite "
            "file, you could continue it later with --session."
        )
    where = "in this directory" if is_relative_file(storage_url) else "anywhere"
    command = resume_command(storage_url, session_id, *flags)
    return f"Continue it later, from any process started {where}, with: {command}"


DEMO_COMMAND_ENV = "FLOWCORE_DEMO_COMMAND"
"""Set by ``flowcore demo``: the command that started the demo, as the user can type it again."""


def demo_command() -> str:
    """The command that runs this demo again, typed in the current directory: ``flowcore demo``
    when that is how it started, else this Python and this script."""
    return os.environ.get(DEMO_COMMAND_ENV) or " ".join(
        [shell_path(sys.executable, command=True), shell_path(__file__)]
    )


def how_to_play() -> str:
    """The command that starts an interactive claim, from the current directory."""
    command = f"{demo_command()} --interactive"
    in_checkout = os.path.isfile("Makefile") and os.path.isfile(CHECKOUT_DEMO)
    if in_checkout and os.path.samefile(CHECKOUT_DEMO, __file__):
        return f"make demo-interactive (or: {command})"  # the Makefile knows the environment
    return command


CHECKOUT_DEMO = os.path.join("examples", "claim_demo.py")


def resume_command(storage_url: str, session_id: str, *flags: str) -> str:
    """The command that continues ``session_id`` from the current directory."""
    command = [demo_command(), *flags]
    if storage_url != DEFAULT_STORAGE:
        command += ["--storage", shlex.quote(storage_url)]
    return " ".join([*command, "--session", shlex.quote(session_id)])


def shell_path(path: str, *, command: bool = False) -> str:
    """``path`` as the user would type it here: relative below the current directory, else
    absolute. A command that is the one on PATH under its name is just its name."""
    path = os.path.abspath(path)
    name = os.path.basename(path)
    on_path = shutil.which(name)
    if command and on_path is not None and os.path.abspath(on_path) == path:
        return name
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive
        relative = os.pardir
    if not relative.startswith(os.pardir):
        path = relative if os.sep in relative or not command else os.path.join(os.curdir, relative)
    return shlex.quote(path)


HANDOFF_AFTER = 6
"""In the default show, this process takes the first steps; a new process takes the rest."""


async def amain(args: argparse.Namespace) -> int:
    graph = build_graph()
    if args.mermaid:
        print(graph.to_mermaid(), end="")
        return 0
    try:
        storage = open_storage(args.storage)
    except (StorageError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    session_id = args.session or f"claim-{uuid.uuid4().hex[:8]}"
    # The default show: half the claim here, the rest in a new process, through storage.
    hand_off = not (args.interactive or args.session or args.stop_after or not storage.persistent)
    async with storage:
        runner = FlowRunner(graph, storage)
        if not args.continued:
            print(INTRO)
            print(f"\n{workflow_outline(graph)}")
            print(f"\nStorage: {args.storage}   Session: {session_id}")
        if args.interactive:
            return await play_interactively(runner, session_id, args.storage)
        stop_after = HANDOFF_AFTER if hand_off else args.stop_after
        transcript = await play(
            runner, SCRIPTED_ANSWERS, session_id=session_id, stop_after=stop_after
        )
    if transcript.completed:
        print(f"\nNow play it yourself: {how_to_play()}")
    elif hand_off:
        return continue_in_new_process(args.storage, session_id)
    else:
        print(how_to_continue(storage, args.storage, session_id))
    return 0


def sqlite_file(storage_url: str) -> str | None:
    """The file of a ``sqlite:///path`` URL; None for another scheme or an in-memory database."""
    parts = urlsplit(storage_url)
    path = parts.path[1:]  # sqlite:///relative.db and sqlite:////absolute.db
    if parts.scheme.split("+")[0] != "sqlite" or path in ("", ":memory:"):
        return None
    return path


def is_relative_file(storage_url: str) -> bool:
    path = sqlite_file(storage_url)
    return path is not None and not os.path.isabs(path)


def continue_in_new_process(storage_url: str, session_id: str) -> int:
    """Run the demo again, in a new process, on the stored claim: nothing else carries over."""
    command = [sys.executable, os.path.abspath(__file__), "--session", session_id]
    if storage_url != DEFAULT_STORAGE:
        command += ["--storage", storage_url]
    print(
        "\n-- This process stops here, and forgets the claim. A new one takes it up from "
        f"storage:\n-- {resume_command(storage_url, session_id)}"
    )
    sys.stdout.flush()
    return subprocess.run([*command, "--continued"], check=False).returncode


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run an insurance-claim workflow with flowcore, one step at a time."
    )
    parser.add_argument("--interactive", action="store_true", help="answer the questions yourself")
    parser.add_argument(
        "--storage",
        default=DEFAULT_STORAGE,
        metavar="URL",
        help=f"where sessions are kept (default: {DEFAULT_STORAGE}; e.g. memory://)",
    )
    parser.add_argument(
        "--session",
        metavar="ID",
        help="the session id to use; a stored claim continues where it stopped",
    )
    parser.add_argument(
        "--stop-after",
        type=positive_int,
        metavar="N",
        help="stop the scripted claim after N steps (continue it later with --session)",
    )
    parser.add_argument("--continued", action="store_true", help=argparse.SUPPRESS)  # no intro
    parser.add_argument(
        "--mermaid", action="store_true", help="print the workflow as a Mermaid chart and exit"
    )
    args = parser.parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="replace")  # arrows on a terminal that cannot show them
    try:
        return asyncio.run(amain(args))
    except KeyboardInterrupt:
        print("\nInterrupted.")
        return 130
    except GraphError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the output was piped into e.g. `head`, which has had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
