"""The whole Redis key schema, in one place (as arq's constants.py, without KEYS scans).

=============================================  ======  =========================================
key                                            type    what
=============================================  ======  =========================================
``{p}:run:{<run id>}``                         hash    the run: id, workflow, version, status,
                                                       payload, result, error, revision,
                                                       attempts, worker, message, reference_id,
                                                       created_at/started_at/updated_at/ended_at
``{p}:run:{<run id>}:tasks``                   hash    task address -> task record (JSON)
``{p}:run:{<run id>}:events``                  hash    event name -> JSON list of events sent;
                                                       ``ref:<id>`` dedupe marks; ``#count``
``{p}:run:{<run id>}:children``                set     child run ids (cancel cascades)
``{p}:stream:{<workflow>}:<version>``          stream  one message per execution needed;
                                                       field ``run`` = run id; consumer group
                                                       ``aiki-workers``
``{p}:reference:{<workflow>}:<ref id>``       string  ``<run id>:<sha1 of payload>`` for
                                                       idempotent starts (``reference_id=``)
``{p}:runs``                                   zset    every run id, scored by creation (ms)
``{p}:schedules``                              hash    schedule id -> definition (JSON)
``{p}:schedules:due``                          zset    schedule id -> next occurrence (ms)
``{p}:schedules:last-run``                     hash    schedule id -> its latest run id
``{p}:config``                                 hash    deployment settings the scripts read
                                                       (``retention_ms``)
``{p}:ended``                                  zset    ended run id -> end time (ms): retention
``{p}:timers``                                 zset    parked run id -> due time (ms): retry
                                                       delays, sleeps, delayed starts
``{p}:workflows``                              hash    ``<name>\\x1f<version>`` -> JSON
                                                       registration (what HTTP starts may name)
``{p}:dead-letters``                           stream  messages no worker could use, and why
``{p}:workers``                                hash    worker id -> JSON heartbeat (id, workflows,
                                                       in_flight, max, last_heartbeat_ms, host,
                                                       pid, ...), every 2 s; removed on stop
``{p}:run-ended``                              pubsub  one JSON message per run that ends
``{p}:control``                                pubsub  cancel/pause orders for running executions
=============================================  ======  =========================================

A run's keys share the hash tag ``{<run id>}`` so a run's transitions touch one slot.
``{p}`` is the prefix (default ``aiki``), so several deployments can share one Redis.
"""

from __future__ import annotations

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
    "awaiting_child_workflow",
    "paused",
    "completed",
    "failed",
    "cancelled",
)


@dataclass(frozen=True)
class Keys:
    """Key names under one prefix."""

    prefix: str = "aiki"

    def run(self, run_id: str) -> str:
        return f"{self.prefix}:run:{{{run_id}}}"

    def tasks(self, run_id: str) -> str:
        return f"{self.prefix}:run:{{{run_id}}}:tasks"

    def events(self, run_id: str) -> str:
        return f"{self.prefix}:run:{{{run_id}}}:events"

    def children(self, run_id: str) -> str:
        return f"{self.prefix}:run:{{{run_id}}}:children"

    def stream(self, workflow: str, version: str) -> str:
        return f"{self.prefix}:stream:{{{workflow}}}:{version}"

    def reference(self, workflow: str, reference_id: str) -> str:
        return f"{self.prefix}:reference:{{{workflow}}}:{reference_id}"

    @property
    def schedules(self) -> str:
        return f"{self.prefix}:schedules"

    @property
    def schedules_due(self) -> str:
        return f"{self.prefix}:schedules:due"

    @property
    def schedules_last_run(self) -> str:
        return f"{self.prefix}:schedules:last-run"

    @property
    def config(self) -> str:
        return f"{self.prefix}:config"

    @property
    def ended(self) -> str:
        return f"{self.prefix}:ended"

    @property
    def timers(self) -> str:
        return f"{self.prefix}:timers"

    @property
    def runs_index(self) -> str:
        return f"{self.prefix}:runs"

    @property
    def workflows(self) -> str:
        return f"{self.prefix}:workflows"

    @property
    def workers(self) -> str:
        return f"{self.prefix}:workers"

    @property
    def dead_letters(self) -> str:
        return f"{self.prefix}:dead-letters"

    @property
    def run_ended_channel(self) -> str:
        return f"{self.prefix}:run-ended"

    @property
    def control_channel(self) -> str:
        return f"{self.prefix}:control"

    @staticmethod
    def workflow_field(workflow: str, version: str) -> str:
        return f"{workflow}\x1f{version}"
