"""The OpenAPI operations and schemas of recovery (retrying runs, dead letters) and of
the schedule actions (pause, resume, trigger now): merged into the document by
``_openapi``."""

from __future__ import annotations

from typing import Any

from . import recover, schedules
from ._openapi_common import (
    _body,
    _control,
    _errors,
    _json,
    _nullable,
    _path_param,
    _ref,
)
from ._openapi_schemas import ANY

_LETTER_ID = _path_param("letter_id", "The dead letter's id (a stream entry id, `<ms>-<n>`).")
_SCHEDULE_ID = _path_param("schedule_id", "The schedule's id.")

_DEAD_LETTER = {
    "type": "object",
    "required": ["id", "at", "stream", "message", "fields", "reason"],
    "properties": {
        "id": {"type": "string", "example": "1764980000000-0"},
        "at": {"type": "integer", "description": "When it was dead-lettered (Unix ms)"},
        "stream": {"type": "string", "description": "The stream the message came from"},
        "message": {"type": "string", "description": "The message's id in that stream"},
        "fields": {"type": "object", "additionalProperties": True},
        "reason": {"type": "string", "description": "Why no worker could use it"},
        "run_id": _nullable({"type": "string"}),
        "run": _nullable(
            {**_ref("Run"), "description": "The run it names, as it is now (one letter)"}
        ),
    },
}

RECOVER_SCHEMAS: dict[str, Any] = {
    "RetryRunsResult": {
        "type": "object",
        "required": ["retried", "refused", "examined", "next_cursor"],
        "properties": {
            "retried": {"type": "array", "items": {"type": "string"}},
            "refused": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"id": {"type": "string"}, "reason": {"type": "string"}},
                },
            },
            "examined": {"type": "integer"},
            "next_cursor": _nullable({"type": "string"}),
        },
    },
    "DeadLetter": _DEAD_LETTER,
    "DeadLetterList": {
        "type": "object",
        "required": ["dead_letters", "total", "next_cursor"],
        "properties": {
            "dead_letters": {"type": "array", "items": _ref("DeadLetter")},
            "total": {"type": "integer"},
            "next_cursor": _nullable({"type": "string"}),
        },
    },
    "ScheduleActionResult": {
        "type": "object",
        "required": ["result", "id"],
        "properties": {"result": {"type": "string"}, "id": {"type": "string"}, "run": ANY},
    },
    **recover.EMPTY.schemas(),
    **recover.RETRY_RUNS.schemas(),
    **schedules.EMPTY.schemas(),
}


def _schedule_action(verb: str, summary: str, status: str, description: str) -> Any:
    return {
        "post": {
            "tags": ["schedules"],
            "summary": summary,
            "operationId": f"{verb}Schedule",
            "parameters": [_SCHEDULE_ID],
            "requestBody": _body(_ref("ScheduleActionRequest"), required=False),
            "responses": {
                status: _json(_ref("ScheduleActionResult"), description),
                **_errors(400, 404, 409, 422, 503),
            },
        }
    }


def recover_paths() -> dict[str, Any]:
    return {
        "/api/v1/runs/{run_id}/retry": {
            "post": _control(
                "Retry a failed or cancelled run, keeping its completed tasks",
                _body(_ref("RetryRequest"), required=False),
                (400, 404, 409, 422, 503),
            )
        },
        "/api/v1/runs/retry": {
            "post": {
                "tags": ["runs"],
                "summary": "Retry the failed (or cancelled) runs of a workflow version, a page "
                "at a time",
                "operationId": "retryRuns",
                "requestBody": _body(_ref("RetryRunsRequest")),
                "responses": {
                    "200": _json(_ref("RetryRunsResult"), "The runs retried from this page"),
                    **_errors(400, 422, 503),
                },
            }
        },
        "/api/v1/dead-letters": {
            "get": {
                "tags": ["dead-letters"],
                "summary": "List dead letters (messages no worker could use), newest first",
                "operationId": "listDeadLetters",
                "parameters": recover.DEAD_LETTERS.parameters(),
                "responses": {
                    "200": _json(_ref("DeadLetterList"), "A page of dead letters"),
                    **_errors(422, 503),
                },
            }
        },
        "/api/v1/dead-letters/{letter_id}": {
            "get": {
                "tags": ["dead-letters"],
                "summary": "A dead letter, with the run it names",
                "operationId": "getDeadLetter",
                "parameters": [_LETTER_ID],
                "responses": {
                    "200": _json(_ref("DeadLetter"), "The dead letter"),
                    **_errors(404, 503),
                },
            },
            "delete": {
                "tags": ["dead-letters"],
                "summary": "Discard a dead letter",
                "operationId": "discardDeadLetter",
                "parameters": [_LETTER_ID],
                "responses": {"200": _json(_ref("Deleted"), "Discarded"), **_errors(404, 503)},
            },
        },
        "/api/v1/dead-letters/{letter_id}/requeue": {
            "post": {
                "tags": ["dead-letters"],
                "summary": "Requeue a dead letter's run (once its reason was fixed)",
                "operationId": "requeueDeadLetter",
                "parameters": [_LETTER_ID],
                "requestBody": _body(_ref("RetryRequest"), required=False),
                "responses": {
                    "200": _json(_ref("ControlResult"), "queued or already-queued, and the run"),
                    **_errors(400, 404, 409, 422, 503),
                },
            }
        },
        "/api/v1/schedules/{schedule_id}/pause": _schedule_action(
            "pause", "Pause a schedule", "200", "paused"
        ),
        "/api/v1/schedules/{schedule_id}/resume": _schedule_action(
            "resume", "Resume a paused schedule", "200", "resumed (or active: it was not paused)"
        ),
        "/api/v1/schedules/{schedule_id}/trigger": _schedule_action(
            "trigger", "Start the schedule's run now", "201", "started: the run"
        ),
    }
