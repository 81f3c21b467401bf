"""The dashboard's pages as HTML over HTTP (no browser): filters and cursor paging,
escaping of user data, error pages, security headers, the workers and schedules pages."""

from __future__ import annotations

import html
import json
import re
import time
from typing import Any

import httpx
import pytest
import trio
from test_server import HANG_GUARD, open_store, running_server, running_worker

import aiki
from aiki.embedded import RedisServerProcess
from aiki_server import Settings

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
EVIL = '<script>alert("x")</script><img src=x onerror=alert(1)>'

pages = aiki.workflow("dash-pages")


@aiki.task("dash-pages-step")
async def step(payload: dict[str, Any]) -> Any:
    if payload.get("fail"):
        raise ValueError(payload["fail"])
    return {"echo": payload.get("text")}


@pages.v("1")
async def pages_v1(ctx: aiki.WorkflowContext, payload: dict[str, Any]) -> Any:
    return await step.start(ctx, payload)


@pages.v("2")
async def pages_v2(ctx: aiki.WorkflowContext, payload: dict[str, Any]) -> Any:
    return await step.start(ctx, payload)


def run_ids(page: str) -> list[str]:
    return re.findall(r'<tr data-run-id="([0-9a-f]+)"', page)


async def test_runs_page_filters_pages_and_escapes(settings: Settings) -> None:
    assert settings.redis_url is not None
    async with (
        running_server(settings) as server,
        running_worker(settings.redis_url, settings.prefix, pages),
        aiki.client(redis_url=settings.redis_url, prefix=settings.prefix) as client,
        httpx.AsyncClient(base_url=server.base_url, timeout=HANG_GUARD, headers=BROWSER) as http,
    ):
        ok = [await pages_v1.start(client, {"text": f"t{i}"}) for i in range(3)]
        v2 = await pages_v2.start(client, {"text": EVIL}, reference_id=EVIL)
        bad = await pages_v1.start(client, {"fail": EVIL})
        for handle in [*ok, v2]:
            await handle.wait_for_completion(timeout=HANG_GUARD)
        with pytest.raises(aiki.WorkflowFailed):
            await bad.wait_for_completion(timeout=HANG_GUARD)

        response = await http.get("/")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        page = response.text
        everything = {bad.id, v2.id, *(h.id for h in ok)}
        assert set(run_ids(page)) == everything  # newest first; same-ms runs by id
        # User data is escaped everywhere: no markup from payloads, errors, references.
        assert EVIL not in page and "<img src=x" not in page
        assert html.escape(EVIL, quote=False)[:30] in page or "&lt;script&gt;" in page

        async def ids(**params: str) -> list[str]:
            response = await http.get("/", params=params)
            assert response.status_code == 200
            return run_ids(response.text)

        assert await ids(status="failed") == [bad.id]
        assert await ids(status="completed", version="2") == [v2.id]
        assert set(await ids(workflow="dash-pages", version="1", status="completed")) == {
            h.id for h in ok
        }
        assert await ids(workflow="nope") == []
        assert set(await ids(range="15m")) == everything
        future = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(time.time() + 3600))
        assert await ids(**{"from": future}) == []
        assert len(await ids(to=future)) == 5
        noted = (await http.get("/", params={"status": "nonsense", "range": "1y"})).text
        assert "unknown status" in noted and "unknown time range" in noted
        assert len(run_ids(noted)) == 5

        # Cursor paging: 2 per page, "Older" links carry the filters.
        first = (await http.get("/", params={"limit": "2", "workflow": "dash-pages"})).text
        older = re.search(r'id="next-page" href="([^"]+)"', first)
        assert older is not None
        link = html.unescape(older.group(1))
        assert "workflow=dash-pages" in link and "limit=2" in link
        second = (await http.get(link)).text
        third_link = re.search(r'id="next-page" href="([^"]+)"', second)
        assert third_link is not None
        third = (await http.get(html.unescape(third_link.group(1)))).text
        assert run_ids(first) + run_ids(second) + run_ids(third) == await ids()
        assert 'id="next-page"' not in third
        assert "Newest" in second
        broken = (await http.get("/", params={"cursor": "garbage"})).text
        assert "not valid" in broken and len(run_ids(broken)) == 5

        # The run page: tasks, pretty JSON (escaped), the error with its traceback.
        run_page = (await http.get(f"/runs/{bad.id}")).text
        assert "dash-pages-step" in run_page and "Traceback (most recent call last)" in run_page
        assert EVIL not in run_page and "&lt;script&gt;" in run_page
        assert 'data-live-run="1"' not in run_page  # ended: no live refresh
        assert 'id="btn-cancel"' not in run_page
        v2_page = (await http.get(f"/runs/{v2.id}")).text
        assert EVIL not in v2_page
        assert "&#34;echo&#34;" in v2_page or "&quot;echo&quot;" in v2_page  # pretty JSON


