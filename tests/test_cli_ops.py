"""The operator commands of the ``aiki`` command line, run through the installed console
script (``.venv/bin/aiki``, else ``python -m aiki_server.cli``) against a real server,
a real worker and a private Redis: runs list/show/cancel/pause/resume, schedules,
workers, ``--json`` output parsed, error exit codes, and JSON logs."""

from __future__ import annotations

import io
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from _helpers import wait_until
from test_cli import _open_log, assert_one_line_error, cli_env, stop_process, wait_healthy
from test_server import HANG_GUARD, open_store, running_server, running_worker

import aiki
import aiki.testing
from aiki.embedded import RedisServerProcess, free_port
from aiki_server import Settings
from aiki_server._logging import JsonFormatter, setup_logging

_SCRIPT = Path(sys.executable).with_name("aiki")
AIKI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "aiki_server.cli"]

ops = aiki.workflow("cli-ops")


@aiki.task("cli-ops-first")
async def first(payload: dict[str, Any]) -> int:
    return int(payload["n"]) + 1


@aiki.task("cli-ops-second")
async def second(payload: dict[str, Any]) -> int:
    if payload.get("fail"):
        raise ValueError(f"second step refused {payload['n']}")
    if payload.get("hang"):
        await trio.sleep_forever()
    return int(payload["n"]) * 10


@ops.v("1")
async def ops_v1(ctx: aiki.WorkflowContext, payload: dict[str, Any]) -> int:
    n = await first.start(ctx, payload)
    return await second.start(ctx, {**payload, "n": n})


