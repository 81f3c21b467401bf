"""Request models declared once: each field's rules validate requests AND make the
OpenAPI schema, so the document and the checks cannot drift apart.

A :class:`Model` is a JSON object body (unknown fields refused), a :class:`Query` the
query parameters of one route; both are tuples of :class:`Field`. Validation answers the
API's error shape with the field named (``ApiError`` 422, or 400 for a body that is not
a JSON object). Strict JSON types: ``true`` is not a number, ``1`` is not a boolean, and
``null`` means "not given" for every optional field (its default applies).

Why not quart-schema + pydantic: see ``docs/architecture.md`` (HTTP API, request models).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from aiki import InvalidPayload
from aiki.engine import check_json_depth, json_type

from ._errors import ApiError, validation_error

Kind = Literal["string", "integer", "number", "boolean", "any"]


@dataclass(frozen=True)
class Field:
    """One field of a body or one query parameter.

    ``message`` is the error text when the value is not of the field's kind or out of
    its bounds (``{got}``: the JSON type given, ``{raw}``: a query parameter's text);
    ``check`` is a rule JSON Schema cannot state (a valid cron expression), with
    ``check_message`` (``{value}``: the value) when it fails.
    """

    name: str
    kind: Kind
    required: bool = False
    nullable: bool = True
    default: Any = None
    min_length: int | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    enum: tuple[str, ...] | None = None
    message: str | None = None
    check: Callable[[Any], bool] | None = None
    check_message: str = ""
    #: Any falsy value counts as not given (cancel's ``reason``: "" or 0 means the default).
    falsy_is_absent: bool = False
    description: str | None = None
    example: Any = None
    pattern: str | None = None  # documented only (the route's parser checks it)

    # -- validation -------------------------------------------------------------------

    def error(self, got: Any) -> ApiError:
        template = self.message or self._default_message()
        return validation_error(self.name, template.format(got=json_type(got), raw=got))

    def _default_message(self) -> str:
        if self.kind == "string" and self.min_length:
            return f"{self.name} must be a non-empty string, got {{got}}"
        if self.kind == "string":
            return f"{self.name} must be a string"
        if self.kind == "boolean":
            return f"{self.name} must be true or false"
        bounds = self._bounds()
        return f"{self.name} must be a{'n integer' if self.kind == 'integer' else ' number'}" + (
            f" {bounds}" if bounds else ""
        )

    def _bounds(self) -> str:
        low, high = self.minimum, self.maximum
        if low is not None and high is not None:
            if self.exclusive_minimum:
                return f"> {_num(low)} and <= {_num(high)}"
            return f"in {_num(low)}..{_num(high)}"
        if low is not None:
            return f"> {_num(low)}" if self.exclusive_minimum else f">= {_num(low)}"
        return ""

    def validate(self, value: Any) -> Any:
        """``value`` if it is valid for this field, else raise its 422."""
        if self.kind == "any":
            return value
        if self.kind == "string":
            ok = isinstance(value, str) and len(value) >= (self.min_length or 0)
        elif self.kind == "boolean":
            ok = isinstance(value, bool)
        elif isinstance(value, bool) or not isinstance(value, int | float):
            ok = False
        elif self.kind == "integer":
            ok = isinstance(value, int) and self._in_bounds(value)
        else:
            ok = math.isfinite(value) and self._in_bounds(value)
        if not ok:
            raise self.error(value)
        if self.enum is not None and value not in self.enum:
            raise validation_error(self.name, self.check_message.format(value=value))
        if self.check is not None and not self.check(value):
            raise validation_error(self.name, self.check_message.format(value=value))
        return value

    def _in_bounds(self, value: float) -> bool:
        low, high = self.minimum, self.maximum
        if low is not None and (value <= low if self.exclusive_minimum else value < low):
            return False
        return high is None or value <= high

    # -- the OpenAPI schema -----------------------------------------------------------

    def schema(self) -> dict[str, Any]:
        if self.kind == "any":
            out: dict[str, Any] = {"description": self.description or "Any JSON value."}
            return out
        out = {"type": self.kind}
        if self.min_length:
            out["minLength"] = self.min_length
        if self.pattern:
            out["pattern"] = self.pattern
        if self.exclusive_minimum:
            out["exclusiveMinimum"] = True
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        if self.enum is not None:
            out["enum"] = [*self.enum, None] if self.nullable else list(self.enum)
        if self.nullable:
            out["nullable"] = True
        if self.description:
            out["description"] = self.description
        if self.example is not None:
            out["example"] = self.example
        return out


@dataclass(frozen=True)
class Model:
    """A JSON object body: its fields, in the order they are checked.

    ``one_of``: exactly one of these fields must be given (the schema becomes a
    ``oneOf`` of one variant per field, named by ``variants``). ``unknown_last``: check
    the known fields before refusing unknown ones (the start route's order).
    """

    name: str
    fields: tuple[Field, ...]
    description: str | None = None
    one_of: tuple[str, ...] = ()
    one_of_message: str = ""
    variants: Mapping[str, str] = field(default_factory=dict)
    unknown_last: bool = False

    @property
    def names(self) -> frozenset[str]:
        return frozenset(f.name for f in self.fields)

    def validate(self, body: dict[str, Any]) -> dict[str, Any]:
        """Every field's value (its default when absent or null), or raise a 422."""
        if not self.unknown_last:
            self._refuse_unknown(body)
        values: dict[str, Any] = {}
        for f in self.fields:
            value = body.get(f.name)
            if f.required and f.name not in body:
                raise validation_error(f.name, f"{f.name} is required")
            if (value is None and not f.required) or (f.falsy_is_absent and not value):
                values[f.name] = f.default
            else:
                values[f.name] = f.validate(value)
        if self.unknown_last:
            self._refuse_unknown(body)
        if self.one_of and sum(values[name] is not None for name in self.one_of) != 1:
            raise validation_error(self.one_of[0], self.one_of_message)
        return values

    def _refuse_unknown(self, body: dict[str, Any]) -> None:
        # Refused, not ignored: a field this server does not know (a newer client's
        # option, a typo) would otherwise be silently dropped.
        unknown = sorted(set(body) - self.names)
        if unknown:
            allowed = ", ".join(sorted(self.names)) or "none"
            raise validation_error(unknown[0], f"unknown field {unknown[0]!r} (allowed: {allowed})")

    def schemas(self) -> dict[str, Any]:
        """The model's component schemas (its variants too), by name."""
        properties = {f.name: f.schema() for f in self.fields}
        required = [f.name for f in self.fields if f.required]
        base: dict[str, Any] = {"type": "object"}
        if required:
            base["required"] = required
        base |= {"additionalProperties": False, "properties": properties}
        if not self.one_of:
            if self.description:
                base = {"description": self.description, **base}
            return {self.name: base}
        out: dict[str, Any] = {
            self.name: {
                "description": self.description,
                "oneOf": [
                    {"$ref": f"#/components/schemas/{self.variants[n]}"} for n in self.one_of
                ],
            }
        }
        for given in self.one_of:
            props = dict(properties)
            props[given] = {k: v for k, v in props[given].items() if k != "nullable"}
            for other in self.one_of:
                if other != given:
                    props[other] = {"nullable": True, "enum": [None]}
            out[self.variants[given]] = {
                **base,
                "required": [*required, given],
                "properties": props,
            }
        return out


@dataclass(frozen=True)
class Query:
    """The query parameters of one route. An empty value means "not given"."""

    fields: tuple[Field, ...]

    def parse(self, args: Mapping[str, str]) -> dict[str, Any]:
        allowed = {f.name for f in self.fields}
        for name in args:
            if name not in allowed:
                raise validation_error(
                    name,
                    f"unknown query parameter {name!r} (allowed: {', '.join(sorted(allowed))})",
                )
        values: dict[str, Any] = {}
        for f in self.fields:
            raw = args.get(f.name)
            values[f.name] = f.default if not raw else _query_value(f, raw)
        return values

    def parameters(self) -> list[dict[str, Any]]:
        """The OpenAPI ``parameters`` of the route (path parameters not included)."""
        return [
            {
                "name": f.name,
                "in": "query",
                "required": False,
                "allowEmptyValue": True,
                "description": f.description or "",
                "schema": {k: v for k, v in f.schema().items() if k != "description"},
            }
            for f in self.fields
        ]


def _query_value(f: Field, raw: str) -> Any:
    if f.kind == "string":
        if f.enum is not None and raw not in f.enum:
            raise validation_error(f.name, f.check_message.format(value=raw))
        return raw
    try:
        value: float = int(raw) if f.kind == "integer" else float(raw)
    except ValueError:
        value = math.nan
    if f.kind == "integer" and math.isnan(value):
        raise validation_error(f.name, f"{f.name} must be an integer, got {raw!r}")
    if math.isnan(value) or not f._in_bounds(value) or not math.isfinite(value):
        if f.message:
            raise validation_error(f.name, f.message.format(raw=raw, got=raw))
        low = _num(f.minimum or 0)
        bounds = f"{low}..{_num(f.maximum)}" if f.maximum is not None else f">= {low}"
        raise validation_error(f.name, f"{f.name} must be {bounds}, got {_num(value)}")
    return value


def _num(x: float) -> str:
    """A bound or value as a message shows it: ``500``, ``0.5`` (never ``2.5e+14``)."""
    return str(int(x)) if float(x).is_integer() else repr(x)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_body(data: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or the 400 that says why it is not one (422
    naming the member nested past aiki's depth limit: checked before decoding, which
    could otherwise recurse out on a deep body)."""
    try:
        text = data.decode("utf-8")
        check_json_depth(text)
        body = json.loads(text, parse_constant=_reject_constant)
    except InvalidPayload as exc:
        raise ApiError(422, "validation_error", str(exc), exc.field) from None
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}", "body") from None
    if not isinstance(body, dict):
        raise ApiError(
            400,
            "invalid_json",
            f"the body must be a JSON object, got {type(body).__name__}",
            "body",
        )
    return body
