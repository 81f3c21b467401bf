"""Rate limits: one limit shared by two tasks that call the same payment provider, and
a per-customer limit; the limits hold across every worker process (state in Redis)."""

from __future__ import annotations

from typing import Any

import trio

import aiki
from aiki.testing import open_test_environment

# 10 calls a second to the provider, whichever task makes them.
PROVIDER = aiki.RateLimit(10, per=1.0, name="payment-provider")
# And each customer at most 2 charges per second, a refund costing 2 units.
PER_CUSTOMER = aiki.RateLimit(
    2, per=1.0, name="per-customer", key=lambda p: p["customer"], cost=lambda p: p.get("units", 1)
)
CALLS: list[float] = []


def _granted() -> float:
    """When the limits let this call go (Redis's clock): what the limit counts."""
    granted = aiki.task_context().rate_limit_granted_at
    assert granted is not None
    return granted


@aiki.task("charge-card", rate_limit=[PROVIDER, PER_CUSTOMER])
async def charge_card(payload: Any) -> str:
    CALLS.append(_granted())
    return f"charged {payload['customer']}"


@aiki.task("refund-card", rate_limit=PROVIDER)
async def refund_card(payload: Any) -> str:
    CALLS.append(_granted())
    return f"refunded {payload['customer']}"


billing = aiki.workflow("billing")


@billing.v("1.0.0")
async def billing_v1(ctx: aiki.WorkflowContext, payload: Any) -> str:
    if payload.get("refund"):
        return await refund_card.start(ctx, payload)
    return await charge_card.start(ctx, payload)


async def main() -> dict[str, Any]:
    async with open_test_environment(billing) as env:
        payloads = [{"customer": f"c{i % 10}", "refund": i % 3 == 0, "n": i} for i in range(20)]
        handles = await billing_v1.start_many(env.client, payloads)
        results = [await h.wait_for_completion(timeout=60) for h in handles]
    CALLS.sort()
    busiest = max(sum(1 for t in CALLS if start <= t < start + 1.0) for start in CALLS)
    out = {"runs": len(results), "busiest_second": busiest}
    print(out)
    return out


if __name__ == "__main__":
    trio.run(main)
