"""#16 items 2, 3 and 5: data that poisons a run or the reads.

* 2: a deeply nested payload (arrays ~977 deep) is refused at every door with an error
  naming the nesting limit (client start, HTTP start, task results, events); and every
  read path stays 200 for such data already in Redis (written there directly).
* 3: a lone surrogate (``"\\ud800"``, what ``os.listdir`` gives for non-UTF-8 names) in a
  workflow result fails the run instead of leaving it ``running`` forever; a client start
  raises ``aiki.InvalidPayload``; over HTTP it is a 4xx naming the field.
* 5: a task result larger than the result limit (default 1 MB, like payloads) fails the
  attempt with a clear error instead of being recorded.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis
import trio
from _helpers import running_worker
from workers.hardening import HANG_GUARD, aiki_command, cli_env, deep_json, deep_list

import aiki
from aiki_server import ServerHandle, Settings, serve_server

DEPTH = 977  # what the issue found accepted (201) and then poisoning every read
STORED_DEPTH = 5_000  # deep enough to break any recursive decoder, however shallow its stack

echo = aiki.workflow("hard-poison-echo")


@echo.v("1")
async def echo_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    return payload


@aiki.task("hard-deep-result")
async def deep_result(depth: int) -> Any:
    return deep_list(depth)


@aiki.task("hard-big-result")
async def big_result(size: int) -> str:
    return "x" * size


@aiki.task("hard-surrogate-result")
async def surrogate_result(_: Any) -> str:
    return "name-\udcff"


produce = aiki.workflow("hard-poison-produce")


@produce.v("1")
async def produce_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    kind = payload["kind"]
    if kind == "deep-task":
        await deep_result.start(ctx, payload["depth"])
    elif kind == "big-task":
        await big_result.start(ctx, payload["size"])
    elif kind == "surrogate-task":
        await surrogate_result.start(ctx, None)
    elif kind == "surrogate-result":
        return "\ud800"
    elif kind == "wait-event":
        return await ctx.wait_for_event("e")
    return "done"


@pytest.fixture
async def server(redis_url: str) -> AsyncIterator[ServerHandle]:
    async with trio.open_nursery() as nursery:
        yield await nursery.start(serve_server, Settings(redis_url=redis_url, port=0))
        nursery.cancel_scope.cancel()


def _names_a_depth_limit(message: str) -> bool:
    """A clear error names the nesting limit; Python's own "maximum recursion depth
    exceeded" is not one (it is what leaks today)."""
    message = message.lower()
    return "recursion" not in message and any(w in message for w in ("depth", "nest", "deep"))


# -- item 2: the doors ------------------------------------------------------------------


async def test_http_start_refuses_a_deeply_nested_payload(
    server: ServerHandle, client: aiki.Client
) -> None:
    body = '{"workflow": "hard-poison-echo", "version": "1", "payload": ' + deep_json(DEPTH) + "}"
    async with running_worker(client, echo):
        async with httpx.AsyncClient(base_url=server.base_url, timeout=HANG_GUARD) as http:
            r = await http.post(
                "/api/v1/runs", content=body, headers={"Content-Type": "application/json"}
            )
            listed = await http.get("/api/v1/runs")
    assert r.status_code in (400, 413, 422), r.text[:300]
    error = r.json()["error"]
    assert error["field"] == "payload" and _names_a_depth_limit(error["message"]), error
    assert listed.status_code == 200 and listed.json()["runs"] == []


async def test_client_start_refuses_a_deeply_nested_payload(client: aiki.Client) -> None:
    with pytest.raises(aiki.InvalidPayload) as caught:
        await echo_v1.start(client, deep_list(DEPTH))
    assert _names_a_depth_limit(str(caught.value)), caught.value


async def test_events_refuse_deeply_nested_data(server: ServerHandle, client: aiki.Client) -> None:
    async with running_worker(client, produce):
        handle = await produce_v1.start(client, {"kind": "wait-event"})
        with pytest.raises(aiki.InvalidPayload) as caught:
            await handle.send_event("e", deep_list(DEPTH))
        assert _names_a_depth_limit(str(caught.value))
        body = '{"name": "e", "data": ' + deep_json(DEPTH) + "}"
        async with httpx.AsyncClient(base_url=server.base_url, timeout=HANG_GUARD) as http:
            r = await http.post(
                f"/api/v1/runs/{handle.id}/events",
                content=body,
                headers={"Content-Type": "application/json"},
            )
        assert r.status_code in (400, 413, 422), r.text[:300]
        assert r.json()["error"]["field"] == "data"
        await handle.cancel()


async def test_a_deeply_nested_task_result_fails_the_run(client: aiki.Client) -> None:
    async with running_worker(client, produce):
        handle = await produce_v1.start(client, {"kind": "deep-task", "depth": DEPTH})
        with pytest.raises(aiki.WorkflowFailed) as caught:
            await handle.wait_for_completion(timeout=10)
    assert _names_a_depth_limit(str(caught.value)), caught.value


# -- item 2: reads of what is already stored ---------------------------------------------


def _poison_stored_run(port: int, run_id: str) -> None:
    """Overwrite a stored run's JSON fields (and its task records) with very deep JSON,
    as an older version (or another writer) may have left them."""
    deep = deep_json(STORED_DEPTH)
    with redis.Redis(port=port, socket_timeout=10) as r:
        keys = [k.decode() for k in r.scan_iter(match=f"*:run:{run_id}*", count=1000)]
        run_key = next(k for k in keys if k.endswith(f":run:{run_id}"))
        r.hset(run_key, mapping={"payload": deep, "result": deep})
        tasks_key = run_key + ":tasks"
        for address in r.hkeys(tasks_key):
            r.hset(tasks_key, address, deep)


