"""Types from annotations: payloads and results validated and converted at the edges.

A workflow's ``run(ctx, payload: Order) -> Receipt`` or a task's
``fn(payload: Charge) -> Receipt`` says what goes in and out. What crosses Redis and
HTTP stays JSON (other languages, the dashboard and the canonical task address read
it); the annotation decides what user code receives and returns:

* on the way in (a start, ``task.start``, ``start_as_child``), the value given is
  validated against the input type and dumped to JSON (:meth:`PayloadType.dump`); a bad
  value raises :class:`aiki.InvalidPayload` naming the path of the bad field before
  anything is written;
* on the way out (the worker calling the function, ``wait_for_completion``, a replayed
  task, a child's result, an event), stored JSON is loaded into the type
  (:meth:`PayloadType.load`).

Unannotated parameters (or ``Any``) are not touched: the cost on the hot path is one
attribute test. pydantic models need pydantic (an optional extra); dataclasses,
TypedDicts, enums, datetimes, UUIDs, Decimals and plain JSON types also work without it
through :mod:`aiki._stdlib_types`. When both can handle a type, pydantic-core is used:
``benchmarks/typed_overhead.py`` measured it 2-5x faster than the stdlib tree for
dataclasses (about 2-3 us against 5-17 us to load or dump a small order) and as fast or
faster for TypedDicts and dicts (figures in docs/typed-data.md). The stdlib converter
takes what pydantic refuses (``typing.TypedDict`` on Python 3.11).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import importlib
import inspect
import logging
import sys
import typing
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from ._errors import ConfigurationError, InvalidPayload
from ._stdlib_types import Invalid, Node, Unsupported, compile_type

log = logging.getLogger("aiki")

__all__ = ["UNTYPED", "PayloadType", "Signature", "format_path", "jsonable", "payload_type"]

pydantic: Any = None
_imported = False


def _pydantic() -> Any:
    """pydantic (the optional extra) or None; imported at the first typed annotation, so
    ``import aiki`` and untyped programs never pay for it."""
    global pydantic, _imported
    if not _imported:
        _imported = True
        try:
            pydantic = importlib.import_module("pydantic")
        except ImportError:
            pydantic = None
    return pydantic


def format_path(loc: typing.Sequence[Any]) -> str:
    """``("items", 0, "quantity")`` as ``items[0].quantity``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _invalid(where: str, loc: typing.Sequence[Any], message: str) -> InvalidPayload:
    path = format_path(loc)
    field = f"{where}.{path}" if path and where == "payload" else (path or where)
    where_path = f"{where}.{path}" if path else where
    return InvalidPayload(
        f"{where_path}: {message}", field=field if where == "payload" else None, path=path
    )


class PayloadType:
    """How one annotation's values go in and out of JSON (see the module docstring)."""

    __slots__ = ("annotation", "typed", "backend", "_node", "_adapter")

    def __init__(self, annotation: Any = None) -> None:
        self.annotation = annotation
        self.typed = annotation is not None
        self.backend = "none"
        self._node: Node | None = None
        self._adapter: Any = None
        if not self.typed:
            return
        if _pydantic() is not None:
            try:
                self._adapter = pydantic.TypeAdapter(annotation)
                self.backend = "pydantic"
                return
            except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticUserError):
                pass  # e.g. typing.TypedDict on 3.11: the stdlib converter takes it
        try:
            self._node = compile_type(annotation)
            self.backend = "stdlib"
        except Unsupported as unsupported:
            hint = "" if pydantic is not None else " (pip install 'aiki[pydantic]')"
            raise ConfigurationError(
                f"cannot use {annotation!r} as a payload type{hint}: {unsupported}"
            ) from None

    def load(self, value: Any, *, where: str = "payload") -> Any:
        """A JSON value (or an instance) as the annotated type; InvalidPayload if unfit."""
        if not self.typed:
            return value
        if self._node is not None:
            try:
                return self._node.load(value)
            except Invalid as exc:
                raise _invalid(where, exc.loc, exc.message) from None
            except RecursionError:
                raise _invalid(where, (), "nested too deeply") from None
        try:
            return self._adapter.validate_python(value)
        except pydantic.ValidationError as exc:
            raise _from_pydantic(where, exc) from None

    def dump(self, value: Any, *, where: str = "payload") -> Any:
        """``value`` (an instance, or JSON that fits) validated and as plain JSON."""
        if not self.typed:
            return value
        if self._node is not None:
            try:
                return self._node.dump(value)
            except Invalid as exc:
                raise _invalid(where, exc.loc, exc.message) from None
            except RecursionError:
                raise _invalid(where, (), "nested too deeply") from None
        try:
            return self._adapter.dump_python(self._adapter.validate_python(value), mode="json")
        except pydantic.ValidationError as exc:
            raise _from_pydantic(where, exc) from None
        except (ValueError, TypeError) as exc:  # pydantic-core cannot serialize it
            raise _invalid(where, (), str(exc)) from None

    def json_schema(self) -> dict[str, Any] | None:
        """The JSON Schema of the type's JSON form (None: untyped, anything goes)."""
        if not self.typed:
            return None
        if self._node is not None:
            defs: dict[str, Any] = {}
            schema = self._node.schema(defs)
            return {**schema, "$defs": defs} if defs else schema
        return dict(self._adapter.json_schema(mode="validation"))

    def __repr__(self) -> str:
        return f"<PayloadType {self.annotation!r} ({self.backend})>"


