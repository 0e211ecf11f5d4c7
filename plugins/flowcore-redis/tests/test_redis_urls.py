"""Opening Redis storage by URL: the plugin's entry point, the URL forms, TLS, Unix sockets, and
the mistakes.

A bad URL or option is a StorageError from ``open_storage`` at once; an unreachable server is one
at first use, quickly. Every message names the URL with its password hidden.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from flowcore_redis import RedisSessionStorage
from redis_servers import PrivateRedis, free_port, require

from flowcore import Session, StorageError, open_storage

# -- the entry point -------------------------------------------------------------------------------


def run_python(script: str, **env: str) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter, with the plugins FLOWCORE_LOAD_PLUGINS names (all when unset)."""
    environment = {k: v for k, v in os.environ.items() if k != "FLOWCORE_LOAD_PLUGINS"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        env={**environment, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_open_storage_finds_the_plugin_and_imports_redis_only_when_used(
    redis_url: str, prefix: str
) -> None:
    done = run_python(
        f"""
        import asyncio, sys
        from flowcore import Session, open_storage

        async def main():
            open_storage("memory://")
            print("redis" in sys.modules)
            async with open_storage("{redis_url}?prefix={prefix}", ttl=60) as storage:
                await storage.save(Session.new_from_task("s1", "start"))
                print(type(storage).__name__, (await storage.get("s1")).version)
            print("redis" in sys.modules)
            for url in ("rediss://h:6380/1", "unix:///run/redis.sock"):
                print(type(open_storage(url)).__name__)

        asyncio.run(main())
        """,
        FLOWCORE_LOAD_PLUGINS="redis",
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [
        "False",
        "RedisSessionStorage",
        "1",
        "True",
        "RedisSessionStorage",
        "RedisSessionStorage",
    ]


def test_flowcore_plugins_lists_it() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "flowcore", "plugins"],
        env={k: v for k, v in os.environ.items() if k != "FLOWCORE_LOAD_PLUGINS"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    listed = {plugin["name"]: plugin for plugin in json.loads(done.stdout)}
    assert listed["redis"]["distribution"] == "flowcore-redis"
    assert listed["redis"]["status"] == "loaded"
    assert listed["redis"]["hooks"] == ["flowcore_register_storage"]


# -- the URL forms ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://localhost", "redis://localhost:6379/0"),
        ("redis://127.0.0.1:6380/3", "redis://127.0.0.1:6380/3"),
        ("REDIS://Cache.Internal:6379/?db=2", "redis://cache.internal:6379/2"),
        ("redis://[::1]:6379/0", "redis://[::1]:6379/0"),
        ("redis://:s%40cret@h/0", "redis://:***@h:6379/0"),
        ("redis://app:s%40cret@h/0", "redis://app:***@h:6379/0"),
        ("rediss://h:6380/1?ssl_cert_reqs=none", "rediss://h:6380/1?ssl_cert_reqs=none"),
        ("unix:///run/redis/redis.sock", "unix:///run/redis/redis.sock"),
        ("unix://:pw@/run/redis.sock?db=4&prefix=x:", "unix://:***@/run/redis.sock?db=4"),
    ],
)
def test_a_url_is_shown_with_its_password_hidden_and_its_options_left_out(
    url: str, shown: str
) -> None:
    storage = open_storage(url)
    assert isinstance(storage, RedisSessionStorage)
    assert storage.url == shown
    assert "cret" not in repr(storage)


def test_options_come_from_the_query_or_as_keywords() -> None:
    storage = open_storage(
        "redis://h/0?prefix=app%3Asessions%3A&ttl=90&refresh_ttl=no&pool_size=3&pool_timeout=1"
        "&connect_timeout=0.5&command_timeout=none"
    )
    assert isinstance(storage, RedisSessionStorage)
    assert (storage.prefix, storage.ttl, storage.refresh_ttl) == (
        "app:sessions:",
        timedelta(seconds=90),
        False,
    )
    keywords = RedisSessionStorage("redis://h/0", ttl=timedelta(hours=1), prefix="p:")
    assert (keywords.prefix, keywords.ttl, keywords.refresh_ttl) == ("p:", timedelta(hours=1), True)
    assert repr(keywords) == "<RedisSessionStorage redis://h:6379/0 prefix='p:' (not connected)>"


@pytest.mark.parametrize(
    ("url", "options", "advice"),
    [
        ("redis://", {}, "names no host"),
        ("redis:///0", {}, "names no host"),
        ("redis://h:0/0", {}, "port 0 is out of range"),
        ("redis://h:99999/0", {}, "is not a Redis URL"),
        ("redis://[::1/0", {}, "write an IPv6 host in brackets"),
        ("redis://h/zero", {}, "the database 'zero' is not a number"),
        ("redis://h/1?db=2", {}, "both in its path and as db="),
        ("redis://h/0?db=1&db=2", {}, "gives db 2 times"),
        ("redis://:pa#ss@h/0", {}, "a '#' in a password must be written %23"),
        ("redis://h/0?password=x", {}, "password in its query"),
        ("redis://h/0?ssl_ca_certs=ca.pem", {}, "TLS, which a redis:// URL does not use"),
        ("rediss://h/0?ssl_cert_reqs=maybe", {}, "not one of none, optional, required"),
        ("rediss://h/0?ssl_check_hostname=perhaps", {}, "ssl_check_hostname='perhaps'"),
        ("unix://", {}, "names no socket"),
        ("unix://host/run/redis.sock", {}, "names no socket"),
        ("redis://h/0?prefix=", {}, "prefix='' in the query is not non-empty text"),
        ("redis://h/0?ttl=1h", {}, "ttl='1h' in the query is not a number"),
        ("redis://h/0?ttl=0.0001", {}, "at least 1 ms"),
        ("redis://h/0?ttl=60&ttl=90", {}, "gives the option 'ttl' 2 times"),
        ("redis://h/0?pool_size=0", {}, "pool_size='0' in the query is not an int >= 1"),
        ("redis://h/0?command_timeout=-1", {}, "is not a number of seconds > 0"),
        ("redis://h/0?refresh_ttl=maybe", {}, "is not true or false"),
        ("redis://h/0?frobnicate=1", {}, r"Unknown option 'frobnicate' .* prefix, ttl"),
        ("redis://h/0?connection_options=x", {}, "Unknown option 'connection_options'"),
        ("redis://h/0?ttl=5", {"ttl": 6}, "both in the query of redis://h:6379/0 and as a"),
        ("redis://h/0", {"ttl": -1}, "The option ttl=-1 for redis://h:6379/0 is not"),
        ("redis://h/0", {"prefix": "bad\ud800"}, "is not non-empty text"),
        ("redis://h/0", {"frobnicate": 1}, "Unknown option 'frobnicate' for"),
        ("redis://h/0", {"connection_options": {"bogus": 1}}, "redis-py refused the connection"),
        ("redis://h/0", {"connection_options": {"decode_responses": True}}, "leave it out"),
    ],
)
def test_a_url_or_option_it_cannot_use_is_a_storage_error_saying_why(
    url: str, options: dict[str, object], advice: str
) -> None:
    with pytest.raises(StorageError, match=advice):
        open_storage(url, **options)


def test_the_plugin_serves_only_its_own_schemes() -> None:
    with pytest.raises(StorageError, match="redis://, rediss:// and unix:// URLs, not 'memcached"):
        RedisSessionStorage("memcached://h/0")


async def test_an_unreachable_server_fails_quickly_naming_the_url_without_its_password() -> None:
    url = f"redis://app:s3cret@127.0.0.1:{free_port()}/0"
    started = time.monotonic()

    with pytest.raises(StorageError) as caught:
        await open_storage(url, connect_timeout=1).get("s1")

    message = str(caught.value)
    assert message.startswith("Could not connect to redis://app:***@127.0.0.1:")
    assert "Check that the Redis server is running and reachable" in message
    assert "s3cret" not in message
    assert time.monotonic() - started < 3


async def test_the_database_comes_from_the_path_or_the_query(redis_url: str, prefix: str) -> None:
    base = redis_url.rsplit("/", 1)[0]
    client = redis.Redis.from_url(f"{base}/5")
    try:
        for url in (f"{base}/5?prefix={prefix}", f"{base}?db=5&prefix={prefix}"):
            async with open_storage(url) as storage:
                await storage.save(Session.new_from_task("s1", "start"))
                assert client.hget(f"{prefix}{{s1}}", "v") == b"1"
                await storage.delete("s1")
    finally:
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)
        client.close()


