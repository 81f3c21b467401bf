"""``/login`` and ``/logout``: the dashboard's way in when the server has API keys.

``GET /login`` shows a form asking for a key; ``POST /login`` checks it (in constant
time) and sets the signed session cookie of :mod:`aiki_server._session`, then sends the
browser to the runs page; a wrong key is a 401 with the form again and no cookie.
``POST /logout`` clears the cookie. Without API keys there is nothing to log into:
both send the browser to the runs page.
"""

from __future__ import annotations

import hmac

from quart import Response, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as Redirect

from .._session import COOKIE, MAX_AGE, issue
from .._state import current_state
from ._pages import blueprint


def _https() -> bool:
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.scheme == "https" or forwarded == "https"


async def _form(error: str | None, status: int) -> Response:
    body = await render_template("login.html", error=error, page="login")
    return Response(body, status=status, content_type="text/html; charset=utf-8")


@blueprint.get("/login")
async def login_page() -> Response | Redirect:
    if not current_state().settings.api_keys:
        return redirect(url_for("dashboard.runs_page"), 303)
    return await _form(None, 200)


@blueprint.post("/login")
async def login() -> Response | Redirect:
    keys = current_state().settings.api_keys
    if not keys:
        return redirect(url_for("dashboard.runs_page"), 303)
    given = ((await request.form).get("api_key") or "").strip().encode()
    matched = [key for key in keys if hmac.compare_digest(given, key.encode())]
    if not matched:
        return await _form("That is not one of this server's API keys.", 401)
    response = redirect(url_for("dashboard.runs_page"), 303)
    response.set_cookie(
        COOKIE,
        issue(matched[0]),
        max_age=MAX_AGE,
        path="/",
        secure=_https(),
        httponly=True,
        samesite="Strict",
    )
    return response


@blueprint.post("/logout")
async def logout() -> Response | Redirect:
    response = redirect(url_for("dashboard.login_page"), 303)
    response.delete_cookie(COOKIE, path="/", secure=_https(), httponly=True, samesite="Strict")
    return response
