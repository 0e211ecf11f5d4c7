"""The web-service example (examples/web_service.py), end to end: a real uvicorn server on
127.0.0.1 and a real HTTP client, on SQLite and on PostgreSQL.

One server runs per storage for the whole module. PostgreSQL is the local server; the tests
on it are skipped when it does not answer, unless FLOWCORE_REQUIRE_SERVICES is set (as CI sets
it), which makes that a failure. The tests of slow and too many clients start servers of their
own, with short timeouts and few file descriptors, and speak HTTP over plain sockets where a
client library would not misbehave as they need.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import select
import selectors
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from flowcore import Session, open_storage

ROOT = Path(__file__).resolve().parent.parent
SERVICE = ROOT / "examples" / "web_service.py"
POSTGRES_URL = os.environ.get(
    "FLOWCORE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


@dataclass
class Server:
    """The example, running: its base URL, its log, its process, and the sessions the tests made."""

    url: str
    storage: str
    log: Path
    process: subprocess.Popen[bytes]
    created: list[str] = field(default_factory=list)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10)

    def new_session(self, client: httpx.Client, **body: object) -> str:
        answer = client.post("/sessions", json=body or None)
        assert answer.status_code == 201, answer.text
        session_id: str = answer.json()["id"]
        self.created.append(session_id)
        return session_id

    def connect(self) -> socket.socket:
        address = urlsplit(self.url)
        assert address.port is not None
        return socket.create_connection((address.hostname, address.port), timeout=10)

    def memory_peak(self) -> int | None:
        """The most memory the server process has held so far (its peak resident set), in
        bytes; None where /proc does not say (not on Linux)."""
        status = Path(f"/proc/{self.process.pid}/status")
        found = re.search(r"VmHWM:\s+(\d+) kB", status.read_text()) if status.exists() else None
        return int(found.group(1)) * 1024 if found else None

    def memory_grown_since(self, peak: int | None) -> int:
        """How much the server's peak memory has grown since it was ``peak`` (0 if unknown)."""
        now = self.memory_peak()
        return now - peak if now is not None and peak is not None else 0


