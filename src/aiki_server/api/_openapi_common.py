"""Small builders for the OpenAPI document: references, JSON bodies, error responses.

Kept apart from the document itself so that the schema catalogue
(``_openapi_schemas.py``) and the paths (``_openapi.py``) share them.
"""

from __future__ import annotations

from typing import Any

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
