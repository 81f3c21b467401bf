"""The native Redis implementation (trio sockets + hiredis) under the conditions GLIDE
handled for us: one connection shared by many tasks, cancelled and timed-out calls,
a Redis restart, pub/sub across a restart, the handshake (AUTH, SELECT, SETNAME)."""

from __future__ import annotations

import pytest
import trio
from _resp import acommand, client_list

import aiki
from aiki._redis import connect, resolve_implementation
from aiki._redis._native import NativeRedis
from aiki.embedded import RedisServerProcess, free_port


async def _native(url: str, **kwargs: object) -> NativeRedis:
    redis = await connect(url, implementation="native", **kwargs)  # type: ignore[arg-type]
    assert isinstance(redis, NativeRedis)
    return redis


async def test_one_connection_serves_100_concurrent_tasks(redis_server: RedisServerProcess) -> None:
    redis = await _native(redis_server.url, name="aiki-shared")
    got: dict[int, object] = {}

    async def one(i: int) -> None:
        await redis.command("SET", f"k{i}", f"v{i}")
        for _ in range(5):
            value = await redis.command("GET", f"k{i}")
            replies = await redis.batch([["INCR", f"n{i}"], ["GET", f"k{i}"], ["INCR", f"k{i}"]])
            assert value == f"v{i}".encode() and replies[1] == value
            assert isinstance(replies[2], Exception)  # in its own slot
            got[i] = replies[0]

    try:
        with trio.fail_after(20):  # a lost hand-over would hang, not fail
            async with trio.open_nursery() as nursery:
                for i in range(100):
                    nursery.start_soon(one, i)
        assert got == {i: 5 for i in range(100)}
        assert sum(c["name"] == "aiki-shared" for c in await client_list(redis_server.port)) == 1
    finally:
        await redis.aclose()


async def test_a_cancelled_call_leaves_its_reply_to_be_dropped(
    redis_server: RedisServerProcess,
) -> None:
    redis = await _native(redis_server.url)
    try:
        await redis.command("SET", "x", "1")
        results: list[object] = []

        async def queued_behind() -> None:
            results.append(await redis.command("GET", "x"))

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                with trio.move_on_after(0.2):  # BLPOP holds the replies behind it for 0.6 s
                    nursery.start_soon(queued_behind)
                    await redis.command("BLPOP", "nothing", "0.6")
            # The cancelled BLPOP's nil reply is still to come: it must not reach GET.
        assert results == [b"1"]
        assert await redis.command("INCR", "n") == 1
        assert await redis.command("GET", "x") == b"1"
        assert redis._conn is not None and redis._conn.broken is None  # not reset
    finally:
        await redis.aclose()


async def test_replies_stay_with_their_callers_under_random_cancellations(
    redis_server: RedisServerProcess,
) -> None:
    """50 tasks share one connection; their calls are cancelled at random points (as
    leader, as follower, between send and reply). Every reply a call does return must
    be its own: a slot left by a cancelled call must never shift the others."""
    import random

    redis = await _native(redis_server.url)
    rng = random.Random(7)
    returned = 0
    try:
        await redis.batch([["SET", f"k{i}", f"v{i}"] for i in range(50)])

        async def one(i: int) -> None:
            nonlocal returned
            for _ in range(40):
                with trio.move_on_after(rng.choice([0, 0.0001, 0.0005, 0.002, 1])):
                    if rng.random() < 0.3:
                        replies = await redis.batch([["GET", f"k{i}"], ["ECHO", f"e{i}"]])
                        assert replies == [f"v{i}".encode(), f"e{i}".encode()]
                    else:
                        assert await redis.command("GET", f"k{i}") == f"v{i}".encode()
                    returned += 1

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for i in range(50):
                    nursery.start_soon(one, i)
        assert returned > 0
        assert redis._conn is not None and redis._conn.broken is None  # never reset
        assert await redis.command("GET", "k3") == b"v3"
    finally:
        await redis.aclose()


async def test_a_request_timeout_fails_every_waiter_and_the_next_call_reconnects(
    redis_server: RedisServerProcess,
) -> None:
    redis = await _native(redis_server.url, request_timeout=0.3)
    try:
        first_id = await redis.command("CLIENT", "ID")
        failures: list[BaseException] = []

        async def behind() -> None:
            with pytest.raises(aiki.ConnectionFailed) as info:
                await redis.command("PING")
            failures.append(info.value)

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                with pytest.raises(aiki.ConnectionFailed, match="request timeout"):
                    nursery.start_soon(behind)
                    await redis.command("BLPOP", "nothing", "2")
        assert len(failures) == 1
        assert await redis.command("PING") == b"PONG"
        assert await redis.command("CLIENT", "ID") != first_id
    finally:
        await redis.aclose()


