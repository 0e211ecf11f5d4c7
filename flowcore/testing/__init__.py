"""Test helpers for plugin authors and users: storage conformance, benchmarks, a pytest plugin.

Every storage backend, first- or third-party, runs :class:`StorageConformance` in its own tests by
subclassing it and overriding one fixture, ``storage``::

    import pytest
    from flowcore.testing import StorageConformance

    class TestMyStorage(StorageConformance):
        @pytest.fixture
        async def storage(self, tmp_path):
            async with MyStorage(tmp_path / "sessions.db") as storage:
                yield storage

:class:`ConcurrencyConformance` takes the same fixture (and optionally ``new_storage``, one more
storage on the same store) and checks many runners stepping one store at once, with the
workflow of :func:`counter_graph`, which :class:`StepTraffic` steps too while a backend's own
tests break its store. :class:`ClockSkewConformance` runs a client whose clock is ahead against
a backend whose server keeps the time. :class:`StorageBenchmark` takes the same fixture and
times the backend against the in-memory one. The suites need pytest and pytest-asyncio. Under
pytest-asyncio's strict mode, decorate the fixture with ``@pytest_asyncio.fixture`` instead of
``@pytest.fixture``.

This module is also a pytest plugin (entry point ``pytest11``, named ``flowcore``): with
pytest-benchmark installed (``pip install 'flowcore[bench]'``) it gives the ``flowcore_bench``
fixture and the ``--flowcore-baseline``, ``--flowcore-save-baseline`` and
``--flowcore-tolerance`` options that gate a test run on same-run ratios.
"""

from __future__ import annotations

from ._clock import ClockSkewConformance
from ._command import run_flowcore
from ._concurrency import ConcurrencyConformance, StorageFactory
from ._conformance import CODEC_VALUES, FREE_TEXT_IDS, RawBlobWriter, StorageConformance
from ._counter import counter_graph

# BenchResult, then the pytest plugin's hooks and fixture, found here by pytest (pytest11).
from ._plugin import (  # noqa: F401
    BenchResult,
    flowcore_bench,
    pytest_addoption,
    pytest_configure,
    pytest_sessionfinish,
    pytest_terminal_summary,
)
from ._registered import plugin_registered
from ._storage_benchmark import StorageBenchmark
from ._traffic import StepTraffic
from ._versions import migrated
from ._workload import BenchmarkFailed

__all__ = [
    "CODEC_VALUES",
    "FREE_TEXT_IDS",
    "BenchResult",
    "BenchmarkFailed",
    "ClockSkewConformance",
    "ConcurrencyConformance",
    "RawBlobWriter",
    "StepTraffic",
    "StorageBenchmark",
    "StorageConformance",
    "StorageFactory",
    "counter_graph",
    "migrated",
    "plugin_registered",
    "run_flowcore",
]
