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
from .fleet.publisher import fleet_sink
from .outputs.console import ConsoleSink
from .outputs.jsonl import JsonLinesSink
from .store.sqlite import SqliteSink
from .transport.media import MediaEndpoint
from .transport.stream import StreamListener
from .transport.tls import ensure_certificate, server_context
from .transport.udp import UdpListener, open_udp

log = logging.getLogger(__name__)
TICK = 0.02  # seconds between timer checks


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
        if config.store.url or config.nats.url:  # after SQLite: it reads what SQLite wrote
            n, url = config.nats, config.store.url
            sinks.append(fleet_sink(self.data_dir, url, n.url, n.stream, n.batch, n.drain_timeout))
        if config.console.enabled:
            sinks.append(ConsoleSink())
        sinks += extra_sinks or []
        self.bus = EventBus(sinks, config.recording.queue_size)
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
        receive = self.endpoint.receive
        if listen.transport == "udp":
            udp = await open_udp(index, listen.host, listen.port, receive)
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
        """Fire timers and print summaries until stop() is called."""
        interval = self.config.console.summary_interval
        next_summary = time.time() + interval if interval > 0 else None
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), TICK)
            now = time.time()
            self.endpoint.handle_timers(now)
            if next_summary is not None and now >= next_summary:
                self._summary(interval)
                next_summary = now + interval

    def _report_shed(self) -> None:
        """One sip.flood.shed per source shed since the last report."""
        for ip, rate, reflect, size in self.endpoint.guard.take_shed():
            peer = Peer("udp", ip, 0, "", 0)
            reason = "rate" if rate >= reflect else "reflection"
            self._emit(
                "sip.flood.shed", peer, {"reason": reason, "count": rate + reflect, "bytes": size}
            )

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
                "shed": e.guard.shed_rate + e.guard.shed_reflect,
                "dropped_events": self.bus.dropped,
                "media_calls": self.media.active,
                "media_refused": self.media.refused,
            },
        )

    async def close(self) -> None:
        for udp in self._udp.values():
            if udp.transport is not None:
                udp.transport.close()
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
                "shed": g.shed_rate + g.shed_reflect,
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
