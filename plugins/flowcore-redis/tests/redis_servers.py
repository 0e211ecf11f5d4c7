"""The Redis servers flowcore-redis's tests use, and how a test reads them behind the storage.

The shared server is the one at ``FLOWCORE_TEST_REDIS_URL`` (default: the local one,
``redis://127.0.0.1:6379/0``). Other test runs use it at the same time, so each test keeps its
keys under a prefix of its own and removes them at its end, and no test restarts or flushes it.
A test that restarts, flushes, locks or reconfigures a server starts one of its own
(``PrivateRedis``): ``redis-server`` on a free port, in a temporary directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import redis

__all__ = [
    "REDIS_URL",
    "PrivateCluster",
    "PrivateRedis",
    "free_port",
    "new_prefix",
    "remove_keys",
    "require",
    "run_id",
    "unreachable",
]

REDIS_URL = os.environ.get("FLOWCORE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RUN = f"fctest:{os.getpid()}:{uuid.uuid4().hex[:6]}"
"""What the prefixes of this test run start with."""


def require(reason: str) -> None:
    """Skip the test for ``reason``, or fail it when FLOWCORE_REQUIRE_SERVICES is set (CI)."""
    import pytest

    if os.environ.get("FLOWCORE_REQUIRE_SERVICES"):
        pytest.fail(f"{reason}, and FLOWCORE_REQUIRE_SERVICES is set")
    pytest.skip(f"{reason}; set FLOWCORE_REQUIRE_SERVICES=1 to make this a failure")


def new_prefix() -> str:
    """A key prefix no other test uses."""
    return f"{RUN}:{uuid.uuid4().hex[:8]}:"


def unreachable(url: str = REDIS_URL) -> str | None:
    """Why the server at ``url`` does not answer, or None when it does."""
    try:
        with redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3) as client:
            client.ping()
    except (redis.RedisError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def run_id(url: str = REDIS_URL) -> str:
    """The server's run id: a restart of the server changes it."""
    with redis.Redis.from_url(url) as client:
        return str(client.info("server")["run_id"])


def remove_keys(prefix: str, url: str = REDIS_URL) -> None:
    """Delete every key that starts with ``prefix`` (test prefixes hold no glob characters)."""
    with redis.Redis.from_url(url) as client:
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            client.delete(key)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PrivateRedis:
    """A redis-server of a test's own, on a free port, with its files in a temporary directory.

    ``options`` are more of redis-server's command-line options (``--requirepass x``...).
    """

    def __init__(self, *options: str, port: int | None = None) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="flowcore-redis-"))
        self.port = free_port() if port is None else port
        self.options = options
        self.log = self.directory / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20) -> None:
        """Start the server and wait until it accepts connections and has loaded its data."""
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        command = [
            binary,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.directory),
            "--logfile", str(self.log),
            "--save", "",
            "--appendonly", "no",
            *self.options,
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self._tail()}")
            if "Ready to accept connections" in self._tail():
                return
            time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start within {timeout}s: {self._tail()}")

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server: SIGKILL (a crash) or SIGTERM (a clean shutdown)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            if kill:
                self.process.kill()
            else:
                self.process.terminate()
            self.process.wait(timeout=30)
        self.process = None
        with contextlib.suppress(FileNotFoundError):
            self.log.write_text("")  # so that start() waits for the next "Ready"

    def restart(self, *, kill: bool = False) -> None:
        self.stop(kill=kill)
        self.start()

    def client(self, **options: object) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, **options)  # type: ignore[arg-type]

    def remove(self) -> None:
        self.stop(kill=True)
        shutil.rmtree(self.directory, ignore_errors=True)

    def _tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except FileNotFoundError:
            return ""


class PrivateCluster:
    """A Redis Cluster of a test's own: ``nodes`` primaries, no replicas, every slot served."""

    def __init__(self, nodes: int = 3) -> None:
        options = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
        # The cluster bus on a free port of its own (by default it is the port + 10000).
        self.servers = [
            PrivateRedis(*options, "--cluster-port", str(free_port())) for _ in range(nodes)
        ]

    def start(self, timeout: float = 30) -> None:
        for server in self.servers:
            server.start()
        cli = shutil.which("redis-cli") or "/usr/bin/redis-cli"
        addresses = [f"127.0.0.1:{server.port}" for server in self.servers]
        command = [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0"]
        done = subprocess.run(
            [*command, "--cluster-yes"], capture_output=True, text=True, timeout=60, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {done.stdout}{done.stderr}")
        deadline = time.monotonic() + timeout
        for server in self.servers:
            with server.client() as client:
                while client.cluster("info")["cluster_state"] != "ok":
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the cluster was not ready within {timeout}s")
                    time.sleep(0.05)

    def remove(self) -> None:
        for server in self.servers:
            server.remove()


@contextlib.contextmanager
def private_redis(*options: str) -> Iterator[PrivateRedis]:
    server = PrivateRedis(*options)
    try:
        server.start()
        yield server
    finally:
        server.remove()
