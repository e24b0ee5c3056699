"""How far behind the event loop runs: the queueing delay of what a stream connection sent.

A UDP datagram carries the kernel's receive time (SO_TIMESTAMPNS), so its wait is
measured exactly. Bytes read from a TCP connection carry no such stamp (asyncio's
streams do not give control messages), but they wait the same way: until the loop has
served everything that became ready before them. `LoopLag` measures that without waking
the loop when nothing happens: when a stream read asks for the delay and no probe is
out, it schedules one (`call_soon`), which runs once the loop has finished the turn it
is in; how late it ran is the latest lag. `delay()` is that, or how long the probe out
now has waited, whichever is more; a lag measured more than `STALE` seconds ago no
longer counts (the first message after a quiet spell is not shed for an old flood).

Accepted stream sockets also get a small receive buffer (`STREAM_RCVBUF`): a flooding
connection is then paused by TCP's own flow control instead of queueing seconds of
requests in the kernel, where no delay can be seen.
"""

from __future__ import annotations

import asyncio

STALE = 1.0  # seconds after which a measured lag is forgotten
STREAM_RCVBUF = 64 * 1024  # bytes asked for an accepted TCP socket (Linux doubles it)


class LoopLag:
    def __init__(self) -> None:
        self.last = 0.0  # how late the latest probe ran
        self.worst = 0.0  # the latest any probe ever ran
        self.probes = 0
        self._measured = float("-inf")  # loop time of the latest probe
        self._armed: float | None = None  # loop time the probe out now was scheduled
        self._loop: asyncio.AbstractEventLoop | None = None

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def detach(self) -> None:
        self._loop = None

    def delay(self) -> float:
        """Seconds the loop is behind now, as far as is known (0 when not attached)."""
        loop = self._loop
        if loop is None:
            return 0.0
        now = loop.time()
        armed = self._armed
        if armed is None:
            self._armed = now
            loop.call_soon(self._probe)
            waited = 0.0
        else:
            waited = now - armed
        last = self.last if now - self._measured <= STALE else 0.0
        return max(last, waited)

    def _probe(self) -> None:
        loop, armed = self._loop, self._armed
        self._armed = None
        if loop is None or armed is None:
            return
        now = loop.time()
        self.last = now - armed
        self.worst = max(self.worst, self.last)
        self._measured = now
        self.probes += 1
