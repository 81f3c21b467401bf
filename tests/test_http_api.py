"""``aiki.engine.HttpApi``, the SDK's one HTTP client of the server's API, against a real
server: typed routes, the long-poll wait, and errors mapped at the boundary (the server's
answer kept as the mapped error's ``__cause__``). Then the CLI's wording of those errors,
which must stay what ``aiki`` printed before it used HttpApi."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio
from _helpers import running_worker, wait_until

import aiki
from aiki.engine import HttpApi
from aiki_server import ServerHandle, Settings, serve_server
from aiki_server.cli._api import error_message

api_flow = aiki.workflow("http-api-test")


@api_flow.v("1")
async def api_flow_v1(ctx: aiki.WorkflowContext, payload: dict[str, Any]) -> str:
    await ctx.sleep("nap", float(payload.get("nap", 0)))
    return payload["text"].upper()


@pytest.fixture
async def server(redis_url: str) -> AsyncIterator[ServerHandle]:
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(
            serve_server, Settings(redis_url=redis_url, host="127.0.0.1", port=0)
        )
        yield handle
        nursery.cancel_scope.cancel()


async def test_routes_and_waits(client: aiki.Client, server: ServerHandle) -> None:
    async with running_worker(client, api_flow), HttpApi(server.base_url + "/") as api:
        assert api.base_url == server.base_url
        started = await api.start("http-api-test", "1", json.dumps({"text": "hi"}))
        run_id = started["id"]
        ended = await api.wait(run_id, timeout=20)
        assert (ended["status"], ended["result"]) == ("completed", "HI")
        assert (await api.get_run(run_id))["tasks"] == ended["tasks"]
        page = await api.list_runs(workflow="http-api-test", status="completed", limit=5)
        assert [r["id"] for r in page["runs"]] == [run_id]
        workflows = await api.list_workflows()
        assert {"workflow": "http-api-test", "version": "1"}.items() <= workflows["workflows"][
            0
        ].items()
        assert len((await api.list_workers())["workers"]) == 1

        sleeper = (await api.start("http-api-test", "1", '{"text": "z", "nap": 3600}'))["id"]
        # A wait that runs out returns the run as last seen; the caller reads its status.
        assert (await api.wait(sleeper, timeout=0.2))["status"] in ("queued", "sleeping")

        async def sleeping() -> bool:
            return (await api.get_run(sleeper))["status"] == "sleeping"

        await wait_until(sleeping, what="sleeping")
        assert (await api.wakeup(sleeper, "nap"))["result"] == 1
        assert (await api.wait(sleeper, timeout=20))["result"] == "Z"

        schedule = {"id": "s1", "workflow": "http-api-test", "version": "1", "every": 3600}
        schedule["payload"] = {"text": "s"}
        assert (await api.create_schedule(schedule))["next_at"] > 0
        assert [s["id"] for s in (await api.list_schedules())["schedules"]] == ["s1"]
        assert (await api.delete_schedule("s1"))["deleted"] is True


async def test_errors_are_mapped(client: aiki.Client, server: ServerHandle) -> None:
    async with running_worker(client, api_flow), HttpApi(server.base_url) as api:
        with pytest.raises(aiki.RunNotFound) as missing:
            await api.get_run("no/such?run")  # quoted: still the run route
        assert isinstance(missing.value.__cause__, aiki.ServerError)
        assert missing.value.__cause__.status_code == 404
        with pytest.raises(aiki.RunNotFound):
            await api.wait("no-such-run", timeout=1)
        with pytest.raises(aiki.RunNotFound):
            await api.cancel("no-such-run")

        with pytest.raises(aiki.UnknownWorkflow) as unknown:
            await api.start("http-api-test", "9", "{}")
        assert (unknown.value.workflow, unknown.value.version) == ("http-api-test", "9")
        assert "known versions: 1" in str(unknown.value.__cause__)

        first = await api.start("http-api-test", "1", '{"text": "a"}', reference_id="r")
        with pytest.raises(aiki.RunConflict) as conflict:
            await api.start("http-api-test", "1", '{"text": "b"}', reference_id="r")
        assert conflict.value.reference_id == "r"
        await api.wait(first["id"], timeout=20)
        with pytest.raises(aiki.InvalidState):
            await api.pause(first["id"])  # it has ended

        with pytest.raises(aiki.ServerError) as no_schedule:
            await api.delete_schedule("nope")
        assert no_schedule.value.status_code == 404
        with pytest.raises(aiki.ServerError) as invalid:
            await api.list_runs(status="bogus")
        assert invalid.value.status_code == 422


async def test_unreachable_server_is_connection_failed() -> None:
    async with HttpApi("127.0.0.1:9", timeout=2.0) as api:
        assert api.base_url == "http://127.0.0.1:9"
        with pytest.raises(aiki.ConnectionFailed) as failed:
            await api.list_runs()
    assert isinstance(failed.value.__cause__, httpx.TransportError)


async def test_an_http_client_given_is_not_closed(server: ServerHandle) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        async with HttpApi(server.base_url, http=http) as api:
            assert (await api.list_runs())["runs"] == []
        assert not http.is_closed


def _answer(status: int, body: object) -> aiki.AikiError:
    """What HttpApi raises for an answer (a mapped error or the ServerError itself)."""
    if status in (404, 409):
        mapped = aiki.RunNotFound("r1") if status == 404 else aiki.InvalidState("x")
        mapped.__cause__ = aiki.ServerError(status, body)
        return mapped
    return aiki.ServerError(status, body)


def test_cli_wording_of_errors() -> None:
    url = "http://h:1"
    api_error = {"error": {"type": "t", "message": "m " * 150}}
    assert error_message(_answer(500, api_error), url) == "server answered 500: " + "m " * 150
    long_text = {"error": {"message": "x" * 500}}  # not JSON: the start of the text
    assert error_message(_answer(502, long_text), url) == "server answered 502: " + "x" * 200
    assert error_message(_answer(503, {"error": {"message": ""}}), url) == (
        "server answered 503: Service Unavailable"
    )
    for status in (404, 409):
        said = {"error": {"type": "t", "message": "no run with id 'r1'"}}
        assert error_message(_answer(status, said), url) == "no run with id 'r1'"
    not_json = aiki.ServerError(200, {"error": {"message": f"the server at {url} did not"}})
    assert error_message(not_json, url) == f"the server at {url} did not"

    failed = aiki.ConnectionFailed("Aiki server at ...")
    failed.__cause__ = httpx.ConnectError("all attempts failed")
    reached = error_message(failed, url)
    assert reached == f"cannot reach the Aiki server at {url}: all attempts failed"
    failed.__cause__ = httpx.ReadTimeout("")
    assert error_message(failed, url) == f"cannot reach the Aiki server at {url}: ReadTimeout"
