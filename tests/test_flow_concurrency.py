"""Concurrency keys (``aiki.Concurrency``, docs/flow-control.md), with one in-process
worker: admission, waiting, hand-over on every way a run ends, and bad configuration.

The workflows here wait for an event named ``go`` so that a test decides when a run
ends: a run that parks (awaiting_event) still holds its key's slot.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from _helpers import wait_until
from _resp import acommand
from test_dashboard_html import BROWSER
from test_metrics import scrape, value
from test_server import HANG_GUARD, running_server

import aiki
from aiki._schedules import fire_due_schedules, trigger_schedule
from aiki._store import Keys, shard_of
from aiki_server import Settings
from aiki_server.cli._format import concurrency_rows

per_customer = aiki.workflow("conc-customer")


@per_customer.v("1", concurrency=aiki.Concurrency(1, key=lambda p: p["customer"]))
async def per_customer_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    if payload.get("fail"):
        raise aiki.NonRetryableError("asked to fail")
    if payload.get("wait", True):
        await ctx.wait_for_event("go")
    return payload["n"]


capped = aiki.workflow("conc-global")


@capped.v("1", concurrency=aiki.Concurrency(2))
async def capped_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    await ctx.wait_for_event("go")
    return payload["n"]


unlimited = aiki.workflow("conc-none")


@unlimited.v("1")
async def unlimited_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    return "plain"


async def _status_is(handle: aiki.RunHandle, status: str) -> None:
    async def reached() -> bool:
        return await handle.status() == status

    await wait_until(reached, what=f"run {handle.id} is {status}")


async def _redis(redis_url: str, *args: str) -> Any:
    return await acommand(urlparse(redis_url).port, *args)


async def _holders(redis_url: str, handle: aiki.RunHandle, key: str) -> set[str]:
    k = Keys()
    raw = await _redis(
        redis_url,
        "SMEMBERS",
        k.concurrency(handle.workflow, handle.version, key, shard_of(handle.id)),
    )
    return {m.decode() if isinstance(m, bytes) else m for m in raw}


async def test_one_run_per_key_the_next_admitted_when_it_ends(
    client: aiki.Client, running_worker: Any, redis_url: str
) -> None:
    async with running_worker(client, per_customer):
        a1 = await per_customer_v1.start(client, {"customer": "a", "n": 1})
        a2 = await per_customer_v1.start(client, {"customer": "a", "n": 2})
        b1 = await per_customer_v1.start(client, {"customer": "b", "n": 3})
        # Parked, a run still holds its key: a2 waits; b has its own key.
        await _status_is(a1, "awaiting_event")
        await _status_is(b1, "awaiting_event")
        assert await a2.status() == "awaiting_concurrency"
        record = await a2.describe()
        assert (record.concurrency_key, record.concurrency_limit) == ("a", 1)
        assert record.to_json()["concurrency_key"] == "a"
        listed = await client.list_runs(status="awaiting_concurrency")
        assert [r.id for r in listed.runs] == [a2.id]
        assert await _holders(redis_url, a1, "a") == {a1.id}

        await a1.send_event("go")
        assert await a1.wait_for_completion(timeout=20) == 1
        await _status_is(a2, "awaiting_event")  # handed over when a1 ended
        assert await _holders(redis_url, a2, "a") == {a2.id}
        await a2.send_event("go")
        await b1.send_event("go")
        assert await a2.wait_for_completion(timeout=20) == 2
        assert await b1.wait_for_completion(timeout=20) == 3
    assert await _holders(redis_url, a1, "a") == set()
    assert await _holders(redis_url, b1, "b") == set()


async def test_the_start_key_wins_over_the_key_function(
    client: aiki.Client, running_worker: Any
) -> None:
    async with running_worker(client, per_customer):
        a1 = await per_customer_v1.start(client, {"customer": "a", "n": 1})
        other = await per_customer_v1.start(
            client, {"customer": "a", "n": 2}, concurrency_key="elsewhere"
        )
        await _status_is(a1, "awaiting_event")
        await _status_is(other, "awaiting_event")  # its own key: not behind a1
        assert (await other.describe()).concurrency_key == "elsewhere"
        for h in (a1, other):
            await h.send_event("go")
            await h.wait_for_completion(timeout=20)


async def test_every_end_releases_the_slot(
    client: aiki.Client, running_worker: Any, redis_url: str
) -> None:
    async with running_worker(client, per_customer):
        holder = await per_customer_v1.start(client, {"customer": "c", "n": 1})
        await _status_is(holder, "awaiting_event")
        cancelled_waiter = await per_customer_v1.start(client, {"customer": "c", "n": 2})
        failing = await per_customer_v1.start(client, {"customer": "c", "n": 3, "fail": True})
        last = await per_customer_v1.start(client, {"customer": "c", "n": 4, "wait": False})
        for h in (cancelled_waiter, failing, last):
            assert await h.status() == "awaiting_concurrency"
        # A waiting run that is cancelled leaves the line.
        await cancelled_waiter.cancel("not needed")
        k = Keys()
        waiting = k.concurrency_waiting("conc-customer", "1", "c", shard_of(holder.id))
        assert await _redis(redis_url, "LLEN", waiting) == 2
        # Cancelling the holder hands its slot on; the next one fails, which hands it on.
        await holder.cancel("stop")
        with pytest.raises(aiki.WorkflowFailed):
            await failing.wait_for_completion(timeout=20)
        assert await last.wait_for_completion(timeout=20) == 4
        assert await _holders(redis_url, holder, "c") == set()
        assert await _redis(redis_url, "EXISTS", waiting) == 0


async def test_a_retried_run_takes_a_slot_again(
    client: aiki.Client, running_worker: Any, redis_url: str
) -> None:
    async with running_worker(client, per_customer):
        failed = await per_customer_v1.start(client, {"customer": "r", "n": 1, "fail": True})
        with pytest.raises(aiki.WorkflowFailed):
            await failed.wait_for_completion(timeout=20)
        holder = await per_customer_v1.start(client, {"customer": "r", "n": 2})
        await _status_is(holder, "awaiting_event")
        await failed.retry()  # queued, then waits for the key at its take
        await _status_is(failed, "awaiting_concurrency")
        await holder.send_event("go")
        assert await holder.wait_for_completion(timeout=20) == 2
        with pytest.raises(aiki.WorkflowFailed):  # it runs again (and fails again)
            await failed.wait_for_completion(timeout=20)
        assert await _holders(redis_url, holder, "r") == set()


async def test_a_delayed_start_waits_for_its_key_when_it_is_due(
    client: aiki.Client, running_worker: Any
) -> None:
    async with running_worker(client, per_customer):
        holder = await per_customer_v1.start(client, {"customer": "d", "n": 1})
        later = await per_customer_v1.start(
            client, {"customer": "d", "n": 2, "wait": False}, delay=0.2
        )
        assert await later.status() == "scheduled"
        await _status_is(later, "awaiting_concurrency")
        await holder.send_event("go")
        assert await later.wait_for_completion(timeout=20) == 2


async def test_a_global_limit_without_keys(client: aiki.Client, running_worker: Any) -> None:
    async with running_worker(client, capped, max_concurrent_workflow_runs=10):
        handles = await capped_v1.start_many(client, [{"n": n} for n in range(5)])

        async def settled() -> bool:
            statuses = [await h.status() for h in handles]
            return sorted(statuses) == ["awaiting_concurrency"] * 3 + ["awaiting_event"] * 2

        await wait_until(settled, what="2 runs admitted, 3 waiting")
        assert (await handles[0].describe()).concurrency_key is None
        done = 0
        while done < 5:  # end the admitted ones; the waiting ones follow, 2 at a time
            for h in handles:
                if await h.status() == "awaiting_event":
                    await h.send_event("go")
                    await h.wait_for_completion(timeout=20)
                    done += 1
            running = [await h.status() for h in handles]
            assert running.count("awaiting_event") <= 2


async def test_a_version_without_concurrency_is_unchanged(
    client: aiki.Client, running_worker: Any, redis_url: str
) -> None:
    async with running_worker(client, unlimited):
        handle = await unlimited_v1.start(client, {})
        assert await handle.wait_for_completion(timeout=20) == "plain"
    record = await handle.describe()
    assert (record.concurrency_key, record.concurrency_limit) == (None, None)
    fields = await _redis(redis_url, "HKEYS", Keys().run(handle.id))
    assert not [f for f in fields if b"concurrency" in f]


# -- bad configuration ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: aiki.Concurrency(0), "limit"),
        (lambda: aiki.Concurrency(-1), "limit"),
        (lambda: aiki.Concurrency(1.5), "limit"),
        (lambda: aiki.Concurrency(True), "limit"),
        (lambda: aiki.Concurrency("3"), "limit"),
        (lambda: aiki.Concurrency(1, key="customer"), "key"),
        (lambda: aiki.workflow("conc-bad").v("1", concurrency=3), "concurrency"),
    ],
)
def test_bad_concurrency_is_refused_at_definition(make: Any, field: str) -> None:
    with pytest.raises(aiki.ConfigurationError) as refused:
        make()
    assert refused.value.field == field
    assert field in str(refused.value)


def _raise(payload: Any) -> str:
    raise KeyError("customer")


bad_keys = aiki.workflow("conc-bad-keys")


@bad_keys.v("raises", concurrency=aiki.Concurrency(1, key=_raise))
async def raising_v(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    return None


@bad_keys.v("int", concurrency=aiki.Concurrency(1, key=lambda p: 42))
async def int_key_v(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    return None


@bad_keys.v("given", concurrency=aiki.Concurrency(1))
async def given_v(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    return None


@pytest.mark.parametrize(
    ("start", "words"),
    [
        (lambda c: raising_v.start(c, {}), "key function raised KeyError"),
        (lambda c: int_key_v.start(c, {}), "got 42"),
        (lambda c: given_v.start(c, {}, concurrency_key=7), "got 7"),
        (lambda c: given_v.start(c, {}, concurrency_key=""), "non-empty string"),
        (lambda c: given_v.start(c, {}, concurrency_key="x" * 257), "257 characters"),
        (lambda c: unlimited_v1.start(c, {}, concurrency_key="a"), "declares no concurrency"),
        (lambda c: int_key_v.start_many(c, [{}]), "got 42"),
    ],
)
async def test_bad_keys_are_refused_at_start_and_nothing_is_written(
    client: aiki.Client, redis_url: str, start: Any, words: str
) -> None:
    with pytest.raises(aiki.ConfigurationError) as refused:
        await start(client)
    assert refused.value.field == "concurrency_key"
    assert words in str(refused.value)
    assert (await client.list_runs()).runs == []
    assert await _redis(redis_url, "DBSIZE") == 0


async def test_a_waiting_run_is_visible_and_its_wait_is_in_metrics(
    client: aiki.Client, running_worker: Any, redis_url: str
) -> None:
    settings = Settings(redis_url=redis_url, port=0, daemons=False)
    async with (
        running_worker(client, per_customer, id="conc-metrics") as worker,
        running_server(settings) as server,
        httpx.AsyncClient(base_url=server.base_url, timeout=HANG_GUARD) as http,
    ):
        first = await per_customer_v1.start(client, {"customer": "m", "n": 1})
        second = await per_customer_v1.start(client, {"customer": "m", "n": 2, "wait": False})
        await _status_is(first, "awaiting_event")
        await _status_is(second, "awaiting_concurrency")
        waiting = value(
            await scrape(http),
            "aiki_runs_in_progress",
            workflow="conc-customer",
            version="1",
            status="awaiting_concurrency",
        )
        assert waiting == 1
        # Visible in the API, the CLI's `runs show` and the dashboard's run page.
        api = (await http.get(f"/api/v1/runs/{second.id}")).json()
        assert api["status"] == "awaiting_concurrency"
        assert (api["concurrency_key"], api["concurrency_limit"]) == ("m", 1)
        assert concurrency_rows(api) == [("concurrency", "key 'm', limit 1")]
        page = (await http.get(f"/runs/{second.id}", headers=BROWSER)).text
        shown = page[page.index('id="run-concurrency"') :]
        assert "m</span>, limit 1" in shown[:300] and "waiting for a slot" in shown[:300]
        await first.send_event("go")
        assert await second.wait_for_completion(timeout=20) == 2
        waits = worker.concurrency_waits["conc-customer@1"]["m"]
        assert waits[0] == 1 and waits[1] > 0  # one run waited, for some time

        labels = {"worker": "conc-metrics", "workflow": "conc-customer", "version": "1"}

        async def exported() -> bool:
            samples = await scrape(http)  # the worker's entry is written every 2 s
            return value(samples, "aiki_worker_concurrency_waits_total", key="m", **labels) == 1

        await wait_until(exported, what="/metrics shows the wait")
        samples = await scrape(http)
        waited = value(samples, "aiki_worker_concurrency_wait_seconds_total", key="m", **labels)
        assert waited is not None and waited > 0


async def test_http_starts_apply_the_registered_limit(
    client: aiki.Client, running_worker: Any, redis_url: str
) -> None:
    settings = Settings(redis_url=redis_url, port=0, daemons=False)
    async with (
        running_worker(client, per_customer, capped, unlimited),
        running_server(settings) as server,
        httpx.AsyncClient(base_url=server.base_url, timeout=HANG_GUARD) as http,
        aiki.client(base_url=server.base_url) as over_http,
    ):

        async def post(**body: Any) -> httpx.Response:
            return await http.post("/api/v1/runs", json=body)

        keyed = await post(workflow="conc-customer", version="1", payload={"n": 1},
                           concurrency_key="h")  # fmt: skip
        assert keyed.status_code == 201, keyed.text
        run = (await http.get(f"/api/v1/runs/{keyed.json()['id']}")).json()
        assert (run["concurrency_key"], run["concurrency_limit"]) == ("h", 1)
        # The version's keys come from a function the server does not have.
        missing = await post(workflow="conc-customer", version="1", payload={"n": 2})
        assert missing.status_code == 422 and missing.json()["error"]["field"] == (
            "concurrency_key"
        )
        assert "give concurrency_key" in missing.json()["error"]["message"]
        # A version without keys: the version-wide one.
        wide = await post(workflow="conc-global", version="1", payload={"n": 3})
        run = (await http.get(f"/api/v1/runs/{wide.json()['id']}")).json()
        assert (run["concurrency_key"], run["concurrency_limit"]) == (None, 2)
        for bad in ("", 5):
            refused = await post(workflow="conc-global", version="1", concurrency_key=bad)
            assert refused.status_code == 422
            assert refused.json()["error"]["field"] == "concurrency_key"
        refused = await post(workflow="conc-none", version="1", concurrency_key="a")
        assert refused.status_code == 422 and "declares no concurrency" in refused.text
        # A client with only base_url computes the key in its own code and sends it.
        handle = await per_customer_v1.start(over_http, {"customer": "via-http", "n": 4})
        assert (await handle.describe()).concurrency_key == "via-http"
        listed = await client.list_runs(workflow="conc-customer")
        assert len(listed.runs) == 2  # the refused starts wrote nothing
        for h in [keyed.json()["id"], handle.id, wide.json()["id"]]:
            await client.get_handle(h).cancel("done")


async def test_schedules_start_runs_under_the_limit(
    client: aiki.Client, running_worker: Any
) -> None:
    async with running_worker(client, per_customer):
        holder = await per_customer_v1.start(client, {"customer": "sched", "n": 1})
        await _status_is(holder, "awaiting_event")
        schedule = await per_customer_v1.schedule(
            client, "conc-every-hour", {"customer": "sched", "n": 2, "wait": False}, every=3600
        )
        assert schedule.concurrency_key == "sched"  # the key function's, computed here
        triggered = client.get_handle(await trigger_schedule(client.store, "conc-every-hour"))
        assert await fire_due_schedules(client.store, now_ms=2**42) == 1  # "an hour later"
        fired_ids = [r.id for r in (await client.list_runs(status="awaiting_concurrency")).runs]
        assert triggered.id in fired_ids and len(fired_ids) == 2
        assert (await triggered.describe()).concurrency_key == "sched"
        await holder.send_event("go")
        for run_id in fired_ids:
            assert await client.get_handle(run_id).wait_for_completion(timeout=20) == 2
        with pytest.raises(aiki.ConfigurationError) as refused:
            await unlimited_v1.schedule(client, "s", {}, every=60, concurrency_key="a")
        assert refused.value.field == "concurrency_key"


async def test_a_key_with_a_long_line_does_not_delay_another_key(
    client: aiki.Client, running_worker: Any
) -> None:
    async with running_worker(client, per_customer, max_concurrent_workflow_runs=10):
        crowd = await per_customer_v1.start_many(
            client, [{"customer": "crowded", "n": i, "wait": False} for i in range(300)]
        )
        alone = await per_customer_v1.start(client, {"customer": "alone", "n": -1, "wait": False})
        assert await alone.wait_for_completion(timeout=20) == -1
        alone_ended = (await alone.describe()).ended_at
        assert alone_ended is not None
        # Only admitted runs reach the stream: "alone" went past the crowd's line. Counted
        # by end times (Redis's clock), not by statuses read afterwards while the crowd
        # goes on completing one by one.
        ended = [(await h.describe()).ended_at for h in crowd]
        done = sum(1 for at in ended if at is not None and at < alone_ended)
        assert done < 30, f"{done} of the crowded key's runs went first"
        for h in crowd:
            await h.wait_for_completion(timeout=60)


async def test_a_waiting_run_holds_no_worker_slot(
    client: aiki.Client, running_worker: Any
) -> None:
    async with running_worker(client, per_customer, unlimited, max_concurrent_workflow_runs=1):
        holder = await per_customer_v1.start(client, {"customer": "s", "n": 1})
        await _status_is(holder, "awaiting_event")
        waiter = await per_customer_v1.start(client, {"customer": "s", "n": 2})
        assert await waiter.status() == "awaiting_concurrency"
        # The one slot is free: another workflow runs meanwhile.
        assert await (await unlimited_v1.start(client, {})).wait_for_completion(20) == "plain"
        assert await waiter.status() == "awaiting_concurrency"
        await holder.cancel("done")
        await _status_is(waiter, "awaiting_event")
        await waiter.cancel("done")


async def test_a_paused_waiting_run_is_passed_over_and_lines_up_again_when_resumed(
    client: aiki.Client, running_worker: Any, redis_url: str
) -> None:
    async with running_worker(client, per_customer):
        holder = await per_customer_v1.start(client, {"customer": "p", "n": 1})
        await _status_is(holder, "awaiting_event")
        paused = await per_customer_v1.start(client, {"customer": "p", "n": 2, "wait": False})
        later = await per_customer_v1.start(client, {"customer": "p", "n": 3})
        assert await paused.pause() == "paused"
        await holder.send_event("go")
        await _status_is(later, "awaiting_event")  # the paused one was passed over
        assert await paused.status() == "paused"
        assert await paused.resume() == "queued"
        await _status_is(paused, "awaiting_concurrency")  # later holds the key now
        await later.send_event("go")
        assert await paused.wait_for_completion(timeout=20) == 2
        assert await _holders(redis_url, holder, "p") == set()
