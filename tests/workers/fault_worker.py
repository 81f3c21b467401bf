"""Workflows for the fault tests, and a worker process that runs them.

Run as a worker::

    python tests/workers/fault_worker.py redis://127.0.0.1:PORT WORKER_ID \
        [--concurrency N] [--claim SECONDS] [--heartbeat SECONDS] [--block SECONDS]

It prints ``ready`` once subscribed, logs (INFO) to stderr, and runs until killed (or
SIGTERM/SIGINT: then it stops gracefully). ``WORKER_NAME`` in the environment (set by
``workers.processes``) names the process in task results, so a test can tell which
worker recorded what.

Side effects go to the test's Redis with raw RESP (``_resp``), outside the SDK, so they
are counted across processes, including ones that are SIGKILLed:

* ``soak``: five tasks; each execution RPUSHes a unique token to ``execs:<run>:<step>``
  and its idempotency key to ``keys:<run>:<step>`` when it starts, and INCRs
  ``count:<run>:<step>`` just before returning a result that carries its token.
* ``stale``: tasks and workflow code that hold on the worker named in the payload's
  ``hold`` until the key ``release:<run>`` exists (so a test can SIGSTOP that worker
  inside a task, or between its last task and the run's finish).
* ``relay``: pure tasks and a durable sleep, for Redis and server restarts (its tasks
  touch nothing outside the SDK, so a Redis outage cannot fail them).
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import signal
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

if __name__ == "__main__":  # make `_resp` (in tests/) importable when run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import trio
from _resp import _Parser, encode

import aiki

# Set by the worker's __main__ (or by a test running these workflows in-process).
redis_port: int | None = None


def worker_name() -> str:
    return os.environ.get("WORKER_NAME", "in-process")


async def pipeline(*commands: list[Any]) -> list[Any]:
    """Send several commands on one fresh connection; their replies, in order."""
    assert redis_port is not None, "fault_worker.redis_port is not set"
    parser = _Parser()
    stream = await trio.open_tcp_stream("127.0.0.1", redis_port)
    async with stream:
        await stream.send_all(b"".join(encode(*c) for c in commands))
        replies: list[Any] = []
        while len(replies) < len(commands):
            ok, reply = parser.take()
            if ok:
                replies.append(reply)
                continue
            chunk = await stream.receive_some(65536)
            if not chunk:
                raise ConnectionError("Redis closed the connection")
            parser.feed(chunk)
    return replies


async def wait_for_key(key: str) -> None:
    # Polls Redis: the release comes from the test process, no trio.Event can carry it.
    while not (await pipeline(["EXISTS", key]))[0]:  # noqa: ASYNC110
        await trio.sleep(0.02)


# -- soak ---------------------------------------------------------------------------------

SOAK_STEPS = 5


def soak_value(x: int, step: int) -> int:
    return (x * 3 + step) % 1_000_003


def soak_expected(x: int) -> list[int]:
    values = []
    for step in range(1, SOAK_STEPS + 1):
        x = soak_value(x, step)
        values.append(x)
    return values


@aiki.task("soak-step")
async def soak_step(payload: Any) -> Any:
    ctx = aiki.task_context()
    base = f"{ctx.run_id}:{payload['step']}"
    token = f"{worker_name()}:{uuid.uuid4().hex}"
    await pipeline(
        ["RPUSH", f"execs:{base}", token], ["RPUSH", f"keys:{base}", ctx.idempotency_key]
    )
    await trio.sleep(random.uniform(0.05, 0.25))
    await pipeline(["INCR", f"count:{base}"])
    return {"value": soak_value(payload["x"], payload["step"]), "token": token}


soak = aiki.workflow("soak")


@soak.v("1")
async def soak_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    x = payload["x"]
    values = []
    for step in range(1, SOAK_STEPS + 1):
        out = await soak_step.start(ctx, {"x": x, "step": step})
        x = out["value"]
        values.append(x)
    return {"values": values}


# -- stale executors ----------------------------------------------------------------------


@aiki.task("who")
async def who(payload: Any) -> Any:
    """Returns the name of the worker that executed it; holds on ``payload['hold']``."""
    run_id = aiki.task_context().run_id
    await pipeline(["RPUSH", f"entered:{run_id}", worker_name()])
    if worker_name() == payload["hold"]:
        await wait_for_key(f"release:{run_id}")
    return worker_name()


stale = aiki.workflow("stale")


@stale.v("in-task")
async def stale_in_task(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    """The held worker waits INSIDE the task: its late write is the task's record."""
    task = await who.start(ctx, {"hold": payload["hold"]})
    return {"task": task, "finisher": worker_name()}


@stale.v("before-finish")
async def stale_before_finish(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    """The held worker waits after its only task was recorded: its late write is the
    run's finish."""
    task = await who.start(ctx, {"hold": None})
    if worker_name() == payload["hold"]:
        await pipeline(["RPUSH", f"held:{ctx.run_id}", worker_name()])
        await wait_for_key(f"release:{ctx.run_id}")
    return {"task": task, "finisher": worker_name()}


# -- relay (restarts) ---------------------------------------------------------------------


@aiki.task("relay-step")
async def relay_step(payload: Any) -> Any:
    await trio.sleep(payload.get("work", 0.2))
    return payload["x"] * 2 + payload["i"]


relay = aiki.workflow("relay")


@relay.v("1")
async def relay_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    x = payload["x"]
    for i in range(3):
        x = await relay_step.start(ctx, {"x": x, "i": i, "work": payload.get("work", 0.2)})
        if i == 0:
            await ctx.sleep("between", payload.get("nap", 0.3))
    return {"n": payload["n"], "x": x}


def relay_expected(n: int, x: int) -> dict[str, int]:
    for i in range(3):
        x = x * 2 + i
    return {"n": n, "x": x}


# -- the worker process -------------------------------------------------------------------


async def serve(args: argparse.Namespace) -> None:
    global redis_port
    redis_port = urlparse(args.url).port
    async with aiki.client(redis_url=args.url) as client:
        worker = aiki.worker(
            client,
            id=args.worker_id,
            max_concurrent_workflow_runs=args.concurrency,
            subscriber=aiki.RedisStreams(
                claim_min_idle_time=args.claim,
                block_time=args.block,
                heartbeat_interval=args.heartbeat,
            ),
            shutdown_grace=0.2,
        )
        for wf in (soak, stale, relay):
            worker.workflow_registry.add(wf)
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.start)
            print("ready", flush=True)
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    await worker.stop()
                    break


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("worker_id")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--claim", type=float, default=1.0)
    parser.add_argument("--heartbeat", type=float, default=None)
    parser.add_argument("--block", type=float, default=0.2)
    args = parser.parse_args()
    os.environ.setdefault("WORKER_NAME", args.worker_id)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s",
    )
    trio.run(serve, args)


if __name__ == "__main__":
    main()
