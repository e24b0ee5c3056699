"""Wiring: configuration -> sinks and event bus -> endpoint -> transports, and the run loop.

`Honeypot` starts everything, serves until `stop()` (Ctrl-C, SIGTERM, or a test), then
stops in the order that loses nothing: sockets closed, calls ended, credential recovery
drained, `sensor.stopped` emitted, every sink's queue written out.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .analysis.live import analysis_sinks, stop_analysis
from .config import Config, Listen
from .endpoint.credentials import RecoveryJob, RecoveryWorker
from .endpoint.uas import Endpoint
from .events.bus import EventBus, Sink
from .events.record import Event, Peer
from .outputs.console import ConsoleSink
from .outputs.jsonl import JsonLinesSink
from .store.sqlite import SqliteSink
from .transport.media import MediaEndpoint
from .transport.stream import StreamListener
from .transport.tls import ensure_certificate, server_context
from .transport.udp import UdpListener, open_udp

log = logging.getLogger(__name__)
IDLE_WAKE = 0.25  # the longest the run loop sleeps: expiries without a deadline of their own


@dataclass
class Bound:
    """What a listen entry became: the socket actually open (port 0 -> the real port)."""

    listen: Listen
    port: int
    obj: Any = field(repr=False)

    def __str__(self) -> str:
        return str(Listen(self.listen.transport, self.listen.host, self.port))


class Honeypot:
    def __init__(self, config: Config, extra_sinks: list[Sink] | None = None) -> None:
        self.config = config
        self.data_dir = config.data_path
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Analysis first: the bus stops sinks in order, and its last alerts (written when it
        # stops) must reach the sinks after it.
        sinks: list[Sink] = analysis_sinks(config, self.data_dir, lambda e: self.bus.emit(e))
        if config.recording.jsonl:
            sinks.append(JsonLinesSink(self.data_dir / "events.jsonl"))
        if config.recording.sqlite:
            sinks.append(SqliteSink(self.data_dir / "siptrap.db"))
        if config.console.enabled:
            sinks.append(ConsoleSink())
        sinks += extra_sinks or []
        self.bus = EventBus(sinks, config.recording.queue_size, config.recording.flush_interval)
        self.recovery = RecoveryWorker(
            self._recovered, config.credentials.max_candidates, config.credentials.queue_size
        )
        self.media = MediaEndpoint(
            config.media,
            self.data_dir,
            self.bus.emit,
            config.sensor.name,
            [ext.media_file for ext in config.extension_list() if ext.media_file],
        )
        self.endpoint = Endpoint(
            config,
            emit=self.bus.emit,
            send=self._send,
            media=self.media,
            recovery=self.recovery if config.credentials.recover else None,
        )
        self.bound: list[Bound] = []
        self._udp: dict[int, UdpListener] = {}
        self._streams: dict[int, StreamListener] = {}
        self._conn_ids = itertools.count(1_000_000)
        self._stopping = asyncio.Event()
        self.started = time.time()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._wake_at = float("inf")  # when the timer fires (time.time() clock)
        self._rearm_pending = False
        self._next_summary: float | None = None

    # -- sending and events -----------------------------------------------------------
    def _send(self, peer: Peer, data: bytes) -> None:
        if peer.transport == "udp":
            listener = self._udp.get(peer.connection)
            if listener is not None:
                listener.send(peer, data)
            return
        for stream in self._streams.values():
            if peer.connection in stream.connections:
                stream.send(peer, data)
                return

    def _emit(self, event_id: str, peer: Peer | None, fields: dict[str, Any]) -> None:
        self.bus.emit(Event(event_id, time.time(), self.config.sensor.name, peer, fields))

    def _recovered(self, job: RecoveryJob, password: str) -> None:
        self.endpoint.on_recovered(job, password, time.time())

    # -- start and stop ------------------------------------------------------------------
    async def start(self) -> None:
        self.bus.start()
        if self.config.credentials.recover:
            self.recovery.start()
        for index, listen in enumerate(self.config.listen()):
            try:
                self.bound.append(await self._open(index, listen))
            except OSError as exc:
                self._emit("sensor.listen.failed", None, {"listen": str(listen), "error": str(exc)})
        self._emit(
            "sensor.started",
            None,
            {
                "version": __version__,
                "personality": self.endpoint.p.name,
                "listen": [str(b) for b in self.bound],
                "data_dir": str(self.data_dir),
                "extensions": len(self.endpoint.plan),
            },
        )

    async def _open(self, index: int, listen: Listen) -> Bound:
        receive = self._receive
        if listen.transport == "udp":
            door = self.endpoint.guard.door
            udp = await open_udp(index, listen.host, listen.port, receive, door)
            self._udp[index] = udp
            return Bound(listen, udp.port, udp)
        context = self._tls_context() if listen.transport == "tls" else None
        stream = StreamListener(
            listen.transport,
            listen.host,
            listen.port,
            receive,
            self._emit,
            lambda: next(self._conn_ids),
            self.config.flood.max_connections,
            self.config.flood.idle_timeout,
            context,
        )
        await stream.start()
        self._streams[index] = stream
        return Bound(listen, stream.port, stream)

    def _tls_context(self) -> Any:
        tls = self.config.tls
        if tls.cert and tls.key:
            return server_context(Path(tls.cert), Path(tls.key))
        cert, key = ensure_certificate(self.data_dir / "tls", tls.common_name)
        return server_context(cert, key)

    def stop(self) -> None:
        self._stopping.set()

    async def serve(self) -> None:
        """Fire timers and print summaries until stop() is called: one timer armed at the
        next deadline (see _arm), not a periodic tick."""
        interval = self.config.console.summary_interval
        now = time.time()
        self._next_summary = now + interval if interval > 0 else None
        self._loop = asyncio.get_running_loop()
        self._arm(now)
        try:
            await self._stopping.wait()
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    # -- the run loop: timers as deadlines ----------------------------------------------
    def _receive(self, data: bytes, peer: Peer, now: float) -> None:
        """A message for the endpoint; afterwards (once per turn of the loop, however
        many messages came) the timer is moved earlier if the endpoint's next deadline is."""
        self.endpoint.receive(data, peer, now)
        if not self._rearm_pending and self._loop is not None:
            self._rearm_pending = True
            self._loop.call_soon(self._rearm)

    def _rearm(self) -> None:
        self._rearm_pending = False
        deadline = self.endpoint.next_deadline()
        if deadline is not None and deadline < self._wake_at:
            self._arm(time.time())

    def _arm(self, now: float) -> None:
        """Wake at the endpoint's next deadline, the next summary, or IDLE_WAKE from now,
        whichever is first."""
        assert self._loop is not None
        wake = now + IDLE_WAKE
        for deadline in (self.endpoint.next_deadline(), self._next_summary):
            if deadline is not None and deadline < wake:
                wake = deadline
        if self._timer is not None:
            self._timer.cancel()
        self._wake_at = wake
        self._timer = self._loop.call_at(self._loop.time() + max(0.0, wake - now), self._fire)

    def _fire(self) -> None:
        self._timer = None
        now = time.time()
        try:
            self.endpoint.handle_timers(now)
            interval = self.config.console.summary_interval
            if self._next_summary is not None and now >= self._next_summary:
                self._summary(interval)
                self._next_summary = now + interval
        finally:
            if not self._stopping.is_set():
                self._arm(time.time())

    def _report_shed(self) -> None:
        """One sip.flood.shed per source shed since the last report, and one (without a
        peer) for all of them together."""
        totals: dict[str, int] = {}
        count = size = 0
        for shed in self.endpoint.guard.take_shed():
            reasons = shed.reasons()
            fields = {"reason": shed.reason, "count": shed.count, "bytes": shed.bytes}
            self._emit("sip.flood.shed", Peer("udp", shed.ip, 0, "", 0), fields | reasons)
            for reason, n in reasons.items():
                totals[reason] = totals.get(reason, 0) + n
            count += shed.count
            size += shed.bytes
        if count:
            reason = max(totals, key=lambda r: totals[r])
            fields = {"reason": reason, "count": count, "bytes": size, "total": True}
            self._emit("sip.flood.shed", None, fields | totals)

    def _summary(self, interval: float) -> None:
        self._report_shed()
        e = self.endpoint
        self._emit(
            "sensor.stats",
            None,
            {
                "interval": interval,
                "requests": e.requests,
                "sources": len(e.guard),
                "registrations": len(e.registrar),
                "calls": len(e.calls.calls),
                "shed": e.guard.shed,
                "dropped_events": self.bus.dropped,
                "media_calls": self.media.active,
                "media_refused": self.media.refused,
            },
        )

    async def close(self) -> None:
        for udp in self._udp.values():
            udp.close()
        for stream in self._streams.values():
            await stream.close()
        now = time.time()
        self.endpoint.stop(now)
        await self.media.aclose()
        if self.config.credentials.recover:
            await asyncio.to_thread(self.recovery.stop)
        self._report_shed()  # what was shed since the last summary (or ever, without them)
        await asyncio.to_thread(stop_analysis, self.bus)  # its last alerts before the end
        g = self.endpoint.guard
        self._emit(
            "sensor.stopped",
            None,
            {
                "uptime": round(now - self.started, 3),
                "requests": self.endpoint.requests,
                "dropped_events": self.bus.dropped,
                "shed": g.shed,
            },
        )
        await asyncio.to_thread(self.bus.stop)


async def run_honeypot(config: Config) -> None:
    honeypot = Honeypot(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, honeypot.stop)
    await honeypot.start()
    try:
        await honeypot.serve()
    finally:
        await honeypot.close()


def install_uvloop() -> bool:
    try:
        import uvloop
    except ImportError:
        return False
    uvloop.install()
    return True
