"""Search: 100,000 runs, each with a search attribute (``customer``, 10 runs per value),
then listing the runs of one value: the ~10 runs of a customer, as an operator asks.

Populating: every run is created, taken, given its attribute and finished by the
engine's own scripts (``start_run``, ``take_run``, ``set_attributes``, ``finish_run``:
the same index writes as a worker's), pipelined 1,000 runs a round trip, without
workers, so that 100,000 runs take seconds rather than minutes. Measured: 200 listings
``client.list_runs(attributes={"customer": ...})`` of random customers, one after
another (each one ``find_runs`` script per shard, one round trip here); and, for
scale, the first page (50) of every completed run, and of a workflow AND a status.
Checked, not timed: every listing's page is exactly the customer's runs, newest first,
and paging through one customer 3 runs at a time lists each run once.
"""

from __future__ import annotations

import random
import statistics
import time
from typing import Any

from aiki._store._records import new_run_id
from aiki._store._scripts import FinishRun, SetAttributes, StartRun, TakeRun

from .._bench import Bench, BenchmarkError

NAME = "search"
WORKFLOW, VERSION = "bench-search", "1"
PER_VALUE = 10
CHUNK = 1000


async def _populate(bench: Bench, n: int) -> dict[str, set[str]]:
    store = bench.client.store
    k = store.keys
    await store.create_groups([(WORKFLOW, VERSION)], range(1))
    by_customer: dict[str, set[str]] = {}
    for start in range(0, n, CHUNK):
        ids = [new_run_id(0) for _ in range(min(CHUNK, n - start))]
        commands: list[list[Any]] = []
        for i, run_id in enumerate(ids, start):
            customer = f"c-{i // PER_VALUE}"
            by_customer.setdefault(customer, set()).add(run_id)
            calls: list[Any] = [
                StartRun(
                    run=k.run(run_id), stream=k.stream(WORKFLOW, VERSION), runs=k.runs_index(),
                    reference=k.reference(WORKFLOW, "", 0), children=k.children(run_id),
                    timers=k.timers(), id=run_id, workflow=WORKFLOW, version=VERSION,
                    payload="{}", reference_id="", on_conflict="error", parent_id="",
                    start_at="", timeout_ms="", sensitive="", trace="",
                    concurrency_key="", concurrency_limit="", digests="", priority="",
                ),
                TakeRun(stream=k.stream(WORKFLOW, VERSION), worker="bench", message="0-1",
                        id=run_id),
                SetAttributes(run=k.run(run_id), revision=1, id=run_id, max_attributes=32,
                              changes=["customer", customer]),
                FinishRun(
                    run=k.run(run_id), stream=k.stream(WORKFLOW, VERSION),
                    tasks=k.tasks(run_id), revision=1, status="completed", field="result",
                    value="null", message="0-1", group="aiki-workers",
                    channel=k.run_ended_channel, id=run_id, base=k.base(0), address="",
                    record="",
                ),
            ]  # fmt: skip
            commands += [[str(a) for a in c.evalsha()] for c in calls]
        if start == 0:
            for c in calls:
                await store.redis.load_script(type(c).LUA)
        replies = await store.redis.batch(commands)
        errors = [r for r in replies if isinstance(r, BaseException)]
        if errors:
            raise BenchmarkError(f"populating failed: {errors[0]!r}")
    return by_customer


def _ms(samples: list[float]) -> dict[str, float]:
    q = statistics.quantiles(samples, n=100, method="inclusive")
    return {
        "p50_ms": round(q[49], 3),
        "p99_ms": round(q[98], 3),
        "max_ms": round(max(samples), 3),
    }


async def run(bench: Bench) -> dict[str, Any]:
    n = bench.sizes.search_runs
    bench.flush()
    t0 = time.perf_counter()
    by_customer = await _populate(bench, n)
    populate_s = time.perf_counter() - t0
    client = bench.client
    customers = sorted(by_customer)
    rng = random.Random(19)
    samples: list[float] = []
    for _ in range(200):
        customer = rng.choice(customers)
        t = time.perf_counter()
        page = await client.list_runs(attributes={"customer": customer})
        samples.append((time.perf_counter() - t) * 1000)
        got = [r.id for r in page.runs]
        order = [(r.created_at, r.id) for r in page.runs]
        if set(got) != by_customer[customer] or order != sorted(order, reverse=True):
            raise BenchmarkError(f"listing customer {customer} gave {got}")
    # stable paging through one customer, 3 a page
    customer = customers[len(customers) // 2]
    seen: list[str] = []
    cursor = None
    while True:
        page = await client.list_runs(attributes={"customer": customer}, limit=3, cursor=cursor)
        seen += [r.id for r in page.runs]
        cursor = page.next_cursor
        if cursor is None:
            break
    if sorted(seen) != sorted(by_customer[customer]):
        raise BenchmarkError(f"paging customer {customer} listed {seen}")
    broad: dict[str, list[float]] = {"completed_page": [], "workflow_and_status_page": []}
    for _ in range(20):
        t = time.perf_counter()
        first = await client.list_runs(status="completed", limit=50)
        broad["completed_page"].append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        await client.list_runs(workflow=WORKFLOW, status="completed", limit=50)
        broad["workflow_and_status_page"].append((time.perf_counter() - t) * 1000)
        if len(first.runs) != 50:
            raise BenchmarkError("the first page of completed runs is not full")
    return {
        "method": f"{n} runs with attribute customer ({PER_VALUE} runs a value), written by "
        "the engine's scripts; 200 client.list_runs(attributes=...) of random customers over "
        "Redis (one find_runs script), each page checked; paging 3 a page checked",
        "runs": n,
        "populate_s": round(populate_s, 2),
        "by_attribute": {"queries": len(samples), "matches": PER_VALUE, **_ms(samples)},
        **{name: _ms(values) for name, values in broad.items()},
    }
