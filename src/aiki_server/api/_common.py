"""What the API's blueprints share: the path prefix, reading a body against its model,
the paging query, and answering a control action."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from quart import Response, request

from aiki import InvalidState, RunNotFound

from .._errors import ApiError, json_response, run_not_found
from .._limits import MAX_LIST_LIMIT
from .._model import Field, Model, Query, parse_body
from .._state import current_state

API = "/api/v1"

LIMIT = Field(
    "limit",
    "integer",
    minimum=1,
    maximum=MAX_LIST_LIMIT,
    default=MAX_LIST_LIMIT,
    nullable=False,
    description="Items per page.",
)
CURSOR = Field(
    "cursor",
    "string",
    nullable=False,
    description=(
        "The next_cursor of the previous page (opaque: the items after it); "
        "absent for the first page."
    ),
)
#: ``limit`` and ``cursor``: the query of the lists paged by key.
PAGED = Query((LIMIT, CURSOR))


async def read_body(model: Model, *, optional: bool = False) -> dict[str, Any]:
    """The request's JSON body validated by ``model``. ``optional``: an empty body is
    ``{}`` (the control actions may be posted without one)."""
    raw = await request.get_data(cache=False, as_text=False)
    data = raw if isinstance(raw, bytes) else raw.encode()
    body = parse_body(data) if data.strip() or not optional else {}
    return model.validate(body)


async def controlled(run_id: str, action: Callable[[], Awaitable[Any]]) -> Response:
    """Apply a control action; answer its result and the run as it is now."""
    try:
        result = await action()
    except RunNotFound:
        raise run_not_found(run_id) from None
    except InvalidState as exc:
        raise ApiError(409, "invalid_state", str(exc)) from None
    state = current_state()
    run = await state.require_store().get_run(run_id)
    return json_response({"result": result, "run": state.shown(run.to_json()) if run else None})
