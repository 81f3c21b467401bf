"""The worker registry (each worker's heartbeat entry in ``<prefix>:workers``, every 2 s,
removed when it stops) as the API shows it, and cursor paging of every list endpoint."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import trio
from _helpers import wait_until
from test_server import HANG_GUARD, assert_error, open_store, running_server, server_echo

import aiki
from aiki._worker import REGISTRY_INTERVAL
from aiki_server import Settings


def _worker(client: aiki.Client, worker_id: str, concurrency: int = 3) -> aiki.Worker:
    worker = aiki.worker(
        client,
        id=worker_id,
        max_concurrent_workflow_runs=concurrency,
        subscriber=aiki.RedisStreams(claim_min_idle_time=5.0, block_time=0.2),
        shutdown_grace=1.0,
    )
    worker.workflow_registry.add(server_echo)
    return worker


async def test_workers_publish_heartbeats_and_leave_on_stop(settings: Settings) -> None:
    assert settings.redis_url is not None
    async with (
        running_server(settings) as server,
        aiki.client(redis_url=settings.redis_url, prefix=settings.prefix) as client,
        open_store(settings.redis_url, settings.prefix) as store,
        httpx.AsyncClient(base_url=server.base_url, timeout=HANG_GUARD) as http,
        trio.open_nursery() as nursery,
    ):
        assert (await http.get("/api/v1/workers")).json() == {"workers": [], "next_cursor": None}
        a, b = _worker(client, "worker-a", 3), _worker(client, "worker-b", 5)
        before = int(time.time() * 1000)
        await nursery.start(a.start)
        await nursery.start(b.start)

        listed = (await http.get("/api/v1/workers")).json()
        assert [w["id"] for w in listed["workers"]] == ["worker-a", "worker-b"]
        entry = listed["workers"][0]
        assert entry["workflows"] == ["server-test-echo@1"]
        assert (entry["in_flight"], entry["max"], entry["stale"]) == (0, 3, False)
        assert entry["last_heartbeat_ms"] >= before and entry["pid"] > 0 and entry["host"]
        assert listed["workers"][1]["max"] == 5

        raw = json.loads(await store.redis.command("HGET", store.keys.workers, "worker-a"))
        first_beat = raw["last_heartbeat_ms"]

        async def beat_again() -> bool:
            raw = json.loads(await store.redis.command("HGET", store.keys.workers, "worker-a"))
            return bool(raw["last_heartbeat_ms"] > first_beat)

        with trio.fail_after(REGISTRY_INTERVAL * 3):
            await wait_until(beat_again, what="a second heartbeat")

        page = (await http.get("/api/v1/workers", params={"limit": 1})).json()
        assert [w["id"] for w in page["workers"]] == ["worker-a"] and page["next_cursor"]
        rest = (
            await http.get("/api/v1/workers", params={"limit": 1, "cursor": page["next_cursor"]})
        ).json()
        assert [w["id"] for w in rest["workers"]] == ["worker-b"] and rest["next_cursor"] is None

        await a.stop()
        listed = (await http.get("/api/v1/workers")).json()
        assert [w["id"] for w in listed["workers"]] == ["worker-b"]
        await b.stop()
        assert await store.redis.command("HLEN", store.keys.workers) == 0


async def test_schedule_and_workflow_lists_page_with_cursors(settings: Settings) -> None:
    assert settings.redis_url is not None
    async with (
        running_server(settings) as server,
        open_store(settings.redis_url, settings.prefix) as store,
        httpx.AsyncClient(base_url=server.base_url, timeout=HANG_GUARD) as http,
    ):
        versions = [("flow-b", "1"), ("flow-a", "2"), ("flow-a", "10"), ("flow-c", "1")]
        await store.register_workflows(versions, "test")
        for i in range(5):
            body = {"id": f"s{i}", "workflow": "flow-a", "version": "2", "every": 3600}
            assert (await http.post("/api/v1/schedules", json=body)).status_code == 201

        async def walk(path: str, key: str, limit: int) -> list[Any]:
            items: list[Any] = []
            params: dict[str, Any] = {"limit": limit}
            while True:
                data = (await http.get(path, params=params)).json()
                assert len(data[key]) <= limit
                items.extend(data[key])
                if data["next_cursor"] is None:
                    return items
                params["cursor"] = data["next_cursor"]

        everything = (await http.get("/api/v1/workflows")).json()["workflows"]
        assert [(w["workflow"], w["version"]) for w in everything] == sorted(versions)
        for limit in (1, 2, 3, 4):
            assert await walk("/api/v1/workflows", "workflows", limit) == everything
            ids = [s["id"] for s in await walk("/api/v1/schedules", "schedules", limit)]
            assert ids == [f"s{i}" for i in range(5)]
        assert_error(
            await http.get("/api/v1/schedules", params={"limit": 0}),
            422,
            "validation_error",
            "limit",
        )
        assert_error(
            await http.get("/api/v1/workers", params={"bogus": 1}), 422, "validation_error", "bogus"
        )
