"""Parallel tasks: fan out in a trio nursery inside the workflow, fan in the results.
Each task is memoized by its own address, so the order they finish in does not matter."""

from __future__ import annotations

from typing import Any

import trio

import aiki
from aiki.testing import open_test_environment


@aiki.task("fetch-price")
async def fetch_price(payload: dict[str, Any]) -> float:
    await trio.sleep(0.1)  # a slow API: the five calls overlap
    return {"apple": 0.5, "pear": 0.7, "fig": 1.2, "kiwi": 0.4, "plum": 0.3}[payload["item"]]


pricing = aiki.workflow("pricing")


@pricing.v("1.0.0")
async def pricing_v1(ctx: aiki.WorkflowContext, payload: dict[str, Any]) -> dict[str, Any]:
    prices: dict[str, float] = {}

    async def one(item: str) -> None:
        prices[item] = await fetch_price.start(ctx, {"item": item})

    async with trio.open_nursery() as nursery:  # fan out
        for item in payload["items"]:
            nursery.start_soon(one, item)
    return {"total": round(sum(prices.values()), 2), "prices": prices}  # fan in


async def main() -> dict[str, Any]:
    async with open_test_environment(pricing) as env:
        handle = await pricing_v1.start(
            env.client, {"items": ["apple", "pear", "fig", "kiwi", "plum"]}
        )
        result = await handle.wait_for_completion(timeout=30)
    print(result)
    return result


if __name__ == "__main__":
    trio.run(main)
