"""What the store reads and hands out: run records, taken runs, run ids, and the
helpers that turn Redis replies (bytes or text, flat lists or maps) into them.

Plain data, no Redis: the store's operation modules build these from replies.
"""

from __future__ import annotations

import dataclasses
import os
import random
from dataclasses import dataclass, field
from typing import Any

from .. import _serde
from ._keys import TERMINAL_STATUSES, concurrency_shard, reference_shard, shard_of

REDACTED = "[redacted]"


def _events(fields: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Events from a run's events hash: fields ``e:<name>#<n>``, in send order."""
    found: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for key, value in fields.items():
        if key.startswith("e:"):
            name, _, n = key[2:].rpartition("#")
            found.setdefault(name, []).append((int(n), _serde.loads(value)))
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
    concurrency_key: str | None = None,
) -> str:
    """A new run's id, in the shard it must live in: its parent's (a child's keys and its
    parent's share a slot), its concurrency key's (every run of a key counts against one
    limit, in one slot), its reference id's (so a repeated start meets the first one),
    else a random one of the version's ``shards``."""
    if parent_id:
        shard = shard_of(parent_id)
    elif concurrency_key is not None:
        shard = concurrency_shard(workflow, concurrency_key, shards)
    elif reference_id:
        shard = reference_shard(workflow, reference_id, shards)
    else:
        shard = random.randrange(shards) if shards > 1 else 0
    return new_run_id(shard)


def _ms(value: Any) -> int | None:
    return int(value) if value not in (None, "") else None


def _task(raw: Any) -> dict[str, Any]:
    """A stored task record for showing it (never raising: see _serde.loads_stored)."""
    record = _serde.loads_stored(raw)
    return record if isinstance(record, dict) else {"unreadable": "not a task record"}


def _error(raw: Any) -> dict[str, Any] | None:
    error = _serde.loads_stored(raw)
    return error if error is None or isinstance(error, dict) else {"message": str(error)[:500]}


def _errors(raw: Any) -> list[dict[str, Any]] | None:
    errors = _serde.loads_stored(raw)
    return errors if errors is None or isinstance(errors, list) else [errors]


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
    attributes: dict[str, str] = field(default_factory=dict)
    #: A run of a version with ``concurrency=``: its key (None: the version's shared
    #: key) and limit. ``awaiting_concurrency`` while it waits for a slot.
    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    #: 0 (none) to 100: among a version's waiting runs, higher ones are taken first.
    priority: int = 0

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
            payload=_serde.loads_stored(data.get("payload")),
            result=_serde.loads_stored(data.get("result")),
            error=_error(data.get("error")),
            errors=_errors(data.get("errors")),
            revision=int(data.get("revision") or 0),
            attempts=int(data.get("attempts") or 0),
            worker=data.get("worker"),
            reference_id=data.get("reference_id"),
            created_at=_ms(data.get("created_at")),
            started_at=_ms(data.get("started_at")),
            updated_at=_ms(data.get("updated_at")),
            ended_at=_ms(data.get("ended_at")),
            sensitive=data.get("sensitive") == "1",
            priority=int(data.get("priority") or 0),
            attributes=_serde.loads(data.get("attributes")) or {},
            concurrency_key=data.get("concurrency_key") or None,
            concurrency_limit=_ms(data.get("concurrency_limit")),
            tasks=None
            if tasks is None
            else {address: _task(rec) for address, rec in tasks.items()},
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
            "attributes": dict(self.attributes),
            "sensitive": self.sensitive,
            "concurrency_key": self.concurrency_key,
            "concurrency_limit": self.concurrency_limit,
            "priority": self.priority,
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
    #: The starter's trace context (W3C headers as JSON), or "" (see ``aiki._tracing``).
    trace: str = ""
    #: The run's concurrency key ("": its version's shared key), and how long (ms) it
    #: waited for its slot before this execution (None: it did not wait).
    concurrency_key: str = ""
    concurrency_waited_ms: int | None = None

    @property
    def deadline_ms(self) -> int | None:
        return None if self.timeout_ms is None else self.started_at_ms + self.timeout_ms


class TakeRefused(Exception):
    """The message's run cannot be executed: ``reason`` is missing, ended, not-runnable."""

    def __init__(self, reason: str, status: str | None = None) -> None:
        self.reason = reason
        self.status = status
        super().__init__(reason if status is None else f"{reason} ({status})")


NO_RUN = TakeRefused("no-run")
#: A doorbell for a priority queue that has no run left (one it rang for was cancelled).
SPARE = TakeRefused("spare")


def taken_from_reply(run_id: str, reply: Any) -> TakenRun | TakeRefused:
    """A take script's reply as the run taken, or why it was not (``bad-run`` when its
    stored data cannot be read: such a message is dead-lettered, not retried forever)."""
    outcome = text(reply[0])
    if outcome != "ok":
        return TakeRefused(outcome, text(reply[1]) if len(reply) > 1 else None)
    try:
        return _taken_run(run_id, reply)
    except (ValueError, TypeError, IndexError) as exc:
        return TakeRefused("bad-run", f"its stored data cannot be read: {exc!r}"[:500])


def _taken_run(run_id: str, reply: Any) -> TakenRun:
    return TakenRun(
        id=run_id,
        revision=int(reply[1]),
        workflow=text(reply[2]),
        version=text(reply[3]),
        payload=_serde.loads(reply[4]),
        tasks={address: _serde.loads(rec) for address, rec in pairs(reply[5]).items()},
        errors=_serde.loads(text(reply[6])),
        events=_events(pairs(reply[7])),
        now_ms=int(reply[8]),
        started_at_ms=int(reply[9]),
        timeout_ms=int(reply[10]) if text(reply[10]) else None,
        trace=text(reply[11]) if len(reply) > 11 else "",
        concurrency_key=text(reply[12]) if len(reply) > 12 else "",
        concurrency_waited_ms=int(reply[13]) if len(reply) > 13 and text(reply[13]) else None,
    )


def raise_first(replies: list[Any]) -> None:
    """Raise the first error of a batch's replies."""
    for reply in replies:
        if isinstance(reply, BaseException):
            raise reply


def text(value: Any) -> Any:
    """A reply value as text (bytes decoded, anything else as it is)."""
    return value.decode() if isinstance(value, bytes) else value


def pairs(flat: list[Any] | dict[Any, Any] | None) -> dict[str, Any]:
    """A hash-like reply (flat ``[f, v, ...]`` or a map) as a dict of text."""
    if not flat:
        return {}
    if isinstance(flat, dict):
        return {text(k): text(v) for k, v in flat.items()}
    return {text(flat[i]): text(flat[i + 1]) for i in range(0, len(flat), 2)}


def scored(reply: Any) -> list[tuple[str, Any]]:
    """A WITHSCORES reply (flat, pairs or a map) as ``[(member, score), ...]``."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return [(text(k), v) for k, v in reply.items()]
    if isinstance(reply[0], list | tuple):
        return [(text(k), v) for k, v in reply]
    return [(text(reply[i]), reply[i + 1]) for i in range(0, len(reply), 2)]