async def run_aiki(*args: str, **env: str) -> Any:
    """Run ``aiki ARGS`` to completion; the CompletedProcess with ``out``/``err`` text."""
    with trio.fail_after(HANG_GUARD):
        result = await trio.run_process(
            [*AIKI, *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=cli_env(**env),
        )
    result.out = result.stdout.decode()
    result.err = result.stderr.decode()
    return result


async def aiki_json(*args: str, **env: str) -> Any:
    result = await run_aiki(*args, "--json", **env)
    assert result.returncode == 0, (args, result.out, result.err)
    return json.loads(result.out)


async def test_help_on_every_operator_command() -> None:
    for args in (
        ["runs", "cancel", "--help"],
        ["runs", "pause", "--help"],
        ["runs", "resume", "--help"],
        ["schedules", "--help"],
        ["schedules", "list", "--help"],
        ["schedules", "create", "--help"],
        ["schedules", "delete", "--help"],
        ["workers", "--help"],
        ["workers", "list", "--help"],
    ):
        result = await run_aiki(*args)
        assert result.returncode == 0, (args, result.err)
        assert "Usage: aiki" in result.out
    for command in ("server", "dev", "worker"):
        out = (await run_aiki(command, "--help")).out
        assert "--log-format [text|json]" in out and "--log-level" in out, out


async def test_runs_list_show_and_control(settings: Settings) -> None:
    assert settings.redis_url is not None
    async with (
        running_server(settings) as server,
        running_worker(settings.redis_url, settings.prefix, ops) as worker,
        aiki.client(redis_url=settings.redis_url, prefix=settings.prefix) as client,
    ):
        url = server.base_url
        done = [await ops_v1.start(client, {"n": n}) for n in (1, 2)]
        for handle in done:
            await handle.wait_for_completion(timeout=HANG_GUARD)
        failed = await ops_v1.start(client, {"n": 5, "fail": True})
        with pytest.raises(aiki.WorkflowFailed):
            await failed.wait_for_completion(timeout=HANG_GUARD)
        hanging = await ops_v1.start(client, {"n": 7, "hang": True})

        async def status_is(status: str) -> bool:
            return await hanging.status() == status

        await wait_until(lambda: status_is("running"), what="the hanging run is running")

        # -- list ---------------------------------------------------------------------
        listed = await aiki_json("runs", "list", "--url", url)
        assert {r["id"] for r in listed["runs"]} == {h.id for h in [*done, failed, hanging]}
        only_failed = await aiki_json("runs", "list", "--status", "failed", "--url", url)
        assert [r["id"] for r in only_failed["runs"]] == [failed.id]
        recent = await aiki_json("runs", "list", "--since", "1h", "--version", "1", "--url", url)
        assert len(recent["runs"]) == 4
        assert (await aiki_json("runs", "list", "--version", "2", "--url", url))["runs"] == []
        paged = await aiki_json("runs", "list", "--limit", "3", "--url", url)
        assert len(paged["runs"]) == 3 and paged["next_cursor"]
        rest = await aiki_json("runs", "list", "--cursor", paged["next_cursor"], "--url", url)
        assert len(rest["runs"]) == 1 and rest["next_cursor"] is None
        table = await run_aiki("runs", "list", "--url", url)
        assert table.returncode == 0, table.err
        header = table.out.splitlines()[0].split()
        assert header[:4] == ["ID", "WORKFLOW", "VERSION", "STATUS"], header
        assert "ValueError: second step refused 6" in table.out

        # -- show: tasks in order, durations, attempts, traceback, timeline -------------
        shown = await run_aiki("runs", "show", failed.id, "--url", url)
        assert shown.returncode == 0, shown.err
        out = shown.out
        assert "status:       failed" in out
        assert "Traceback (most recent call last)" in out
        assert "ValueError: second step refused 6" in out
        lines = out.splitlines()
        task_rows = [line.split() for line in lines if line.strip().startswith(("1 ", "2 "))]
        assert [row[1] for row in task_rows[:2]] == ["cli-ops-first", "cli-ops-second"]
        assert [row[2] for row in task_rows[:2]] == ["completed", "failed"]
        assert "DURATION" in out and "ATTEMPTS" in out
        timeline = out[out.index("timeline:") :]
        assert timeline.index("run created") < timeline.index("1. cli-ops-first started")
        assert timeline.index("2. cli-ops-second failed") < timeline.index("run failed")
        as_json = await aiki_json("runs", "show", failed.id, "--url", url)
        assert as_json["status"] == "failed" and as_json["error"]["type"] == "ValueError"
        assert [t["task"] for t in as_json["tasks"]] == ["cli-ops-first", "cli-ops-second"]

        # -- pause / resume / cancel ---------------------------------------------------
        paused = await aiki_json("runs", "pause", hanging.id, "--url", url)
        assert paused["result"] == "paused" and paused["run"]["status"] == "paused"
        resumed = await run_aiki("runs", "resume", hanging.id, "--url", url)
        assert resumed.returncode == 0 and f"run {hanging.id}: queued" in resumed.out
        await wait_until(lambda: status_is("running"), what="running again after resume")
        cancelled = await aiki_json(
            "runs", "cancel", hanging.id, "--reason", "operator said so", "--url", url
        )
        assert cancelled["result"] == "cancelled"
        async with open_store(settings.redis_url, settings.prefix) as store:
            record = await store.get_run(hanging.id)
        assert record is not None and record.status == "cancelled"
        assert "operator said so" in json.dumps(record.error)
        await wait_until(lambda: worker.in_flight == 0, what="the execution was stopped")
        again = await run_aiki("runs", "cancel", done[0].id, "--url", url)
        assert again.returncode == 0 and "had already ended: completed" in again.out

        # -- export: the history document, replayable with no Redis ---------------------
        exported = await run_aiki("runs", "export", done[0].id, "--url", url)
        assert exported.returncode == 0, exported.err
        history = json.loads(exported.out)
        assert history["run"]["id"] == done[0].id
        assert await aiki.testing.replay(ops_v1, history) == 20  # (1 + 1) * 10, nothing ran
        assert_one_line_error(await run_aiki("runs", "export", "nope", "--url", url), "no run")

        # -- errors: one line, exit code 1 (usage errors: 2) ----------------------------
        assert_one_line_error(await run_aiki("runs", "cancel", "nope", "--url", url), "no run")
        assert_one_line_error(await run_aiki("runs", "show", "nope", "--url", url), "no run")
        refused = await run_aiki("runs", "pause", done[1].id, "--url", url)
        assert_one_line_error(refused, done[1].id)
        bad = await run_aiki("runs", "list", "--since", "yesterday-ish", "--url", url)
        assert_one_line_error(bad, "--since")
        usage = await run_aiki("runs", "list", "--status", "bogus", "--url", url)
        assert usage.returncode == 2 and "bogus" in usage.err


async def test_schedules_and_workers_commands(settings: Settings) -> None:
    assert settings.redis_url is not None
    async with (
        running_server(settings) as server,
        running_worker(settings.redis_url, settings.prefix, ops) as worker,
    ):
        url = server.base_url
        created = await aiki_json(
            "schedules",
            "create",
            "nightly",
            "--workflow",
            "cli-ops",
            "--version",
            "1",
            "--cron",
            "0 3 * * *",
            "--payload",
            '{"n": 1}',
            "--url",
            url,
        )
        assert created["id"] == "nightly" and created["next_at"] > 0
        listed = await aiki_json("schedules", "list", "--url", url)
        assert [(s["id"], s["cron"], s["payload"]) for s in listed["schedules"]] == [
            ("nightly", "0 3 * * *", {"n": 1})
        ]
        table = await run_aiki("schedules", "list", "--url", url)
        assert "nightly" in table.out and "cron 0 3 * * *" in table.out
        assert (await run_aiki("schedules", "delete", "nightly", "--url", url)).returncode == 0
        assert_one_line_error(
            await run_aiki("schedules", "delete", "nightly", "--url", url), "no schedule"
        )
        assert_one_line_error(
            await run_aiki(
                "schedules", "create", "x", "--workflow", "cli-ops", "--version", "1", "--url", url
            ),
            "exactly one of --cron and --every",
        )
        assert_one_line_error(
            await run_aiki(
                "schedules",
                "create",
                "x",
                "--workflow",
                "cli-ops",
                "--version",
                "1",
                "--every",
                "5",
                "--payload",
                "{nope",
                "--url",
                url,
            ),
            "--payload",
        )
        assert_one_line_error(
            await run_aiki(
                "schedules",
                "create",
                "x",
                "--workflow",
                "cli-ops",
                "--version",
                "1",
                "--cron",
                "every day",
                "--url",
                url,
            ),
            "cron",
        )

        workers = await aiki_json("workers", "list", "--url", url)
        assert [w["id"] for w in workers["workers"]] == [worker.id]
        entry = workers["workers"][0]
        assert entry["workflows"] == ["cli-ops@1"] and entry["stale"] is False
        assert entry["max"] == 10 and entry["in_flight"] == 0
        table = await run_aiki("workers", "list", "--url", url)
        assert worker.id in table.out and "live" in table.out and "cli-ops@1" in table.out


async def test_server_logs_json_lines(module_redis: RedisServerProcess, tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "server.log"
    with _open_log(log_path) as log:
        proc = await trio.lowlevel.open_process(
            [*AIKI, "server", "--port", str(port), "--prefix", "jsonlogs", "--access-log"],
            env=cli_env(AIKI_REDIS_URL=module_redis.url, AIKI_LOG_FORMAT="json"),
            stdout=log,
            stderr=log,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        await wait_healthy(url, proc)
        async with httpx.AsyncClient(base_url=url) as http:
            await http.get("/api/v1/runs/nope")
    finally:
        code = await stop_process(proc, signal.SIGTERM)
    assert code == 0, log_path.read_text()
    records = []
    for line in log_path.read_text().splitlines():
        if line.startswith("Aiki server on"):
            continue  # the banner is on stdout, for people
        records.append(json.loads(line))  # every other line is one JSON object
    assert all({"ts", "level", "logger", "message"} <= set(r) for r in records), records
    assert any(r["logger"] == "aiki_server" and "connected" in r["message"] for r in records)
    access = [r for r in records if r["logger"] == "hypercorn.access"]
    assert any(
        r["http"]["path"] == "/api/v1/runs/nope" and r["http"]["status"] == 404 for r in access
    ), access
    assert any("SIGTERM" in r["message"] for r in records)


def test_json_formatter_keeps_extras_and_tracebacks() -> None:
    stream = io.StringIO()
    handler = setup_logging("debug", "json", stream=stream)
    try:
        logger = logging.getLogger("aiki.test")
        logger.info("hello %s", "world", extra={"run_id": "r1"})
        try:
            raise KeyError("k")
        except KeyError:
            logger.exception("it broke")
    finally:
        logging.getLogger().removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "hello world" and first["run_id"] == "r1"
    assert first["level"] == "info" and first["logger"] == "aiki.test"
    assert first["ts"].endswith("Z")
    assert second["level"] == "error" and "KeyError: 'k'" in second["exc_info"]
    assert isinstance(JsonFormatter().format(logging.makeLogRecord({"msg": "x"})), str)
