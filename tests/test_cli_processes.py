"""``aiki worker --processes N``: N worker processes under one supervisor (#21).

Real processes throughout: the ``aiki`` command (supervisor), its worker children, and
a private Redis. Children are told apart by their worker ids (``<id>-1``, ``<id>-2``)
and their pids, read from the worker registry and from ``/proc`` (the supervisor's
children). Every wait is bounded by a hang guard; nothing asserts on timing.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from _helpers import wait_until
from workers.fault_worker import SOAK_STEPS, soak_expected, soak_v1
from workers.hardening import aiki_command, cli_env
from workers.procs_flows import hold_v1, stuck_v1

import aiki

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads children and states from /proc"
)

GUARD = 60.0  # a safety net against hangs: never a timing assertion


# -- processes, from /proc ----------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state, ppid, ...)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text.rpartition(")")[2].split()


def alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped has stopped)."""
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def children_of(pid: int) -> set[int]:
    found = set()
    for name in os.listdir("/proc"):
        if name.isdigit() and (fields := _stat(int(name))) and int(fields[1]) == pid:
            if fields[0] not in ("Z", "X"):
                found.add(int(name))
    return found


class Supervised:
    """A running ``aiki worker ... --processes N`` and its log."""

    def __init__(self, proc: trio.Process, log_path: Path, client: aiki.Client) -> None:
        self.proc = proc
        self.log_path = log_path
        self.client = client
        self.seen_children: set[int] = set()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def children(self) -> set[int]:
        found = children_of(self.proc.pid)
        self.seen_children |= found
        return found

    async def registry(self) -> dict[str, dict[str, Any]]:
        entries = await self.client.store.worker_entries()
        return {k: json.loads(v) for k, v in entries.items()}

    async def wait_registered(
        self, *ids: str, not_pids: frozenset[int] | set[int] = frozenset()
    ) -> dict[str, int]:
        """Wait until each id has a registry entry from a child of the supervisor (and
        not from a pid in ``not_pids``); id -> pid."""
        pids: dict[str, int] = {}

        async def registered() -> bool:
            assert self.proc.poll() is None, self.log()
            entries = await self.registry()
            children = self.children()
            pids.clear()
            for worker_id in ids:
                pid = entries.get(worker_id, {}).get("pid")
                if pid not in children or pid in not_pids:
                    return False
                pids[worker_id] = pid
            return True

        await wait_until(registered, timeout=GUARD, interval=0.1, what=f"{ids} registered")
        return pids

    async def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        with trio.move_on_after(GUARD):
            return await self.proc.wait()
        pytest.fail(f"the supervisor did not stop on signal {sig}:\n{self.log()[-3000:]}")


@asynccontextmanager
async def supervised(
    redis_url: str, tmp_path: Path, target: str, *args: str
) -> AsyncIterator[Supervised]:
    """``aiki worker TARGET ARGS`` (Redis URL and a fresh prefix in its environment);
    the supervisor and every child it had are SIGKILLed after, if still alive."""
    prefix = f"p{uuid.uuid4().hex[:8]}"
    log_path = tmp_path / f"supervisor-{prefix}.log"
    env = cli_env(AIKI_REDIS_URL=redis_url, AIKI_PREFIX=prefix)
    async with aiki.client(redis_url=redis_url, prefix=prefix) as client:
        with open(log_path, "wb") as log:  # noqa: ASYNC230 (a local file, opened once)
            proc = await trio.lowlevel.open_process(
                [*aiki_command(), "worker", target, *args], stdout=log, stderr=log, env=env
            )
        sup = Supervised(proc, log_path, client)
        try:
            yield sup
        finally:
            with trio.CancelScope(shield=True):
                for pid in sup.seen_children | sup.children():
                    if alive(pid):
                        os.kill(pid, signal.SIGKILL)
                if proc.poll() is None:
                    proc.kill()
                await proc.wait()


async def _entered(client: aiki.Client, run_id: str) -> list[int]:
    return [
        int(p) for p in await client.store.redis.command("LRANGE", f"entered:{run_id}", "0", "-1")
    ]


async def _release(client: aiki.Client, run_id: str) -> None:
    await client.store.redis.command("SET", f"release:{run_id}", "1")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# -- tests --------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "-1", "x", "1.5", ""])
async def test_bad_processes_values_are_refused(value: str) -> None:
    result = await trio.run_process(
        [*aiki_command(), "worker", "workers.procs_flows:both", "--processes", value],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        env=cli_env(AIKI_REDIS_URL="redis://127.0.0.1:1"),
    )
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert "Invalid value for '--processes'" in err
    assert "1 or more" in err