UNTYPED = PayloadType(None)


def _from_pydantic(where: str, exc: Any) -> InvalidPayload:
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = [p for p in first["loc"]]
    message = first["msg"]
    if len(errors) > 1:  # the others too, briefly: one round of fixes, not one per error
        others = [f"{format_path(e['loc']) or where}: {e['msg']}" for e in errors[1:4]]
        more = f"; {len(errors) - 4} more" if len(errors) > 4 else ""
        message += f" (also {'; '.join(others)}{more})"
    return _invalid(where, loc, message)


_cache: dict[Any, PayloadType] = {}


def payload_type(annotation: Any) -> PayloadType:
    """The (cached) PayloadType of ``annotation``; untyped for none, ``Any`` or ``object``."""
    if annotation is inspect.Parameter.empty or annotation is Any or annotation is object:
        return UNTYPED
    try:
        found = _cache.get(annotation)
    except TypeError:  # an unhashable annotation
        return PayloadType(annotation)
    if found is None:
        found = _cache[annotation] = PayloadType(annotation)
    return found


class Signature:
    """A function's input and output types, resolved at first use (so annotations may
    name classes defined later in the module, and ``from __future__ import annotations``
    works)."""

    __slots__ = ("fn", "position", "what", "_resolved")

    def __init__(self, fn: Callable[..., Any], position: int, what: str) -> None:
        self.fn, self.position, self.what = fn, position, what
        self._resolved: tuple[PayloadType, PayloadType] | None = None

    def _resolve(self) -> tuple[PayloadType, PayloadType]:
        if self._resolved is None:
            try:
                hints = typing.get_type_hints(self.fn, include_extras=True)
            except Exception as exc:  # a name the annotations use cannot be found
                raise ConfigurationError(
                    f"{self.what}: cannot resolve its annotations: {exc}"
                ) from None
            params = list(inspect.signature(self.fn).parameters)
            name = params[self.position] if len(params) > self.position else ""
            try:
                inp = payload_type(hints.get(name, inspect.Parameter.empty))
                out = payload_type(hints.get("return", inspect.Parameter.empty))
            except ConfigurationError as exc:
                raise ConfigurationError(f"{self.what}: {exc}") from None
            self._resolved = (inp, out)
        return self._resolved

    def schemas(self) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """The JSON Schemas of the input and the output (None: untyped), registered
        with a workflow version for the API, the OpenAPI document and the dashboard."""
        out: list[dict[str, Any] | None] = []
        for side in (self.input, self.output):
            try:
                out.append(side.json_schema())
            except Exception as exc:  # a type pydantic validates but cannot describe
                log.warning("%s: no JSON Schema for %r (%s)", self.what, side.annotation, exc)
                out.append(None)
        return out[0], out[1]

    @property
    def input(self) -> PayloadType:
        return (self._resolved or self._resolve())[0]

    @property
    def output(self) -> PayloadType:
        return (self._resolved or self._resolve())[1]


def jsonable(value: Any) -> Any:
    """The JSON form of a typed value met where no annotation says its type (an
    unannotated function's result, event data): the ``default`` of the JSON encoders.
    Only called for what JSON cannot encode itself, so plain JSON costs nothing."""
    model = sys.modules.get("pydantic")  # a model exists only if pydantic was imported
    if model is not None and isinstance(value, model.BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, _dt.datetime | _dt.date | _dt.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
