"""The state store: the Redis key schema and the Lua transitions over it.

The one package (with ``aiki._redis`` under it) that sends Redis commands. This
``__init__`` is its whole interface: code outside the package imports from here, never
from its private modules.
"""

from ._durability import (
    DURABILITY_MODES,
    ENV_DURABILITY,
    FsyncBarrier,
    check_durability,
    open_fsync_barrier,
)
from ._keys import (
    GROUP,
    MAX_SHARDS,
    RUN_STATUSES,
    TERMINAL_STATUSES,
    Keys,
    reference_shard,
    shard_of,
    with_shard,
)
from ._pubsub import Subscription
from ._query import (
    MAX_ATTRIBUTES,
    RunPage,
    RunQuery,
    check_attribute_name,
    check_attributes,
    parse_cursor,
)
from ._records import RunRecord, TakenRun, TakeRefused, choose_run_id, new_run_id
from ._recover import DeadLetter, DeadLetterNotFound
from ._schedules import ScheduleNotFound
from ._store import Store
from ._streams import Message, StreamReader

__all__ = [
    "DURABILITY_MODES",
    "ENV_DURABILITY",
    "GROUP",
    "MAX_ATTRIBUTES",
    "MAX_SHARDS",
    "RUN_STATUSES",
    "TERMINAL_STATUSES",
    "DeadLetter",
    "DeadLetterNotFound",
    "FsyncBarrier",
    "Keys",
    "Message",
    "RunPage",
    "RunQuery",
    "RunRecord",
    "ScheduleNotFound",
    "Store",
    "StreamReader",
    "Subscription",
    "TakeRefused",
    "TakenRun",
    "check_attribute_name",
    "check_attributes",
    "check_durability",
    "choose_run_id",
    "new_run_id",
    "open_fsync_barrier",
    "parse_cursor",
    "reference_shard",
    "shard_of",
    "with_shard",
]
