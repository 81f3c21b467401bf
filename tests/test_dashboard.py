"""The dashboard in a real headless Chromium (driven through chromedriver by selenium)
against a real server, worker and Redis: the runs list, filtering to failed runs, a
failed run's traceback, and pausing, resuming and cancelling a running run with the
page's buttons (checked in Redis). Screenshots go to ``tests/artifacts/``.

Skipped only when no Chromium is installed (Debian: ``apt-get install chromium
chromium-driver``; ``.ci/run`` installs them in CI).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from _helpers import wait_until
from test_server import HANG_GUARD, open_store, running_server, running_worker

import aiki
from aiki.embedded import RedisServerProcess
from aiki_server import Settings

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = next(
    filter(
        None,
        (
            shutil.which(name)
            for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
        ),
    ),
    None,
)
CHROMEDRIVER = shutil.which("chromedriver") or (
    "/usr/lib/chromium/chromedriver" if Path("/usr/lib/chromium/chromedriver").exists() else None
)

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium binary on PATH (install Debian's chromium and chromium-driver)",
)

shop = aiki.workflow("dash-shop")


@aiki.task("dash-reserve")
async def reserve(payload: dict[str, Any]) -> dict[str, Any]:
    return {"reserved": payload["sku"]}


@aiki.task("dash-charge")
async def charge(payload: dict[str, Any]) -> dict[str, Any]:
    if payload.get("decline"):
        raise ValueError(f"card declined for {payload['sku']}")
    if payload.get("slow"):
        await trio.sleep_forever()
    return {"charged": 42}


@shop.v("1")
async def shop_v1(ctx: aiki.WorkflowContext, payload: dict[str, Any]) -> Any:
    reserved = await reserve.start(ctx, {"sku": payload["sku"]})
    charged = await charge.start(ctx, {**payload, **reserved})
    return {**reserved, **charged}


def _browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if CHROMEDRIVER is None:
        pytest.fail(f"Chromium is installed ({CHROMIUM}) but chromedriver is not: install it")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM or ""
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
        "--window-size=1400,1000",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def _screenshot(driver: Any, name: str) -> Path:
    """A full-page screenshot (the window grown to the page's height)."""
    ARTIFACTS.mkdir(exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, min(max(int(height) + 40, 700), 4000))
    path = ARTIFACTS / name
    assert driver.save_screenshot(str(path)), path
    driver.set_window_size(1400, 1000)
    return path


def _drive(base_url: str, ids: dict[str, str], check: Callable[[str], str]) -> dict[str, Any]:
    """The browser session (blocking: runs in a thread while the server serves)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    seen: dict[str, Any] = {}
    driver = _browser()
    wait = WebDriverWait(driver, 20)
    try:
        # The runs list: every run, newest first, with status badges.
        driver.get(base_url + "/")
        wait.until(ec.presence_of_element_located((By.ID, "runs-table")))
        rows = driver.find_elements(By.CSS_SELECTOR, "#runs-table tbody tr")
        seen["listed"] = {
            r.get_attribute("data-run-id"): r.get_attribute("data-status") for r in rows
        }
        _screenshot(driver, "dashboard-runs.png")

        # Filter to failed runs with the form.
        Select(driver.find_element(By.ID, "filter-status")).select_by_value("failed")
        driver.find_element(By.ID, "apply-filters").click()
        wait.until(ec.url_contains("status=failed"))
        rows = driver.find_elements(By.CSS_SELECTOR, "#runs-table tbody tr")
        seen["filtered"] = [r.get_attribute("data-run-id") for r in rows]
        seen["filtered_text"] = driver.find_element(By.ID, "runs-table").text
        _screenshot(driver, "dashboard-runs-failed.png")

        # Open the failed run: its traceback, its tasks in order.
        driver.find_element(By.CSS_SELECTOR, f"a[href$='/runs/{ids['failed']}']").click()
        traceback = wait.until(ec.visibility_of_element_located((By.ID, "run-traceback")))
        seen["traceback"] = traceback.text
        seen["failed_status"] = driver.find_element(By.ID, "run-status").text
        seen["tasks"] = [
            row.find_element(By.TAG_NAME, "strong").text
            for row in driver.find_elements(By.CSS_SELECTOR, "#tasks-table tr.task-row")
        ]
        seen["timeline"] = driver.find_element(By.ID, "timeline").text
        _screenshot(driver, "dashboard-run-failed.png")

        # The running run: pause, resume, then cancel it with the buttons.
        driver.get(f"{base_url}/runs/{ids['running']}")
        wait.until(ec.text_to_be_present_in_element((By.ID, "run-status"), "running"))
        seen["live"] = bool(driver.find_elements(By.ID, "live-indicator"))
        _screenshot(driver, "dashboard-run-running.png")
        driver.find_element(By.ID, "btn-pause").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "run-status"), "paused"))
        seen["after_pause"] = check(ids["running"])
        driver.find_element(By.ID, "btn-resume").click()
        # Resumed: queued, then running again (the page follows by itself).
        wait.until(ec.text_to_be_present_in_element((By.ID, "run-status"), "running"))
        driver.find_element(By.ID, "btn-cancel").click()
        wait.until(ec.alert_is_present())
        alert = driver.switch_to.alert
        seen["confirm"] = alert.text
        alert.accept()
        wait.until(ec.text_to_be_present_in_element((By.ID, "run-status"), "cancelled"))
        seen["cancel_buttons_left"] = len(driver.find_elements(By.ID, "btn-cancel"))
        _screenshot(driver, "dashboard-run-cancelled.png")

        driver.get(base_url + "/workers")
        wait.until(ec.presence_of_element_located((By.ID, "workers-table")))
        seen["workers"] = driver.find_element(By.ID, "workers-table").text
        _screenshot(driver, "dashboard-workers.png")

        seen["console"] = [
            entry for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"
        ]
    finally:
        driver.quit()
    return seen


async def test_dashboard_in_a_real_browser(module_redis: RedisServerProcess) -> None:
    settings = Settings(redis_url=module_redis.url, port=0, prefix=f"t{uuid.uuid4().hex[:10]}")
    assert settings.redis_url is not None
    async with (
        running_server(settings) as server,
        running_worker(settings.redis_url, settings.prefix, shop) as worker,
        aiki.client(redis_url=settings.redis_url, prefix=settings.prefix) as client,
        open_store(settings.redis_url, settings.prefix) as store,
    ):
        for sku in ("apple", "pear"):
            await (await shop_v1.start(client, {"sku": sku})).wait_for_completion(
                timeout=HANG_GUARD
            )
        failed = await shop_v1.start(client, {"sku": "plum", "decline": True})
        with pytest.raises(aiki.WorkflowFailed):
            await failed.wait_for_completion(timeout=HANG_GUARD)
        running = await shop_v1.start(client, {"sku": "fig", "slow": True})

        async def is_running() -> bool:
            return await running.status() == "running"

        await wait_until(is_running, what="the slow run is running")
        trio_token = trio.lowlevel.current_trio_token()

        def check(run_id: str) -> str:
            """The run's status in Redis, read from the browser thread."""

            async def read() -> str:
                run = await store.get_run(run_id)
                return run.status if run else "missing"

            return trio.from_thread.run(read, trio_token=trio_token)

        ids = {"failed": failed.id, "running": running.id}
        with trio.fail_after(120):
            seen = await trio.to_thread.run_sync(_drive, server.base_url, ids, check)

        record = await store.get_run(running.id)
        assert record is not None and record.status == "cancelled", record
        assert record.error is not None and "dashboard" in record.error["message"]
        await wait_until(lambda: worker.in_flight == 0, what="the cancelled execution stopped")

    assert len(seen["listed"]) == 4
    assert seen["listed"][failed.id] == "failed"
    assert seen["listed"][running.id] == "running"
    assert seen["filtered"] == [failed.id]
    assert "card declined for plum" in seen["filtered_text"]
    assert seen["failed_status"] == "failed"
    assert "Traceback (most recent call last)" in seen["traceback"]
    assert "ValueError: card declined for plum" in seen["traceback"]
    assert seen["tasks"] == ["dash-reserve", "dash-charge"]
    assert seen["timeline"].index("run created") < seen["timeline"].index("run failed")
    assert seen["live"] is True
    assert seen["after_pause"] == "paused"
    assert running.id in seen["confirm"]
    assert seen["cancel_buttons_left"] == 0
    assert worker.id in seen["workers"] and "dash-shop@1" in seen["workers"]
    assert seen["console"] == [], seen["console"]  # no script errors, no CSP violations
    for name in ("runs", "runs-failed", "run-failed", "run-running", "run-cancelled", "workers"):
        assert (ARTIFACTS / f"dashboard-{name}.png").stat().st_size > 10_000, name
