"""RTP ports for answered calls: a real UDP socket per call on the announced port, so
that media does not meet a closed port (a tell). It counts what arrives; recording and
playback belong to the media layer."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any

log = logging.getLogger(__name__)


class _Counter(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.packets = 0
        self.bytes = 0
        self.first: float | None = None
        self.last: float | None = None
        self.sources: set[str] = set()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        now = time.time()
        self.packets += 1
        self.bytes += len(data)
        self.first = self.first or now
        self.last = now
        if len(self.sources) < 8:
            self.sources.add(f"{addr[0]}:{addr[1]}")


class UdpMediaPorts:
    """Even ports from [low, high), one socket per call, at most `max_calls` open."""

    def __init__(self, low: int = 10000, high: int = 20000, max_calls: int = 256) -> None:
        self.low, self.high = low, high
        self.max_calls = max_calls
        self._next = low
        self._open: dict[str, tuple[socket.socket, _Counter, int, asyncio.Future[Any]]] = {}
        self.refused = 0

    def open(self, key: str, local_ip: str) -> int | None:
        if key in self._open:
            return self._open[key][2]
        if len(self._open) >= self.max_calls:
            self.refused += 1
            return None
        family = socket.AF_INET6 if ":" in local_ip else socket.AF_INET
        for _ in range((self.high - self.low) // 2):
            port = self._next
            self._next = self._next + 2 if self._next + 2 < self.high else self.low
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.bind((local_ip, port))
            except OSError:
                sock.close()
                continue
            sock.setblocking(False)
            counter = _Counter()
            # The port is bound now; the transport attaches on the next loop iteration.
            loop = asyncio.get_running_loop()
            future = asyncio.ensure_future(
                loop.create_datagram_endpoint(lambda c=counter: c, sock=sock)  # type: ignore[misc]
            )
            self._open[key] = (sock, counter, port, future)
            return port
        self.refused += 1
        return None

    def close(self, key: str) -> dict[str, Any]:
        entry = self._open.pop(key, None)
        if entry is None:
            return {}
        sock, counter, port, future = entry
        if future.done() and not future.cancelled() and future.exception() is None:
            future.result()[0].close()
        else:
            future.cancel()
            sock.close()
        return {
            "rtp_port": port,
            "rtp_packets": counter.packets,
            "rtp_bytes": counter.bytes,
            "rtp_sources": sorted(counter.sources),
        }

    def close_all(self) -> None:
        for key in list(self._open):
            self.close(key)
