"""The OpenAPI 3 document of the server's HTTP API, served at ``/api/v1/openapi.json``.

Written by hand as a Python dict (the API is small and stable); ``tests/test_openapi.py``
checks that every API route of the app is in it and that every path in it is a route,
and fuzzes the running server against it with schemathesis.
"""

from __future__ import annotations

import copy
from typing import Any

from aiki import __version__
from aiki._store._keys import RUN_STATUSES

#: Largest time in ms accepted anywhere (the end of year 9999 UTC).
MAX_MS = 253_402_300_799_999
#: Largest number of seconds accepted for a run timeout or a schedule interval (10 years).
MAX_SECONDS = 315_360_000
#: Most items in one page of any list.
MAX_LIST_LIMIT = 500

_JSON = "application/json"


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "The body is not valid JSON (or not a JSON object)",
        404: "No such run, schedule or workflow",
        409: "The run's state does not allow this, or a reference id conflict",
        413: "The payload is larger than the server's limit",
        422: "A field or query parameter is invalid",
        503: "Redis is unavailable",
    }
    out = {str(code): _error(text[code]) for code in codes}
    out["default"] = _error("Any other error (always a JSON error body)")
    return out


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "minLength": 1},
    }


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    # Every query parameter is optional, and an empty value means "not given".
    return {
        "name": name,
        "in": "query",
        "required": False,
        "allowEmptyValue": True,
        "description": description,
        "schema": schema,
    }


_LIMIT = _query(
    "limit",
    {"type": "integer", "minimum": 1, "maximum": MAX_LIST_LIMIT},
    "Items per page.",
)
_CURSOR = _query(
    "cursor",
    {"type": "string"},
    "The next_cursor of the previous page (opaque: the items after it); absent for the first page.",
)
_RUNS_CURSOR = _query(
    "cursor",
    {"type": "string", "pattern": r"^[0-9]{1,14}(:.+)?$"},
    "The next_cursor of the previous page (`<ms>:<run id>`), or a Unix time in ms: runs "
    "created before it. Absent for the first page.",
)
_RUN_ID = _path_param("run_id", "The run's id.")


def _body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {_JSON: {"schema": schema}}}


def _control(summary: str, body: dict[str, Any] | None, statuses: tuple[int, ...]) -> Any:
    operation: dict[str, Any] = {
        "tags": ["runs"],
        "summary": summary,
        "operationId": summary.split(" ")[0].lower() + "Run",
        "parameters": [_RUN_ID],
        "responses": {
            "200": _json(_ref("ControlResult"), "Done: the outcome and the run as it is now"),
            **_errors(*statuses),
        },
    }
    if body is not None:
        operation["requestBody"] = body
    return operation


ANY: dict[str, Any] = {"description": "Any JSON value."}


def _schedule_request(when: str, schema: dict[str, Any], other: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["id", "workflow", "version", when],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string", "minLength": 1},
            "workflow": {"type": "string", "minLength": 1},
            "version": {"type": "string", "minLength": 1},
            "payload": ANY,
            when: schema,
            other: {"nullable": True, "enum": [None]},
            "overlap": _nullable(
                {"type": "string", "enum": ["allow", "skip", "cancel_previous", None]}
            ),
        },
    }


SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["type", "message"],
                "properties": {
                    "type": {"type": "string", "example": "validation_error"},
                    "message": {"type": "string"},
                    "field": _nullable({"type": "string"}),
                },
                "additionalProperties": True,
            }
        },
    },
    "ErrorRecord": {
        "type": "object",
        "description": "An exception as recorded: type, message and traceback.",
        "properties": {
            "type": {"type": "string"},
            "message": {"type": "string"},
            "traceback": _nullable({"type": "string"}),
            "task": {"type": "string"},
            "attempt": {"type": "integer"},
        },
        "additionalProperties": True,
    },
    "Task": {
        "type": "object",
        "description": "One task record of a run (tasks are listed in start order).",
        "required": ["address"],
        "properties": {
            "address": {"type": "string"},
            "task": {"type": "string", "description": "The task's name (absent for sleeps)"},
            "kind": {"type": "string", "description": "sleep, event, child-wait, ..."},
            "status": {"type": "string"},
            "input": ANY,
            "result": ANY,
            "error": _nullable(_ref("ErrorRecord")),
            "errors": {"type": "array", "items": _ref("ErrorRecord")},
            "attempts": {"type": "integer"},
            "started_at": _nullable({"type": "integer"}),
            "ended_at": _nullable({"type": "integer"}),
        },
        "additionalProperties": True,
    },
    "Run": {
        "type": "object",
        "required": ["id", "workflow", "version", "status"],
        "properties": {
            "id": {"type": "string"},
            "workflow": {"type": "string"},
            "version": {"type": "string"},
            "status": {"type": "string", "enum": list(RUN_STATUSES)},
            "payload": ANY,
            "result": ANY,
            "error": _nullable(_ref("ErrorRecord")),
            "errors": {"type": "array", "items": _ref("ErrorRecord")},
            "revision": {"type": "integer"},
            "attempts": {"type": "integer"},
            "worker": _nullable({"type": "string"}),
            "reference_id": _nullable({"type": "string"}),
            "sensitive": {"type": "boolean"},
            "created_at": _nullable({"type": "integer", "description": "Unix time, ms"}),
            "started_at": _nullable({"type": "integer"}),
            "updated_at": _nullable({"type": "integer"}),
            "ended_at": _nullable({"type": "integer"}),
            "tasks": {"type": "array", "items": _ref("Task")},
        },
    },
    "StartRunRequest": {
        "type": "object",
        "required": ["workflow", "version"],
        "additionalProperties": False,
        "properties": {
            "workflow": {"type": "string", "minLength": 1, "example": "order-processing"},
            "version": {"type": "string", "minLength": 1, "example": "1.0.0"},
            "payload": ANY,
            "reference_id": _nullable({"type": "string", "minLength": 1}),
            "on_conflict": _nullable(
                {"type": "string", "enum": ["error", "return_existing", None]}
            ),
            "start_at_ms": _nullable({"type": "integer", "minimum": 0, "maximum": MAX_MS}),
            "sensitive": _nullable({"type": "boolean"}),
            "timeout": _nullable(
                {
                    "type": "number",
                    "exclusiveMinimum": True,
                    "minimum": 0,
                    "maximum": MAX_SECONDS,
                }
            ),
        },
    },
    "StartedRun": {
        "description": "The run (as far as known) and whether this request created it.",
        "allOf": [
            {
                "type": "object",
                "required": ["id", "created"],
                "properties": {"id": {"type": "string"}, "created": {"type": "boolean"}},
            }
        ],
    },
    "RunList": {
        "type": "object",
        "required": ["runs", "next_cursor"],
        "properties": {
            "runs": {"type": "array", "items": _ref("Run")},
            "next_cursor": _nullable({"type": "string"}),
        },
    },
    "ControlResult": {
        "type": "object",
        "required": ["result", "run"],
        "properties": {"result": ANY, "run": _nullable(_ref("Run"))},
    },
    "CancelRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {"reason": {"type": "string"}},
    },
    "Empty": {"type": "object", "additionalProperties": False, "properties": {}},
    "WakeupRequest": {
        "type": "object",
        "required": ["name"],
        "additionalProperties": False,
        "properties": {"name": {"type": "string", "minLength": 1}},
    },
    "EventRequest": {
        "type": "object",
        "required": ["name"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "data": ANY,
            "reference_id": _nullable({"type": "string", "minLength": 1}),
        },
    },
    "Schedule": {
        "type": "object",
        "required": ["id", "workflow", "version"],
        "properties": {
            "id": {"type": "string"},
            "workflow": {"type": "string"},
            "version": {"type": "string"},
            "payload": ANY,
            "cron": _nullable({"type": "string"}),
            "every": _nullable({"type": "number"}),
            "overlap": {"type": "string", "enum": ["allow", "skip", "cancel_previous"]},
            "next_at": _nullable({"type": "integer", "description": "Unix time, ms"}),
        },
    },
    "CreateScheduleRequest": {
        "description": "Exactly one of cron (5 fields, UTC) and every (seconds).",
        "oneOf": [_ref("CronSchedule"), _ref("IntervalSchedule")],
    },
    "CronSchedule": _schedule_request(
        "cron",
        {"type": "string", "minLength": 1, "example": "*/5 * * * *"},
        "every",
    ),
    "IntervalSchedule": _schedule_request(
        "every",
        {"type": "number", "exclusiveMinimum": True, "minimum": 0, "maximum": MAX_SECONDS},
        "cron",
    ),
    "ScheduleList": {
        "type": "object",
        "required": ["schedules", "next_cursor"],
        "properties": {
            "schedules": {"type": "array", "items": _ref("Schedule")},
            "next_cursor": _nullable({"type": "string"}),
        },
    },
    "Deleted": {
        "type": "object",
        "required": ["deleted", "id"],
        "properties": {"deleted": {"type": "boolean"}, "id": {"type": "string"}},
    },
    "Workflow": {
        "type": "object",
        "required": ["workflow", "version"],
        "properties": {
            "workflow": {"type": "string"},
            "version": {"type": "string"},
            "worker": {"type": "string", "description": "The worker that registered it last"},
        },
    },
    "WorkflowList": {
        "type": "object",
        "required": ["workflows", "next_cursor"],
        "properties": {
            "workflows": {"type": "array", "items": _ref("Workflow")},
            "next_cursor": _nullable({"type": "string"}),
        },
    },
    "Worker": {
        "type": "object",
        "required": ["id", "workflows", "in_flight", "max", "last_heartbeat_ms", "stale"],
        "properties": {
            "id": {"type": "string"},
            "workflows": {"type": "array", "items": {"type": "string"}},
            "in_flight": {"type": "integer"},
            "max": {"type": "integer"},
            "last_heartbeat_ms": {"type": "integer"},
            "heartbeat_age_ms": {"type": "integer"},
            "stale": {"type": "boolean", "description": "No heartbeat for over 15 s"},
            "started_at_ms": _nullable({"type": "integer"}),
            "host": _nullable({"type": "string"}),
            "pid": _nullable({"type": "integer"}),
            "claims_taken_over": {"type": "integer"},
            "executions_finished": {"type": "integer"},
        },
    },
    "WorkerList": {
        "type": "object",
        "required": ["workers", "next_cursor"],
        "properties": {
            "workers": {"type": "array", "items": _ref("Worker")},
            "next_cursor": _nullable({"type": "string"}),
        },
    },
    "Health": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string"}, "redis": {"type": "string"}},
    },
}


