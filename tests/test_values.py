"""NextAction, ExecutionStatus, ExecutionResult and TaskResult: small immutable values.

They compare by value, hash, print readably, survive copy/deepcopy, and work in ``match``.
"""

from __future__ import annotations

import copy

import pytest

from flowcore import ExecutionResult, ExecutionStatus, NextAction, TaskResult

SINGLE_ACTIONS = [
    NextAction.Continue,
    NextAction.ContinueAndExecute,
    NextAction.WaitForInput,
    NextAction.End,
    NextAction.GoBack,
]
SINGLE_ACTION_NAMES = ["Continue", "ContinueAndExecute", "WaitForInput", "End", "GoBack"]


def describe(action: NextAction) -> str:
    """What a caller typically writes: a match over the actions a task returned."""
    match action:
        case NextAction.End:
            return "end"
        case NextAction.GoTo(task_id=target):
            return f"jump to {target}"
        case NextAction.Continue | NextAction.ContinueAndExecute:
            return "continue"
        case _:
            return "other"


# -- NextAction -----------------------------------------------------------------------------


def test_singletons_are_distinct_and_each_equal_to_itself():
    for i, a in enumerate(SINGLE_ACTIONS):
        for j, b in enumerate(SINGLE_ACTIONS):
            assert (a == b) is (i == j)
            assert (a != b) is (i != j)


def test_goto_compares_and_hashes_by_task_id():
    assert NextAction.GoTo("review") == NextAction.GoTo("review")
    assert NextAction.GoTo("review") != NextAction.GoTo("publish")
    assert hash(NextAction.GoTo("review")) == hash(NextAction.GoTo("review"))
    assert NextAction.GoTo("review") not in SINGLE_ACTIONS


def test_actions_work_as_dict_keys_and_in_sets():
    seen = {NextAction.End, NextAction.GoTo("a"), NextAction.GoTo("a"), NextAction.End}
    assert seen == {NextAction.End, NextAction.GoTo("a")}
    labels = {NextAction.GoTo("a"): "first", NextAction.Continue: "next"}
    assert labels[NextAction.GoTo("a")] == "first"
    assert labels[NextAction.Continue] == "next"


def test_goto_is_a_next_action():
    assert isinstance(NextAction.GoTo("x"), NextAction)
    assert NextAction.GoTo("x").task_id == "x"
    assert NextAction.GoTo(task_id="x") == NextAction.GoTo("x")


@pytest.mark.parametrize("bad_id", [1, None, b"x", ["x"]])
def test_goto_with_a_non_str_id_raises_type_error(bad_id):
    with pytest.raises(TypeError, match=type(bad_id).__name__):
        NextAction.GoTo(bad_id)


@pytest.mark.parametrize("action", [*SINGLE_ACTIONS, NextAction.GoTo("x")])
def test_setting_an_attribute_on_an_action_raises_attribute_error(action):
    before = (action.name, str(action))
    with pytest.raises(AttributeError):
        action.name = "Continue" if action.name == "End" else "End"
    with pytest.raises(AttributeError):
        action.anything = 1
    assert (action.name, str(action)) == before


def test_goto_task_id_cannot_be_reassigned():
    jump = NextAction.GoTo("a")
    with pytest.raises(AttributeError):
        jump.task_id = "b"
    assert jump.task_id == "a"


def test_str_gives_the_short_name():
    assert [str(a) for a in SINGLE_ACTIONS] == SINGLE_ACTION_NAMES
    assert str(NextAction.GoTo("review")) == "GoTo(review)"


def test_repr_reads_like_the_code_that_makes_the_value():
    assert repr(NextAction.End) == "NextAction.End"
    assert repr(NextAction.ContinueAndExecute) == "NextAction.ContinueAndExecute"
    assert repr(NextAction.GoTo("review")) == "NextAction.GoTo('review')"


def test_match_on_singletons_and_goto_by_keyword():
    assert describe(NextAction.End) == "end"
    assert describe(NextAction.GoTo("review")) == "jump to review"
    assert describe(NextAction.ContinueAndExecute) == "continue"
    assert describe(NextAction.WaitForInput) == "other"
    assert describe(NextAction.GoBack) == "other"


def test_match_goto_positionally():
    match NextAction.GoTo("publish"):
        case NextAction.End:
            target = None
        case NextAction.GoTo(t):
            target = t
    assert target == "publish"


def test_a_singleton_does_not_match_the_goto_class_pattern():
    match NextAction.Continue:
        case NextAction.GoTo(_):
            matched = "goto"
        case _:
            matched = "not goto"
    assert matched == "not goto"


@pytest.mark.parametrize("copier", [copy.copy, copy.deepcopy])
def test_copies_keep_singletons_identical(copier):
    for action in SINGLE_ACTIONS:
        assert copier(action) is action
    jump = NextAction.GoTo("x")
    copied = copier(jump)
    assert copied == jump
    assert isinstance(copied, type(jump))
    assert describe(copied) == "jump to x"


