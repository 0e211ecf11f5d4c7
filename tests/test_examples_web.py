"""The web-service example (examples/web_service.py), end to end: a real uvicorn server on
127.0.0.1 and a real HTTP client, on SQLite and on PostgreSQL.

One server runs per storage for the whole module. PostgreSQL is the local server; the tests
on it are skipped when it does not answer, unless FLOWCORE_REQUIRE_SERVICES is set (as CI sets
it), which makes that a failure.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVICE = ROOT / "examples" / "web_service.py"
POSTGRES_URL = os.environ.get(
    "FLOWCORE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


@dataclass
class Server:
    """The example, running: its base URL, its log, and the sessions the tests made."""

    url: str
    storage: str
    log: Path
    created: list[str] = field(default_factory=list)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10)

    def new_session(self, client: httpx.Client, **body: object) -> str:
        answer = client.post("/sessions", json=body or None)
        assert answer.status_code == 201, answer.text
        session_id: str = answer.json()["session_id"]
        self.created.append(session_id)
        return session_id


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


def start(storage: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "FLOWCORE_LOAD_PLUGINS": "sql",
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(SERVICE), "--storage", storage, "--port", "0"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=log.parent,
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
    running = Server(url, storage, home / "server.log")
    try:
        yield running
        with running.client() as client:  # leave the database as it was
            for session_id in running.created:
                client.delete(f"/sessions/{session_id}")
    finally:
        process.send_signal(signal.SIGINT)  # a graceful stop: the app closes its storage
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def test_a_conversation_from_the_first_question_to_a_refund(server):
    with server.client() as client:
        session_id = server.new_session(client)

        first = client.post(f"/sessions/{session_id}/run").json()
        assert first == {
            "session_id": session_id,
            "response": "Hello! Which order is this about? (e.g. A-1001)",
            "status": "WaitingForInput",
        }

        found = client.post(f"/sessions/{session_id}/run", json={"message": "it's order a-1001"})
        assert found.status_code == 200
        assert found.json()["response"] == "Order A-1001: 2 espresso cups. What went wrong?"
        assert found.json()["status"] == "Paused"
        assert found.json()["next_task_id"] == "describe_issue"

        done = client.post(f"/sessions/{session_id}/run", json={"message": "One arrived broken"})
        assert done.json()["response"] == (
            "Sorry about that! 24.90 EUR for A-1001 is on its way back to you."
        )
        assert done.json()["status"] == "Completed"

        session = client.get(f"/sessions/{session_id}").json()
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
        ]
        assert session["chat"][3] == {"role": "user", "content": "One arrived broken"}

        again = client.post(f"/sessions/{session_id}/run", json={"message": "hello?"}).json()
        assert (again["response"], again["status"]) == (None, "Completed")


def test_a_session_can_be_created_with_an_id_and_a_context_and_the_id_is_then_taken(server):
    session_id = f"support-{uuid.uuid4().hex[:8]}"
    with server.client() as client:
        server.new_session(client, session_id=session_id, context={"customer": "Ada"})

        session = client.get(f"/sessions/{session_id}").json()
        assert (session["session_id"], session["version"]) == (session_id, 1)
        assert session["context"] == {"customer": "Ada"}

        taken = client.post("/sessions", json={"session_id": session_id})
        assert taken.status_code == 409
        assert "exists already" in taken.json()["error"]

        unnamed = client.post("/sessions", json={"session_id": ""})
        assert unnamed.status_code == 422


def test_an_unknown_session_is_404(server):
    with server.client() as client:
        for answer in (client.post("/sessions/nobody/run"), client.get("/sessions/nobody")):
            assert answer.status_code == 404
            assert answer.json() == {"error": "no session 'nobody'; create one with POST /sessions"}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"{not json", "the body is not JSON"),
        (b'["A-1001"]', "the body must be a JSON object, not list"),
        (b'{"message": 1001}', '"message" must be a string'),
        (b'{"context": ["A-1001"]}', '"context" must be a JSON object'),
        (b'{"mesage": "A-1001"}', "unknown field(s) mesage; expected context, message"),
        (b'{"message": "a", "context": {"user_input": "b"}}', "not both"),
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


def test_a_deleted_session_is_gone(server):
    with server.client() as client:
        session_id = server.new_session(client)

        assert client.delete(f"/sessions/{session_id}").status_code == 204

        assert client.get(f"/sessions/{session_id}").status_code == 404
        assert client.delete(f"/sessions/{session_id}").status_code == 404
