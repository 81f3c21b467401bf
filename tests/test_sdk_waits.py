"""Waiting for runs: one shared notification listener per client, no HTTP on the hot
path, waits that survive a Redis restart, and timeouts."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from _helpers import running_worker, wait_until
from _resp import client_list

import aiki
from aiki.embedded import RedisServerProcess


@aiki.task("add")
async def add(payload: Any) -> Any:
    return payload["a"] + payload["b"]


adder = aiki.workflow("adder")


@adder.v("1.0.0")
async def adder_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    total = await add.start(ctx, payload)
    return {"i": payload["i"], "total": total}


def payload_for(i: int) -> dict[str, int]:
    return {"i": i, "a": i, "b": 1000 + 3 * i}


def expected_for(i: int) -> dict[str, int]:
    return {"i": i, "total": 1000 + 4 * i}


def pending_waiters(client: aiki.Client) -> int:
    """How many wait_for_completion calls the client's listener is serving right now."""
    listener = client._backend.listener  # type: ignore[attr-defined]
    return sum(w.waiters for w in listener._watches.values() if w.outcome is None)


async def wait_all(handles: list[aiki.RunHandle], results: dict[str, Any]) -> None:
    async def one(handle: aiki.RunHandle) -> None:
        results[handle.id] = await handle.wait_for_completion(timeout=60)

    async with trio.open_nursery() as nursery:
        for handle in handles:
            nursery.start_soon(one, handle)


# -- many runs, awaited -------------------------------------------------------------------


class _CountingHttpServer:
    """A TCP listener standing in for the Aiki server: it counts every connection."""

    def __init__(self) -> None:
        self.connections = 0
        self.port = 0

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async def handler(stream: trio.SocketStream) -> None:
            self.connections += 1
            async with stream:
                await stream.send_all(
                    b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n"
                )

        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(handler, listeners)


async def test_100_runs_started_and_awaited_without_http(redis_url: str) -> None:
    """With a Redis URL, starting and awaiting never touch the HTTP base_url."""
    http = _CountingHttpServer()
    async with trio.open_nursery() as nursery:
        await nursery.start(http.serve)
        base_url = f"http://127.0.0.1:{http.port}"
        async with aiki.client(base_url=base_url, redis_url=redis_url) as client:
            async with running_worker(client, adder):
                handles = [await adder_v1.start(client, payload_for(i)) for i in range(100)]
                results: dict[str, Any] = {}
                await wait_all(handles, results)
        nursery.cancel_scope.cancel()

    assert len({h.id for h in handles}) == 100
    for i, handle in enumerate(handles):
        assert results[handle.id] == expected_for(i)
    assert http.connections == 0


try:
    from aiki_server import Settings, serve_server
    from aiki_server._state import app_state
except ImportError:
    serve_server = None


def http_requests_answered(server: Any) -> float:
    """The server's own count of HTTP requests answered (its Prometheus counter)."""
    total = 0.0
    for metric in app_state(server.app).registry.collect():
        for sample in metric.samples:
            if sample.name == "aiki_http_requests_total":
                total += sample.value
    return total


@pytest.mark.skipif(
    serve_server is None,
    reason="aiki_server does not expose serve_server/Settings yet (server under construction)",
)
async def test_100_runs_with_a_real_server_make_no_http_requests(redis_url: str) -> None:
    import httpx

    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            serve_server, Settings(redis_url=redis_url, host="127.0.0.1", port=0)
        )
        before = http_requests_answered(server)
        async with aiki.client(base_url=server.base_url, redis_url=redis_url) as client:
            async with running_worker(client, adder):
                handles = [await adder_v1.start(client, payload_for(i)) for i in range(100)]
                results: dict[str, Any] = {}
                await wait_all(handles, results)
        after_runs = http_requests_answered(server)
        # The counter does count: one request through HTTP moves it.
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            response = await http.get(f"/api/v1/runs/{handles[0].id}")
            assert response.status_code == 200
        after_probe = http_requests_answered(server)
        nursery.cancel_scope.cancel()

    for i, handle in enumerate(handles):
        assert results[handle.id] == expected_for(i)
    assert after_runs == before
    assert after_probe == after_runs + 1


# -- one listener for many waits ----------------------------------------------------------


async def test_200_waits_share_one_listener_connection(
    redis_url: str, redis_port: int, client: aiki.Client
) -> None:
    # The client fixture's process holds every connection the server sees (no worker).
    handles = [await adder_v1.start(client, payload_for(i)) for i in range(200)]
    results: dict[str, Any] = {}
    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait_all, handles, results)
        await wait_until(lambda: pending_waiters(client) == 200, what="200 pending waits")

        clients = await client_list(redis_port)
        names = sorted(c.get("name", "") for c in clients)
        assert len(clients) <= 3, names
        assert names.count("aiki-notify") == 1, names
        assert names.count("aiki-client") == 1, names
        assert results == {}  # all 200 are still waiting

        async with running_worker(client, adder):
            await wait_until(lambda: len(results) == 200, timeout=60, what="200 results")

    for i, handle in enumerate(handles):
        assert results[handle.id] == expected_for(i)
    listener = client._backend.listener  # type: ignore[attr-defined]
    assert listener.pending == 0


