"""Several servers and workers against one Redis: timers and schedule occurrences fire
exactly once, whichever server's daemon gets them; any server answers any API call."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
import trio
from _helpers import ROOT, subprocess_env

import aiki
from aiki_server import Settings, serve_server

scale = aiki.workflow("scale")


@scale.v("1")
async def scale_v1(ctx: aiki.WorkflowContext, payload: object) -> object:  # pragma: no cover
    raise AssertionError("runs in the worker processes")


@pytest.fixture
def three_workers(redis_url: str) -> Iterator[list[subprocess.Popen[str]]]:
    script = str(ROOT / "tests" / "workers" / "scale_worker.py")
    workers = [
        subprocess.Popen(
            [sys.executable, script, redis_url, f"w{i}"],
            stdout=subprocess.PIPE,
            text=True,
            env=subprocess_env(),
        )
        for i in range(3)
    ]
    try:
        for w in workers:
            assert w.stdout is not None and w.stdout.readline().strip() == "ready"
        yield workers
    finally:
        for w in workers:
            w.terminate()
            w.wait(timeout=10)


async def test_two_servers_three_workers(
    client: aiki.Client, redis_url: str, three_workers: object
) -> None:
    runs = 1000
    async with trio.open_nursery() as nursery:
        servers = [
            await nursery.start(
                serve_server, Settings(redis_url=redis_url, host="127.0.0.1", port=0)
            )
            for _ in range(2)
        ]
        async with contextlib.AsyncExitStack() as stack:
            http = [
                await stack.enter_async_context(aiki.client(base_url=s.base_url)) for s in servers
            ]
            await scale_v1.schedule(http[0], "every-300ms", {"n": -1, "sleep": 0.0}, every=0.3)
            # Any server answers any API call: the runs are started through both.
            handles = [
                await scale_v1.start(http[i % 2], {"n": i, "sleep": 0.2}) for i in range(runs)
            ]
            results = [await client.get_handle(h.id).wait_for_completion(120) for h in handles]
            assert await http[1].delete_schedule("every-300ms") is True
        async with httpx.AsyncClient() as raw:
            for s in servers:  # both servers see every run
                r = await raw.get(f"{s.base_url}/api/v1/runs/{handles[0].id}")
                assert r.json()["status"] == "completed"
        nursery.cancel_scope.cancel()
    assert results == [i * 2 for i in range(runs)]
    redis = client.store.redis
    # Every run completed exactly once: its last step counted its own completion, and
    # each run's durable sleep timer was fired by exactly one of the two servers.
    counts = await redis.batch([["GET", f"done:{h.id}"] for h in handles])
    assert {int(c) for c in counts} == {1}
    # Each schedule occurrence fired once: one run per occurrence, one interval apart.
    scheduled = [r for r in await client.store.list_runs(limit=5000) if r.payload["n"] == -1]
    occurrences = sorted(
        [
            int(await redis.command("HGET", client.store.keys.run(r.id), "occurrence"))
            for r in scheduled
        ]
    )
    assert len(occurrences) >= 2
    # One run per occurrence (no occurrence fired twice), at least one interval apart: a
    # daemon delayed by more than an interval (a loaded machine) catches up from now.
    assert len(set(occurrences)) == len(occurrences) == len(scheduled)
    gaps = [b - a for a, b in zip(occurrences, occurrences[1:], strict=False)]
    assert all(gap >= 300 for gap in gaps), gaps
