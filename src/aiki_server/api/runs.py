"""Runs: start (``POST /runs``), list, get, and long-poll until a run ends (``/wait``)."""

from __future__ import annotations

import dataclasses
from typing import Any

from quart import Blueprint, Response, request

from aiki import (
    ConfigurationError,
    InvalidPayload,
    PayloadTooLarge,
    RunConflict,
    RunNotFound,
    UnknownWorkflow,
)
from aiki.codecs import describe as describe_envelope
from aiki.engine import (
    MAX_PRIORITY,
    RUN_STATUSES,
    StartRequest,
    Store,
    continue_trace,
    history_of,
    wait_for_end,
)
from aiki.engine import start_run as start_a_run

from .._errors import ApiError, json_response, run_not_found
from .._limits import DEFAULT_RUNS_LIMIT, DEFAULT_WAIT, MAX_LIST_LIMIT, MAX_MS, MAX_SECONDS
from .._model import Field, Model, Query
from .._paging import RunFilter, list_runs_page
from .._schemas import check_payload
from .._settings import Settings
from .._state import current_state
from ._common import API, LIMIT, read_body

blueprint = Blueprint("runs", __name__, url_prefix=API)
_UNCHECKED = object()

START_RUN = Model(
    "StartRunRequest",
    (
        Field("workflow", "string", required=True, nullable=False, min_length=1,
              example="order-processing"),
        Field("version", "string", required=True, nullable=False, min_length=1,
              example="1.0.0"),
        Field("payload", "any"),
        Field("reference_id", "string", min_length=1,
              message="reference_id must be a non-empty string or null, got {got}"),
        Field("on_conflict", "string", enum=("error", "return_existing"), default="error",
              message="on_conflict must be 'error' or 'return_existing'",
              check_message="on_conflict must be 'error' or 'return_existing'"),
        Field("start_at_ms", "integer", minimum=0, maximum=MAX_MS,
              message="start_at_ms must be a Unix time in milliseconds (an integer in "
              f"0..{MAX_MS}) or null"),
        Field("timeout", "number", minimum=0, exclusive_minimum=True, maximum=MAX_SECONDS,
              message=f"timeout must be a number of seconds > 0 and <= {MAX_SECONDS}, or null"),
        Field("sensitive", "boolean", default=False),
        Field("concurrency_key", "string", min_length=1,
              message="concurrency_key must be a string of 1 to 256 characters or null, "
              "got {got}",
              description="The run's key for its version's concurrency limit (at most N "
              "runs at once per key; docs/flow-control.md). Required when the version's "
              "keys come from a function of the payload; refused for a version without "
              "a limit. Absent: the version's one shared key."),
        Field("priority", "integer", minimum=0, maximum=MAX_PRIORITY, default=0,
              description="0 (none, the default) to 100: among the version's waiting runs, "
              "those with a higher priority are taken first."),
    ),
    unknown_last=True,
)  # fmt: skip


def _ms(name: str, description: str) -> Field:
    return Field(
        name, "integer", minimum=0, maximum=MAX_MS, nullable=False, description=description
    )


LIST_RUNS = Query(
    (
        Field("status", "string", enum=RUN_STATUSES, nullable=False, description="Status.",
              check_message=f"status must be one of {', '.join(RUN_STATUSES)}, got {{value!r}}"),
        Field("workflow", "string", nullable=False, description="Workflow name."),
        Field("version", "string", nullable=False, description="Workflow version."),
        Field("reference_id", "string", nullable=False,
              description="The reference id the run was started with."),
        _ms("created_after", "Created at or after this Unix time (ms)."),
        _ms("created_before", "Created before this Unix time (ms)."),
        Field("limit", "integer", minimum=1, maximum=MAX_LIST_LIMIT, nullable=False,
              default=DEFAULT_RUNS_LIMIT, description=LIMIT.description),
        Field("cursor", "string", nullable=False, pattern=r"^[0-9]{1,14}(:.+)?$",
              description="The next_cursor of the previous page (`<ms>:<run id>`), or a Unix "
              "time in ms: runs created before it. Absent for the first page."),
    )
)  # fmt: skip

ATTRIBUTE = "attribute."
# OpenAPI 3.0 cannot declare a family of parameter names, so the document describes
# ``attribute.<name>`` in the operation's description and an ``x-`` extension.
ATTRIBUTE_PARAMETERS = {
    "prefix": ATTRIBUTE,
    "in": "query",
    "description": "Search attributes: `attribute.<name>=<value>` keeps the runs whose "
    "attribute <name> (set by the workflow with ctx.set_attributes) is <value>, e.g. "
    "`?attribute.customer=42`; give several names to require them all. Names: letters, "
    "digits, `_ . -` (at most 64 characters); values 1 to 256 characters.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 256},
}

WAIT = Query(
    (
        Field("timeout", "number", minimum=0, nullable=False,
              message="timeout must be a number of seconds >= 0, got {raw!r}",
              description="Seconds to wait at most (clamped to the server's max_wait)."),
    )
)  # fmt: skip


@blueprint.post("/runs")
async def start_run() -> Response:
    state = current_state()
    values = await read_body(START_RUN)
    with continue_trace(request.headers):  # the run joins the caller's trace
        status, out = await start_from_request(state.require_store(), state.settings, values)
    return json_response(out, status, {"Location": f"{API}/runs/{out['id']}"})


