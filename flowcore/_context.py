"""Context: the key-value data and chat history a task reads and writes.

A hot-path module: plain typed Python, compiled by Cython where ``_context.pxd`` declares the
C layout.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterable, Iterator, KeysView, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from flowcore._errors import ContextError, quote_id

__all__ = ["ChatMessage", "Context", "MessageRole", "restore_context"]

_UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1, tzinfo=_UTC)
_ONE_MICROSECOND = timedelta(microseconds=1)
_MISSING: Any = object()


class MessageRole(enum.Enum):
    """Who wrote a chat message."""

    USER = "user"
    ASSISTANT = "assistant"
    SYSTEM = "system"


class ChatMessage:
    """One chat message: ``role``, ``content`` and a UTC ``timestamp``. Immutable."""

    # The timestamp is kept as integer microseconds since the epoch: exact, cheap to store and
    # to compare; the datetime is built when asked for.
    __slots__ = ("_content", "_micros", "_role")
    __match_args__ = ("role", "content", "timestamp")

    def __init__(self, role: MessageRole, content: str, timestamp: datetime | None = None) -> None:
        if not isinstance(role, MessageRole):
            raise TypeError(f"ChatMessage role must be a MessageRole, got {type(role).__name__}")
        if type(content) is not str:
            raise TypeError(f"ChatMessage content must be a str, got {type(content).__name__}")
        if timestamp is None:
            micros = _now_micros()
        elif not isinstance(timestamp, datetime) or timestamp.tzinfo is None:
            raise TypeError("ChatMessage timestamp must be an aware datetime (UTC)")
        else:
            micros = (timestamp - _EPOCH) // _ONE_MICROSECOND
        self._role = role
        self._content = content
        self._micros = micros

    @property
    def role(self) -> MessageRole:
        """``MessageRole.USER``, ``ASSISTANT`` or ``SYSTEM``."""
        return self._role

    @property
    def content(self) -> str:
        """The text of the message."""
        return self._content

    @property
    def timestamp(self) -> datetime:
        """When the message was added, in UTC."""
        return _EPOCH + timedelta(microseconds=self._micros)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ChatMessage):
            return NotImplemented
        return (
            self._role is other._role
            and self._content == other._content
            and self._micros == other._micros
        )

    def __hash__(self) -> int:
        return hash((self._role, self._content, self._micros))

    def __repr__(self) -> str:
        return (
            f"ChatMessage(role={self._role}, content={self._content!r}, "
            f"timestamp={self.timestamp.isoformat()!r})"
        )


def _now_micros() -> int:
    return time.time_ns() // 1000


def restore_message(role: MessageRole, content: str, micros: int) -> ChatMessage:
    """A ChatMessage from the three fields of a message in a Context's flat chat, which were
    checked as they entered it (by the ``add_*message`` methods or the codec)."""
    message = ChatMessage.__new__(ChatMessage)
    message._role = role
    message._content = content
    message._micros = micros
    return message


def _key_error(key: object) -> ContextError:
    return ContextError(
        f"Context keys must be str, got {type(key).__name__}: {quote_id(key)}; "
        "convert the key with str()"
    )


_ROLE_CODES = {MessageRole.USER: 0, MessageRole.ASSISTANT: 1, MessageRole.SYSTEM: 2}
ROLES = (MessageRole.USER, MessageRole.ASSISTANT, MessageRole.SYSTEM)
"""The roles by their stored code: 0 user, 1 assistant, 2 system."""


class Context:
    """The data a task reads and writes (string keys) plus a chat history.

    ``Context(max_chat_messages=1000)`` keeps at most that many chat messages, dropping the oldest
    first; ``None`` keeps all, ``0`` keeps none. ``set`` stores the object itself: values are
    copied only when the session is saved and loaded.
    """

    # The chat is kept flat, three items a message (role code, content, microseconds), the way
    # it is stored: loading and saving a session moves the list as it is, and ChatMessage
    # objects are made only for a caller who asks for them.
    __slots__ = ("_chat", "_data", "_max_chat_messages")

    def __init__(
        self,
        data: Mapping[str, Any] | None = None,
        *,
        max_chat_messages: int | None = 1000,
    ) -> None:
        self._data: dict[str, Any] = {}
        self._chat: list[Any] = []
        self._max_chat_messages = _check_cap(max_chat_messages)
        if data is not None:
            self.update(data)

    # -- data ---------------------------------------------------------------------------------

    def set(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key`` (the object itself, not a copy)."""
        if type(key) is not str:
            raise _key_error(key)
        self._data[key] = value

    def get(self, key: str, default: Any = None) -> Any:
        """The value under ``key``, or ``default`` when there is none."""
        if type(key) is not str:
            raise _key_error(key)
        return self._data.get(key, default)

    def remove(self, key: str) -> Any:
        """Remove ``key`` and return its value (None when it was absent)."""
        if type(key) is not str:
            raise _key_error(key)
        return self._data.pop(key, None)

    def update(self, values: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> None:
        """``set`` every key and value of a mapping (or of an iterable of pairs)."""
        items = values.items() if isinstance(values, Mapping) else values
        data = self._data
        for key, value in items:
            if type(key) is not str:
                raise _key_error(key)
            data[key] = value

    def clear(self) -> None:
        """Remove every key; the chat history stays."""
        self._data.clear()

    def keys(self) -> KeysView[str]:
        """The keys, as a live view."""
        return self._data.keys()

    def items(self) -> Iterator[tuple[str, Any]]:
        """(key, value) pairs, in insertion order."""
        return iter(list(self._data.items()))

    def to_dict(self) -> dict[str, Any]:
        """A shallow copy of the data as a dict."""
        return dict(self._data)

    def __contains__(self, key: object) -> bool:
        if type(key) is not str:
            raise _key_error(key)
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._data))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Context):
            return NotImplemented
        return (
            self._data == other._data
            and self._chat == other._chat
            and self._max_chat_messages == other._max_chat_messages
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Context({self._data!r}, chat_messages={len(self._chat) // 3})"

    # -- chat ---------------------------------------------------------------------------------

    @property
    def max_chat_messages(self) -> int | None:
        """How many chat messages are kept (None: all)."""
        return self._max_chat_messages

    def _append(self, code: int, content: str, micros: int) -> None:
        chat = self._chat
        chat.append(code)
        chat.append(content)
        chat.append(micros)
        cap = self._max_chat_messages
        if cap is not None and len(chat) > 3 * cap:
            del chat[: len(chat) - 3 * cap]

    def add_message(self, message: ChatMessage) -> None:
        """Append a ChatMessage (the oldest go first once the cap is reached)."""
        if not isinstance(message, ChatMessage):
            raise ContextError(f"add_message takes a ChatMessage, got {type(message).__name__}")
        self._append(_ROLE_CODES[message._role], message._content, message._micros)

    def add_user_message(self, text: str) -> None:
        """Append a message from the user."""
        self._append(0, _check_text(text), _now_micros())

    def add_assistant_message(self, text: str) -> None:
        """Append a message from the assistant."""
        self._append(1, _check_text(text), _now_micros())

    def add_system_message(self, text: str) -> None:
        """Append a system message."""
        self._append(2, _check_text(text), _now_micros())

    def _messages(self, start: int) -> list[ChatMessage]:
        chat = self._chat
        roles = ROLES
        return [
            restore_message(roles[chat[i]], chat[i + 1], chat[i + 2])
            for i in range(start, len(chat), 3)
        ]

    def get_chat_history(self) -> list[ChatMessage]:
        """Every kept message, oldest first (an independent list)."""
        return self._messages(0)

    def get_last_messages(self, n: int) -> list[ChatMessage]:
        """The last ``n`` messages, oldest first (all if n >= the length; none if n == 0)."""
        if type(n) is not int or n < 0:
            raise ContextError(f"get_last_messages takes an int >= 0, got {n!r}")
        return self._messages(max(0, len(self._chat) - 3 * n))

    def chat_history_len(self) -> int:
        """How many messages are kept."""
        return len(self._chat) // 3

    def clear_chat_history(self) -> None:
        """Remove every chat message; the data stays."""
        self._chat.clear()

    def messages_for_llm(self) -> list[dict[str, str]]:
        """The history as ``[{"role": "user", "content": ...}, ...]``, oldest first."""
        chat = self._chat
        names = _ROLE_NAMES
        return [{"role": names[chat[i]], "content": chat[i + 1]} for i in range(0, len(chat), 3)]

    # -- undoing a failed attempt (retries, error handlers: the engine) -----------------------

    def _restore_from(self, other: Context) -> None:
        """Take over ``other``'s data and chat (used to undo a failed attempt)."""
        self._data = other._data
        self._chat = other._chat
        self._max_chat_messages = other._max_chat_messages


_ROLE_NAMES = tuple(role.value for role in ROLES)


def _check_text(text: object) -> str:
    if type(text) is not str:
        raise ContextError(
            f"A chat message must be a str, got {type(text).__name__}: {quote_id(text)}"
        )
    return text


def _check_cap(max_chat_messages: object) -> int | None:
    if max_chat_messages is not None and (
        type(max_chat_messages) is not int or max_chat_messages < 0
    ):
        raise ContextError(
            "max_chat_messages must be None or an int >= 0, got "
            f"{type(max_chat_messages).__name__}: {max_chat_messages!r}"
        )
    return max_chat_messages


def restore_context(data: dict[str, Any], chat: list[Any], max_chat_messages: object) -> Context:
    """A Context over stored ``data`` and flat ``chat`` that the caller (the codec) checked."""
    ctx = Context.__new__(Context)
    ctx._data = data
    ctx._chat = chat
    ctx._max_chat_messages = _check_cap(max_chat_messages)
    return ctx