async def test_every_read_survives_deep_json_already_stored(
    server: ServerHandle, client: aiki.Client, redis_port: int
) -> None:
    async with running_worker(client, echo, produce):
        done = await produce_v1.start(client, {"kind": "big-task", "size": 10})
        assert await done.wait_for_completion(timeout=HANG_GUARD) == "done"
        other = await echo_v1.start(client, {"fine": True})
        assert await other.wait_for_completion(timeout=HANG_GUARD) == {"fine": True}
    _poison_stored_run(redis_port, done.id)

    async with httpx.AsyncClient(base_url=server.base_url, timeout=HANG_GUARD) as http:
        for path in (
            f"/api/v1/runs/{done.id}",
            f"/api/v1/runs/{done.id}/wait?timeout=1",
            "/api/v1/runs",
            "/api/v1/runs?status=completed",
            "/api/v1/runs?workflow=hard-poison-produce",
        ):
            r = await http.get(path)
            assert r.status_code == 200, (path, r.text[:300])
        listed = (await http.get("/api/v1/runs")).json()["runs"]
        assert {run["id"] for run in listed} == {done.id, other.id}
        for path in ("/", f"/runs/{done.id}", "/?status=completed"):
            r = await http.get(path, headers={"Accept": "text/html"})
            assert r.status_code == 200, (path, r.text[:300])
    record = await client.get_run(done.id, with_tasks=True)  # the SDK read, too
    assert record.status == "completed"

    with trio.fail_after(HANG_GUARD):
        cli = await trio.run_process(
            [*aiki_command(), "runs", "list", "--url", server.base_url],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=cli_env(),
        )
    assert cli.returncode == 0, cli.stderr.decode()[-2000:]
    assert done.id[:8] in cli.stdout.decode()


# -- item 3: lone surrogates -------------------------------------------------------------


async def test_a_lone_surrogate_result_fails_the_run(client: aiki.Client) -> None:
    async with running_worker(client, produce):
        handle = await produce_v1.start(client, {"kind": "surrogate-result"})
        with pytest.raises(aiki.WorkflowFailed) as caught:
            await handle.wait_for_completion(timeout=10)
    message = str(caught.value).lower()
    assert "surrogate" in message or "utf-8" in message or "encod" in message, message


async def test_a_lone_surrogate_task_result_fails_the_run(client: aiki.Client) -> None:
    async with running_worker(client, produce):
        # A guard (this passes today: the task's attempt fails with UnicodeEncodeError).
        handle = await produce_v1.start(client, {"kind": "surrogate-task"})
        with pytest.raises(aiki.WorkflowFailed):
            await handle.wait_for_completion(timeout=10)


async def test_client_start_with_a_lone_surrogate_is_invalid_payload(client: aiki.Client) -> None:
    with pytest.raises(aiki.InvalidPayload):
        await echo_v1.start(client, {"name": "\ud800"})


async def test_http_start_with_a_lone_surrogate_is_a_4xx_naming_the_field(
    server: ServerHandle, client: aiki.Client
) -> None:
    body = b'{"workflow": "hard-poison-echo", "version": "1", "payload": {"name": "\\ud800"}}'
    async with running_worker(client, echo):
        async with httpx.AsyncClient(base_url=server.base_url, timeout=HANG_GUARD) as http:
            r = await http.post(
                "/api/v1/runs", content=body, headers={"Content-Type": "application/json"}
            )
    assert 400 <= r.status_code < 500, r.text[:300]
    assert r.json()["error"]["field"] == "payload", r.text


# -- item 5: task results are bounded -----------------------------------------------------


async def test_a_task_result_over_the_limit_fails_the_attempt(client: aiki.Client) -> None:
    async with running_worker(client, produce):
        handle = await produce_v1.start(client, {"kind": "big-task", "size": 2_000_000})
        with pytest.raises(aiki.WorkflowFailed) as caught:
            await handle.wait_for_completion(timeout=HANG_GUARD)
        run = await client.get_run(handle.id, with_tasks=True)
    message = str(caught.value).lower()
    assert "limit" in message or "bytes" in message, message
    stored = json.dumps(run.to_json())
    assert len(stored) < 1_000_000, "the oversized result was stored anyway"


async def test_the_result_limit_is_set_per_worker(client: aiki.Client) -> None:
    """A worker's ``max_result_bytes`` bounds workflow results too (its attempt fails);
    a bad setting is refused at construction, naming it."""
    with pytest.raises(aiki.ConfigurationError) as bad:
        aiki.worker(client, max_result_bytes=0)
    assert bad.value.field == "max_result_bytes"
    worker = aiki.worker(client, max_result_bytes=100, shutdown_grace=1.0)
    worker.workflow_registry.add(echo)
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.start)
        small = await echo_v1.start(client, "x" * 50)
        assert await small.wait_for_completion(timeout=HANG_GUARD) == "x" * 50
        large = await echo_v1.start(client, "x" * 200)
        with pytest.raises(aiki.WorkflowFailed) as caught:
            await large.wait_for_completion(timeout=HANG_GUARD)
        await worker.stop()
        nursery.cancel_scope.cancel()
    message = str(caught.value)
    assert "workflow result" in message and "limit is 100" in message, message


async def test_aiki_worker_takes_a_result_limit() -> None:
    with trio.fail_after(HANG_GUARD):
        help_text = await trio.run_process(
            [*aiki_command(), "worker", "--help"], capture_stdout=True, env=cli_env()
        )
    out = help_text.stdout.decode()
    assert "--max-result-bytes" in out and "AIKI_MAX_RESULT_BYTES" in out, out