def _paths() -> dict[str, Any]:
    ms = {"type": "integer", "minimum": 0, "maximum": MAX_MS}
    return {
        "/healthz": {
            "get": {
                "tags": ["probes"],
                "summary": "Liveness: the process answers",
                "operationId": "healthz",
                "responses": {"200": _json(_ref("Health"), "Alive"), **_errors()},
            }
        },
        "/readyz": {
            "get": {
                "tags": ["probes"],
                "summary": "Readiness: connected to Redis and Redis answers PING",
                "operationId": "readyz",
                "responses": {
                    "200": _json(_ref("Health"), "Ready"),
                    "503": _json(_ref("Health"), "Not ready"),
                    "default": _error("Any other error"),
                },
            }
        },
        "/metrics": {
            "get": {
                "tags": ["probes"],
                "summary": "Prometheus metrics (text exposition format)",
                "operationId": "metrics",
                "responses": {
                    "200": {
                        "description": "Metrics",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **_errors(),
                },
            }
        },
        "/api/v1/openapi.json": {
            "get": {
                "tags": ["meta"],
                "summary": "This document",
                "operationId": "openapi",
                "responses": {
                    "200": _json({"type": "object"}, "The OpenAPI document"),
                    **_errors(),
                },
            }
        },
        "/api/v1/runs": {
            "post": {
                "tags": ["runs"],
                "summary": "Start a run of a registered workflow version",
                "operationId": "startRun",
                "requestBody": _body(_ref("StartRunRequest")),
                "responses": {
                    "201": _json(_ref("StartedRun"), "Created (Location: the run)"),
                    "200": _json(
                        _ref("StartedRun"),
                        "An existing run with this reference_id (idempotent repeat)",
                    ),
                    **_errors(400, 404, 409, 413, 422, 503),
                },
            },
            "get": {
                "tags": ["runs"],
                "summary": "List runs, newest first, with filters and cursor paging",
                "operationId": "listRuns",
                "parameters": [
                    _query("status", {"type": "string", "enum": list(RUN_STATUSES)}, "Status."),
                    _query("workflow", {"type": "string"}, "Workflow name."),
                    _query("version", {"type": "string"}, "Workflow version."),
                    _query("created_after", ms, "Created at or after this Unix time (ms)."),
                    _query("created_before", ms, "Created before this Unix time (ms)."),
                    _LIMIT,
                    _RUNS_CURSOR,
                ],
                "responses": {
                    "200": _json(_ref("RunList"), "A page of runs"),
                    **_errors(422, 503),
                },
            },
        },
        "/api/v1/runs/{run_id}": {
            "get": {
                "tags": ["runs"],
                "summary": "A run with its task records",
                "operationId": "getRun",
                "parameters": [_RUN_ID],
                "responses": {"200": _json(_ref("Run"), "The run"), **_errors(404, 503)},
            }
        },
        "/api/v1/runs/{run_id}/wait": {
            "get": {
                "tags": ["runs"],
                "summary": "Long-poll until the run ends or the timeout passes",
                "operationId": "waitRun",
                "parameters": [
                    _RUN_ID,
                    _query(
                        "timeout",
                        {"type": "number", "minimum": 0},
                        "Seconds to wait at most (clamped to the server's max_wait).",
                    ),
                ],
                "responses": {
                    "200": _json(_ref("Run"), "The run, ended or as it is at the timeout"),
                    **_errors(404, 422, 503),
                },
            }
        },
        "/api/v1/runs/{run_id}/cancel": {
            "post": _control(
                "Cancel a run (and its children)",
                _body(_ref("CancelRequest"), required=False),
                (400, 404, 409, 422, 503),
            )
        },
        "/api/v1/runs/{run_id}/pause": {
            "post": _control(
                "Pause a run", _body(_ref("Empty"), required=False), (400, 404, 409, 422, 503)
            )
        },
        "/api/v1/runs/{run_id}/resume": {
            "post": _control(
                "Resume a paused run",
                _body(_ref("Empty"), required=False),
                (400, 404, 409, 422, 503),
            )
        },
        "/api/v1/runs/{run_id}/wakeup": {
            "post": _control(
                "Wakeup: end a named sleep early",
                _body(_ref("WakeupRequest")),
                (400, 404, 409, 422, 503),
            )
        },
        "/api/v1/runs/{run_id}/events": {
            "post": _control(
                "Send an event to a run",
                _body(_ref("EventRequest")),
                (400, 404, 409, 413, 422, 503),
            )
        },
        "/api/v1/schedules": {
            "get": {
                "tags": ["schedules"],
                "summary": "List schedules, by id",
                "operationId": "listSchedules",
                "parameters": [_LIMIT, _CURSOR],
                "responses": {
                    "200": _json(_ref("ScheduleList"), "A page of schedules"),
                    **_errors(422, 503),
                },
            },
            "post": {
                "tags": ["schedules"],
                "summary": "Create or replace a schedule",
                "operationId": "createSchedule",
                "requestBody": _body(_ref("CreateScheduleRequest")),
                "responses": {
                    "201": _json(_ref("Schedule"), "Saved, with its first occurrence"),
                    **_errors(400, 404, 422, 503),
                },
            },
        },
        "/api/v1/schedules/{schedule_id}": {
            "delete": {
                "tags": ["schedules"],
                "summary": "Delete a schedule",
                "operationId": "deleteSchedule",
                "parameters": [_path_param("schedule_id", "The schedule's id.")],
                "responses": {"200": _json(_ref("Deleted"), "Deleted"), **_errors(404, 503)},
            }
        },
        "/api/v1/workflows": {
            "get": {
                "tags": ["workflows"],
                "summary": "Workflow versions registered by workers",
                "operationId": "listWorkflows",
                "parameters": [_LIMIT, _CURSOR],
                "responses": {
                    "200": _json(_ref("WorkflowList"), "A page of workflow versions"),
                    **_errors(422, 503),
                },
            }
        },
        "/api/v1/workers": {
            "get": {
                "tags": ["workers"],
                "summary": "Workers in the registry (heartbeat every 2 s), by id",
                "operationId": "listWorkers",
                "parameters": [_LIMIT, _CURSOR],
                "responses": {
                    "200": _json(_ref("WorkerList"), "A page of workers"),
                    **_errors(422, 503),
                },
            }
        },
    }


def openapi_document() -> dict[str, Any]:
    """A fresh copy of the document (callers may modify it)."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Aiki server API",
            "version": __version__,
            "description": (
                "The HTTP API of the Aiki server: start, list, inspect and control workflow "
                "runs; schedules; registered workflows and workers. Every error is "
                '`{"error": {"type", "message", "field"}}` with a 4xx/5xx status. Lists '
                "are paged: pass a page's `next_cursor` as `cursor` to get the next one."
            ),
        },
        "tags": [
            {"name": "runs"},
            {"name": "schedules"},
            {"name": "workflows"},
            {"name": "workers"},
            {"name": "probes"},
            {"name": "meta"},
        ],
        "paths": _paths(),
        "components": {"schemas": copy.deepcopy(SCHEMAS)},
    }
