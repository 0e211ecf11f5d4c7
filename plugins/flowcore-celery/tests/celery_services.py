"""The services the tests need, and the worker processes they start.

RabbitMQ at ``FLOWCORE_TEST_AMQP_URL`` (default ``amqp://guest:guest@127.0.0.1:5672//``) and
PostgreSQL at ``FLOWCORE_TEST_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``):
a test that needs one is skipped when it is down, or fails when ``FLOWCORE_REQUIRE_SERVICES`` is
set. Each test run keeps its sessions in a PostgreSQL schema of its own and its messages in queues
of its own, removed at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from flowcore_celery._install import installation_of

import flowcore

AMQP_URL = os.environ.get("FLOWCORE_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
POSTGRES_URL = os.environ.get(
    "FLOWCORE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
RUN = uuid.uuid4().hex[:10]
"""This test run's name: its schema and queues start with it."""
SCHEMA = f"fc_celery_{RUN}"
STORAGE_URL = f"{POSTGRES_URL}?schema={SCHEMA}"
TESTS = Path(__file__).resolve().parent
ROOT = Path(flowcore.__file__).resolve().parent.parent
"""The checkout whose flowcore the tests import: its examples/ are tested too."""
PATH_FOR_WORKERS = os.pathsep.join([str(TESTS), str(TESTS.parent), str(ROOT)])
CELERY = str(Path(sys.executable).with_name("celery"))


def require(problem: str) -> None:
    """Skip the test for ``problem``, or fail it when FLOWCORE_REQUIRE_SERVICES is set."""
    if os.environ.get("FLOWCORE_REQUIRE_SERVICES"):
        pytest.fail(f"{problem}, and FLOWCORE_REQUIRE_SERVICES is set: start it (see .ci/run)")
    pytest.skip(f"{problem}; start it, or set FLOWCORE_REQUIRE_SERVICES=1 to make this a failure")


def amqp_problem() -> str | None:
    from kombu import Connection

    try:
        with Connection(AMQP_URL, connect_timeout=2) as connection:
            connection.ensure_connection(max_retries=1)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def postgres_problem() -> str | None:
    import asyncpg

    async def probe() -> None:
        connection = await asyncpg.connect(POSTGRES_URL, timeout=3)
        await connection.close()

    try:
        asyncio.run(probe())
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def drop_schema() -> None:
    import asyncpg

    async def drop() -> None:
        connection = await asyncpg.connect(POSTGRES_URL, timeout=5)
        try:
            await connection.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
        finally:
            await connection.close()

    asyncio.run(drop())


def delete_queue(name: str) -> None:
    from kombu import Connection

    with Connection(AMQP_URL, connect_timeout=2) as connection:
        connection.default_channel.queue_delete(name)


def queue_depth(name: str) -> int:
    from kombu import Connection

    with Connection(AMQP_URL, connect_timeout=2) as connection:
        _, count, _ = connection.default_channel.queue_declare(name, passive=True)
        return int(count)


def new_queue() -> str:
    """A queue name no other test (nor test run) uses."""
    return f"fc-celery-test-{uuid.uuid4().hex[:12]}"


def close_app(app: Any) -> None:
    """Close what a test's client app opened: its storage, loop and result consumer."""
    installation = installation_of(app)
    if installation.loop.is_running():
        installation.loop.run(installation.close())
        installation.loop.stop()
    # Celery's close() forgets the connections rather than closing them: the result consumer's
    # is closed here, the producers' (shared by the apps of one broker) at the end of the run.
    consumer = app.backend.result_consumer
    if consumer._connection is not None:
        consumer.stop()
    app.close()


def signal_group(process: subprocess.Popen[bytes], number: int) -> None:
    """Send ``number`` to the process group that ``process`` leads (its own: see Workers)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, number)


class Workers:
    """``count`` Celery worker processes (``celery -A celery_app worker``) on ``queue``, each in a
    process group of its own, stopped by PID (SIGTERM, then SIGKILL) by ``stop``."""

    def __init__(
        self,
        queue: str,
        directory: Path,
        *,
        count: int = 2,
        concurrency: int = 2,
        app: str = "celery_app",
        cwd: Path = TESTS,
        **env: str,
    ) -> None:
        self.app = app
        self.cwd = cwd
        self.queue = queue
        self.directory = directory
        self.count = count
        self.concurrency = concurrency
        self.env = {
            **os.environ,
            "PYTHONPATH": PATH_FOR_WORKERS,
            "FLOWCORE_CELERY_QUEUE": queue,
            "FLOWCORE_CELERY_STORAGE": STORAGE_URL,
            "FLOWCORE_TEST_AMQP_URL": AMQP_URL,
            "FLOWCORE_LOAD_PLUGINS": "sql,otel",
            **env,
        }
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    def start(self, timeout: float = 30.0) -> Workers:
        for number in range(self.count):
            log = self.directory / f"worker-{number}.log"
            self.logs.append(log)
            with open(log, "wb") as out:
                self.processes.append(
                    subprocess.Popen(
                        [
                            CELERY,
                            "-A",
                            self.app,
                            "worker",
                            "--pool",
                            "prefork",
                            "--concurrency",
                            str(self.concurrency),
                            "--hostname",
                            f"{self.queue}-{number}@%h",
                            "--without-gossip",
                            "--without-mingle",
                            "--without-heartbeat",
                            "--loglevel",
                            "INFO",
                        ],
                        cwd=self.cwd,
                        env=self.env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,  # its pool processes die with it on killpg
                    )
                )
        deadline = time.monotonic() + timeout
        for number, log in enumerate(self.logs):
            while b" ready." not in log.read_bytes():
                if self.processes[number].poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"worker {number} did not start:\n{log.read_text()}")
                time.sleep(0.1)
        return self

    def kill(self, number: int) -> None:
        """SIGKILL worker ``number`` and its pool processes: a machine lost mid-step."""
        signal_group(self.processes[number], signal.SIGKILL)
        self.processes[number].wait(timeout=10)

    def stop(self) -> None:
        for process in self.processes:
            signal_group(process, signal.SIGTERM)
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=15)
            # Whatever of the group is left (a pool process that outlived its parent) goes too.
            signal_group(process, signal.SIGKILL)
            process.wait(timeout=10)

    def log(self) -> str:
        return "\n".join(log.read_text(errors="replace") for log in self.logs)
