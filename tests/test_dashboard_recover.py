"""The dashboard's recovery buttons in a real headless Chromium (as ``test_dashboard``):
**Retry** on a failed run's page (its completed task is not executed again, the page
follows the run to ``completed``), and the **Dead letters** page's reasons, **Discard**
and **Requeue** buttons. Screenshots go to ``tests/artifacts/``."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import trio
from _helpers import wait_until
from test_dashboard import ARTIFACTS, CHROMIUM, _browser, _screenshot
from test_server import HANG_GUARD, open_store, running_server, running_worker

import aiki
from aiki.embedded import RedisServerProcess
from aiki_server import Settings

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium binary on PATH")

executed: dict[str, int] = {}
broken: set[str] = set()

flow = aiki.workflow("dash-retry")


@aiki.task("dash-retry-step")
async def step(payload: dict[str, Any]) -> str:
    executed[payload["name"]] = executed.get(payload["name"], 0) + 1
    if payload["name"] in broken:
        raise RuntimeError(f"{payload['name']} is broken")
    return str(payload["name"])


@flow.v("1")
async def flow_v1(ctx: aiki.WorkflowContext, payload: dict[str, Any]) -> Any:
    first = await step.start(ctx, {"name": f"{payload['key']}:first"})
    second = await step.start(ctx, {"name": f"{payload['key']}:second"})
    return [first, second]


def _drive(base_url: str, ids: dict[str, str]) -> dict[str, Any]:
    """The browser session (blocking: runs in a thread while the server serves)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    seen: dict[str, Any] = {}
    driver = _browser()
    wait = WebDriverWait(driver, 30)
    try:
        driver.get(f"{base_url}/runs/{ids['failed']}")
        wait.until(ec.text_to_be_present_in_element((By.ID, "run-status"), "failed"))
        seen["cancel_buttons"] = len(driver.find_elements(By.ID, "btn-cancel"))
        _screenshot(driver, "dashboard-run-retry-before.png")
        driver.find_element(By.ID, "btn-retry").click()
        # Queued, then running: the page polls the run and reloads until it ended.
        wait.until(ec.text_to_be_present_in_element((By.ID, "run-status"), "completed"))
        seen["retry_buttons_left"] = len(driver.find_elements(By.ID, "btn-retry"))
        _screenshot(driver, "dashboard-run-retried.png")

        driver.find_element(By.LINK_TEXT, "Dead letters").click()
        table = wait.until(ec.presence_of_element_located((By.ID, "dead-letters-table")))
        seen["letters"] = table.text
        _screenshot(driver, "dashboard-dead-letters.png")
        row = f"tr[data-letter-id='{ids['poison']}']"
        seen["poison_requeue_buttons"] = len(
            driver.find_elements(By.CSS_SELECTOR, f"{row} [data-letter-action='requeue']")
        )
        driver.find_element(By.CSS_SELECTOR, f"{row} [data-letter-action='discard']").click()
        wait.until(ec.alert_is_present())
        driver.switch_to.alert.accept()
        wait.until(ec.invisibility_of_element_located((By.CSS_SELECTOR, row)))
        row = f"tr[data-letter-id='{ids['stuck']}']"
        driver.find_element(By.CSS_SELECTOR, f"{row} [data-letter-action='requeue']").click()
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "section.empty")))
        seen["after"] = driver.find_element(By.TAG_NAME, "main").text
        seen["console"] = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    finally:
        driver.quit()
    return seen


async def test_retry_button_and_dead_letters_page(module_redis: RedisServerProcess) -> None:
    settings = Settings(redis_url=module_redis.url, port=0, prefix=f"t{uuid.uuid4().hex[:10]}")
    assert settings.redis_url is not None
    async with (
        running_server(settings) as server,
        running_worker(settings.redis_url, settings.prefix, flow),
        aiki.client(redis_url=settings.redis_url, prefix=settings.prefix) as client,
        open_store(settings.redis_url, settings.prefix) as store,
    ):
        broken.add("d1:second")
        failed = await flow_v1.start(client, {"key": "d1"})
        with pytest.raises(aiki.WorkflowFailed):
            await failed.wait_for_completion(timeout=HANG_GUARD)
        broken.discard("d1:second")  # the bug is fixed

        # Poison: a message naming no run; a run whose data cannot be read when taken.
        stream = store.keys.stream("dash-retry", "1")
        await store.redis.command("XADD", stream, "*", "junk", "1")
        stuck = await client._start_run("dash-retry", "1", {"key": "d2"}, None, delay=0.3)
        await store.redis.command("SET", store.keys.tasks(stuck.id), "not a hash")

        async def two_letters() -> bool:
            return len((await store.list_dead_letters())[0]) == 2

        await wait_until(two_letters, timeout=HANG_GUARD, what="two dead letters")
        letters = {d.run_id: d.id for d in (await store.list_dead_letters())[0]}
        await store.redis.command("DEL", store.keys.tasks(stuck.id))  # repaired
        ids = {"failed": failed.id, "poison": letters[None], "stuck": letters[stuck.id]}
        with trio.fail_after(120):
            seen = await trio.to_thread.run_sync(_drive, server.base_url, ids)
        assert await stuck.wait_for_completion(timeout=HANG_GUARD) == ["d2:first", "d2:second"]
        assert await failed.wait_for_completion(timeout=HANG_GUARD) == ["d1:first", "d1:second"]

    assert executed["d1:first"] == 1 and executed["d1:second"] == 2
    assert seen["cancel_buttons"] == 0 and seen["retry_buttons_left"] == 0
    assert "message has no 'run' field" in seen["letters"]
    assert "is a string, not a hash" in seen["letters"] and stuck.id in seen["letters"]
    assert seen["poison_requeue_buttons"] == 0  # nothing to requeue without a run
    assert "No dead letters" in seen["after"]
    assert seen["console"] == [], seen["console"]
    for name in ("run-retry-before", "run-retried", "dead-letters"):
        assert (ARTIFACTS / f"dashboard-{name}.png").stat().st_size > 10_000, name
