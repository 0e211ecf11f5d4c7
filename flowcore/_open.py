"""open_storage(url): pick a storage backend by the URL's scheme."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from flowcore._errors import StorageError
from flowcore._storage import InMemorySessionStorage, SessionStorage

__all__ = ["StorageFactory", "open_storage", "register_storage_scheme", "storage_schemes"]

StorageFactory = Callable[..., SessionStorage]
"""``factory(url, **options) -> SessionStorage``."""

_factories: dict[str, StorageFactory] = {}


def register_storage_scheme(scheme: str, factory: StorageFactory) -> None:
    """Make ``open_storage`` hand URLs of ``scheme`` to ``factory(url, **options)``."""
    if type(scheme) is not str or not scheme or not scheme.isascii():
        raise ValueError(f"A storage scheme must be a non-empty ASCII str, got {scheme!r}")
    key = scheme.lower()
    existing = _factories.get(key)
    if existing is not None and existing is not factory:
        raise StorageError(
            f"Storage scheme '{key}' is already registered by {_describe(existing)}; "
            f"{_describe(factory)} cannot claim it too"
        )
    _factories[key] = factory


def storage_schemes() -> list[str]:
    """The URL schemes ``open_storage`` knows, sorted."""
    return sorted(_factories)


def _describe(factory: StorageFactory) -> str:
    return f"{getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', factory)}"


def _scheme_of(url: str) -> str:
    if type(url) is not str:
        raise StorageError(f"A storage URL must be a str, got {type(url).__name__}: {url!r}")
    if "://" not in url:
        raise StorageError(
            f"'{url}' is not a storage URL: expected scheme://..., e.g. 'memory://' or "
            f"'sqlite:///sessions.db'. Known schemes: {', '.join(storage_schemes())}"
        )
    # "postgresql+asyncpg://..." picks the "postgresql" factory, which reads the driver itself.
    return urlsplit(url).scheme.split("+", 1)[0].lower()


def open_storage(url: str, **options: Any) -> SessionStorage:
    """A storage backend for ``url`` (``memory://`` built in; others come from plugins).

    A backend that must connect does so on first use or in ``async with``.
    """
    scheme = _scheme_of(url)
    factory = _factories.get(scheme)
    if factory is None:
        raise StorageError(
            f"No storage backend for scheme '{scheme}' (from '{url}'). Installed schemes: "
            f"{', '.join(storage_schemes())}. Install the plugin that provides it "
            "(e.g. flowcore-sql for sqlite:// and postgresql://)"
        )
    return factory(url, **options)


def _open_memory(url: str, **options: Any) -> InMemorySessionStorage:
    if options:
        raise TypeError(f"memory:// takes no options, got {', '.join(sorted(options))}")
    rest = url.split("://", 1)[1]
    if rest not in ("", "/"):
        raise StorageError(f"memory:// takes no host or path, got '{url}'; use 'memory://'")
    return InMemorySessionStorage()


register_storage_scheme("memory", _open_memory)
