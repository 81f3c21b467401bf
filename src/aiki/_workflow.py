"""Workflows and their versions. A run always executes the version it was started with."""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ._concurrency import Concurrency
from ._errors import ConfigurationError
from ._retry import Retry
from ._types import Signature

if TYPE_CHECKING:
    from ._client import Client, RunHandle
    from ._context import ChildHandle, WorkflowContext
    from ._schedules import Schedule

WorkflowFunction = Callable[["WorkflowContext", Any], Awaitable[Any]]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


def _check_name(kind: str, value: object) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ConfigurationError(
            f"{kind} {value!r} is invalid: use 1-128 letters, digits, '.', '_' or '-'"
        )
    return value


class WorkflowVersion:
    """One version of a workflow: its run function. Made by ``@workflow.v("1.0.0")``."""

    __slots__ = ("workflow", "version", "fn", "retry", "timeout", "shards", "types", "concurrency")

    def __init__(
        self,
        workflow: Workflow,
        version: str,
        fn: WorkflowFunction,
        retry: Retry | None = None,
        timeout: float | None = None,
        shards: int = 1,
        concurrency: Concurrency | None = None,
    ) -> None:
        self.workflow = workflow
        self.version = version
        self.fn = fn
        self.retry = retry or Retry.never()
        self.timeout = timeout
        self.shards = shards
        self.concurrency = concurrency
        # run(ctx, payload: In) -> Out: what a start validates and a wait returns.
        self.types = Signature(fn, 1, f"workflow {workflow.name!r} version {version!r}")

    @property
    def name(self) -> str:
        return self.workflow.name

    def _concurrency(self, payload: Any, key: Any) -> tuple[str | None, int | None]:
        """A run's ``(concurrency key, limit)``, or ``(None, None)`` for a version without
        ``concurrency=``; ConfigurationError (field ``concurrency_key``) for a key given
        to a version without a limit, or a bad key (nothing is written then)."""
        where = f"workflow {self.name!r} version {self.version!r}"
        if self.concurrency is None:
            if key is not None:
                raise ConfigurationError(
                    f"{where} declares no concurrency= limit: concurrency_key= has no effect",
                    field="concurrency_key",
                )
            return None, None
        return self.concurrency.key_of(payload, key, where), self.concurrency.limit

    async def start(
        self,
        client: Client,
        payload: Any = None,
        *,
        reference_id: str | None = None,
        on_conflict: str = "error",
        delay: float | None = None,
        start_at: datetime | None = None,
        sensitive: bool = False,
        concurrency_key: str | None = None,
        priority: int = 0,
    ) -> RunHandle:
        """Start a run of this version with ``payload``; returns its handle at once.

        ``reference_id`` makes the start idempotent: starting again with the same
        reference returns the existing run. If that run's payload differs,
        ``on_conflict="error"`` (default) raises :class:`aiki.RunConflict` and
        ``"return_existing"`` returns the existing run's handle. ``delay`` (seconds) or
        ``start_at`` (an aware datetime) make the run ``scheduled`` until then.
        ``sensitive=True`` shows the payload, results and task data as ``[redacted]`` in
        the dashboard, the CLI and API listings (workers and waiters see the real data).
        ``priority`` (an int, 0 to 100; default 0, no priority): among the version's
        waiting runs, those with a higher priority are taken first (FIFO within one
        priority); it is kept through retries, sleeps, events and claims, and the
        run's children inherit it (docs/flow-control.md#priorities).
        With an annotated payload parameter, ``payload`` (an instance or JSON that fits)
        is validated first: :class:`aiki.InvalidPayload` names the path of a bad field
        and nothing is written. The handle's ``wait_for_completion`` returns the return
        annotation's type. ``concurrency_key`` names the run's key for the version's
        ``concurrency=`` limit (instead of its key function's; see
        :class:`aiki.Concurrency`).
        """
        key, limit = self._concurrency(payload, concurrency_key)
        return await client._start_run(
            self.name,
            self.version,
            self.types.input.dump(payload),
            reference_id,
            on_conflict,
            delay=delay,
            start_at=start_at,
            timeout=self.timeout,
            sensitive=sensitive,
            shards=self.shards,
            result_type=self.types.output,
            concurrency_key=key,
            concurrency_limit=limit,
            priority=priority,
        )

    async def start_many(
        self, client: Client, payloads: list[Any], *, priority: int = 0
    ) -> list[RunHandle]:
        """Start one run per payload, in ONE round trip to Redis (a pipeline; each run
        is created atomically). For producers that start many runs at once; over HTTP
        it falls back to one request per run. ``priority``: every run's (see
        :meth:`start`)."""
        wire = [self.types.input.dump(p) for p in payloads]  # all checked before a write
        keys = [self._concurrency(p, None)[0] for p in payloads]
        return await client._start_many(
            self.name,
            self.version,
            wire,
            self.timeout,
            self.shards,
            self.types.output,
            concurrency_keys=keys,
            concurrency_limit=self.concurrency.limit if self.concurrency else None,
            priority=priority,
        )

    async def schedule(
        self,
        client: Client,
        schedule_id: str,
        payload: Any = None,
        *,
        cron: str | None = None,
        every: float | None = None,
        overlap: str = "allow",
        priority: int = 0,
        concurrency_key: str | None = None,
    ) -> Schedule:
        """Start this version on a cron expression (UTC) or every ``every`` seconds.

        ``overlap`` (``allow``, ``skip`` or ``cancel_previous``) says what an occurrence
        does while the previous run is still going. Saving a schedule with an existing
        id replaces it. Fired by the server's schedule daemon. The runs' concurrency key
        (a version with ``concurrency=``) is ``concurrency_key``, else the key function's
        for ``payload``, computed here."""
        from ._schedules import Schedule

        key, _ = self._concurrency(payload, concurrency_key)
        sched = Schedule(
            id=schedule_id,
            workflow=self.name,
            version=self.version,
            payload=self.types.input.dump(payload),
            cron=cron,
            every=every,
            overlap=overlap,  # type: ignore[arg-type]
            priority=priority,
            concurrency_key=key or None,
        )
        return await client.create_schedule(sched)

    async def start_as_child(
        self, ctx: WorkflowContext, payload: Any = None, *, concurrency_key: str | None = None
    ) -> ChildHandle:
        """Start a run of this version as a child of the run ``ctx`` belongs to.

        Memoized like a task: a replay gets the same child, never a second one.
        Cancelling the parent cancels the child. ``concurrency_key`` as for
        :meth:`start` (a child lives in its parent's shard: see docs/flow-control.md)."""
        concurrency = self._concurrency(payload, concurrency_key)
        return await ctx._child(self.name, self.version, payload, self.types, concurrency)

    def __repr__(self) -> str:
        return f"<aiki.WorkflowVersion {self.name!r} {self.version!r}>"


