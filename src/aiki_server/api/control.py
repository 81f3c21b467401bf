"""Control of a run: cancel (with its children), pause, resume, and wakeup (end a named
sleep early). Each answers the action's result and the run as it is now."""

from __future__ import annotations

from quart import Blueprint, Response

from .._model import Field, Model
from .._state import current_state
from ._common import API, controlled, read_body

blueprint = Blueprint("control", __name__, url_prefix=API)

CANCEL = Model(
    "CancelRequest",
    (Field("reason", "string", default="cancelled", falsy_is_absent=True),),
)
EMPTY = Model("Empty", ())
WAKEUP = Model(
    "WakeupRequest",
    (Field("name", "string", required=True, nullable=False, min_length=1),),
)


@blueprint.post("/runs/<run_id>/cancel")
async def cancel_run(run_id: str) -> Response:
    reason = (await read_body(CANCEL, optional=True))["reason"]
    store = current_state().require_store()
    return await controlled(run_id, lambda: store.cancel_run(run_id, reason))


@blueprint.post("/runs/<run_id>/pause")
async def pause_run(run_id: str) -> Response:
    await read_body(EMPTY, optional=True)
    store = current_state().require_store()
    return await controlled(run_id, lambda: store.pause_run(run_id))


@blueprint.post("/runs/<run_id>/resume")
async def resume_run(run_id: str) -> Response:
    await read_body(EMPTY, optional=True)
    store = current_state().require_store()
    return await controlled(run_id, lambda: store.resume_run(run_id))


@blueprint.post("/runs/<run_id>/wakeup")
async def wakeup_run(run_id: str) -> Response:
    name = (await read_body(WAKEUP, optional=True))["name"]
    store = current_state().require_store()
    return await controlled(run_id, lambda: store.wake_sleep(run_id, name))
