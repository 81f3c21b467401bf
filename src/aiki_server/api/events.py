"""Events: send a named event (with optional data and an idempotency reference id) to a
run that waits for it, or will."""

from __future__ import annotations

from quart import Blueprint, Response

from aiki.engine import json_dumps

from .._errors import ApiError
from .._model import Field, Model
from .._state import current_state
from ._common import API, controlled, read_body

blueprint = Blueprint("events", __name__, url_prefix=API)

EVENT = Model(
    "EventRequest",
    (
        Field("name", "string", required=True, nullable=False, min_length=1),
        Field("data", "any"),
        Field("reference_id", "string", min_length=1,
              message="reference_id must be a non-empty string"),
    ),
)  # fmt: skip


@blueprint.post("/runs/<run_id>/events")
async def send_event(run_id: str) -> Response:
    state = current_state()
    settings = state.settings
    body = await read_body(EVENT, optional=True)
    data_json = json_dumps(body["data"], what="event data")
    if len(data_json.encode()) > settings.max_payload_bytes:
        raise ApiError(
            413,
            "payload_too_large",
            f"event data is larger than {settings.max_payload_bytes} bytes",
            "data",
        )
    store = state.require_store()
    return await controlled(
        run_id,
        lambda: store.send_event(
            run_id,
            body["name"],
            data_json,
            reference_id=body["reference_id"],
            max_events=settings.max_events_per_run,
        ),
    )