async def test_run_page_of_a_running_run_has_buttons_and_live_refresh(settings: Settings) -> None:
    assert settings.redis_url is not None
    async with (
        running_server(settings) as server,
        aiki.client(redis_url=settings.redis_url, prefix=settings.prefix) as client,
        httpx.AsyncClient(base_url=server.base_url, timeout=HANG_GUARD, headers=BROWSER) as http,
    ):
        async with running_worker(settings.redis_url, settings.prefix, pages):
            pass  # registers the workflow versions
        queued = await pages_v1.start(client, {"text": "waiting"})  # no worker: stays queued
        page = (await http.get(f"/runs/{queued.id}")).text
        assert 'data-live-run="1"' in page
        assert 'data-action="cancel"' in page and 'data-action="pause"' in page
        assert 'data-action="resume"' not in page
        await queued.pause()
        page = (await http.get(f"/runs/{queued.id}")).text
        assert 'data-action="resume"' in page and 'data-action="pause"' not in page
        assert "No task has run yet" in page


async def test_error_pages_are_html_for_browsers_and_json_for_clients(
    settings: Settings,
) -> None:
    async with (
        running_server(settings) as server,
        httpx.AsyncClient(base_url=server.base_url, timeout=HANG_GUARD) as http,
    ):
        missing = await http.get("/runs/no-such-run", headers=BROWSER)
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("text/html")
        assert "no run with id" in missing.text and "<!doctype html>" in missing.text
        nowhere = await http.get("/no/such/page", headers=BROWSER)
        assert nowhere.status_code == 404 and "text/html" in nowhere.headers["content-type"]
        as_json = await http.get("/no/such/page")
        assert as_json.status_code == 404 and as_json.json()["error"]["type"] == "not_found"
        api = await http.get("/api/v1/runs/nope", headers=BROWSER)  # the API stays JSON
        assert api.status_code == 404 and api.json()["error"]["type"] == "run_not_found"
        css = await http.get("/static/dashboard.css")
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
        js = await http.get("/static/dashboard.js")
        assert js.status_code == 200 and "javascript" in js.headers["content-type"]
        escaped = await http.get("/runs/%3Cscript%3Ealert(1)%3C%2Fscript%3E", headers=BROWSER)
        assert escaped.status_code == 404 and "<script>alert(1)" not in escaped.text


async def test_dashboard_is_an_html_503_while_redis_is_down() -> None:
    redis = RedisServerProcess()
    await redis.start_async()
    try:
        settings = Settings(redis_url=redis.url, port=0, prefix="down")
        async with (
            running_server(settings) as server,
            httpx.AsyncClient(base_url=server.base_url, timeout=HANG_GUARD) as http,
        ):
            assert (await http.get("/", headers=BROWSER)).status_code == 200
            await trio.to_thread.run_sync(redis.kill)
            down = await http.get("/", headers=BROWSER)
            assert down.status_code == 503
            assert "text/html" in down.headers["content-type"] and "Redis" in down.text
    finally:
        await trio.to_thread.run_sync(redis.cleanup)


async def test_workers_and_schedules_pages(settings: Settings) -> None:
    assert settings.redis_url is not None
    async with (
        running_server(settings) as server,
        running_worker(settings.redis_url, settings.prefix, pages) as worker,
        aiki.client(redis_url=settings.redis_url, prefix=settings.prefix) as client,
        open_store(settings.redis_url, settings.prefix) as store,
        httpx.AsyncClient(base_url=server.base_url, timeout=HANG_GUARD, headers=BROWSER) as http,
    ):
        now = int(time.time() * 1000)
        entries = {
            "gone-a-while": now - 30_000,  # stale
            "gone-long-ago": now - 7_200_000,  # pruned when listed
            f"evil{EVIL}": now,
        }
        for worker_id, last in entries.items():
            entry = {"id": worker_id, "workflows": [EVIL], "in_flight": 1, "max": 4}
            entry["last_heartbeat_ms"] = last
            await store.redis.command("HSET", store.keys.workers, worker_id, json.dumps(entry))
        page = (await http.get("/workers")).text
        assert worker.id in page and "dash-pages@1" in page and "dash-pages@2" in page
        row = re.search(r'<tr data-worker-id="gone-a-while"[^>]*>.*?</tr>', page, re.S)
        assert row is not None and "stale" in row.group(0)
        assert "gone-long-ago" not in page
        assert await store.redis.command("HEXISTS", store.keys.workers, "gone-long-ago") == 0
        assert EVIL not in page
        assert 'id="queues-table"' in page

        await pages_v1.schedule(client, f"every-hour{EVIL}", {"text": "s"}, every=3600)
        page = (await http.get("/schedules")).text
        assert "every-hour" in page and EVIL not in page and "every 1h 00m" in page