class Workflow:
    """A named workflow, holding its versions (``aiki.workflow(name)``)."""

    def __init__(self, name: str) -> None:
        self.name = _check_name("workflow name", name)
        self._versions: dict[str, WorkflowVersion] = {}

    def v(
        self,
        version: str,
        *,
        retry: Retry | None = None,
        timeout: float | None = None,
        shards: int = 1,
        concurrency: Concurrency | None = None,
    ) -> Callable[[WorkflowFunction], WorkflowVersion]:
        """Decorate ``async def run(ctx, payload)`` as version ``version`` of this workflow.

        ``retry`` re-runs the whole workflow (recorded task results are kept; failed
        tasks run again) when it raises, per the :class:`aiki.Retry` policy.
        ``timeout`` (seconds from the run's first execution) ends a run that takes longer
        ``failed`` with a WorkflowTimeout error.
        ``shards`` spreads the version's runs (and its stream) over that many shards,
        each its own hash slot: on Redis Cluster, set it to at least the number of
        masters so the version's load is spread over them (see docs/operations.md).
        ``concurrency`` (an :class:`aiki.Concurrency`) limits how many of the version's
        runs execute at once, per key or in all (see docs/flow-control.md).
        """
        if timeout is not None and timeout <= 0:
            raise ConfigurationError(f"workflow {self.name!r}: timeout must be > 0 seconds")
        _check_name("workflow version", version)
        if isinstance(shards, bool) or not isinstance(shards, int) or not 1 <= shards <= 256:
            raise ConfigurationError(
                f"workflow {self.name!r}: shards must be a whole number from 1 to 256, "
                f"got {shards!r}"
            )
        if retry is not None and not isinstance(retry, Retry):
            raise ConfigurationError(f"workflow {self.name!r}: retry must be an aiki.Retry")
        if concurrency is not None and not isinstance(concurrency, Concurrency):
            raise ConfigurationError(
                f"workflow {self.name!r}: concurrency must be an aiki.Concurrency, "
                f"got {concurrency!r}",
                field="concurrency",
            )

        def decorate(fn: WorkflowFunction) -> WorkflowVersion:
            if not inspect.iscoroutinefunction(fn):
                raise ConfigurationError(
                    f"workflow {self.name!r} version {version!r} must be an async function"
                )
            if version in self._versions:
                raise ConfigurationError(
                    f"workflow {self.name!r} already has a version {version!r}"
                )
            wv = WorkflowVersion(self, version, fn, retry, timeout, shards, concurrency)
            self._versions[version] = wv
            return wv

        return decorate

    def get_version(self, version: str) -> WorkflowVersion | None:
        return self._versions.get(version)

    @property
    def versions(self) -> tuple[WorkflowVersion, ...]:
        return tuple(self._versions.values())

    def __repr__(self) -> str:
        return f"<aiki.Workflow {self.name!r} versions={list(self._versions)}>"


def workflow(name: str) -> Workflow:
    """Declare a workflow called ``name``; add versions with ``@wf.v("1.0.0")``."""
    return Workflow(name)


class WorkflowRegistry:
    """The workflow versions a worker executes (``worker.workflow_registry``)."""

    def __init__(self) -> None:
        self._versions: dict[tuple[str, str], WorkflowVersion] = {}

    def add(self, item: Workflow | WorkflowVersion) -> WorkflowRegistry:
        """Add every version of a workflow, or one version. Returns the registry."""
        versions = item.versions if isinstance(item, Workflow) else (item,)
        if isinstance(item, Workflow) and not versions:
            raise ConfigurationError(f"workflow {item.name!r} has no versions to register")
        for wv in versions:
            if not isinstance(wv, WorkflowVersion):
                raise ConfigurationError(f"cannot register {wv!r}: not a workflow")
            self._versions[(wv.name, wv.version)] = wv
        return self

    def get(self, workflow: str, version: str) -> WorkflowVersion | None:
        return self._versions.get((workflow, version))

    def __iter__(self) -> Iterator[WorkflowVersion]:
        return iter(self._versions.values())

    def __len__(self) -> int:
        return len(self._versions)
