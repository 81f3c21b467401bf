"""Schedules: list, create or replace (a cron expression or an interval), delete, pause,
resume, and trigger now (start a run outside the timetable)."""

from __future__ import annotations

from croniter import croniter
from quart import Blueprint, Response, request

from aiki import ConfigurationError, InvalidPayload, Schedule
from aiki.engine import (
    MAX_PRIORITY,
    ScheduleNotFound,
    pause_schedule,
    resume_schedule,
    trigger_schedule,
)
from aiki.engine import create_schedule as save_schedule
from aiki.engine import delete_schedule as remove_schedule
from aiki.engine import list_schedules as read_schedules

from .._errors import ApiError, json_response, validation_error
from .._limits import MAX_SECONDS
from .._model import Field, Model
from .._paging import page_by_key
from .._state import current_state
from ._common import API, PAGED, read_body

blueprint = Blueprint("schedules", __name__, url_prefix=API)

OVERLAP = ("allow", "skip", "cancel_previous")


def _string_or_null(name: str) -> str:
    return f"{name} must be a string or null, got {{got}}"


# The cron and overlap rules are the ones aiki.Schedule enforces, stated here too so that
# the error names its field (Schedule's ConfigurationError names it only from
# ConfigurationError.field on) and the document can say them.
CREATE_SCHEDULE = Model(
    "CreateScheduleRequest",
    (
        Field("id", "string", required=True, nullable=False, min_length=1),
        Field("workflow", "string", required=True, nullable=False, min_length=1),
        Field("version", "string", required=True, nullable=False, min_length=1),
        Field("payload", "any"),
        Field("cron", "string", min_length=1, message=_string_or_null("cron"),
              check=croniter.is_valid, check_message="invalid cron expression {value!r}",
              example="*/5 * * * *"),
        Field("every", "number", minimum=0, exclusive_minimum=True, maximum=MAX_SECONDS,
              message=f"every must be a number of seconds > 0 and <= {MAX_SECONDS}"),
        Field("overlap", "string", enum=OVERLAP, message=_string_or_null("overlap"),
              check_message="schedule overlap must be allow, skip or cancel_previous, "
              "got {value!r}"),
        Field("priority", "integer", minimum=0, maximum=MAX_PRIORITY, default=0,
              description="The runs' priority: 0 (none) to 100 (see StartRunRequest)."),
        Field("concurrency_key", "string", min_length=1,
              message=_string_or_null("concurrency_key"),
              description="The runs' key for the version's concurrency limit (absent: the "
              "version-wide key)."),
    ),
    description="Exactly one of cron (5 fields, UTC) and every (seconds).",
    one_of=("cron", "every"),
    one_of_message="a schedule needs exactly one of cron= and every=",
    variants={"cron": "CronSchedule", "every": "IntervalSchedule"},
)  # fmt: skip


@blueprint.get("/schedules")
async def list_schedules() -> Response:
    query = PAGED.parse(request.args)
    state = current_state()
    found = await read_schedules(state.require_store())
    page, next_cursor = page_by_key(found, lambda s: s["id"], query["limit"], query["cursor"])
    shown = [state.shown(s) for s in page]  # a client's encrypted payload, if it can
    return json_response({"schedules": shown, "next_cursor": next_cursor})


@blueprint.post("/schedules")
async def create_schedule() -> Response:
    values = await read_body(CREATE_SCHEDULE)
    if values["overlap"] is None:
        del values["overlap"]  # null means "the default", as for cron and every
    try:
        schedule = Schedule(**values)
    except (ConfigurationError, InvalidPayload) as exc:
        # The model checked what Schedule checks; a rule it does not know names its
        # field through the exception (None where Schedule does not say).
        raise validation_error(exc.field, str(exc)) from None
    store = current_state().require_store()
    if not await store.workflow_known(schedule.workflow, schedule.version):
        raise ApiError(
            404,
            "unknown_workflow",
            f"unknown workflow {schedule.workflow!r} version {schedule.version!r}",
            "workflow",
        )
    first = await save_schedule(store, schedule)
    return json_response(current_state().shown({**schedule.to_json(), "next_at": first}), 201)


@blueprint.delete("/schedules/<schedule_id>")
async def delete_schedule(schedule_id: str) -> Response:
    deleted = await remove_schedule(current_state().require_store(), schedule_id)
    if not deleted:
        raise ApiError(404, "not_found", f"no schedule with id {schedule_id!r}")
    return json_response({"deleted": True, "id": schedule_id})


EMPTY = Model("ScheduleActionRequest", ())


def _not_found(schedule_id: str) -> ApiError:
    return ApiError(404, "not_found", f"no schedule with id {schedule_id!r}", "schedule_id")


@blueprint.post("/schedules/<schedule_id>/pause")
async def pause(schedule_id: str) -> Response:
    """Stop firing until resumed (``result``: ``paused``)."""
    await read_body(EMPTY, optional=True)
    try:
        result = await pause_schedule(current_state().require_store(), schedule_id)
    except ScheduleNotFound:
        raise _not_found(schedule_id) from None
    return json_response({"result": result, "id": schedule_id})


@blueprint.post("/schedules/<schedule_id>/resume")
async def resume(schedule_id: str) -> Response:
    """Fire again from the next occurrence after now (``resumed``, or ``active`` if it
    was not paused); occurrences missed while paused are not fired."""
    await read_body(EMPTY, optional=True)
    try:
        result = await resume_schedule(current_state().require_store(), schedule_id)
    except ScheduleNotFound:
        raise _not_found(schedule_id) from None
    return json_response({"result": result, "id": schedule_id})


@blueprint.post("/schedules/<schedule_id>/trigger")
async def trigger(schedule_id: str) -> Response:
    """Start the schedule's run now; its timetable (paused or not) is unchanged."""
    await read_body(EMPTY, optional=True)
    store = current_state().require_store()
    try:
        run_id = await trigger_schedule(store, schedule_id)
    except ScheduleNotFound:
        raise _not_found(schedule_id) from None
    except (ConfigurationError, ValueError) as exc:
        raise ApiError(409, "invalid_state", f"schedule {schedule_id!r}: {exc}") from None
    run = await store.get_run(run_id)
    shown = current_state().shown(run.to_json()) if run else {"id": run_id}
    return json_response({"result": "started", "id": schedule_id, "run": shown}, 201)
