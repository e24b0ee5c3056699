"""TCP and TLS: a stream framer per connection cuts messages out of the byte stream.

Everything a connection sends is recorded: framed messages go to the endpoint; bytes that
are not SIP, a message cut at the size cap, and whatever is still buffered when the
connection closes or times out are stored as malformed input (`record`), within the
storage caps (per connection here, per source in `StorageBudget`), and counted when over.
A client has `message_timeout` seconds for a whole message (or the TLS handshake), not
reset by each byte; a source has at most `max_connections_per_source` connections; when
every slot is taken the idlest connection is shed for the new one (`ConnectionTable`).
TLS is done here over plain TCP (`TlsSession`), so what a client sends the TLS port that
is not TLS is seen and recorded too.

At the door (the flood guard's `door`, injected, as for UDP): each framed message is
given how long it may have waited, the loop's lateness (`LoopLag`) plus the time since
its bytes were read, and is shed unparsed and counted (`shed`, and per connection in
`transport.connection.closed`) when the door says so. Accepted sockets get a small
receive buffer, so a flood waits in the sender, paused by TCP flow control, rather than
unseen in the kernel.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..events.record import Event, Peer
from ..sip.framing import StreamFramer
from .lag import STREAM_RCVBUF
from .limits import ConnectionTable, Slot, StorageBudget, TransportCounters
from .tlsconn import TlsFailed, TlsSession
from .udp import Door, Receive

log = logging.getLogger(__name__)
READ_SIZE = 65536
GARBAGE_FLUSH = 16384  # garbage kept this long is stored without waiting for the close
# Store input as malformed: (data, peer, now, error, extra defects) -> its message_id.
Record = Callable[[bytes, Peer, float, str | None, tuple[str, ...]], str]
EmitEvent = Callable[[str, Peer, dict[str, Any]], None]


@dataclass(frozen=True)
class StreamLimits:
    idle_timeout: float = 120.0
    message_timeout: float = 30.0
    max_message: int = 65535
    max_stored_per_connection: int = 1048576
    max_tls_bytes_kept: int = 16384


@dataclass(eq=False)
class _Connection:
    peer: Peer
    writer: asyncio.StreamWriter
    framer: StreamFramer
    opened: float  # monotonic
    tls: TlsSession | None = None
    stats: dict[str, int] = field(default_factory=dict)
    since: float | None = None  # monotonic: when the input not yet a message began
    stored: int = 0  # bytes stored as malformed input
    garbage_taken: int = 0  # bytes the framer discarded that were taken to be stored
    unstored: int = 0  # bytes over a storage cap
    announced: bool = False  # transport.connection.opened emitted
    capped: bool = False  # transport.storage.capped emitted for this connection
    shed: bool = False
    junk: bool = False  # garbage arrived since the last complete message


class StreamListener:
    """One listening TCP or TLS socket and its connections."""

    def __init__(
        self,
        transport: str,
        host: str,
        port: int,
        receive: Receive,
        record: Record,
        emit_event: EmitEvent,
        ids: Callable[[], int],
        limits: StreamLimits,
        table: ConnectionTable,
        budget: StorageBudget,
        ssl_context: ssl.SSLContext | None = None,
        door: Door | None = None,
        lag: Callable[[], float] | None = None,
    ) -> None:
        self.transport = transport
        self.host = host
        self.port = port
        self.receive = receive
        self.record = record
        self.emit_event = emit_event
        self.ids = ids
        self.limits = limits
        self.table = table
        self.budget = budget
        self.counters: TransportCounters = table.counters
        self.ssl_context = ssl_context
        self.connections: dict[int, _Connection] = {}
        self.server: asyncio.Server | None = None
        self.door = door  # None: everything is taken
        self.lag = lag  # the loop's lateness now (transport.lag.LoopLag.delay)
        self.shed = 0  # messages shed at the door

    async def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self.server = await asyncio.start_server(self._serve, sock=sock, limit=READ_SIZE)
        self.port = sock.getsockname()[1]

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for conn in list(self.connections.values()):
            conn.writer.close()
        if self.server is not None:
            await self.server.wait_closed()

    def send(self, peer: Peer, data: bytes) -> None:
        conn = self.connections.get(peer.connection)
        if conn is None or conn.writer.is_closing():
            return
        conn.writer.write(conn.tls.encrypt(data) if conn.tls is not None else data)
        conn.stats["bytes_out"] += len(data)

    # -- one connection -------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None and self.door is not None:
            try:  # a small buffer: TCP flow control holds a flood back, not the kernel
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, STREAM_RCVBUF)
            except (OSError, AttributeError):
                log.debug("SO_RCVBUF not set on a %s connection", self.transport)
        conn = self._connection(writer)
        if not self._admit(conn):
            writer.close()
            return
        self.connections[conn.peer.connection] = conn
        if conn.tls is None:
            self._announce(conn, {})
        reason = "closed"
        try:
            reason = await self._read_loop(reader, conn)
        except TlsFailed as exc:
            reason = "tls_failed"
            self._tls_failed(conn, exc)
        except (ConnectionError, ssl.SSLError, OSError) as exc:
            reason = f"error: {type(exc).__name__}"
        finally:
            self._finish(conn, reason)

    def _connection(self, writer: asyncio.StreamWriter) -> _Connection:
        peername = writer.get_extra_info("peername") or ("", 0)
        sockname = writer.get_extra_info("sockname") or ("", 0)
        peer = Peer(
            self.transport,
            str(peername[0]),
            int(peername[1]),
            str(sockname[0]),
            int(sockname[1]),
            self.ids(),
        )
        limits = self.limits
        framer = StreamFramer(limits.max_message, limits.max_message + 2 * READ_SIZE)
        conn = _Connection(peer, writer, framer, time.monotonic())
        if self.ssl_context is not None:
            conn.tls = TlsSession(self.ssl_context, limits.max_tls_bytes_kept)
        conn.stats = {
            "messages": 0,
            "bytes_in": 0,
            "bytes_out": 0,
            "discarded_bytes": 0,
            "malformed_bytes": 0,
            "shed": 0,
        }
        return conn

    def _admit(self, conn: _Connection) -> bool:
        peer = conn.peer
        slot = Slot(peer.connection, peer.src_ip, conn.opened, lambda: self._shed(conn))
        admitted, victim = self.table.admit(slot)
        if victim is not None:
            victim.shed()
        if not admitted:
            unreported = self.table.refusal_report(peer.src_ip, conn.opened)
            if unreported is not None:
                fields = {
                    "reason": "source_limit",
                    "limit": self.table.max_per_source,
                    "open": self.table.from_source(peer.src_ip),
                    "unreported": unreported,
                }
                self.emit_event("transport.connection.refused", peer, fields)
        return admitted

    def _shed(self, conn: _Connection) -> None:
        """Closed to make room for a new connection (the table is full)."""
        conn.shed = True
        fields = {
            "reason": "shed",
            "limit": self.table.max_total,
            "open": len(self.table),
            "unreported": 0,
        }
        self.emit_event("transport.connection.refused", conn.peer, fields)
        conn.writer.close()  # its read loop sees the end of the stream

    def _announce(self, conn: _Connection, tls: dict[str, Any]) -> None:
        if not conn.announced:
            conn.announced = True
            self.emit_event("transport.connection.opened", conn.peer, tls)

    async def _read_loop(self, reader: asyncio.StreamReader, conn: _Connection) -> str:
        while True:
            timeout, why = self._deadline(conn)
            try:
                data = await asyncio.wait_for(reader.read(READ_SIZE), timeout)
            except TimeoutError:
                if conn.tls is not None and not conn.tls.established:
                    raise TlsFailed(
                        f"no TLS handshake within {self.limits.message_timeout:g}s", conn.tls.seen
                    ) from None
                return why
            if conn.shed:
                return "shed"
            if not data:
                return "closed"
            conn.stats["bytes_in"] += len(data)
            if conn.tls is not None:
                data = self._decrypt(conn, data)
            if data:
                self._take(conn, data)
            if conn.tls is not None and conn.tls.closed:
                return "closed"

    def _deadline(self, conn: _Connection) -> tuple[float, str]:
        """Seconds to wait for the next bytes, and the close reason if none come."""
        now = time.monotonic()
        limits = self.limits
        if conn.tls is not None and not conn.tls.established:
            return max(0.0, conn.opened + limits.message_timeout - now), "tls_timeout"
        if conn.since is not None:
            left = conn.since + limits.message_timeout - now
            if left < limits.idle_timeout:
                return max(0.0, left), "message_timeout"
        return limits.idle_timeout, "idle"

    def _decrypt(self, conn: _Connection, data: bytes) -> bytes:
        assert conn.tls is not None
        plain = conn.tls.feed(data)
        out = conn.tls.to_send()
        if out:
            conn.writer.write(out)
        if conn.tls.established:
            self._announce(conn, conn.tls.info())
        return plain

    def _take(self, conn: _Connection, data: bytes) -> None:
        now, framer, peer = time.time(), conn.framer, conn.peer
        read = time.monotonic()
        started = conn.since if conn.since is not None else read
        framed = framer.feed_marked(data)
        door = self.door
        lag = self.lag() if door is not None and self.lag is not None and framed else 0.0
        for message, cut in framed:
            conn.stats["messages"] += 1
            if cut:
                error = f"larger than {self.limits.max_message} bytes: cut there"
                self._store(conn, message, now, error, ("message_too_large",))
                continue
            if door is not None:
                waited = lag + time.monotonic() - read
                if not door(peer.src_ip, len(message), waited, now, self.transport):
                    self.shed += 1
                    conn.stats["shed"] += 1
                    continue
            try:
                self.receive(message, peer, now)
            except Exception:
                log.exception("error handling a message from %s", peer.src_ip)
        if framed:
            conn.junk = False
            started = time.monotonic()  # what follows the last message began in this read
            self.table.touch(peer.connection, started)
        elif framer.garbage_kept:
            conn.junk = True
        if framed or framer.garbage_kept >= GARBAGE_FLUSH:
            self._flush_garbage(conn, now)
        # The message deadline runs while input that is not (yet) a message is held, or
        # garbage came since the last message; CRLF keep-alives alone do not start it.
        unfinished = framer.buffered or conn.junk
        conn.since = started if unfinished else None

    def _flush_garbage(self, conn: _Connection, now: float) -> None:
        garbage = conn.framer.take_garbage()
        if garbage:
            conn.garbage_taken += len(garbage)
            self._store(conn, garbage, now, None, ())

    def _store(
        self,
        conn: _Connection,
        data: bytes,
        now: float,
        error: str | None,
        defects: tuple[str, ...],
    ) -> str | None:
        """Record `data` as malformed input within the storage caps; its message_id, or
        None if a cap refused it (counted, not stored)."""
        size, peer = len(data), conn.peer
        if conn.stored + size > self.limits.max_stored_per_connection:
            self.counters.unstored_bytes += size
            self._unstored(conn, size, "connection", not conn.capped)
            conn.capped = True
            return None
        stored, first = self.budget.take(peer.src_ip, size, now)
        if not stored:
            self._unstored(conn, size, "source", first)
            return None
        conn.stored += size
        conn.stats["malformed_bytes"] += size
        try:
            return self.record(data, peer, now, error, defects)
        except Exception:
            log.exception("error recording input from %s", peer.src_ip)
            return None

    def _unstored(self, conn: _Connection, size: int, scope: str, report: bool) -> None:
        conn.unstored += size
        if not report:
            return
        if scope == "connection":
            cap, window = self.limits.max_stored_per_connection, 0.0
        else:
            cap, window = self.budget.per_source, self.budget.window
        fields = {"scope": scope, "cap": cap, "window": window, "size": size}
        self.emit_event("transport.storage.capped", conn.peer, fields)

    def _tls_failed(self, conn: _Connection, exc: TlsFailed) -> None:
        self.counters.tls_failed += 1
        self._announce(conn, {"tls_version": None, "tls_cipher": None})
        message_id = None
        if exc.seen:
            error = f"not a TLS handshake: {exc.reason}"
            message_id = self._store(conn, exc.seen, time.time(), error, ())
        conn.unstored += conn.stats["bytes_in"] - len(exc.seen)
        fields = {"reason": exc.reason, "size": conn.stats["bytes_in"], "message_id": message_id}
        self.emit_event("transport.tls.failed", conn.peer, fields)

    def _finish(self, conn: _Connection, reason: str) -> None:
        """The connection ended: store what it still held, then report it closed."""
        peer = conn.peer
        now = time.time()
        self._flush_garbage(conn, now)
        rest = conn.framer.take_rest()
        if rest:
            error = f"unfinished message: the connection ended ({reason})"
            self._store(conn, rest, now, error, ())
        self.table.remove(peer.connection)
        self.connections.pop(peer.connection, None)
        conn.writer.close()
        stats = conn.stats
        stats["discarded_bytes"] = conn.framer.discarded_bytes - conn.garbage_taken + conn.unstored
        self._announce(conn, {"tls_version": None, "tls_cipher": None})
        self.emit_event("transport.connection.closed", peer, {"reason": reason, **stats})


def make_event(sensor: str) -> Callable[[str, Peer, dict[str, Any]], Event]:
    def build(event_id: str, peer: Peer, fields: dict[str, Any]) -> Event:
        return Event(event_id, time.time(), sensor, peer, fields)

    return build
