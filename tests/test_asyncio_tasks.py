"""asyncio task code inside a trio worker (trio-asyncio), with real asyncio I/O."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from _helpers import running_worker, wait_until

import aiki

SEEN: list[str] = []


@aiki.task("asyncio-ping", asyncio=True)
async def asyncio_ping(payload: dict[str, Any]) -> str:
    """Real asyncio network I/O: a raw PING to the test's Redis with asyncio streams."""
    reader, writer = await asyncio.open_connection("127.0.0.1", payload["port"])
    try:
        writer.write(b"*1\r\n$4\r\nPING\r\n")
        await writer.drain()
        reply = await reader.readline()
    finally:
        writer.close()
        await writer.wait_closed()
    assert asyncio.get_running_loop() is not None
    return reply.decode().strip() + f" from {asyncio.current_task() is not None}"


@aiki.task("asyncio-hang", asyncio=True)
async def asyncio_hang(payload: dict[str, Any]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", payload["port"])
    SEEN.append("connected")
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        SEEN.append("cancelled")
        raise
    finally:
        writer.close()
        SEEN.append("cleaned up")


@aiki.task("asyncio-boom", asyncio=True)
async def asyncio_boom(payload: dict[str, Any]) -> None:
    await asyncio.sleep(0)
    raise KeyError("no such customer")


interop = aiki.workflow("interop")


@interop.v("ping")
async def ping_wf(ctx: aiki.WorkflowContext, payload: dict[str, Any]) -> str:
    return await asyncio_ping.start(ctx, payload)


@interop.v("hang")
async def hang_wf(ctx: aiki.WorkflowContext, payload: dict[str, Any]) -> None:
    await asyncio_hang.start(ctx, payload)


@interop.v("boom")
async def boom_wf(ctx: aiki.WorkflowContext, payload: dict[str, Any]) -> None:
    await asyncio_boom.start(ctx, payload)


async def test_asyncio_task_does_real_io_in_trio_worker(
    client: aiki.Client, redis_port: int
) -> None:
    async with running_worker(client, interop):
        handle = await ping_wf.start(client, {"port": redis_port})
        assert await handle.wait_for_completion(timeout=20) == "+PONG from True"
    run = await handle.describe(with_tasks=True)
    assert [r["status"] for r in (run.tasks or {}).values()] == ["completed"]


async def test_cancelling_run_cancels_asyncio_task(client: aiki.Client, redis_port: int) -> None:
    SEEN.clear()
    async with running_worker(client, interop) as worker:
        handle = await hang_wf.start(client, {"port": redis_port})
        await wait_until(lambda: "connected" in SEEN, what="asyncio task connected")
        await handle.cancel("operator cancelled")
        with pytest.raises(aiki.WorkflowCancelled):
            await handle.wait_for_completion(timeout=10)
        await wait_until(lambda: worker.in_flight == 0, what="execution interrupted")
    assert SEEN == ["connected", "cancelled", "cleaned up"]


async def test_asyncio_task_error_is_recorded_like_trio(client: aiki.Client) -> None:
    async with running_worker(client, interop):
        handle = await boom_wf.start(client, {})
        with pytest.raises(aiki.WorkflowFailed) as info:
            await handle.wait_for_completion(timeout=20)
    assert info.value.error_type == "KeyError"
    assert "no such customer" in info.value.error_message
    assert "asyncio_boom" in (info.value.traceback or "")
