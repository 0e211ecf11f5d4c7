"""examples/celery_batch.py as a user runs it: a worker started from the example's module, then
the batch script, on the run's own queue and PostgreSQL schema."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from celery_services import AMQP_URL, ROOT, STORAGE_URL, Workers, delete_queue, new_queue

pytestmark = pytest.mark.slow


def test_the_celery_batch_drives_every_invoice_on_the_workers(services: None, tmp_path) -> None:
    queue = new_queue()
    env = {
        "CELERY_BATCH_QUEUE": queue,
        "CELERY_BATCH_STORAGE": STORAGE_URL,
        "CELERY_BATCH_BROKER": AMQP_URL,
        "FLOWCORE_LOAD_PLUGINS": "sql",
    }
    workers = Workers(
        queue, tmp_path, count=1, app="examples.celery_batch", cwd=ROOT, **env
    ).start()
    try:
        done = subprocess.run(
            [sys.executable, "examples/celery_batch.py", "--sessions", "60", "--in-flight", "16"],
            cwd=ROOT,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        workers.stop()
        delete_queue(queue)

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "60 sessions completed by the workers: 41 approved, 19 sent for review"
    assert lines[1].startswith("240 steps in ")
    assert lines[1].endswith(f"(storage {STORAGE_URL}, 16 in flight)")
    assert "[##############################] 60/60 sessions" in done.stderr  # the progress bar
