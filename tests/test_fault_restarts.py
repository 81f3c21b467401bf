"""Runs in flight survive a Redis crash (replayed from its AOF) and a server restart.

Real processes throughout: Redis (``appendfsync always``, SIGKILLed and started again
on the same port and data directory), two worker subprocesses, and the Aiki server
(``serve_server``) in this process, cancelled and started again. Workers, the client's
waits and the server ride through both outages on their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from _helpers import wait_until
from workers.fault_worker import relay_expected, relay_v1
from workers.processes import WorkerProcess, start_worker

import aiki
from aiki.embedded import RedisServerProcess
from aiki_server import Settings, serve_server


@pytest.fixture
def fsync_redis() -> Iterator[RedisServerProcess]:
    """A private Redis that fsyncs its AOF on every write: a crash loses nothing that
    was acknowledged."""
    server = RedisServerProcess(appendfsync="always")
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


class RestartableServer:
    """``serve_server`` in a cancel scope of its own, so it can be stopped and started
    again on the same port. The server runs the timer daemon (``Settings.daemons``),
    which the relay workflow's durable sleep needs: while the server is down, sleeping
    runs wait for it."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.port = 0
        self.base_url = ""
        self._scope: trio.CancelScope | None = None
        self._stopped = trio.Event()

    async def _run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        try:
            with self._scope or trio.CancelScope():
                settings = Settings(redis_url=self.redis_url, host="127.0.0.1", port=self.port)
                assert settings.daemons  # the timer daemon runs in the server
                await serve_server(settings, task_status=task_status)
        finally:
            self._stopped.set()

    async def start(self, nursery: trio.Nursery) -> None:
        self._scope = trio.CancelScope()
        self._stopped = trio.Event()
        handle = await nursery.start(self._run)
        self.port = handle.port  # a restart listens on the same port
        self.base_url = handle.base_url

    async def stop(self) -> None:
        assert self._scope is not None
        self._scope.cancel()
        await self._stopped.wait()


async def test_runs_complete_across_a_redis_crash_and_a_server_restart(
    fsync_redis: RedisServerProcess, tmp_path: Path
) -> None:
    url = fsync_redis.url
    n_redis, n_http, n_late = 24, 6, 2
    payloads = [{"n": n, "x": n + 1, "work": 0.15, "nap": 0.3} for n in range(n_redis + n_http)]
    late_payloads = [
        {"n": n, "x": n + 1, "work": 0.15, "nap": 0.3}
        for n in range(len(payloads), len(payloads) + n_late)
    ]
    expected = {p["n"]: relay_expected(p["n"], p["x"]) for p in payloads + late_payloads}
    results: dict[int, Any] = {}
    workers: list[WorkerProcess] = []

    async with aiki.client(redis_url=url) as client, trio.open_nursery() as nursery:
        server = RestartableServer(url)
        await server.start(nursery)
        try:
            for name in ("restart-a", "restart-b"):
                workers.append(await start_worker(url, name, tmp_path, "--concurrency", "3"))
            async with aiki.client(base_url=server.base_url) as http_client:
                handles = [await relay_v1.start(client, p) for p in payloads[:n_redis]]
                handles += [await relay_v1.start(http_client, p) for p in payloads[n_redis:]]
                http_ids = {h.id for h in handles[n_redis:]}

                async def wait_one(n: int, run_id: str) -> None:
                    # Every wait goes through the Redis client's shared listener.
                    results[n] = await client.get_handle(run_id).wait_for_completion(timeout=120)

                late_handles: list[aiki.RunHandle] = []

                async def start_during_outage(payload: dict[str, Any]) -> None:
                    handle = await relay_v1.start(client, payload)
                    late_handles.append(handle)
                    await wait_one(payload["n"], handle.id)

                async with trio.open_nursery() as waits:
                    for p, handle in zip(payloads, handles, strict=True):
                        waits.start_soon(wait_one, p["n"], handle.id)

                    await wait_until(lambda: len(results) >= 4, timeout=60, what="4 runs done")
                    assert len(results) < len(expected)

                    # -- Redis crashes (SIGKILL) mid-run and comes back from its AOF.
                    done_before = len(results)
                    old_pid = fsync_redis.pid
                    await trio.to_thread.run_sync(fsync_redis.kill)
                    # Starts made while Redis is down go through once it is back.
                    for p in late_payloads:
                        waits.start_soon(start_during_outage, p)
                    await trio.sleep(1.0)  # an outage everyone notices
                    assert not late_handles  # nothing could start without Redis
                    await trio.to_thread.run_sync(fsync_redis.start)
                    assert fsync_redis.pid != old_pid

                    await wait_until(
                        lambda: len(results) >= min(len(expected), done_before + 6),
                        timeout=60,
                        what="progress after the Redis restart",
                    )
                    assert len(results) < len(expected)

                    # -- The server restarts mid-run (on the same port).
                    await server.stop()
                    await trio.sleep(0.5)
                    old_base_url = server.base_url
                    await server.start(nursery)
                    assert server.base_url == old_base_url

                    await wait_until(
                        lambda: len(results) == len(expected), timeout=120, what="all runs done"
                    )

                # Every run completed once, with the result its payload implies.
                assert results == expected
                assert len(late_handles) == n_late
                for handle in handles + late_handles:
                    run = await client.get_run(handle.id)
                    assert run.status == "completed"
                    assert run.attempts >= 2  # at least two executions: the sleep parks
                # The restarted server answers for runs started through its predecessor.
                for handle in handles:
                    if handle.id in http_ids:
                        described = await http_client.get_run(handle.id)
                        assert described.status == "completed"
                index = await client.store.redis.command("ZCARD", client.store.keys.runs_index())
                assert index == len(expected)
                for worker in workers:
                    assert worker.alive, worker.log()[-3000:]
                    assert "Traceback" not in worker.log()
        finally:
            for worker in workers:
                await worker.aclose()
            nursery.cancel_scope.cancel()