async def test_cancelling_a_blocked_read_resets_a_blocking_connection(
    redis_server: RedisServerProcess,
) -> None:
    redis = await _native(redis_server.url, blocking=True, request_timeout=10.0)
    port = redis_server.port
    assert port is not None
    try:
        await redis.command("XGROUP", "CREATE", "s", "g", "$", "MKSTREAM")
        read = ("XREADGROUP", "GROUP", "g", "c", "BLOCK", "5000", "STREAMS", "s", ">")
        with trio.move_on_after(0.2):
            await redis.command(*read)
        # The blocked read is gone from the server: it cannot take this message.
        await acommand(port, "XADD", "s", "*", "f", "v")
        pending = await acommand(port, "XPENDING", "s", "g")
        assert pending[0] == 0
        reply = await redis.command(*read)
        assert reply is not None and b"s" in reply
    finally:
        await redis.aclose()


async def test_calls_work_again_after_a_redis_restart(redis_server: RedisServerProcess) -> None:
    redis = await _native(redis_server.url)
    try:
        await redis.command("SET", "kept", "1")
        await trio.to_thread.run_sync(redis_server.restart)  # AOF on: the data survives
        # Redis closed the idle connection: the next call connects again by itself.
        assert await redis.command("GET", "kept") == b"1"
        redis_server.kill()
        errors: list[str] = []
        for _ in range(3):  # the first call may still find the dying connection
            with pytest.raises(aiki.ConnectionFailed) as info:
                await redis.command("PING")
            errors.append(str(info.value))
            await trio.sleep(0.05)
        assert f"cannot connect to Redis at 127.0.0.1:{redis_server.port}" in errors[-1]
        await trio.to_thread.run_sync(redis_server.start)
        assert await redis.command("GET", "kept") == b"1"
    finally:
        await redis.aclose()


async def test_pubsub_resubscribes_after_a_restart(redis_server: RedisServerProcess) -> None:
    sub = await _native(redis_server.url)
    pub = await _native(redis_server.url)
    try:
        await sub.subscribe("news", "more")

        async def receive_one(channel: str, data: bytes) -> None:
            got: list[tuple[str, bytes]] = []
            async with trio.open_nursery() as nursery:

                async def receive() -> None:
                    got.append(await sub.next_message())
                    nursery.cancel_scope.cancel()

                nursery.start_soon(receive)
                while True:  # published until the subscriber is (again) subscribed
                    await pub.command("PUBLISH", channel, data)
                    await trio.sleep(0.05)
            assert got == [(channel, data)]

        await receive_one("news", b"before")
        await trio.to_thread.run_sync(redis_server.restart)
        with pytest.raises(aiki.ConnectionFailed):  # once per loss
            await sub.next_message()
        await receive_one("more", b"after")
        await receive_one("news", b"again")
    finally:
        await sub.aclose()
        await pub.aclose()


async def test_handshake_selects_the_database_and_names_the_connection(
    redis_server: RedisServerProcess,
) -> None:
    redis = await _native(redis_server.url + "/3", name="aiki-named")
    try:
        await redis.command("SET", "in-db-3", "yes")
        assert await redis.command("CLIENT", "GETNAME") == b"aiki-named"
        assert await acommand(redis_server.port, "GET", "in-db-3") is None  # not in db 0
        assert await redis.command("GET", "in-db-3") == b"yes"
    finally:
        await redis.aclose()


async def test_acl_user_password_and_refused_connections() -> None:
    server = RedisServerProcess(
        extra_args=[
            "--requirepass",
            "top-pw",
            "--user",
            "app",
            "on",
            ">app-pw",
            "~*",
            "&*",
            "+@all",
        ]
    )
    server.start()
    try:
        for auth in (":top-pw", "app:app-pw"):
            redis = await _native(f"redis://{auth}@127.0.0.1:{server.port}")
            assert await redis.command("PING") == b"PONG"
            await redis.aclose()
        with pytest.raises(aiki.ConnectionFailed) as info:
            await _native(f"redis://app:wrong-pw-42@127.0.0.1:{server.port}")
        assert "wrong-pw-42" not in str(info.value) and "WRONGPASS" in str(info.value)
    finally:
        server.cleanup()
    port = free_port()
    with pytest.raises(aiki.ConnectionFailed, match=f"cannot connect to Redis at 127.0.0.1:{port}"):
        await _native(f"redis://127.0.0.1:{port}")


async def test_closed_connection_refuses_calls(redis_server: RedisServerProcess) -> None:
    redis = await _native(redis_server.url)
    await redis.aclose()
    with pytest.raises(aiki.ConnectionFailed):
        await redis.command("PING")


def test_native_is_selectable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIKI_REDIS_CLIENT", "native")
    assert resolve_implementation() == "native"


def test_asyncio_keeps_glide_and_refuses_native(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    monkeypatch.delenv("AIKI_REDIS_CLIENT", raising=False)

    async def under_asyncio() -> str:
        with pytest.raises(aiki.ConfigurationError, match="under trio only"):
            await connect("redis://127.0.0.1:1", implementation="native")
        return resolve_implementation()

    assert asyncio.run(under_asyncio()) == "glide"
