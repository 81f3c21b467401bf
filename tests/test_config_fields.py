"""Validation errors of ``aiki.Schedule`` and ``aiki.RedisStreams`` name the field at
fault (``ConfigurationError.field``), so the HTTP API can report it without parsing
messages."""

from __future__ import annotations

from typing import Any

import pytest

import aiki


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"id": ""}, "id"),
        ({}, "cron"),
        ({"cron": "* * * * *", "every": 5.0}, "every"),
        ({"every": 0}, "every"),
        ({"cron": "not a cron"}, "cron"),
        ({"every": 1.0, "overlap": "sometimes"}, "overlap"),
    ],
)
def test_schedule_errors_name_their_field(kwargs: dict[str, Any], field: str) -> None:
    base: dict[str, Any] = {"id": "s", "workflow": "wf", "version": "v1"}
    with pytest.raises(aiki.ConfigurationError) as raised:
        aiki.Schedule(**{**base, **kwargs})
    assert raised.value.field == field


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"claim_min_idle_time": 0}, "claim_min_idle_time"),
        ({"block_time": -1}, "block_time"),
        ({"claim_min_idle_time": 10, "heartbeat_interval": 20}, "heartbeat_interval"),
    ],
)
def test_redis_streams_errors_name_their_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(aiki.ConfigurationError) as raised:
        aiki.RedisStreams(**kwargs)
    assert raised.value.field == field