# -- TLS and Unix sockets --------------------------------------------------------------------------


@pytest.fixture
def certificate(tmp_path: Path) -> Path:
    """A self-signed certificate for 127.0.0.1 and its key: ``cert.pem``, ``key.pem``."""
    command = [
        "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem"),
        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
    ]  # fmt: skip
    try:
        subprocess.run(command, capture_output=True, check=True, timeout=60)
    except (OSError, subprocess.CalledProcessError) as exc:
        require(f"This test makes a certificate with the openssl command, which failed ({exc})")
    return tmp_path / "cert.pem"


async def test_rediss_connects_over_tls_with_the_certificates_the_url_names(
    private_redis: Callable[..., PrivateRedis], certificate: Path
) -> None:
    port = free_port()
    private_redis(
        "--tls-port", str(port), "--tls-cert-file", str(certificate),
        "--tls-key-file", str(certificate.with_name("key.pem")),
        "--tls-ca-cert-file", str(certificate), "--tls-auth-clients", "no",
    )  # fmt: skip
    url = f"rediss://127.0.0.1:{port}/0"

    async with open_storage(f"{url}?ssl_ca_certs={certificate}&prefix=tls:") as storage:
        await storage.save(Session.new_from_task("s1", "start"))
        assert (await storage.get("s1")).version == 1  # type: ignore[union-attr]
    async with open_storage(f"{url}?ssl_cert_reqs=none") as storage:
        assert await storage.get("s1") is None  # unchecked certificate; another prefix

    with pytest.raises(StorageError, match=r"TLS certificate is not trusted here") as caught:
        await open_storage(url, connect_timeout=2).get("s1")  # its CA is not trusted
    assert f"Could not connect to {url}" in str(caught.value)


async def test_unix_connects_through_the_socket_the_url_names(
    private_redis: Callable[..., PrivateRedis], tmp_path: Path
) -> None:
    socket = tmp_path / "redis.sock"
    server = private_redis("--unixsocket", str(socket), "--unixsocketperm", "700")

    async with open_storage(f"unix://{socket}?db=2&prefix=app:") as storage:
        assert storage.url == f"unix://{socket}?db=2"
        await storage.save(Session.new_from_task("s1", "start"))
    with server.client(db=2) as client:
        assert client.hget("app:{s1}", "v") == b"1"
