"""The dashboard's login (#16 item 6) in a real headless Chromium: with API keys on, a
browser is sent to the login form, a wrong key is refused, the right one opens the
dashboard with an HttpOnly session cookie that page scripts cannot read, the pages'
own writes (``fetch`` to the API) work with it, and logging out ends it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
from test_dashboard import CHROMIUM, _browser

from aiki_server import ServerHandle, Settings, serve_server

KEY = "dash-" + "0123abcd" * 4

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium binary on PATH (install Debian's chromium and chromium-driver)",
)


@pytest.fixture
async def secured(redis_url: str) -> AsyncIterator[ServerHandle]:
    settings = Settings(redis_url=redis_url, port=0, api_keys=(KEY,))
    async with trio.open_nursery() as nursery:
        yield await nursery.start(serve_server, settings)
        nursery.cancel_scope.cancel()


_FETCH_CANCEL = """
const done = arguments[arguments.length - 1];
fetch("/api/v1/runs/no-such-run/cancel", {
  method: "POST",
  headers: {"Content-Type": "application/json", "Accept": "application/json"},
  body: "{}",
}).then(async (r) => done([r.status, await r.text()]), (e) => done([0, String(e)]));
"""


def _drive(base_url: str) -> dict[str, Any]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    seen: dict[str, Any] = {}
    driver = _browser()
    wait = WebDriverWait(driver, 20)
    try:
        driver.get(base_url + "/")
        wait.until(ec.presence_of_element_located((By.NAME, "api_key")))
        seen["sent_to"] = driver.current_url

        driver.find_element(By.NAME, "api_key").send_keys("not-the-key-at-all")
        driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        seen["refused"] = wait.until(
            ec.visibility_of_element_located((By.CSS_SELECTOR, ".error-message"))
        ).text

        driver.find_element(By.NAME, "api_key").send_keys(KEY)
        driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        wait.until(ec.presence_of_element_located((By.ID, "filter-status")))
        seen["after_login"] = driver.current_url
        seen["script_sees_cookie"] = driver.execute_script("return document.cookie")
        seen["cookie"] = driver.get_cookie("aiki_session")
        seen["write"] = driver.execute_async_script(_FETCH_CANCEL)

        driver.find_element(By.CSS_SELECTOR, "form.logout button").click()
        wait.until(ec.presence_of_element_located((By.NAME, "api_key")))
        driver.get(base_url + "/workers")
        wait.until(ec.presence_of_element_located((By.NAME, "api_key")))
        seen["after_logout"] = driver.current_url
        seen["cookie_after_logout"] = driver.get_cookie("aiki_session")
    finally:
        driver.quit()
    return seen


async def test_dashboard_login_in_a_real_browser(secured: ServerHandle) -> None:
    with trio.fail_after(120):
        seen = await trio.to_thread.run_sync(_drive, secured.base_url)
    assert seen["sent_to"].endswith("/login"), seen
    assert "not one of this server's API keys" in seen["refused"]
    assert seen["after_login"].rstrip("/") == secured.base_url, seen
    assert "aiki_session" not in seen["script_sees_cookie"]  # HttpOnly
    cookie = seen["cookie"]
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict", cookie
    assert KEY not in cookie["value"]
    status, body = seen["write"]
    assert status == 404 and "run_not_found" in body, seen["write"]  # authenticated, allowed
    assert seen["after_logout"].endswith("/login"), seen
    assert seen["cookie_after_logout"] is None
