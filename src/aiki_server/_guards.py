"""What a request must look like before it may change anything (#16 item 6).

Without API keys (as in ``aiki dev``) any web page a user opens could otherwise drive
the server from the browser: a cross-site form POST needs no CORS permission, and
browsers send ``text/plain``, form and multipart bodies freely. Two checks close that:

* **Origin.** A request with an unsafe method (anything but GET, HEAD, OPTIONS) that
  carries an ``Origin`` header is refused (403) unless that origin is the server's own
  (the Origin's host and port equal the request's ``Host``) or one of
  ``Settings.allowed_origins``. Browsers send ``Origin`` on every cross-origin request
  and on same-origin POSTs; the CLI and the SDK send none and are not affected. The
  opaque origin ``null`` (sandboxed frames, ``file:`` pages) is never allowed.
* **JSON only.** An API write (``/api/...`` with an unsafe method) takes only
  ``application/json`` (parameters such as ``charset`` allowed): another Content-Type,
  or a body without one, is a 415 naming what was sent. No cross-site form can send
  ``application/json`` without a CORS preflight, which this server never grants.

Both are answered before the body is read (:mod:`aiki_server._unread_body` keeps the
connection usable).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from quart import request

from ._errors import ApiError

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
API_PREFIX = "/api/"


def normalize_origin(origin: str) -> str | None:
    """``scheme://host[:port]`` in lower case, or None when ``origin`` is not one."""
    try:
        parts = urlsplit(origin.strip())
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        return None
    return f"{parts.scheme}://{parts.netloc.lower()}"


def check_origin(allowed: frozenset[str]) -> None:
    """403 for an unsafe request from a foreign origin (see the module)."""
    if request.method in SAFE_METHODS:
        return
    origin = request.headers.get("Origin")
    if origin is None:
        return
    normalized = normalize_origin(origin)
    if normalized is not None:
        host = (request.headers.get("Host") or "").strip().lower()
        if normalized in allowed or (host and urlsplit(normalized).netloc == host):
            return
    raise ApiError(
        403,
        "forbidden_origin",
        f"requests from origin {origin[:200]!r} may not change anything on this server "
        "(same-origin pages and the origins in AIKI_ALLOWED_ORIGINS may)",
        "Origin",
    )


def check_json_body() -> None:
    """415 for an API write whose body is not declared ``application/json``."""
    if request.method in SAFE_METHODS or not request.path.startswith(API_PREFIX):
        return
    if request.routing_exception is not None:
        return  # no such route or method: its 404 or 405 says more
    content_type = request.headers.get("Content-Type")
    if content_type is None:
        chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
        if chunked or (request.content_length or 0) > 0:
            raise ApiError(
                415,
                "unsupported_media_type",
                "a request body needs Content-Type: application/json (none was given)",
                "Content-Type",
            )
        return
    if request.mimetype != "application/json":
        raise ApiError(
            415,
            "unsupported_media_type",
            f"the API takes only application/json, not {content_type[:200]!r}",
            "Content-Type",
        )
