"""Recovery: re-run a failed or cancelled run keeping what it recorded
(``/runs/{id}/retry``), every failed run of a version at once (``/runs/retry``), and the
dead letters — messages no worker could use — listed, read, discarded or requeued."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, request

from aiki import InvalidState, RunNotFound
from aiki.engine import DeadLetterNotFound, Store

from .._errors import ApiError, json_response, run_not_found
from .._limits import MAX_LIST_LIMIT, MAX_MS
from .._model import Field, Model, Query
from .._paging import RunFilter, is_entry_id, list_runs_page
from .._state import current_state
from ._common import API, LIMIT, controlled, read_body

blueprint = Blueprint("recover", __name__, url_prefix=API)

EMPTY = Model("RetryRequest", ())

RETRY_RUNS = Model(
    "RetryRunsRequest",
    (
        Field("workflow", "string", required=True, nullable=False, min_length=1),
        Field("version", "string", required=True, nullable=False, min_length=1),
        Field("status", "string", enum=("failed", "cancelled"), default="failed",
              check_message="status must be 'failed' or 'cancelled', got {value!r}",
              description="Retry the runs that ended with this status."),
        Field("since_ms", "integer", minimum=0, maximum=MAX_MS,
              description="Only runs created at or after this Unix time (ms)."),
        Field("until_ms", "integer", minimum=0, maximum=MAX_MS,
              description="Only runs created before this Unix time (ms)."),
        Field("limit", "integer", minimum=1, maximum=MAX_LIST_LIMIT, default=MAX_LIST_LIMIT,
              description="Runs examined in this request (one page, newest first)."),
        Field("cursor", "string", min_length=1, pattern=r"^[0-9]{1,14}(:.+)?$",
              description="The next_cursor of the previous answer: the page after it."),
    ),
    description="Retries one page of matching runs; repeat with next_cursor until it is null.",
)  # fmt: skip

DEAD_LETTERS = Query(
    (
        Field("limit", "integer", minimum=1, maximum=MAX_LIST_LIMIT, nullable=False,
              default=50, description=LIMIT.description),
        Field("cursor", "string", nullable=False, pattern=r"^[0-9]{1,19}-[0-9]{1,19}$",
              description="The next_cursor of the previous page (a dead letter's id): the "
              "older ones. Absent for the first page."),
    )
)  # fmt: skip


@blueprint.post("/runs/<run_id>/retry")
async def retry_run(run_id: str) -> Response:
    await read_body(EMPTY, optional=True)
    store = current_state().require_store()

    async def retry() -> str:
        await store.retry_run(run_id)
        return "queued"

    return await controlled(run_id, retry)


@blueprint.post("/runs/retry")
async def retry_runs() -> Response:
    values = await read_body(RETRY_RUNS)
    store = current_state().require_store()
    filters = RunFilter(
        status=values["status"],
        workflow=values["workflow"],
        version=values["version"],
        created_after=values["since_ms"],
        created_before=values["until_ms"],
    )
    page, next_cursor = await list_runs_page(store, filters, values["limit"], values["cursor"])
    retried: list[str] = []
    refused: list[dict[str, Any]] = []
    for run in page:
        try:
            await store.retry_run(run.id)
        except (RunNotFound, InvalidState) as exc:  # changed since it was listed
            refused.append({"id": run.id, "reason": str(exc)})
        else:
            retried.append(run.id)
    answer = {"retried": retried, "refused": refused, "examined": len(page)}
    return json_response({**answer, "next_cursor": next_cursor})


# -- dead letters ----------------------------------------------------------------------


def _letter_not_found(letter_id: str) -> ApiError:
    return ApiError(404, "not_found", f"no dead letter with id {letter_id!r}", "letter_id")


@blueprint.get("/dead-letters")
async def list_dead_letters() -> Response:
    query = DEAD_LETTERS.parse(request.args)
    cursor = query["cursor"]
    if cursor is not None and not is_entry_id(cursor):
        raise ApiError(422, "validation_error", f"cursor must be a dead letter id, got {cursor!r}",
                       "cursor")  # fmt: skip
    store = current_state().require_store()
    letters, total = await store.list_dead_letters(limit=query["limit"] + 1, before=cursor)
    page = letters[: query["limit"]]
    next_cursor = page[-1].id if len(letters) > len(page) else None
    return json_response(
        {"dead_letters": [d.to_json() for d in page], "total": total, "next_cursor": next_cursor}
    )


async def _letter(store: Store, letter_id: str) -> dict[str, Any]:
    letter = await store.get_dead_letter(letter_id) if is_entry_id(letter_id) else None
    if letter is None:
        raise _letter_not_found(letter_id)
    out = letter.to_json()
    run = await store.get_run(letter.run_id) if letter.run_id else None
    out["run"] = current_state().shown(run.to_json()) if run is not None else None
    return out


@blueprint.get("/dead-letters/<letter_id>")
async def get_dead_letter(letter_id: str) -> Response:
    return json_response(await _letter(current_state().require_store(), letter_id))


@blueprint.delete("/dead-letters/<letter_id>")
async def discard_dead_letter(letter_id: str) -> Response:
    store = current_state().require_store()
    if not is_entry_id(letter_id) or not await store.discard_dead_letter(letter_id):
        raise _letter_not_found(letter_id)
    return json_response({"deleted": True, "id": letter_id})


@blueprint.post("/dead-letters/<letter_id>/requeue")
async def requeue_dead_letter(letter_id: str) -> Response:
    await read_body(EMPTY, optional=True)
    store = current_state().require_store()
    if not is_entry_id(letter_id):
        raise _letter_not_found(letter_id)
    letter = await store.get_dead_letter(letter_id)
    try:
        result = await store.requeue_dead_letter(letter_id)
    except DeadLetterNotFound:
        raise _letter_not_found(letter_id) from None
    except RunNotFound as exc:
        raise ApiError(
            409, "invalid_state", f"{exc}: the run is gone; discard the dead letter", "letter_id"
        ) from None
    except InvalidState as exc:
        raise ApiError(409, "invalid_state", str(exc), "letter_id") from None
    run_id = letter.run_id if letter is not None else None
    run = await store.get_run(run_id) if run_id else None
    if run_id and run is None:
        raise run_not_found(run_id)
    shown = current_state().shown(run.to_json()) if run else None
    return json_response({"result": result, "run": shown})
