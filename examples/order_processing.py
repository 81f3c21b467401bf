"""The seed's order-processing workflow, end to end.

Run it with ``python examples/order_processing.py``: it starts an embedded Redis (with
AOF persistence in a temporary directory), the engine's daemons and a worker
(``aiki.testing.open_test_environment``), starts one run, prints its result, and shuts
everything down.

The workflow and tasks live at module level so that worker processes (and tests) can
import them: ``aiki worker examples.order_processing:worker_workflows``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any

import trio

import aiki
from aiki.testing import open_test_environment


@aiki.task("validate-order")
async def validate_order(payload: dict[str, Any]) -> dict[str, Any]:
    order = payload["order_data"]
    items = order.get("items") or []
    if not items:
        raise ValueError("order has no items")
    for item in items:
        if item.get("quantity", 0) <= 0:
            raise ValueError(f"item {item.get('id')!r} has a non-positive quantity")
    amount = round(sum(i["quantity"] * i.get("price", 0.0) for i in items), 2)
    digest = hashlib.sha256(json.dumps(order, sort_keys=True).encode()).hexdigest()
    return {
        "order_id": f"order-{digest[:12]}",
        "payment_id": f"pay-{digest[12:24]}",
        "amount": amount,
    }


@aiki.task("process-payment")
async def process_payment(payload: dict[str, Any]) -> dict[str, Any]:
    # A real integration would pass aiki.task_context().idempotency_key to the payment
    # provider, so that a charge repeated after a crash is not a second charge.
    return {"charged": payload["amount"], "payment_id": payload["payment_id"], "success": True}


@aiki.task("update-inventory")
async def update_inventory(payload: dict[str, Any]) -> dict[str, Any]:
    reserved = {item["id"]: item["quantity"] for item in payload["items"]}
    return {"reserved": reserved, "units": sum(reserved.values())}


@aiki.task("send-confirmation")
async def send_confirmation(payload: dict[str, Any]) -> dict[str, Any]:
    return {"sent_to": payload["email"], "template": "order-confirmation"}


order_processing = aiki.workflow("order-processing")


@order_processing.v("1.0.0")
async def order_processing_v1(ctx: aiki.WorkflowContext, payload: dict[str, Any]) -> Any:
    validation = await validate_order.start(ctx, {"order_data": payload["order_data"]})
    payment = await process_payment.start(
        ctx, {"payment_id": validation["payment_id"], "amount": validation["amount"]}
    )
    inventory = await update_inventory.start(ctx, {"items": payload["order_data"]["items"]})
    confirmation = await send_confirmation.start(ctx, {"email": payload["email"]})
    return {
        "success": True,
        "order_id": validation["order_id"],
        "charged": payment["charged"],
        "units_reserved": inventory["units"],
        "confirmation_sent_to": confirmation["sent_to"],
    }


EXAMPLE_ORDER = {
    "order_data": {
        "items": [
            {"id": "item-1", "quantity": 2, "price": 12.5},
            {"id": "item-2", "quantity": 1, "price": 4.0},
        ],
        "customer_email": "customer@example.com",
    },
    "email": "customer@example.com",
}


async def main(order: dict[str, Any] = EXAMPLE_ORDER) -> Any:
    async with open_test_environment(
        order_processing,
        max_concurrent_workflow_runs=5,
        claim_min_idle_time=60.0,
        block_time=1.0,
        appendonly=True,
    ) as env:
        handle = await order_processing_v1.start(env.client, order)
        result = await handle.wait_for_completion(timeout=30.0)
        run = await env.client.get_run(handle.id, with_tasks=True)
    print(f"run {handle.id}: {run.status}, {len(run.tasks or {})} tasks recorded")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    trio.run(main)
    sys.exit(0)
