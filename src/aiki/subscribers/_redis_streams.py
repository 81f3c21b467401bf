"""The Redis Streams subscriber's options (``aiki.RedisStreams``). What they govern,
how a worker reads, heartbeats and claims is described where it is done, in the
docstring of ``aiki/_store/_streams.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._checks import seconds
from .._errors import ConfigurationError


@dataclass(frozen=True)
class RedisStreams:
    """Options of the Redis Streams subscriber (times in float seconds).

    ``claim_min_idle_time``: a message nobody has touched for this long is taken over
    from its (presumably dead) worker. ``block_time``: how long one read waits for new
    work before looking again.
    """

    claim_min_idle_time: float = 60.0
    block_time: float = 1.0
    heartbeat_interval: float | None = None
    claim_interval: float | None = None

    def __post_init__(self) -> None:
        seconds("RedisStreams", "claim_min_idle_time", self.claim_min_idle_time)
        seconds("RedisStreams", "block_time", self.block_time)
        if self.claim_interval is not None:
            seconds("RedisStreams", "claim_interval", self.claim_interval)
        if self.heartbeat_interval is not None:
            seconds("RedisStreams", "heartbeat_interval", self.heartbeat_interval)
            if not self.heartbeat_interval < self.claim_min_idle_time:
                raise ConfigurationError(
                    "RedisStreams(heartbeat_interval=) must be > 0 and < claim_min_idle_time",
                    field="heartbeat_interval",
                )

    @property
    def effective_heartbeat_interval(self) -> float:
        return self.heartbeat_interval or self.claim_min_idle_time / 4

    @property
    def effective_claim_interval(self) -> float:
        return self.claim_interval or min(max(self.claim_min_idle_time / 2, 0.05), 30.0)
