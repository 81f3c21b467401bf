"""Workers in the registry and the workflow versions they registered."""

from __future__ import annotations

from quart import Blueprint, Response, request

from aiki.engine import Keys

from .._errors import json_response
from .._observe import list_workers as read_workers
from .._paging import page_by_key
from .._state import current_state
from ._common import API, PAGED

blueprint = Blueprint("workers", __name__, url_prefix=API)


@blueprint.get("/workflows")
async def list_workflows() -> Response:
    query = PAGED.parse(request.args)
    found = await current_state().require_store().list_workflows()
    page, next_cursor = page_by_key(
        found,
        lambda w: Keys.workflow_field(w["workflow"], w["version"]),
        query["limit"],
        query["cursor"],
    )
    return json_response({"workflows": page, "next_cursor": next_cursor})


@blueprint.get("/workers")
async def list_workers() -> Response:
    query = PAGED.parse(request.args)
    found = await read_workers(current_state().require_store())
    page, next_cursor = page_by_key(found, lambda w: w["id"], query["limit"], query["cursor"])
    return json_response({"workers": page, "next_cursor": next_cursor})
