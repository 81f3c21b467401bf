"""What every implementation of Aiki's Redis connection offers, and the shared pieces.

The interface is deliberately small — run one command, run a Lua script, run a batch,
subscribe and receive pub/sub messages — so that the implementations (valkey-glide, the
default; redis-py through trio-asyncio) pass the same conformance tests.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlparse

from .._errors import ConfigurationError, ConnectionFailed

Arg = str | bytes | int | float


class ScriptRefused(Exception):
    """A Lua transition refused to write (stale revision, wrong status, missing run).

    ``code`` is the first word of the script's error reply (``STALE``, ``MISSING``, ...).
    Internal: the store turns it into behaviour or public errors.
    """

    def __init__(self, code: str, detail: str) -> None:
        self.code = code
        self.detail = detail
        super().__init__(f"{code}: {detail}")


class GroupMissing(ConnectionFailed):
    """A stream or its consumer group is missing (``NOGROUP``; ``UNBLOCKED`` when a
    blocked read's stream vanished): Redis lost the deployment's state (emptied by
    FLUSHALL, restarted without persistence, failed over to an empty replica).

    A ConnectionFailed, so that every path that already rides out an outage (retries
    with backoff) does so here too; the worker catches it first and registers its
    workflow versions again. Internal."""


# Error replies that mean the stream/group is gone (also inside a script's error text).
GROUP_MISSING_CODES = ("NOGROUP", "UNBLOCKED")

# The codes Aiki's own scripts refuse with (see _store/_scripts.py).
REFUSAL_CODES = frozenset({"STALE", "MISSING", "EXISTS", "CONFLICT", "ENDED", "LIMIT"})
# Error replies that mean "Redis cannot serve right now" (loading its AOF, a failover,
# out of memory, a busy script): retried like a lost connection, never taken for a
# refusal.
TRANSIENT_CODES = frozenset(
    {
        "LOADING",
        "READONLY",
        "BUSY",
        "MASTERDOWN",
        "TRYAGAIN",
        "CLUSTERDOWN",
        "OOM",
        "NOREPLICAS",
        "MISCONF",
    }
)


def parse_refusal(text: str) -> Exception | None:
    """``"STALE run is ..."`` (or ``"STALE: ..."``) -> ScriptRefused; a missing stream or
    group (NOGROUP, UNBLOCKED; also inside a script's error) -> GroupMissing; a transient
    error reply (LOADING, READONLY, OOM, ...) -> ConnectionFailed; anything else -> None."""
    # The reply's code is its first all-capitals word (client libraries may put their
    # own words before it: "An error was signalled by the server: - ResponseError: ...").
    words = text.split()
    for part in words:
        code = part.rstrip(":")
        if len(code) >= 2 and code.isalpha() and code.isupper():
            if code in REFUSAL_CODES:
                return ScriptRefused(code, text.split(part, 1)[1].lstrip(": ").strip())
            break
    if any(word.rstrip(":") in GROUP_MISSING_CODES for word in words):
        return GroupMissing(f"Redis lost a stream or consumer group: {text.strip()}")
    for part in words:
        code = part.rstrip(":")
        if len(code) >= 2 and code.isalpha() and code.isupper():
            if code in TRANSIENT_CODES:
                return ConnectionFailed(f"Redis cannot serve now: {text.strip()}")
            return None
    return None


_BOOLEANS = {"yes": True, "true": True, "1": True, "no": False, "false": False, "0": False}


@dataclass(frozen=True)
class RedisAddress:
    """Where Redis is, parsed from a ``redis://`` or ``rediss://`` URL."""

    host: str
    port: int
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    # TLS options from the URL's query (redis-py's names): ssl_ca_certs, ssl_certfile,
    # ssl_keyfile (paths), ssl_cert_reqs=none (no verification; tests only).
    tls_ca_path: str | None = None
    tls_cert_path: str | None = None
    tls_key_path: str | None = None
    tls_insecure: bool = False
    # ``?cluster=yes|no``: whether this is a Redis Cluster node (None: ask the server).
    cluster: bool | None = None

    def __repr__(self) -> str:  # never show the password
        auth = f"{self.username or ''}:***@" if self.password else ""
        scheme = "rediss" if self.tls else "redis"
        return f"RedisAddress({scheme}://{auth}{self.host}:{self.port}/{self.db})"

    @classmethod
    def from_url(cls, url: str) -> RedisAddress:
        parsed = urlparse(url)
        if parsed.scheme not in ("redis", "rediss"):
            raise ConfigurationError(
                f"redis_url must start with redis:// or rediss://, got {parsed.scheme!r}://..."
            )
        db = 0
        path = parsed.path.lstrip("/")
        if path:
            try:
                db = int(path)
            except ValueError:
                raise ConfigurationError(
                    f"redis_url database must be a number, got {path!r}"
                ) from None
        try:
            port = parsed.port or 6379
        except ValueError:
            raise ConfigurationError("redis_url has an invalid port") from None
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        known = {"ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "cluster"}
        for name in query:
            if name not in known:
                raise ConfigurationError(
                    f"redis_url has an unknown option {name!r} (known: {', '.join(sorted(known))})"
                )
        cluster_option = query.pop("cluster", None)
        cluster: bool | None = None
        if cluster_option is not None:
            if cluster_option.lower() not in _BOOLEANS:
                raise ConfigurationError(
                    f"redis_url cluster must be yes or no, got {cluster_option!r}"
                )
            cluster = _BOOLEANS[cluster_option.lower()]
        if query and parsed.scheme != "rediss":
            raise ConfigurationError("redis_url TLS options need the rediss:// scheme")
        for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
            if name in query and not os.path.isfile(query[name]):
                raise ConfigurationError(f"redis_url {name}: no such file {query[name]!r}")
        if query.get("ssl_cert_reqs", "required") not in ("required", "none"):
            raise ConfigurationError("redis_url ssl_cert_reqs must be 'required' or 'none'")
        return cls(
            host=parsed.hostname or "127.0.0.1",
            port=port,
            db=db,
            username=unquote(parsed.username) if parsed.username else None,
            password=unquote(parsed.password) if parsed.password else None,
            tls=parsed.scheme == "rediss",
            tls_ca_path=query.get("ssl_ca_certs"),
            tls_cert_path=query.get("ssl_certfile"),
            tls_key_path=query.get("ssl_keyfile"),
            tls_insecure=query.get("ssl_cert_reqs") == "none",
            cluster=cluster,
        )


class Lua:
    """A Lua script, loaded once per connection and called by its SHA (EVALSHA).

    Implementations may cache their own script objects in ``cache`` (by implementation)."""

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()
        self.cache: dict[str, Any] = {}


class Redis(Protocol):
    """One connection to Redis (to a Redis Cluster when ``cluster``)."""

    address: RedisAddress
    blocking: bool
    cluster: bool

    async def load_script(self, lua: Lua) -> None:
        """Load ``lua`` on the server (every primary of a cluster), for pipelined
        EVALSHAs."""

    async def command(self, *args: Arg) -> Any:
        """Run one Redis command and return its reply."""

    async def script(self, lua: Lua, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        """Run a Lua script atomically; a refusal raises ScriptRefused."""

    async def batch(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        """Several commands in one round trip (a pipeline, not a transaction); a command
        that fails has its (mapped) exception in its reply slot."""

    async def subscribe(self, *channels: str) -> None:
        """Subscribe this connection (one of its own) to ``channels``."""

    async def next_message(self) -> tuple[str, bytes]:
        """Wait for the next pub/sub message: (channel, data)."""

    async def aclose(self) -> None:
        """Close the connection (never raises)."""
