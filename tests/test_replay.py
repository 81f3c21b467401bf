"""Issue #20: export a run's history (HTTP API) and replay it with ``aiki.testing.replay``,
with no Redis running; and the detection rules (parallel blocks, skipped steps, code that
swallows the error, histories recorded before steps carried ``par``)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from _helpers import wait_until

import aiki
from aiki.testing import open_test_environment, replay
from aiki_server import Settings, serve_server

executed: list[str] = []


@aiki.task("r-double")
async def double(x: int) -> int:
    executed.append("double")
    return 2 * x


@aiki.task("r-price")
async def price(item: str) -> float:
    executed.append(f"price:{item}")
    await trio.sleep(0.01 * len(item))  # branches overlap and finish in another order
    return float(len(item))


@aiki.task("r-total")
async def total(prices: list[float]) -> float:
    executed.append("total")
    return sum(prices)


ITEMS = ["fig", "apple", "kiwi", "pear"]


def build(change: str = "") -> aiki.WorkflowVersion:
    """``replay-flow@1`` as deployed (``change=""``) or as changed code."""
    flow = aiki.workflow("replay-flow")

    @flow.v("1")
    async def run(ctx: aiki.WorkflowContext, payload: Any) -> Any:
        x = payload["x"]
        if change == "input":
            x += 1
        d = await double.start(ctx, x)
        await ctx.sleep("breather", 0.2)
        prices: dict[str, float] = {}

        async def one(item: str) -> None:
            prices[item] = await price.start(ctx, item)

        items = ITEMS + ["plum"] if change == "extra-branch" else ITEMS
        async with trio.open_nursery() as nursery:
            for item in items:
                nursery.start_soon(one, item)
        await ctx.sleep("after", 0.1)  # a worker's replay goes through the block above
        if change == "swallow":
            try:
                await double.start(ctx, 99)  # not what the run recorded here
            except BaseException:  # noqa: BLE001 - the point: it cannot hide the error
                pass
        if change == "skip-total":
            return {"d": d}
        t = await total.start(ctx, [prices[i] for i in ITEMS])
        if change == "extra-step":
            await double.start(ctx, 0)
        return {"d": d, "total": t}

    return run


def _http_server(redis_url: str, *, task_status: Any) -> Any:
    settings = Settings(redis_url=redis_url, host="127.0.0.1", port=0, daemons=False)
    return serve_server(settings, task_status=task_status)


@pytest.fixture(scope="module")
def history() -> dict[str, Any]:
    """A completed run of ``build()``, exported through ``GET /runs/{id}/history``; the
    environment (Redis included) is gone when the tests use it."""

    async def record() -> dict[str, Any]:
        async with open_test_environment(build(), http_server=_http_server) as env:
            handle = await build().start(env.client, {"x": 5})
            assert await handle.wait_for_completion(timeout=30) == {"d": 10, "total": 16.0}
            async with httpx.AsyncClient(base_url=str(env.base_url)) as http:
                response = await http.get(f"/api/v1/runs/{handle.id}/history")
                assert response.status_code == 200
                missing = await http.get("/api/v1/runs/00deadbeef/history")
                assert missing.status_code == 404
            redis = env.redis_server
        assert not redis.running  # no Redis from here on
        data: dict[str, Any] = response.json()
        return data

    return trio.run(record)


def test_history_document_has_the_runs_steps_in_order(history: dict[str, Any]) -> None:
    assert history["format"] == "aiki.history/1"
    assert history["run"]["status"] == "completed"
    steps = sorted(history["tasks"].values(), key=lambda r: r["seq"])
    kinds = [r.get("task") or r["kind"] for r in steps]
    assert kinds[:2] == ["r-double", "sleep"] and kinds[-1] == "r-total"
    assert sorted(kinds[2:-2]) == ["r-price"] * 4 and kinds[-2] == "sleep"
    assert [r["par"] for r in steps] == [0, 0, 1, 1, 1, 1, 0, 0]


async def test_replay_with_the_same_code_passes_and_runs_nothing(
    history: dict[str, Any], tmp_path: Path
) -> None:
    executed.clear()
    path = tmp_path / "run.json"
    path.write_text(json.dumps(history))
    # Many times: trio starts the nursery's branches in varying order.
    for _ in range(30):
        assert await replay(build(), history) == {"d": 10, "total": 16.0}
    assert await replay(build(), path) == {"d": 10, "total": 16.0}
    assert await replay(build(), json.dumps(history)) == {"d": 10, "total": 16.0}
    assert executed == []


@pytest.mark.parametrize(
    ("change", "position", "recorded", "requested"),
    [
        ("input", 0, "task 'r-double' (input", "task 'r-double' (input"),
        # A branch the history lacks is one that had not been recorded: only a completed
        # run's history shows it is new (at whatever place trio started it).
        ("extra-branch", None, "?", "task 'r-price'"),
        ("swallow", 7, "task 'r-total'", "task 'r-double'"),
        ("skip-total", 7, "task 'r-total'", None),
        ("extra-step", 8, None, "task 'r-double'"),
    ],
)
async def test_replay_with_changed_code_raises_naming_both_steps(
    history: dict[str, Any],
    change: str,
    position: int | None,
    recorded: str | None,
    requested: str | None,
) -> None:
    executed.clear()
    with pytest.raises(aiki.NonDeterminismError) as caught:
        await replay(build(change), history)
    error = caught.value
    if position is None:
        position = error.position
        assert 2 <= position <= 6, str(error)
    assert error.position == position, str(error)
    if recorded == "?":  # nothing more, or the step after the block: as trio ordered it
        assert error.recorded in (None, "sleep 'after'"), str(error)
    elif recorded is None:
        assert error.recorded is None
    else:
        assert error.recorded is not None and error.recorded.startswith(recorded)
    if requested is None:
        assert error.requested is None
    else:
        assert error.requested is not None and error.requested.startswith(requested)
    assert f"step {position + 1}" in str(error)
    assert executed == []


async def test_history_recorded_before_par_is_not_checked(history: dict[str, Any]) -> None:
    old = copy.deepcopy(history)
    for record in old["tasks"].values():
        del record["par"]
    # The changed input gives another address: the replay stops at that new step
    # (a completed run never asked for it), but no order check is made.
    with pytest.raises(aiki.NonDeterminismError) as caught:
        await replay(build("input"), old)
    assert caught.value.recorded is None


async def test_replay_of_a_run_in_flight_stops_at_its_end(history: dict[str, Any]) -> None:
    in_flight = copy.deepcopy(history)
    in_flight["run"]["status"] = "sleeping"
    for address, record in list(in_flight["tasks"].items()):
        if record["seq"] > 1:  # the run is asleep at "breather"
            del in_flight["tasks"][address]
        elif record.get("kind") == "sleep":
            record["status"] = "sleeping"
    assert await replay(build(), in_flight) is None
    with pytest.raises(aiki.NonDeterminismError):
        await replay(build("input"), in_flight)


async def test_bad_history_is_refused_with_a_clear_error() -> None:
    with pytest.raises(aiki.ConfigurationError, match="format"):
        await replay(build(), {"format": "other", "run": {}, "tasks": {}})
    with pytest.raises(aiki.ConfigurationError, match="not JSON"):
        await replay(build(), "{")


async def test_parallel_branches_replay_in_any_order_on_a_worker() -> None:
    """Runs park after their nursery block (sleep "after"), then replay it on a worker:
    no false NonDeterminismError whatever order trio starts the branches in."""
    async with open_test_environment(build()) as env:
        handles = [await build().start(env.client, {"x": n}) for n in range(6)]
        for n, handle in enumerate(handles):
            assert await handle.wait_for_completion(timeout=30) == {"d": 2 * n, "total": 16.0}

        async def all_done() -> bool:
            return all([await h.status() == "completed" for h in handles])

        await wait_until(all_done, what="runs completed")


async def test_replay_reads_a_path_given_as_a_string(
    history: dict[str, Any], tmp_path: Path
) -> None:
    """What ``aiki runs export --help`` shows: ``replay(version, "run.json")`` (a str
    used to be taken as JSON text only: "history is not JSON")."""
    path = tmp_path / "run.json"
    path.write_text(json.dumps(history))
    assert await replay(build(), str(path)) == {"d": 10, "total": 16.0}
    with pytest.raises(FileNotFoundError):
        await replay(build(), str(tmp_path / "missing.json"))


async def test_replay_refuses_a_history_of_another_workflow_or_version(
    history: dict[str, Any],
) -> None:
    """Used to replay anyway: a false NonDeterminismError, or a pass when the steps
    happened to fit."""
    other = aiki.workflow("replay-flow")
    with pytest.raises(aiki.ConfigurationError, match="replay-flow.*'1'.*'2'") as refused:
        await replay(other.v("2")(build().fn), history)
    assert refused.value.field == "run.version"
    renamed = copy.deepcopy(history)
    renamed["run"]["workflow"] = "billing"
    with pytest.raises(aiki.ConfigurationError, match="billing") as refused:
        await replay(build(), renamed)
    assert refused.value.field == "run.workflow"
    with pytest.raises(TypeError, match=r"@workflow.v"):
        await replay(build().workflow, history)  # type: ignore[arg-type]