def postgres_problem() -> str | None:
    """Why PostgreSQL cannot be used, or None when it answers."""
    import asyncpg  # flowcore-sql's driver

    async def probe() -> None:
        connection = await asyncpg.connect(POSTGRES_URL, timeout=3)
        await connection.close()

    try:
        asyncio.run(probe())
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def start(
    storage: str | None,
    log: Path,
    *options: str,
    preexec_fn: Callable[[], None] | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """Start the service (on its default storage when ``storage`` is None) in ``log``'s
    directory, on a free port; the process and the URL it serves."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "FLOWCORE_LOAD_PLUGINS": "sql",
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                *(sys.executable, str(SERVICE), "--port", "0", *options),
                *(("--storage", storage) if storage else ()),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=log.parent,
            preexec_fn=preexec_fn,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", log.read_text())
        if found:
            return process, found.group(1)
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"the web service did not start:\n{log.read_text()}")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    home = tmp_path_factory.mktemp(f"web-{request.param}")
    if request.param == "postgresql":
        problem = postgres_problem()
        if problem is not None:
            message = f"PostgreSQL at {POSTGRES_URL} is unreachable ({problem})"
            if os.environ.get("FLOWCORE_REQUIRE_SERVICES"):
                pytest.fail(f"{message}, and FLOWCORE_REQUIRE_SERVICES is set")
            pytest.skip(f"{message}; set FLOWCORE_REQUIRE_SERVICES=1 to make this a failure")
        storage = POSTGRES_URL
    else:
        storage = f"sqlite:///{home / 'sessions.db'}"
    process, url = start(storage, home / "server.log")
    running = Server(url, storage, home / "server.log", process)
    try:
        yield running
        with running.client() as client:  # leave the database as it was
            for session_id in running.created:
                client.delete(f"/sessions/{session_id}")
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)  # a graceful stop: the app closes its storage
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def test_a_conversation_from_the_first_question_to_a_refund(server):
    with server.client() as client:
        session_id = server.new_session(client)

        first = client.post(f"/sessions/{session_id}/run")
        question = "Hello! Which order is this about? (e.g. A-1001)"
        assert first.json() == {
            "session_id": session_id,
            "response": question,
            "status": "WaitingForInput",
            "version": 2,
            "current_task_id": "ask_order",
            "tasks": [
                {
                    "task_id": "ask_order",
                    "response": question,
                    "status_message": None,
                    "next_action": "WaitForInput",
                }
            ],
        }
        assert first.headers["etag"] == '"2"'

        found = client.post(f"/sessions/{session_id}/run", json={"message": "it's order a-1001"})
        assert found.status_code == 200
        assert found.json()["response"] == "Order A-1001: 2 espresso cups. What went wrong?"
        assert found.json()["status"] == "Paused"
        assert found.json()["next_task_id"] == "describe_issue"

        done = client.post(f"/sessions/{session_id}/run", json={"message": "One arrived broken"})
        refund = "Sorry about that! 24.90 EUR for A-1001 is on its way back to you."
        assert done.json()["response"] == refund
        assert done.json()["status"] == "Completed"
        # A ContinueAndExecute chain: each task that ran says what it answered.
        assert [(t["task_id"], t["response"], t["next_action"]) for t in done.json()["tasks"]] == [
            ("describe_issue", "Thank you, let me see.", "ContinueAndExecute"),
            ("refund", refund, "End"),
        ]
        assert (done.json()["version"], done.json()["current_task_id"]) == (4, "refund")

        session = client.get(f"/sessions/{session_id}").json()
        assert session["id"] == session_id
        assert session["is_completed"] is True
        assert session["current_task_id"] == "refund"
        assert session["context"]["order"] == {
            "id": "A-1001",
            "items": "2 espresso cups",
            "total": "24.90",
        }
        assert [m["role"] for m in session["chat"]] == [
            "assistant",
            "user",
            "assistant",
            "user",
            "assistant",
            "assistant",
        ]
        assert (session["chat"][3]["role"], session["chat"][3]["content"]) == (
            "user",
            "One arrived broken",
        )

        again = client.post(f"/sessions/{session_id}/run", json={"message": "hello?"}).json()
        assert (again["response"], again["status"]) == (None, "Completed")


def test_a_session_can_be_created_with_an_id_and_a_context_and_the_id_is_then_taken(server):
    session_id = f"support-{uuid.uuid4().hex[:8]}"
    with server.client() as client:
        server.new_session(client, session_id=session_id, context={"customer": "Ada"})

        session = client.get(f"/sessions/{session_id}").json()
        assert (session["id"], session["version"]) == (session_id, 1)
        assert session["context"] == {"customer": "Ada"}

        taken = client.post("/sessions", json={"session_id": session_id})
        assert taken.status_code == 409
        assert "exists already" in taken.json()["error"]

        unnamed = client.post("/sessions", json={"session_id": ""})
        assert unnamed.status_code == 422


def test_by_default_sessions_are_kept_in_a_file_under_the_working_directory(tmp_path):
    process, url = start(None, tmp_path / "server.log")
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            answer = client.post("/sessions", json={"session_id": "kept"})
    finally:
        stop(process)

    assert answer.status_code == 201
    assert (tmp_path / ".flowcore" / "web_service.db").is_file()


@pytest.mark.parametrize(
    ("option", "error"),
    [
        (["--timeout-body", "0"], "argument --timeout-body: must be more than 0, not 0"),
        (["--max-body-bytes", "-5"], "argument --max-body-bytes: must be more than 0, not -5"),
        (["--timeout-header", "nan"], "argument --timeout-header: must be more than 0, not nan"),
        (["--limit-concurrency", "-1"], "argument --limit-concurrency: must be 0 or more, not -1"),
    ],
)
def test_a_limit_that_could_not_work_is_refused_at_start(tmp_path, option, error):
    done = subprocess.run(
        [sys.executable, str(SERVICE), *option],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )

    assert done.returncode == 2
    assert done.stderr.strip().endswith(error)


def test_an_unknown_session_is_404(server):
    with server.client() as client:
        for answer in (client.post("/sessions/nobody/run"), client.get("/sessions/nobody")):
            assert answer.status_code == 404
            assert answer.json() == {"error": "no session 'nobody'; create one with POST /sessions"}


DEEP = b"[" * 990 + b"]" * 990


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"{not json", "the body is not JSON"),
        (b'["A-1001"]', "the body must be a JSON object, not list"),
        (b'{"message": 1001}', '"message" must be a string'),
        (b'{"context": ["A-1001"]}', '"context" must be a JSON object'),
        (
            b'{"mesage": "A-1001"}',
            "unknown field(s) 'mesage'; expected context, expect_task, message",
        ),
        (
            json.dumps({f"f{n:05}": n for n in range(20_000)}).encode(),
            "unknown field(s) 'f00000', 'f00001', 'f00002', 'f00003', 'f00004' and 19,995 more; "
            "expected context, expect_task, message",
        ),
        (b'{"message": "a", "context": {"user_input": "b"}}', "not both"),
        (b'{"expect_task": 7}', '"expect_task" must be a string'),
        # Values JSON parsing lets through, that could not be stored or answered again.
        (b'{"context": {"x": NaN}}', "body['context']['x'] is NaN: JSON numbers must be finite"),
        (b'{"context": {"x": [-Infinity]}}', "body['context']['x'][0] is -Infinity"),
        (b'{"context": {"x": 1e999}}', "body['context']['x'] is Infinity"),
        (b'{"context": {"n": ' + b"9" * 5000 + b"}}", "an integer of more than 4,300 digits"),
        (b'{"message": ' + DEEP + b"}", "the body nests more than 32 deep"),
        (b'{"context": {"x": ' + b"[" * 31 + b"]" * 31 + b"}}", "nests more than 32 deep"),
        (b'{"message": "A-1001 \\ud800"}', "body['message'] has a lone surrogate"),
        (b'{"context": {"k\\udfff": 1}}', "a key in body['context'] has a lone surrogate"),
        (b'{"message": "caf\xed\xa0\x80"}', "the body is not UTF-8 text"),
    ],
)
def test_a_bad_body_is_422_and_changes_nothing(server, body, error):
    with server.client() as client:
        session_id = server.new_session(client)

        answer = client.post(f"/sessions/{session_id}/run", content=body)

        assert answer.status_code == 422
        assert error in answer.json()["error"]
        assert client.get(f"/sessions/{session_id}").json()["version"] == 1


def test_a_failing_task_is_500_and_the_answer_leaks_nothing_of_it(server):
    with server.client() as client:
        session_id = server.new_session(client)
        client.post(f"/sessions/{session_id}/run")

        answer = client.post(f"/sessions/{session_id}/run", json={"message": "A-9999"})

        assert answer.status_code == 500
        body = answer.json()
        assert body["error"] == "the step failed and was not saved; try again later"
        for secret in ("orders-db", "shop_rw", "ConnectionError", "Traceback", "ask_order"):
            assert secret not in answer.text
        # The log has what the answer leaves out, under the incident id the caller can quote.
        time.sleep(0.1)
        log = server.log.read_text()
        assert f"incident {body['incident']}" in log
        assert "orders-db.internal:5432 refused the connection" in log
        # Nothing of the failed step was stored: the order question is still open.
        session = client.get(f"/sessions/{session_id}").json()
        assert (session["current_task_id"], session["version"]) == ("ask_order", 2)


async def test_two_requests_for_one_session_at_once_one_of_them_is_409(server):
    with server.client() as client:
        session_id = server.new_session(client)
        client.post(f"/sessions/{session_id}/run")

    # Both load the session, both look the order up (a slow call), and the first save wins.
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        answers = await asyncio.gather(
            *(
                client.post(f"/sessions/{session_id}/run", json={"message": order})
                for order in ("A-1001", "A-1002")
            )
        )
        session = (await client.get(f"/sessions/{session_id}")).json()

    assert sorted(a.status_code for a in answers) == [200, 409]
    lost = next(a for a in answers if a.status_code == 409)
    assert "send it again" in lost.json()["error"]
    # Only the winner's step is stored: one order, one user message.
    won = next(a for a in answers if a.status_code == 200)
    assert session["context"]["order"]["id"] in won.json()["response"]
    assert [m["content"] for m in session["chat"] if m["role"] == "user"] in (
        [["A-1001"], ["A-1002"]]
    )


# -- a step sent again: Idempotency-Key, If-Match, expect_task -----------------------------------


def user_messages(session: dict[str, object]) -> list[str]:
    return [m["content"] for m in session["chat"] if m["role"] == "user"]  # type: ignore[index,union-attr]


async def test_twenty_duplicates_at_once_with_one_idempotency_key_take_the_step_once(server):
    with server.client() as client:
        session_id = server.new_session(client)
        client.post(f"/sessions/{session_id}/run")  # the first question: which order?
    key = {"Idempotency-Key": str(uuid.uuid4())}
    url = f"/sessions/{session_id}/run"

    # A client that retried its answer 20 times at once: each request loads the session, and
    # all but one lose the race to save it, find the key recorded, and answer what it got.
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        answers = await asyncio.gather(
            *(client.post(url, json={"message": "A-1001"}, headers=key) for _ in range(20))
        )
        session = (await client.get(f"/sessions/{session_id}")).json()

    assert [a.status_code for a in answers] == [200] * 20
    assert len({a.content for a in answers}) == 1, "the duplicates got different answers"
    assert sorted(a.headers["idempotent-replayed"] for a in answers) == ["false"] + ["true"] * 19
    assert {a.headers["etag"] for a in answers} == {'"3"'}
    body = answers[0].json()
    assert (body["status"], body["current_task_id"], body["version"]) == (
        "Paused",
        "describe_issue",
        3,
    )
    # Applied once: had a duplicate run after the first, it would have answered the next
    # question ("What went wrong?") with "A-1001" and ended the session.
    assert (session["version"], session["current_task_id"]) == (3, "describe_issue")
    assert user_messages(session) == ["A-1001"]
    assert "issue" not in session["context"]

    # Late, with another body and a stale If-Match: still the answer the key got, nothing run.
    with server.client() as client:
        late = client.post(
            url, json={"message": "It arrived broken"}, headers={**key, "If-Match": '"2"'}
        )
        assert (late.status_code, late.content) == (200, answers[0].content)
        assert late.headers["idempotent-replayed"] == "true"
        assert client.get(f"/sessions/{session_id}").json()["version"] == 3


def test_a_stale_if_match_is_412_naming_both_versions_and_runs_nothing(server):
    with server.client() as client:
        session_id = server.new_session(client)
        url = f"/sessions/{session_id}/run"
        shown = client.get(f"/sessions/{session_id}")
        assert shown.headers["etag"] == '"1"'

        first = client.post(url, headers={"If-Match": shown.headers["etag"]})
        assert (first.status_code, first.headers["etag"]) == (200, '"2"')

        stale = client.post(url, json={"message": "A-1001"}, headers={"If-Match": '"1"'})

        assert stale.status_code == 412
        assert stale.json() == {
            "error": "the session is at version 2, not 1 as If-Match said; nothing ran: "
            "GET it to see where it is now",
            "what": "version",
            "expected": 1,
            "found": 2,
        }
        assert stale.headers["etag"] == '"2"'  # where it is now, to send next time
        session = client.get(f"/sessions/{session_id}").json()
        assert (session["version"], user_messages(session)) == (2, [])

        fresh = client.post(url, json={"message": "A-1001"}, headers={"If-Match": '"2"'})
        assert (fresh.status_code, fresh.json()["version"]) == (200, 3)
        anything = client.post(url, json={"message": "broken"}, headers={"If-Match": "*"})
        assert (anything.status_code, anything.json()["status"]) == (200, "Completed")


def test_an_answer_meant_for_another_question_is_409_and_runs_nothing(server):
    with server.client() as client:
        session_id = server.new_session(client)
        url = f"/sessions/{session_id}/run"
        client.post(url)
        client.post(url, json={"message": "A-1001", "expect_task": "ask_order"})

        # Sent again for the order question, now that the session asks what went wrong.
        again = client.post(url, json={"message": "A-1002", "expect_task": "ask_order"})

        assert again.status_code == 409
        assert again.json()["error"].startswith(
            "the session is at task 'describe_issue', not 'ask_order' as \"expect_task\" said"
        )
        assert {k: again.json()[k] for k in ("what", "expected", "found")} == {
            "what": "task",
            "expected": "ask_order",
            "found": "describe_issue",
        }
        session = client.get(f"/sessions/{session_id}").json()
        assert (session["version"], user_messages(session)) == (3, ["A-1001"])


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({"Idempotency-Key": ""}, "the Idempotency-Key header must be 1 to 256 visible ASCII"),
        ({"Idempotency-Key": '""'}, "the Idempotency-Key header must be 1 to 256 visible ASCII"),
        ({"Idempotency-Key": "k" * 257}, "(257 characters)"),
        ({"Idempotency-Key": "two words"}, "not 'two words'"),
        ({"Idempotency-Key": b"cl\xc3\xa9"}, "the Idempotency-Key header must be"),
        ([("Idempotency-Key", "a"), ("Idempotency-Key", "b")], "was sent 2 times; send it once"),
        ({"If-Match": "1"}, "the If-Match header must be one ETag as this service sends it"),
        ({"If-Match": 'W/"1"'}, "not 'W/\"1\"'"),
        ({"If-Match": '"1", "2"'}, "the If-Match header must be one ETag"),
        ({"If-Match": '"one"'}, "the If-Match header must be one ETag"),
    ],
)
@pytest.mark.parametrize("route", ["run", "stream"])
def test_a_header_the_service_cannot_use_is_400_naming_it(server, headers, error, route):
    with server.client() as client:
        session_id = server.new_session(client)

        answer = client.post(f"/sessions/{session_id}/{route}", headers=headers)

        assert answer.status_code == 400
        assert error in answer.json()["error"]
        named = dict(headers) if isinstance(headers, list) else headers
        assert answer.json()["header"] == next(iter(named))
        assert client.get(f"/sessions/{session_id}").json()["version"] == 1


# -- a step as Server-Sent Events ------------------------------------------------------------------


@dataclass
class Event:
    kind: str
    data: dict[str, object]
    at: float  # time.monotonic() when it arrived


def read_events(response: httpx.Response, until: str | None = None) -> list[Event]:
    """The Server-Sent Events of ``response``, as they arrive; up to the first ``until``."""
    assert response.status_code == 200, response.read()
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    events: list[Event] = []
    kind = None
    for line in response.iter_lines():
        if line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: "):
            assert kind is not None, "data before its event"
            events.append(Event(kind, json.loads(line.removeprefix("data: ")), time.monotonic()))
            if kind == until:
                break
            kind = None
        else:
            assert line == "", f"not a line of an event: {line!r}"
    return events


def test_a_streamed_step_sends_each_task_its_tokens_and_the_result_in_order(server):
    with server.client() as client:
        session_id = server.new_session(client)
        client.post(f"/sessions/{session_id}/run")
        client.post(f"/sessions/{session_id}/run", json={"message": "A-1001"})

        with client.stream(
            "POST", f"/sessions/{session_id}/stream", json={"message": "It arrived broken"}
        ) as response:
            events = read_events(response)
        session = client.get(f"/sessions/{session_id}").json()

    # describe_issue answers and chains to refund: both tasks, each word, then the result.
    kinds = [(e.kind, e.data["task_id"]) for e in events[:-1]]
    first_end = kinds.index(("task_ended", "describe_issue"))
    assert kinds[0] == ("task_started", "describe_issue")
    assert set(kinds[1:first_end]) == {("output", "describe_issue")}
    assert kinds[first_end + 1] == ("task_started", "refund")
    assert set(kinds[first_end + 2 : -1]) == {("output", "refund")}
    assert kinds[-1] == ("task_ended", "refund")
    refund = "Sorry about that! 24.90 EUR for A-1001 is on its way back to you."
    tokens = [
        e.data["value"] for e in events if e.kind == "output" and e.data["task_id"] == "refund"
    ]
    assert "".join(tokens) == refund  # type: ignore[arg-type]
    assert len(tokens) == 14
    assert events[-2].data == {
        "task_id": "refund",
        "response": refund,
        "status_message": None,
        "next_action": "End",
    }
    result = events[-1]
    assert result.kind == "result"
    assert result.data["response"] == refund
    assert (result.data["status"], result.data["version"], result.data["replayed"]) == (
        "Completed",
        4,
        False,
    )
    assert [t["task_id"] for t in result.data["tasks"]] == ["describe_issue", "refund"]  # type: ignore[union-attr]
    assert (session["version"], session["is_completed"]) == (4, True)


def test_a_streamed_step_sent_again_with_its_key_is_its_result_alone(server):
    key = {"Idempotency-Key": "order-question-1"}
    with server.client() as client:
        session_id = server.new_session(client)
        url = f"/sessions/{session_id}/stream"
        with client.stream("POST", url, headers=key) as response:
            first = read_events(response)
            assert response.headers["idempotent-replayed"] == "false"
        with client.stream("POST", url, headers=key) as response:
            again = read_events(response)
            assert response.headers["idempotent-replayed"] == "true"
            assert response.headers["etag"] == '"2"'
        ran = client.post(f"/sessions/{session_id}/run", headers=key)

    assert [e.kind for e in again] == ["result"]
    assert again[0].data == {**first[-1].data, "replayed": True}
    assert ran.json() == {k: v for k, v in again[0].data.items() if k != "replayed"}
    assert ran.headers["idempotent-replayed"] == "true"


def test_a_stream_that_cannot_start_is_an_ordinary_error_answer(server):
    with server.client() as client:
        session_id = server.new_session(client)
        for answer, status in (
            (client.post("/sessions/nobody/stream"), 404),
            (client.post(f"/sessions/{session_id}/stream", content=b"[1]"), 422),
            (client.post(f"/sessions/{session_id}/stream", headers={"If-Match": '"9"'}), 412),
        ):
            assert answer.status_code == status
            assert answer.headers["content-type"] == "application/json"
            assert "error" in answer.json()


def test_a_task_failing_mid_stream_is_an_error_event_and_nothing_is_saved(server):
    with server.client() as client:
        session_id = server.new_session(client)
        client.post(f"/sessions/{session_id}/run")

        with client.stream(
            "POST", f"/sessions/{session_id}/stream", json={"message": "A-9999"}
        ) as response:
            events = read_events(response)

        assert [e.kind for e in events] == ["task_started", "error"]
        error = events[-1].data
        assert (error["error"], error["status"]) == (
            "the step failed and was not saved; try again later",
            500,
        )
        for secret in ("orders-db", "shop_rw", "ConnectionError", "Traceback"):
            assert secret not in json.dumps(error)
        time.sleep(0.1)
        assert f"incident {error['incident']}" in server.log.read_text()
        session = client.get(f"/sessions/{session_id}").json()
        assert (session["version"], session["current_task_id"]) == (2, "ask_order")


@pytest.fixture(scope="module")
def typing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The service writing its replies a word every 0.1 s, as a slow language model would."""
    home = tmp_path_factory.mktemp("web-typing")
    storage = f"sqlite:///{home / 'sessions.db'}"
    process, url = start(storage, home / "server.log", "--token-delay", "0.1")
    try:
        yield Server(url, storage, home / "server.log", process)
    finally:
        stop(process)


def test_tokens_are_sent_as_the_task_writes_them_not_when_the_step_ends(typing):
    with typing.client() as client:
        session_id = typing.new_session(client)
        with client.stream("POST", f"/sessions/{session_id}/stream") as response:
            events = read_events(response)

    outputs = [e for e in events if e.kind == "output"]
    assert len(outputs) == 8  # "Hello! Which order is this about? (e.g. A-1001)"
    # A word every 0.1 s: the first came about 0.7 s before the last, and before the end.
    assert outputs[-1].at - outputs[0].at > 0.5
    assert events[-1].kind == "result"
    assert events[-1].at - outputs[0].at > 0.5


def test_a_client_that_hangs_up_mid_stream_cancels_the_step_and_nothing_is_saved(typing):
    with typing.client() as client:
        session_id = typing.new_session(client)
        client.post(f"/sessions/{session_id}/run")
        before = client.get(f"/sessions/{session_id}").json()

        # The answer to the order question takes 0.1 s to look up, then 0.7 s to write.
        with client.stream(
            "POST", f"/sessions/{session_id}/stream", json={"message": "A-1001"}
        ) as response:
            heard = read_events(response, until="output")
        hung_up = time.monotonic()  # leaving the block closed the connection mid-answer

        assert [e.kind for e in heard] == ["task_started", "output"]
        time.sleep(max(0.0, hung_up + 2.0 - time.monotonic()))  # long past the step's end
        after = client.get(f"/sessions/{session_id}").json()
        assert after["version"] == before["version"] == 2
        assert after["context"] == before["context"]
        assert after["chat"] == before["chat"]
        assert after["current_task_id"] == "ask_order"

        # The session is free: the same answer, sent again, takes the step.
        again = client.post(f"/sessions/{session_id}/run", json={"message": "A-1001"})
        assert (again.status_code, again.json()["version"]) == (200, 3)
    assert b"Traceback" not in typing.log.read_bytes()


@pytest.mark.parametrize(
    ("value", "data"),
    [
        ("tok", {"value": "tok"}),
        ({"score": [1, 2.5, None]}, {"value": {"score": [1, 2.5, None]}}),
        ({1, 2}, {"repr": "{1, 2}"}),
        (b"\x00\xff", {"repr": "b'\\x00\\xff'"}),
        (float("nan"), {"repr": "nan"}),
        (Decimal("1.50"), {"repr": "Decimal('1.50')"}),
        ({(1, 2): "pair"}, {"repr": "{(1, 2): 'pair'}"}),
    ],
)
def test_an_emitted_value_json_cannot_carry_is_sent_as_its_repr(value, data):
    from examples.web_service import event_data, sse
    from flowcore import StepEvent

    encoded = event_data(StepEvent("output", "t", value))

    assert encoded == {"task_id": "t", **data}
    assert sse("output", encoded).count(b"\n") == 3  # "event:", one "data:" line, a blank


def test_a_deleted_session_is_gone(server):
    with server.client() as client:
        session_id = server.new_session(client)

        assert client.delete(f"/sessions/{session_id}").status_code == 204

        assert client.get(f"/sessions/{session_id}").status_code == 404
        assert client.delete(f"/sessions/{session_id}").status_code == 404


# -- what no client may do: store what cannot be shown, name what cannot be stored --------------


def test_a_value_refused_when_a_session_is_created_creates_nothing(server):
    session_id = f"nan-{uuid.uuid4().hex[:8]}"
    with server.client() as client:
        body = b'{"session_id": "%s", "context": {"x": NaN}}' % session_id.encode()

        refused = client.post("/sessions", content=body)

        assert refused.status_code == 422
        assert "body['context']['x'] is NaN" in refused.json()["error"]
        assert client.get(f"/sessions/{session_id}").status_code == 404


def test_text_with_a_nul_or_any_character_of_unicode_is_stored_and_shown_back(server):
    text = "A-1001: a\x00b \u00e9\U0001f600 \u2028 \x1b[31m"
    with server.client() as client:
        session_id = server.new_session(client, context={"note": text})
        client.post(f"/sessions/{session_id}/run")

        answer = client.post(f"/sessions/{session_id}/run", json={"message": text})

        assert answer.json()["response"] == "Order A-1001: 2 espresso cups. What went wrong?"
        session = client.get(f"/sessions/{session_id}").json()
        assert session["context"]["note"] == text
        assert session["chat"][1]["content"] == text


def test_json_nested_as_deep_as_allowed_is_stored_and_shown_back(server):
    deep: object = "bottom"
    for _ in range(30):  # the body, "context" and "x" make 32 levels
        deep = [deep]
    with server.client() as client:
        session_id = server.new_session(client, context={"x": deep})

        assert client.get(f"/sessions/{session_id}").json()["context"]["x"] == deep


async def test_every_value_a_session_can_hold_is_shown_and_never_a_500(server, installed_plugins):
    # A task (or another program) may store what a request never could: NaN, bytes, an int
    # too long for decimal text. GET shows the session all the same, as session_as_json does.
    installed_plugins("sql")
    session_id = f"values-{uuid.uuid4().hex[:8]}"
    values = {
        "nan": float("nan"),
        "inf": float("-inf"),
        "huge": 1 << 20_000,
        "raw": b"\x00\xff",
        "day": date(2026, 3, 1),
        "total": Decimal("24.90"),
        "pair": (1, 2),
        "tags": {"b", "a"},
        "text": "na\u00efve \U0001f600 \x00",
    }
    async with open_storage(server.storage) as storage:
        await storage.save(Session.new_from_task(session_id, "ask_order", context=values))
    server.created.append(session_id)

    with server.client() as client:
        answer = client.get(f"/sessions/{session_id}")

    assert answer.status_code == 200
    shown = answer.json()["context"]
    assert shown == {
        "nan": "nan",
        "inf": "-inf",
        "huge": hex(1 << 20_000),
        "raw": "00ff",
        "day": "2026-03-01",
        "total": "24.90",
        "pair": [1, 2],
        "tags": ["a", "b"],
        "text": "na\u00efve \U0001f600 \x00",
    }


@pytest.mark.parametrize(
    ("session_id", "problem"),
    [
        ("a\x00b", "it has a character that is not printable"),
        ("bell\x07", "it has a character that is not printable"),
        ("x" * 1_000_000, "it has 1,000,000 characters"),
        ("a/b", 'it has a "/"'),
    ],
)
def test_an_id_no_session_can_have_is_422_when_creating_one(server, session_id, problem):
    with server.client() as client:
        answer = client.post("/sessions", json={"session_id": session_id})

    assert answer.status_code == 422
    error = answer.json()["error"]
    assert problem in error
    assert 'a session id is 1 to 128 printable characters, without "/"' in error
    assert len(error) < 400  # the id is quoted short, however long it is


@pytest.mark.parametrize("path_id", ["a%00b", "tab%09", "y" * 10_000])
def test_an_id_no_session_can_have_in_a_url_is_404_without_asking_the_storage(server, path_id):
    with server.client() as client:
        for answer in (
            client.get(f"/sessions/{path_id}"),
            client.post(f"/sessions/{path_id}/run", json={"message": "A-1001"}),
            client.delete(f"/sessions/{path_id}"),
        ):
            assert answer.status_code == 404
            assert answer.json()["error"].startswith("no session can be '")
            assert len(answer.text) < 400


def test_a_url_too_long_for_the_service_is_400_from_the_server(server):
    with server.connect() as sock:
        send_until_answered(sock, b"GET /sessions/", b"y" * 65536, 1_000_000)
        answer = answer_of(sock)

    assert status_of(answer) == 400  # uvicorn's: the head is over --max-head-bytes
    with server.client() as client:
        assert client.get("/sessions/nobody").status_code == 404  # and it serves on


# -- bodies too large ------------------------------------------------------------------------------

LIMIT_ERROR = {"error": "the body is larger than 1,048,576 bytes, the most this service takes"}


def test_a_body_larger_than_the_limit_is_413_from_its_length_alone(server):
    peak = server.memory_peak()
    with server.connect() as sock:
        started = time.monotonic()
        sock.sendall(request_head("POST", "/sessions", ("Content-Length", str(100 * MB))))
        answer = answer_of(sock)
        took = time.monotonic() - started

    assert status_of(answer) == 413
    assert json_of(answer) == LIMIT_ERROR
    assert b"\r\nconnection: close\r\n" in answer.lower()  # the rest of the body is not read
    assert took < 2
    assert server.memory_grown_since(peak) < 20 * MB


def test_a_body_of_no_said_length_is_refused_once_past_the_limit_without_reading_it_all(server):
    frame = b"10000\r\n" + b"x" * 0x10000 + b"\r\n"  # one chunk of 64 KiB
    peak = server.memory_peak()
    with server.connect() as sock:
        started = time.monotonic()
        head = request_head("POST", "/sessions", ("Transfer-Encoding", "chunked"))
        sent = send_until_answered(sock, head, frame, 100 * MB)
        answer = answer_of(sock)
        took = time.monotonic() - started

    assert status_of(answer) == 413
    assert json_of(answer) == LIMIT_ERROR
    # Answered long before the end: what was sent past the limit is what the sockets' buffers
    # took (up to tens of MB on a loopback), and the memory says it was not kept.
    assert sent < 50 * MB
    assert took < 5
    assert server.memory_grown_since(peak) < 20 * MB


# -- slow and too many clients ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The service with timeouts of a second, 20 connections at most and 512 open files."""
    home = tmp_path_factory.mktemp("web-strict")
    storage = f"sqlite:///{home / 'sessions.db'}"
    options = [
        *("--timeout-header", "1", "--timeout-body", "1", "--timeout-keep-alive", "1"),
        *("--limit-concurrency", "20"),
    ]
    process, url = start(storage, home / "server.log", *options, preexec_fn=open_files(512))
    try:
        yield Server(url, storage, home / "server.log", process)
    finally:
        stop(process)


@pytest.mark.slow
def test_a_client_sending_its_head_a_byte_at_a_time_is_cut_off(strict):
    # Each byte comes well within a second, but the head as a whole must come within one.
    head = b"GET /sessions/nobody HTTP/1.1\r\nHost: test\r\nX-Padding: " + b"a" * 100
    with strict.connect() as sock:
        started = time.monotonic()
        for byte in head:
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            if select.select([sock], [], [], 0.25)[0]:
                break
        answer = answer_of(sock)
        took = time.monotonic() - started

    assert answer == b""  # closed without a word
    assert 0.9 < took < 3
    with strict.client() as client:
        assert client.get("/sessions/nobody").status_code == 404


@pytest.mark.slow
def test_a_body_sent_too_slowly_is_408_and_changes_nothing(strict):
    with strict.client() as client:
        session_id = strict.new_session(client)
    with strict.connect() as sock:
        started = time.monotonic()
        head = request_head("POST", f"/sessions/{session_id}/run", ("Content-Length", "100"))
        sock.sendall(head + b'{"message": ')
        while not select.select([sock], [], [], 0.25)[0]:
            sock.sendall(b" ")  # a byte every quarter second: 100 would take 25 s
        answer = answer_of(sock)
        took = time.monotonic() - started

    assert status_of(answer) == 408
    assert json_of(answer) == {"error": "the body did not arrive within 1 s; send it again"}
    assert b"\r\nconnection: close\r\n" in answer.lower()
    assert 0.9 < took < 3
    with strict.client() as client:
        assert client.get(f"/sessions/{session_id}").json()["version"] == 1


@pytest.mark.slow
def test_idle_connections_past_the_limit_are_refused_and_the_log_stays_small(strict):
    logged = strict.log.stat().st_size
    sockets = []
    started = time.monotonic()
    try:
        for _ in range(300):
            sockets.append(strict.connect())
        answers = answers_of(sockets, timeout=5)
    finally:
        for sock in sockets:
            sock.close()
    took = time.monotonic() - started

    # 20 at a time were let in, and closed once they had sent no request for a second (which
    # let the next 20 in); the others were answered at once, before they held a file descriptor
    # for long.
    assert len(answers) == 300, "some connections were neither answered nor closed"
    refused = [answer for answer in answers if answer]
    assert len(refused) >= 300 - 20 * (1 + int(took))
    assert all(status_of(answer) == 503 for answer in refused)
    assert json_of(refused[0]) == {"error": "too many connections; try again in a moment"}
    with strict.client() as client:
        assert client.get("/sessions/nobody").status_code == 404
    time.sleep(0.2)
    log = strict.log.read_bytes()[logged:]
    assert b"Traceback" not in log
    assert log.count(b"refused a connection") <= 10
    assert len(log) < 5_000


@pytest.mark.slow
def test_out_of_file_descriptors_the_log_stays_small_and_the_service_recovers(tmp_path):
    # No connection limit, and 128 open files: accepting runs out of file descriptors, which
    # asyncio would log as thousands of tracebacks a second.
    storage = f"sqlite:///{tmp_path / 'sessions.db'}"
    options = ["--timeout-header", "1", "--limit-concurrency", "0"]
    process, url = start(storage, tmp_path / "server.log", *options, preexec_fn=open_files(128))
    flooded = Server(url, storage, tmp_path / "server.log", process)
    try:
        logged = flooded.log.stat().st_size
        sockets = []
        try:
            for _ in range(300):
                sockets.append(flooded.connect())
            time.sleep(1)  # accepting fails, and is retried, meanwhile
        finally:
            for sock in sockets:
                sock.close()
        with flooded.client() as client:
            assert client.get("/sessions/nobody").status_code == 404
        log = flooded.log.read_bytes()[logged:]
    finally:
        stop(process)

    assert b"cannot accept connections for now: Too many open files" in log
    assert b"Traceback" not in log
    assert len(log) < 5_000


# -- plain HTTP over a socket ----------------------------------------------------------------------

MB = 1024 * 1024


def open_files(limit: int) -> Callable[[], None]:
    """For ``preexec_fn``: the server may open at most ``limit`` files (and sockets)."""

    def lower() -> None:
        import resource

        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))

    return lower


