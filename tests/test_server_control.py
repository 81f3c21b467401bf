"""Control over HTTP: cancel, pause, resume, wakeup, events and schedules, driven by a
client that has only the server's base URL (the CLI's and other languages' path)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import trio
from _helpers import running_worker, wait_until

import aiki
from aiki_server import ServerHandle, Settings, serve_server

ctl = aiki.workflow("ctl")


@aiki.task("ctl-wait")
async def ctl_wait(n: int) -> int:
    await trio.sleep_forever()
    return n  # pragma: no cover


@ctl.v("sleep")
async def ctl_sleep(ctx: aiki.WorkflowContext, seconds: float) -> str:
    await ctx.sleep("nap", seconds)
    return "rested"


@ctl.v("event")
async def ctl_event(ctx: aiki.WorkflowContext, _: object) -> object:
    return [await ctx.wait_for_event("go", timeout=60) for _ in range(2)]


@ctl.v("hang")
async def ctl_hang(ctx: aiki.WorkflowContext, n: int) -> int:
    return await ctl_wait.start(ctx, n)


@pytest.fixture
async def server(redis_url: str) -> AsyncIterator[ServerHandle]:
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(
            serve_server, Settings(redis_url=redis_url, host="127.0.0.1", port=0)
        )
        yield handle
        nursery.cancel_scope.cancel()


async def _status(handle: aiki.RunHandle, status: str) -> bool:
    return await handle.status() == status


async def test_control_over_http(client: aiki.Client, server: ServerHandle) -> None:
    async with running_worker(client, ctl), aiki.client(base_url=server.base_url) as http:
        sleeper = await ctl_sleep.start(http, 3600.0)
        await wait_until(lambda: _status(sleeper, "sleeping"), what="sleeping")
        assert await sleeper.wakeup("nap") == 1
        assert await sleeper.wait_for_completion(timeout=20) == "rested"

        waiter = await ctl_event.start(http, None)
        assert await waiter.send_event("go", {"ok": 1}, reference_id="e1") is True
        assert await waiter.send_event("go", {"ok": 1}, reference_id="e1") is False
        assert await waiter.send_event("go", {"ok": 2}, reference_id="e2") is True
        assert await waiter.wait_for_completion(timeout=20) == [{"ok": 1}, {"ok": 2}]
        with pytest.raises(aiki.InvalidState):
            await waiter.send_event("go", {"late": True})

        hanging = await ctl_hang.start(http, 1)
        await wait_until(lambda: _status(hanging, "running"), what="running")
        assert await hanging.pause() == "paused"
        assert await hanging.status() == "paused"
        assert await hanging.resume() == "queued"
        await wait_until(lambda: _status(hanging, "running"), what="running again")
        assert await hanging.cancel("enough") == "cancelled"
        with pytest.raises(aiki.WorkflowCancelled, match="enough"):
            await hanging.wait_for_completion(timeout=10)

        with pytest.raises(aiki.RunNotFound):
            await http.get_handle("no-such-run").cancel()


async def test_control_bad_input(server: ServerHandle, client: aiki.Client) -> None:
    async with running_worker(client, ctl):
        pass  # registers the workflow versions
    handle = await ctl_event.start(client, None)
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        r = await http.post(
            f"/api/v1/runs/{handle.id}/events",
            content=b"{nope",
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 400 and r.json()["error"]["field"] == "body"
        r = await http.post(f"/api/v1/runs/{handle.id}/events", json={"data": 1})
        assert r.status_code == 422 and r.json()["error"]["field"] == "name"
        r = await http.post(f"/api/v1/runs/{handle.id}/cancel", json={"reason": 5})
        assert r.status_code == 422 and r.json()["error"]["field"] == "reason"
        r = await http.post(f"/api/v1/runs/{handle.id}/pause", json={"bogus": 1})
        assert r.status_code == 422 and r.json()["error"]["field"] == "bogus"
        assert (await handle.status()) == "queued"  # nothing applied by the bad requests
        r = await http.post(
            "/api/v1/schedules",
            json={"id": "s", "workflow": "ctl", "version": "sleep", "cron": "nope"},
        )
        assert r.status_code == 422 and r.json()["error"]["field"] == "cron"
        r = await http.post(
            "/api/v1/schedules", json={"id": "s", "workflow": "nope", "version": "1", "every": 1}
        )
        assert r.status_code == 404 and r.json()["error"]["type"] == "unknown_workflow"
        listed = (await http.get("/api/v1/schedules")).json()
        assert listed == {"schedules": [], "next_cursor": None}


async def test_schedules_over_http_fire_from_server_daemon(
    client: aiki.Client, server: ServerHandle
) -> None:
    async with running_worker(client, ctl), aiki.client(base_url=server.base_url) as http:
        await ctl_sleep.schedule(http, "nap-often", 0.0, every=0.5, overlap="skip")
        listed = await http.list_schedules()
        assert [s["id"] for s in listed] == ["nap-often"] and listed[0]["overlap"] == "skip"
        await wait_until(
            lambda: _count_runs(client, 2), what="the server's schedule daemon fired twice"
        )
        assert await http.delete_schedule("nap-often") is True
        assert await http.list_schedules() == []


async def _count_runs(client: aiki.Client, at_least: int) -> bool:
    runs = await client.store.list_runs(limit=50)
    return len([r for r in runs if r.status == "completed"]) >= at_least
