"""UDP: each datagram is one message; the source address comes from the socket.

The listener reads its socket itself (`loop.add_reader`, `recvmsg`) to learn when the
kernel received each datagram (SO_TIMESTAMPNS, Linux). How long a datagram waited in the
socket buffer is what a flood makes grow: the listener gives that delay to the door
(the flood guard's `door`, injected) before anything else is done with the datagram, so
a backlog is shed unparsed, and counted, instead of answered seconds late.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import sys
import time
from collections.abc import Callable

from ..bounded import BoundedLRU
from ..events.record import Peer

log = logging.getLogger(__name__)
RCVBUF = 8 * 1024 * 1024
MAX_DATAGRAM = 65535
READS_PER_WAKE = 64  # datagrams read per readiness callback before the loop runs others
PEERS = 4096  # sources whose Peer record and local address are kept (the ones seen last)
Receive = Callable[[bytes, Peer, float], None]
# (source ip, size, seconds the message waited, now, transport) -> take it (True) or shed it
Door = Callable[[str, int, float, float, str], bool]

# Linux: SO_TIMESTAMPNS, whose control message is a struct timespec of CLOCK_REALTIME.
SO_TIMESTAMPNS = 35 if sys.platform.startswith("linux") else None
_TIMESPEC = struct.Struct("@qq")
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size) if hasattr(socket, "CMSG_SPACE") else 0


def local_address_for(remote_ip: str, family: int) -> str:
    """The local address the kernel would use to reach `remote_ip` (no packet is sent)."""
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((remote_ip, 9))
            return str(probe.getsockname()[0])
        except OSError:
            return "::1" if family == socket.AF_INET6 else "127.0.0.1"


def _always(ip: str, size: int, delay: float, now: float, transport: str = "udp") -> bool:
    return True


def arrival_time(ancdata: list[tuple[int, int, bytes]], now: float) -> float:
    """The kernel's receive time from recvmsg's control messages (`now` without one)."""
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            seconds, nanos = _TIMESPEC.unpack_from(data)
            return float(seconds + nanos * 1e-9)
    return now


class UdpListener:
    def __init__(
        self,
        listener_id: int,
        host: str,
        port: int,
        receive: Receive,
        door: Door | None = None,
    ) -> None:
        self.listener_id = listener_id
        self.host = host
        self.port = port
        self.receive = receive
        self.door = door or _always
        self.sock: socket.socket | None = None
        self.family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.wildcard = host in ("0.0.0.0", "::")
        self._local: BoundedLRU[str, str] = BoundedLRU(PEERS)  # source ip -> our address
        self._peers: BoundedLRU[tuple[str, int], Peer] = BoundedLRU(PEERS)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.rcvbuf = 0
        self.timestamps = False  # the kernel stamps each datagram's arrival
        self.errors = 0
        self.send_errors = 0
        self.received = 0
        self.shed = 0

    def attach(self, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        except OSError:
            pass
        self.rcvbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        if SO_TIMESTAMPNS is not None and _ANCILLARY:
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                self.timestamps = True
            except OSError:
                log.debug("no SO_TIMESTAMPNS on %s: delays are not measured", self.host)
        self.port = sock.getsockname()[1]
        self.sock = sock
        self._loop = loop
        loop.add_reader(sock.fileno(), self._readable)

    def close(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            if self._loop is not None:
                self._loop.remove_reader(sock.fileno())
            sock.close()

    @property
    def is_open(self) -> bool:
        return self.sock is not None

    def _our_address(self, src_ip: str) -> str:
        if not self.wildcard:
            return self.host
        local = self._local.get(src_ip)
        if local is None:
            local = local_address_for(src_ip, self.family)
            self._local.put(src_ip, local)
        return local

    def _readable(self) -> None:
        sock = self.sock
        if sock is None:
            return
        recvmsg = sock.recvmsg
        door = self.door
        for _ in range(READS_PER_WAKE):
            try:
                data, ancdata, _flags, addr = recvmsg(MAX_DATAGRAM, _ANCILLARY)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # ICMP errors reported on the socket, and the like
                log.debug("UDP error on %s:%s: %s", self.host, self.port, exc)
                continue
            now = time.time()
            self.received += 1
            src_ip = str(addr[0])
            delay = now - arrival_time(ancdata, now) if ancdata else 0.0
            if not door(src_ip, len(data), delay, now, "udp"):
                self.shed += 1
                continue
            self.datagram_received(data, addr, now)
            if self.sock is None:
                return

    def datagram_received(
        self, data: bytes, addr: tuple[str | int, ...], now: float | None = None
    ) -> None:
        src_ip, src_port = str(addr[0]), int(addr[1])
        peer = self._peers.get((src_ip, src_port))
        if peer is None:
            peer = Peer(
                "udp", src_ip, src_port, self._our_address(src_ip), self.port, self.listener_id
            )
            self._peers.put((src_ip, src_port), peer)
        try:
            self.receive(data, peer, time.time() if now is None else now)
        except Exception:
            self.errors += 1
            log.exception("error handling a datagram from %s:%s", src_ip, src_port)

    def send(self, peer: Peer, data: bytes) -> None:
        sock = self.sock
        if sock is None:
            return
        try:
            sock.sendto(data, (peer.src_ip, peer.src_port))
        except OSError as exc:  # a full send buffer, an unreachable address: UDP loses it
            self.send_errors += 1
            log.debug("UDP send to %s:%s failed: %s", peer.src_ip, peer.src_port, exc)


async def open_udp(
    listener_id: int, host: str, port: int, receive: Receive, door: Door | None = None
) -> UdpListener:
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
    listener = UdpListener(listener_id, host, port, receive, door)
    listener.attach(sock, loop)
    return listener
