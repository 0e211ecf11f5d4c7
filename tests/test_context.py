"""Context: the string-keyed data a task reads and writes, plus a capped chat history."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from flowcore import ChatMessage, Context, ContextError, GraphError, MessageRole

# -- data -----------------------------------------------------------------------------------


def test_set_then_get():
    ctx = Context()
    ctx.set("customer", "Ada")
    ctx.set("items", 3)
    assert ctx.get("customer") == "Ada"
    assert ctx.get("items") == 3


def test_set_replaces_the_previous_value():
    ctx = Context()
    ctx.set("step", 1)
    ctx.set("step", 2)
    assert ctx.get("step") == 2
    assert len(ctx) == 1


def test_get_of_a_missing_key_gives_the_default():
    ctx = Context()
    assert ctx.get("missing") is None
    assert ctx.get("missing", "fallback") == "fallback"


def test_get_of_a_stored_none_gives_none_not_the_default():
    ctx = Context()
    ctx.set("answer", None)
    assert ctx.get("answer", "fallback") is None
    assert "answer" in ctx


def test_set_stores_the_object_itself():
    ctx = Context()
    order = {"items": ["tea"]}
    ctx.set("order", order)
    assert ctx.get("order") is order
    # A task may change a stored value in place; the context sees it.
    order["items"].append("cake")
    assert ctx.get("order")["items"] == ["tea", "cake"]


def test_remove_returns_the_value_and_forgets_the_key():
    ctx = Context()
    ctx.set("token", "abc")
    assert ctx.remove("token") == "abc"
    assert "token" not in ctx
    assert ctx.get("token") is None


def test_remove_of_a_missing_key_returns_none():
    ctx = Context()
    ctx.set("kept", 1)
    assert ctx.remove("missing") is None
    assert ctx.get("kept") == 1


def test_contains_keys_and_len():
    ctx = Context()
    assert len(ctx) == 0
    assert list(ctx.keys()) == []
    ctx.set("a", 1)
    ctx.set("b", 2)
    assert "a" in ctx
    assert "c" not in ctx
    assert sorted(ctx.keys()) == ["a", "b"]
    assert len(ctx) == 2


def test_clear_removes_the_data_but_keeps_the_chat():
    ctx = Context()
    ctx.set("a", 1)
    ctx.set("b", 2)
    ctx.add_user_message("hello")
    ctx.clear()
    assert len(ctx) == 0
    assert "a" not in ctx
    assert ctx.chat_history_len() == 1
    assert ctx.get_chat_history()[0].content == "hello"


NON_STR_KEYS = [1, None, b"key", ("a",), ["a"], 1.5]


@pytest.mark.parametrize("key", NON_STR_KEYS, ids=lambda k: type(k).__name__)
@pytest.mark.parametrize(
    "use",
    [
        pytest.param(lambda ctx, key: ctx.set(key, "v"), id="set"),
        pytest.param(lambda ctx, key: ctx.get(key), id="get"),
        pytest.param(lambda ctx, key: ctx.get(key, "default"), id="get-default"),
        pytest.param(lambda ctx, key: ctx.remove(key), id="remove"),
        pytest.param(lambda ctx, key: key in ctx, id="in"),
    ],
)
def test_a_non_str_key_raises_context_error_naming_its_type(use, key):
    ctx = Context()
    ctx.set("1", "string key")
    with pytest.raises(ContextError, match=rf"\b{type(key).__name__}\b"):
        use(ctx, key)
    assert list(ctx.keys()) == ["1"]
    assert ctx.get("1") == "string key"


def test_context_error_is_a_graph_error():
    with pytest.raises(GraphError):
        Context().set(42, "x")


# -- chat -----------------------------------------------------------------------------------


def test_messages_keep_role_content_and_order():
    ctx = Context()
    ctx.add_system_message("You are helpful.")
    ctx.add_user_message("Hi")
    ctx.add_assistant_message("Hello!")
    history = ctx.get_chat_history()
    assert [(m.role, m.content) for m in history] == [
        (MessageRole.SYSTEM, "You are helpful."),
        (MessageRole.USER, "Hi"),
        (MessageRole.ASSISTANT, "Hello!"),
    ]
    assert all(isinstance(m, ChatMessage) for m in history)
    assert ctx.chat_history_len() == 3


def test_chat_does_not_count_as_data():
    ctx = Context()
    ctx.add_user_message("Hi")
    assert len(ctx) == 0
    assert list(ctx.keys()) == []


def test_chat_history_is_an_independent_snapshot():
    ctx = Context()
    ctx.add_user_message("one")
    snapshot = ctx.get_chat_history()
    snapshot.clear()
    assert ctx.chat_history_len() == 1

    snapshot = ctx.get_chat_history()
    ctx.add_user_message("two")
    assert [m.content for m in snapshot] == ["one"]
    assert [m.content for m in ctx.get_chat_history()] == ["one", "two"]


def test_message_timestamps_are_aware_utc_and_current():
    before = datetime.now(timezone.utc)
    ctx = Context()
    ctx.add_user_message("now")
    after = datetime.now(timezone.utc)
    stamp = ctx.get_chat_history()[0].timestamp
    assert stamp.tzinfo is not None
    assert stamp.utcoffset() == timedelta(0)
    assert before <= stamp <= after


def test_chat_messages_are_immutable():
    ctx = Context()
    ctx.add_user_message("original")
    message = ctx.get_chat_history()[0]
    with pytest.raises(AttributeError):
        message.content = "changed"
    assert ctx.get_chat_history()[0].content == "original"


def fill(ctx: Context, count: int) -> None:
    for i in range(count):
        ctx.add_user_message(f"m{i}")


def contents(messages: list[ChatMessage]) -> list[str]:
    return [m.content for m in messages]


def test_get_last_messages_is_chronological():
    ctx = Context()
    fill(ctx, 5)
    assert contents(ctx.get_last_messages(2)) == ["m3", "m4"]
    assert contents(ctx.get_last_messages(1)) == ["m4"]


@pytest.mark.parametrize("n", [5, 6, 100])
def test_get_last_messages_gives_all_when_n_is_at_least_the_length(n):
    ctx = Context()
    fill(ctx, 5)
    assert contents(ctx.get_last_messages(n)) == ["m0", "m1", "m2", "m3", "m4"]


def test_get_last_messages_of_zero_gives_none():
    ctx = Context()
    fill(ctx, 3)
    assert ctx.get_last_messages(0) == []
    assert Context().get_last_messages(0) == []


def test_get_last_messages_is_a_copy():
    ctx = Context()
    fill(ctx, 3)
    ctx.get_last_messages(2).clear()
    ctx.get_last_messages(10).clear()
    assert ctx.chat_history_len() == 3


def test_clear_chat_history_keeps_the_data():
    ctx = Context()
    ctx.set("topic", "billing")
    fill(ctx, 3)
    ctx.clear_chat_history()
    assert ctx.chat_history_len() == 0
    assert ctx.get_chat_history() == []
    assert ctx.get("topic") == "billing"


def test_messages_for_llm():
    ctx = Context()
    ctx.add_system_message("Be brief.")
    ctx.add_user_message("What is 2+2?")
    ctx.add_assistant_message("4")
    assert ctx.messages_for_llm() == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
    ]
    assert Context().messages_for_llm() == []


# -- the chat cap ---------------------------------------------------------------------------


def test_the_cap_drops_the_oldest_messages_first():
    ctx = Context(max_chat_messages=3)
    fill(ctx, 5)
    assert ctx.chat_history_len() == 3
    assert contents(ctx.get_chat_history()) == ["m2", "m3", "m4"]
    ctx.add_assistant_message("reply")
    assert contents(ctx.get_chat_history()) == ["m3", "m4", "reply"]
    assert ctx.messages_for_llm()[-1] == {"role": "assistant", "content": "reply"}


def test_the_default_cap_is_a_thousand_messages():
    ctx = Context()
    fill(ctx, 1001)
    assert ctx.chat_history_len() == 1000
    assert ctx.get_chat_history()[0].content == "m1"
    assert ctx.get_chat_history()[-1].content == "m1000"


def test_none_means_no_cap():
    ctx = Context(max_chat_messages=None)
    fill(ctx, 1500)
    assert ctx.chat_history_len() == 1500
    assert ctx.get_chat_history()[0].content == "m0"


def test_a_cap_of_zero_keeps_no_messages():
    ctx = Context(max_chat_messages=0)
    ctx.add_user_message("hi")
    ctx.add_system_message("sys")
    assert ctx.chat_history_len() == 0
    assert ctx.get_chat_history() == []
    assert ctx.messages_for_llm() == []


@pytest.mark.parametrize("bad", [-1, 1.5, "10", True])
def test_a_bad_cap_raises_context_error(bad):
    with pytest.raises(ContextError):
        Context(max_chat_messages=bad)
