"""One RESP3 connection of the native implementation: its socket and the FIFO of callers.

Many trio tasks use one connection at once (as with GLIDE, which multiplexes). Requests
are pipelined on the socket; their replies come back in the same order, so each caller
puts a ``Waiter`` in a FIFO right before its bytes go out, and replies are handed to the
FIFO's head. There is no background task (``connect()`` is no context manager): the
first waiter that finds nobody reading reads the socket itself (the "leader"), hands
each reply to its waiter, and when its own reply is in hands the reading over to the
oldest waiter still waiting. Why each rule:

* A waiter cancelled before its reply leaves its slot in the FIFO (``abandoned``): the
  reply still comes, in order, and is dropped.
* A send is all or nothing: the fast path writes the whole request without yielding; a
  partial write finishes shielded under the send lock (bounded by the request timeout),
  because a half-sent request would corrupt every request after it.
* Any socket error, a protocol error or a request timeout breaks the connection: every
  waiter still in the FIFO gets ConnectionFailed, and the owner connects again at its
  next call. Nothing is re-sent (a script may already have run).
"""

from __future__ import annotations

import errno
import socket
import ssl
import time
from collections import deque
from typing import Any

import hiredis
import trio

from .._errors import ConnectionFailed


class ReplyError(Exception):
    """An error reply of Redis that Aiki gives no meaning of its own (``ERR ...``,
    ``WRONGTYPE ...``, ``NOPERM ...``); its text is the reply's."""


PushNotification = hiredis.PushNotification

_RECEIVE_SIZE = 65536
_monotonic = time.monotonic
# A connection idle this long is checked (one peek) for a close by Redis before use;
# a restart takes longer than this, and busy connections skip the system call.
IDLE_CHECK_AFTER = 0.02
_MESSAGES = frozenset({b"message", b"pmessage", b"smessage"})
_CONFIRMATIONS = frozenset({b"subscribe", b"unsubscribe", b"psubscribe", b"punsubscribe"})


class Waiter:
    """One request's place in the FIFO: ``need`` replies, collected in ``got``."""

    __slots__ = ("need", "got", "done", "error", "event", "abandoned")

    def __init__(self, need: int) -> None:
        self.need = need
        self.got: list[Any] = []
        self.done = False
        self.error: BaseException | None = None
        self.event: trio.Event | None = None
        self.abandoned = False


class Transport:
    """A connected TCP socket, used without trio's stream layer: the request is written
    with one non-blocking ``send`` (no yield), and the reply read after
    ``wait_readable``. Half the per-call cost of a SocketStream, measured."""

    tls = False

    def __init__(self, sock: socket.socket, tsock: Any) -> None:
        self.sock = sock
        self._tsock = tsock  # trio's wrapper of the same socket (closing notifies waiters)

    def send_some(self, data: bytes | memoryview) -> int:
        """Write what the kernel takes now (no yield); raises OSError on a dead socket."""
        try:
            return self.sock.send(data)
        except BlockingIOError:
            return 0

    async def send_all(self, data: memoryview) -> None:
        while data:
            await trio.lowlevel.wait_writable(self.sock)
            data = data[self.send_some(data) :]

    async def receive(self) -> bytes:
        """The next bytes from Redis (b"" never: EOF raises)."""
        while True:
            await trio.lowlevel.wait_readable(self.sock)
            try:
                data = self.sock.recv(_RECEIVE_SIZE)
            except BlockingIOError:
                continue
            if not data:
                raise ConnectionResetError(errno.ECONNRESET, "Redis closed the connection")
            return data

    def closed_by_peer(self) -> bool:
        """Whether Redis closed this idle connection (restarted, timed the client out):
        one non-blocking peek, so that the next call connects again instead of failing."""
        return _ended(self.sock)

    def close(self) -> None:
        self._tsock.close()