async def test_one_process_runs_the_worker_in_this_process(redis_url: str, tmp_path: Path) -> None:
    async with supervised(
        redis_url, tmp_path, "workers.procs_flows:both", "--processes", "1", "--id", "solo"
    ) as sup:

        async def registered() -> bool:
            assert sup.proc.poll() is None, sup.log()
            return "solo" in await sup.registry()

        await wait_until(registered, timeout=GUARD, interval=0.1, what="solo registered")
        assert (await sup.registry())["solo"]["pid"] == sup.proc.pid  # no child process
        assert not sup.children()
        handle = await hold_v1.start(sup.client, {})
        await wait_until(lambda: _entered(sup.client, handle.id), timeout=GUARD)
        await _release(sup.client, handle.id)
        assert await handle.wait_for_completion(timeout=GUARD) == sup.proc.pid
        assert await sup.stop() == 0, sup.log()
    assert "supervisor" not in sup.log() and "[worker-" not in sup.log()


async def test_two_processes_serve_runs_and_stop_gracefully_on_sigterm(
    redis_url: str, tmp_path: Path
) -> None:
    args = ["--processes", "2", "--id", "duo", "--concurrency", "1", "--block-time", "0.2"]
    async with supervised(redis_url, tmp_path, "workers.procs_flows:both", *args) as sup:
        pids = await sup.wait_registered("duo-1", "duo-2")
        assert len(set(pids.values())) == 2 and set(pids.values()) == sup.children()

        # One slot each: while the first run holds one child, the second must go to the
        # other one.
        first = await hold_v1.start(sup.client, {})
        await wait_until(lambda: _entered(sup.client, first.id), timeout=GUARD)
        second = await hold_v1.start(sup.client, {})
        await wait_until(lambda: _entered(sup.client, second.id), timeout=GUARD)
        executed_by = {
            (await _entered(sup.client, first.id))[0],
            (await _entered(sup.client, second.id))[0],
        }
        assert executed_by == set(pids.values())
        for handle in (first, second):
            await _release(sup.client, handle.id)
        results = {await h.wait_for_completion(timeout=GUARD) for h in (first, second)}
        assert results == set(pids.values())
        workers = {(await sup.client.get_run(h.id)).worker for h in (first, second)}
        assert workers == {"duo-1", "duo-2"}

        assert await sup.stop(signal.SIGTERM) == 0, sup.log()
        for pid in pids.values():
            assert not alive(pid), f"child {pid} outlived its supervisor"
        # Each child stopped gracefully: it said so, and took its registry entry away.
        log = sup.log()
        assert "SIGTERM: stopping worker processes (2)" in log
        for i in (1, 2):
            assert f"[worker-{i}] " in log
            assert f"worker duo-{i} stopped" in log, log
        assert not set(await sup.registry()) & {"duo-1", "duo-2"}


async def test_a_sigkilled_child_is_restarted_and_every_run_completes(
    redis_url: str, tmp_path: Path
) -> None:
    """kill -9 of a child mid-run: the supervisor restarts it (same id), the restarted
    child takes back the runs pending under its id, every run completes, and no task
    ran again after its result was recorded."""
    concurrency = 4
    args = ["--processes", "2", "--id", "k", "--concurrency", str(concurrency)]
    # k-1 never takes k-2's runs over: only the restarted k-2 can finish them.
    args += ["--block-time", "0.2", "--claim-min-idle-time", "600"]
    async with supervised(redis_url, tmp_path, "workers.procs_flows:both", *args) as sup:
        client = sup.client
        pids = await sup.wait_registered("k-1", "k-2")
        payloads = [{"x": 7 * i + 1} for i in range(24)]
        handles = [await soak_v1.start(client, p) for p in payloads]

        victim = pids["k-2"]
        redis = client.store.redis

        async def victim_inside_a_task() -> bool:
            """k-2 has started a task (its token is in execs) that has not counted its
            end yet: killing it now interrupts that task."""
            for key in await redis.command("KEYS", "execs:*"):
                base = _text(key).partition(":")[2]
                last = _text((await redis.command("LRANGE", f"execs:{base}", "-1", "-1"))[0])
                if last.startswith(f"pid{victim}:") and not await redis.command(
                    "GET", f"count:{base}"
                ):
                    return True
            return False

        await wait_until(victim_inside_a_task, timeout=GUARD, what="k-2 inside a task")
        os.kill(victim, signal.SIGKILL)
        restarted = await sup.wait_registered("k-2", not_pids={victim})
        assert restarted["k-2"] != victim
        results = {}
        for handle in handles:
            results[handle.id] = await handle.wait_for_completion(timeout=GUARD * 2)
        assert f"worker-2 (pid {victim}) was killed by SIGKILL; restarting" in sup.log()

        extra_starts = 0
        by_process: set[str] = set()
        for handle, payload in zip(handles, payloads, strict=True):
            assert results[handle.id] == {"values": soak_expected(payload["x"])}
            run = await client.get_run(handle.id, with_tasks=True)
            assert run.status == "completed" and run.tasks is not None
            assert len(run.tasks) == SOAK_STEPS
            for record in run.tasks.values():
                base = f"{handle.id}:{record['input']['step']}"
                execs = [
                    _text(t)
                    for t in await client.store.redis.command("LRANGE", f"execs:{base}", "0", "-1")
                ]
                count = int(await client.store.redis.command("GET", f"count:{base}") or 0)
                assert record["status"] == "completed"
                # No execution started after the one whose result was recorded.
                assert execs and execs[-1] == record["result"]["token"], (base, execs)
                assert count >= 1 and len(execs) >= count
                extra_starts += len(execs) - 1
                by_process |= {t.partition(":")[0] for t in execs}
                if len(execs) > 1:  # interrupted by the kill: run again by the new k-2
                    assert execs[0].startswith(f"pid{victim}:"), (base, execs)
                    assert execs[-1].startswith(f"pid{restarted['k-2']}:"), (base, execs)
        # One kill interrupts at most the victim's `concurrency` tasks.
        print(f"executions started again after the kill: {extra_starts}")
        assert extra_starts <= concurrency
        # The victim, its replacement and the other child all executed tasks.
        assert {f"pid{victim}", f"pid{restarted['k-2']}", f"pid{pids['k-1']}"} <= by_process

        assert await sup.stop(signal.SIGTERM) == 0, sup.log()
        for pid in (pids["k-1"], restarted["k-2"]):
            assert not alive(pid)


