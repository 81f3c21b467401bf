"""Events: a workflow waits durably for a signal from outside (a payment webhook), with a
timeout; an event sent before the wait is kept, and a repeated reference id counts once."""

from __future__ import annotations

from typing import Any

import trio

import aiki
from aiki.testing import open_test_environment

checkout = aiki.workflow("checkout")


@checkout.v("1.0.0")
async def checkout_v1(ctx: aiki.WorkflowContext, payload: dict[str, Any]) -> dict[str, Any]:
    try:
        payment = await ctx.wait_for_event("payment-confirmed", timeout=payload["timeout"])
    except aiki.EventTimeout:
        return {"order": payload["order"], "status": "expired"}
    return {"order": payload["order"], "status": "paid", "amount": payment["amount"]}


async def main() -> list[Any]:
    async with open_test_environment(checkout) as env:
        paid = await checkout_v1.start(env.client, {"order": "A-1", "timeout": 60})
        # The webhook may arrive twice (retries): the reference id makes it count once.
        await paid.send_event("payment-confirmed", {"amount": 42}, reference_id="psp-991")
        await paid.send_event("payment-confirmed", {"amount": 42}, reference_id="psp-991")
        expired = await checkout_v1.start(env.client, {"order": "A-2", "timeout": 0.5})
        results = [await h.wait_for_completion(timeout=30) for h in (paid, expired)]
    print(results)
    return results


if __name__ == "__main__":
    trio.run(main)
