"""The ``aiki`` command line, run as a real child process (``python -m aiki_server.cli``)
against real servers and a private Redis (never 127.0.0.1:6379)."""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from test_server import HANG_GUARD, SRC, running_server, running_worker, server_echo

from aiki.embedded import RedisServerProcess, free_port
from aiki_server import Settings

CLI = [sys.executable, "-m", "aiki_server.cli"]


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIKI_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


async def aiki_cli(*args: str, cwd: Path | None = None, **env: str) -> Any:
    """Run ``aiki ARGS`` to completion; the CompletedProcess (text attributes added)."""
    with trio.fail_after(HANG_GUARD):
        result = await trio.run_process(
            [*CLI, *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=cli_env(**env),
            cwd=cwd,
        )
    result.out = result.stdout.decode()
    result.err = result.stderr.decode()
    return result


def assert_one_line_error(result: Any, *fragments: str) -> None:
    assert result.returncode == 1, (result.out, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


async def wait_healthy(url: str, proc: trio.Process) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=5) as http:
        with trio.move_on_after(HANG_GUARD):
            while proc.poll() is None:
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await trio.sleep(0.05)
    raise AssertionError(f"server at {url} did not become ready (exit code {proc.poll()})")


async def stop_process(proc: trio.Process, sig: int = signal.SIGINT) -> int:
    """Signal a child and wait for it; SIGKILL (and fail) only if it hangs."""
    if proc.poll() is None:
        proc.send_signal(sig)
    with trio.move_on_after(HANG_GUARD):
        return await proc.wait()
    proc.kill()
    await proc.wait()
    raise AssertionError(f"process did not stop on signal {sig}")


def _open_log(path: Path) -> Any:
    return open(path, "wb")


# -- help and errors without a server -----------------------------------------------------


async def test_help_everywhere() -> None:
    result = await aiki_cli("--help")
    assert result.returncode == 0, result.err
    for command in ("server", "dev", "worker", "runs"):
        assert command in result.out
    for args in (
        ["server", "--help"],
        ["dev", "--help"],
        ["worker", "--help"],
        ["runs", "--help"],
        ["runs", "list", "--help"],
        ["runs", "show", "--help"],
        ["runs", "wait", "--help"],
    ):
        result = await aiki_cli(*args)
        assert result.returncode == 0, (args, result.err)
        assert "Usage: aiki" in result.out


async def test_unreachable_server_is_a_one_line_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = await aiki_cli("runs", "list", "--url", url)
    assert_one_line_error(result, "cannot reach the Aiki server", url)
    result = await aiki_cli("runs", "show", "abc", AIKI_URL=url)
    assert_one_line_error(result, "cannot reach the Aiki server", url)


async def test_server_without_redis_url_is_a_one_line_error() -> None:
    result = await aiki_cli("server")
    assert_one_line_error(result, "--redis-url", "AIKI_REDIS_URL")
    result = await aiki_cli("server", "--redis-url", "redis://x", AIKI_PORT="http")
    assert_one_line_error(result, "AIKI_PORT")


# -- runs list / show / wait against a real server ------------------------------------------


async def test_runs_list_show_wait(module_redis: RedisServerProcess, prefix: str) -> None:
    settings = Settings(redis_url=module_redis.url, port=0, prefix=prefix)
    async with (
        running_server(settings) as server,
        running_worker(module_redis.url, prefix, server_echo),
        httpx.AsyncClient(base_url=server.base_url, timeout=HANG_GUARD) as http,
    ):
        started = await http.post(
            "/api/v1/runs",
            json={"workflow": "server-test-echo", "version": "1", "payload": {"n": 4}},
        )
        run_id = started.json()["id"]
        done = await http.get(f"/api/v1/runs/{run_id}/wait", params={"timeout": 30})
        assert done.json()["status"] == "completed"

        url = server.base_url
        result = await aiki_cli("runs", "list", "--json", "--url", url)
        assert result.returncode == 0, result.err
        listed = json.loads(result.out)
        assert [r["id"] for r in listed["runs"]] == [run_id]
        assert listed["runs"][0]["status"] == "completed"

        result = await aiki_cli("runs", "list", AIKI_URL=url)
        assert result.returncode == 0, result.err
        assert "STATUS" in result.out and run_id in result.out and "completed" in result.out

        result = await aiki_cli("runs", "show", run_id, "--url", url)
        assert result.returncode == 0, result.err
        assert run_id in result.out
        assert "completed" in result.out
        assert "server-test-double" in result.out  # the task table
        assert '"doubled": 8' in result.out

        result = await aiki_cli("runs", "show", run_id, "--json", "--url", url)
        assert json.loads(result.out)["result"] == {"n": 4, "doubled": 8, "tag": None}

        result = await aiki_cli("runs", "wait", run_id, "--json", "--url", url)
        assert result.returncode == 0, result.err
        assert json.loads(result.out)["status"] == "completed"

        for command in ("show", "wait"):
            result = await aiki_cli("runs", command, "no-such-run", "--url", url)
            assert_one_line_error(result, "no run with id", "no-such-run")


# -- long-running commands: worker, server, dev -------------------------------------------

WORKFLOW_MODULE = """
import aiki

shout = aiki.workflow("cli-test-shout")


@shout.v("1")
async def shout_v1(ctx, payload):
    return payload["text"].upper()
"""


async def test_worker_command_runs_workflows_and_stops_on_sigint(
    module_redis: RedisServerProcess, prefix: str, tmp_path: Path
) -> None:
    (tmp_path / "cli_flows.py").write_text(textwrap.dedent(WORKFLOW_MODULE))
    settings = Settings(redis_url=module_redis.url, port=0, prefix=prefix)
    log_path = tmp_path / "worker.log"
    async with running_server(settings) as server:
        with _open_log(log_path) as log:
            proc = await trio.lowlevel.open_process(
                [
                    *CLI,
                    "worker",
                    "cli_flows:shout",
                    "--redis-url",
                    module_redis.url,
                    "--prefix",
                    prefix,
                    "--block-time",
                    "0.2",
                ],
                env=cli_env(),
                cwd=tmp_path,
                stdout=log,
                stderr=log,
            )
        try:
            async with httpx.AsyncClient(base_url=server.base_url, timeout=HANG_GUARD) as http:
                body = {"workflow": "cli-test-shout", "version": "1", "payload": {"text": "hi"}}
                with trio.move_on_after(HANG_GUARD):
                    # The workflow is known once the worker has registered it.
                    while (
                        response := await http.post("/api/v1/runs", json=body)
                    ).status_code == 404:
                        assert proc.poll() is None, log_path.read_text()
                        await trio.sleep(0.05)
                assert response.status_code == 201, (response.text, log_path.read_text())
                run_id = response.json()["id"]
                done = await http.get(f"/api/v1/runs/{run_id}/wait", params={"timeout": 30})
                assert done.json()["status"] == "completed", log_path.read_text()
                assert done.json()["result"] == "HI"
        finally:
            code = await stop_process(proc)
        assert code == 0, log_path.read_text()
        assert "stopping worker" in log_path.read_text()


async def test_worker_command_with_a_bad_target_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "cli_flows.py").write_text(textwrap.dedent(WORKFLOW_MODULE))
    result = await aiki_cli(
        "worker", "cli_flows:nothing", "--redis-url", "redis://127.0.0.1:1", cwd=tmp_path
    )
    assert_one_line_error(result, "nothing")
    result = await aiki_cli(
        "worker", "no_such_module_xyz", "--redis-url", "redis://127.0.0.1:1", cwd=tmp_path
    )
    assert_one_line_error(result, "no_such_module_xyz")


