"""The deployment: registered workflow versions, the shard count, stream groups and the
retention of ended runs."""

from __future__ import annotations

import json
import uuid
from typing import Any

from ._base import StoreBase
from ._keys import GROUP, Keys
from ._records import pairs, raise_first, text
from ._scripts import Generation, RaiseShards


class DeploymentOps(StoreBase):
    async def register_workflows(
        self,
        versions: list[tuple[str, str]],
        worker_id: str,
        timeouts: dict[tuple[str, str], float | None] | None = None,
        shards: dict[tuple[str, str], int] | None = None,
        schemas: dict[tuple[str, str], tuple[Any, Any]] | None = None,
        concurrency: dict[tuple[str, str], dict[str, Any] | None] | None = None,
    ) -> int:
        """Record each version as known (idempotent), with its workflow-level timeout
        (runs started without the code, over HTTP or by schedules, get it from here),
        its ``shards``, the JSON Schemas of its input and output (None: untyped; the
        API validates HTTP starts against the input's) and its ``concurrency``
        (``{"limit": n, "key_function": bool}`` or None: what HTTP starts and schedules
        apply, see ``aiki._start.registered_request``), then create its stream groups
        in every shard of the deployment. Returns the deployment's shard count."""
        commands: list[list[Any]] = []
        for workflow, version in versions:
            input_schema, output_schema = (schemas or {}).get((workflow, version), (None, None))
            commands.append(
                [
                    "HSET",
                    self.keys.workflows,
                    Keys.workflow_field(workflow, version),
                    json.dumps(
                        {
                            "workflow": workflow,
                            "version": version,
                            "worker": worker_id,
                            "timeout": (timeouts or {}).get((workflow, version)),
                            "shards": (shards or {}).get((workflow, version), 1),
                            "input_schema": input_schema,
                            "output_schema": output_schema,
                            "concurrency": (concurrency or {}).get((workflow, version)),
                        }
                    ),
                ]
            )
        raise_first(await self.redis.batch(commands))
        await self.raise_shards(max([1, *(shards or {}).values()]))
        count = await self.shard_count()
        await self.create_groups(versions, range(count))
        return count

    async def generation(self) -> str:
        """The deployment's generation token (created now if missing). A process that
        saw a different one before knows Redis lost its state since (see
        ``lua/generation.lua``): one key, one round trip, cheap to poll."""
        reply = await Generation(key=self.keys.generation, candidate=uuid.uuid4().hex).call(
            self.redis
        )
        return text(reply)

    async def create_groups(self, versions: list[tuple[str, str]], shards: range) -> None:
        """Create the consumer group of each version's stream and held stream (see
        ``_keys``) in each of ``shards`` (reading from the stream's start, so messages
        added before are not missed), and
        give every shard the deployment's retention (shard 0's copy), so runs ending in
        a shard that appeared after the server published it still expire."""
        commands: list[list[Any]] = [
            ["XGROUP", "CREATE", stream, GROUP, "0", "MKSTREAM"]
            for w, v in versions
            for shard in shards
            for stream in (self.keys.stream(w, v, shard), self.keys.held(w, v, shard))
        ]
        retention = await self.redis.command("HGET", self.keys.config(0), "retention_ms")
        if retention is not None:
            commands += [
                ["HSET", self.keys.config(shard), "retention_ms", retention]
                for shard in shards
                if shard
            ]
        for reply in await self.redis.batch(commands):
            if isinstance(reply, Exception) and "BUSYGROUP" in str(reply):
                continue  # the group exists already: fine
            if isinstance(reply, BaseException):
                raise reply

    async def raise_shards(self, shards: int) -> None:
        """Make the deployment's shard count at least ``shards`` (it never goes down)."""
        await RaiseShards(key=self.keys.shards, shards=shards).call(self.redis)

    async def workflow_registration(self, workflow: str, version: str) -> dict[str, Any] | None:
        """What a version's workers registered (timeout, shards), or None."""
        raw = await self.redis.command(
            "HGET", self.keys.workflows, Keys.workflow_field(workflow, version)
        )
        return None if raw is None else dict(json.loads(raw))

    async def workflow_timeout(self, workflow: str, version: str) -> float | None:
        """The registered workflow-level timeout of a version (None: none or unknown)."""
        registration = await self.workflow_registration(workflow, version)
        timeout = (registration or {}).get("timeout")
        return float(timeout) if timeout else None

    async def workflow_known(self, workflow: str, version: str) -> bool:
        reply = await self.redis.command(
            "HEXISTS", self.keys.workflows, Keys.workflow_field(workflow, version)
        )
        return bool(reply)

    async def list_workflows(self) -> list[dict[str, str]]:
        reply = pairs(await self.redis.command("HGETALL", self.keys.workflows))
        return sorted(
            (json.loads(v) for v in reply.values()), key=lambda w: (w["workflow"], w["version"])
        )

    # -- retention ------------------------------------------------------------------
    #
    # The server writes the retention to every shard's config; the scripts that end a
    # run (finish_run, cancel_run) read their shard's copy and set an expiry on the
    # run's keys, so they vanish even if no server runs; the retention daemon drops the
    # expired runs' entries from the runs index, the search indexes and the ``ended``
    # set (``prune_ended``, with the listing).

    async def set_retention(self, seconds: float | None, shards: int | None = None) -> None:
        """Make ended runs expire ``seconds`` after they end (None: keep them), in every
        shard's config (the scripts read their own shard's copy)."""
        k = self.keys
        count = await self.shard_count() if shards is None else shards
        if seconds is None:
            commands = [["HDEL", k.config(s), "retention_ms"] for s in range(count)]
        else:
            ms = str(int(seconds * 1000))
            commands = [["HSET", k.config(s), "retention_ms", ms] for s in range(count)]
        raise_first(await self.redis.batch(commands))
