"""The dashboard's workflows page and its start form, in a real headless Chromium
(#18 part 2): the registered schemas are shown, a payload that does not fit the input
schema is refused on the page naming the field (nothing is started), and a payload
typed into the form and the JSON editor starts a run that completes. Screenshots go to
``tests/artifacts/``. Skipped when no Chromium is installed, like test_dashboard.py.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import trio
from test_dashboard import ARTIFACTS, CHROMIUM, _browser, _screenshot
from test_server import HANG_GUARD, open_store, running_server, running_worker
from workers.typed_flows import ship, typed_orders

from aiki.embedded import RedisServerProcess
from aiki_server import Settings

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium binary on PATH")

BAD = {
    "order_id": "o-dash",
    "items": [{"sku": "a", "quantity": "many"}],
    "placed_at": "2026-12-06T09:30:00Z",
}
GOOD_ITEMS = {
    "items": [{"sku": "a", "quantity": 4}],
    "placed_at": "2026-12-06T09:30:00Z",
    "with_child": False,
}


def _drive(base_url: str) -> dict[str, Any]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    seen: dict[str, Any] = {}
    driver = _browser()
    wait = WebDriverWait(driver, 20)
    try:
        driver.get(base_url + "/workflows")
        table = wait.until(ec.presence_of_element_located((By.ID, "workflows-table")))
        seen["listed"] = table.text
        row = driver.find_element(By.CSS_SELECTOR, "tr[data-workflow='typed-orders']")
        row.find_element(By.TAG_NAME, "summary").click()
        seen["schema"] = row.find_element(By.CSS_SELECTOR, "pre.json").text
        _screenshot(driver, "dashboard-workflows.png")

        row.find_element(By.LINK_TEXT, "Start a run").click()
        editor = wait.until(ec.presence_of_element_located((By.ID, "payload-editor")))
        seen["skeleton"] = json.loads(editor.get_attribute("value"))
        seen["fields"] = [
            e.get_attribute("name")
            for e in driver.find_elements(By.CSS_SELECTOR, "#start-fields input")
        ]

        editor.clear()
        editor.send_keys(json.dumps(BAD))
        driver.find_element(By.ID, "start-run").click()
        error = wait.until(ec.visibility_of_element_located((By.ID, "start-error")))
        seen["error"] = error.text
        seen["url_after_error"] = driver.current_url
        _screenshot(driver, "dashboard-start-invalid.png")

        editor.clear()
        editor.send_keys(json.dumps(GOOD_ITEMS))
        driver.find_element(By.ID, "field-order_id").send_keys("o-dash")  # the form
        priority = driver.find_element(By.ID, "priority-input")
        priority.send_keys("101")  # out of range: refused on the page, nothing started
        driver.find_element(By.ID, "start-run").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "start-error"), "priority"))
        seen["priority_error"] = driver.find_element(By.ID, "start-error").text
        seen["url_after_priority_error"] = driver.current_url
        priority.clear()
        priority.send_keys("7")
        driver.find_element(By.ID, "start-run").click()
        wait.until(ec.url_contains("/runs/"))
        wait.until(ec.text_to_be_present_in_element((By.ID, "run-status"), "completed"))
        seen["run_url"] = driver.current_url
        seen["run_priority"] = driver.find_element(By.ID, "run-priority").text
        _screenshot(driver, "dashboard-start-completed.png")
        driver.get(base_url + "/")  # the runs list
        listed = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".run-priority")))
        seen["listed_priority"] = listed.text
        seen["console"] = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    finally:
        driver.quit()
    return seen


async def test_start_a_run_from_the_dashboard_form(module_redis: RedisServerProcess) -> None:
    settings = Settings(redis_url=module_redis.url, port=0, prefix=f"t{uuid.uuid4().hex[:10]}")
    assert settings.redis_url is not None
    async with (
        running_server(settings) as server,
        running_worker(settings.redis_url, settings.prefix, typed_orders, ship),
        open_store(settings.redis_url, settings.prefix) as store,
    ):
        with trio.fail_after(HANG_GUARD * 4):
            seen = await trio.to_thread.run_sync(_drive, server.base_url)
        run_id = seen["run_url"].rsplit("/", 1)[1]
        run = await store.get_run(run_id)
    assert "typed-orders" in seen["listed"] and "Order" in seen["listed"]
    assert '"order_id"' in seen["schema"]
    assert set(seen["skeleton"]) == {"order_id", "items", "placed_at"}
    assert "order_id" in seen["fields"]
    assert "payload.items[0].quantity" in seen["error"], seen["error"]
    assert "/runs/" not in seen["url_after_error"]
    assert run is not None and run.status == "completed"
    assert run.payload["order_id"] == "o-dash" and run.result["total_quantity"] == 4
    assert "priority" in seen["priority_error"] and "101" in seen["priority_error"]
    assert "/runs/" not in seen["url_after_priority_error"]
    assert run.priority == 7 and seen["run_priority"].startswith("7")
    assert seen["listed_priority"] == "priority 7"
    assert seen["console"] == [], seen["console"]
    assert (ARTIFACTS / "dashboard-start-completed.png").stat().st_size > 10_000
