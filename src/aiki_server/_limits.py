"""The HTTP API's limits, in one place: the request models validate against them and the
OpenAPI document states them, so the two cannot disagree."""

from __future__ import annotations

#: Largest time in ms accepted anywhere (the end of year 9999 UTC).
MAX_MS = 253_402_300_799_999
#: Largest number of seconds accepted for a run timeout or a schedule interval (10 years).
MAX_SECONDS = 315_360_000
#: Most items in one page of any list.
MAX_LIST_LIMIT = 500
#: Runs in one page of ``GET /api/v1/runs`` when ``limit`` is not given.
DEFAULT_RUNS_LIMIT = 50
#: Seconds a ``/wait`` long-poll lasts when ``timeout`` is not given (at most max_wait).
DEFAULT_WAIT = 30.0
