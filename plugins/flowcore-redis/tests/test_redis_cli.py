"""``flowcore sessions list/show/delete/cleanup`` on a redis:// URL, through the real command."""

from __future__ import annotations

import json

import redis
from flowcore_redis import RedisSessionStorage
from redis_servers import free_port

from flowcore import Session
from flowcore.testing import run_flowcore


def flowcore(*args: str) -> tuple[int, str, str]:
    """Run the flowcore command as a user does, with flowcore-redis loaded."""
    done = run_flowcore(*args, load_plugins="redis")
    return done.returncode, done.stdout, done.stderr


async def test_the_sessions_commands_list_show_and_delete_redis_sessions(
    redis_url: str, prefix: str, raw: redis.Redis
) -> None:
    async with RedisSessionStorage(redis_url, prefix=prefix) as storage:
        for session_id in ("claim-2", "claim-1", "claim-10"):
            await storage.save(Session.new_from_task(session_id, "intake", context={"amount": 100}))
    url = f"{redis_url}?prefix={prefix}"

    assert flowcore("sessions", "list", "--storage", url) == (
        0,
        "claim-1\nclaim-10\nclaim-2\n",
        "",
    )
    code, out, err = flowcore("sessions", "show", "claim-2", "--storage", url)
    assert code == 0, err
    shown = json.loads(out)
    assert (shown["id"], shown["version"], shown["context"]["amount"]) == ("claim-2", 1, 100)
    assert flowcore("sessions", "delete", "claim-2", "--storage", url) == (
        0,
        "deleted 'claim-2'\n",
        "",
    )
    assert flowcore("sessions", "cleanup", "--storage", url) == (
        0,
        "deleted 0 expired sessions\n",
        "",
    )
    assert raw.zrange(f"{prefix}sessions", 0, -1) == [b"claim-1", b"claim-10"]


def test_a_server_that_does_not_answer_is_one_line_naming_the_url_without_its_password() -> None:
    url = f"redis://app:s3cret@127.0.0.1:{free_port()}/0?connect_timeout=1"

    code, out, err = flowcore("sessions", "list", "--storage", url)

    assert (code, out) == (1, "")
    assert err.startswith("flowcore: StorageError: Could not connect to redis://app:***@127.0.0.1:")
    assert err.count("\n") == 1
    assert "s3cret" not in err
