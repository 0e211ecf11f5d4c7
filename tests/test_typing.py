"""A type checker sees flowcore's types from an application's own code, outside the checkout, and
narrows them in match statements."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def mypy(app: Path, *options: str) -> str:
    """What ``mypy --strict`` reports on ``app``, run in its directory as an application would."""
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--strict", *options, str(app)],
        cwd=app.parent,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return checked.stdout + checked.stderr


def test_mypy_reads_flowcore_and_its_plugins_where_they_are_installed(tmp_path: Path) -> None:
    # As installed by `make` (editable): an import hook that mypy cannot follow would leave
    # both names untyped (Any), and the mistakes below would go unseen.
    app = tmp_path / "app.py"
    app.write_text(
        "from flowcore import quote_id\n"
        "from flowcore_sql import SqliteSessionStorage\n"
        "\n"
        "count: int = quote_id('claim-1')\n"
        "storage: int = SqliteSessionStorage(':memory:')\n"
    )
    report = mypy(app)
    assert "Cannot find implementation or library stub" not in report, report
    assert 'app.py:4: error: Incompatible types in assignment (expression has type "str"' in report
    assert "app.py:5: error: Incompatible types in assignment" in report


MATCHES = """\
from datetime import datetime, timedelta

from typing_extensions import assert_type

from flowcore import ErrorDecision, ExecutionStatus, NextAction


def status_text(status: ExecutionStatus) -> str:
    match status:
        case ExecutionStatus.Completed | ExecutionStatus.WaitingForInput:
            assert_type(status, ExecutionStatus)
            return status.name
        case ExecutionStatus.Paused(next_task_id, reason):
            assert_type(next_task_id, str)
            assert_type(reason, str)
            return reason
        case ExecutionStatus.Error(message):
            assert_type(message, str)
            return message
        case ExecutionStatus.Scheduled(next_task_id, wake_at):
            assert_type(next_task_id, str)
            assert_type(wake_at, datetime)
            return wake_at.isoformat()
    return status.name


def action_text(action: NextAction) -> str:
    match action:
        case NextAction.Continue | NextAction.End | NextAction.GoBack:
            assert_type(action, NextAction)
        case NextAction.GoTo(task_id):
            assert_type(task_id, str)
            return task_id
        case NextAction.WaitUntil(when):
            assert_type(when, datetime | timedelta)
            return str(when)
    return action.name


def decision_text(decision: ErrorDecision) -> str:
    match decision:
        case ErrorDecision.Retry(delay):
            assert_type(delay, float)
        case ErrorDecision.Route(next_action):
            assert_type(next_action, NextAction)
        case ErrorDecision.Report(message):
            assert_type(message, str | None)
        case ErrorDecision.Raise:
            assert_type(decision, ErrorDecision)
    return repr(decision)


def mistaken(status: ExecutionStatus) -> None:
    match status:
        case ExecutionStatus.Paused(next_task_id, _):
            assert_type(next_task_id, int)
"""


def test_match_narrows_statuses_actions_and_decisions(tmp_path: Path) -> None:
    # The statuses, actions and decisions are open classes, not enums: mypy cannot prove a match
    # exhaustive, but each class pattern must narrow the value and type what it binds. With
    # --warn-unreachable, a pattern mypy wrongly took for unreachable would be reported too.
    app = tmp_path / "matches.py"
    app.write_text(MATCHES)
    report = mypy(app, "--warn-unreachable")
    mistake = MATCHES.splitlines().index("            assert_type(next_task_id, int)") + 1
    errors = [line for line in report.splitlines() if ": error:" in line]
    assert errors == [
        f'matches.py:{mistake}: error: Expression is of type "str", not "int"  [assert-type]'
    ], report
