"""Payload codecs (#18 part 3): with encryption on, Redis holds no plaintext of payloads,
results, task records or events; keys rotate (runs started under key 1 complete on
workers with keys [2, 1]); a worker with the wrong key fails the run clearly; task
addresses do not depend on the codecs (the plaintext is hashed)."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime
from typing import Any

import pytest
from _helpers import running_worker, scan_redis, wait_until
from workers.typed_flows import Approval, Item, Order, Receipt, Shipment, ship, typed_orders
from workers.typed_flows import typed_orders_v1 as orders_v1

import aiki
from aiki.codecs import Chain, CodecError, Compression, Encryption

KEY1, KEY2, OTHER = os.urandom(32), os.urandom(32), os.urandom(32)
PLACED = datetime(2026, 12, 6, 9, 30, tzinfo=UTC)


def order(order_id: str, **kw: Any) -> Order:
    return Order(
        order_id=order_id,
        items=[Item(sku="MARKER-SKU-b81", quantity=2)],
        placed_at=PLACED,
        **kw,
    )


def test_a_chain_round_trips_and_keeps_keys_out_of_sight() -> None:
    chain = Chain([Compression(min_size=10), Encryption({2: KEY2, 1: KEY1})])
    value = {"text": "x" * 5000, "n": [1, 2.5, None]}
    wrapped = chain.wrap(value)
    assert wrapped.startswith("aiki:codec/1:zlib,aesgcm/2:") and len(wrapped) < 1000
    assert chain.unwrap(wrapped) == value
    assert chain.unwrap({"plain": True}) == {"plain": True}  # data from before codecs
    old = Chain([Encryption({1: KEY1})]).wrap("under key 1")
    assert chain.unwrap(old) == "under key 1"  # rotation: old data still readable
    codec = Encryption({"k": KEY1})
    for secret in (KEY1.hex(), base64.b64encode(KEY1).decode(), repr(KEY1)):
        assert secret not in repr(codec)
    with pytest.raises(CodecError, match="key id '2'"):
        Chain([Encryption({1: KEY1})]).unwrap(wrapped)
    with pytest.raises(CodecError, match="not the one it was encrypted with"):
        Chain([Compression(min_size=10), Encryption({2: OTHER})]).unwrap(wrapped)


async def test_with_encryption_redis_holds_no_plaintext(redis_url: str) -> None:
    codecs = [Compression(), Encryption({1: KEY1})]
    async with aiki.client(redis_url=redis_url, codecs=codecs) as client:
        async with running_worker(client, typed_orders, ship):
            handle = await orders_v1.start(client, order("MARKER-PAYLOAD-3c1", wants_approval=True))

            async def waiting() -> bool:
                return await handle.status() == "awaiting_event"

            await wait_until(waiting, what="the run awaits its event")
            await handle.send_event("approve", Approval(by="MARKER-EVENT-9d2"))
            receipt = await handle.wait_for_completion(timeout=30)
        assert isinstance(receipt, Receipt) and isinstance(receipt.shipment, Shipment)
        assert receipt.approved_by == "MARKER-EVENT-9d2"
        assert receipt.seen == ["Tally", "Shipment", "Approval"]
        encrypted = await client.get_run(handle.id, with_tasks=True)
        dump = "\n".join(await scan_redis(client))
    # (field names are in the registered schemas; the values are what must not show)
    for marker in ("MARKER-PAYLOAD", "MARKER-SKU", "MARKER-EVENT"):
        assert marker not in dump, (
            marker,
            dump[max(0, dump.find(marker) - 300) : dump.find(marker) + 100],
        )
    assert "aiki:codec/1:" in dump  # what is there instead
    assert str(encrypted.payload).startswith("aiki:codec/1:")  # shown as encrypted

    # The task addresses are those of the same run without codecs.
    async with aiki.client(redis_url=redis_url) as plain:
        async with running_worker(plain, typed_orders, ship):
            again = await orders_v1.start(plain, order("MARKER-PAYLOAD-3c1", wants_approval=True))

            async def waiting_plain() -> bool:
                return await again.status() == "awaiting_event"

            await wait_until(waiting_plain, what="the plain run awaits its event")
            await again.send_event("approve", Approval(by="x"))
            await again.wait_for_completion(timeout=30)
        unencrypted = await plain.get_run(again.id, with_tasks=True)

    def hashed(run: aiki.RunRecord) -> set[str]:  # the addresses that hash their input
        return {a for a in run.tasks or {} if a.startswith(("count-items:", "child:"))}

    assert hashed(encrypted) == hashed(unencrypted) and len(hashed(encrypted)) == 2


async def test_runs_started_under_key_1_complete_on_workers_with_keys_2_and_1(
    redis_url: str,
) -> None:
    async with (
        aiki.client(redis_url=redis_url, codecs=[Encryption({1: KEY1})]) as old,
        aiki.client(redis_url=redis_url, codecs=[Encryption({2: KEY2, 1: KEY1})]) as new,
    ):
        handles = [await orders_v1.start(old, order(f"o-{i}")) for i in range(3)]
        async with running_worker(new, typed_orders, ship):
            for h in handles:
                got = new.get_handle(h.id, result_type=Receipt)
                receipt = await got.wait_for_completion(timeout=30)
                assert receipt.total_quantity == 2
        run = await new.get_run(handles[0].id, with_tasks=True)
        assert str(run.payload).startswith("aiki:codec/1:aesgcm/1:")  # as it was started
        assert str(run.result).startswith("aiki:codec/1:aesgcm/2:")  # written under key 2
        with pytest.raises(CodecError, match="key id '2'"):
            await handles[0].wait_for_completion(timeout=5)  # a process with key 1 only


async def test_a_worker_with_the_wrong_key_fails_the_run_clearly(redis_url: str) -> None:
    async with (
        aiki.client(redis_url=redis_url, codecs=[Encryption({1: KEY1})]) as producer,
        aiki.client(redis_url=redis_url, codecs=[Encryption({1: OTHER})]) as wrong,
    ):
        handle = await orders_v1.start(producer, order("o-wrong"))
        async with running_worker(wrong, typed_orders, ship):
            with pytest.raises(aiki.WorkflowFailed) as failed:
                await handle.wait_for_completion(timeout=30)
        run = await producer.get_run(handle.id, with_tasks=True)
    assert failed.value.error_type == "CodecError"
    assert "cannot decrypt data under key id '1'" in failed.value.error_message
    assert not run.tasks  # nothing ran on garbage
    for secret in (KEY1.hex(), OTHER.hex(), base64.b64encode(OTHER).decode()):
        assert secret not in str(run.error)
