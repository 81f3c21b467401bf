"""Error messages through the codecs "if asked" (#18): with ``encode_errors=True`` the
messages and tracebacks recorded for failed tasks and runs (attempt after attempt, and
a child's failure as its parent records it) are encrypted like payloads; heartbeat
details and schedule payloads always are. A scan of every Redis key finds none of their
text, while code with the key still gets the real error (``WorkflowFailed``) and a
server with the key shows it."""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest
import trio
from _helpers import running_worker, scan_redis

import aiki
from aiki.codecs import Encryption, describe
from aiki_server import Settings, serve_server

KEY = os.urandom(32)
ERROR_MARKER = "MARKER-ERROR-41c"
CHILD_MARKER = "MARKER-CHILD-52d"
BEAT_MARKER = "MARKER-BEAT-63e"
SCHEDULE_MARKER = "MARKER-SCHEDULE-74f"

errors_flow = aiki.workflow("codec-errors")
failing_child = aiki.workflow("codec-errors-child")


@aiki.task("codec-beating", retry=aiki.Retry.fixed(2, 0.01), heartbeat_timeout=30.0)
async def beating(payload: dict[str, Any]) -> int:
    context = aiki.task_context()
    seen = context.last_heartbeat  # the first attempt's, decrypted
    context.heartbeat({"note": BEAT_MARKER, "attempt": context.attempt})
    raise ValueError(f"{ERROR_MARKER} attempt {context.attempt} saw {seen}")


@failing_child.v("1")
async def failing_child_v1(ctx: aiki.WorkflowContext, payload: Any) -> None:
    raise RuntimeError(CHILD_MARKER)


@errors_flow.v("1", retry=aiki.Retry.fixed(2, 0.01))
async def errors_flow_v1(ctx: aiki.WorkflowContext, payload: dict[str, Any]) -> int:
    child = await failing_child_v1.start_as_child(ctx, None)
    try:
        await child.wait_for_completion()
    except aiki.WorkflowFailed as failed:  # the child's message, decrypted
        assert failed.error_message == CHILD_MARKER, failed.error_message
    return await beating.start(ctx, payload)


async def fail_a_run(client: aiki.Client) -> aiki.WorkflowFailed:
    async with running_worker(client, errors_flow, failing_child):
        handle = await errors_flow_v1.start(client, {"n": 1})
        with pytest.raises(aiki.WorkflowFailed) as failed:
            await handle.wait_for_completion(timeout=30)
    return failed.value


async def test_encode_errors_keeps_error_text_out_of_redis(redis_url: str) -> None:
    codecs = [Encryption({1: KEY})]
    async with aiki.client(redis_url=redis_url, codecs=codecs, encode_errors=True) as client:
        failed = await fail_a_run(client)
        await client.create_schedule(
            aiki.Schedule(
                id="codec-errors-daily",
                workflow="codec-errors",
                version="1",
                payload={"note": SCHEDULE_MARKER},
                every=86400.0,
            )
        )
        dump = "\n".join(await scan_redis(client))
        run = await client.get_run(failed.run_id, with_tasks=True)

        # Code with the key gets the real error: the task's message (its second
        # attempt saw the first one's heartbeat details) and its traceback.
        assert failed.error_type == "ValueError"
        assert f"{ERROR_MARKER} attempt 2 saw {{'note': '{BEAT_MARKER}', 'attempt': 1}}" in (
            failed.error_message
        )
        assert ERROR_MARKER in str(failed.traceback) and ERROR_MARKER in str(failed)

        # A server with the key shows the error; one without shows it as encrypted.
        async with trio.open_nursery() as nursery:
            keyed = await nursery.start(
                serve_server, Settings(redis_url=redis_url, port=0, codecs=tuple(codecs))
            )
            plain = await nursery.start(serve_server, Settings(redis_url=redis_url, port=0))
            async with httpx.AsyncClient(timeout=30) as http:
                shown = (await http.get(f"{keyed.base_url}/api/v1/runs/{failed.run_id}")).json()
                page = (await http.get(f"{plain.base_url}/runs/{failed.run_id}")).text
                listed = (await http.get(f"{keyed.base_url}/api/v1/schedules")).json()
            nursery.cancel_scope.cancel()

    for marker in (ERROR_MARKER, CHILD_MARKER, BEAT_MARKER, SCHEDULE_MARKER):
        assert marker not in dump, (marker, dump[max(0, dump.find(marker) - 300) :][:400])
    # Stored: the type in clear, the message and the traceback encrypted, everywhere.
    assert run.error is not None and run.error["type"] == "ValueError"
    assert describe(run.error["message"]) and describe(run.error["traceback"])
    assert run.errors and all(describe(e["message"]) for e in run.errors)
    tasks = {a.split(":")[0]: t for a, t in (run.tasks or {}).items()}
    assert all(describe(e["message"]) for e in tasks["codec-beating"]["errors"])
    assert describe(tasks["codec-beating"]["heartbeat"]["details"])
    assert describe(tasks["child-wait"]["error"]["message"])

    assert ERROR_MARKER in shown["error"]["message"] and "codec_errors" not in shown
    assert BEAT_MARKER in repr(shown["tasks"])
    assert listed["schedules"][0]["payload"] == {"note": SCHEDULE_MARKER}
    assert "[encrypted with key id &#39;1&#39;" in page and ERROR_MARKER not in page
    assert "ValueError" in page  # the type stays readable


async def test_without_encode_errors_error_text_is_stored_in_clear(redis_url: str) -> None:
    """The scan above can fail: by default error text is stored as it is (heartbeat
    details are encrypted all the same)."""
    async with aiki.client(redis_url=redis_url, codecs=[Encryption({1: KEY})]) as client:
        failed = await fail_a_run(client)
        dump = "\n".join(await scan_redis(client))
        run = await client.get_run(failed.run_id, with_tasks=True)
    assert ERROR_MARKER in failed.error_message
    assert ERROR_MARKER in dump and CHILD_MARKER in dump
    assert run.error is not None and ERROR_MARKER in run.error["message"]
    tasks = {a.split(":")[0]: t for a, t in (run.tasks or {}).items()}
    assert describe(tasks["codec-beating"]["heartbeat"]["details"])


async def test_encode_errors_needs_codecs(redis_url: str) -> None:
    with pytest.raises(aiki.ConfigurationError, match="encode_errors=True needs codecs="):
        async with aiki.client(redis_url=redis_url, encode_errors=True):
            pass
