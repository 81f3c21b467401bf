"""The one backoff, retry and supervise helper (aiki._backoff) that every loop uses."""

from __future__ import annotations

import logging

import pytest
import trio

from aiki import ConnectionFailed
from aiki._backoff import Backoff, jittered, retrying, supervise


def test_backoff_grows_to_its_cap_and_resets() -> None:
    backoff = Backoff(initial=0.1, maximum=0.4, factor=2.0, spread=0.0)
    assert [backoff.next() for _ in range(5)] == [0.1, 0.2, 0.4, 0.4, 0.4]
    backoff.reset()
    assert backoff.next() == 0.1


def test_backoff_jitter_stays_in_its_spread() -> None:
    for _ in range(200):
        assert 0.8 <= jittered(1.0) <= 1.2


@pytest.mark.parametrize("bad", [float("nan"), -1.0, float("inf")])
def test_backoff_refuses_nonsense(bad: float) -> None:
    with pytest.raises(ValueError, match="initial"):
        Backoff(initial=bad)


async def test_retrying_retries_transient_errors_then_succeeds() -> None:
    calls = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionFailed("down")
        return "ok"

    assert await retrying(flaky, retry_for=5.0, backoff=Backoff(0.001, 0.002)) == "ok"
    assert len(calls) == 3


async def test_retrying_gives_up_at_its_deadline_and_passes_other_errors() -> None:
    async def down() -> None:
        raise ConnectionFailed("down")

    with pytest.raises(ConnectionFailed):
        await retrying(down, retry_for=0.05, backoff=Backoff(0.01, 0.01))

    async def broken() -> None:
        raise KeyError("not transient")

    with pytest.raises(KeyError):
        await retrying(broken, retry_for=5.0)


async def test_supervise_logs_an_outage_once_and_its_recovery_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("aiki.test-supervise")
    steps = 0
    enough = trio.Event()

    async def step() -> float:
        nonlocal steps
        steps += 1
        if steps >= 40:
            enough.set()
        if 2 <= steps <= 30:
            raise ConnectionFailed("Redis is away")
        return 0.0

    with caplog.at_level(logging.WARNING, logger=log.name):
        with trio.move_on_after(2.0):
            async with trio.open_nursery() as nursery:
                await nursery.start(
                    lambda task_status: supervise(
                        "test daemon",
                        step,
                        log=log,
                        backoff=Backoff(0.001, 0.002),
                        task_status=task_status,
                    )
                )
                await enough.wait()
                nursery.cancel_scope.cancel()
    messages = [r.getMessage() for r in caplog.records if r.name == log.name]
    assert len(messages) == 2, messages
    assert "cannot reach Redis" in messages[0] and "works again" in messages[1]