async def test_a_child_that_cannot_stop_is_killed_after_the_grace(
    redis_url: str, tmp_path: Path
) -> None:
    """A child whose process is blocked (a task sleeping synchronously) ignores its
    SIGTERM: once the grace (--shutdown-grace plus the margin) has passed, the
    supervisor stops it at once, then SIGKILLs it; nothing is left running."""
    args = ["--processes", "2", "--id", "hung", "--shutdown-grace", "0"]
    async with supervised(redis_url, tmp_path, "workers.procs_flows:both", *args) as sup:
        pids = await sup.wait_registered("hung-1", "hung-2")
        handle = await stuck_v1.start(sup.client, {})
        await wait_until(lambda: _entered(sup.client, handle.id), timeout=GUARD)
        (stuck_pid,) = await _entered(sup.client, handle.id)
        assert stuck_pid in pids.values()
        assert await sup.stop(signal.SIGTERM) == 0, sup.log()
        log = sup.log()
        assert "still stopping after 10 s: stopping at once" in log, log
        name = next(f"worker-{i}" for i in (1, 2) if pids[f"hung-{i}"] == stuck_pid)
        assert f"{name} (pid {stuck_pid}) still running 5 s later: killed" in log, log
        for pid in pids.values():
            assert not alive(pid)


async def test_children_that_keep_failing_at_start_up_end_the_supervisor(
    redis_url: str, tmp_path: Path
) -> None:
    async with supervised(
        redis_url, tmp_path, "workers.procs_refuse:hold", "--processes", "2"
    ) as sup:
        with trio.move_on_after(GUARD):
            code = await sup.proc.wait()
        assert sup.proc.poll() is not None, "the supervisor kept restarting:\n" + sup.log()
        assert code == 1, sup.log()
        last = sup.log().strip().splitlines()[-1]
        assert last.startswith("error: worker-"), sup.log()
        assert "failed to start 3 times in a row" in last
        assert "procs_refuse cannot be loaded in a worker child" in last
        for pid in sup.seen_children:
            assert not alive(pid)


async def test_children_stop_when_the_supervisor_dies(redis_url: str, tmp_path: Path) -> None:
    args = ["--processes", "2", "--id", "orphan", "--block-time", "0.2"]
    async with supervised(redis_url, tmp_path, "workers.procs_flows:both", *args) as sup:
        pids = await sup.wait_registered("orphan-1", "orphan-2")
        sup.proc.kill()
        await sup.proc.wait()

        def all_gone() -> bool:
            return not any(alive(pid) for pid in pids.values())

        await wait_until(all_gone, timeout=GUARD, interval=0.1, what="children stopped")
        # They stopped gracefully: each took its registry entry away.
        assert not set(await sup.registry()) & set(pids)


def test_child_lines_are_labelled_and_json_lines_stay_json() -> None:
    from aiki_server.cli._supervisor import Supervisor

    text = Supervisor([], ["w-1"], env={})
    child = text.children[0]
    assert text.label(child, b"hello") == b"[worker-1] hello\n"
    as_json = Supervisor([], ["w-1"], env={}, json_logs=True)
    line = as_json.label(child, json.dumps({"level": "info", "message": "hi"}).encode())
    assert json.loads(line) == {"level": "info", "message": "hi", "process": "worker-1"}
    assert as_json.label(child, b"Traceback (most recent call last):") == (
        b"[worker-1] Traceback (most recent call last):\n"
    )
