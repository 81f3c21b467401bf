"""The dashboard's run search in a real headless Chromium (as ``tests/test_dashboard.py``):
typing ``customer=c1`` in the Attributes field of the filter form lists exactly the
runs whose workflow set that attribute, and a reference id finds its run."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import trio
from test_dashboard import CHROMIUM, _browser, _screenshot
from test_server import HANG_GUARD, running_server, running_worker

import aiki
from aiki.embedded import RedisServerProcess
from aiki_server import Settings

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium binary on PATH")

tagged = aiki.workflow("dash-search")


@tagged.v("1")
async def tagged_v1(ctx: aiki.WorkflowContext, payload: dict[str, Any]) -> str:
    await ctx.set_attributes(customer=payload["customer"])
    return "ok"


def _search(base_url: str, attr: str, reference: str) -> dict[str, Any]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    seen: dict[str, Any] = {}
    driver = _browser()
    wait = WebDriverWait(driver, 20)
    try:
        driver.get(base_url + "/")
        wait.until(ec.presence_of_element_located((By.ID, "runs-table")))
        seen["all"] = len(driver.find_elements(By.CSS_SELECTOR, "#runs-table tbody tr"))
        box = driver.find_element(By.ID, "filter-attr")
        box.clear()
        box.send_keys(attr)
        driver.find_element(By.ID, "apply-filters").click()
        wait.until(ec.url_contains("attr="))
        rows = driver.find_elements(By.CSS_SELECTOR, "#runs-table tbody tr")
        seen["by_attr"] = [row.get_attribute("data-run-id") for row in rows]
        seen["attr_text"] = driver.find_element(By.ID, "runs-table").text
        seen["attr_kept"] = driver.find_element(By.ID, "filter-attr").get_attribute("value")
        _screenshot(driver, "dashboard-search-attribute.png")

        driver.get(base_url + "/")
        wait.until(ec.presence_of_element_located((By.ID, "filter-reference")))
        driver.find_element(By.ID, "filter-reference").send_keys(reference)
        driver.find_element(By.ID, "apply-filters").click()
        wait.until(ec.url_contains("reference_id="))
        rows = driver.find_elements(By.CSS_SELECTOR, "#runs-table tbody tr")
        seen["by_ref"] = [row.get_attribute("data-run-id") for row in rows]

        driver.get(base_url + "/?attr=bad:name=1")
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "p.note")))
        seen["note"] = driver.find_element(By.CSS_SELECTOR, "p.note").text
        seen["console"] = [
            entry for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"
        ]
    finally:
        driver.quit()
    return seen


async def test_dashboard_attribute_search_in_a_real_browser(
    module_redis: RedisServerProcess,
) -> None:
    settings = Settings(redis_url=module_redis.url, port=0, prefix=f"t{uuid.uuid4().hex[:10]}")
    assert settings.redis_url is not None
    async with (
        running_server(settings) as server,
        running_worker(settings.redis_url, settings.prefix, tagged),
        aiki.client(redis_url=settings.redis_url, prefix=settings.prefix) as client,
    ):
        handles = [await tagged_v1.start(client, {"customer": f"c{n % 3}"}) for n in range(9)]
        ref = await tagged_v1.start(client, {"customer": "c0"}, reference_id="order-5")
        for handle in [*handles, ref]:
            await handle.wait_for_completion(timeout=HANG_GUARD)
        with trio.fail_after(120):
            seen = await trio.to_thread.run_sync(_search, server.base_url, "customer=c1", "order-5")

    c1 = [h.id for h in handles[1::3]]
    assert seen["all"] == 10
    assert sorted(seen["by_attr"]) == sorted(c1)
    assert "customer=c1" in seen["attr_text"] and "customer=c0" not in seen["attr_text"]
    assert seen["attr_kept"] == "customer=c1"
    assert seen["by_ref"] == [ref.id]
    assert "bad:name=1" in seen["note"] and "ignored" in seen["note"]
    assert seen["console"] == [], seen["console"]
