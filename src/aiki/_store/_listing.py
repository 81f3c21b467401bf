"""Listing runs: a search over the shards' indexes, newest first, with stable paging.

Each shard answers its part on the server (``lua/find_runs.lua``: the smallest of the
query's indexes is walked, each entry looked up in the others, at most a budget of
entries per call); this merges the shards' answers by (creation ms, id), descending.
A shard that spent its budget has only answered down to where it stopped, so the merged
list is only final down to the highest such point: the shards that stopped there go on
until a page is full or every shard is done.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

from ._base import StoreBase
from ._query import RunPage, RunQuery
from ._records import RunRecord, pairs, text
from ._scripts import FindRuns, PruneEnded

SEARCH_BUDGET = 2000
"""Index entries one find_runs call may look at (bounds how long it blocks Redis)."""

_Key = tuple[int, str]  # (creation ms, run id): the listing's order, descending


@dataclass
class _Shard:
    shard: int
    after: _Key | None
    found: list[tuple[_Key, RunRecord]] = field(default_factory=list)
    done: bool = False


class ListingOps(StoreBase):
    async def find_runs(
        self,
        query: RunQuery | None = None,
        *,
        limit: int = 50,
        after: tuple[int, str | None] | None = None,
    ) -> RunPage:
        """One page of the runs ``query`` matches, newest first. ``after`` is where the
        previous page ended: ``(ms, run id)`` (its ``next_cursor``), or ``(ms, None)`` for
        runs created before ``ms``."""
        query = query or RunQuery()
        if after is not None and after[1] is None:
            bound = after[0]
            if query.created_before is not None:
                bound = min(bound, query.created_before)
            query = dataclasses.replace(query, created_before=bound)
            after = None
        start: _Key | None = None if after is None else (after[0], str(after[1]))
        want = limit + 1  # one more than the page says whether there is a next one
        shards = [_Shard(s, start) for s in range(await self.shard_count())]
        while True:
            active = [s for s in shards if not s.done and len(s.found) < want]
            if active:
                replies = await self._batch_with_script(
                    FindRuns.LUA,
                    [
                        [str(a) for a in self._find_call(query, s, want - len(s.found)).evalsha()]
                        for s in active
                    ],
                )
                for state, reply in zip(active, replies, strict=True):
                    if isinstance(reply, BaseException):
                        raise reply
                    self._take_reply(state, reply)
            # Final down to the highest point a shard still has to go on from.
            floors = [s.after for s in shards if not s.done and s.after is not None]
            floor = max(floors) if floors else None
            merged = sorted((item for s in shards for item in s.found), reverse=True)
            final = [run for key, run in merged if floor is None or key >= floor]
            if len(final) >= want or all(s.done or len(s.found) >= want for s in shards):
                page = final[:limit]
                more = len(final) > limit
                cursor = f"{page[-1].created_at}:{page[-1].id}" if more and page else None
                return RunPage(page, cursor)

    def _find_call(self, query: RunQuery, state: _Shard, limit: int) -> FindRuns:
        after = state.after
        return FindRuns(
            indexes=query.indexes(self.keys, state.shard),
            base=self.keys.base(state.shard),
            lower="" if query.created_after is None else query.created_after,
            upper="" if query.created_before is None else query.created_before,
            after_ms="" if after is None else after[0],
            after_id="" if after is None else after[1],
            limit=limit,
            budget=SEARCH_BUDGET,
        )

    @staticmethod
    def _take_reply(state: _Shard, reply: Any) -> None:
        outcome, last_ms, last_id, *found = reply
        for run_id, fields in found:
            run = RunRecord.from_hash(pairs(fields))
            state.found.append(((run.created_at or 0, text(run_id)), run))
        outcome = text(outcome)
        if outcome == "done":
            state.done = True
        else:  # 'full' or 'more': go on after the last entry it looked at
            state.after = (int(float(text(last_ms))), text(last_id))

    async def list_runs(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        limit: int = 50,
        before: int | None = None,
        version: str | None = None,
        since: int | None = None,
        reference_id: str | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> list[RunRecord]:
        """Newest first (one page of :meth:`find_runs`). ``before`` is a creation-time
        cursor (ms, exclusive); ``since`` keeps runs created at or after that time (ms)."""
        query = RunQuery.build(
            status=status,
            workflow=workflow,
            version=version,
            reference_id=reference_id,
            attributes=attributes,
            created_after=since,
            created_before=before,
        )
        return (await self.find_runs(query, limit=limit)).runs

    async def prune_ended(self, *, batch: int = 500) -> int:
        """Forget runs that ended longer ago than the retention (their keys expired):
        their entries in the runs index and every search index. Returns how many."""
        k = self.keys
        removed = 0
        for shard in range(await self.shard_count()):
            raw = await self.redis.command("HGET", k.config(shard), "retention_ms")
            if raw is None:
                continue
            cutoff = int(time.time() * 1000) - int(raw)
            while True:
                done = int(
                    await PruneEnded(
                        ended=k.ended(shard),
                        runs=k.runs_index(shard),
                        base=k.base(shard),
                        cutoff=cutoff,
                        limit=batch,
                    ).call(self.redis)
                )
                removed += done
                if done < batch:
                    break
        return removed
