"""#16 item 1: Redis comes back EMPTY (FLUSHALL, or a restart without persistence).

Every process must survive it: the workers recreate their consumer groups and register
their workflow versions again, new runs complete within 10 s, and each process logs at
most a few lines per outage (not a traceback every 0.1 s). Real processes: ``aiki
server`` and two ``aiki worker`` children on a private Redis, under a trickle of starts.
"""

from __future__ import annotations

import functools
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import trio
from _helpers import running_worker, wait_until
from workers.hardening import HANG_GUARD, aiki_server, aiki_worker
from workers.hardening_flows import echo, echo_v1

import aiki

# "At most a few lines per outage per process": one traceback (22 lines) is too many.
MAX_LOG_LINES_PER_OUTAGE = 15
WORKER_ARGS = ("--block-time", "0.2", "--claim-min-idle-time", "2")


def _empty_redis(outage: str, redis_server: Any) -> None:
    """FLUSHALL, or stop Redis, delete its AOF and start it again on the same port."""
    if outage == "flushall":
        with redis.Redis(port=redis_server.port, socket_timeout=5) as r:
            r.flushall()
        return
    redis_server.stop()
    for entry in Path(redis_server.data_dir).iterdir():
        if entry.name != "redis.log":
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    redis_server.start()


async def _start_when_possible(client: aiki.Client, payload: Any) -> aiki.RunHandle:
    """A Redis-direct start, retried while the client reconnects (bounded)."""
    with trio.move_on_after(10):
        while True:
            try:
                return await echo_v1.start(client, payload)
            except aiki.ConnectionFailed:
                await trio.sleep(0.1)
    pytest.fail("no start was accepted within 10 s of the outage")


async def _http_start(base_url: str, payload: Any) -> str:
    """An HTTP start; 404 ("no worker has registered it") is retried for 10 s."""
    body = {"workflow": "hard-echo", "version": "1", "payload": payload}
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        with trio.move_on_after(10):
            while True:
                try:
                    r = await http.post("/api/v1/runs", json=body)
                except httpx.TransportError:
                    r = None
                if r is not None and r.status_code == 201:
                    return str(r.json()["id"])
                await trio.sleep(0.1)
    pytest.fail(f"HTTP start still refused 10 s after the outage: {r and r.text}")


async def _load(client: aiki.Client, stop: trio.Event) -> None:
    """A trickle of starts through the outage (errors during the outage are expected)."""
    for i in range(500):
        if stop.is_set():
            return
        try:
            await echo_v1.start(client, {"load": i})
        except aiki.AikiError:
            pass
        await trio.sleep(0.02)


@pytest.mark.parametrize("outage", ["flushall", "restart-without-persistence"])
async def test_server_and_workers_survive_redis_coming_back_empty(
    outage: str, redis_server: Any, tmp_path: Path
) -> None:
    url = redis_server.url
    async with (
        aiki_server(url, tmp_path / "server.log") as server,
        aiki_worker(url, "hardening_flows:echo", tmp_path / "w1.log", *WORKER_ARGS) as w1,
        aiki_worker(url, "hardening_flows:echo", tmp_path / "w2.log", *WORKER_ARGS) as w2,
        aiki.client(redis_url=url) as client,
    ):
        children = {"server": server, "worker 1": w1, "worker 2": w2}
        # The outage must hit running workers (one still starting under load may exit on
        # a failed start-up connection, as a start-up error should).
        await w1.wait_serving()
        await w2.wait_serving()
        # Both paths work before the outage (the HTTP start waits for a registration).
        run_id = await _http_start(server.base_url, "before")
        before = client.get_handle(run_id, "hard-echo", "1")
        assert await before.wait_for_completion(timeout=HANG_GUARD) == "before"

        stop_load = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_load, client, stop_load)
            await trio.sleep(0.3)  # some load in flight when Redis empties
            log_sizes = {name: len(child.log().splitlines()) for name, child in children.items()}
            await trio.to_thread.run_sync(_empty_redis, outage, redis_server)

            # Acceptance: new runs complete within 10 s, through both doors.
            handle = await _start_when_possible(client, "after")
            with trio.fail_after(HANG_GUARD):
                assert await handle.wait_for_completion(timeout=10) == "after"
            http_id = await _http_start(server.base_url, "after-http")
            after_http = client.get_handle(http_id, "hard-echo", "1")
            assert await after_http.wait_for_completion(timeout=10) == "after-http"
            stop_load.set()

        for name, child in children.items():
            assert child.alive, f"{name} exited ({child.proc.returncode}):\n{child.log()[-3000:]}"
            new_lines = child.log().splitlines()[log_sizes[name] :]
            assert len(new_lines) <= MAX_LOG_LINES_PER_OUTAGE, (
                f"{name} logged {len(new_lines)} lines for one outage:\n"
                + "\n".join(new_lines[:60])
            )


