"""Workflows for ``aiki worker procs_flows --processes N`` (tests/test_cli_processes.py).

The children get the Redis URL in ``AIKI_REDIS_URL`` (from their supervisor); the side
effects of the ``soak`` workflow (``workers.fault_worker``: every execution of a task
counted in Redis, outside the SDK) go to that Redis. Each process names itself
``pid<PID>`` in those records (``WORKER_NAME``), so a test can tell which process did what.

``hold``: one task that holds until the key ``release:<run>`` exists, so that a test
can keep a worker's only slot busy.

``stuck``: a task that blocks its worker's whole process (a synchronous sleep), so
that the process cannot stop gracefully: what the supervisor must end with SIGKILL.

``refuse_in_child`` is the same ``hold`` workflow in a module that cannot be imported in
a supervised child (``--supervisor-fd`` on its command line): a child that fails at
start-up, every time, while the supervisor's own check passes.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any
from urllib.parse import urlparse

import aiki
from workers import fault_worker
from workers.fault_worker import pipeline, soak, wait_for_key

if sys.argv[1:2] == ["worker"]:  # loaded by `aiki worker` (not by the test process)
    os.environ["WORKER_NAME"] = f"pid{os.getpid()}"
    fault_worker.redis_port = urlparse(os.environ["AIKI_REDIS_URL"]).port


@aiki.task("procs-hold")
async def procs_hold(payload: Any) -> Any:
    run_id = aiki.task_context().run_id
    await pipeline(["RPUSH", f"entered:{run_id}", os.getpid()])
    await wait_for_key(f"release:{run_id}")
    return os.getpid()


hold = aiki.workflow("procs-hold")


@hold.v("1")
async def hold_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    return await procs_hold.start(ctx, payload)


@aiki.task("procs-stuck")
async def procs_stuck(payload: Any) -> Any:
    run_id = aiki.task_context().run_id
    await pipeline(["RPUSH", f"entered:{run_id}", os.getpid()])
    time.sleep(600)  # noqa: ASYNC251 (blocking on purpose: a hung worker process)
    return os.getpid()


stuck = aiki.workflow("procs-stuck")


@stuck.v("1")
async def stuck_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    return await procs_stuck.start(ctx, payload)


both = [soak, hold, stuck]
