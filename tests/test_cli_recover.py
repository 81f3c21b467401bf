"""Recovery and the CLI verbs that match the HTTP API, end to end: the real ``aiki
server`` and ``aiki worker`` as processes over a private Redis, driven by the ``aiki``
command (``runs start|event|wakeup|retry``, ``dead-letters``, ``schedules
pause|resume|trigger-now|delete``).

The workflows are ``tests/workers/rerun_flows.py``; their tasks count executions in
Redis, so "not executed again" is counted across processes, never timed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from _helpers import TESTS, wait_until
from _resp import acommand
from test_cli import cli_env
from test_cli_ops import AIKI
from test_server import HANG_GUARD

import aiki
from aiki.embedded import RedisServerProcess, free_port


@dataclass
class Stack:
    url: str  # the server
    redis_url: str
    redis_port: int
    prefix: str
    logs: Path

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in self.logs.glob("*.log"))


def _spawn(args: list[str], log: Path, **env: str) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [*AIKI, *args], env=cli_env(**env), cwd=TESTS / "workers", stdout=out, stderr=out
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=HANG_GUARD)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """``aiki server`` and ``aiki worker rerun_flows`` (processes) over a private Redis."""
    redis = RedisServerProcess()
    redis.start()
    assert redis.port is not None
    logs = tmp_path_factory.mktemp("recover")
    prefix = f"rc{uuid.uuid4().hex[:8]}"
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        common = ["--redis-url", redis.url, "--prefix", prefix]
        procs.append(_spawn(["server", "--port", str(port), *common], logs / "server.log"))
        procs.append(
            _spawn(
                ["worker", "rerun_flows", *common, "--block-time", "0.2", "--id", "rerun-worker"]
                + ["--processes", "1"],
                logs / "worker.log",
                RERUN_REDIS_PORT=str(redis.port),
                PYTHONPATH=os.pathsep.join([str(TESTS.parent / "src"), str(TESTS)]),
            )
        )
        stack = Stack(f"http://127.0.0.1:{port}", redis.url, redis.port, prefix, logs)
        deadline = time.monotonic() + HANG_GUARD
        while True:  # ready once the worker registered its workflows with the server
            for proc in procs:
                assert proc.poll() is None, stack.log()
            try:
                known = httpx.get(f"{stack.url}/api/v1/workflows", timeout=2)
                names = {w["workflow"] for w in known.json().get("workflows", [])}
                if {"rerun-four", "rerun-waiter"} <= names:
                    break
            except (httpx.TransportError, ValueError):
                pass
            assert time.monotonic() < deadline, "the stack did not become ready\n" + stack.log()
            time.sleep(0.1)
        yield stack
    finally:
        for proc in procs:
            _stop(proc)
        redis.cleanup()


async def aiki_run(*args: str, stdin: bytes | None = None) -> Any:
    with trio.fail_after(HANG_GUARD):
        result = await trio.run_process(
            [*AIKI, *args],
            stdin=stdin if stdin is not None else b"",
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=cli_env(),
        )
    result.out, result.err = result.stdout.decode(), result.stderr.decode()
    return result


async def aiki_ok(stack: Stack, *args: str, stdin: bytes | None = None) -> str:
    result = await aiki_run(*args, "--url", stack.url, stdin=stdin)
    assert result.returncode == 0, (args, result.out, result.err, stack.log())
    return str(result.out)


async def aiki_json(stack: Stack, *args: str, stdin: bytes | None = None) -> Any:
    return json.loads(await aiki_ok(stack, *args, "--json", stdin=stdin))


async def counts(stack: Stack, flag: str, *tasks: str) -> list[int]:
    return [int(await acommand(stack.redis_port, "GET", f"count:{flag}:{t}") or 0) for t in tasks]


async def status_of(stack: Stack, run_id: str) -> str:
    return str((await aiki_json(stack, "runs", "show", run_id))["status"])


# -- retry -------------------------------------------------------------------------------


async def test_failed_run_retried_from_the_cli_does_not_run_its_completed_tasks_again(
    stack: Stack,
) -> None:
    flag = uuid.uuid4().hex[:8]
    await acommand(stack.redis_port, "SET", f"broken:{flag}", "1")
    payload = json.dumps({"flag": flag, "x": 1})
    started = await aiki_json(stack, "runs", "start", "rerun-four", "1", "--payload", payload)
    run_id = started["id"]
    waited = await aiki_run("runs", "wait", run_id, "--url", stack.url)
    assert waited.returncode == 1 and "RuntimeError: step 3 is broken" in waited.err, waited.err
    steps = ("step1", "step2", "step3", "step4")
    assert await counts(stack, flag, *steps) == [1, 1, 1, 0]

    # Refused while it runs or once it completed; unknown runs are named.
    refused = await aiki_run("runs", "retry", "0" * 32, "--url", stack.url)
    assert refused.returncode == 1 and "no run with id" in refused.err, refused.err

    await acommand(stack.redis_port, "DEL", f"broken:{flag}")  # the bug is fixed
    said = await aiki_ok(stack, "runs", "retry", run_id)
    assert f"run {run_id}: queued" in said, said
    done = await aiki_json(stack, "runs", "wait", run_id)
    assert done["status"] == "completed", done
    assert done["result"] == {"total": 1 + 1 + 2 + 3 + 4, "attempt": 2}
    assert await counts(stack, flag, *steps) == [1, 1, 2, 1]
    # The run's history keeps the attempt that failed, marked as retried.
    [first] = done["errors"]
    assert first["type"] == "RuntimeError" and first["ended_as"] == "failed"
    assert first["retried_at"] >= first["ended_at"] > 0
    again = await aiki_run("runs", "retry", run_id, "--url", stack.url)
    assert again.returncode == 1 and "only a failed or cancelled run" in again.err, again.err


async def test_bulk_retry_of_fifty_failed_runs_completes_them_all(stack: Stack) -> None:
    flag = uuid.uuid4().hex[:8]
    await acommand(stack.redis_port, "SET", f"broken:{flag}", "1")
    async with aiki.client(redis_url=stack.redis_url, prefix=stack.prefix) as client:
        handles = await client._start_many(
            "rerun-bulk", "1", [{"flag": flag, "n": n} for n in range(50)], None
        )
        assert len(handles) == 50
        for handle in handles:
            with pytest.raises(aiki.WorkflowFailed):
                await handle.wait_for_completion(timeout=HANG_GUARD)
        assert await counts(stack, flag, "check") == [50]
        await acommand(stack.redis_port, "DEL", f"broken:{flag}")
        out = await aiki_ok(
            stack, "runs", "retry", "--workflow", "rerun-bulk", "--version", "1", "--since", "1h"
        )
        assert "retried 50 failed run(s) of rerun-bulk@1" in out, out
        results = [await h.wait_for_completion(timeout=HANG_GUARD) for h in handles]
        assert sorted(results) == list(range(50))
        assert await counts(stack, flag, "check") == [100]
        # Nothing failed is left: a second bulk retry finds nothing.
        again = await aiki_json(
            stack, "runs", "retry", "--workflow", "rerun-bulk", "--version", "1", "--since", "1h"
        )
        assert again == {"retried": [], "refused": []}


# -- start, event, wakeup ------------------------------------------------------------------


async def test_start_from_stdin_wakeup_and_events(stack: Stack) -> None:
    run_id = (
        await aiki_ok(
            stack, "runs", "start", "rerun-waiter", "1", "--payload-file", "-", stdin=b'{"p": 7}\n'
        )
    ).strip()

    async def status_is(status: str) -> bool:
        return await status_of(stack, run_id) == status

    await wait_until(lambda: status_is("sleeping"), timeout=HANG_GUARD, what="asleep")
    woke = await aiki_ok(stack, "runs", "wakeup", run_id, "nap")
    assert "woke 1 sleep(s) named 'nap'" in woke, woke
    await wait_until(lambda: status_is("awaiting_event"), timeout=HANG_GUARD, what="waiting")
    sent = await aiki_ok(stack, "runs", "event", run_id, "go", '{"k": 1}', "--reference-id", "r1")
    assert "event delivered" in sent, sent
    repeat = await aiki_ok(stack, "runs", "event", run_id, "go", '{"k": 1}', "--reference-id", "r1")
    assert "already delivered" in repeat, repeat
    await aiki_ok(stack, "runs", "event", run_id, "more", "--data-file", "-", stdin=b"[1, 2]")
    done = await aiki_json(stack, "runs", "wait", run_id)
    assert done["result"] == {"payload": {"p": 7}, "go": {"k": 1}, "more": [1, 2]}, done

    # Bad input is one line naming what is wrong; nothing is started.
    bad = await aiki_run(
        "runs", "start", "rerun-waiter", "1", "--payload", "{nope", "--url", stack.url
    )
    assert bad.returncode == 1 and "the payload from the command line is not valid JSON" in bad.err
    unknown = await aiki_run("runs", "start", "no-such-flow", "1", "--url", stack.url)
    assert unknown.returncode == 1 and "no-such-flow" in unknown.err, unknown.err
    ended = await aiki_run("runs", "wakeup", run_id, "nap", "--url", stack.url)
    assert ended.returncode in (0, 1), ended.err  # a no-op or a refusal: never a traceback
    assert "Traceback" not in ended.err
    missing = await aiki_run("runs", "event", "0" * 32, "go", "--url", stack.url)
    assert missing.returncode == 1 and "no run with id" in missing.err, missing.err


async def test_start_waits_and_payload_file(stack: Stack, tmp_path: Path) -> None:
    path = tmp_path / "payload.json"
    path.write_text('{"from": "file"}')
    shown = await aiki_ok(stack, "runs", "start", "rerun-echo", "1", "--payload-file", str(path),
                          "--wait", "--priority", "7")  # fmt: skip
    assert "status:       completed" in shown, shown
    assert "priority:     7" in shown, shown
    listed = await aiki_ok(stack, "runs", "list", "--workflow", "rerun-echo")
    header, *rows = listed.splitlines()
    assert "PRIORITY" in header.split(), listed
    assert any(row.split()[-1] == "7" for row in rows), listed
    bad = await aiki_run("runs", "start", "rerun-echo", "1", "--priority", "101",
                         "--url", stack.url)  # fmt: skip
    assert bad.returncode == 2 and "--priority" in bad.err, bad.err
    both = await aiki_run("runs", "start", "rerun-echo", "1", "--payload", "1",
                          "--payload-file", str(path), "--url", stack.url)  # fmt: skip
    assert both.returncode == 1 and "not both" in both.err


# -- schedules -----------------------------------------------------------------------------


async def test_schedules_pause_resume_trigger_now_and_delete(stack: Stack) -> None:
    sid = f"sched-{uuid.uuid4().hex[:6]}"
    await aiki_ok(stack, "schedules", "create", sid, "--workflow", "rerun-echo", "--version", "1",
                  "--every", "3600", "--payload", '{"from": "schedule"}')  # fmt: skip

    async def mine() -> dict[str, Any]:
        found = (await aiki_json(stack, "schedules", "list"))["schedules"]
        return next(s for s in found if s["id"] == sid)

    assert (await mine())["paused"] is False
    assert "paused" in await aiki_ok(stack, "schedules", "pause", sid)
    paused = await mine()
    assert paused["paused"] is True and paused["next_at"] is None and paused["paused_at"]
    table = await aiki_ok(stack, "schedules", "list")
    assert any(sid in line and "paused" in line for line in table.splitlines()), table

    # Trigger now starts a run even while paused, and leaves the timetable alone.
    fired = await aiki_json(stack, "schedules", "trigger-now", sid)
    run = await aiki_json(stack, "runs", "wait", fired["run"]["id"])
    assert run["result"] == {"echo": {"from": "schedule"}}, run
    assert (await mine())["paused"] is True

    resumed = await aiki_ok(stack, "schedules", "resume", sid)
    assert "resumed" in resumed, resumed
    active = await mine()
    assert active["paused"] is False and active["next_at"] > time.time() * 1000
    assert "was not paused" in await aiki_ok(stack, "schedules", "resume", sid)

    await aiki_ok(stack, "schedules", "delete", sid)
    assert sid not in {s["id"] for s in (await aiki_json(stack, "schedules", "list"))["schedules"]}
    for verb in ("pause", "resume", "trigger-now", "delete"):
        gone = await aiki_run("schedules", verb, sid, "--url", stack.url)
        assert gone.returncode == 1 and f"no schedule with id '{sid}'" in gone.err, (verb, gone.err)


# -- dead letters ----------------------------------------------------------------------------


async def test_poison_messages_are_listed_discarded_and_requeued(stack: Stack) -> None:
    stream = f"{stack.prefix}:{{0}}:stream:rerun-echo:1"
    missing_run = "00" + uuid.uuid4().hex[:30]
    await acommand(stack.redis_port, "XADD", stream, "*", "junk", "1")
    await acommand(stack.redis_port, "XADD", stream, "*", "run", missing_run)

    # A run whose stored data cannot be read (its tasks key is not a hash) when it is
    # taken: dead-lettered, left queued without a message until an operator requeues it.
    async with aiki.client(redis_url=stack.redis_url, prefix=stack.prefix) as client:
        handle = await client._start_run("rerun-echo", "1", {"n": 1}, None, delay=0.5)
        tasks_key = f"{stack.prefix}:{{0}}:run:{handle.id}:tasks"
        await acommand(stack.redis_port, "SET", tasks_key, "not a hash")

        async def letters() -> list[dict[str, Any]]:
            return list((await aiki_json(stack, "dead-letters", "list"))["dead_letters"])

        async def three() -> bool:
            return len(await letters()) >= 3

        await wait_until(three, timeout=HANG_GUARD, what="three dead letters")
        by_reason = {d["reason"]: d for d in await letters()}
        no_run = by_reason["message has no 'run' field"]
        gone = by_reason[f"run {missing_run} does not exist"]
        [bad] = [d for d in by_reason.values() if d["run_id"] == handle.id]
        assert "is a string, not a hash" in bad["reason"], bad
        assert no_run["fields"] == {"junk": "1"} and no_run["stream"] == stream
        table = await aiki_ok(stack, "dead-letters", "list")
        assert "message has no 'run' field" in table and "3 dead letter(s) in all" in table

        shown = await aiki_ok(stack, "dead-letters", "show", bad["id"])
        assert f"run:          {handle.id}: queued (rerun-echo@1)" in shown, shown

        # Requeue refuses what it cannot help: no run named, or the run is gone.
        refused = await aiki_run("dead-letters", "requeue", no_run["id"], "--url", stack.url)
        assert refused.returncode == 1 and "names no run" in refused.err, refused.err
        refused = await aiki_run("dead-letters", "requeue", gone["id"], "--url", stack.url)
        assert refused.returncode == 1 and "discard" in refused.err, refused.err

        await aiki_ok(stack, "dead-letters", "discard", no_run["id"], gone["id"])
        await acommand(stack.redis_port, "DEL", tasks_key)  # the data is repaired
        said = await aiki_ok(stack, "dead-letters", "requeue", bad["id"])
        assert f"run {handle.id} queued" in said, said
        assert await handle.wait_for_completion(timeout=HANG_GUARD) == {"echo": {"n": 1}}
        assert await letters() == []
        missing = await aiki_run("dead-letters", "discard", bad["id"], "--url", stack.url)
        assert missing.returncode == 1 and "no dead letter with id" in missing.err


async def test_help_on_every_new_verb() -> None:
    for args in (
        ["runs", "start"], ["runs", "event"], ["runs", "wakeup"], ["runs", "retry"],
        ["dead-letters"], ["dead-letters", "list"], ["dead-letters", "show"],
        ["dead-letters", "discard"], ["dead-letters", "requeue"],
        ["schedules", "pause"], ["schedules", "resume"], ["schedules", "trigger-now"],
    ):  # fmt: skip
        result = await aiki_run(*args, "--help")
        assert result.returncode == 0 and "Usage: aiki" in result.out, (args, result.err)
