"""Reading Redis URLs: ``redis://``, ``rediss://`` (TLS) and ``unix://`` (a Unix socket).

A URL the plugin cannot serve fails here, in ``open_storage``, with a StorageError that says what
is wrong and what to write instead; every message shows the URL with its password hidden. The
query may hold the storage's options (``?prefix=app:&ttl=3600``, read by ``_options``) and the
connection's own parameters (``db``, and the TLS settings of a ``rediss://`` URL).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from flowcore import StorageError, StorageOption, hide_password, quote_id, resolve_storage_options

__all__ = ["CONNECTION_QUERY", "RedisAddress", "redis_url"]

_EXAMPLES = (
    "e.g. redis://localhost:6379/0, rediss://user:password@redis.example.com:6380/0 or "
    "unix:///run/redis/redis.sock?db=0"
)
_DEFAULT_PORT = 6379
_CERT_REQS = ("none", "optional", "required")
_TLS_QUERY = (
    "ssl_cert_reqs",
    "ssl_check_hostname",
    "ssl_ca_certs",
    "ssl_ca_path",
    "ssl_certfile",
    "ssl_keyfile",
)
_TLS_FLAGS = {"ssl_check_hostname": StorageOption.flag("ssl_check_hostname", True)}
CONNECTION_QUERY = ("db", *_TLS_QUERY)
"""What a URL's query may give for the connection, beside the storage's options."""


class RedisAddress:
    """A Redis URL, checked: how to connect (keyword arguments for redis-py's connection pool,
    with ``kind`` saying ``tcp``, ``tls`` or ``unix``), the URL as messages show it (password
    hidden, without the storage's options) and the storage's options from its query."""

    __slots__ = ("connection", "options", "shown")

    def __init__(
        self, connection: dict[str, Any], shown: str, options: dict[str, str | tuple[str, ...]]
    ) -> None:
        self.connection = connection
        self.shown = shown
        self.options = options


def redis_url(url: str) -> RedisAddress:
    """Check a ``redis://``, ``rediss://`` or ``unix://`` URL: address, database and query."""
    if type(url) is not str:
        raise StorageError(f"A storage URL must be a str, got {type(url).__name__}")
    shown = quote_id(hide_password(url))
    try:
        parts = urlsplit(url)
        if parts.fragment:
            raise StorageError(
                f"{shown} has a fragment (#{parts.fragment[:20]}...): a '#' in a password must "
                "be written %23, as every special character of a URL's user and password is "
                "percent-encoded"
            )
        port = parts.port
        hostname = parts.hostname
    except ValueError as exc:
        hint = ""
        if "[" in url or "]" in url:
            hint = "; write an IPv6 host in brackets, e.g. redis://[::1]:6379/0"
        raise StorageError(
            f"{shown} is not a Redis URL ({exc}){hint}; expected {_EXAMPLES}"
        ) from None
    scheme = parts.scheme.lower()
    if scheme not in ("redis", "rediss", "unix"):
        raise StorageError(
            f"flowcore-redis serves redis://, rediss:// and unix:// URLs, not '{scheme}://' "
            f"(from {shown}); use {_EXAMPLES}"
        )
    query = _query(parts.query, shown)
    connection: dict[str, Any] = {}
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if username:
        connection["username"] = username
    if password is not None:
        connection["password"] = password
    db_text = query.pop("db", None)
    if scheme == "unix":
        path = unquote(parts.path)
        if not path or parts.hostname:
            raise StorageError(
                f"{shown} names no socket: a unix:// URL is the socket's path, e.g. "
                "unix:///run/redis/redis.sock?db=0 (three slashes: no host)"
            )
        connection.update(kind="unix", path=path)
        db = _database(db_text, shown)
    else:
        if not hostname:
            raise StorageError(
                f"{shown} names no host: flowcore-redis would connect to whatever server "
                f"answers on localhost. Name it, {_EXAMPLES}"
            )
        if port is not None and not 1 <= port <= 65535:
            raise StorageError(
                f"{shown}: port {port} is out of range; a port is a number from 1 to 65535 "
                "(Redis's is usually 6379)"
            )
        from_path = parts.path.strip("/")
        if from_path and db_text is not None:
            raise StorageError(
                f"{shown} gives the database both in its path and as db= in its query; give it once"
            )
        db = _database(from_path or db_text, shown)
        connection.update(
            kind="tls" if scheme == "rediss" else "tcp",
            host=unquote(hostname),
            port=port or _DEFAULT_PORT,
        )
    connection["db"] = db
    tls = {name: query.pop(name) for name in _TLS_QUERY if name in query}
    if tls and scheme != "rediss":
        raise StorageError(
            f"{shown}: {', '.join(tls)} set TLS, which a {scheme}:// URL does not use; for TLS "
            "write rediss://"
        )
    for name, text in tls.items():
        connection[name] = _tls_value(name, text, shown)
    return RedisAddress(connection, _shown(scheme, connection, tls), query)


def _query(text: str, shown: str) -> dict[str, str | tuple[str, ...]]:
    query: dict[str, str | tuple[str, ...]] = {}
    for name, values in parse_qs(text, keep_blank_values=True).items():
        query[name] = values[0] if len(values) == 1 else tuple(values)
    for name in CONNECTION_QUERY:
        value = query.get(name)
        if isinstance(value, tuple):
            raise StorageError(f"{shown} gives {name} {len(value)} times; give it once")
    if "password" in query:
        raise StorageError(
            f"{shown} gives the password in its query, where logs would show it: put it in "
            "the URL's user part instead, e.g. redis://:password@host:6379/0 or "
            "unix://:password@/run/redis/redis.sock"
        )
    return query


def _database(text: str | tuple[str, ...] | None, shown: str) -> int:
    if text is None or text == "":
        return 0
    assert isinstance(text, str)
    if not text.isdigit():
        raise StorageError(
            f"{shown}: the database {quote_id(text)} is not a number; Redis numbers its "
            "databases from 0, e.g. redis://localhost:6379/0"
        )
    return int(text)


def _tls_value(name: str, text: str | tuple[str, ...], shown: str) -> Any:
    assert isinstance(text, str)
    if name == "ssl_cert_reqs":
        if text.lower() not in _CERT_REQS:
            raise StorageError(
                f"{shown}: ssl_cert_reqs={quote_id(text)} is not one of {', '.join(_CERT_REQS)}"
            )
        return text.lower()
    if name in _TLS_FLAGS:  # true or false, as the storage's own flags read
        return resolve_storage_options(_TLS_FLAGS, {}, {name: text}, shown)[name]
    if not text:
        raise StorageError(f"{shown}: {name}= names no file")
    return text


def _shown(scheme: str, connection: dict[str, Any], tls: dict[str, Any]) -> str:
    """The URL as messages show it: password hidden, the storage's options left out."""
    user = quote(connection.get("username") or "", safe="")
    if "password" in connection:
        user += ":***"
    at = f"{user}@" if user else ""
    if scheme == "unix":
        where = f"unix://{at}{quote(connection['path'])}"
        query = {"db": str(connection["db"])} if connection["db"] else {}
    else:
        host = connection["host"]
        host = f"[{host}]" if ":" in host else host
        where = f"{scheme}://{at}{host}:{connection['port']}/{connection['db']}"
        query = {}
    query.update({name: str(value) for name, value in tls.items()})
    if query:
        where += "?" + "&".join(f"{name}={quote(value, safe='/')}" for name, value in query.items())
    return where
