"""The CLI's one signal helper, in process: the first SIGINT/SIGTERM pulls the shutdown
trigger, a second one (or a graceful stop outliving its grace) cancels at once.

The signals are real (sent to this process with ``os.kill``); the helper's receiver
catches them, so the test run itself is not interrupted."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest
import trio

from aiki_server.cli._signals import Trigger, serve_until_signal

HANG_GUARD = 10.0


async def _signal_when_started(started: trio.Event, *signums: int) -> None:
    await started.wait()
    for signum in signums:
        os.kill(os.getpid(), signum)
        await trio.sleep(0.05)


async def test_first_signal_stops_gracefully(capsys: pytest.CaptureFixture[str]) -> None:
    started = trio.Event()
    seen: list[Any] = []

    async def serve(shutdown_trigger: Trigger, *, task_status: Any) -> None:
        task_status.started("handle")
        await shutdown_trigger()
        await trio.sleep(0.05)  # a graceful stop takes a moment and is not cut short
        seen.append("drained")

    def banner(value: Any) -> None:
        seen.append(value)
        started.set()

    with trio.fail_after(HANG_GUARD):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_signal_when_started, started, signal.SIGTERM)
            await serve_until_signal(serve, stopping="stopping gracefully", started=banner)
    assert seen == ["handle", "drained"]
    assert "SIGTERM: stopping gracefully (again to stop at once)" in capsys.readouterr().err


async def test_second_signal_stops_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    started = trio.Event()
    seen: list[Any] = []

    async def serve(shutdown_trigger: Trigger, *, task_status: Any) -> None:
        task_status.started()
        await shutdown_trigger()
        seen.append("triggered")
        await trio.sleep_forever()  # a graceful stop that does not end

    with trio.fail_after(HANG_GUARD):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_signal_when_started, started, signal.SIGINT, signal.SIGINT)
            await serve_until_signal(
                serve, stopping=lambda: "stopping worker w1", started=lambda _: started.set()
            )
    assert seen == ["triggered"]
    assert capsys.readouterr().err.count("SIGINT: stopping worker w1") == 1


async def test_graceful_stop_is_cut_short_after_its_grace(
    capsys: pytest.CaptureFixture[str],
) -> None:
    started = trio.Event()

    async def serve(shutdown_trigger: Trigger, *, task_status: Any) -> None:
        task_status.started()
        await shutdown_trigger()
        await trio.sleep_forever()

    with trio.fail_after(HANG_GUARD):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_signal_when_started, started, signal.SIGTERM)
            begun = trio.current_time()
            await serve_until_signal(
                serve, stopping="stopping", started=lambda _: started.set(), grace=0.3
            )
    assert 0.3 <= trio.current_time() - begun < HANG_GUARD
    assert "still stopping after 0.3 s: stopping at once" in capsys.readouterr().err


async def test_returns_when_serve_ends_by_itself() -> None:
    async def serve(shutdown_trigger: Trigger, *, task_status: Any) -> None:
        task_status.started()

    with trio.fail_after(HANG_GUARD):
        await serve_until_signal(serve, stopping="stopping", started=lambda _: None)


async def test_an_error_before_start_propagates() -> None:
    async def serve(shutdown_trigger: Trigger, *, task_status: Any) -> None:
        raise OSError("address in use")

    # Raised out of the helper's nursery, in a group (the CLI's runner unwraps it).
    with pytest.raises(ExceptionGroup) as info:
        await serve_until_signal(serve, stopping="stopping", started=lambda _: None)
    assert info.group_contains(OSError, match="address in use")
