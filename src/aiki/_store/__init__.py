"""The state store: the Redis key schema and the Lua transitions over it."""

from ._keys import Keys
from ._store import RunRecord, Store, TakenRun

__all__ = ["Keys", "RunRecord", "Store", "TakenRun"]
