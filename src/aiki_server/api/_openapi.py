"""The OpenAPI 3 document of the server's HTTP API, served at ``/api/v1/openapi.json``.

The request bodies and query parameters come from the routes' own models (the same
declarations validate the requests); the responses are written here as a Python dict.
``tests/test_openapi.py`` checks that every API route of the app is in it and that every
path in it is a route, and fuzzes the running server against it with schemathesis.
"""

from __future__ import annotations

import copy
from typing import Any

from aiki import __version__

from . import control, events, runs, schedules
from ._common import PAGED
from ._openapi_common import (
    _RUN_ID,
    _body,
    _control,
    _error,
    _errors,
    _json,
    _path_param,
    _ref,
)
from ._openapi_recover import RECOVER_SCHEMAS, recover_paths
from ._openapi_schemas import SCHEMAS


def _request_schemas() -> dict[str, Any]:
    """The request bodies' schemas, made from the models the routes validate with."""
    out: dict[str, Any] = {}
    models = (runs.START_RUN, control.CANCEL, control.EMPTY, control.WAKEUP, events.EVENT)
    for model in (*models, schedules.CREATE_SCHEDULE):
        out |= model.schemas()
    return out


def _paths() -> dict[str, Any]:
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
                "description": runs.ATTRIBUTE_PARAMETERS["description"],
                "parameters": runs.LIST_RUNS.parameters(),
                "x-aiki-parameter-families": [runs.ATTRIBUTE_PARAMETERS],
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
        "/api/v1/runs/{run_id}/history": {
            "get": {
                "tags": ["runs"],
                "summary": "The run's history, for aiki.testing.replay (aiki runs export)",
                "operationId": "getRunHistory",
                "parameters": [_RUN_ID],
                "responses": {
                    "200": _json(_ref("RunHistory"), "The run's history document"),
                    **_errors(404, 503),
                },
            }
        },
        "/api/v1/runs/{run_id}/wait": {
            "get": {
                "tags": ["runs"],
                "summary": "Long-poll until the run ends or the timeout passes",
                "operationId": "waitRun",
                "parameters": [_RUN_ID, *runs.WAIT.parameters()],
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
                "parameters": PAGED.parameters(),
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
                "parameters": PAGED.parameters(),
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
                "parameters": PAGED.parameters(),
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
                "are paged: pass a page's `next_cursor` as `cursor` to get the next one. "
                "Writes (POST, PUT, PATCH, DELETE) with a body take only "
                "`Content-Type: application/json` (415 otherwise), and a write whose "
                "`Origin` header is neither the server's own nor an allowed origin is a 403."
            ),
        },
        "tags": [
            {"name": "runs"},
            {"name": "dead-letters"},
            {"name": "schedules"},
            {"name": "workflows"},
            {"name": "workers"},
            {"name": "probes"},
            {"name": "meta"},
        ],
        "paths": {**_paths(), **recover_paths()},
        "components": {
            "schemas": {
                **copy.deepcopy(SCHEMAS),
                **_request_schemas(),
                **copy.deepcopy(RECOVER_SCHEMAS),
            }
        },
    }
