"""Idempotent starts with codecs (#18): encryption stores a different ciphertext on
every start (a fresh nonce), so a repeated start with the same reference id is
recognised by keyed digests of the plaintext (HMAC under each encryption key), not by
the stored form: the same payload returns the existing run, another payload is a
conflict, across a key rotation, with compression only, and over HTTP through a server
that has the keys. Redis holds the keyed digest, never an unkeyed hash of the payload."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pytest
import trio
from _helpers import running_worker, scan_redis

import aiki
from aiki import _serde
from aiki.codecs import Compression, Encryption
from aiki_server import Settings, serve_server

KEY1, KEY2 = os.urandom(32), os.urandom(32)

flow = aiki.workflow("codec-idempotent")


@flow.v("1")
async def flow_v1(ctx: aiki.WorkflowContext, payload: dict[str, Any]) -> int:
    return len(payload["items"])


def payload(n: int) -> dict[str, Any]:
    return {"order": f"MARKER-IDEMPOTENT-{n}", "items": [f"item-{i}" for i in range(40)]}


async def test_a_repeated_encrypted_start_returns_the_first_run(redis_url: str) -> None:
    async with (
        aiki.client(redis_url=redis_url, codecs=[Compression(), Encryption({1: KEY1})]) as old,
        aiki.client(redis_url=redis_url, codecs=[Encryption({2: KEY2, 1: KEY1})]) as new,
        aiki.client(redis_url=redis_url, codecs=[Encryption({2: KEY2})]) as other,
    ):
        first = await flow_v1.start(old, payload(1), reference_id="r-1")
        again = await flow_v1.start(old, payload(1), reference_id="r-1")  # a new nonce
        assert again.id == first.id
        with pytest.raises(aiki.RunConflict):
            await flow_v1.start(old, payload(2), reference_id="r-1")
        changed = await flow_v1.start(
            old, payload(2), reference_id="r-1", on_conflict="return_existing"
        )
        assert changed.id == first.id
        # A rotated key set (new key first, old kept) meets the start made under key 1;
        # a process without key 1 cannot tell: a conflict, as for another payload.
        assert (await flow_v1.start(new, payload(1), reference_id="r-1")).id == first.id
        with pytest.raises(aiki.RunConflict):
            await flow_v1.start(other, payload(1), reference_id="r-1")
        # A start stores its current key's digest: a repeat needs that key (any of its
        # keys matches), whichever is its own current one.
        second = await flow_v1.start(new, payload(3), reference_id="r-3")
        assert (await flow_v1.start(new, payload(3), reference_id="r-3")).id == second.id
        assert (await flow_v1.start(other, payload(3), reference_id="r-3")).id == second.id
        with pytest.raises(aiki.RunConflict):
            await flow_v1.start(old, payload(3), reference_id="r-3")

        dump = "\n".join(await scan_redis(old))
    plain_sha1 = hashlib.sha1(_serde.dumps(payload(1)).encode()).hexdigest()
    assert plain_sha1 not in dump and "MARKER-IDEMPOTENT" not in dump
    assert f"{first.id}:h" in dump  # the reference holds the run id and a keyed digest


async def test_compression_only_and_plain_starts_recognise_each_other(redis_url: str) -> None:
    async with (
        aiki.client(redis_url=redis_url) as plain,
        aiki.client(redis_url=redis_url, codecs=[Compression(min_size=10)]) as packed,
    ):
        first = await flow_v1.start(plain, payload(1), reference_id="c-1")
        assert (await flow_v1.start(packed, payload(1), reference_id="c-1")).id == first.id
        second = await flow_v1.start(packed, payload(2), reference_id="c-2")
        assert (await flow_v1.start(plain, payload(2), reference_id="c-2")).id == second.id
        assert (await flow_v1.start(packed, payload(2), reference_id="c-2")).id == second.id
        with pytest.raises(aiki.RunConflict):
            await flow_v1.start(packed, payload(3), reference_id="c-1")


async def test_over_http_a_server_with_the_keys_recognises_a_repeat(redis_url: str) -> None:
    codecs = [Encryption({1: KEY1})]
    async with (
        aiki.client(redis_url=redis_url, codecs=codecs) as direct,
        running_worker(direct, flow),
        trio.open_nursery() as nursery,
    ):
        keyed = await nursery.start(
            serve_server, Settings(redis_url=redis_url, port=0, codecs=tuple(codecs))
        )
        async with aiki.client(base_url=keyed.base_url, codecs=codecs) as http:
            first = await flow_v1.start(http, payload(1), reference_id="h-1")
            assert (await flow_v1.start(http, payload(1), reference_id="h-1")).id == first.id
            # ... and the same digests as a client with the keys computes directly.
            assert (await flow_v1.start(direct, payload(1), reference_id="h-1")).id == first.id
            with pytest.raises(aiki.RunConflict):
                await flow_v1.start(http, payload(2), reference_id="h-1")
            assert await first.wait_for_completion(timeout=30) == 40
        nursery.cancel_scope.cancel()
