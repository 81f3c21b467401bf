"""The whole Redis key schema, in one place (as arq's constants.py, without KEYS scans).

Keys are grouped in **shards**. A shard's keys share the hash tag ``{<n>}``, so on Redis
Cluster everything one transition touches (a run, its workflow version's stream in that
shard, the shard's timers and indexes, the run's children) lives in one hash slot, and
every Lua script touches one slot. A run's shard is written in its id (the first two
hex digits), so any process finds a run's keys from its id alone. A workflow version
declared with ``shards=N`` spreads its runs over shards ``0..N-1`` (so over N slots, so
over the cluster's masters); a child run lives in its parent's shard; a run of a version
with ``concurrency=`` lives in its concurrency key's shard (``concurrency_shard``), so a
key's slots and runs share one slot; schedules and the runs they start live in shard 0.
Without ``shards=`` everything is in shard 0.

``{s}`` below is ``<prefix>:{<shard>}`` (``aiki:{0}``); ``{p}`` is the prefix alone.

=============================================  ======  =========================================
key                                            type    what
=============================================  ======  =========================================
``{s}:run:<run id>``                           hash    the run: id, workflow, version, status,
                                                       payload, result, error, revision,
                                                       attempts, worker, message, reference_id,
                                                       attributes (JSON object of strings),
                                                       priority (absent: 0),
                                                       created_at/started_at/updated_at/ended_at
``{s}:run:<run id>:tasks``                     hash    task address -> task record (JSON)
``{s}:run:<run id>:events``                    hash    ``e:<name>#<n>`` -> event (JSON);
                                                       ``ref:<id>`` dedupe marks; counts
``{s}:run:<run id>:children``                  set     child run ids (cancel cascades)
``{s}:stream:<workflow>:<version>``            stream  one message per execution needed;
                                                       field ``run`` = run id; consumer group
                                                       ``aiki-workers``. A *doorbell* (field
                                                       ``doorbell`` = a priority, no run) says
                                                       "take the best run of the queue"
``{s}:queue:<workflow>:<version>``             zset    waiting runs with a priority: run id ->
                                                       ``(100 - priority) * 1e13 + n`` (``n``:
                                                       its held message's, ``1-<n>``), lowest
                                                       (best) first; runs without one
                                                       that one overtook: ``1e15 +`` their
                                                       place in the stream (``lua/lib.lua``,
                                                       docs/flow-control.md#priorities)
``{s}:held:<workflow>:<version>``              stream  the message of each run in the queue
                                                       or executing from it (ids ``1-<n>``,
                                                       never read with ``>``: the take claims
                                                       it, so heartbeats and claims work as
                                                       for any message); same group
``{s}:reference:<workflow>:<ref id>``          string  ``<run id>:<digest>`` for idempotent
                                                       starts (``reference_id=``; the shard
                                                       is a hash of both); digest: sha1 of
                                                       the payload JSON, or ``h<hex>``, an
                                                       HMAC of it under the starter's
                                                       encryption key (aiki.codecs)
``{s}:runs``                                   zset    the shard's run ids, scored by creation
``{s}:ended``                                  zset    ended run id -> end time (ms): retention
``{s}:timers``                                 zset    parked run id -> due time (ms): retry
                                                       delays, sleeps, delayed starts
``{s}:task-deadlines``                         zset    ``<run id>|<revision>|<task address>`` ->
                                                       deadline (ms) of a running attempt of a
                                                       task with timeout=/heartbeat_timeout=
``{s}:config``                                 hash    deployment settings the scripts read
                                                       (``retention_ms``), one copy per shard
``{s}:concurrency:<workflow>:<version>:<key>`` set     the runs of a version's concurrency key
                                                       (``<key>`` '' = the version's shared key)
                                                       holding a slot: admitted, not ended
``{s}:concurrency-waiting:<workflow>:``        list    the key's runs ``awaiting_concurrency``,
``<version>:<key>``                                    first come first admitted (an entry
                                                       whose run no longer waits is skipped)
``{p}:rate:{<name>[:<key>]}``                  string  a rate limit's state (GCRA: its theoretical
                                                       arrival time, ms); a slot per name+key
``{s}:clock-offset``                           string  the virtual clock's offset (ms) added to
                                                       Redis TIME by every script; written only
                                                       by a time-skipping test environment
                                                       (``aiki._time_skipping``), absent in
                                                       production; one copy per shard
``{s}:index:<kind>:<value>``                   zset    search index: run id -> creation time
                                                       (ms), per kind ``status``, ``workflow``,
                                                       ``version``, ``reference`` (reference
                                                       id) and ``attr:<name>`` (an attribute
                                                       the workflow set); intersected by
                                                       ``find_runs``
``{s}:run:<run id>:indexed``                   set     the index keys (but status) the run is
                                                       in, so pruning it removes it from all
``{0}:schedules``                              hash    schedule id -> definition (JSON)
``{0}:schedules:due``                          zset    schedule id -> next occurrence (ms)
``{0}:schedules:last-run``                     hash    schedule id -> its latest run id
``{0}:schedules:paused``                       hash    paused schedule id -> when (ms); a
                                                       paused schedule has no due entry
``{p}:workflows``                              hash    ``<name>\\x1f<version>`` -> JSON
                                                       registration (timeout, shards, input
                                                       and output JSON Schema: what HTTP
                                                       starts and the daemons need)
``{p}:shards``                                 string  the deployment's shard count: the most any
                                                       version was registered or started with
                                                       (only rises)
``{p}:dead-letters``                           stream  messages no worker could use, and why
``{p}:workers``                                hash    worker id -> JSON heartbeat (id, workflows,
                                                       in_flight, max, last_heartbeat_ms, host,
                                                       pid, ...), every 2 s; removed on stop
``{p}:fsync``                                  string  a counter the ``durability="fsync"``
                                                       barrier increments before each WAITAOF
                                                       (its offset covers earlier writes)
``{p}:run-ended``                              pubsub  one JSON message per run that ends
``{p}:control``                                pubsub  cancel/pause orders for running executions
=============================================  ======  =========================================

The Lua scripts build the names they cannot be given in KEYS (a run read from a stream,
a parent, a due timer's run) with the key builders of ``lua/lib.lua``: ``key_run(base,
id)``, ``key_tasks``, ``key_events``, ``key_children``, ``key_stream(base, workflow,
version)``, ``key_queue`` and ``key_held`` (same arguments; ``sibling(stream, kind)``
gives them from the stream's key), ``key_reference``, ``key_runs``, ``key_ended``,
``key_timers``, ``key_config``, ``key_clock_offset``, ``key_index(base, kind, value)``,
``key_indexed(base, id)``, ``key_concurrency(base, workflow, version, key)``,
``key_concurrency_waiting``, with ``base`` = ``key_base(prefix, shard)`` = ``{s}``
(``base_of(key)`` gives it back from any key of the shard). They must give exactly the
names above (``tests/test_lua.py`` compares them on a real Redis).

``{p}`` (default ``aiki``) lets several deployments share one Redis; every key starts
with it, so an ACL key pattern ``~aiki:*`` covers a deployment.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

GROUP = "aiki-workers"
"""The consumer group every worker joins on every stream."""

TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})
RUN_STATUSES = (
    "scheduled",
    "queued",
    "running",
    "sleeping",
    "awaiting_event",
    "awaiting_retry",
    "awaiting_rate_limit",
    "awaiting_concurrency",
    "awaiting_child_workflow",
    "paused",
    "completed",
    "failed",
    "cancelled",
)


MAX_SHARDS = 256
"""Shards are written in run ids as two hex digits."""


def shard_of(run_id: str) -> int:
    """The shard a run id belongs to: its first two hex digits (0 for ids without)."""
    try:
        return int(run_id[:2], 16) if len(run_id) >= 2 else 0
    except ValueError:
        return 0


def concurrency_shard(workflow: str, key: str, shards: int) -> int:
    """The shard of a concurrency key's runs: every run of one key counts against one
    limit, so they all live in one slot (the version's shared key "" too)."""
    return zlib.crc32(f"{workflow}\x1fconcurrency\x1f{key}".encode()) % max(1, shards)


def with_shard(run_id: str, shard: int) -> str:
    """``run_id`` (hex) rewritten to belong to ``shard``."""
    return f"{shard:02x}{run_id[2:]}"


def reference_shard(workflow: str, reference_id: str, shards: int) -> int:
    """The shard of a reference id: the same on every machine, so repeats meet."""
    return zlib.crc32(f"{workflow}\x1f{reference_id}".encode()) % max(1, shards)


@dataclass(frozen=True)
class Keys:
    """Key names under one prefix."""

    prefix: str = "aiki"

    def base(self, shard: int) -> str:
        """``<prefix>:{<shard>}``: the start of every key of the shard."""
        return f"{self.prefix}:{{{shard}}}"

    def run(self, run_id: str) -> str:
        return f"{self.base(shard_of(run_id))}:run:{run_id}"

    def tasks(self, run_id: str) -> str:
        return f"{self.run(run_id)}:tasks"

    def events(self, run_id: str) -> str:
        return f"{self.run(run_id)}:events"

    def children(self, run_id: str) -> str:
        return f"{self.run(run_id)}:children"

    def stream(self, workflow: str, version: str, shard: int = 0) -> str:
        return f"{self.base(shard)}:stream:{workflow}:{version}"

    def queue(self, workflow: str, version: str, shard: int = 0) -> str:
        """The version's priority queue in ``shard`` (see the table)."""
        return f"{self.base(shard)}:queue:{workflow}:{version}"

    def held(self, workflow: str, version: str, shard: int = 0) -> str:
        """The stream of the messages of the version's runs with a priority."""
        return f"{self.base(shard)}:held:{workflow}:{version}"

    @staticmethod
    def held_of(stream: str) -> str:
        """The held stream beside ``stream`` (a version's stream in a shard)."""
        base, _, rest = stream.partition("}:stream:")
        return f"{base}}}:held:{rest}"

    def run_stream(self, run_id: str, workflow: str, version: str) -> str:
        """The stream that a run's executions go through (in the run's shard)."""
        return self.stream(workflow, version, shard_of(run_id))

    def reference(self, workflow: str, reference_id: str, shard: int) -> str:
        return f"{self.base(shard)}:reference:{workflow}:{reference_id}"

    def runs_index(self, shard: int = 0) -> str:
        return f"{self.base(shard)}:runs"

    def ended(self, shard: int = 0) -> str:
        return f"{self.base(shard)}:ended"

    def timers(self, shard: int = 0) -> str:
        return f"{self.base(shard)}:timers"

    def task_deadlines(self, shard: int = 0) -> str:
        return f"{self.base(shard)}:task-deadlines"

    def config(self, shard: int = 0) -> str:
        return f"{self.base(shard)}:config"

    def concurrency(self, workflow: str, version: str, key: str, shard: int) -> str:
        """The runs holding a slot of a version's concurrency key, in the key's shard."""
        return f"{self.base(shard)}:concurrency:{workflow}:{version}:{key}"

    def concurrency_waiting(self, workflow: str, version: str, key: str, shard: int) -> str:
        """The runs waiting for a slot of a version's concurrency key (a list, FIFO)."""
        return f"{self.base(shard)}:concurrency-waiting:{workflow}:{version}:{key}"

    def rate_limit(self, name: str, key: str | None = None) -> str:
        """A rate limit's state; the whole name (and key) is the hash tag, so on Redis
        Cluster each limit and key lives in a slot of its own."""
        tag = name if key is None else f"{name}:{key}"
        return f"{self.prefix}:rate:{{{tag}}}"

    def clock_offset(self, shard: int = 0) -> str:
        """The virtual clock's offset (time-skipping tests only; see the table)."""
        return f"{self.base(shard)}:clock-offset"

    def index(self, kind: str, value: str, shard: int = 0) -> str:
        """A search index: the runs of ``shard`` whose ``kind`` (``status``,
        ``workflow``, ``version``, ``reference``, ``attr:<name>``) is ``value``."""
        return f"{self.base(shard)}:index:{kind}:{value}"

    def indexed(self, run_id: str) -> str:
        """The index keys a run is in (but its status's), for pruning."""
        return f"{self.run(run_id)}:indexed"

    @property
    def schedules(self) -> str:
        return f"{self.base(0)}:schedules"

    @property
    def schedules_due(self) -> str:
        return f"{self.base(0)}:schedules:due"

    @property
    def schedules_last_run(self) -> str:
        return f"{self.base(0)}:schedules:last-run"

    @property
    def schedules_paused(self) -> str:
        return f"{self.base(0)}:schedules:paused"

    @property
    def workflows(self) -> str:
        return f"{self.prefix}:workflows"

    @property
    def shards(self) -> str:
        return f"{self.prefix}:shards"

    @property
    def generation(self) -> str:
        """A random token written when missing: a new one means Redis lost the state."""
        return f"{self.prefix}:generation"

    @property
    def workers(self) -> str:
        return f"{self.prefix}:workers"

    @property
    def dead_letters(self) -> str:
        return f"{self.prefix}:dead-letters"

    @property
    def fsync_mark(self) -> str:
        """Incremented by the fsync barrier (``_durability``) on its own connection, so
        that its WAITAOF waits for a write made after every write it must cover."""
        return f"{self.prefix}:fsync"

    @property
    def run_ended_channel(self) -> str:
        return f"{self.prefix}:run-ended"

    @property
    def control_channel(self) -> str:
        return f"{self.prefix}:control"

    @staticmethod
    def workflow_field(workflow: str, version: str) -> str:
        return f"{workflow}\x1f{version}"
