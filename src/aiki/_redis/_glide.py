"""The valkey-glide implementation of Aiki's Redis interface (the default).

GLIDE's async client runs natively on trio (and asyncio) through anyio and measured
cheapest per call from trio on this machine. Its traps, handled here:

* GLIDE multiplexes ONE connection per node: a blocking ``XREADGROUP ... BLOCK`` would
  stall every command queued behind it. Blocking reads therefore use a dedicated
  connection (``connect(..., blocking=True)``), never the shared one.
* Its default request timeout is 250 ms; we set it deliberately (and, for blocking
  connections, above the block time).
* It logs to the console by default; we turn that off once per process.
* A cancelled blocking call leaves the server-side BLOCK running on that connection, so a
  blocking connection is closed, not reused, after a cancellation.
* Redis Cluster needs GLIDE's cluster client (it follows MOVED/ASK and routes each
  command by its key's slot). ``connect`` asks the server (``INFO cluster``) once per
  address and process unless the URL says ``?cluster=yes|no``.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
from collections.abc import Sequence
from typing import Any

from .._errors import ConfigurationError, ConnectionFailed
from ._interface import Arg, Lua, RedisAddress, parse_refusal

log = logging.getLogger("aiki.redis")


_logging_configured = False


def _configure_glide_logging() -> None:
    global _logging_configured
    if _logging_configured:
        return
    from glide import Logger, LogLevel

    level = os.environ.get("AIKI_GLIDE_LOG", "OFF").upper()
    Logger.set_logger_config(getattr(LogLevel, level, LogLevel.OFF))
    _logging_configured = True


def _map_error(exc: BaseException) -> BaseException:
    """Turn a GLIDE error into ScriptRefused (script refusals) or ConnectionFailed."""
    from glide import ClosingError, RequestError
    from glide import ConnectionError as GlideConnectionError
    from glide import TimeoutError as GlideTimeoutError

    if isinstance(exc, RequestError) and not isinstance(
        exc, GlideConnectionError | GlideTimeoutError
    ):
        return parse_refusal(str(exc)) or exc
    if isinstance(exc, GlideConnectionError | ClosingError | GlideTimeoutError):
        return ConnectionFailed(f"Redis: {exc}")
    return exc


def _script(lua: Lua) -> Any:
    """GLIDE's Script object for ``lua`` (made once per process)."""
    script = lua.cache.get("glide")
    if script is None:
        from glide import Script

        if not _loaded_scripts:
            atexit.register(_drop_glide_scripts)
        script = lua.cache["glide"] = Script(lua.source)
        _loaded_scripts.append(lua)
    return script


_loaded_scripts: list[Lua] = []


def _drop_glide_scripts() -> None:
    """Free GLIDE's Script objects at exit while the interpreter is still whole.

    Left for interpreter teardown, ``glide.Script.__del__`` runs after its cffi module is
    gone and prints "Exception ignored ... TypeError" for every script a process used."""
    for lua in _loaded_scripts:
        lua.cache.pop("glide", None)
    _loaded_scripts.clear()


def _redact(text: str, address: RedisAddress) -> str:
    return text.replace(address.password, "***") if address.password else text


