"""Starting runs: one at a time (one script) or many in one round trip."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._errors import ConfigurationError, RunConflict
from .._redis import ScriptRefused
from ._base import StoreBase
from ._keys import shard_of
from ._records import choose_run_id, raise_first, text
from ._scripts import StartRun


class StartOps(StoreBase):
    async def start_run(
        self,
        workflow: str,
        version: str,
        payload_json: str,
        *,
        run_id: str | None = None,
        reference_id: str | None = None,
        on_conflict: str = "error",
        parent_id: str | None = None,
        start_at_ms: int | None = None,
        start_delay_ms: int | None = None,
        timeout: float | None = None,
        sensitive: bool = False,
        shards: int = 1,
        trace: str = "",
        concurrency_key: str | None = None,
        concurrency_limit: int | None = None,
        digests: str = "",
        priority: int | None = None,
    ) -> str:
        """Create a run and enqueue it (or schedule it for ``start_at_ms``, or for
        ``start_delay_ms`` from now on Redis's clock), in one script.

        With ``reference_id``, a repeat start of the same workflow with the same reference
        returns the existing run's id instead of creating another one; if the existing
        run has a different payload, ``on_conflict="error"`` raises RunConflict and
        ``"return_existing"`` returns it anyway. A child run (``parent_id``) started again
        by a replay with the same ``run_id`` is not created twice. ``trace``: the starter's
        trace context, stored with the run for the workers that execute it.
        ``concurrency_limit`` (with ``concurrency_key``, "" for the version's shared key):
        the run executes only when a slot of its key is free (``aiki._concurrency``).
        ``digests``: how a repeat recognises the same payload when it is stored encoded
        (``aiki.codecs.Chain.digests``; "" for the SHA-1 of ``payload_json``).
        ``priority`` (0..100, checked by the caller); None: a child run inherits its
        parent's, any other run has none (0).
        """
        if on_conflict not in ("error", "return_existing"):
            raise ConfigurationError(
                f"on_conflict must be 'error' or 'return_existing', got {on_conflict!r}",
                field="on_conflict",
            )
        run_id = run_id or choose_run_id(
            workflow,
            shards,
            reference_id=reference_id,
            parent_id=parent_id,
            concurrency_key=concurrency_key if concurrency_limit else None,
        )
        k = self.keys
        shard = shard_of(run_id)
        try:
            reply = await StartRun(
                run=k.run(run_id),
                stream=k.stream(workflow, version, shard),
                runs=k.runs_index(shard),
                # Unused keys are still real key names under the prefix (never ''), so
                # that an ACL limited to the prefix's keys allows the call.
                reference=k.reference(workflow, reference_id or "", shard),
                children=k.children(parent_id or run_id),
                timers=k.timers(shard),
                id=run_id,
                workflow=workflow,
                version=version,
                payload=payload_json,
                reference_id=reference_id or "",
                on_conflict=on_conflict,
                parent_id=parent_id or "",
                start_at=_start_at(start_at_ms, start_delay_ms),
                timeout_ms="" if timeout is None else int(timeout * 1000),
                sensitive="1" if sensitive else "",
                trace=trace,
                concurrency_key=concurrency_key or "",
                concurrency_limit="" if concurrency_limit is None else int(concurrency_limit),
                digests=digests,
                priority="" if priority is None else priority,
            ).call(self.redis)
        except ScriptRefused as refused:
            if refused.code == "CONFLICT":
                raise RunConflict(workflow, reference_id or "", refused.detail) from None
            raise
        await self.acknowledged()
        return str(text(reply[0]))

    async def start_runs(
        self,
        workflow: str,
        version: str,
        items: Sequence[tuple[str, str, str | None]],
        *,
        timeout: float | None = None,
        trace: str = "",
        concurrency_limit: int | None = None,
        priority: int = 0,
    ) -> None:
        """Create and enqueue several runs ``(run id, payload JSON, concurrency key)`` in
        ONE round trip (a pipeline of start scripts; each run is created atomically by its
        own; each run id names its shard)."""
        k = self.keys
        # Strings: a pipeline's arguments are sent as they are (GLIDE takes no ints).
        timeout_ms = "" if timeout is None else str(int(timeout * 1000))
        limit = "" if concurrency_limit is None else str(int(concurrency_limit))
        commands: list[list[Any]] = [
            StartRun(
                run=k.run(run_id),
                stream=k.stream(workflow, version, shard_of(run_id)),
                runs=k.runs_index(shard_of(run_id)),
                reference=k.reference(workflow, "", shard_of(run_id)),
                children=k.children(run_id),
                timers=k.timers(shard_of(run_id)),
                id=run_id,
                workflow=workflow,
                version=version,
                payload=payload_json,
                reference_id="",
                on_conflict="error",
                parent_id="",
                start_at="",
                timeout_ms=timeout_ms,
                sensitive="",
                trace=trace,
                concurrency_key=key or "",
                concurrency_limit=limit,
                priority=str(priority),
            ).evalsha()
            for run_id, payload_json, key in items
        ]
        raise_first(await self._batch_with_script(StartRun.LUA, commands))
        await self.acknowledged()  # one fsync wait for the whole batch


def _start_at(start_at_ms: int | None, start_delay_ms: int | None) -> str:
    """The script's ``start_at``: a time, ``+<ms>`` from now on Redis's clock, or ''."""
    if start_delay_ms is not None:
        return f"+{int(start_delay_ms)}"
    return "" if start_at_ms is None else str(int(start_at_ms))
