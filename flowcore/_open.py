"""open_storage(url): the storage backend a plugin registered for the URL's scheme."""

from __future__ import annotations

import re
from typing import Any

from flowcore import _plugins
from flowcore._errors import PluginError, StorageError, quote_id
from flowcore._storage import SessionStorage

__all__ = ["hide_password", "open_storage", "scheme_of", "storage_schemes"]

_PASSWORD = re.compile(r"(://[^:/@?#]*:)[^@/?#]*@")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")  # RFC 3986


def hide_password(url: str) -> str:
    """``url`` with its password, if any, shown as ``***``: for messages and logs."""
    return _PASSWORD.sub(r"\1***@", url)


def storage_schemes() -> list[str]:
    """The URL schemes ``open_storage`` knows, sorted."""
    return sorted(_plugins.registry().storage)


def scheme_of(url: str) -> str:
    """The storage scheme of ``url`` (``"postgresql"`` for ``postgresql+asyncpg://...``)."""
    if type(url) is not str:
        raise StorageError(
            f"A storage URL must be a str, got {type(url).__name__}: {quote_id(url)}"
        )
    if "://" not in url:
        raise StorageError(
            f"'{hide_password(url)}' is not a storage URL: expected scheme://..., "
            "e.g. 'memory://' or 'sqlite:///sessions.db'. "
            f"Known schemes: {', '.join(storage_schemes())}"
        )
    # "postgresql+asyncpg://..." picks the "postgresql" factory, which reads the driver itself.
    # The scheme is all the core reads: the rest of the URL (an unbalanced "[::1", say) is the
    # backend's to judge, with its own clear error.
    scheme = url.split("://", 1)[0]
    if not _SCHEME.fullmatch(scheme):
        raise StorageError(
            f"{quote_id(hide_password(url))} is not a storage URL: its scheme "
            f"{quote_id(scheme)} is not letters, digits, '+', '-' or '.' after a letter. "
            f"Known schemes: {', '.join(storage_schemes())}"
        )
    return scheme.split("+", 1)[0].lower()


def open_storage(url: str, **options: Any) -> SessionStorage:
    """A storage backend for ``url`` (``memory://`` built in; others come from plugins).

    A backend that must connect does so on first use or in ``async with``. An unknown scheme
    raises StorageError listing the known ones; a scheme two plugins claim raises PluginError.
    """
    scheme = scheme_of(url)
    registry = _plugins.registry()
    factory = registry.storage_factory(scheme)
    if factory is None:
        raise StorageError(
            f"No storage backend for scheme '{scheme}' (from '{hide_password(url)}'). "
            f"Installed schemes: {', '.join(storage_schemes())}. "
            "Install the plugin that provides it (e.g. flowcore-sql for sqlite:// and postgresql://)"
        )
    try:
        storage = factory(url, **options)
    except StorageError:
        raise  # the backend's own clear error
    except Exception as exc:
        # A backend turns its driver's errors into StorageError; anything else is its bug.
        raise PluginError(
            f"The '{scheme}' storage factory of plugin '{registry.storage_plugin(scheme)}' "
            f"raised {type(exc).__name__} while opening {quote_id(hide_password(url))}: "
            f"{quote_id(str(exc))[1:-1]}; report it to the plugin's authors"
        ) from exc
    if not isinstance(storage, SessionStorage):
        raise PluginError(
            f"The '{scheme}' storage factory of plugin '{registry.storage_plugin(scheme)}' "
            f"returned {type(storage).__name__}, not a flowcore.SessionStorage"
        )
    return storage
