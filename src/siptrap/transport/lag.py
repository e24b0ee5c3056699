"""How far behind the event loop runs: the queueing delay of bytes read from a stream.

A UDP datagram carries the kernel's receive time (SO_TIMESTAMPNS), so its wait is
measured exactly. TCP has no such stamp per message (the kernel merges segments and
keeps the newest stamp), but its bytes wait the same way: in the socket buffer until
the loop serves the connection. `LoopLag` measures how late the loop runs a callback
it asked for every `interval` seconds; read at any moment, `delay()` is the lateness of
the last tick or, if the next tick is overdue, how overdue it is now, which is how long
a connection that became readable since then may have waited. The TCP/TLS listener
gives it to the flood guard's door with each framed message, as the UDP listener gives
a datagram's measured wait. Accepted stream sockets also get a small receive buffer
(`STREAM_RCVBUF`), so a flooding connection is paused by TCP's own flow control
instead of queueing seconds of requests in the kernel.
"""

from __future__ import annotations

import asyncio

INTERVAL = 0.05  # seconds between ticks (20 wake-ups a second while the listener is open)
STREAM_RCVBUF = 32 * 1024  # bytes asked for an accepted TCP socket (Linux doubles it)


class LoopLag:
    def __init__(self, interval: float = INTERVAL) -> None:
        self.interval = interval
        self.last = 0.0  # how late the last tick ran
        self.worst = 0.0  # the latest tick ever ran, since started
        self._due = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._schedule(loop.time())

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = None
        self._loop = None

    def _schedule(self, now: float) -> None:
        assert self._loop is not None
        self._due = now + self.interval
        self._handle = self._loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        if self._loop is None:
            return
        now = self._loop.time()
        self.last = max(0.0, now - self._due)
        self.worst = max(self.worst, self.last)
        self._schedule(now)

    def delay(self) -> float:
        """Seconds the loop is behind now (0 when it is not running)."""
        loop = self._loop
        if loop is None:
            return 0.0
        return max(self.last, loop.time() - self._due)
