"""The dashboard's login session: a signed cookie standing for an API key (#16 item 6).

A browser cannot send ``Authorization: Bearer``, so with API keys on, ``/login`` takes
a key in a form and sets the ``aiki_session`` cookie. The cookie holds no key: only a
fingerprint of the key used (16 hex digits of its SHA-256) and a time, signed with
that key (itsdangerous, HMAC-SHA1 over a key derived with a salt). So:

* every server replica holding the same keys accepts it (no shared secret to set up);
* removing a key from the server's keys ends every session opened with it;
* a session lasts :data:`MAX_AGE` seconds, then the form asks again.

The cookie is ``HttpOnly`` (page scripts never see it), ``SameSite=Strict`` (no
cross-site request carries it) and ``Secure`` whenever the login came over HTTPS (the
request's scheme, or ``X-Forwarded-Proto: https`` from a TLS-terminating proxy): over
plain HTTP (``aiki dev`` on localhost) a Secure cookie would never be sent back. A
request authenticated by this cookie that changes something must also carry an allowed
``Origin`` (see :mod:`aiki_server._guards`).
"""

from __future__ import annotations

import hashlib

from itsdangerous import BadSignature, URLSafeTimedSerializer

COOKIE = "aiki_session"
#: Seconds a dashboard login lasts.
MAX_AGE = 12 * 3600
_SALT = "aiki-dashboard-session"


def _fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def issue(key: str) -> str:
    """A session token for one (already checked) API key."""
    return URLSafeTimedSerializer(key, salt=_SALT).dumps(_fingerprint(key))


def is_valid(token: str, keys: tuple[str, ...]) -> bool:
    """Whether ``token`` was issued for one of ``keys`` less than MAX_AGE ago."""
    for key in keys:
        try:
            claimed = URLSafeTimedSerializer(key, salt=_SALT).loads(token, max_age=MAX_AGE)
        except BadSignature:  # (SignatureExpired is one too)
            continue
        if claimed == _fingerprint(key):
            return True
    return False
