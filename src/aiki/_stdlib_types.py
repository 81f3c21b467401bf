"""The stdlib converter: dataclasses, TypedDicts, enums, datetimes, UUIDs, Decimals and
plain JSON types to and from JSON, with no third-party package.

Why it exists: pydantic is an optional extra, and typed payloads must work without it.
Each annotation is compiled once into a small tree of :class:`Node` objects (one per
type); loading and dumping are then plain attribute calls, no ``typing`` introspection
on the hot path. The rules follow pydantic's defaults where a user could notice:
unknown keys are ignored, ``int`` is accepted where ``float`` is expected, ISO strings
become datetimes/dates/UUIDs, Decimals are dumped as strings, enums as their values. It
is stricter in one place: a string is never turned into a number.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime as _dt
import enum
import types
import typing
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = ["Invalid", "Node", "Unsupported", "compile_type"]


class Invalid(Exception):
    """A value does not fit its type; ``loc`` is the path to it (keys and indexes)."""

    def __init__(self, message: str, loc: list[str | int] | None = None) -> None:
        self.message = message
        self.loc: list[str | int] = loc or []
        super().__init__(message)


class Unsupported(TypeError):
    """An annotation this converter cannot handle (install pydantic for it)."""


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


class Node:
    """How one type loads (JSON value or instance → instance) and dumps (→ JSON value)."""

    name = "value"

    def load(self, value: Any) -> Any:
        return value

    def dump(self, value: Any) -> Any:
        return self.load(value)

    def schema(self, defs: dict[str, Any]) -> dict[str, Any]:
        return {}

    def fail(self, value: Any) -> Invalid:
        return Invalid(f"expected {self.name}, got {_kind(value)}")


class _Any(Node):
    def dump(self, value: Any) -> Any:
        return value


class _Scalar(Node):
    def __init__(self, tp: type, name: str, json_type: str) -> None:
        self.tp, self.name, self.json_type = tp, name, json_type

    def load(self, value: Any) -> Any:
        if type(value) is self.tp or (isinstance(value, self.tp) and not isinstance(value, bool)):
            return value
        if self.tp is bool and isinstance(value, bool):
            return value
        raise self.fail(value)

    def schema(self, defs: dict[str, Any]) -> dict[str, Any]:
        return {"type": self.json_type}


class _Float(_Scalar):
    def load(self, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise self.fail(value)


class _None(Node):
    name = "null"

    def load(self, value: Any) -> Any:
        if value is None:
            return None
        raise self.fail(value)

    def schema(self, defs: dict[str, Any]) -> dict[str, Any]:
        return {"type": "null"}


class _Parsed(Node):
    """A type carried as a string in JSON (datetime, date, time, UUID, Decimal)."""

    def __init__(self, tp: type, name: str, parse: Any, fmt: str | None) -> None:
        self.tp, self.name, self.parse, self.fmt = tp, name, parse, fmt

    def load(self, value: Any) -> Any:
        if isinstance(value, self.tp) and not (
            self.tp is _dt.date and isinstance(value, _dt.datetime)
        ):
            return value
        if isinstance(value, str) or (self.tp is Decimal and isinstance(value, int | float)
                                      and not isinstance(value, bool)):  # fmt: skip
            try:
                return self.parse(value)
            except (ValueError, InvalidOperation, TypeError):
                raise Invalid(f"expected {self.name}, got {value!r}"[:200]) from None
        raise self.fail(value)

    def dump(self, value: Any) -> Any:
        value = self.load(value)
        return (
            value.isoformat() if self.tp is not Decimal and self.tp is not uuid.UUID else str(value)
        )

    def schema(self, defs: dict[str, Any]) -> dict[str, Any]:
        if self.tp is Decimal:
            return {"anyOf": [{"type": "number"}, {"type": "string"}]}
        return {"type": "string", "format": self.fmt} if self.fmt else {"type": "string"}


def _decimal(value: Any) -> Decimal:
    return Decimal(str(value)) if isinstance(value, float) else Decimal(value)


_PARSED: dict[Any, tuple[str, Any, str | None]] = {
    _dt.datetime: ("a datetime", _dt.datetime.fromisoformat, "date-time"),
    _dt.date: ("a date", _dt.date.fromisoformat, "date"),
    _dt.time: ("a time", _dt.time.fromisoformat, "time"),
    uuid.UUID: ("a UUID", uuid.UUID, "uuid"),
    Decimal: ("a decimal", _decimal, None),
}


class _Literal(Node):
    def __init__(self, values: tuple[Any, ...]) -> None:
        self.values = values
        self.name = " or ".join(repr(v) for v in values)

    def load(self, value: Any) -> Any:
        for v in self.values:
            if value == v and type(value) is type(v):
                return v
        raise Invalid(f"expected {self.name}, got {value!r}"[:200])

    def schema(self, defs: dict[str, Any]) -> dict[str, Any]:
        return {"enum": list(self.values)}


class _Enum(Node):
    def __init__(self, cls: type[enum.Enum]) -> None:
        self.cls = cls
        self.name = f"one of {[m.value for m in cls]}"

    def load(self, value: Any) -> Any:
        if isinstance(value, self.cls):
            return value
        try:
            return self.cls(value)
        except (ValueError, TypeError):
            raise Invalid(f"expected {self.name}, got {value!r}"[:200]) from None

    def dump(self, value: Any) -> Any:
        return self.load(value).value

    def schema(self, defs: dict[str, Any]) -> dict[str, Any]:
        defs[self.cls.__name__] = {"title": self.cls.__name__, "enum": [m.value for m in self.cls]}
        return {"$ref": f"#/$defs/{self.cls.__name__}"}


class _List(Node):
    name = "an array"

    def __init__(self, item: Node, as_type: type = list) -> None:
        self.item, self.as_type = item, as_type

    def _each(self, value: Any, fn: Any) -> list[Any]:
        if not isinstance(value, list | tuple | set | frozenset):
            raise self.fail(value)
        out = []
        for i, v in enumerate(value):
            try:
                out.append(fn(v))
            except Invalid as exc:
                exc.loc.insert(0, i)
                raise
        return out

    def load(self, value: Any) -> Any:
        out = self._each(value, self.item.load)
        return out if self.as_type is list else self.as_type(out)

    def dump(self, value: Any) -> Any:
        return self._each(value, self.item.dump)

    def schema(self, defs: dict[str, Any]) -> dict[str, Any]:
        return {"type": "array", "items": self.item.schema(defs)}


class _Dict(Node):
    name = "an object"

    def __init__(self, key: Node, value: Node) -> None:
        self.key, self.value = key, value

    def _each(self, value: Any, kfn: Any, vfn: Any) -> dict[Any, Any]:
        if not isinstance(value, dict):
            raise self.fail(value)
        out = {}
        for k, v in value.items():
            try:
                out[kfn(k)] = vfn(v)
            except Invalid as exc:
                exc.loc.insert(0, k if isinstance(k, str) else str(k))
                raise
        return out

    def load(self, value: Any) -> Any:
        return self._each(value, self.key.load, self.value.load)

    def dump(self, value: Any) -> Any:
        return self._each(value, self.key.dump, self.value.dump)

    def schema(self, defs: dict[str, Any]) -> dict[str, Any]:
        return {"type": "object", "additionalProperties": self.value.schema(defs)}


class _Union(Node):
    def __init__(self, options: list[Node]) -> None:
        self.options = options
        self.name = " or ".join(o.name for o in options)

    def _first(self, value: Any, dump: bool) -> Any:
        errors = []
        for option in self.options:
            try:
                return option.dump(value) if dump else option.load(value)
            except Invalid as exc:
                errors.append(exc)
        deepest = max(errors, key=lambda e: len(e.loc))
        if deepest.loc:
            raise deepest
        raise self.fail(value)

    def load(self, value: Any) -> Any:
        return self._first(value, False)

    def dump(self, value: Any) -> Any:
        return self._first(value, True)

    def schema(self, defs: dict[str, Any]) -> dict[str, Any]:
        return {"anyOf": [o.schema(defs) for o in self.options]}


class _Fields(Node):
    """A dataclass or a TypedDict: named fields, some required."""

    def __init__(self, cls: type, is_dataclass: bool) -> None:
        self.cls, self.is_dataclass = cls, is_dataclass
        self.name = f"an object ({cls.__name__})"
        self.fields: dict[str, Node] = {}
        self.required: set[str] = set()

    def _fill(self, localns: dict[str, Any]) -> None:
        hints = typing.get_type_hints(self.cls, localns=localns, include_extras=True)
        if self.is_dataclass:
            for f in dataclasses.fields(self.cls):
                if not f.init:
                    continue
                self.fields[f.name] = compile_type(hints[f.name], localns)
                no_default = f.default is dataclasses.MISSING
                if no_default and f.default_factory is dataclasses.MISSING:
                    self.required.add(f.name)
        else:
            for key, tp in hints.items():
                self.fields[key] = compile_type(tp, localns)
            self.required = set(getattr(self.cls, "__required_keys__", hints))

    def _convert(self, value: dict[str, Any], dump: bool) -> dict[str, Any]:
        out = {}
        for key, node in self.fields.items():
            if key not in value:
                if key in self.required:
                    raise Invalid("field required", [key])
                continue
            try:
                out[key] = node.dump(value[key]) if dump else node.load(value[key])
            except Invalid as exc:
                exc.loc.insert(0, key)
                raise
        return out

    def load(self, value: Any) -> Any:
        if self.is_dataclass and isinstance(value, self.cls):
            return value
        if not isinstance(value, dict):
            raise self.fail(value)
        loaded = self._convert(value, False)
        return self.cls(**loaded) if self.is_dataclass else loaded

    def dump(self, value: Any) -> Any:
        if self.is_dataclass and isinstance(value, self.cls):
            value = {k: getattr(value, k) for k in self.fields}
        if not isinstance(value, dict):
            raise self.fail(value)
        return self._convert(value, True)

    def schema(self, defs: dict[str, Any]) -> dict[str, Any]:
        title = self.cls.__name__
        if title not in defs:
            defs[title] = {}  # placed first: a recursive type refers to itself
            defs[title] = {
                "title": title,
                "type": "object",
                "properties": {k: n.schema(defs) for k, n in self.fields.items()},
                "required": [k for k in self.fields if k in self.required],
            }
        return {"$ref": f"#/$defs/{title}"}


_SCALARS: dict[Any, Node] = {
    bool: _Scalar(bool, "a boolean", "boolean"),
    int: _Scalar(int, "an integer", "integer"),
    float: _Float(float, "a number", "number"),
    str: _Scalar(str, "a string", "string"),
    type(None): _None(),
    None: _None(),
}

_LISTS = {list, tuple, set, frozenset, collections.abc.Sequence}
_SEQUENCE_ORIGINS = {list, tuple, set, frozenset}
_building: dict[type, _Fields] = {}


def compile_type(tp: Any, localns: dict[str, Any] | None = None) -> Node:
    """The node for annotation ``tp``; raises :class:`Unsupported` for what it cannot do."""
    localns = localns or {}
    if tp is Any or tp is object:
        return _Any()
    if tp in _SCALARS:
        return _SCALARS[tp]
    if tp in _PARSED:
        return _Parsed(tp, *_PARSED[tp])
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return compile_type(args[0], localns)
    if isinstance(tp, typing.NewType):
        return compile_type(tp.__supertype__, localns)
    if origin is typing.Literal:
        return _Literal(args)
    if origin is typing.Union or origin is types.UnionType:
        return _Union([compile_type(a, localns) for a in args])
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _Enum(tp)
    if tp in _LISTS or origin in _SEQUENCE_ORIGINS or origin is collections.abc.Sequence:
        item_args = [a for a in args if a is not Ellipsis]
        if origin is tuple and len(set(item_args)) > 1:
            raise Unsupported(f"fixed-length tuples ({tp}) need pydantic")
        item = compile_type(item_args[0], localns) if item_args else _Any()
        return _List(item, origin if origin in (tuple, set, frozenset) else list)
    if tp is dict or origin is dict or origin is collections.abc.Mapping:
        if args and args[0] is not str:
            raise Unsupported(f"{tp}: JSON object keys are strings")
        return _Dict(_SCALARS[str], compile_type(args[1], localns) if args else _Any())
    if isinstance(tp, type) and (dataclasses.is_dataclass(tp) or _is_typeddict(tp)):
        if tp in _building:
            return _building[tp]  # a recursive type: the node being built
        node = _Fields(tp, dataclasses.is_dataclass(tp))
        _building[tp] = node
        try:
            node._fill(localns)
        finally:
            del _building[tp]
        return node
    raise Unsupported(f"{tp!r} is not a type the stdlib converter knows (install pydantic)")


def _is_typeddict(tp: type) -> bool:
    """typing's and typing_extensions' TypedDicts alike (``typing.is_typeddict`` of 3.11
    does not know the latter, which pydantic asks for on 3.11)."""
    return issubclass(tp, dict) and hasattr(tp, "__required_keys__")
