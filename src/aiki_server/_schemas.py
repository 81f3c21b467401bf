"""Registered JSON Schemas: validating HTTP starts against a version's input schema, and
showing the schemas in the OpenAPI document and the dashboard.

Workers register each version's input and output JSON Schema (from the run function's
annotations, see aiki/_types.py) with the version. The server has no workflow code, so
these schemas are how it refuses a bad ``POST /api/v1/runs`` payload with 422 naming
the field (``payload.items[0].quantity``) before anything is written, like the client
does with the types themselves.

Validation uses ``jsonschema-rs``: one self-contained wheel (no dependencies), draft
2020-12 (what pydantic emits), validators compiled once per schema and cached here.
"""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema_rs

from aiki import InvalidPayload

__all__ = ["check_payload", "openapi_components"]

_validators: dict[str, Any] = {}
_MAX_CACHED = 256
_NAMED = re.compile(
    r"""^["']([^"']+)["'] is a required property|\(["']([^"']+)["'] was unexpected"""
)


def _validator(schema: dict[str, Any]) -> Any:
    key = json.dumps(schema, sort_keys=True)
    found = _validators.get(key)
    if found is None:
        if len(_validators) >= _MAX_CACHED:
            _validators.clear()
        found = _validators[key] = jsonschema_rs.validator_for(schema)
    return found


def _path(parts: list[Any]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def check_payload(registration: dict[str, Any], payload: Any) -> None:
    """Raise InvalidPayload (``field``: ``payload.<path>``) if ``payload`` does not fit
    the registered input schema; nothing to check for an untyped version, nor for a
    payload that is not JSON here (a client's encrypted payload the server cannot read:
    any other object)."""
    schema = registration.get("input_schema")
    if not schema or not isinstance(payload, str | int | float | bool | list | dict | None):
        return
    try:
        errors = list(_validator(schema).iter_errors(payload))
    except ValueError as exc:  # a schema jsonschema-rs cannot compile: do not block starts
        raise InvalidPayload(f"the registered input schema is unusable: {exc}") from None
    if not errors:
        return
    error = min(errors, key=lambda e: -len(e.instance_path))  # the deepest first
    parts = list(error.instance_path)
    named = _NAMED.search(error.message)
    if named:  # a missing or an unexpected property: name it, not its object
        parts.append(named.group(1) or named.group(2))
    path = _path(parts)
    field = f"payload.{path}" if path else "payload"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    raise InvalidPayload(f"{field}: {error.message}{more}", field=field, path=path)


def _rewrite(node: Any, prefix: str) -> Any:
    """``node`` with local ``#/$defs/X`` references pointing at ``prefix.X`` in the
    OpenAPI components (where the ``$defs`` are hoisted to)."""
    if isinstance(node, dict):
        out = {k: _rewrite(v, prefix) for k, v in node.items() if k != "$defs"}
        ref = out.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            out["$ref"] = f"#/components/schemas/{prefix}.{ref[len('#/$defs/') :]}"
        return out
    if isinstance(node, list):
        return [_rewrite(v, prefix) for v in node]
    return node


def openapi_components(workflows: list[dict[str, Any]]) -> dict[str, Any]:
    """The registered schemas as OpenAPI components: ``workflow.<name>.<version>.input``
    and ``.output``, their ``$defs`` beside them."""
    out: dict[str, Any] = {}
    for w in workflows:
        for side in ("input", "output"):
            schema = w.get(f"{side}_schema")
            if not schema:
                continue
            prefix = f"workflow.{w['workflow']}.{w['version']}.{side}"
            for name, definition in (schema.get("$defs") or {}).items():
                out[f"{prefix}.{name}"] = _rewrite(definition, prefix)
            out[prefix] = _rewrite(schema, prefix)
    return out
