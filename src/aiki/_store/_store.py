"""The store: typed operations over the key schema, what the client, worker, daemons
and server call. The one place (with ``aiki._redis`` under it) that sends Redis
commands.

:class:`Store` is assembled from one mixin per concept, each in its own module:

* ``_start``: starting runs (one, or many in one round trip);
* ``_taken``: transitions on a taken run (take, record a task, finish, park, requeue,
  ack, dead-letter), each taking the :class:`TakenRun` it acts for;
* ``_control``: events, early wake-ups, cancel, pause, resume, firing timers;
* ``_recover``: an operator's recovery: retrying failed or cancelled runs, dead letters
  (list, read, discard, requeue);
* ``_deployment``: workflow registrations, shards, stream groups, retention;
* ``_listing``: listing runs across shards;
* ``_observe``: the worker registry, queue statistics, dead letters, raw reads for
  metrics;
* ``_schedules``: schedule storage and firing;
* ``_flow``: flow control (rate limits);
* ``_virtual_clock``: the clock the scripts see, and the virtual clock of time-skipping
  tests (moved forward; what is outstanding, what is due next);
* ``_streams``: the worker's stream reader (reads, claims, heartbeats);
* ``_pubsub``: subscriptions (run-ended notices, control orders).

Every method that changes a run is one Lua transition (``_scripts`` and ``lua/``);
reads are single commands or one batch. Nothing here holds state besides the connection.
"""

from __future__ import annotations

from .._redis import Redis
from ._control import ControlOps
from ._durability import warn_if_not_persistent
from ._flow import FlowOps
from ._listing import ListingOps
from ._observe import ObserveOps
from ._pubsub import Subscription, open_subscription
from ._recover import RecoverOps
from ._schedules import ScheduleOps
from ._start import StartOps
from ._streams import StreamReader
from ._taken import TakenOps
from ._virtual_clock import VirtualClockOps


class Store(
    StartOps,
    TakenOps,
    ControlOps,
    RecoverOps,
    ListingOps,
    ObserveOps,
    ScheduleOps,
    VirtualClockOps,
    FlowOps,
):
    """Run transitions and reads over one Redis connection."""

    async def check_persistence(self) -> bool:
        """Whether Redis keeps its data on disk (AOF or RDB save points); when it does
        not, log a warning once per process and address. At start-up of a client,
        worker or server."""
        return await warn_if_not_persistent(self.redis)

    def stream_reader(
        self, blocking: Redis, consumer: str, shards: list[list[str]]
    ) -> StreamReader:
        """The stream reader of worker ``consumer``: its commands go through this store's
        connection, its blocking reads through ``blocking`` (a connection of its own)."""
        return StreamReader(self.redis, blocking, consumer, shards)

    async def open_subscription(
        self,
        url: str,
        channel: str,
        *,
        name: str,
        implementation: str | None = None,
        request_timeout: float = 5.0,
    ) -> Subscription:
        """Subscribe to ``channel`` on a new connection to ``url`` (a subscribed
        connection can do nothing else); ``aclose()`` the subscription when done."""
        return await open_subscription(
            url, channel, name=name, implementation=implementation, request_timeout=request_timeout
        )
