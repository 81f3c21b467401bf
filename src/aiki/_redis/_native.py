"""The native implementation of Aiki's Redis interface: trio sockets and hiredis.

A call from trio through valkey-glide measured ~85-105 us wall and ~80-100 us of process
CPU per PING on this machine (its FFI hop dominates); a trio socket with ``hiredis``'s C
RESP parser ~27 us. So for a single Redis server under trio this talks RESP3 itself:
one socket per connection, requests pipelined from many tasks (``_native_wire``), no
thread and no background task. Replies keep GLIDE's Python types where the store looks
(bytes for strings, ints, floats, None, lists, RESP3 maps as dicts); the store already
accepts both GLIDE's stream shapes and raw RESP3 ones (redis-py returns those too).

What it mirrors from the GLIDE implementation: error replies go through
``parse_refusal`` (ScriptRefused, GroupMissing, transient codes as ConnectionFailed);
scripts run by EVALSHA and are loaded on NOSCRIPT; a batch is a pipeline with each
failure in its slot; ``blocking=True`` connections are reset when a blocked read is
cancelled. A lost connection fails the calls in flight with ConnectionFailed and is
opened again (same handshake: HELLO 3 with AUTH and SETNAME, SELECT, the pub/sub
channels) by the next call.

Redis Cluster is GLIDE's: ``?cluster=yes``, or a server whose HELLO says
``mode: cluster``, gets a GLIDE cluster connection instead. Under asyncio the default
stays GLIDE (this module needs trio).
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from typing import Any

import hiredis
import sniffio
import trio

from .._errors import ConfigurationError, ConnectionFailed
from ._interface import Arg, Lua, Redis, RedisAddress, parse_refusal
from ._native_wire import Connection, ReplyError, Waiter, open_transport

_pack: Any = hiredis.pack_command  # (its stub takes a 1-tuple)


def _mapped(error: ReplyError) -> Exception:
    """An error reply as the GLIDE implementation raises it."""
    return parse_refusal(str(error)) or error


def _packed(args: tuple[Any, ...]) -> bytes:
    try:
        return _pack(args)
    except TypeError:  # bool, None, ...: their text, as the GLIDE path sends them
        return _pack(tuple(a if isinstance(a, str | bytes | int | float) else str(a) for a in args))


class NativeRedis:
    """One connection to a single Redis server, shared by any number of trio tasks."""

    cluster = False

    def __init__(
        self,
        address: RedisAddress,
        *,
        name: str,
        blocking: bool,
        request_timeout: float,
        tls: ssl.SSLContext | None,
    ) -> None:
        self.address = address
        self.blocking = blocking
        self.name = name
        self.request_timeout = request_timeout
        self._tls = tls
        self._conn: Connection | None = None
        self._connect_lock = trio.Lock()
        self._closed = False
        self._channels: tuple[str, ...] = ()
        self.hello: dict[Any, Any] = {}  # the server's HELLO reply (mode, version, ...)

    # -- connecting ----------------------------------------------------------------------

    async def _connection(self) -> Connection:
        conn = self._conn
        if conn is not None and conn.usable():
            return conn
        return await self.reconnect()

    async def reconnect(self) -> Connection:
        """Open the connection (again): HELLO 3 (AUTH, SETNAME), SELECT, SUBSCRIBE."""
        async with self._connect_lock:
            if self._closed:
                raise ConnectionFailed("Redis: this connection was closed")
            conn = self._conn
            if conn is not None and conn.broken is None:
                return conn
            self._conn = await self._open()
            return self._conn

    async def _open(self) -> Connection:
        a = self.address
        hello: list[Arg] = ["HELLO", "3"]
        if a.password:
            hello += ["AUTH", a.username or "default", a.password]
        hello += ["SETNAME", self.name]
        commands: list[Sequence[Arg]] = [hello]
        if a.db:
            commands.append(["SELECT", a.db])
        need = len(commands)
        if self._channels:
            commands.append(["SUBSCRIBE", *self._channels])
            need += len(self._channels)
        conn: Connection | None = None
        try:
            with trio.fail_after(min(self.request_timeout, 10.0)):
                conn = Connection(
                    await open_transport(a.host, a.port, self._tls),
                    request_timeout=self.request_timeout,
                )
                waiter = Waiter(need)
                await conn.send(b"".join(_packed(tuple(c)) for c in commands), waiter)
                replies = await conn.wait(waiter, float("inf"), blocking=False)
        except BaseException as exc:
            if conn is not None:
                conn.fail("connecting failed")
            if isinstance(exc, Exception):
                raise self._cannot_connect(_why(exc)) from None
            raise
        failed = next((r for r in replies if isinstance(r, ReplyError)), None)
        if failed is not None:
            conn.fail("connecting failed")
            raise self._cannot_connect(str(failed))
        self.hello = replies[0] if isinstance(replies[0], dict) else {}
        return conn

    def _cannot_connect(self, why: str) -> ConnectionFailed:
        a = self.address
        if a.password:
            why = why.replace(a.password, "***")
        return ConnectionFailed(
            f"cannot connect to Redis at {a.host}:{a.port}{' (TLS)' if a.tls else ''}: {why}"
        )

    # -- calls -------------------------------------------------------------------------

    async def _call(self, payload: bytes, need: int) -> list[Any]:
        conn = await self._connection()
        waiter = Waiter(need)
        deadline = trio.current_time() + self.request_timeout
        await conn.send(payload, waiter)
        return await conn.wait(waiter, deadline, blocking=self.blocking)

    async def command(self, *args: Arg) -> Any:
        """Run one Redis command and return its reply."""
        reply = (await self._call(_packed(args), 1))[0]
        if type(reply) is ReplyError:
            raise _mapped(reply)
        return reply

    async def load_script(self, lua: Lua) -> None:
        """Load ``lua`` so that a pipelined EVALSHA finds it."""
        await self.command("SCRIPT", "LOAD", lua.source)

    async def script(self, lua: Lua, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        """Run a Lua script atomically (EVALSHA, loading it when Redis lacks it)."""
        payload = _packed(("EVALSHA", lua.sha, len(keys), *keys, *args))
        reply = (await self._call(payload, 1))[0]
        if type(reply) is ReplyError and str(reply).startswith("NOSCRIPT"):
            await self.load_script(lua)
            reply = (await self._call(payload, 1))[0]
        if type(reply) is ReplyError:
            raise _mapped(reply)
        return reply

    async def batch(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        """Several commands in one round trip (a pipeline, not a transaction); a command
        that fails has its (mapped) exception in its reply slot."""
        if not commands:
            return []
        payload = b"".join([_packed(tuple(cmd)) for cmd in commands])
        replies = await self._call(payload, len(commands))
        return [_mapped(r) if type(r) is ReplyError else r for r in replies]

    # -- pub/sub -------------------------------------------------------------------------

    async def subscribe(self, *channels: str) -> None:
        """Subscribe this connection (one of its own) to ``channels``; a connection
        opened again later subscribes to them again."""
        if not channels:
            return
        replies = await self._call(_packed(("SUBSCRIBE", *channels)), len(channels))
        failed = next((r for r in replies if type(r) is ReplyError), None)
        if failed is not None:
            raise _mapped(failed)
        self._channels = tuple(dict.fromkeys((*self._channels, *channels)))

    async def next_message(self) -> tuple[str, bytes]:
        """The next pub/sub message: (channel, data). A lost connection raises
        ConnectionFailed once; the next call connects and subscribes again."""
        conn = self._conn
        if conn is None or conn.broken is not None:
            conn = await self.reconnect()
        push = await conn.wait_push()
        channel, data = push[-2], push[-1]  # [message, channel, data] / [pmessage, p, c, d]
        return (
            channel.decode() if isinstance(channel, bytes) else str(channel),
            data if isinstance(data, bytes) else str(data).encode(),
        )

    async def aclose(self) -> None:
        """Close the connection (never raises); calls after this raise ConnectionFailed."""
        self._closed = True
        if self._conn is not None:
            self._conn.fail("this connection was closed")
        await trio.lowlevel.checkpoint()


def _why(exc: BaseException) -> str:
    """What went wrong, in words (trio wraps TLS failures in a wordless error)."""
    if isinstance(exc, trio.TooSlowError):
        return "timed out"
    text = str(exc)
    cause = exc.__cause__ or exc.__context__
    if not text and cause is not None:
        text = f"{type(cause).__name__}: {cause}"
    return text or type(exc).__name__


def _tls_context(address: RedisAddress) -> ssl.SSLContext | None:
    if not address.tls:
        return None
    context = ssl.create_default_context(cafile=address.tls_ca_path)
    if address.tls_cert_path:
        try:
            context.load_cert_chain(address.tls_cert_path, address.tls_key_path)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(
                f"redis_url ssl_certfile/ssl_keyfile cannot be loaded: {exc}"
            ) from None
    if address.tls_insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


# Servers found to be Redis Cluster nodes (their HELLO said so), by (host, port).
_cluster_nodes: set[tuple[str, int]] = set()


async def connect(
    url: str,
    *,
    name: str = "aiki",
    blocking: bool = False,
    request_timeout: float = 5.0,
) -> Redis:
    """Open one connection to the Redis at ``url`` (a GLIDE cluster connection when it
    is a Redis Cluster node)."""
    if sniffio.current_async_library() != "trio":
        raise ConfigurationError(
            "redis_client='native' runs under trio only; under asyncio use 'glide' "
            "(the default there) or 'redis-py'"
        )
    address = RedisAddress.from_url(url)
    if address.cluster or (address.host, address.port) in _cluster_nodes:
        return await _glide_cluster(url, name, blocking, request_timeout)
    redis = NativeRedis(
        address,
        name=name,
        blocking=blocking,
        request_timeout=request_timeout,
        tls=_tls_context(address),
    )
    await redis.reconnect()
    if address.cluster is None and redis.hello.get(b"mode") == b"cluster":
        await redis.aclose()
        _cluster_nodes.add((address.host, address.port))
        return await _glide_cluster(url, name, blocking, request_timeout)
    return redis


async def _glide_cluster(url: str, name: str, blocking: bool, request_timeout: float) -> Redis:
    from . import _glide

    return await _glide.connect(
        url, name=name, blocking=blocking, request_timeout=request_timeout, cluster=True
    )
