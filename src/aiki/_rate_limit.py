"""``aiki.RateLimit``: a rate shared by every worker process, declared on tasks.

A limit is a GCRA ("generic cell rate algorithm", a token bucket kept as one timestamp)
in ONE Redis key per name and key, changed by one script per acquisition
(``acquire_rate.lua``), so it holds across any number of worker processes. Each call of a
limited task takes ``cost`` units before each attempt:

* when the units are free now, or will be within ``INLINE_WAIT`` seconds, the script
  reserves them and the attempt waits out the difference in the worker (a reservation
  is a place in line: callers are served in the order they asked);
* a longer wait reserves nothing: the run parks as ``awaiting_rate_limit`` on a durable
  timer, holding no worker slot, and asks again when it wakes.

Why reserve only short waits: a reserved unit is spent at its time even if the caller
comes late, and a parked run comes back through its stream (it may have to wait for a
slot), so reserving for it could let its call land late, bunched with later ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._checks import integer, seconds
from ._errors import ConfigurationError

__all__ = ["INLINE_WAIT", "RateLimit"]

INLINE_WAIT = 1.0
"""Waits for a rate limit up to this many seconds happen inside the worker (the units
reserved); longer ones park the run (``awaiting_rate_limit``, no worker slot)."""


@dataclass(frozen=True)
class RateLimit:
    """At most ``limit`` units per ``per`` seconds, across every worker process.

    ``name`` shares one limit between tasks (default: the task's name); ``key`` (a
    function of the task's payload, returning a string) splits it into one limit per key
    ("20 per second per customer"); ``cost`` (units per call: an int, or a function of
    the payload) weighs calls; ``burst`` is how many units may go back to back (1: calls
    are evenly spaced; in any window of ``per`` seconds at most ``limit + burst`` units
    go). Bad values raise ``ConfigurationError`` naming the field, at definition."""

    limit: int
    per: float = 1.0
    name: str | None = None
    key: Callable[[Any], str] | None = None
    cost: int | Callable[[Any], int] = 1
    burst: int = 1

    def __post_init__(self) -> None:
        integer("RateLimit", "limit", self.limit, minimum=1)
        seconds("RateLimit", "per", self.per)
        if self.name is not None and (not isinstance(self.name, str) or not self.name):
            raise ConfigurationError(
                f"RateLimit(name=) must be a non-empty string, got {self.name!r}", field="name"
            )
        if self.key is not None and not callable(self.key):
            raise ConfigurationError(
                f"RateLimit(key=) must be a function of the payload returning a string, "
                f"got {self.key!r}",
                field="key",
            )
        if not callable(self.cost):
            integer("RateLimit", "cost", self.cost, minimum=1)
        integer("RateLimit", "burst", self.burst, minimum=1)

    @property
    def interval_ms(self) -> float:
        """Milliseconds per unit at the steady rate."""
        return self.per * 1000 / self.limit

    def named(self, default: str) -> RateLimit:
        """This limit with ``default`` as its name if it has none."""
        if self.name is not None:
            return self
        return RateLimit(self.limit, self.per, default, self.key, self.cost, self.burst)

    def key_of(self, payload: Any) -> str | None:
        """The limit's key for this call (None: one limit for every call)."""
        if self.key is None:
            return None
        key = self.key(payload)
        if not isinstance(key, str) or not key:
            raise ConfigurationError(
                f"rate limit {self.name!r}: key= must return a non-empty string, got {key!r}",
                field="key",
            )
        return key

    def cost_of(self, payload: Any) -> int:
        """The units this call takes."""
        cost = self.cost(payload) if callable(self.cost) else self.cost
        if isinstance(cost, bool) or not isinstance(cost, int) or cost < 1:
            raise ConfigurationError(
                f"rate limit {self.name!r}: cost must be an integer >= 1, got {cost!r}",
                field="cost",
            )
        return cost


def rate_limits(owner: str, value: Any) -> tuple[RateLimit, ...]:
    """``rate_limit=`` of a task: one RateLimit or a list of them, named after ``owner``
    when they have no name."""
    if value is None:
        return ()
    items = list(value) if isinstance(value, list | tuple) else [value]
    for item in items:
        if not isinstance(item, RateLimit):
            raise ConfigurationError(
                f"task {owner!r}: rate_limit must be an aiki.RateLimit or a list of them, "
                f"got {item!r}",
                field="rate_limit",
            )
    return tuple(item.named(owner) for item in items)


def park_for(wait: float) -> float:
    """How long a run that could not reserve parks: until about half of INLINE_WAIT is
    left, so that it finds a place in line when it asks again."""
    return max(wait - INLINE_WAIT / 2, INLINE_WAIT / 2, 0.01) if math.isfinite(wait) else 1.0
