"""Redis with a password, an ACL user, and TLS (certificates made at test time)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _helpers import running_worker

import aiki
from aiki.embedded import EmbeddedRedisError, RedisServerProcess, free_port
from examples.order_processing import EXAMPLE_ORDER, order_processing, order_processing_v1


async def _order_roundtrip(url: str, implementation: str = "glide") -> dict:
    async with aiki.client(redis_url=url, redis_client=implementation) as client:
        async with running_worker(client, order_processing):
            handle = await order_processing_v1.start(client, EXAMPLE_ORDER)
            return await handle.wait_for_completion(timeout=30)


@pytest.fixture
def password_redis() -> Iterator[RedisServerProcess]:
    server = RedisServerProcess(
        extra_args=[
            "--requirepass",
            "s3cret-pw",
            "--user",
            "aiki-app",
            "on",
            ">app-pw",
            "~*",
            "&*",
            "+@all",
        ]
    )
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


async def test_password_protected_redis(password_redis: RedisServerProcess) -> None:
    port = password_redis.port
    result = await _order_roundtrip(f"redis://:s3cret-pw@127.0.0.1:{port}")
    assert result["charged"] == 29.0
    result = await _order_roundtrip(f"redis://aiki-app:app-pw@127.0.0.1:{port}")
    assert result["success"] is True


async def test_wrong_password_is_a_clear_error_without_the_secret(
    password_redis: RedisServerProcess,
) -> None:
    url = f"redis://:wrong-pw-123@127.0.0.1:{password_redis.port}"
    with pytest.raises(aiki.ConnectionFailed) as info:
        async with aiki.client(redis_url=url):
            pass
    assert "wrong-pw-123" not in str(info.value)
    assert str(password_redis.port) in str(info.value)


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[RedisServerProcess, int, Path]]:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    tls_port = free_port()
    server = RedisServerProcess(
        extra_args=[
            "--tls-port",
            str(tls_port),
            "--tls-cert-file",
            str(tmp_path / "cert.pem"),
            "--tls-key-file",
            str(tmp_path / "key.pem"),
            "--tls-ca-cert-file",
            str(tmp_path / "ca.pem"),
            "--tls-auth-clients",
            "no",
        ]
    )
    try:
        server.start()
    except EmbeddedRedisError as exc:  # a server binary built without TLS
        pytest.skip(f"this redis-server has no TLS support: {str(exc).splitlines()[0]}")
    try:
        yield server, tls_port, tmp_path
    finally:
        server.cleanup()


@pytest.mark.parametrize("implementation", ["glide", "native", "redis-py"])
async def test_tls_redis_with_generated_ca(
    tls_redis: tuple[RedisServerProcess, int, Path], implementation: str
) -> None:
    _server, tls_port, certs = tls_redis
    url = f"rediss://127.0.0.1:{tls_port}?ssl_ca_certs={certs / 'ca.pem'}"
    result = await _order_roundtrip(url, implementation)
    assert result["charged"] == 29.0


async def test_native_tls_connection_comes_back_after_a_restart(
    tls_redis: tuple[RedisServerProcess, int, Path],
) -> None:
    import trio

    from aiki._redis import connect

    server, tls_port, certs = tls_redis
    url = f"rediss://127.0.0.1:{tls_port}?ssl_ca_certs={certs / 'ca.pem'}"
    redis = await connect(url, implementation="native")
    try:
        await redis.command("SET", "kept", "1")
        await trio.to_thread.run_sync(server.restart)
        # The idle TLS connection was closed by Redis: the next call connects again.
        assert await redis.command("GET", "kept") == b"1"
    finally:
        await redis.aclose()


async def test_tls_without_trusting_the_ca_fails(
    tls_redis: tuple[RedisServerProcess, int, Path],
) -> None:
    _server, tls_port, _certs = tls_redis
    with pytest.raises(aiki.ConnectionFailed):
        async with aiki.client(redis_url=f"rediss://127.0.0.1:{tls_port}"):
            pass


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("http://127.0.0.1:6379", "redis:// or rediss://"),
        ("redis://127.0.0.1:6379/abc", "database must be a number"),
        ("redis://127.0.0.1:6379?ssl_ca_certs=/x", "need the rediss:// scheme"),
        ("rediss://127.0.0.1:6379?ssl_ca_certs=/no/such/ca.pem", "no such file"),
        ("rediss://127.0.0.1:6379?bogus=1", "unknown option 'bogus'"),
    ],
)
async def test_bad_redis_urls_are_named(url: str, complaint: str) -> None:
    with pytest.raises(aiki.ConfigurationError, match=complaint):
        async with aiki.client(redis_url=url):
            pass


# The least-privilege ACL documented in docs/operations.md: keys and channels under the
# prefix only, and only the commands Aiki sends (directly or from its Lua scripts).
LEAST_PRIVILEGE_ACL = (
    "~aiki:* &aiki:* +@connection +info +evalsha +eval +script|load +time "
    "+exists +get +set +hdel +hget +hgetall +hincrby +hmget +hset +hsetnx +hexists "
    "+pexpire +pttl +publish +subscribe +sadd +srem +smembers +del +type "
    "+xack +xadd +xclaim +xdel +xpending +xautoclaim +xgroup|create +xreadgroup +xrange "
    "+xlen +xinfo|stream +xinfo|groups +zadd +zrange +zrevrange +zrem +zscore +zcard "
    "+zcount +zrevrank"
).split()


async def test_least_privilege_acl_is_enough_for_worker_client_and_server() -> None:
    import httpx
    import trio

    from aiki_server import Settings, serve_server

    server = RedisServerProcess(extra_args=["--user", "aiki", "on", ">pw", *LEAST_PRIVILEGE_ACL])
    server.start()
    try:
        url = f"redis://aiki:pw@127.0.0.1:{server.port}"
        async with trio.open_nursery() as nursery:
            api = await nursery.start(
                serve_server, Settings(redis_url=url, host="127.0.0.1", port=0)
            )
            async with aiki.client(redis_url=url) as client:
                async with running_worker(client, order_processing):
                    now = await order_processing_v1.start(client, EXAMPLE_ORDER)
                    later = await order_processing_v1.start(client, EXAMPLE_ORDER, delay=0.3)
                    for handle in (now, later):  # the delayed one needs the server's timers
                        assert (await handle.wait_for_completion(timeout=20))["success"]
                async with httpx.AsyncClient(base_url=api.base_url) as http:
                    for path in ("/readyz", "/api/v1/runs", f"/api/v1/runs/{now.id}", "/metrics"):
                        assert (await http.get(path)).status_code == 200, path
            nursery.cancel_scope.cancel()
        # ... and the ACL does forbid what Aiki does not need.
        async with aiki.client(redis_url=url) as client:
            replies = await client.store.redis.batch([["FLUSHALL"], ["GET", "not-aiki:key"]])
            assert all(isinstance(r, Exception) for r in replies)
    finally:
        server.cleanup()
