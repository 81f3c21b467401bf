"""Child workflows: a parent starts one child per shipment and waits for them without
holding a worker slot; cancelling the parent would cancel the children."""

from __future__ import annotations

from typing import Any

import trio

import aiki
from aiki.testing import open_test_environment


@aiki.task("book-courier")
async def book_courier(payload: dict[str, Any]) -> str:
    return f"courier for {payload['parcel']}"


shipment = aiki.workflow("shipment")


@shipment.v("1.0.0")
async def shipment_v1(ctx: aiki.WorkflowContext, payload: dict[str, Any]) -> str:
    return await book_courier.start(ctx, payload)


fulfilment = aiki.workflow("fulfilment")


@fulfilment.v("1.0.0")
async def fulfilment_v1(ctx: aiki.WorkflowContext, payload: dict[str, Any]) -> list[str]:
    children = [await shipment_v1.start_as_child(ctx, {"parcel": p}) for p in payload["parcels"]]
    return [await child.wait_for_completion() for child in children]


async def main() -> list[str]:
    async with open_test_environment(fulfilment, shipment) as env:
        handle = await fulfilment_v1.start(env.client, {"parcels": ["p1", "p2", "p3"]})
        result = await handle.wait_for_completion(timeout=30)
    print(result)
    return result


if __name__ == "__main__":
    trio.run(main)
