"""What every scenario gets: the private Redis, an admin connection, the client, sizes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

import aiki

from ._procs import Child, Pid, cli_worker_processes, worker_processes
from ._resp import Resp


@dataclass(frozen=True)
class Sizes:
    """How much each scenario does. ``FULL`` is the issue's method; ``QUICK`` a smoke run."""

    warmup: int
    throughput_runs: int
    latency_runs: int
    steps_runs: int
    replay_runs: int
    idle_seconds: float
    memory_warmup_runs: int
    memory_runs: int
    roundtrip_runs: int
    search_runs: int = 100_000
    concurrency: int = 50


FULL = Sizes(
    warmup=20,
    throughput_runs=2000,
    latency_runs=200,
    steps_runs=50,
    replay_runs=20,
    idle_seconds=10.0,
    memory_warmup_runs=1000,
    memory_runs=20_000,
    roundtrip_runs=100,
)

QUICK = Sizes(
    warmup=5,
    throughput_runs=50,
    latency_runs=20,
    steps_runs=5,
    replay_runs=3,
    idle_seconds=2.0,
    memory_warmup_runs=50,
    memory_runs=500,
    roundtrip_runs=20,
    search_runs=2_000,
)


class BenchmarkError(RuntimeError):
    """A scenario could not produce its figures (wrong results, timeouts)."""


@dataclass
class Bench:
    redis_url: str
    redis_pid: int
    admin: Resp
    client: aiki.Client
    client_addrs: frozenset[str]  # this process's SDK connections, as CLIENT LIST shows them
    sizes: Sizes
    log_dir: Path
    quick: bool

    def flush(self) -> None:
        """Empty the private Redis (every scenario starts from nothing)."""
        self.admin.command("FLUSHALL")
        self.admin.command("CONFIG", "RESETSTAT")

    @contextlib.asynccontextmanager
    async def workers(
        self, count: int = 1, *, tag: str = "w", env: dict[str, str] | None = None
    ) -> AsyncIterator[list[Child]]:
        async with worker_processes(
            self.redis_url,
            count,
            self.log_dir,
            concurrency=self.sizes.concurrency,
            tag=tag,
            env=env,
        ) as children:
            yield children

    @contextlib.asynccontextmanager
    async def cli_workers(self, processes: int, *, tag: str = "cli") -> AsyncIterator[list[Pid]]:
        """``aiki worker --processes N``: the supervisor and its children, registered."""
        async with cli_worker_processes(
            self.redis_url,
            processes,
            self.log_dir,
            self.client.store.worker_entries,
            concurrency=self.sizes.concurrency,
            tag=tag,
        ) as processes_:
            yield processes_

    async def run_one(self, wf: aiki.WorkflowVersion, payload: Any, timeout: float = 60.0) -> Any:
        """Start one run and wait for its result."""
        handle = await wf.start(self.client, payload)
        return await handle.wait_for_completion(timeout=timeout)

    async def run_many(
        self,
        wf: aiki.WorkflowVersion,
        payloads: Sequence[Any],
        *,
        check: Callable[[Any, Any], bool] | None = None,
        timeout: float = 300.0,
    ) -> float:
        """Start every run one after another, then wait for all of them concurrently.

        Returns the time spent starting. Raises BenchmarkError if a result is wrong."""
        started = trio.current_time()
        handles = [await wf.start(self.client, p) for p in payloads]
        enqueue_s = trio.current_time() - started
        wrong: list[str] = []

        async def wait(handle: aiki.RunHandle, payload: Any) -> None:
            result = await handle.wait_for_completion(timeout=timeout)
            ok = check(payload, result) if check else result == payload
            if not ok:
                wrong.append(f"{handle.id}: {result!r}")

        async with trio.open_nursery() as nursery:
            for handle, payload in zip(handles, payloads, strict=True):
                nursery.start_soon(wait, handle, payload)
        if wrong:
            raise BenchmarkError(f"{len(wrong)} runs returned wrong results, e.g. {wrong[0]}")
        return enqueue_s
