"""Rate limits (``aiki.RateLimit``, docs/flow-control.md) across real worker processes.

The tasks log when the limit let each call go (``task_context().rate_limit_granted_at``,
Redis's clock); the checks count calls per 1-second window, never how long anything
took.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from _helpers import wait_until
from _resp import acommand
from workers.flow_worker import SHARED, plain_v1, rated_v1
from workers.processes import TESTS, worker_process

import aiki

FLOW_WORKER = TESTS / "workers" / "flow_worker.py"


async def _calls(redis_url: str) -> list[tuple[float, str]]:
    raw = await acommand(urlparse(redis_url).port, "LRANGE", "calls", "0", "-1")
    out = []
    for item in raw:
        at, what = (item.decode() if isinstance(item, bytes) else item).split()
        out.append((float(at), what))
    return sorted(out)


def busiest_window(times: list[float], width: float = 1.0) -> int:
    """The most calls in any window [t, t + width) that starts at a call."""
    best, j = 0, 0
    for i, t in enumerate(times):
        while j < len(times) and times[j] < t + width:
            j += 1
        best = max(best, j - i)
    return best


async def test_a_shared_limit_holds_across_three_worker_processes(
    client: aiki.Client, redis_url: str, tmp_path: Path
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        for n in range(3):
            await stack.enter_async_context(
                worker_process(redis_url, f"flow-rate-{n}", tmp_path, script=FLOW_WORKER)
            )
        payloads = [{"task": "flow-rate-a" if i % 2 else "flow-rate-b"} for i in range(200)]
        handles = await rated_v1.start_many(client, payloads)
        results = [await h.wait_for_completion(timeout=120) for h in handles]
    assert sorted(results) == ["a"] * 100 + ["b"] * 100
    calls = await _calls(redis_url)
    assert len(calls) == 200 and {w for _, w in calls} == {"a", "b"}
    assert busiest_window([t for t, _ in calls]) <= SHARED.limit + SHARED.burst


async def test_a_run_waiting_for_a_token_holds_no_slot(
    client: aiki.Client, redis_url: str, tmp_path: Path
) -> None:
    async with worker_process(redis_url, "flow-one-slot", tmp_path, "1", script=FLOW_WORKER):
        first = await rated_v1.start(client, {"task": "flow-slow-call"})
        assert await first.wait_for_completion(timeout=30) == "slow"
        waiting = await rated_v1.start(client, {"task": "flow-slow-call"})  # 1 per 60 s

        async def parked() -> bool:
            return await waiting.status() == "awaiting_rate_limit"

        await wait_until(parked, what="the second call waits for a token, parked")
        # The worker's only slot is free: another workflow runs meanwhile.
        assert await (await plain_v1.start(client, {})).wait_for_completion(timeout=30) == "plain"
        assert await waiting.status() == "awaiting_rate_limit"
        await waiting.cancel("done")


# -- keys and weights (one in-process worker) ---------------------------------------------

per_customer = aiki.RateLimit(1, per=60.0, name="flow-per-customer", key=lambda p: p["customer"])
weighted = aiki.RateLimit(5, per=60.0, name="flow-weighted", cost=lambda p: p["units"], burst=5)


@aiki.task("flow-keyed-call", rate_limit=per_customer)
async def keyed_call(payload: Any) -> Any:
    return payload["customer"]


@aiki.task("flow-weighted-call", rate_limit=weighted)
async def weighted_call(payload: Any) -> Any:
    return payload["units"]


limited = aiki.workflow("flow-limited")


@limited.v("1")
async def limited_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    task = keyed_call if "customer" in payload else weighted_call
    return await task.start(ctx, payload)


async def test_keyed_and_weighted_limits(client: aiki.Client, running_worker: Any) -> None:
    async with running_worker(client, limited):
        a = await limited_v1.start(client, {"customer": "a"})
        b = await limited_v1.start(client, {"customer": "b"})
        assert [await a.wait_for_completion(timeout=30), await b.wait_for_completion(30)] == [
            "a",
            "b",
        ]  # one limit per key: both went at once
        again = await limited_v1.start(client, {"customer": "a"})
        big = await limited_v1.start(client, {"units": 5})
        assert await big.wait_for_completion(timeout=30) == 5  # the whole burst at once
        small = await limited_v1.start(client, {"units": 1})
        for handle in (again, small):

            async def parked(h: aiki.RunHandle = handle) -> bool:
                return await h.status() == "awaiting_rate_limit"

            await wait_until(parked, what="over its limit: parked")
            await handle.cancel("done")


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: aiki.RateLimit(0), "limit"),
        (lambda: aiki.RateLimit(-5), "limit"),
        (lambda: aiki.RateLimit(2.5), "limit"),
        (lambda: aiki.RateLimit(5, per=0), "per"),
        (lambda: aiki.RateLimit(5, per=-1.0), "per"),
        (lambda: aiki.RateLimit(5, cost=0), "cost"),
        (lambda: aiki.RateLimit(5, burst=0), "burst"),
        (lambda: aiki.RateLimit(5, name=""), "name"),
        (lambda: aiki.RateLimit(5, key="customer"), "key"),
        (lambda: aiki.task("bad-rate", rate_limit=20), "rate_limit"),
    ],
)
def test_bad_rate_limits_are_refused_at_definition(make: Any, field: str) -> None:
    with pytest.raises(aiki.ConfigurationError, match=field) as caught:
        make()
    assert caught.value.field == field


async def test_a_key_that_is_not_a_string_fails_the_call(
    client: aiki.Client, running_worker: Any
) -> None:
    async with running_worker(client, limited):
        handle = await limited_v1.start(client, {"customer": 42})
        with pytest.raises(aiki.WorkflowFailed, match="key= must return a non-empty string"):
            await handle.wait_for_completion(timeout=30)


async def test_rate_limit_waits_show_in_the_api_and_metrics(settings: Any) -> None:
    import httpx
    from test_server import HANG_GUARD, running_server
    from test_server import running_worker as server_worker

    async with (
        running_server(settings) as server,
        server_worker(settings.redis_url, settings.prefix, limited),
        aiki.client(redis_url=settings.redis_url, prefix=settings.prefix) as client,
        httpx.AsyncClient(base_url=server.base_url, timeout=HANG_GUARD) as http,
    ):
        first = await limited_v1.start(client, {"customer": "m"})
        assert await first.wait_for_completion(timeout=HANG_GUARD) == "m"
        second = await limited_v1.start(client, {"customer": "m"})

        async def listed() -> bool:
            page = await http.get("/api/v1/runs", params={"status": "awaiting_rate_limit"})
            return [r["id"] for r in page.json()["runs"]] == [second.id]

        await wait_until(listed, what="the parked run listed by its status")
        line = 'aiki_worker_rate_limit_parks_total{limit="flow-per-customer"'

        async def counted() -> bool:
            text = (await http.get("/metrics")).text
            return any(
                ln.startswith("aiki_worker_rate_limit_parks_total")
                and 'limit="flow-per-customer"' in ln
                and ln.rsplit(" ", 1)[1] == "1.0"
                for ln in text.splitlines()
            )

        await wait_until(counted, what=f"{line} ... 1.0 on /metrics")
        await second.cancel("done")
