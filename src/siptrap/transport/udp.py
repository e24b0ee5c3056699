"""UDP: each datagram is one message; the source address comes from the socket."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Callable

from ..events.record import Peer

log = logging.getLogger(__name__)
RCVBUF = 8 * 1024 * 1024
Receive = Callable[[bytes, Peer, float], None]


def local_address_for(remote_ip: str, family: int) -> str:
    """The local address the kernel would use to reach `remote_ip` (no packet is sent)."""
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((remote_ip, 9))
            return str(probe.getsockname()[0])
        except OSError:
            return "::1" if family == socket.AF_INET6 else "127.0.0.1"


class UdpListener(asyncio.DatagramProtocol):
    def __init__(self, listener_id: int, host: str, port: int, receive: Receive) -> None:
        self.listener_id = listener_id
        self.host = host
        self.port = port
        self.receive = receive
        self.transport: asyncio.DatagramTransport | None = None
        self.family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.wildcard = host in ("0.0.0.0", "::")
        self._local: OrderedDict[str, str] = OrderedDict()  # source ip -> our address
        self.rcvbuf = 0
        self.errors = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            except OSError:
                pass
            self.rcvbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
            self.port = sock.getsockname()[1]

    def _our_address(self, src_ip: str) -> str:
        if not self.wildcard:
            return self.host
        local = self._local.get(src_ip)
        if local is None:
            local = local_address_for(src_ip, self.family)
            if len(self._local) >= 4096:
                self._local.popitem(last=False)
            self._local[src_ip] = local
        return local

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        src_ip, src_port = str(addr[0]), int(addr[1])
        peer = Peer("udp", src_ip, src_port, self._our_address(src_ip), self.port, self.listener_id)
        try:
            self.receive(data, peer, time.time())
        except Exception:
            self.errors += 1
            log.exception("error handling a datagram from %s:%s", src_ip, src_port)

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error on %s:%s: %s", self.host, self.port, exc)

    def send(self, peer: Peer, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, (peer.src_ip, peer.src_port))


async def open_udp(listener_id: int, host: str, port: int, receive: Receive) -> UdpListener:
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    _, protocol = await loop.create_datagram_endpoint(
        lambda: UdpListener(listener_id, host, port, receive), sock=sock
    )
    return protocol