def test_deepcopy_of_a_structure_keeps_singletons_usable_in_match():
    plan = copy.deepcopy({"after": [NextAction.End, NextAction.GoTo("b")]})
    assert plan["after"][0] is NextAction.End
    assert [describe(a) for a in plan["after"]] == ["end", "jump to b"]


# -- ExecutionStatus ------------------------------------------------------------------------


def outcome(status: ExecutionStatus) -> str:
    match status:
        case ExecutionStatus.Completed:
            return "done"
        case ExecutionStatus.WaitingForInput:
            return "ask the user"
        case ExecutionStatus.Paused(next_task_id=n):
            return f"resume at {n}"
        case ExecutionStatus.Error(message=m):
            return f"failed: {m}"
    return "unknown"


def test_status_singletons_and_classes_compare_by_value():
    assert ExecutionStatus.Completed == ExecutionStatus.Completed
    assert ExecutionStatus.Completed != ExecutionStatus.WaitingForInput
    assert ExecutionStatus.Paused("b", "why") == ExecutionStatus.Paused("b", "why")
    assert ExecutionStatus.Paused("b", "why") != ExecutionStatus.Paused("b", "other")
    assert ExecutionStatus.Paused("b", "why") != ExecutionStatus.Paused("c", "why")
    assert ExecutionStatus.Error("boom") == ExecutionStatus.Error("boom")
    assert ExecutionStatus.Error("boom") != ExecutionStatus.Error("bang")
    assert ExecutionStatus.Error("b") != ExecutionStatus.Paused("b", "b")


def test_statuses_are_not_equal_to_actions():
    assert ExecutionStatus.Completed != NextAction.End
    assert ExecutionStatus.WaitingForInput != NextAction.WaitForInput


def test_status_hash_follows_equality():
    statuses = {
        ExecutionStatus.Paused("b", "why"),
        ExecutionStatus.Paused("b", "why"),
        ExecutionStatus.Error("boom"),
        ExecutionStatus.Error("boom"),
        ExecutionStatus.Completed,
    }
    assert len(statuses) == 3


def test_status_fields():
    paused = ExecutionStatus.Paused("b", "Task completed")
    assert (paused.next_task_id, paused.reason) == ("b", "Task completed")
    assert ExecutionStatus.Error("boom").message == "boom"
    assert isinstance(paused, ExecutionStatus)


@pytest.mark.parametrize(
    "status",
    [
        ExecutionStatus.Completed,
        ExecutionStatus.WaitingForInput,
        ExecutionStatus.Paused("b", "why"),
        ExecutionStatus.Error("boom"),
    ],
)
def test_statuses_are_immutable(status):
    with pytest.raises(AttributeError):
        status.anything = 1
    for field in ("next_task_id", "reason", "message", "name"):
        if hasattr(status, field):
            before = getattr(status, field)
            with pytest.raises(AttributeError):
                setattr(status, field, "changed")
            assert getattr(status, field) == before


def test_status_repr_is_readable():
    assert repr(ExecutionStatus.Completed) == "ExecutionStatus.Completed"
    assert repr(ExecutionStatus.WaitingForInput) == "ExecutionStatus.WaitingForInput"
    assert (
        repr(ExecutionStatus.Paused("b", "Task completed"))
        == "ExecutionStatus.Paused(next_task_id='b', reason='Task completed')"
    )
    assert repr(ExecutionStatus.Error("boom")) == "ExecutionStatus.Error(message='boom')"


def test_match_on_every_status():
    assert outcome(ExecutionStatus.Completed) == "done"
    assert outcome(ExecutionStatus.WaitingForInput) == "ask the user"
    assert outcome(ExecutionStatus.Paused("b", "why")) == "resume at b"
    assert outcome(ExecutionStatus.Error("boom")) == "failed: boom"


def test_match_paused_positionally():
    match ExecutionStatus.Paused("b", "why"):
        case ExecutionStatus.Paused(n, reason):
            got = (n, reason)
    assert got == ("b", "why")


@pytest.mark.parametrize("bad", [None, 3])
def test_status_fields_must_be_str(bad):
    with pytest.raises(TypeError):
        ExecutionStatus.Paused(bad, "why")
    with pytest.raises(TypeError):
        ExecutionStatus.Paused("b", bad)
    with pytest.raises(TypeError):
        ExecutionStatus.Error(bad)


