"""Typed workflows for the typed-data tests: a pydantic model in, a model out, typed
tasks between, a dataclass child workflow and a typed event.

Run as a worker: ``python tests/workers/typed_flows.py redis://127.0.0.1:PORT [worker-id]``
(prints ``ready`` once subscribed). The task ``hold`` blocks until the key ``release``
exists in that Redis, so a test can SIGKILL the worker after ``count-items`` was recorded.
"""

from __future__ import annotations

import dataclasses
import enum
import sys
import uuid
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlparse

if __name__ == "__main__":  # make `_resp` (in tests/) importable when run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import trio
from _resp import acommand
from pydantic import BaseModel, ConfigDict, Field

import aiki
from workers._serve import run_worker

redis_port: int | None = None  # set for the `hold` task (the kill -9 test)


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: str
    quantity: int = Field(gt=0)


class Order(BaseModel):
    model_config = ConfigDict(extra="forbid")
    order_id: str
    items: list[Item]
    placed_at: datetime
    price: Decimal = Decimal("0")
    hold: bool = False
    wants_approval: bool = False
    with_child: bool = True


class Tally(BaseModel):
    order_id: str
    total_quantity: int


class Status(enum.Enum):
    PACKED = "packed"
    SHIPPED = "shipped"


@dataclasses.dataclass
class Shipment:
    tracking: uuid.UUID
    status: Status
    items: int


class Approval(BaseModel):
    by: str


class Receipt(BaseModel):
    order_id: str
    total_quantity: int
    placed_at: datetime
    price: Decimal
    shipment: Shipment | None = None
    approved_by: str | None = None
    seen: list[str] = []  # the types typed calls returned, in order (replays included)


@aiki.task("count-items")
async def count_items(order: Order) -> Tally:
    assert isinstance(order, Order), type(order)
    return Tally(order_id=order.order_id, total_quantity=sum(i.quantity for i in order.items))


@aiki.task("hold")
async def hold(tally: Tally) -> Tally:
    assert isinstance(tally, Tally), type(tally)
    if redis_port is not None:
        while not await acommand(redis_port, "EXISTS", "release"):  # noqa: ASYNC110
            await trio.sleep(0.02)
    return tally


ship = aiki.workflow("typed-ship")


@ship.v("1")
async def ship_v1(ctx: aiki.WorkflowContext, order: Order) -> Shipment:
    assert isinstance(order, Order), type(order)
    tracking = uuid.uuid5(uuid.NAMESPACE_URL, order.order_id)
    return Shipment(tracking=tracking, status=Status.SHIPPED, items=len(order.items))


typed_orders = aiki.workflow("typed-orders")


@typed_orders.v("1")
async def typed_orders_v1(ctx: aiki.WorkflowContext, order: Order) -> Receipt:
    assert isinstance(order, Order), type(order)
    seen = []
    tally = await count_items.start(ctx, order)
    seen.append(type(tally).__name__)
    if order.hold:
        tally = await hold.start(ctx, tally)
        seen.append(type(tally).__name__)
    shipment = None
    if order.with_child:
        child = await ship_v1.start_as_child(ctx, order)
        shipment = await child.wait_for_completion()
        seen.append(type(shipment).__name__)
    approved_by = None
    if order.wants_approval:
        approval = await ctx.wait_for_event("approve", type=Approval)
        seen.append(type(approval).__name__)
        approved_by = approval.by
    return Receipt(
        order_id=order.order_id,
        total_quantity=tally.total_quantity,
        placed_at=order.placed_at,
        price=order.price,
        shipment=shipment,
        approved_by=approved_by,
        seen=seen,
    )


async def serve(url: str, worker_id: str) -> None:
    global redis_port
    redis_port = urlparse(url).port
    await run_worker(url, worker_id, typed_orders, ship)


if __name__ == "__main__":
    trio.run(serve, sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "typed-worker")
