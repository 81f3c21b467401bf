"""The app factory: ``create_app(settings)`` puts the API's blueprints, the dashboard,
authentication, request counting, the error shape and the request deadline together.

It does no I/O: the Redis connection and the run-ended listener are opened when the app
starts serving (``before_serving``, in a task of the app's own nursery, see
:class:`~aiki_server._state.AppState`) and closed when it stops. All Redis state goes
through the engine's Store; the server imports no Redis library.

Every API response is JSON (``/metrics`` excepted); every API error is
``{"error": {"type": ..., "message": ..., "field": ...}}`` with a 4xx/5xx status
(:mod:`aiki_server._errors`), and a rejected request writes nothing. The dashboard
serves HTML at ``/``, ``/runs/<id>``, ``/workers`` and ``/schedules``; errors on those
pages are HTML for browsers.
"""

from __future__ import annotations

import hmac

from quart import Response, redirect, request, url_for
from quart_trio import QuartTrio
from werkzeug.wrappers import Response as Redirect

from . import dashboard
from ._deadline import RequestDeadline
from ._errors import ApiError, register_error_handlers
from ._guards import SAFE_METHODS, check_json_body, check_origin, normalize_origin
from ._session import COOKIE, is_valid
from ._settings import Settings
from ._state import AppState, single_leaf
from ._unread_body import UnreadBody
from .api import register_api

_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: The routes answered without an API key: the probes (load balancers and
#: orchestrators call them) and the dashboard's login form.
_OPEN_PATHS = ("/healthz", "/readyz", "/login", "/logout")


def create_app(settings: Settings | None = None) -> QuartTrio:
    """The Aiki server as a Quart-Trio app. Does no I/O until it starts serving."""
    settings = settings if settings is not None else Settings.from_env()
    app = QuartTrio(
        "aiki_server",
        static_folder=str(dashboard.STATIC),
        template_folder=str(dashboard.TEMPLATES),
    )
    # Room for a payload of max_payload_bytes written with whitespace or escapes; the
    # payload itself is measured exactly once parsed.
    app.config["MAX_CONTENT_LENGTH"] = 4 * settings.max_payload_bytes + 65_536
    app.config["BACKGROUND_TASK_SHUTDOWN_TIMEOUT"] = 5
    state = AppState(settings)
    app.extensions["aiki"] = state
    # Every request has a time limit (a 504 JSON error past it): see _deadline.
    app.asgi_app = RequestDeadline(  # type: ignore[assignment,method-assign]
        app.asgi_app, settings.request_timeout
    )
    # A body the app answered without reading is drained (up to 4 times the largest
    # body the app reads) or its connection closed, outside the deadline: see
    # _unread_body.
    app.asgi_app = UnreadBody(  # type: ignore[assignment,method-assign]
        app.asgi_app, drain_bytes=4 * app.config["MAX_CONTENT_LENGTH"], drain_seconds=10.0
    )

    @app.before_serving
    async def _open() -> None:
        state.startup_error = None
        try:
            await app.nursery.start(state.run)
        except Exception as exc:
            state.startup_error = single_leaf(exc)
            raise

    @app.after_serving
    async def _close() -> None:
        await state.close()

    allowed_origins = frozenset(filter(None, map(normalize_origin, settings.allowed_origins)))

    @app.before_request
    async def _guard() -> None:
        """A foreign Origin may not write (403); API writes are JSON (415): _guards."""
        check_origin(allowed_origins)

    @app.before_request
    async def _authenticate() -> Redirect | None:
        """With API keys configured, every route but the health checks and the login
        form needs ``Authorization: Bearer <key>`` (compared in constant time, never
        logged) or the dashboard's session cookie (see _session); a browser asking for
        a page without either is sent to ``/login``."""
        if not settings.api_keys or request.path in _OPEN_PATHS:
            return None
        if request.path.startswith(f"{app.static_url_path}/"):
            return None
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        presented = given.strip().encode()
        if scheme.lower() == "bearer" and any(
            hmac.compare_digest(presented, key.encode()) for key in settings.api_keys
        ):
            return None
        token = request.cookies.get(COOKIE)
        if token and is_valid(token, settings.api_keys):
            if request.method not in SAFE_METHODS and "Origin" not in request.headers:
                raise ApiError(
                    403,
                    "forbidden_origin",
                    "a change made with the dashboard's session cookie must carry an "
                    "Origin header",
                    "Origin",
                )
            return None
        if request.method in ("GET", "HEAD") and dashboard.wants_html():
            return redirect(url_for("dashboard.login_page"), 303)
        raise ApiError(
            401,
            "unauthorized",
            "this server needs an API key: send Authorization: Bearer <key> "
            "(browsers: log in at /login)",
            "Authorization",
        )

    @app.before_request
    async def _json_only() -> None:
        check_json_body()

    @app.after_request
    async def _count(response: Response) -> Response:
        rule = request.url_rule
        method = request.method if request.method in _KNOWN_METHODS else "OTHER"
        route = rule.rule if rule is not None else "unmatched"
        state.requests.labels(method, route, str(response.status_code)).inc()
        return response

    app.register_blueprint(dashboard.blueprint)
    register_api(app)
    register_error_handlers(
        app,
        max_payload_bytes=settings.max_payload_bytes,
        wants_html=dashboard.wants_html,
        html_error=dashboard.html_error,
    )
    return app