async def start_from_request(
    store: Store, settings: Settings, values: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    """Start the run a validated ``START_RUN`` body asks for: (status, the answer).

    Validation, run-id choice, the registration lookup and the conflict policy are the
    SDK's one start path (``aiki.engine.StartRequest`` / ``start_run``), shared with the
    client; this maps its errors to HTTP answers.
    """
    workflow, version = values["workflow"], values["version"]
    # A client with codecs sends its payload encoded: checked once decoded, if this
    # server has the codecs; else not here (the worker checks it with the types).
    decoder = current_state().decoder
    checkable, _ = decoder.value(values["payload"])
    encoded = describe_envelope(values["payload"]) is not None
    if describe_envelope(checkable) is not None:
        checkable = _UNCHECKED
    try:
        start = StartRequest.build(
            workflow,
            version,
            values["payload"],
            reference_id=values["reference_id"],
            on_conflict=values["on_conflict"],
            start_at_ms=values["start_at_ms"],
            timeout=values["timeout"],
            sensitive=values["sensitive"],
            priority=values["priority"],
            max_payload_bytes=settings.max_payload_bytes,
            concurrency_key=values["concurrency_key"],
        )
    except PayloadTooLarge as exc:
        raise ApiError(413, "payload_too_large", str(exc), exc.field, limit=exc.limit) from None
    except (ConfigurationError, InvalidPayload) as exc:
        raise ApiError(422, "validation_error", str(exc), exc.field) from None
    if encoded and checkable is not _UNCHECKED and start.reference_id is not None:
        # Decoded with this server's keys: a repeat is recognised by the plaintext's
        # digests, as a client with the same keys does (else by the envelope's SHA-1).
        start = dataclasses.replace(start, digests=decoder.chain.digests(checkable))
    try:
        # registered=True: the server has no workflow code, so the version's registration
        # gives its shards and default timeout; retry_for=0: a request does not wait out a
        # Redis outage (the client sees 503 and may retry with the same reference id).
        # check: the payload against the version's registered input schema (422).
        outcome = await start_a_run(
            store,
            start,
            registered=True,
            retry_for=0.0,
            check=lambda registration: check_payload(registration, checkable),
        )
    except (InvalidPayload, ConfigurationError) as exc:
        raise ApiError(422, "validation_error", str(exc), exc.field) from None
    except UnknownWorkflow as exc:
        extra = {"known_versions": exc.known_versions} if exc.known_versions else {}
        raise ApiError(404, "unknown_workflow", str(exc), exc.field, **extra) from None
    except RunConflict as exc:
        raise ApiError(409, "run_conflict", str(exc), "reference_id") from None
    if outcome.created and start.start_at_ms is None:
        out: dict[str, Any] = {
            "id": outcome.run_id,
            "workflow": workflow,
            "version": version,
            "status": "queued",
            "reference_id": start.reference_id,
            "created": True,
        }
        return 201, out
    # A delayed start (``scheduled`` unless the time had already come: Redis decides),
    # or an idempotent repeat: the run as it is now.
    run = await store.get_run(outcome.run_id)
    out = current_state().shown(run.to_json()) if run is not None else {"id": outcome.run_id}
    out["created"] = outcome.created
    return (201 if outcome.created else 200), out


@blueprint.get("/runs")
async def list_runs() -> Response:
    # ``attribute.<name>=<value>`` parameters filter by search attributes (every one
    # given must match); the others are the declared ones.
    args = {k: v for k, v in request.args.items() if not k.startswith(ATTRIBUTE)}
    attributes = tuple(
        (k[len(ATTRIBUTE) :], v) for k, v in request.args.items() if k.startswith(ATTRIBUTE)
    )
    query = LIST_RUNS.parse(args)
    page, next_cursor = await list_runs_page(
        current_state().require_store(),
        RunFilter(
            status=query["status"],
            workflow=query["workflow"],
            version=query["version"],
            created_after=query["created_after"],
            created_before=query["created_before"],
            reference_id=query["reference_id"],
            attributes=attributes,
        ),
        query["limit"],
        query["cursor"],
    )
    state = current_state()
    runs = [state.shown(r.to_json()) for r in page]
    return json_response({"runs": runs, "next_cursor": next_cursor})


@blueprint.get("/runs/<run_id>")
async def get_run(run_id: str) -> Response:
    state = current_state()
    run = await state.require_store().get_run(run_id, with_tasks=True)
    if run is None:
        raise run_not_found(run_id)
    return json_response(state.shown(run.to_json()))


@blueprint.get("/runs/<run_id>/history")
async def run_history(run_id: str) -> Response:
    """The run's history document (``aiki.history/1``): what ``aiki.testing.replay``
    checks new workflow code against. Redacted for a sensitive run, like every read."""
    state = current_state()
    run = await state.require_store().get_run(run_id, with_tasks=True)
    if run is None:
        raise run_not_found(run_id)
    return json_response(state.shown(history_of(run)))


@blueprint.get("/runs/<run_id>/wait")
async def wait_run(run_id: str) -> Response:
    state = current_state()
    wanted = WAIT.parse(request.args)["timeout"]
    # A longer wish is served as a shorter long-poll; clients poll again.
    timeout = min(DEFAULT_WAIT if wanted is None else wanted, state.settings.max_wait)
    store = state.require_store()
    try:
        outcome = await wait_for_end(state.require_listener(), store, run_id, timeout)
    except RunNotFound:
        raise run_not_found(run_id) from None
    if outcome is not None and outcome.get("status") == "missing":
        raise run_not_found(run_id)
    run = await store.get_run(run_id, with_tasks=True)
    if run is None:
        raise run_not_found(run_id)
    return json_response(state.shown(run.to_json(reveal=True)))
