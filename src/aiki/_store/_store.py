"""Typed operations over the key schema: what the client, worker and server call.

Every method that changes a run is one Lua transition (see ``_scripts``); reads are
single commands or one batch. Nothing here holds state besides the connection.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import _serde
from .._errors import ConfigurationError, InvalidState, RunConflict, RunNotFound
from .._redis import Lua, Redis, ScriptRefused
from . import _scripts
from ._keys import (
    GROUP,
    MAX_SHARDS,
    TERMINAL_STATUSES,
    Keys,
    reference_shard,
    shard_of,
)

REDACTED = "[redacted]"


def _events(fields: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Events from a run's events hash: fields ``e:<name>#<n>``, in send order."""
    found: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for key, value in fields.items():
        if key.startswith("e:"):
            name, _, n = key[2:].rpartition("#")
            found.setdefault(name, []).append((int(n), json.loads(value)))
    return {name: [e for _, e in sorted(entries)] for name, entries in found.items()}


def new_run_id(shard: int = 0) -> str:
    """A fresh run id in ``shard``: 32 hex digits (the first two name the shard, the
    other 30 are 120 random bits), safe in keys, channels and JSON. ``os.urandom``, not
    ``uuid4``: the same randomness without the UUID object (a measurable part of a
    start's CPU)."""
    return f"{shard:02x}{os.urandom(15).hex()}"


def choose_run_id(
    workflow: str,
    shards: int = 1,
    *,
    reference_id: str | None = None,
    parent_id: str | None = None,
) -> str:
    """A new run's id, in the shard it must live in: its parent's (a child's keys and its
    parent's share a slot), its reference id's (so a repeated start meets the first
    one), else a random one of the version's ``shards``."""
    if parent_id:
        shard = shard_of(parent_id)
    elif reference_id:
        shard = reference_shard(workflow, reference_id, shards)
    else:
        shard = random.randrange(shards) if shards > 1 else 0
    return new_run_id(shard)


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def _pairs(flat: list[Any] | dict[Any, Any] | None) -> dict[str, Any]:
    if not flat:
        return {}
    if isinstance(flat, dict):
        return {_text(k): _text(v) for k, v in flat.items()}
    return {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}


def _ms(value: Any) -> int | None:
    return int(value) if value not in (None, "") else None


