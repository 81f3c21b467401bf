"""The client: start runs and learn how they ended, from trio or asyncio programs.

The client is written against anyio, so the same code runs under trio (natively) and
under asyncio (a FastAPI app, say) without a bridge; the worker stays trio-native.

A client given a ``redis_url`` talks to Redis directly (the hot path: one Lua script to
start a run; completions through one shared notification listener). A client given only
``base_url`` does the same over the server's HTTP API, with the same semantics.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

import anyio

from . import _schedules, _serde
from ._errors import ConfigurationError, RunNotFound, WaitTimeout
from ._handle import RunHandle
from ._http import HttpApi, HttpBackend
from ._notify import RunEndedListener, wait_for_end
from ._redis import Redis, connect, open_asyncio_bridge, resolve_implementation
from ._schedules import Schedule
from ._start import DEFAULT_MAX_PAYLOAD_BYTES, StartRequest, aware_ms, start_run, start_runs
from ._store import (
    ENV_DURABILITY,
    Keys,
    RunPage,
    RunQuery,
    RunRecord,
    Store,
    check_durability,
    open_fsync_barrier,
    parse_cursor,
)
from ._types import UNTYPED, PayloadType, payload_type
from .codecs import NO_CODECS, Chain, Codec


class _Backend(Protocol):
    """What a client does, over Redis (:class:`_RedisBackend`) or the HTTP API: one
    typed method per operation, so the client never asks which backend it has."""

    async def start(self, request: StartRequest) -> str:
        """Start the run; its id (an existing run's, for a repeated reference id)."""
        ...

    async def start_many(self, requests: Sequence[StartRequest]) -> list[str]:
        """Start plain runs of one version (one round trip where the backend can)."""
        ...

    async def get(self, run_id: str, with_tasks: bool = False) -> RunRecord | None: ...

    async def wait(self, run_id: str, timeout: float | None) -> dict[str, Any]: ...

    async def list_runs(self, query: RunQuery, limit: int, cursor: str | None) -> RunPage: ...

    async def cancel(self, run_id: str, reason: str) -> str: ...

    async def pause(self, run_id: str) -> str: ...

    async def resume(self, run_id: str) -> str: ...

    async def wakeup(self, run_id: str, name: str) -> int: ...

    async def retry(self, run_id: str) -> str: ...

    async def send_event(
        self, run_id: str, name: str, data: Any, reference_id: str | None
    ) -> bool: ...

    async def create_schedule(self, schedule: Schedule) -> None: ...

    async def list_schedules(self) -> list[dict[str, Any]]: ...

    async def delete_schedule(self, schedule_id: str) -> bool: ...


class _RedisBackend:
    def __init__(self, store: Store, listener: RunEndedListener) -> None:
        self.store = store
        self.listener = listener
        self._shards_known = 1  # the deployment has at least this many shards

    async def ensure_shards(self, shards: int) -> None:
        """Before the first start into shard N-1, make sure the deployment counts N
        shards (one call per process and size), so workers read it and the daemons
        fire its timers even if no worker registered the version yet."""
        if shards > self._shards_known:
            await self.store.raise_shards(shards)
            self._shards_known = shards

    async def start(self, request: StartRequest) -> str:
        await self.ensure_shards(request.shards)
        outcome = await start_run(self.store, request, listener=self.listener)
        return outcome.run_id

    async def start_many(self, requests: Sequence[StartRequest]) -> list[str]:
        if requests:
            await self.ensure_shards(requests[0].shards)
        return await start_runs(self.store, requests, listener=self.listener)

    async def get(self, run_id: str, with_tasks: bool = False) -> RunRecord | None:
        return await self.store.get_run(run_id, with_tasks=with_tasks)

    async def list_runs(self, query: RunQuery, limit: int, cursor: str | None) -> RunPage:
        return await self.store.find_runs(query, limit=limit, after=parse_cursor(cursor))

    async def wait(self, run_id: str, timeout: float | None) -> dict[str, Any]:
        outcome = await wait_for_end(self.listener, self.store, run_id, timeout)
        if outcome is None:
            run = await self.store.get_run(run_id)
            raise WaitTimeout(run_id, timeout or 0.0, run.status if run else None)
        return outcome

    async def cancel(self, run_id: str, reason: str) -> str:
        return str(await self.store.cancel_run(run_id, reason or "cancelled"))

    async def pause(self, run_id: str) -> str:
        return str(await self.store.pause_run(run_id))

    async def resume(self, run_id: str) -> str:
        return str(await self.store.resume_run(run_id))

    async def wakeup(self, run_id: str, name: str) -> int:
        return int(await self.store.wake_sleep(run_id, name))

    async def retry(self, run_id: str) -> str:
        await self.store.retry_run(run_id)
        self.listener.reopened(run_id)
        return "queued"

    async def send_event(self, run_id: str, name: str, data: Any, reference_id: str | None) -> bool:
        data_json = _serde.dumps(data, what="event data")
        return bool(await self.store.send_event(run_id, name, data_json, reference_id=reference_id))

    async def create_schedule(self, schedule: Schedule) -> None:
        await _schedules.create_schedule(self.store, schedule)

    async def list_schedules(self) -> list[dict[str, Any]]:
        return await _schedules.list_schedules(self.store)

    async def delete_schedule(self, schedule_id: str) -> bool:
        return await _schedules.delete_schedule(self.store, schedule_id)


class Client:
    """A connection to Aiki. Make one with ``async with aiki.client(...) as client``."""

    def __init__(
        self,
        backend: _Backend,
        *,
        redis: Redis | None,
        store: Store | None,
        redis_url: str | None,
        base_url: str | None,
        max_payload_bytes: int,
        redis_client: str = "glide",
        durability: str = "none",
        codecs: Chain = NO_CODECS,
    ) -> None:
        self.codecs = codecs  # applied to payloads, results and events (aiki.codecs)
        self._backend = backend
        self._redis = redis
        self._store = store
        self.redis_url = redis_url
        self.base_url = base_url
        self.max_payload_bytes = max_payload_bytes
        self.redis_client = redis_client
        self.durability = durability

    @property
    def uses_redis(self) -> bool:
        return self._store is not None

    @property
    def store(self) -> Store:
        if self._store is None:
            raise ConfigurationError("this needs a client opened with redis_url=")
        return self._store

    async def _start_run(
        self,
        workflow: str,
        version: str,
        payload: Any,
        reference_id: str | None,
        on_conflict: str = "error",
        *,
        delay: float | None = None,
        start_at: datetime | None = None,
        timeout: float | None = None,
        sensitive: bool = False,
        shards: int = 1,
        result_type: PayloadType = UNTYPED,
        concurrency_key: str | None = None,
        concurrency_limit: int | None = None,
        priority: int = 0,
    ) -> RunHandle:
        request = StartRequest.build(
            workflow,
            version,
            self.codecs.wrap(payload),
            reference_id=reference_id,
            on_conflict=on_conflict,
            delay=delay,
            start_at=start_at,
            timeout=timeout,
            sensitive=sensitive,
            shards=shards,
            max_payload_bytes=self.max_payload_bytes,
            concurrency_key=concurrency_key,
            concurrency_limit=concurrency_limit,
            priority=priority,
        )
        if reference_id is not None and self.codecs:
            # The stored payload differs on every start (a fresh nonce): a repeat is
            # recognised by digests of the plaintext (keyed ones under encryption).
            request = dataclasses.replace(request, digests=self.codecs.digests(payload))
        run_id = await self._backend.start(request)
        return RunHandle(self, run_id, workflow, version, result_type)

    async def _start_many(
        self,
        workflow: str,
        version: str,
        payloads: list[Any],
        timeout: float | None,
        shards: int = 1,
        result_type: PayloadType = UNTYPED,
        *,
        concurrency_keys: Sequence[str | None] | None = None,
        concurrency_limit: int | None = None,
        priority: int = 0,
    ) -> list[RunHandle]:
        # Every payload is checked before anything is written.
        keys = concurrency_keys or [None] * len(payloads)
        requests = [
            StartRequest.build(
                workflow,
                version,
                self.codecs.wrap(p),
                timeout=timeout,
                shards=shards,
                max_payload_bytes=self.max_payload_bytes,
                concurrency_key=key,
                concurrency_limit=concurrency_limit,
                priority=priority,
            )
            for p, key in zip(payloads, keys, strict=True)
        ]
        run_ids = await self._backend.start_many(requests)
        return [RunHandle(self, run_id, workflow, version, result_type) for run_id in run_ids]

    def get_handle(
        self, run_id: str, workflow: str = "", version: str = "", *, result_type: Any = None
    ) -> RunHandle:
        """A handle for a run started elsewhere (by id). ``result_type`` (a type, e.g. a
        pydantic model) makes ``wait_for_completion`` return the result as that type."""
        pt = UNTYPED if result_type is None else payload_type(result_type)
        return RunHandle(self, run_id, workflow, version, pt)

    async def create_schedule(self, schedule: Schedule) -> Schedule:
        """Save a schedule (replacing one with the same id); the server's schedule
        daemon fires it. The payload is stored through the client's codecs, like a
        run's (the runs it starts get it as it is stored)."""
        stored = dataclasses.replace(schedule, payload=self.codecs.wrap(schedule.payload))
        await self._backend.create_schedule(stored)
        return schedule

    async def list_schedules(self) -> list[dict[str, Any]]:
        return await self._backend.list_schedules()

    async def delete_schedule(self, schedule_id: str) -> bool:
        return await self._backend.delete_schedule(schedule_id)

    async def list_runs(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        version: str | None = None,
        reference_id: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> RunPage:
        """One page of runs, newest first, that match EVERY filter given: status,
        workflow, version, reference id, search ``attributes`` (what workflows set with
        ``ctx.set_attributes``; values compare as strings), creation time in
        ``[created_after, created_before)``. Filtered in Redis through indexes, so a
        selective filter is fast however many runs are stored. Pass the page's
        ``next_cursor`` as ``cursor`` for the next page (None: it was the last)."""
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 1000:
            raise ConfigurationError(f"limit must be 1..1000, got {limit!r}", field="limit")
        query = RunQuery.build(
            status=status,
            workflow=workflow,
            version=version,
            reference_id=reference_id,
            attributes=attributes,
            created_after=None
            if created_after is None
            else aware_ms(created_after, "created_after"),
            created_before=None
            if created_before is None
            else aware_ms(created_before, "created_before"),
        )
        parse_cursor(cursor)  # a bad cursor fails here, naming the field, on any backend
        return await self._backend.list_runs(query, limit, cursor)

    async def get_run(self, run_id: str, *, with_tasks: bool = False) -> RunRecord:
        run = await self._backend.get(run_id, with_tasks)
        if run is None:
            raise RunNotFound(run_id)
        return run


@contextlib.asynccontextmanager
async def client(
    *,
    base_url: str | None = None,
    redis_url: str | None = None,
    prefix: str = "aiki",
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    http_timeout: float = 30.0,
    redis_client: str | None = None,
    api_key: str | None = None,
    durability: str | None = None,
    codecs: Sequence[Codec] = (),
    encode_errors: bool = False,
) -> AsyncIterator[Client]:
    """Open a client. With ``redis_url`` it talks to Redis directly (fast path, needed
    by workers); with only ``base_url`` it goes through the server's HTTP API.

    ``redis_client`` picks the Redis implementation (else ``$AIKI_REDIS_CLIENT``):
    ``"native"`` (default under trio: trio sockets + hiredis; a Redis Cluster goes
    through GLIDE), ``"glide"`` (default under asyncio) or ``"redis-py"``; workers use
    their client's. ``api_key`` is sent as
    ``Authorization: Bearer`` to a server that requires one.

    ``durability``: ``"none"`` (default, else ``$AIKI_DURABILITY``) or ``"fsync"``: starts,
    events, cancels and the ends that waits report return only once Redis has fsynced
    them to its AOF (``WAITAOF``; Redis >= 7.2 or Valkey >= 8 with ``appendonly yes``,
    checked here). Over HTTP the server's own ``durability`` setting applies.

    ``codecs``: a chain of :mod:`aiki.codecs` (``Compression()``, ``Encryption(keys)``)
    applied to run payloads and results, task inputs and results, event and child data
    before they reach Redis; workers use their client's (docs/typed-data.md). With
    ``encode_errors=True`` its workers also encode the error messages and tracebacks they
    record (a failed task's or run's), so that Redis holds none of their text either."""
    if encode_errors and not codecs:
        raise ConfigurationError("encode_errors=True needs codecs=", field="encode_errors")
    chain = Chain(codecs, errors=encode_errors)
    implementation = resolve_implementation(redis_client)
    if durability is None:
        durability = os.environ.get(ENV_DURABILITY, "").strip() or "none"
    check_durability("client", durability)
    if not base_url and not redis_url:
        raise ConfigurationError("aiki.client() needs redis_url= or base_url=")
    if durability != "none" and not redis_url:
        raise ConfigurationError(
            f"aiki.client(durability={durability!r}) needs redis_url=: over HTTP the "
            "server's durability setting applies",
            field="durability",
        )
    if base_url and not base_url.startswith(("http://", "https://")):
        base_url = "http://" + base_url
    async with contextlib.AsyncExitStack() as stack:
        api: HttpApi | None = None
        if base_url:
            api = await stack.enter_async_context(
                HttpApi(base_url, api_key=api_key, timeout=http_timeout)
            )
        if redis_url:
            await stack.enter_async_context(open_asyncio_bridge(implementation))
            redis = await connect(redis_url, name="aiki-client", implementation=implementation)
            stack.push_async_callback(redis.aclose)
            keys = Keys(prefix)
            store = Store(redis, keys)
            await store.check_persistence()  # a warning, once, when Redis keeps nothing
            if durability == "fsync":
                barrier = await stack.enter_async_context(
                    open_fsync_barrier(redis_url, keys.fsync_mark, implementation=implementation)
                )
                store = store.with_fsync(barrier)
            listener = RunEndedListener(redis_url, store, implementation=implementation)
            nursery = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(nursery.cancel_scope.cancel)
            # Subscribed at the first wait: workers and fire-and-forget producers never
            # receive every run's end.
            await nursery.start(functools.partial(listener.serve, lazy=True))
            backend: _Backend = _RedisBackend(store, listener)
            yield Client(
                backend,
                redis=redis,
                store=store,
                redis_url=redis_url,
                base_url=base_url,
                max_payload_bytes=max_payload_bytes,
                redis_client=implementation,
                durability=durability,
                codecs=chain,
            )
        else:
            assert api is not None
            yield Client(
                HttpBackend(api),
                redis=None,
                store=None,
                redis_url=None,
                base_url=base_url,
                max_payload_bytes=max_payload_bytes,
                codecs=chain,
            )
