"""TCP and TLS: a stream framer per connection cuts messages out of the byte stream."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

from ..events.record import Event, Peer
from ..sip.framing import StreamFramer
from .udp import Receive

log = logging.getLogger(__name__)
READ_SIZE = 65536


class StreamListener:
    """One listening TCP or TLS socket and its connections."""

    def __init__(
        self,
        transport: str,
        host: str,
        port: int,
        receive: Receive,
        emit_event: Callable[[str, Peer, dict[str, Any]], None],
        ids: Callable[[], int],
        max_connections: int,
        idle_timeout: float,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.transport = transport
        self.host = host
        self.port = port
        self.receive = receive
        self.emit_event = emit_event
        self.ids = ids
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.ssl_context = ssl_context
        self.connections: dict[int, asyncio.StreamWriter] = {}
        self._stats: dict[int, dict[str, int]] = {}  # per open connection
        self.server: asyncio.Server | None = None
        self.refused = 0

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
        self.server = await asyncio.start_server(
            self._serve, sock=sock, ssl=self.ssl_context, limit=READ_SIZE
        )
        self.port = sock.getsockname()[1]

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for writer in list(self.connections.values()):
            writer.close()
        if self.server is not None:
            await self.server.wait_closed()

    def send(self, peer: Peer, data: bytes) -> None:
        writer = self.connections.get(peer.connection)
        if writer is not None and not writer.is_closing():
            writer.write(data)
            stats = self._stats.get(peer.connection)
            if stats is not None:
                stats["bytes_out"] += len(data)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self.connections) >= self.max_connections:
            self.refused += 1
            writer.close()
            return
        conn_id = self.ids()
        peername = writer.get_extra_info("peername") or ("", 0)
        sockname = writer.get_extra_info("sockname") or ("", 0)
        peer = Peer(
            self.transport,
            str(peername[0]),
            int(peername[1]),
            str(sockname[0]),
            int(sockname[1]),
            conn_id,
        )
        self.connections[conn_id] = writer
        tls: dict[str, Any] = {}
        ssl_obj = writer.get_extra_info("ssl_object")
        if ssl_obj is not None:
            cipher = ssl_obj.cipher()
            tls = {"tls_version": ssl_obj.version(), "tls_cipher": cipher[0] if cipher else None}
        self.emit_event("transport.connection.opened", peer, tls)
        stats = {"messages": 0, "bytes_in": 0, "bytes_out": 0, "discarded_bytes": 0}
        self._stats[conn_id] = stats
        reason = "closed"
        try:
            reason = await self._read_loop(reader, peer, stats)
        except (ConnectionError, ssl.SSLError, OSError) as exc:
            reason = f"error: {type(exc).__name__}"
        finally:
            self.connections.pop(conn_id, None)
            self._stats.pop(conn_id, None)
            writer.close()
            self.emit_event("transport.connection.closed", peer, {"reason": reason, **stats})

    async def _read_loop(
        self, reader: asyncio.StreamReader, peer: Peer, stats: dict[str, int]
    ) -> str:
        framer = StreamFramer()
        while True:
            try:
                data = await asyncio.wait_for(reader.read(READ_SIZE), self.idle_timeout)
            except TimeoutError:
                return "idle"
            if not data:
                return "closed"
            stats["bytes_in"] += len(data)
            for message in framer.feed(data):
                stats["messages"] += 1
                try:
                    self.receive(message, peer, time.time())
                except Exception:
                    log.exception("error handling a message from %s", peer.src_ip)
            garbage = framer.take_garbage()
            if garbage:
                stats["discarded_bytes"] += len(garbage)
                self.receive(garbage, peer, time.time())  # stored as malformed input


def make_event(sensor: str) -> Callable[[str, Peer, dict[str, Any]], Event]:
    def build(event_id: str, peer: Peer, fields: dict[str, Any]) -> Event:
        return Event(event_id, time.time(), sensor, peer, fields)

    return build