# -- Redis restarts -----------------------------------------------------------------------


async def test_waits_survive_a_redis_restart(
    redis_server: RedisServerProcess, client: aiki.Client
) -> None:
    handles = [await adder_v1.start(client, payload_for(i)) for i in range(5)]
    results: dict[str, Any] = {}
    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait_all, handles, results)
        await wait_until(lambda: pending_waiters(client) == 5, what="5 pending waits")

        old_pid = redis_server.pid
        await trio.to_thread.run_sync(redis_server.restart)
        assert redis_server.pid != old_pid

        # The client reconnects on its own; the runs come back from the AOF.
        async def client_reaches_redis() -> bool:
            try:
                return await client.store.redis.command("PING") in ("PONG", b"PONG")
            except aiki.ConnectionFailed:
                return False

        await wait_until(client_reaches_redis, what="client reconnected")
        for handle in handles:
            assert await handle.status() == "queued"
        assert results == {}

        async with running_worker(client, adder):
            await wait_until(lambda: len(results) == 5, timeout=60, what="5 results")

    for i, handle in enumerate(handles):
        assert results[handle.id] == expected_for(i)


# -- timeouts -----------------------------------------------------------------------------


async def test_wait_timeout_with_no_worker(client: aiki.Client) -> None:
    handle = await adder_v1.start(client, payload_for(1))
    with pytest.raises(aiki.WaitTimeout) as info:
        await handle.wait_for_completion(timeout=0.5)
    assert isinstance(info.value, aiki.AikiError)
    assert isinstance(info.value, TimeoutError)
    assert info.value.run_id == handle.id
    assert info.value.status == "queued"
    assert pending_waiters(client) == 0
    # The run is untouched and still completes later.
    async with running_worker(client, adder):
        assert await handle.wait_for_completion(timeout=30) == expected_for(1)


async def test_wait_for_unknown_run_raises_run_not_found(client: aiki.Client) -> None:
    handle = client.get_handle("0" * 32)
    with pytest.raises(aiki.RunNotFound):
        await handle.wait_for_completion(timeout=1)
    with pytest.raises(aiki.RunNotFound):
        await handle.status()


async def test_unwaited_watches_are_bounded_and_waited_ones_kept() -> None:
    """Starts whose runs nobody waits for leave watches; they are dropped oldest first
    (in amortized constant time), never the watch of a run someone waits for."""
    from aiki._notify import RunEndedListener

    listener = RunEndedListener("redis://127.0.0.1:1", None, max_unwaited=100)  # type: ignore[arg-type]
    waited, _ = listener.watch("waited")
    waited.waiters = 1
    for i in range(5000):
        listener.watch(f"run-{i}")
    assert len(listener._watches) <= 101
    assert "waited" in listener._watches
    assert "run-4999" in listener._watches and "run-0" not in listener._watches


# -- the listener subscribes at the first wait ------------------------------------------


async def test_listener_subscribes_at_the_first_wait_only(
    redis_port: int, client: aiki.Client
) -> None:
    """A process that starts runs (or executes them, as a worker) but never waits does
    not receive every run's end. The first wait subscribes; runs that ended before it
    (their watches made while nobody listened) are read once, not waited for forever."""
    listener = client._backend.listener  # type: ignore[attr-defined]
    handles = [await adder_v1.start(client, payload_for(i)) for i in range(10)]
    async with aiki.client(redis_url=client.redis_url or "") as worker_client:
        async with running_worker(worker_client, adder) as worker:
            await wait_until(lambda: worker.executions_finished == 10, what="10 runs done")
            names = [c.get("name", "") for c in await client_list(redis_port)]
            assert "aiki-notify" not in names, names
            assert not listener.listening and listener.messages_received == 0
            with trio.fail_after(10):
                results = [await h.wait_for_completion() for h in handles]
            assert results == [expected_for(i) for i in range(10)]
            assert listener.listening
            # From now on a start's watch is covered by the subscription.
            handle = await adder_v1.start(client, payload_for(10))
            assert await handle.wait_for_completion(timeout=10) == expected_for(10)
            assert listener.messages_received >= 1
        worker_listener = worker_client._backend.listener  # type: ignore[attr-defined]
        assert not worker_listener.listening and worker_listener.messages_received == 0


async def test_a_first_wait_keeps_its_timeout_while_redis_is_down(
    redis_server: RedisServerProcess, client: aiki.Client
) -> None:
    """The lazy listener cannot subscribe while Redis is down: the wait still ends in its
    own time (a timeout, or the outage), it does not hang."""
    handle = await adder_v1.start(client, payload_for(1))
    redis_server.stop()
    with trio.fail_after(30):
        with pytest.raises((aiki.WaitTimeout, aiki.ConnectionFailed)):
            await handle.wait_for_completion(timeout=1.0)