@pytest.mark.parametrize("copier", [copy.copy, copy.deepcopy])
def test_status_copies_keep_singletons_identical(copier):
    assert copier(ExecutionStatus.Completed) is ExecutionStatus.Completed
    assert copier(ExecutionStatus.WaitingForInput) is ExecutionStatus.WaitingForInput
    paused = ExecutionStatus.Paused("b", "why")
    assert copier(paused) == paused
    assert outcome(copier(paused)) == "resume at b"
    assert outcome(copier(ExecutionStatus.Error("x"))) == "failed: x"


# -- ExecutionResult ------------------------------------------------------------------------


def test_execution_result_compares_by_value():
    done = ExecutionResult("bye", ExecutionStatus.Completed)
    assert done == ExecutionResult("bye", ExecutionStatus.Completed)
    assert done != ExecutionResult("hi", ExecutionStatus.Completed)
    assert done != ExecutionResult("bye", ExecutionStatus.WaitingForInput)
    assert hash(done) == hash(ExecutionResult("bye", ExecutionStatus.Completed))
    assert (done.response, done.status) == ("bye", ExecutionStatus.Completed)


def test_execution_result_repr_shows_response_and_status():
    result = ExecutionResult(None, ExecutionStatus.Paused("b", "why"))
    assert repr(result) == (
        "ExecutionResult(response=None, "
        "status=ExecutionStatus.Paused(next_task_id='b', reason='why'))"
    )


def test_execution_result_is_immutable():
    result = ExecutionResult("x", ExecutionStatus.Completed)
    with pytest.raises(AttributeError):
        result.response = "y"
    with pytest.raises(AttributeError):
        result.status = ExecutionStatus.WaitingForInput
    assert result == ExecutionResult("x", ExecutionStatus.Completed)


def test_match_on_execution_result():
    def handle(result: ExecutionResult) -> str:
        match result:
            case ExecutionResult(response=r, status=ExecutionStatus.Completed):
                return f"finished with {r}"
            case ExecutionResult(r, ExecutionStatus.Paused(next_task_id=n)):
                return f"{r}; next {n}"
            case ExecutionResult(status=ExecutionStatus.WaitingForInput):
                return "waiting"
        return "other"

    assert handle(ExecutionResult("ok", ExecutionStatus.Completed)) == "finished with ok"
    assert handle(ExecutionResult("hi", ExecutionStatus.Paused("b", "why"))) == "hi; next b"
    assert handle(ExecutionResult(None, ExecutionStatus.WaitingForInput)) == "waiting"
    assert handle(ExecutionResult(None, ExecutionStatus.Error("x"))) == "other"


def test_execution_result_status_must_be_an_execution_status():
    with pytest.raises(TypeError, match="NextAction"):
        ExecutionResult("x", NextAction.End)


# -- TaskResult -----------------------------------------------------------------------------


def test_task_result_defaults():
    result = TaskResult()
    assert result.response is None
    assert result.next_action == NextAction.Continue
    assert result.status_message is None
    assert result.task_id is None


def test_task_result_takes_response_action_and_status_message():
    result = TaskResult("hello", NextAction.GoTo("b"), "greeted")
    assert result.response == "hello"
    assert result.next_action == NextAction.GoTo("b")
    assert result.status_message == "greeted"
    assert TaskResult(next_action=NextAction.End).next_action is NextAction.End


def test_move_to_next():
    result = TaskResult.move_to_next()
    assert result.response is None
    assert result.next_action == NextAction.Continue
    assert result.status_message is None


def test_move_to_next_direct():
    result = TaskResult.move_to_next_direct()
    assert result.response is None
    assert result.next_action == NextAction.ContinueAndExecute
    assert result.status_message is None


def test_move_to_next_gives_a_fresh_result_each_time():
    first = TaskResult.move_to_next()
    first.response = "changed"
    assert TaskResult.move_to_next().response is None


@pytest.mark.parametrize(
    ("bad", "type_name"),
    [("End", "str"), (None, "NoneType"), (NextAction.GoTo, "type"), (3, "int")],
)
def test_task_result_with_a_bad_next_action_raises_type_error_naming_the_type(bad, type_name):
    with pytest.raises(TypeError, match=rf"\b{type_name}\b"):
        TaskResult("x", bad)


@pytest.mark.parametrize(("bad", "type_name"), [("End", "str"), (3, "int")])
def test_setting_a_bad_next_action_later_raises_type_error_naming_the_type(bad, type_name):
    # A task may build its result and adjust it before returning; a wrong type must be caught
    # here, where the mistake is, rather than surfacing later from inside the engine.
    result = TaskResult.move_to_next()
    result.next_action = NextAction.End  # a NextAction is fine
    with pytest.raises(TypeError, match=rf"\b{type_name}\b"):
        result.next_action = bad
    assert result.next_action is NextAction.End


def test_task_result_with_an_execution_status_as_action_is_rejected():
    with pytest.raises(TypeError, match="ExecutionStatus"):
        TaskResult("x", ExecutionStatus.Completed)