@dataclass(frozen=True)
class RunRecord:
    """A run as stored: what ``handle.status()``, the API and the dashboard show."""

    id: str
    workflow: str
    version: str
    status: str
    payload: Any = None
    result: Any = None
    error: dict[str, Any] | None = None
    errors: list[dict[str, Any]] | None = None
    revision: int = 0
    attempts: int = 0
    worker: str | None = None
    reference_id: str | None = None
    created_at: int | None = None
    started_at: int | None = None
    updated_at: int | None = None
    ended_at: int | None = None
    tasks: dict[str, dict[str, Any]] | None = None
    sensitive: bool = False

    @property
    def ended(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def _redacted(self) -> RunRecord:
        def task(record: dict[str, Any]) -> dict[str, Any]:
            return {
                **record,
                **{k: REDACTED for k in ("input", "result") if k in record},
            }

        return dataclasses.replace(
            self,
            payload=REDACTED,
            result=REDACTED if self.result is not None else None,
            tasks=None if self.tasks is None else {a: task(r) for a, r in self.tasks.items()},
        )

    @classmethod
    def from_hash(cls, data: dict[str, Any], tasks: dict[str, Any] | None = None) -> RunRecord:
        return cls(
            id=data["id"],
            workflow=data["workflow"],
            version=data["version"],
            status=data["status"],
            payload=_serde.loads(data.get("payload")),
            result=_serde.loads(data.get("result")),
            error=_serde.loads(data.get("error")),
            errors=_serde.loads(data.get("errors")),
            revision=int(data.get("revision") or 0),
            attempts=int(data.get("attempts") or 0),
            worker=data.get("worker"),
            reference_id=data.get("reference_id"),
            created_at=_ms(data.get("created_at")),
            started_at=_ms(data.get("started_at")),
            updated_at=_ms(data.get("updated_at")),
            ended_at=_ms(data.get("ended_at")),
            sensitive=data.get("sensitive") == "1",
            tasks=None
            if tasks is None
            else {address: json.loads(rec) for address, rec in tasks.items()},
        )

    def to_json(self, *, reveal: bool = False) -> dict[str, Any]:
        """The run as the HTTP API returns it.

        A run started with ``sensitive=True`` has its payload, result and task inputs and
        results replaced by ``"[redacted]"`` (the dashboard, the CLI, listings) unless
        ``reveal`` (the long-poll wait, whose caller needs the result)."""
        if self.sensitive and not reveal:
            return self._redacted().to_json(reveal=True)
        out: dict[str, Any] = {
            "id": self.id,
            "workflow": self.workflow,
            "version": self.version,
            "status": self.status,
            "payload": self.payload,
            "result": self.result,
            "error": self.error,
            "errors": self.errors or [],
            "revision": self.revision,
            "attempts": self.attempts,
            "worker": self.worker,
            "reference_id": self.reference_id,
            "sensitive": self.sensitive,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "updated_at": self.updated_at,
            "ended_at": self.ended_at,
        }
        if self.tasks is not None:
            out["tasks"] = [
                {"address": address, **record}
                for address, record in sorted(
                    self.tasks.items(),
                    key=lambda item: (item[1].get("started_at") or 0, item[1].get("seq") or 0),
                )
            ]
        return out


@dataclass
class TakenRun:
    """A run taken for execution: the revision that fences our writes, and its memo."""

    id: str
    revision: int
    workflow: str
    version: str
    payload: Any
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    now_ms: int = 0
    started_at_ms: int = 0
    timeout_ms: int | None = None

    @property
    def deadline_ms(self) -> int | None:
        return None if self.timeout_ms is None else self.started_at_ms + self.timeout_ms


class TakeRefused(Exception):
    """The message's run cannot be executed: ``reason`` is missing, ended, not-runnable."""

    def __init__(self, reason: str, status: str | None = None) -> None:
        self.reason = reason
        self.status = status
        super().__init__(reason if status is None else f"{reason} ({status})")


_NO_RUN = TakeRefused("no-run")


def _taken(run_id: str, reply: Any) -> TakenRun | TakeRefused:
    """A take script's reply as the run taken, or why it was not (``bad-run`` when its
    stored data cannot be read: such a message is dead-lettered, not retried forever)."""
    outcome = _text(reply[0])
    if outcome != "ok":
        return TakeRefused(outcome, _text(reply[1]) if len(reply) > 1 else None)
    try:
        return _taken_run(run_id, reply)
    except (ValueError, TypeError, IndexError) as exc:
        return TakeRefused("bad-run", f"its stored data cannot be read: {exc!r}"[:500])


def _taken_run(run_id: str, reply: Any) -> TakenRun:
    return TakenRun(
        id=run_id,
        revision=int(reply[1]),
        workflow=_text(reply[2]),
        version=_text(reply[3]),
        payload=_serde.loads(reply[4]),
        tasks={address: json.loads(rec) for address, rec in _pairs(reply[5]).items()},
        errors=json.loads(_text(reply[6])),
        events=_events(_pairs(reply[7])),
        now_ms=int(reply[8]),
        started_at_ms=int(reply[9]),
        timeout_ms=int(reply[10]) if _text(reply[10]) else None,
    )


class Store:
    """Run transitions and reads over one Redis connection."""

    def __init__(self, redis: Redis, keys: Keys | None = None) -> None:
        self.redis = redis
        self.keys = keys or Keys()

    # -- starting -------------------------------------------------------------------

    async def start_run(
        self,
        workflow: str,
        version: str,
        payload_json: str,
        *,
        run_id: str | None = None,
        reference_id: str | None = None,
        on_conflict: str = "error",
        parent_id: str | None = None,
        start_at_ms: int | None = None,
        timeout: float | None = None,
        sensitive: bool = False,
        shards: int = 1,
    ) -> str:
        """Create a run and enqueue it (or schedule it for ``start_at_ms``), in one script.

        With ``reference_id``, a repeat start of the same workflow with the same reference
        returns the existing run's id instead of creating another one; if the existing
        run has a different payload, ``on_conflict="error"`` raises RunConflict and
        ``"return_existing"`` returns it anyway. A child run (``parent_id``) started again
        by a replay with the same ``run_id`` is not created twice.
        """
        if on_conflict not in ("error", "return_existing"):
            raise ConfigurationError(
                f"on_conflict must be 'error' or 'return_existing', got {on_conflict!r}"
            )
        run_id = run_id or choose_run_id(
            workflow, shards, reference_id=reference_id, parent_id=parent_id
        )
        k = self.keys
        shard = shard_of(run_id)
        try:
            reply = await self.redis.script(
                _scripts.START_RUN,
                [
                    k.run(run_id),
                    k.stream(workflow, version, shard),
                    k.runs_index(shard),
                    # Unused keys are still real key names under the prefix (never ''),
                    # so that an ACL limited to the prefix's keys allows the call.
                    k.reference(workflow, reference_id or "", shard),
                    k.children(parent_id or run_id),
                    k.timers(shard),
                ],
                [
                    run_id,
                    workflow,
                    version,
                    payload_json,
                    reference_id or "",
                    on_conflict,
                    parent_id or "",
                    "" if start_at_ms is None else int(start_at_ms),
                    "" if timeout is None else int(timeout * 1000),
                    "1" if sensitive else "",
                ],
            )
        except ScriptRefused as refused:
            if refused.code == "CONFLICT":
                raise RunConflict(workflow, reference_id or "", refused.detail) from None
            raise
        return _text(reply[0])

    async def start_runs(
        self,
        workflow: str,
        version: str,
        items: Sequence[tuple[str, str]],
        *,
        timeout: float | None = None,
    ) -> None:
        """Create and enqueue several runs ``(run id, payload JSON)`` in ONE round trip
        (a pipeline of start scripts; each run is created atomically by its own; each
        run id names its shard)."""
        k = self.keys
        tail = ["", "error", "", "", "" if timeout is None else int(timeout * 1000), ""]
        commands = [
            [
                "EVALSHA",
                _scripts.START_RUN.sha,
                "6",
                k.run(run_id),
                k.stream(workflow, version, shard_of(run_id)),
                k.runs_index(shard_of(run_id)),
                k.reference(workflow, "", shard_of(run_id)),
                k.children(run_id),
                k.timers(shard_of(run_id)),
                run_id,
                workflow,
                version,
                payload_json,
                *tail,
            ]
            for run_id, payload_json in items
        ]
        _raise_first(await self._batch_with_script(_scripts.START_RUN, commands))

    async def _batch_with_script(self, lua: Lua, commands: list[list[Any]]) -> list[Any]:
        """``commands`` (EVALSHAs of ``lua`` among them) in one pipeline. The script is
        loaded first (on every node of a cluster), in the same pipeline when Redis is one
        server, so the EVALSHAs always find it."""
        if self.redis.cluster:
            await self.redis.load_script(lua)
            return await self.redis.batch(commands)
        replies = await self.redis.batch([["SCRIPT", "LOAD", lua.source], *commands])
        return replies[1:]

    # -- executing ------------------------------------------------------------------

    async def take_run(self, run_id: str, worker_id: str, message_id: str) -> TakenRun:
        """Take a run for execution (fences out earlier executors). Raises TakeRefused."""
        k = self.keys
        reply = await self.redis.script(
            _scripts.TAKE_RUN,
            [k.run(run_id), k.tasks(run_id), k.events(run_id)],
            [worker_id, message_id],
        )
        taken = _taken(run_id, reply)
        if isinstance(taken, TakeRefused):
            raise taken
        return taken

    async def read_and_take(
        self, streams: Sequence[str], shard: int, count: int, worker_id: str
    ) -> list[tuple[str, str, dict[str, str], TakenRun | TakeRefused]]:
        """Read new messages from ``streams`` (all in ``shard``) and take their runs, in
        one call that never blocks: ``(stream, message id, fields, taken or refused)``
        per message (a message without a ``run`` field is refused ``no-run``)."""
        reply = await self.redis.script(
            _scripts.READ_AND_TAKE, list(streams), [GROUP, worker_id, count, self.keys.base(shard)]
        )
        out: list[tuple[str, str, dict[str, str], TakenRun | TakeRefused]] = []
        for stream, message_id, run_id, take, *fields in reply or []:
            run = _text(run_id)
            if run:
                out.append((_text(stream), _text(message_id), {"run": run}, _taken(run, take)))
            else:
                raw = _pairs(fields[0] if fields else None)
                out.append((_text(stream), _text(message_id), raw, _NO_RUN))
        return out

    async def record_task(
        self, run_id: str, revision: int, address: str, record: dict[str, Any]
    ) -> None:
        """Record a task's outcome, fenced by ``revision``. Raises ScriptRefused(STALE)."""
        k = self.keys
        await self.redis.script(
            _scripts.RECORD_TASK,
            [k.run(run_id), k.tasks(run_id)],
            [revision, address, _serde.dumps(record, what="task result")],
        )

    async def finish_run(
        self,
        run: TakenRun,
        message_id: str,
        *,
        result_json: str | None = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        """Record the run's outcome, ack its message and notify waiters, in one script."""
        if error is not None:
            status, name, value = "failed", "error", _serde.dumps(error, what="error")
        else:
            status, name, value = "completed", "result", result_json or "null"
        k = self.keys
        await self.redis.script(
            _scripts.FINISH_RUN,
            [k.run(run.id), k.run_stream(run.id, run.workflow, run.version)],
            [
                run.revision,
                status,
                name,
                value,
                message_id,
                GROUP,
                k.run_ended_channel,
                run.id,
                k.base(shard_of(run.id)),
            ],
        )

    async def requeue_run(self, run: TakenRun, message_id: str) -> None:
        """Hand an unfinished run back to its stream at once (graceful worker stop)."""
        k = self.keys
        await self.redis.script(
            _scripts.REQUEUE_RUN,
            [k.run(run.id), k.run_stream(run.id, run.workflow, run.version)],
            [run.revision, message_id, GROUP],
        )

    async def park_run(
        self,
        run: TakenRun,
        message_id: str,
        *,
        status: str,
        wake_at_ms: int | None = None,
        errors: list[dict[str, Any]] | None = None,
        drop_tasks: Sequence[str] = (),
        event: tuple[str, int] | None = None,
        child_id: str | None = None,
        sleep_address: str | None = None,
    ) -> str:
        """Suspend an execution: requeue the run now (``queued``) or park it in
        ``status`` with an optional timer. ``event=(name, seen)`` / ``child_id`` name what
        a parked run waits for, so that it is enqueued at once if that already happened.
        Returns the status the run was left in."""
        k = self.keys
        reply = await self.redis.script(
            _scripts.PARK_RUN,
            [
                k.run(run.id),
                k.tasks(run.id),
                k.run_stream(run.id, run.workflow, run.version),
                k.timers(shard_of(run.id)),
                k.events(run.id),
                k.run(child_id or run.id),  # itself when there is no child
            ],
            [
                run.revision,
                message_id,
                GROUP,
                status,
                "" if wake_at_ms is None else int(wake_at_ms),
                "" if errors is None else _serde.dumps(errors, what="errors"),
                run.id,
                event[0] if event else "",
                event[1] if event else 0,
                sleep_address or "",
                *drop_tasks,
            ],
        )
        return str(_text(reply))

    # -- control --------------------------------------------------------------------

    async def _existing(self, run_id: str) -> RunRecord:
        run = await self.get_run(run_id)
        if run is None:
            raise RunNotFound(run_id)
        return run

    async def send_event(
        self,
        run_id: str,
        name: str,
        data_json: str,
        *,
        reference_id: str | None = None,
        max_events: int = 10_000,
    ) -> bool:
        """Deliver an event to a run. False if this reference id was delivered before."""
        run = await self._existing(run_id)
        k = self.keys
        try:
            reply = await self.redis.script(
                _scripts.SEND_EVENT,
                [
                    k.run(run_id),
                    k.events(run_id),
                    k.run_stream(run_id, run.workflow, run.version),
                    k.timers(shard_of(run_id)),
                ],
                [name, data_json, reference_id or "", run_id, max_events],
            )
        except ScriptRefused as refused:
            if refused.code == "MISSING":
                raise RunNotFound(run_id) from None
            if refused.code in ("ENDED", "LIMIT"):
                raise InvalidState(refused.detail) from None
            raise
        return _text(reply) == "stored"

    async def wake_sleep(self, run_id: str, name: str) -> int:
        """End the sleep called ``name`` early. Returns how many sleeps were woken."""
        run = await self._existing(run_id)
        k = self.keys
        reply = await self.redis.script(
            _scripts.WAKE_SLEEP,
            [
                k.run(run_id),
                k.tasks(run_id),
                k.run_stream(run_id, run.workflow, run.version),
                k.timers(shard_of(run_id)),
            ],
            [name, run_id],
        )
        return int(reply)

    async def cancel_run(self, run_id: str, reason: str = "cancelled") -> str:
        """Cancel a run and, recursively, its children. Returns the run's final status."""
        run = await self._existing(run_id)
        k = self.keys
        reply = await self.redis.script(
            _scripts.CANCEL_RUN,
            [
                k.run(run_id),
                k.run_stream(run_id, run.workflow, run.version),
                k.timers(shard_of(run_id)),
                k.children(run_id),
            ],
            [
                _serde.dumps(reason),
                GROUP,
                k.run_ended_channel,
                k.control_channel,
                run_id,
                k.base(shard_of(run_id)),
            ],
        )
        for child in reply[1] or []:
            child_id = _text(child)
            with contextlib.suppress(RunNotFound):
                await self.cancel_run(child_id, f"parent run {run_id} was cancelled")
        return str(_text(reply[0]))

    async def pause_run(self, run_id: str) -> str:
        run = await self._existing(run_id)
        k = self.keys
        try:
            reply = await self.redis.script(
                _scripts.PAUSE_RUN,
                [
                    k.run(run_id),
                    k.run_stream(run_id, run.workflow, run.version),
                    k.timers(shard_of(run_id)),
                ],
                [GROUP, k.control_channel, run_id],
            )
        except ScriptRefused as refused:
            if refused.code == "ENDED":
                raise InvalidState(refused.detail) from None
            raise
        return str(_text(reply))

    async def resume_run(self, run_id: str) -> str:
        run = await self._existing(run_id)
        k = self.keys
        reply = await self.redis.script(
            _scripts.RESUME_RUN,
            [
                k.run(run_id),
                k.run_stream(run_id, run.workflow, run.version),
                k.timers(shard_of(run_id)),
            ],
            [run_id],
        )
        return str(_text(reply))

    async def fire_timers(self, shard: int = 0, limit: int = 200) -> tuple[int, int, int | None]:
        """Enqueue a shard's runs whose timers are due: (fired, due, next due in ms)."""
        reply = await self.redis.script(
            _scripts.FIRE_TIMERS, [self.keys.timers(shard)], [self.keys.base(shard), limit]
        )
        next_due = _text(reply[2])
        return int(reply[0]), int(reply[1]), int(float(next_due)) if next_due else None

    async def ack(self, stream: str, message_id: str) -> None:
        """Drop a message that needs no execution (its run already ended)."""
        await self.redis.batch([["XACK", stream, GROUP, message_id], ["XDEL", stream, message_id]])

    async def dead_letter(self, stream: str, message_id: str, fields: Any, reason: str) -> None:
        """Ack a message no worker can use, keeping it and the reason as a dead letter."""
        await self.redis.batch(
            [
                [
                    "XADD",
                    self.keys.dead_letters,
                    "MAXLEN",
                    "~",
                    "10000",
                    "*",
                    "stream",
                    stream,
                    "message",
                    message_id,
                    "fields",
                    json.dumps(fields, default=repr),
                    "reason",
                    reason,
                ],
                ["XACK", stream, GROUP, message_id],
                ["XDEL", stream, message_id],
            ]
        )

    # -- workflows ------------------------------------------------------------------

    async def register_workflows(
        self,
        versions: list[tuple[str, str]],
        worker_id: str,
        timeouts: dict[tuple[str, str], float | None] | None = None,
        shards: dict[tuple[str, str], int] | None = None,
    ) -> int:
        """Record each version as known (idempotent), with its workflow-level timeout
        (runs started without the code, over HTTP or by schedules, get it from here) and
        its ``shards``, then create its stream groups in every shard of the deployment.
        Returns the deployment's shard count."""
        commands: list[list[Any]] = []
        for workflow, version in versions:
            commands.append(
                [
                    "HSET",
                    self.keys.workflows,
                    Keys.workflow_field(workflow, version),
                    json.dumps(
                        {
                            "workflow": workflow,
                            "version": version,
                            "worker": worker_id,
                            "timeout": (timeouts or {}).get((workflow, version)),
                            "shards": (shards or {}).get((workflow, version), 1),
                        }
                    ),
                ]
            )
        _raise_first(await self.redis.batch(commands))
        await self.raise_shards(max([1, *(shards or {}).values()]))
        count = await self.shard_count()
        await self.create_groups(versions, range(count))
        return count

    async def create_groups(self, versions: list[tuple[str, str]], shards: range) -> None:
        """Create the consumer group of each version's stream in each of ``shards``
        (reading from the stream's start, so messages added before are not missed), and
        give every shard the deployment's retention (shard 0's copy), so runs ending in
        a shard that appeared after the server published it still expire."""
        commands: list[list[Any]] = [
            ["XGROUP", "CREATE", self.keys.stream(w, v, shard), GROUP, "0", "MKSTREAM"]
            for w, v in versions
            for shard in shards
        ]
        retention = await self.redis.command("HGET", self.keys.config(0), "retention_ms")
        if retention is not None:
            commands += [
                ["HSET", self.keys.config(shard), "retention_ms", retention]
                for shard in shards
                if shard
            ]
        for reply in await self.redis.batch(commands):
            if isinstance(reply, Exception) and "BUSYGROUP" in str(reply):
                continue  # the group exists already: fine
            if isinstance(reply, BaseException):
                raise reply

    async def raise_shards(self, shards: int) -> None:
        """Make the deployment's shard count at least ``shards`` (it never goes down)."""
        await self.redis.script(_scripts.RAISE_SHARDS, [self.keys.shards], [shards])

    async def shard_count(self) -> int:
        """How many shards the deployment uses: the most any version has ever been
        registered with (workers read every shard, because a child run lives in its
        parent's). It never goes down: runs already in a shard must stay readable (and
        their timers fired) after a version is redeployed with fewer shards."""
        raw = await self.redis.command("GET", self.keys.shards)
        return min(max(1, int(raw or 1)), MAX_SHARDS)

    async def workflow_registration(self, workflow: str, version: str) -> dict[str, Any] | None:
        """What a version's workers registered (timeout, shards), or None."""
        raw = await self.redis.command(
            "HGET", self.keys.workflows, Keys.workflow_field(workflow, version)
        )
        return None if raw is None else dict(json.loads(raw))

    async def workflow_timeout(self, workflow: str, version: str) -> float | None:
        """The registered workflow-level timeout of a version (None: none or unknown)."""
        registration = await self.workflow_registration(workflow, version)
        timeout = (registration or {}).get("timeout")
        return float(timeout) if timeout else None

    async def workflow_known(self, workflow: str, version: str) -> bool:
        reply = await self.redis.command(
            "HEXISTS", self.keys.workflows, Keys.workflow_field(workflow, version)
        )
        return bool(reply)

    async def list_workflows(self) -> list[dict[str, str]]:
        reply = _pairs(await self.redis.command("HGETALL", self.keys.workflows))
        return sorted(
            (json.loads(v) for v in reply.values()), key=lambda w: (w["workflow"], w["version"])
        )

    # -- reading --------------------------------------------------------------------

    async def get_run(self, run_id: str, *, with_tasks: bool = False) -> RunRecord | None:
        k = self.keys
        if with_tasks:
            data, tasks = await self.redis.batch(
                [["HGETALL", k.run(run_id)], ["HGETALL", k.tasks(run_id)]]
            )
            for reply in (data, tasks):
                if isinstance(reply, BaseException):
                    raise reply
            run = _pairs(data)
            return RunRecord.from_hash(run, _pairs(tasks)) if run else None
        run = _pairs(await self.redis.command("HGETALL", k.run(run_id)))
        return RunRecord.from_hash(run) if run else None

    async def get_statuses(self, run_ids: list[str]) -> dict[str, RunRecord | None]:
        """Many runs in one round trip (the notification listener's re-check)."""
        replies = await self.redis.batch([["HGETALL", self.keys.run(r)] for r in run_ids])
        out: dict[str, RunRecord | None] = {}
        for run_id, reply in zip(run_ids, replies, strict=True):
            if isinstance(reply, BaseException):
                raise reply
            data = _pairs(reply)
            out[run_id] = RunRecord.from_hash(data) if data else None
        return out

    async def list_runs(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        limit: int = 50,
        before: int | None = None,
        version: str | None = None,
        since: int | None = None,
    ) -> list[RunRecord]:
        """Newest first. ``before`` is a creation-time cursor (ms, exclusive); ``since``
        keeps runs created at or after that time (ms)."""
        found: list[RunRecord] = []
        upper: str = f"({before}" if before is not None else "+inf"
        lower: str = str(since) if since is not None else "-inf"
        page = max(limit, 50)
        shards = range(await self.shard_count())
        seen: set[str] = set()
        while len(found) < limit:
            # One page from every shard's index, merged newest first. Entries below the
            # oldest entry of a full page may be missing from that shard's page, so only
            # those at or above the highest such "floor" are used this round.
            replies = await self.redis.batch(
                [
                    [
                        "ZRANGE",
                        self.keys.runs_index(shard),
                        upper,
                        lower,
                        "BYSCORE",
                        "REV",
                        "LIMIT",
                        "0",
                        str(page),
                        "WITHSCORES",
                    ]
                    for shard in shards
                ]
            )
            _raise_first(replies)
            scored: list[tuple[int, str]] = []
            floor: int | None = None
            for reply in replies:
                pairs = [(int(float(v)), r) for r, v in _pairs(reply).items()]
                scored += pairs
                if len(pairs) == page:
                    floor = pairs[-1][0] if floor is None else max(floor, pairs[-1][0])
            scored.sort(reverse=True)
            if floor is not None:
                scored = [(score, r) for score, r in scored if score >= floor]
            fresh = [r for _, r in scored if r not in seen]
            if not fresh:
                if floor is None:
                    break
                # Everything down to the floor was seen, but more runs share the floor's
                # millisecond than a page holds: read bigger pages until past them.
                page *= 2
                continue
            seen.update(fresh)
            # Statuses only for as many runs as the listing may still need, a chunk at a
            # time (with many shards, a round can hold far more than ``limit`` ids).
            step = max(50, limit - len(found))
            for start in range(0, len(fresh), step):
                self._keep(
                    found,
                    await self.get_statuses(fresh[start : start + step]),
                    limit,
                    status,
                    workflow,
                    version,
                )
                if len(found) >= limit:
                    break
            if floor is None:
                break
            upper = str(floor)  # inclusive: runs at the floor not read yet come next
        return found

    @staticmethod
    def _keep(
        found: list[RunRecord],
        runs: dict[str, RunRecord | None],
        limit: int,
        status: str | None,
        workflow: str | None,
        version: str | None,
    ) -> None:
        for run in runs.values():
            if run is None:
                continue
            if status and run.status != status:
                continue
            if workflow and run.workflow != workflow:
                continue
            if version and run.version != version:
                continue
            found.append(run)
            if len(found) >= limit:
                return


def _raise_first(replies: list[Any]) -> None:
    """Raise the first error of a batch's replies."""
    for reply in replies:
        if isinstance(reply, BaseException):
            raise reply
