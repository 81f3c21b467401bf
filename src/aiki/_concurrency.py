"""``aiki.Concurrency``: how many runs of a workflow version may execute at once, per key.

``@wf.v("1.0", concurrency=aiki.Concurrency(1, key=lambda p: p["customer"]))`` lets at
most one run per customer execute at a time, across every worker process;
``aiki.Concurrency(3)`` (no key) lets at most 3 runs of the version execute at once.
A start may name the key itself (``start(client, payload, concurrency_key="c-42")``),
which wins over the key function.

What "execute" means, and why: a run holds its key's slot from the moment it is admitted
(at its start when a slot is free, else when an earlier run of its key ends) until it
**ends** (completed, failed or cancelled) - also while it sleeps, waits for an event, a
child, a retry delay or a rate limit, or is paused. "At most one run per customer at a
time" is a promise about the customer's business process: two runs of one customer's
order flow must not interleave, and a run that parks halfway is still halfway. (To bound
how much work a worker process does at once, use ``max_concurrent_workflow_runs``.)

A run over its key's limit waits as ``awaiting_concurrency`` in a per-key waiting list
(FIFO within a key), not in the stream: it holds no worker slot and nothing polls for
it. The script that ends a run hands its slot to the key's first waiting run and puts
that run in the stream in the same atomic step, which wakes a worker at once. Each key
has its own list, so a key with a thousand waiting runs does not delay a key with one.
The state lives in Redis (``lua/lib.lua``: ``concurrency_admit``, ``concurrency_wait``,
``concurrency_release``); see docs/flow-control.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._checks import integer
from ._errors import ConfigurationError

__all__ = ["MAX_KEY_LENGTH", "MAX_LIMIT", "MAX_WAIT_KEYS", "Concurrency", "check_key", "count_wait"]

MAX_KEY_LENGTH = 256
"""A concurrency key is part of Redis key names: keep it short."""

MAX_LIMIT = 1_000_000

MAX_WAIT_KEYS = 100
"""Concurrency keys a worker counts waits for separately, per workflow version."""


def check_key(key: Any, where: str) -> str:
    """``key`` as a concurrency key (a non-empty string of at most MAX_KEY_LENGTH
    characters), or ConfigurationError (field ``concurrency_key``) naming ``where``."""
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
        got = f"a string of {len(key)} characters" if isinstance(key, str) else repr(key)
        raise ConfigurationError(
            f"{where}: a concurrency key must be a non-empty string of at most "
            f"{MAX_KEY_LENGTH} characters, got {got}",
            field="concurrency_key",
        )
    return key


@dataclass(frozen=True)
class Concurrency:
    """At most ``limit`` runs of a workflow version execute at once per key.

    ``key`` is a function of the payload (as passed to ``start``) returning the run's key
    (a non-empty string). Without it, the key is the one a start gives with
    ``concurrency_key=``; a run with neither shares the version's single key, so
    ``Concurrency(3)`` alone is a global limit of 3 runs of the version across every
    worker. A run executes from its admission until it ends (see the module doc).
    Bad values raise ``ConfigurationError`` naming the field, at definition."""

    limit: int
    key: Callable[[Any], str] | None = None

    def __post_init__(self) -> None:
        integer("Concurrency", "limit", self.limit, minimum=1)
        if self.limit > MAX_LIMIT:
            raise ConfigurationError(
                f"Concurrency(limit=) must be at most {MAX_LIMIT}, got {self.limit!r}",
                field="limit",
            )
        if self.key is not None and not callable(self.key):
            raise ConfigurationError(
                f"Concurrency(key=) must be a function of the payload returning a string, "
                f"got {self.key!r}",
                field="key",
            )

    def registration(self) -> dict[str, Any]:
        """What a worker registers for the version (``{p}:workflows``): the limit, and
        whether keys come from a function (which a process without the code cannot run:
        an HTTP start must then name its key)."""
        return {"limit": self.limit, "key_function": self.key is not None}

    def key_of(self, payload: Any, given: Any, where: str) -> str:
        """The run's key: ``given`` (a start's ``concurrency_key=``), else ``key(payload)``,
        else "" (the version's one shared key). A key function that raises or returns
        something else than a non-empty string raises ConfigurationError naming it
        (field ``concurrency_key``); nothing has been written then."""
        if given is not None:
            return check_key(given, where)
        if self.key is None:
            return ""
        try:
            key = self.key(payload)
        except Exception as exc:
            raise ConfigurationError(
                f"{where}: the concurrency key function raised {type(exc).__name__}: {exc}",
                field="concurrency_key",
            ) from exc
        return check_key(key, f"{where}: the concurrency key function's result")


def count_wait(waits: dict[str, dict[str, list[float]]], run: Any, waited_ms: int) -> None:
    """Count a run (a TakenRun) that waited ``waited_ms`` for its concurrency slot in
    ``waits`` (a worker's: ``"workflow@version" -> key -> [waits, seconds]``, its registry
    entry, hence ``/metrics``). Past MAX_WAIT_KEYS keys of a version, new keys count
    under ``(other)``: a key per customer cannot grow it without end."""
    keys = waits.setdefault(f"{run.workflow}@{run.version}", {})
    key = run.concurrency_key
    if key not in keys and len(keys) >= MAX_WAIT_KEYS:
        key = "(other)"
    counts = keys.setdefault(key, [0, 0.0])
    counts[0] += 1
    counts[1] += waited_ms / 1000