class TlsTransport:
    """A TLS connection (trio.SSLStream over the TCP socket). Every write goes through
    ``send_all`` under the connection's send lock."""

    tls = True

    def __init__(self, stream: trio.SSLStream[trio.SocketStream], sock: socket.socket) -> None:
        self.stream = stream
        self.sock = sock  # the TCP socket under the TLS stream

    def send_some(self, data: bytes | memoryview) -> int:
        return 0

    async def send_all(self, data: memoryview) -> None:
        await self.stream.send_all(data)

    async def receive(self) -> bytes:
        data = await self.stream.receive_some(_RECEIVE_SIZE)
        if not data:
            raise ConnectionResetError(errno.ECONNRESET, "Redis closed the connection")
        return bytes(data)

    def closed_by_peer(self) -> bool:
        """Only an end of stream counts: TLS may send records on an idle connection
        (session tickets, a close_notify), and those are left to the TLS layer."""
        return _ended(self.sock)

    def close(self) -> None:
        self.stream.transport_stream.socket.close()


class Connection:
    """The FIFO, the reader and the transport of one connected socket."""

    def __init__(self, transport: Transport | TlsTransport, *, request_timeout: float) -> None:
        self.transport = transport
        self.reader = hiredis.Reader(replyError=ReplyError)
        self.fifo: deque[Waiter] = deque()
        self.reading = False
        self.broken: ConnectionFailed | None = None
        self.request_timeout = request_timeout
        self.last_read = _monotonic()
        self._send_lock = trio.Lock()
        # Pub/sub messages (RESP3 pushes) wait here for next_message.
        self.pushes: deque[list[Any]] = deque()
        self.push_event: trio.Event | None = None

    def usable(self) -> bool:
        """Not broken, and (when idle a while) not closed by Redis meanwhile."""
        if self.broken is not None:
            return False
        if (
            self.fifo
            or self.reading
            or _monotonic() - self.last_read < IDLE_CHECK_AFTER
            or not self.transport.closed_by_peer()
        ):
            return True
        self.fail("Redis closed the connection")
        return False

    # -- sending -----------------------------------------------------------------------

    async def send(self, payload: bytes, waiter: Waiter) -> None:
        """Queue ``waiter`` and write ``payload`` (whole, or the connection breaks)."""
        lock = self._send_lock
        if not lock.locked():  # the fast path: one non-blocking write, no yield
            if self.broken is not None:
                raise self.broken
            self.fifo.append(waiter)
            try:
                sent = self.transport.send_some(payload)
            except OSError as exc:
                raise self.fail(f"connection lost while sending: {exc}") from None
            if sent == len(payload):
                return
            lock.acquire_nowait()  # free: nothing yielded since the check
        else:
            await lock.acquire()  # cancellable: nothing queued or written yet
            if self.broken is not None:
                lock.release()
                raise self.broken
            self.fifo.append(waiter)
            sent = 0
        try:
            with trio.CancelScope(shield=True) as scope:
                scope.deadline = trio.current_time() + self.request_timeout
                await self.transport.send_all(memoryview(payload)[sent:])
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise self.fail(f"connection lost while sending: {exc}") from None
        finally:
            lock.release()
        if scope.cancelled_caught:
            raise self.fail(f"Redis did not take a request within {self.request_timeout:g} s")

    # -- receiving ---------------------------------------------------------------------

    async def wait(self, waiter: Waiter, deadline: float, *, blocking: bool) -> list[Any]:
        """``waiter``'s replies, reading the socket when nobody else does."""
        try:
            while not waiter.done:
                if self.reading:
                    waiter.event = event = trio.Event()
                    await event.wait()
                    continue
                self.reading = True
                try:
                    await self._read(waiter, deadline)
                except BaseException:
                    waiter.abandoned = not waiter.done  # before the hand-over skips it
                    raise
                finally:
                    self.reading = False
                    self._hand_over()
        except BaseException:
            if not waiter.done:
                waiter.abandoned = True
                if blocking:
                    # A cancelled XREADGROUP BLOCK stays blocked on the server and would
                    # take messages for a reader that is gone: drop the connection.
                    self.fail("a blocking read was cancelled; connection reset")
            raise
        if waiter.error is not None:
            raise waiter.error
        return waiter.got

    async def wait_push(self) -> list[Any]:
        """The next pub/sub push (no timeout: a subscriber waits as long as it takes)."""
        while not self.pushes:
            if self.broken is not None:
                raise self.broken
            if self.reading:
                self.push_event = event = trio.Event()
                await event.wait()
                continue
            self.reading = True
            try:
                await self._read(None, float("inf"))
            finally:
                self.reading = False
                self._hand_over()
        return self.pushes.popleft()

    async def _read(self, waiter: Waiter | None, deadline: float) -> None:
        """Read until ``waiter`` is done (``None``: until a push came), then hand on
        every complete reply already read."""
        reader = self.reader
        try:
            while not (waiter.done if waiter is not None else self.pushes):
                reply = reader.gets()
                if reply is False:
                    with trio.CancelScope(deadline=deadline) as scope:
                        data = await self.transport.receive()
                    if scope.cancelled_caught:
                        raise self.fail(
                            f"Redis did not answer within {self.request_timeout:g} s "
                            "(request timeout); connection reset"
                        )
                    reader.feed(data)
                    self.last_read = _monotonic()
                else:
                    self._deliver(reply)
            while self.fifo:
                reply = reader.gets()
                if reply is False:
                    break
                self._deliver(reply)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise self.fail(f"connection lost: {exc}") from None
        except (hiredis.HiredisError, TypeError, ValueError) as exc:
            # Not RESP, or a RESP3 map hiredis cannot build (a list as a key): the stream
            # of replies cannot be trusted past this point.
            raise self.fail(f"unreadable reply from Redis: {exc!r}") from None

    def _deliver(self, reply: Any) -> None:
        if type(reply) is PushNotification:
            kind = reply[0] if reply else None
            if kind in _MESSAGES:
                self.pushes.append(reply)
                if self.push_event is not None:
                    self.push_event.set()
                return
            if kind not in _CONFIRMATIONS:
                return  # another push (none is asked for): ignored
            # A (un)subscription's confirmation is its command's reply.
        if not self.fifo:
            return  # nothing asked for it (cannot happen on a healthy connection)
        head = self.fifo[0]
        head.got.append(reply)
        if len(head.got) == head.need:
            self.fifo.popleft()
            head.done = True
            if head.event is not None:
                head.event.set()

    def _hand_over(self) -> None:
        """Wake the oldest waiter still waiting, to read in turn."""
        if self.push_event is not None:
            self.push_event.set()
        for waiter in self.fifo:
            if not waiter.abandoned:
                if waiter.event is not None:
                    waiter.event.set()
                return

    # -- breaking ------------------------------------------------------------------------

    def fail(self, why: str) -> ConnectionFailed:
        """Break the connection: close it, fail every waiter; returns the error."""
        if self.broken is None:
            self.broken = ConnectionFailed(f"Redis: {why}")
            try:
                self.transport.close()
            except OSError:
                pass
            for waiter in self.fifo:
                waiter.error = self.broken
                waiter.done = True
                if waiter.event is not None:
                    waiter.event.set()
            self.fifo.clear()
            if self.push_event is not None:
                self.push_event.set()
        return self.broken


async def open_transport(
    host: str, port: int, tls: ssl.SSLContext | None
) -> Transport | TlsTransport:
    """A connected socket to ``host:port`` (each address in turn), TCP_NODELAY on."""
    infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    error: OSError = OSError(f"no address found for {host}")
    for family, type_, proto, _name, addr in infos:
        sock = socket.socket(family, type_, proto)
        tsock = trio.socket.from_stdlib_socket(sock)
        try:
            await tsock.connect(addr)
        except OSError as exc:
            tsock.close()
            error = exc
            continue
        except BaseException:
            tsock.close()
            raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if tls is None:
            return Transport(sock, tsock)
        stream = trio.SSLStream(trio.SocketStream(tsock), tls, server_hostname=host)
        try:
            await stream.do_handshake()
        except BaseException:
            tsock.close()
            raise
        return TlsTransport(stream, sock)
    raise error


def _ended(sock: socket.socket) -> bool:
    """Whether the peer ended this (non-blocking) socket: a peek that reads no byte, or
    an error; data waiting, or none yet, means it is still open."""
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
