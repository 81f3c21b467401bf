"""Flow control in Redis: rate limits (``aiki.RateLimit``, docs/flow-control.md).

A rate limit's state is one key per name and key (``Keys.rate_limit``), in a slot of its
own on Redis Cluster: every acquisition of one limit goes to that one key, so the limit
is exact across processes and shards. One script per acquisition.
"""

from __future__ import annotations

from ._base import StoreBase
from ._records import text
from ._scripts import AcquireRate


class FlowOps(StoreBase):
    async def acquire_rate(
        self,
        name: str,
        key: str | None,
        *,
        interval_ms: float,
        burst: int,
        cost: int,
        max_wait: float,
    ) -> tuple[bool, float, float]:
        """Take ``cost`` units of the rate limit ``name`` (``key``): ``(True, seconds to
        wait before the call, when the call may go)`` when reserved (a wait of at most
        ``max_wait``), else ``(False, seconds until they would be free, when)`` and
        nothing is taken. "When" is in seconds since the epoch on Redis's clock: the
        moment the limit grants, whatever the caller's own scheduling delays."""
        reply = await AcquireRate(
            bucket=self.keys.rate_limit(name, key),
            interval=repr(float(interval_ms)),
            burst=burst,
            cost=cost,
            max_wait=repr(float(max_wait) * 1000),
        ).call(self.redis)
        return int(reply[0]) == 1, float(text(reply[1])) / 1000, float(text(reply[2])) / 1000
