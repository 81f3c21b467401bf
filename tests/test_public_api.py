"""The public surface: every ``__all__`` is exactly this sorted list, and the SDK's
public names are the SDK's own.

Why pinned: a name added to or dropped from ``__all__`` is an API change, and it should
be one on purpose (this test then changes with it), never by accident of an import.
"""

from __future__ import annotations

import types
from typing import Any

import pytest

import aiki
import aiki._errors
import aiki.codecs
import aiki.embedded
import aiki.engine
import aiki.testing
import aiki_server

AIKI = [
    "AikiError",
    "ChildHandle",
    "Client",
    "CodecError",
    "Concurrency",
    "ConfigurationError",
    "ConnectionFailed",
    "EventTimeout",
    "InvalidPayload",
    "InvalidState",
    "NonDeterminismError",
    "NonRetryableError",
    "PayloadTooLarge",
    "RateLimit",
    "RedisStreams",
    "Retry",
    "RunConflict",
    "RunContextFilter",
    "RunDidNotComplete",
    "RunHandle",
    "RunNotFound",
    "RunPage",
    "RunRecord",
    "Schedule",
    "ServerError",
    "Task",
    "TaskContext",
    "TaskFailed",
    "TaskTimeout",
    "UnknownWorkflow",
    "WaitTimeout",
    "Worker",
    "Workflow",
    "WorkflowCancelled",
    "WorkflowContext",
    "WorkflowFailed",
    "WorkflowRegistry",
    "WorkflowTimeout",
    "WorkflowVersion",
    "client",
    "task",
    "task_context",
    "worker",
    "workflow",
]

ERRORS = [
    "AikiError",
    "CodecError",
    "ConfigurationError",
    "ConnectionFailed",
    "EventTimeout",
    "InvalidPayload",
    "InvalidState",
    "NonDeterminismError",
    "NonRetryableError",
    "PayloadTooLarge",
    "RunConflict",
    "RunDidNotComplete",
    "RunNotFound",
    "ServerError",
    "TaskFailed",
    "TaskTimeout",
    "UnknownWorkflow",
    "WaitTimeout",
    "WorkflowCancelled",
    "WorkflowFailed",
    "WorkflowTimeout",
]

ENGINE = [
    "Backoff",
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "DEFAULT_MAX_RESULT_BYTES",
    "DURABILITY_MODES",
    "DeadLetter",
    "DeadLetterNotFound",
    "GROUP",
    "HISTORY_FORMAT",
    "HttpApi",
    "Keys",
    "MAX_JSON_DEPTH",
    "MAX_MS",
    "MAX_PRIORITY",
    "MAX_SECONDS",
    "RUN_STATUSES",
    "RedisAddress",
    "RunEndedListener",
    "RunQuery",
    "RunRecord",
    "ScheduleNotFound",
    "ScriptRefused",
    "StartOutcome",
    "StartRequest",
    "Store",
    "TERMINAL_STATUSES",
    "check_durability",
    "check_json_depth",
    "choose_run_id",
    "connect",
    "continue_trace",
    "create_schedule",
    "delete_schedule",
    "encode_payload",
    "history_of",
    "json_dumps",
    "json_type",
    "list_schedules",
    "open_asyncio_bridge",
    "open_fsync_barrier",
    "pause_schedule",
    "resolve_implementation",
    "resume_schedule",
    "serve_retention",
    "serve_schedules",
    "serve_timers",
    "start_run",
    "trigger_schedule",
    "wait_for_end",
    "watch_generation",
]

TESTING = ["TestEnvironment", "mock_task", "open_test_environment", "replay", "run_task"]

EMBEDDED = [
    "ENV_REDIS_SERVER",
    "EmbeddedRedisError",
    "RedisServerProcess",
    "find_redis_server",
    "free_port",
    "open_embedded_redis",
]

SERVER = ["ServerHandle", "Settings", "create_app", "serve_server"]

CODECS = ["Codec", "CodecError", "Compression", "Encryption", "describe", "load_keys"]

MODULES = [
    (aiki, AIKI),
    (aiki._errors, ERRORS),
    (aiki.engine, ENGINE),
    (aiki.testing, TESTING),
    (aiki.embedded, EMBEDDED),
    (aiki_server, SERVER),
    (aiki.codecs, CODECS),
]


@pytest.mark.parametrize(("module", "expected"), MODULES, ids=lambda v: getattr(v, "__name__", ""))
def test_all_is_exactly_this_sorted_list(module: types.ModuleType, expected: list[str]) -> None:
    assert expected == sorted(expected)  # the pinned list itself is sorted
    assert module.__all__ == expected
    for name in module.__all__:
        assert hasattr(module, name), f"{module.__name__}.{name} is in __all__ but missing"


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, Any] = {}
    exec("from aiki import *", namespace)
    namespace.pop("__builtins__")
    assert sorted(namespace) == AIKI
    for name in AIKI:
        assert getattr(aiki, name) is namespace[name]


def test_no_public_name_is_left_out_of_all() -> None:
    public = {
        name
        for name, value in vars(aiki).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public - set(aiki.__all__) == set(), "public names missing from __all__"


def test_every_exception_is_under_the_one_root() -> None:
    for name in aiki.__all__:
        value = getattr(aiki, name)
        if isinstance(value, type) and issubclass(value, BaseException):
            assert issubclass(value, aiki.AikiError), name


@pytest.mark.parametrize("module", [aiki, aiki.engine, aiki.testing, aiki.embedded])
def test_no_public_name_of_the_sdk_comes_from_the_server(module: types.ModuleType) -> None:
    for name in module.__all__:
        value = getattr(module, name)
        origin = getattr(value, "__module__", None) or ""
        assert not origin.startswith("aiki_server"), f"{module.__name__}.{name} is {origin}"


def test_a_run_that_did_not_complete_is_one_catchable_error() -> None:
    """``except aiki.RunDidNotComplete`` around wait_for_completion catches a failed and a
    cancelled run, not a wait that ran out (the run goes on) nor a bad argument."""
    failed = aiki.WorkflowFailed("r1", {"type": "ValueError", "message": "no"})
    cancelled = aiki.WorkflowCancelled("r2", "stop")
    for ended in (failed, cancelled):
        assert isinstance(ended, aiki.RunDidNotComplete)
        assert isinstance(ended, aiki.AikiError)
    assert (failed.run_id, cancelled.run_id) == ("r1", "r2")
    assert not isinstance(aiki.WaitTimeout("r3", 1.0), aiki.RunDidNotComplete)
    # WorkflowTimeout is recorded as a failed run's error, and seen as WorkflowFailed.
    assert not issubclass(aiki.WorkflowTimeout, aiki.RunDidNotComplete)
    assert issubclass(aiki.PayloadTooLarge, aiki.InvalidPayload)
    assert aiki.NonRetryableError.__module__ == "aiki._errors"
