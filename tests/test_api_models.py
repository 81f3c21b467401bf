"""The request models (aiki_server._model): one declaration gives both the validation
(field-named 422s, strict JSON types, unknown fields refused, null = not given) and the
OpenAPI schema, and the two agree."""

from __future__ import annotations

from typing import Any

import pytest

from aiki_server._errors import ApiError
from aiki_server._limits import MAX_MS, MAX_SECONDS
from aiki_server._model import parse_body
from aiki_server.api import control, openapi_document, runs, schedules


def _refused(model: Any, body: dict[str, Any]) -> ApiError:
    with pytest.raises(ApiError) as info:
        model.validate(body)
    assert info.value.status == 422 and info.value.type == "validation_error"
    return info.value


OK = {"workflow": "w", "version": "1"}


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"start_at_ms": True}, "start_at_ms"),  # true is not an integer
        ({"start_at_ms": 1.5}, "start_at_ms"),
        ({"start_at_ms": MAX_MS + 1}, "start_at_ms"),
        ({"timeout": True}, "timeout"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": float("inf")}, "timeout"),
        ({"timeout": MAX_SECONDS + 1}, "timeout"),
        ({"sensitive": 1}, "sensitive"),  # 1 is not a boolean
        ({"reference_id": ""}, "reference_id"),
        ({"on_conflict": "maybe"}, "on_conflict"),
        ({"workflow": None}, "workflow"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_start_body_names_the_field_at_fault(extra: dict[str, Any], field: str) -> None:
    assert _refused(runs.START_RUN, {**OK, **extra}).field == field


def test_null_means_the_default_and_required_fields_are_required() -> None:
    values = runs.START_RUN.validate(
        {**OK, "sensitive": None, "on_conflict": None, "timeout": None, "payload": None}
    )
    assert values["sensitive"] is False and values["on_conflict"] == "error"
    assert values["timeout"] is None and values["start_at_ms"] is None
    assert runs.START_RUN.validate({**OK, "timeout": 2, "start_at_ms": 0})["timeout"] == 2
    error = _refused(runs.START_RUN, {"version": "1"})
    assert (error.field, error.message) == ("workflow", "workflow is required")
    # Cancel's reason: null or empty is the default reason; a number is refused.
    assert control.CANCEL.validate({"reason": None})["reason"] == "cancelled"
    assert _refused(control.CANCEL, {"reason": 5}).field == "reason"
    assert _refused(control.EMPTY, {"x": 1}).field == "x"


def test_schedule_model_checks_what_schedule_checks_and_names_the_field() -> None:
    base = {"id": "s", "workflow": "w", "version": "1"}
    assert _refused(schedules.CREATE_SCHEDULE, {**base, "cron": "nope"}).field == "cron"
    assert _refused(schedules.CREATE_SCHEDULE, base).field == "cron"  # neither
    both = {**base, "cron": "* * * * *", "every": 5}
    assert _refused(schedules.CREATE_SCHEDULE, both).field == "cron"
    assert _refused(schedules.CREATE_SCHEDULE, {**base, "every": True}).field == "every"
    bad_overlap = {**base, "every": 5, "overlap": "never"}
    assert _refused(schedules.CREATE_SCHEDULE, bad_overlap).field == "overlap"
    ok = schedules.CREATE_SCHEDULE.validate({**base, "every": 0.5, "overlap": None})
    assert ok["every"] == 0.5 and ok["cron"] is None


def test_query_parameters_are_parsed_and_named() -> None:
    parsed = runs.LIST_RUNS.parse({"limit": "7", "status": "", "created_after": "0"})
    assert parsed["limit"] == 7 and parsed["status"] is None and parsed["created_after"] == 0
    assert runs.LIST_RUNS.parse({})["limit"] == 50
    for args, field in [
        ({"limit": "0"}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"status": "nope"}, "status"),
        ({"created_before": str(MAX_MS + 1)}, "created_before"),
        ({"sort": "asc"}, "sort"),
    ]:
        with pytest.raises(ApiError) as info:
            runs.LIST_RUNS.parse(args)
        assert info.value.field == field, args
    with pytest.raises(ApiError) as info:
        runs.WAIT.parse({"timeout": "nan"})
    assert info.value.field == "timeout" and "'nan'" in info.value.message


def test_bodies_that_are_not_json_objects_are_400_naming_the_body() -> None:
    for data in (b"{nope", b"[1]", b'{"a": NaN}', b"\xff"):
        with pytest.raises(ApiError) as info:
            parse_body(data)
        assert (info.value.status, info.value.field) == (400, "body"), data


def test_the_document_states_the_models_rules() -> None:
    schemas = openapi_document()["components"]["schemas"]
    start = schemas["StartRunRequest"]
    assert start["additionalProperties"] is False
    assert set(start["properties"]) == runs.START_RUN.names
    assert start["required"] == ["workflow", "version"]
    assert start["properties"]["start_at_ms"]["maximum"] == MAX_MS
    assert start["properties"]["timeout"]["exclusiveMinimum"] is True
    assert schemas["CreateScheduleRequest"]["oneOf"] == [
        {"$ref": "#/components/schemas/CronSchedule"},
        {"$ref": "#/components/schemas/IntervalSchedule"},
    ]
    assert schemas["IntervalSchedule"]["properties"]["cron"] == {"nullable": True, "enum": [None]}
    params = openapi_document()["paths"]["/api/v1/runs"]["get"]["parameters"]
    assert [p["name"] for p in params] == [f.name for f in runs.LIST_RUNS.fields]