async def test_embedded_worker_survives_flushall(client: aiki.Client, redis_port: int) -> None:
    async with running_worker(client, echo):
        first = await echo_v1.start(client, 1)
        assert await first.wait_for_completion(timeout=HANG_GUARD) == 1
        with redis.Redis(port=redis_port, socket_timeout=5) as r:
            r.flushall()
        # Bounded by the acceptance time; the worker must neither crash nor go deaf.
        handle = await echo_v1.start(client, 2)
        with trio.fail_after(HANG_GUARD):
            assert await handle.wait_for_completion(timeout=10) == 2


async def test_each_outage_is_logged_once_counted_on_metrics_and_repaired(
    redis_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """What a Prometheus user alerts on: ``aiki_redis_resets_total`` (the server) and
    ``aiki_worker_redis_resets_total{worker}`` go up by one per outage (not per retry);
    each process logs the outage once; the server writes its retention back, the worker
    its registration (HTTP starts work again without any run being read)."""
    import logging

    from prometheus_client.parser import text_string_to_metric_families
    from test_server import running_server

    from aiki_server import Settings

    async def scrape(http: httpx.AsyncClient) -> dict[str, float]:
        response = await http.get("/metrics")
        assert response.status_code == 200, response.text
        return {
            f"{s.name}{sorted(s.labels.items())}": s.value
            for family in text_string_to_metric_families(response.text)
            for s in family.samples
        }

    server_resets = "aiki_redis_resets_total[]"
    worker_resets = "aiki_worker_redis_resets_total[('worker', 'reset-worker')]"
    caplog.set_level(logging.WARNING)
    settings = Settings(redis_url=redis_server.url, port=0, retention=3600.0)
    async with (
        aiki.client(redis_url=redis_server.url) as client,
        running_server(settings) as server,
        httpx.AsyncClient(base_url=server.base_url, timeout=HANG_GUARD) as http,
        running_worker(client, echo, id="reset-worker"),
    ):
        assert await (await echo_v1.start(client, 0)).wait_for_completion(timeout=10) == 0

        async def resets_are(n: int) -> bool:
            samples = await scrape(http)
            return samples.get(server_resets) == n and samples.get(worker_resets) == n

        await wait_until(lambda: resets_are(0), what="the worker's entry on /metrics")
        for outage in (1, 2):
            caplog.clear()
            with redis.Redis(port=redis_server.port, socket_timeout=5) as r:
                r.flushall()
            # The idle worker and the server notice it by themselves (no run needed) ...
            await wait_until(functools.partial(resets_are, outage), what=f"outage {outage}")
            # ... and what they own is back: HTTP starts find the registration, every
            # shard config has the retention again.
            run_id = await _http_start(server.base_url, f"http-{outage}")
            handle = client.get_handle(run_id, "hard-echo", "1")
            assert await handle.wait_for_completion(timeout=10) == f"http-{outage}"
            with redis.Redis(port=redis_server.port, socket_timeout=5) as r:
                assert r.hget("aiki:{0}:config", "retention_ms") == b"3600000"
            await trio.sleep(2.5)  # more than a registry interval: no second count
            assert await resets_are(outage)
            lost = [r for r in caplog.records if "lost this deployment's state" in r.message]
            assert len(lost) == 2, [r.message for r in lost]  # the worker's and the server's