class GlideRedis:
    """One connection to Redis (GLIDE multiplexes every concurrent call over it); with
    ``cluster``, one connection per node of a Redis Cluster."""

    def __init__(
        self, client: Any, address: RedisAddress, *, blocking: bool, cluster: bool = False
    ) -> None:
        self._client = client
        self.address = address
        self.blocking = blocking
        self.cluster = cluster

    async def load_script(self, lua: Lua) -> None:
        """Load ``lua`` (on every primary of a cluster) so a pipelined EVALSHA finds it."""
        try:
            if self.cluster:
                from glide import AllPrimaries

                await self._client.custom_command(
                    ["SCRIPT", "LOAD", lua.source], route=AllPrimaries()
                )
            else:
                await self._client.custom_command(["SCRIPT", "LOAD", lua.source])
        except Exception as exc:
            raise _map_error(exc) from exc

    async def command(self, *args: Arg) -> Any:
        """Run one Redis command and return its reply."""
        try:
            return await self._client.custom_command(list(args))
        except Exception as exc:
            raise _map_error(exc) from exc

    async def script(self, lua: Lua, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        """Run a Lua script atomically (EVALSHA, loading it on first use)."""
        try:
            return await self._client.invoke_script(
                _script(lua), keys=list(keys), args=[str(a) for a in args]
            )
        except Exception as exc:
            raise _map_error(exc) from exc

    async def batch(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        """Run several commands in one round trip (a pipeline, not a transaction).

        A command that fails has its exception object in its reply slot."""
        from glide import Batch, ClusterBatch

        if not commands:
            return []
        # Not atomic, so a cluster client may split it by node.
        batch = ClusterBatch(is_atomic=False) if self.cluster else Batch(is_atomic=False)
        for cmd in commands:
            batch.custom_command(list(cmd))
        try:
            replies = await self._client.exec(batch, raise_on_error=False)
        except Exception as exc:
            raise _map_error(exc) from exc
        return [_map_error(r) if isinstance(r, Exception) else r for r in replies or []]

    async def subscribe(self, *channels: str) -> None:
        """Subscribe this connection to ``channels`` (use a connection of its own)."""
        try:
            await self._client.subscribe(set(channels), timeout_ms=5000)
        except Exception as exc:
            raise _map_error(exc) from exc

    async def next_message(self) -> tuple[str, bytes]:
        """Wait for the next pub/sub message on a subscribed connection: (channel, data)."""
        try:
            msg = await self._client.get_pubsub_message()
        except Exception as exc:
            raise _map_error(exc) from exc
        channel = msg.channel.decode() if isinstance(msg.channel, bytes) else msg.channel
        data = msg.message if isinstance(msg.message, bytes) else str(msg.message).encode()
        return channel, data

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await self._client.close()


async def connect(
    url: str,
    *,
    name: str = "aiki",
    blocking: bool = False,
    request_timeout: float = 5.0,
    cluster: bool | None = None,
) -> GlideRedis:
    """Open one connection to the Redis at ``url``.

    ``blocking=True`` marks a connection reserved for blocking reads; its
    ``request_timeout`` must exceed the longest BLOCK issued on it. ``cluster``: known
    to be (or not to be) a Redis Cluster (None: the URL's option, else ask the server).
    """
    _configure_glide_logging()
    address = RedisAddress.from_url(url)
    if cluster is None:
        cluster = address.cluster
    if cluster is None:
        cluster = await _is_cluster(address)
    return await _open(
        address, cluster=cluster, name=name, blocking=blocking, request_timeout=request_timeout
    )


async def _open(
    address: RedisAddress, *, cluster: bool, name: str, blocking: bool, request_timeout: float
) -> GlideRedis:
    from glide import (
        AdvancedGlideClientConfiguration,
        AdvancedGlideClusterClientConfiguration,
        BackoffStrategy,
        GlideClient,
        GlideClientConfiguration,
        GlideClusterClient,
        GlideClusterClientConfiguration,
        NodeAddress,
        ServerCredentials,
        TlsAdvancedConfiguration,
    )

    credentials = (
        ServerCredentials(password=address.password, username=address.username)
        if address.password
        else None
    )
    tls = None
    if address.tls and (address.tls_ca_path or address.tls_cert_path or address.tls_insecure):

        def read(path: str | None) -> bytes | None:
            if path is None:
                return None
            with open(path, "rb") as f:
                return f.read()

        tls = TlsAdvancedConfiguration(
            use_insecure_tls=address.tls_insecure or None,
            root_pem_cacerts=read(address.tls_ca_path),
            client_cert_pem=read(address.tls_cert_path),
            client_key_pem=read(address.tls_key_path),
        )
    common: dict[str, Any] = {
        "use_tls": address.tls,
        "credentials": credentials,
        "client_name": name,
        "request_timeout": int(request_timeout * 1000),
        "reconnect_strategy": BackoffStrategy(
            num_of_retries=8, factor=50, exponent_base=2, jitter_percent=20
        ),
    }
    nodes = [NodeAddress(address.host, address.port)]
    try:
        if cluster:
            if address.db:
                raise ConfigurationError(
                    f"redis_url names database {address.db}, but Redis Cluster only has database 0"
                )
            client: Any = await GlideClusterClient.create(
                GlideClusterClientConfiguration(
                    nodes,
                    advanced_config=AdvancedGlideClusterClientConfiguration(tls_config=tls)
                    if tls
                    else None,
                    **common,
                )
            )
        else:
            client = await GlideClient.create(
                GlideClientConfiguration(
                    nodes,
                    database_id=address.db,
                    advanced_config=AdvancedGlideClientConfiguration(tls_config=tls)
                    if tls
                    else None,
                    **common,
                )
            )
    except ConfigurationError:
        raise
    except Exception as exc:
        raise ConnectionFailed(
            f"cannot connect to Redis{' Cluster' if cluster else ''} at "
            f"{address.host}:{address.port}{' (TLS)' if address.tls else ''}: "
            f"{_redact(str(exc), address)}"
        ) from None
    return GlideRedis(client, address, blocking=blocking, cluster=cluster)


_cluster_mode: dict[tuple[str, int], bool] = {}


async def _is_cluster(address: RedisAddress) -> bool:
    """Whether the Redis at ``address`` is a Redis Cluster node (asked once per process).

    A standalone connection can ask ``INFO cluster`` of either kind of server. A user
    whose ACL forbids INFO is taken to be on a standalone Redis (``?cluster=yes`` in the
    URL says otherwise)."""
    known = _cluster_mode.get((address.host, address.port))
    if known is not None:
        return known
    probe = await _open(
        address, cluster=False, name="aiki-probe", blocking=False, request_timeout=5.0
    )
    try:
        info = await probe.command("INFO", "cluster")
    except ConnectionFailed:
        raise
    except Exception:  # NOPERM: INFO is not in the user's ACL
        info = b""
    finally:
        await probe.aclose()
    text = info.decode() if isinstance(info, bytes) else str(info)
    found = "cluster_enabled:1" in text
    _cluster_mode[(address.host, address.port)] = found
    return found
