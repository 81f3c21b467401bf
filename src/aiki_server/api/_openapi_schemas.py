"""The response schemas of the OpenAPI document (``components.schemas``).

Request bodies are not here: they come from the routes' own models, so validation and
the document cannot disagree.
"""

from __future__ import annotations

from typing import Any

from aiki.engine import RUN_STATUSES

from ._openapi_common import _nullable, _ref

ANY: dict[str, Any] = {"description": "Any JSON value."}


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
            "attributes": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "Search attributes the workflow set (ctx.set_attributes)",
            },
            "sensitive": {"type": "boolean"},
            "codec_errors": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "Present when the server was given codecs (AIKI_CODEC_KEYS) "
                "and some encoded values (aiki:codec/1:... envelopes) could not be decoded: "
                "the path of each in this answer and why (names key ids, never keys)",
            },
            "concurrency_key": _nullable(
                {
                    "type": "string",
                    "description": "The run's key for its version's concurrency limit "
                    "(null: the version's one shared key, or no limit)",
                }
            ),
            "concurrency_limit": _nullable(
                {
                    "type": "integer",
                    "description": "Its version's concurrency limit per key (null: none); "
                    "status awaiting_concurrency while it waits for a slot",
                }
            ),
            "priority": {
                "type": "integer",
                "minimum": 0,
                "maximum": 100,
                "description": "0 (none) to 100: a version's waiting runs with a higher "
                "priority are taken first",
            },
            "created_at": _nullable({"type": "integer", "description": "Unix time, ms"}),
            "started_at": _nullable({"type": "integer"}),
            "updated_at": _nullable({"type": "integer"}),
            "ended_at": _nullable({"type": "integer"}),
            "tasks": {"type": "array", "items": _ref("Task")},
        },
    },
    "RunHistory": {
        "description": "A run's history (format aiki.history/1): the run and its step "
        "records by address, as stored; the input of aiki.testing.replay.",
        "type": "object",
        "required": ["format", "run", "tasks"],
        "properties": {
            "format": {"type": "string", "enum": ["aiki.history/1"]},
            "run": {
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
                    "sensitive": {"type": "boolean"},
                    "created_at": _nullable({"type": "integer"}),
                    "ended_at": _nullable({"type": "integer"}),
                },
            },
            "tasks": {
                "type": "object",
                "description": "Step address -> step record.",
                "additionalProperties": {"type": "object", "additionalProperties": True},
            },
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
            "priority": {"type": "integer", "minimum": 0, "maximum": 100},
            "next_at": _nullable({"type": "integer", "description": "Unix time, ms"}),
            "paused": {"type": "boolean"},
            "paused_at": _nullable({"type": "integer", "description": "Unix time, ms"}),
        },
    },
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
            "timeout": _nullable({"type": "number"}),
            "shards": {"type": "integer"},
            "input_schema": _nullable(
                {
                    "type": "object",
                    "description": "JSON Schema of the payload (from the run function's "
                    "annotation; null: untyped). POST /api/v1/runs validates against it.",
                }
            ),
            "output_schema": _nullable(
                {"type": "object", "description": "JSON Schema of the result (null: untyped)"}
            ),
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
