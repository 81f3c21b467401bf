"""Graceful server stop: a trigger stops new connections, lets in-flight requests (a
long-poll wait) finish, stops the daemons, and serve_server returns with nothing left
running."""

from __future__ import annotations

import httpx
import trio
from _helpers import running_worker

import aiki
from aiki_server import Settings, serve_server

gate = aiki.workflow("gate")
OPEN = trio.Event()


@aiki.task("wait-for-gate")
async def wait_for_gate(_: object) -> str:
    await OPEN.wait()
    return "through"


@gate.v("1")
async def gate_v1(ctx: aiki.WorkflowContext, payload: object) -> str:
    return await wait_for_gate.start(ctx, payload)


async def test_trigger_drains_in_flight_requests(client: aiki.Client, redis_url: str) -> None:
    stop = trio.Event()
    returned = trio.Event()
    answers: list[httpx.Response] = []

    async with running_worker(client, gate):
        handle = await gate_v1.start(client, None)
        async with trio.open_nursery() as nursery:

            async def serve(task_status: trio.TaskStatus[object]) -> None:
                await serve_server(
                    Settings(redis_url=redis_url, host="127.0.0.1", port=0),
                    shutdown_trigger=stop.wait,
                    task_status=task_status,
                )
                returned.set()

            server = await nursery.start(serve)

            async def long_poll() -> None:
                async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
                    answers.append(await http.get(f"/api/v1/runs/{handle.id}/wait?timeout=20"))

            nursery.start_soon(long_poll)
            await trio.sleep(0.3)  # the wait is in flight
            stop.set()  # graceful stop begins while the request waits
            await trio.sleep(0.3)
            assert not returned.is_set()  # still draining the in-flight request
            OPEN.set()  # the run ends: the long-poll answers, then the server is done
            with trio.fail_after(10):
                await returned.wait()
    assert answers[0].status_code == 200
    assert answers[0].json()["status"] == "completed"
    assert answers[0].json()["result"] == "through"