async def test_server_command_serves_and_stops_on_sigterm(
    module_redis: RedisServerProcess, prefix: str, tmp_path: Path
) -> None:
    port = free_port()
    log_path = tmp_path / "server.log"
    with _open_log(log_path) as log:
        proc = await trio.lowlevel.open_process(
            [*CLI, "server", "--port", str(port), "--prefix", prefix],
            env=cli_env(AIKI_REDIS_URL=module_redis.url),
            stdout=log,
            stderr=log,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        await wait_healthy(url, proc)
        result = await aiki_cli("runs", "list", "--json", "--url", url)
        assert json.loads(result.out) == {"runs": [], "next_cursor": None}
    finally:
        code = await stop_process(proc, signal.SIGTERM)
    assert code == 0, log_path.read_text()


async def test_dev_command_runs_an_embedded_redis_with_aof(tmp_path: Path) -> None:
    port = free_port()
    data_dir = tmp_path / "data"
    log_path = tmp_path / "dev.log"
    with _open_log(log_path) as log:
        proc = await trio.lowlevel.open_process(
            [*CLI, "dev", "--port", str(port), "--data-dir", str(data_dir)],
            env=cli_env(),
            stdout=log,
            stderr=log,
        )
    try:
        await wait_healthy(f"http://127.0.0.1:{port}", proc)
        text = log_path.read_text()
        assert f"http://127.0.0.1:{port}/api/v1" in text and "redis://127.0.0.1:" in text
    finally:
        code = await stop_process(proc)
    assert code == 0, log_path.read_text()
    assert (data_dir / "appendonlydir").is_dir(), sorted(p.name for p in data_dir.iterdir())
