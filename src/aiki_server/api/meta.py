"""The probes (``/healthz``, ``/readyz``), Prometheus ``/metrics`` and the OpenAPI
document at ``/api/v1/openapi.json``."""

from __future__ import annotations

import contextlib

import trio
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from quart import Blueprint, Response

from aiki import ConnectionFailed

from .._errors import json_response
from .._schemas import openapi_components
from .._state import current_state
from ._common import API
from ._openapi import openapi_document

blueprint = Blueprint("meta", __name__)


@blueprint.get("/healthz")
async def healthz() -> Response:
    return json_response({"status": "ok"})


@blueprint.get("/readyz")
async def readyz() -> Response:
    state = current_state()
    store = state.store
    if store is None or state.listener is None:
        return json_response({"status": "unavailable", "redis": "not connected"}, 503)
    answered = False
    with trio.move_on_after(2.0):
        try:
            answered = await store.ping()  # every primary of a cluster must answer
        except ConnectionFailed:
            answered = False
    if not answered:
        return json_response({"status": "unavailable", "redis": "no answer to PING"}, 503)
    return json_response({"status": "ok", "redis": "ok"})


@blueprint.get("/metrics")
async def metrics() -> Response:
    state = current_state()
    await state.collector.refresh(state.store)
    return Response(generate_latest(state.registry), content_type=CONTENT_TYPE_LATEST)


@blueprint.get(f"{API}/openapi.json")
async def openapi() -> Response:
    """The document, with the registered workflows' input and output schemas among its
    components (``workflow.<name>.<version>.input``; none while Redis is away)."""
    document = openapi_document()
    store = current_state().store
    if store is not None:
        # The document does not need Redis: without it, no workflow schemas.
        with contextlib.suppress(Exception), trio.move_on_after(2.0):
            workflows = await store.list_workflows()
            document["components"]["schemas"].update(openapi_components(workflows))
    return json_response(document)
