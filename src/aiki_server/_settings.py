"""The server's settings: one frozen value, built from arguments or the environment.

Making a :class:`Settings` has no side effects (no connection, no file, no port), so the
app module can build one at import time and the CLI can build one from its flags.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from aiki import ConfigurationError
from aiki.codecs import Codec, Encryption, load_keys
from aiki.engine import RedisAddress, check_durability, resolve_implementation

from ._guards import normalize_origin

#: Environment variable -> (Settings field, parser).
_ENV = {
    "AIKI_REDIS_URL": "redis_url",
    "AIKI_HOST": "host",
    "AIKI_PORT": "port",
    "AIKI_PREFIX": "prefix",
    "AIKI_MAX_PAYLOAD_BYTES": "max_payload_bytes",
    "AIKI_MAX_WAIT": "max_wait",
    "AIKI_DATA_DIR": "data_dir",
    "AIKI_DAEMONS": "daemons",
    "AIKI_API_KEYS": "api_keys",
    "AIKI_RETENTION": "retention",
    "AIKI_MAX_EVENTS_PER_RUN": "max_events_per_run",
    "AIKI_REQUEST_TIMEOUT": "request_timeout",
    "AIKI_REDIS_CLIENT": "redis_client",
    "AIKI_DURABILITY": "durability",
    "AIKI_ALLOWED_ORIGINS": "allowed_origins",
}


@dataclass(frozen=True)
class Settings:
    """What an Aiki server needs to know.

    ``redis_url``: the Redis holding all state (``redis://`` or ``rediss://``). The app
    itself requires one; :func:`aiki_server.serve_server` given ``None`` runs an embedded
    Redis child process with its AOF in ``data_dir`` (a temporary directory, lost on
    exit, when ``data_dir`` is ``None`` too): for development, never for production.

    ``host``/``port``: where to listen (``port=0`` picks a free port; the handle from
    :func:`aiki_server.serve_server` says which). ``prefix``: the Redis key prefix, the
    same as the workers' and clients'. ``max_payload_bytes``: the largest run payload
    accepted, as compact UTF-8 JSON. ``max_wait``: the longest long-poll in seconds
    (longer ``/wait?timeout=`` values are clamped to it). ``daemons``: run the timer and
    schedule daemons (safe on several servers at once; turn off for API-only replicas).
    ``durability``: ``"none"`` or ``"fsync"``: API starts, events, cancels and the ends
    that waits report are answered only once Redis has fsynced them (``WAITAOF``; needs
    Redis >= 7.2 or Valkey >= 8 with ``appendonly yes``, checked at start-up).
    ``allowed_origins``: web origins (``https://ops.example.com``) besides the server's
    own whose pages may send unsafe requests (POST, DELETE, ...) to it; others get a 403
    (see :mod:`aiki_server._guards`). ``codecs``: the codecs (``aiki.codecs``) the server
    decodes stored data with, to show it in the API, the CLI and the dashboard (e.g.
    ``(Encryption(keys),)``; compressed data is always shown decoded). Without a key the
    data is shown as encrypted. ``AIKI_CODEC_KEYS`` / ``AIKI_CODEC_KEYS_FILE`` (or
    ``aiki server --codec-keys-file``) give the keys (see :func:`aiki.codecs.load_keys`).
    """

    redis_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 9090
    prefix: str = "aiki"
    max_payload_bytes: int = 1_000_000
    max_wait: float = 60.0
    data_dir: str | None = None
    daemons: bool = True
    api_keys: tuple[str, ...] = ()
    retention: float | None = None
    redis_client: str | None = None
    max_events_per_run: int = 10_000
    request_timeout: float = 90.0
    durability: str = "none"
    allowed_origins: tuple[str, ...] = ()
    codecs: tuple[Codec, ...] = ()

    def __repr__(self) -> str:  # API keys and Redis passwords never reach logs
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        shown["api_keys"] = f"<{len(self.api_keys)} keys>"
        if self.redis_url:
            shown["redis_url"] = repr(RedisAddress.from_url(self.redis_url))
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"

    def __post_init__(self) -> None:
        if self.redis_url is not None:
            if not isinstance(self.redis_url, str):
                raise ConfigurationError(f"redis_url must be a string, got {self.redis_url!r}")
            RedisAddress.from_url(self.redis_url)  # parses only; raises ConfigurationError
        if not isinstance(self.host, str) or not self.host:
            raise ConfigurationError(f"host must be a non-empty string, got {self.host!r}")
        if (
            not isinstance(self.port, int)
            or isinstance(self.port, bool)
            or not 0 <= self.port <= 65535
        ):
            raise ConfigurationError(f"port must be an integer in 0..65535, got {self.port!r}")
        if (
            not isinstance(self.prefix, str)
            or not self.prefix
            or any(c in self.prefix for c in "{} \t\r\n")
        ):
            raise ConfigurationError(
                f"prefix must be a non-empty string without braces or spaces, got {self.prefix!r}"
            )
        if (
            not isinstance(self.max_payload_bytes, int)
            or isinstance(self.max_payload_bytes, bool)
            or self.max_payload_bytes < 1
        ):
            raise ConfigurationError(
                f"max_payload_bytes must be a positive integer, got {self.max_payload_bytes!r}"
            )
        if (
            not isinstance(self.max_wait, int | float)
            or isinstance(self.max_wait, bool)
            or not math.isfinite(self.max_wait)
            or self.max_wait < 0
        ):
            raise ConfigurationError(
                f"max_wait must be a finite number of seconds >= 0, got {self.max_wait!r}"
            )
        if not isinstance(self.daemons, bool):
            raise ConfigurationError(f"daemons must be True or False, got {self.daemons!r}")
        if not isinstance(self.api_keys, tuple) or not all(
            isinstance(k, str) and len(k) >= 16 and k.strip() == k for k in self.api_keys
        ):
            raise ConfigurationError(
                "api_keys must be strings of at least 16 characters without surrounding spaces"
            )
        if self.retention is not None and (
            isinstance(self.retention, bool)
            or not isinstance(self.retention, int | float)
            or not math.isfinite(self.retention)
            or self.retention <= 0
        ):
            raise ConfigurationError(
                f"retention must be a number of seconds > 0, got {self.retention!r}"
            )
        if (
            not isinstance(self.max_events_per_run, int)
            or isinstance(self.max_events_per_run, bool)
            or self.max_events_per_run < 1
        ):
            raise ConfigurationError(
                f"max_events_per_run must be a positive integer, got {self.max_events_per_run!r}"
            )
        if (
            isinstance(self.request_timeout, bool)
            or not isinstance(self.request_timeout, int | float)
            or not math.isfinite(self.request_timeout)
            or self.request_timeout <= self.max_wait
        ):
            raise ConfigurationError(
                "request_timeout must be a number of seconds above max_wait "
                f"({self.max_wait:g}), got {self.request_timeout!r}"
            )
        if not isinstance(self.allowed_origins, tuple) or not all(
            isinstance(o, str) and normalize_origin(o) is not None for o in self.allowed_origins
        ):
            raise ConfigurationError(
                "allowed_origins must be origins like 'https://ops.example.com' "
                f"(scheme, host and optional port, no path), got {self.allowed_origins!r}"
            )
        if self.redis_client is not None:
            resolve_implementation(self.redis_client)
        check_durability("Settings", self.durability)
        if not isinstance(self.codecs, tuple) or not all(isinstance(c, Codec) for c in self.codecs):
            raise ConfigurationError("codecs must be a tuple of aiki.codecs.Codec instances")
        if self.data_dir is not None and (not isinstance(self.data_dir, str) or not self.data_dir):
            raise ConfigurationError(f"data_dir must be a non-empty path, got {self.data_dir!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``AIKI_*`` environment variables (unset ones keep their defaults).

        Reads the variables of ``_ENV`` (``AIKI_REDIS_URL``, ``AIKI_HOST``, ``AIKI_PORT``,
        ``AIKI_PREFIX``, ``AIKI_MAX_PAYLOAD_BYTES``, ``AIKI_MAX_WAIT``, ``AIKI_DATA_DIR``,
        ``AIKI_DAEMONS`` (``1``/``0``, ``true``/``false``), ``AIKI_DURABILITY``, ...); an
        empty value counts as unset. Keyword ``overrides`` win over the environment. A bad
        value raises :class:`aiki.ConfigurationError` naming the variable.
        """
        env = os.environ if environ is None else environ
        types = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {}
        keys_file = env.get("AIKI_API_KEYS_FILE", "").strip()
        if keys_file and "api_keys" not in overrides:
            try:
                with open(keys_file) as f:
                    keys = tuple(line.strip() for line in f if line.strip())
                values["api_keys"] = keys
                cls(api_keys=keys)
            except OSError as exc:
                raise ConfigurationError(
                    f"AIKI_API_KEYS_FILE is invalid: {exc.strerror}: {keys_file!r}"
                ) from None
            except ConfigurationError as exc:
                raise ConfigurationError(f"AIKI_API_KEYS_FILE is invalid: {exc}") from None
        if "codecs" not in overrides:
            codecs = codecs_from_env(env)
            if codecs:
                values["codecs"] = codecs
        for var, name in _ENV.items():
            raw = env.get(var, "").strip()
            if not raw or name in overrides:
                continue
            try:
                values[name] = _parse(raw, str(types[name]))
                cls(**{name: values[name]})  # validate this one value, to name its variable
            except (ValueError, ConfigurationError) as exc:
                detail = str(exc) if isinstance(exc, ConfigurationError) else f"got {raw!r}"
                raise ConfigurationError(f"{var} is invalid: {detail}") from None
        values.update(overrides)
        return cls(**values)


def codecs_from_keys_file(path: str, source: str) -> tuple[Codec, ...]:
    """``(Encryption(keys),)`` with the keys of the file at ``path`` (one
    ``<key id>:<base64 key>`` per line, the current key first). Errors name ``source``
    and the file, never a key."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError as exc:
        raise ConfigurationError(f"{source} is invalid: {exc.strerror}: {path!r}") from None
    return (Encryption(load_keys(text, source=f"{source} {path!r}")),)


def codecs_from_env(env: Mapping[str, str]) -> tuple[Codec, ...]:
    """The codecs ``AIKI_CODEC_KEYS`` or ``AIKI_CODEC_KEYS_FILE`` give (not both)."""
    inline = env.get("AIKI_CODEC_KEYS", "").strip()
    path = env.get("AIKI_CODEC_KEYS_FILE", "").strip()
    if inline and path:
        raise ConfigurationError("set AIKI_CODEC_KEYS or AIKI_CODEC_KEYS_FILE, not both")
    if path:
        return codecs_from_keys_file(path, "AIKI_CODEC_KEYS_FILE")
    if inline:
        return (Encryption(load_keys(inline, source="AIKI_CODEC_KEYS")),)
    return ()


def _parse(raw: str, type_name: str) -> Any:
    if type_name == "bool":
        lowered = raw.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(raw)
    if type_name.startswith("int"):
        return int(raw)
    if type_name.startswith("tuple"):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if type_name.startswith("float"):
        value = float(raw)
        if not math.isfinite(value):
            raise ValueError(raw)
        return value
    return raw
