"""The engine's parts that the Aiki server and tools build on.

Why a module of its own: the server (``aiki_server``) must not reach into the SDK's
private modules, yet it runs the same store, listener and daemons as the SDK. This module
is that boundary, spelled out: everything here is for the server, the CLI and tooling,
not for workflow code, and may change between minor versions (the SDK's promise covers
``aiki.__all__`` only). ``__all__`` is pinned by a test.
"""

from __future__ import annotations

from ._backoff import Backoff
from ._daemons import serve_retention, serve_schedules, serve_timers, watch_generation
from ._history import FORMAT as HISTORY_FORMAT
from ._history import history_of
from ._http import HttpApi
from ._notify import RunEndedListener, wait_for_end
from ._redis import (
    RedisAddress,
    ScriptRefused,
    connect,
    open_asyncio_bridge,
    resolve_implementation,
)
from ._schedules import (
    create_schedule,
    delete_schedule,
    list_schedules,
    pause_schedule,
    resume_schedule,
    trigger_schedule,
)
from ._serde import DEFAULT_MAX_RESULT_BYTES, MAX_JSON_DEPTH
from ._serde import check_depth as check_json_depth
from ._serde import dumps as json_dumps
from ._start import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    MAX_MS,
    MAX_PRIORITY,
    MAX_SECONDS,
    StartOutcome,
    StartRequest,
    encode_payload,
    json_type,
    start_run,
)
from ._store import (
    DURABILITY_MODES,
    GROUP,
    RUN_STATUSES,
    TERMINAL_STATUSES,
    DeadLetter,
    DeadLetterNotFound,
    Keys,
    RunQuery,
    RunRecord,
    ScheduleNotFound,
    Store,
    check_durability,
    choose_run_id,
    open_fsync_barrier,
)
from ._tracing import continue_trace

__all__ = [
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