def request_head(method: str, path: str, *headers: tuple[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: test", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def send_until_answered(sock: socket.socket, head: bytes, pattern: bytes, total: int) -> int:
    """Send ``head``, then ``pattern`` over and over, ``total`` bytes of it in all, but stop as
    soon as the server answers or hangs up; how many bytes after the head were sent."""
    sock.sendall(head)
    window = memoryview(pattern * 2)
    sent = 0
    while sent < total:
        readable, writable, _ = select.select([sock], [sock], [], 10)
        if readable:
            break
        assert writable, "the server neither reads nor answers"
        offset = sent % len(pattern)
        try:
            sent += sock.send(window[offset : offset + len(pattern)])
        except (BrokenPipeError, ConnectionResetError):
            break
    return sent


def answer_of(sock: socket.socket, timeout: float = 10) -> bytes:
    """What the server sends until a whole answer came or it closed the connection."""
    sock.settimeout(timeout)
    data = b""
    while True:
        head, found, body = data.partition(b"\r\n\r\n")
        length = re.search(rb"\r\ncontent-length: (\d+)", head, re.IGNORECASE)
        if found and length and len(body) >= int(length.group(1)):
            return data
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def answers_of(sockets: list[socket.socket], timeout: float) -> list[bytes]:
    """What the server sent on each socket that it answered or closed within ``timeout``."""
    answers = []
    with selectors.DefaultSelector() as waiting:
        for sock in sockets:
            waiting.register(sock, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while waiting.get_map() and time.monotonic() < deadline:
            for key, _ in waiting.select(timeout=0.1):
                waiting.unregister(key.fileobj)
                answers.append(answer_of(key.fileobj))  # type: ignore[arg-type]
    return answers


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def json_of(answer: bytes) -> object:
    return json.loads(answer.partition(b"\r\n\r\n")[2])
