"""Shared fixtures: a private Redis per test, clients and running workers.

Every test talks to a REAL Redis-compatible server that it owns (a fresh
``RedisServerProcess`` on a free port, AOF on), never to ``127.0.0.1:6379``.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
# The SDK (src layout) and the repository root (for ``examples``) must be importable
# however pytest was started (with or without an editable install / PYTHONPATH).
for _path in (ROOT / "src", ROOT, TESTS):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from _helpers import running_worker as _running_worker  # noqa: E402

import aiki  # noqa: E402
from aiki.embedded import RedisServerProcess  # noqa: E402


def _private_redis() -> Iterator[RedisServerProcess]:
    server = RedisServerProcess()
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def redis_server() -> Iterator[RedisServerProcess]:
    """A fresh private Redis for this test only; stopped and its data removed after."""
    yield from _private_redis()


@pytest.fixture(scope="module")
def module_redis() -> Iterator[RedisServerProcess]:
    """One private Redis shared by a module's tests (each test uses its own key prefix,
    see ``settings``): for tests that need no faults and many servers."""
    yield from _private_redis()


@pytest.fixture
def settings(module_redis: RedisServerProcess) -> Any:
    """Server settings on the module's Redis, under a fresh key prefix."""
    import uuid

    from aiki_server import Settings

    return Settings(redis_url=module_redis.url, port=0, prefix=f"t{uuid.uuid4().hex[:10]}")


@pytest.fixture
def redis_url(redis_server: RedisServerProcess) -> str:
    return redis_server.url


@pytest.fixture
def redis_port(redis_server: RedisServerProcess) -> int:
    assert redis_server.port is not None
    return redis_server.port


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aiki.Client]:
    """An ``aiki.client`` talking to this test's Redis directly."""
    async with aiki.client(redis_url=redis_url) as c:
        yield c


@pytest.fixture
def running_worker() -> Any:
    """The :func:`_helpers.running_worker` context manager, as a fixture."""
    return _running_worker
