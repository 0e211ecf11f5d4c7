"""Fixtures for flowcore-celery's tests: RabbitMQ, PostgreSQL, and real worker processes.

The tests start ``celery -A celery_app worker`` processes (see ``celery_services.Workers``) on a
queue of their own, with sessions in a PostgreSQL schema of this run's, and stop them by PID at
the end. Without RabbitMQ or PostgreSQL the tests are skipped, or fail when
``FLOWCORE_REQUIRE_SERVICES`` is set (as CI sets it).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import flowcore_sql.plugin
import kombu.pools
import pytest
from celery import Celery
from celery_app import make_app
from celery_graphs import build
from celery_services import (
    STORAGE_URL,
    Workers,
    amqp_problem,
    close_app,
    delete_queue,
    drop_schema,
    new_queue,
    postgres_problem,
    require,
)

from flowcore import FlowRunner, SessionStorage, open_storage
from flowcore.testing import plugin_registered


@pytest.fixture(autouse=True)
def sql_schemes_served() -> Iterator[None]:
    """``open_storage`` serves postgresql:// in every test: through the entry point when the
    installed plugins load, else through the plugin module (flowcore's own tests load none)."""
    with plugin_registered(flowcore_sql.plugin, "sql-under-test"):
        yield


@pytest.fixture(scope="session")
def services() -> Iterator[None]:
    """RabbitMQ and PostgreSQL, once both answered; this run's schema is dropped at the end."""
    for name, problem in (("RabbitMQ", amqp_problem()), ("PostgreSQL", postgres_problem())):
        if problem is not None:
            require(f"{name} is unreachable ({problem})")
    yield
    kombu.pools.reset()
    drop_schema()


@pytest.fixture(scope="module")
def workers(services: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    """Two worker processes (prefork, two pool processes each) shared by a module's tests, on a
    queue of their own, writing their spans to ``spans.jsonl``."""
    directory = tmp_path_factory.mktemp("workers")
    queue = new_queue()
    started = Workers(queue, directory, FLOWCORE_CELERY_SPANS=str(directory / "spans.jsonl"))
    try:
        yield started.start()
    finally:
        started.stop()
        delete_queue(queue)


@pytest.fixture
def app(workers: Workers) -> Iterator[Celery]:
    """A client app of the test's own on the shared workers' queue."""
    client = make_app(workers.queue, STORAGE_URL)
    yield client
    close_app(client)


@pytest.fixture
async def runner(services: None) -> AsyncIterator[FlowRunner]:
    """A runner of the workers' graph on their storage, to create and read sessions."""
    storage: SessionStorage = open_storage(STORAGE_URL)
    async with storage:
        yield FlowRunner(build(), storage)


@pytest.fixture
def prefix() -> str:
    """Session ids of the test's own."""
    return f"t-{uuid.uuid4().hex[:8]}"
