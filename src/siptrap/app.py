"""Wiring: configuration -> sinks and event bus -> endpoint -> transports, and the run loop.

`Honeypot` starts everything, serves until `stop()` (Ctrl-C, SIGTERM, or a test), then
stops in the order that loses nothing: sockets closed, calls ended, credential recovery
drained, `sensor.stopped` emitted, every sink's queue written out.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import json
import logging
import math
import os
import signal
import socket
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .actions.sink import ActionSink
from .analysis.actions import CommandRunner
from .analysis.engine import AnalysisEngine
from .analysis.live import AnalysisSink, rules_in_force
from .analysis.reconnaissance import ReconBoard
from .analysis.rules import RuleError, RuleSet
from .config import Config, Listen, RecordingConfig
from .endpoint.credentials import RecoveryJob, RecoveryWorker
from .endpoint.personality import BUILTIN
from .endpoint.uas import Endpoint
from .events.bus import EventBus, Sink
from .events.record import Event, Peer
from .fleet.publisher import fleet_sink
from .memory import MemoryReturn, tune_collector
from .outputs.alerts import AlertFileSink, AlertMailSink
from .outputs.console import ConsoleSink
from .outputs.jsonl import JsonLinesSink
from .outputs.plugin import dropped_counts, output_sinks, report
from .outputs.recorder import ProcessSink
from .recon.service import Reconnaissance
from .settings import ConfigError
from .startup import StartupError, check_data_dir
from .store.sqlite import SqliteSink, StoreError
from .transport.lag import LoopLag
from .transport.limits import (
    ConnectionTable,
    StorageBudget,
    TransportCounters,
    storage_gate,
)
from .transport.media import MediaEndpoint
from .transport.stream import StreamLimits, StreamListener
from .transport.tls import ensure_certificate, server_context
from .transport.udp import UdpListener, local_address_for, open_udp
from .transport.upstream import UpstreamIO
from .upstream.client import Outgoing, RegistrarClient
from .web.control import SOCKET_NAME, Controller, ControlServer, Switch, rules_reloader
from .web.settings import WebSettings

log = logging.getLogger(__name__)


def analysis_sinks(
    config: Config,
    data_dir: Path,
    emit: Callable[[Event], None],
    recon: ReconBoard | None = None,
    rules: RuleSet | None = None,
) -> list[Sink]:
    """The sinks the honeypot adds for analysis and alerts (none if analysis is off).
    `recon`: active mode's reconnaissance, asked about every INVITE (issue 14); `rules`:
    the rule set read already (None: read the configured files here).

    Raises RuleError when a configured rule file is wrong: the honeypot does not start."""
    a, al = config.analysis, config.alerts
    rules = rules if rules is not None else rules_in_force(a.rules)
    if not a.enabled:
        return []
    runner = CommandRunner(a.system_timeout, a.system_concurrency) if a.system_actions else None
    engine = AnalysisEngine(rules, config.engine_settings(), run_command=runner, recon=recon)
    sinks: list[Sink] = [AnalysisSink(engine, emit, config.sensor.name, runner)]
    if al.files:
        sinks.append(AlertFileSink(data_dir / "alerts"))
    if al.smtp_host:
        sinks.append(
            AlertMailSink(
                al.smtp_host,
                al.smtp_port,
                al.smtp_from,
                tuple(al.smtp_to),
                min_severity=al.min_severity,
                starttls=al.smtp_starttls,
                user=al.smtp_user,
                password=al.smtp_password,
                max_per_hour=al.max_emails_per_hour,
            )
        )
    return sinks


@dataclass
class Bound:
    """What a listen entry became: the socket actually open (port 0 -> the real port)."""

    listen: Listen
    port: int
    obj: Any = field(repr=False)

    def __str__(self) -> str:
        return str(Listen(self.listen.transport, self.listen.host, self.port))


def recording_sinks(rec: RecordingConfig, data_dir: Path) -> list[Sink]:
    """events.jsonl and siptrap.db: each written by a writer process of its own
    (recording.writer = "process") or by a sink thread here ("thread")."""
    sinks: list[Sink] = []
    process = rec.writer == "process"
    if rec.jsonl:
        path = data_dir / "events.jsonl"
        sinks.append(ProcessSink("jsonl", path) if process else JsonLinesSink(path))
    if rec.sqlite:
        path = data_dir / "siptrap.db"
        sinks.append(ProcessSink("sqlite", path) if process else SqliteSink(path))
    return sinks


class Honeypot:
    def __init__(
        self, config: Config, extra_sinks: list[Sink] | None = None, web: WebSettings | None = None
    ) -> None:
        self.config = config
        self.data_dir = config.data_path
        check_data_dir(self.data_dir, sqlite=config.recording.sqlite, jsonl=config.recording.jsonl)
        # Analysis first: the bus stops sinks in order, and its last alerts (written when it
        # stops) must reach the sinks after it. The rule files are read once, here: their
        # rules for the analysis, their modes (type = Mode) for recon.
        rules = rules_in_force(config.analysis.rules)
        try:
            self.recon = Reconnaissance(
                config.recon,
                lambda e: self.bus.emit(e),
                config.sensor.name,
                config.sensor.mode,
                own=_own_addresses(config),
                modes=rules.modes,
            )
        except ValueError as exc:  # a mode defined twice, or [sensor] mode undefined
            raise StartupError(f"sensor.mode: {exc}") from None
        board = ReconBoard(
            self.recon.submit,
            idle=self.recon.idle,
            wait=config.recon.timeout * 4 + 2,
            ttl=config.recon.ttl,
            wants=self.recon.wants,
        )
        sinks: list[Sink] = analysis_sinks(
            config, self.data_dir, lambda e: self.bus.emit(e), recon=board, rules=rules
        )
        if config.actions:  # issue 11: responses to alerts (before the recording sinks)
            sinks.append(self._action_sink(config))
        sinks += recording_sinks(config.recording, self.data_dir)
        if config.store.url or config.nats.url:  # after SQLite: it reads what SQLite wrote
            n, url = config.nats, config.store.url
            sinks.append(fleet_sink(self.data_dir, url, n.url, n.stream, n.batch, n.drain_timeout))
        sinks.append(ConsoleSink())
        self.outputs = output_sinks(config.outputs, self.data_dir)
        sinks += self.outputs
        # console lines and alert e-mail can be switched at runtime (siptrap ctl)
        sinks = [
            Switch(s, s.name != "console" or config.console.enabled)
            if s.name in ("console", "alert-mail")
            else s
            for s in sinks
        ]
        self.web = web
        if web is not None:
            from .web.wiring import metrics_sink

            self.registry, metrics = metrics_sink(self)
            sinks.append(metrics)
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
            [ext.media_file for ext in config.plan if ext.media_file],
        )
        self.endpoint = Endpoint(
            config.endpoint_settings(),
            emit=self.bus.emit,
            send=self._send,
            media=self.media,
            recovery=self.recovery if config.credentials.recover else None,
        )
        self.bound: list[Bound] = []
        self._udp: dict[int, UdpListener] = {}
        self._streams: dict[int, StreamListener] = {}
        self._conn_ids = itertools.count(1_000_000)
        self._lag = LoopLag()  # how far behind the loop runs: the TCP/TLS door's delay
        self._memory = MemoryReturn.for_this_system()  # memory handed back after a flood
        self.upstream: RegistrarClient | None = None
        self._upstream_io: UpstreamIO | None = None
        self._upstream_dirty = True
        if config.upstream:  # issue 11: registered at the domain's registrars
            self.upstream = RegistrarClient(config.upstream, self._upstream_event)
            self.endpoint.response_hook = self._upstream_response
            self._upstream_io = UpstreamIO(
                self.upstream,
                self._upstream_udp_send,
                self._upstream_local,
                self._receive,
                self.endpoint.record_malformed,
                lambda: next(self._conn_ids),
                config.transport.max_message_size,
            )
        t = config.transport
        self.transport_counters = TransportCounters()
        self.connections = ConnectionTable(
            config.flood.max_connections, t.max_connections_per_source, self.transport_counters
        )
        self.storage = StorageBudget(
            t.max_stored_per_source, t.stored_window, self.transport_counters
        )
        self._stopping = asyncio.Event()
        self.started = time.time()
        self.controller = Controller(
            self, rules_reloader(self.bus, config, on_rules=self._rules_read)
        )
        self._control = ControlServer(self.data_dir / SOCKET_NAME, self.controller)
        self._web: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._wake_at = float("inf")  # when the timer fires (time.time() clock)
        self._rearm_pending = False
        self._next_summary: float | None = None

    # -- mode and control ------------------------------------------------------------------
    @property
    def mode(self) -> str:
        """passive, active or a custom mode (set_mode switches it)."""
        return self.recon.mode

    def listening(self) -> list[str]:
        return [str(b) for b in self.bound]

    def _action_sink(self, config: Config) -> ActionSink:
        return ActionSink(
            config.actions,
            config.policy,
            config.analysis.proxies,
            self.data_dir,
            lambda e: self.bus.emit(e),
            config.sensor.name,
        )

    # -- sending and events -----------------------------------------------------------
    def _send(self, peer: Peer, data: bytes) -> None:
        if peer.transport == "udp":
            listener = self._udp.get(peer.connection)
            if listener is not None:
                listener.send(peer, data)
            return
        if self._upstream_io is not None and self._upstream_io.send_to_peer(peer, data):
            return  # on a link siptrap opened to a registrar
        for stream in self._streams.values():
            if peer.connection in stream.connections:
                stream.send(peer, data)
                return

    def _emit(self, event_id: str, peer: Peer | None, fields: dict[str, Any]) -> None:
        self.bus.emit(Event(event_id, time.time(), self.config.sensor.name, peer, fields))

    def set_mode(self, mode: str, who: str) -> str:
        """Switch the sensor's mode at runtime (passive, active or a custom mode: of the
        rule files, or of recon.modes); emits sensor.mode.changed. Returns the previous
        mode; raises ValueError for a mode that is not defined."""
        previous = self.recon.set_mode(mode)
        self._emit("sensor.mode.changed", None, {"mode": mode, "previous": previous, "who": who})
        return previous

    def set_personality(self, name: str) -> str:
        """Answer as the personality NAME (built-in or a [personalities.NAME] of the
        configuration) from the next message on. Returns the previous name; raises
        ValueError for a name that is not defined (nothing changes)."""
        try:
            personality = self.config.personality_named(name)
        except ConfigError:
            known = ", ".join([*BUILTIN, *self.config.personalities])
            raise ValueError(f"unknown personality {name[:40]!r}: one of {known}") from None
        return self.endpoint.set_personality(personality).name

    def _rules_read(self, rules: RuleSet) -> None:
        """`rules reload` read new rule files: their modes replace the old ones (raises
        RuleError, and nothing changes, when the mode in force is no longer defined)."""
        try:
            self.recon.set_modes(rules.modes)
        except ValueError as exc:
            raise RuleError("rules", 0, f"{exc}: switch modes first") from None

    def _recovered(self, job: RecoveryJob, password: str) -> None:
        self.endpoint.on_recovered(job, password, time.time())

    # -- upstream registrations (upstream/) ---------------------------------------------
    def _upstream_event(self, event_id: str, fields: dict[str, Any]) -> None:
        self._emit(event_id, None, fields)
        self._upstream_dirty = True
        with contextlib.suppress(RuntimeError):  # no periodic tick writes it: soon, once
            asyncio.get_running_loop().call_soon(self._upstream_status)

    def _upstream_status(self) -> None:
        """DATA/upstream.json for `siptrap status` (written when a registration changed)."""
        if self.upstream is None or not self._upstream_dirty:
            return
        self._upstream_dirty = False
        state = {"updated": time.time(), "registrations": self.upstream.status(time.time())}
        path = self.data_dir / "upstream.json"
        tmp = path.with_name(".upstream.json.tmp")
        try:
            tmp.write_text(json.dumps(state, indent=1) + "\n")
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("could not write %s: %s", path, exc)

    def _upstream_response(self, msg: Any, peer: Peer, now: float) -> None:
        if self.upstream is not None and self.upstream.owns(msg.call_id):
            self._upstream_send(self.upstream.receive(msg, now))

    def _upstream_send(self, out: list[Outgoing]) -> None:
        if self._upstream_io is not None:
            self._upstream_io.send(out)

    def _upstream_udp_send(self, host: str, port: int, data: bytes) -> bool:
        udp = self._upstream_udp()
        if udp is None:
            return False
        udp.send(Peer("udp", host, port, "", 0), data)
        return True

    def _upstream_udp(self) -> UdpListener | None:
        return next((u for u in self._udp.values() if u.family == socket.AF_INET), None)

    def _upstream_local(self, target: tuple[str, int]) -> tuple[str, int] | None:
        """Our address for a UDP registrar at `target` (Via and Contact)."""
        udp = self._upstream_udp()
        if udp is None or ":" in target[0]:
            return None
        host = self.config.sensor.public_address or udp.host
        if host in ("0.0.0.0", ""):
            host = local_address_for(target[0], socket.AF_INET)
        return host, udp.port

    def _upstream_start(self) -> None:
        if self.upstream is None:
            return
        first = next((up for up in self.config.upstream if up.resolved), None)
        local = self._upstream_local(first.target) if first is not None else None
        if local is not None:
            self.upstream.local = local
        self._upstream_send(self.upstream.start(time.time()))

    async def _upstream_stop(self) -> None:
        """Expires 0 for each registration, and up to a second for the answers."""
        if self.upstream is None:
            return
        self._upstream_send(self.upstream.stop(time.time()))
        deadline = time.time() + 1.0
        while time.time() < deadline and any(
            r.state == "unregistering" for r in self.upstream.regs
        ):
            await asyncio.sleep(0.02)  # the answers to Expires 0 come within ms
            self._upstream_send(self.upstream.handle_timers(time.time()))
        self._upstream_status()
        if self._upstream_io is not None:
            await self._upstream_io.close()

    # -- start and stop ------------------------------------------------------------------
    async def start(self) -> None:
        try:
            self.bus.start()
        except (OSError, sqlite3.Error, StoreError) as exc:  # a sink that cannot open
            raise StartupError(f"cannot start recording: {exc}") from None
        await self.recon.start()
        if self.config.credentials.recover:
            self.recovery.start()
        failures: list[str] = []
        for index, listen in enumerate(self.config.listen()):
            try:
                self.bound.append(await self._open(index, listen))
            except OSError as exc:
                self._emit("sensor.listen.failed", None, {"listen": str(listen), "error": str(exc)})
                failures.append(f"{listen}: {exc.strerror or exc}")
        if not self.bound:  # refuse to run deaf
            await self.close()
            raise StartupError("no configured socket could be opened (" + "; ".join(failures) + ")")
        self._upstream_start()
        try:
            await self._control.start()
        except OSError as exc:
            log.warning("control socket %s not opened: %s", self._control.path, exc)
        if self.web is not None:
            from .web.wiring import start_web

            self._web = await start_web(self, self.web)
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
            gated = storage_gate(receive, self.storage, self._udp_capped)
            door = self.endpoint.guard.door
            udp = await open_udp(index, listen.host, listen.port, gated, door)
            self._udp[index] = udp
            return Bound(listen, udp.port, udp)
        context = self._tls_context() if listen.transport == "tls" else None
        t = self.config.transport
        limits = StreamLimits(
            idle_timeout=self.config.flood.idle_timeout,
            message_timeout=t.message_timeout,
            max_message=t.max_message_size,
            max_stored_per_connection=t.max_stored_per_connection,
            max_tls_bytes_kept=t.max_tls_bytes_kept,
        )
        stream = StreamListener(
            listen.transport,
            listen.host,
            listen.port,
            receive,
            self.endpoint.record_malformed,
            self._emit,
            lambda: next(self._conn_ids),
            limits,
            self.connections,
            self.storage,
            context,
            door=self.endpoint.guard.door,
            lag=self._lag.delay,
        )
        self._lag.attach(asyncio.get_running_loop())
        await stream.start()
        self._streams[index] = stream
        return Bound(listen, stream.port, stream)

    def _udp_capped(self, peer: Peer, size: int) -> None:
        fields = {
            "scope": "source",
            "cap": self.storage.per_source,
            "window": self.storage.window,
            "size": size,
        }
        self._emit("transport.storage.capped", peer, fields)

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
    @property
    def next_wake(self) -> float | None:
        """When the run loop's timer fires next (time.time() clock); None: no timer is
        armed, nothing is due until a message arrives."""
        return self._wake_at if self._timer is not None else None

    def _receive(self, data: bytes, peer: Peer, now: float) -> None:
        """A message for the endpoint; afterwards (once per turn of the loop, however
        many messages came) the timer is moved earlier if the endpoint's next deadline is."""
        self.endpoint.receive(data, peer, now)
        if not self._rearm_pending and self._loop is not None:
            self._rearm_pending = True
            self._loop.call_soon(self._rearm)

    def _rearm(self) -> None:
        self._rearm_pending = False
        upstream = self.upstream.next_deadline() if self.upstream is not None else None
        for deadline in (self.endpoint.next_deadline(), upstream):
            if deadline is not None and deadline < self._wake_at:
                self._arm(time.time())
                return

    def _arm(self, now: float) -> None:
        """Wake at the first of the endpoint's next deadline, the next summary and the
        upstream registrations' next deadline; with none of them, not at all (a message
        that arms a deadline re-arms the timer, see _rearm)."""
        assert self._loop is not None
        upstream = self.upstream.next_deadline() if self.upstream is not None else None
        armed = [self.endpoint.next_deadline(), self._next_summary, upstream]
        deadlines = [d for d in armed if d is not None]
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._wake_at = min(deadlines) if deadlines else math.inf
        if deadlines:
            delay = max(0.0, self._wake_at - now)
            self._timer = self._loop.call_at(self._loop.time() + delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        now = time.time()
        try:
            self.endpoint.handle_timers(now)
            self._memory.observe(len(self.endpoint.txs))
            if self.upstream is not None:
                self._upstream_send(self.upstream.handle_timers(now))
                self._upstream_status()
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
            peer = Peer(shed.transport, shed.ip, 0, "", 0)
            self._emit("sip.flood.shed", peer, fields | reasons)
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
                "output_dropped": dropped_counts(self.outputs, self.bus.runners),
                "media_calls": self.media.active,
                "media_refused": self.media.refused,
                **self._transport_stats(),
            },
        )

    def _transport_stats(self) -> dict[str, int]:
        """Connection and storage counters since start (issue 8)."""
        c = self.transport_counters
        return {
            "connections": len(self.connections),
            "connections_refused": c.refused,
            "connections_shed": c.shed,
            "tls_failed": c.tls_failed,
            "unstored_bytes": c.unstored_bytes,
        }

    async def close(self) -> None:
        await self._upstream_stop()
        if self._web is not None:
            await self._web.close()
        await self._control.close()
        for udp in self._udp.values():
            udp.close()
        for stream in self._streams.values():
            await stream.close()
        self._lag.detach()
        now = time.time()
        self.endpoint.stop(now)
        await self.media.aclose()
        if self.config.credentials.recover:
            await asyncio.to_thread(self.recovery.stop)
        self._report_shed()  # what was shed since the last summary (or ever, without them)
        await self.recon.aclose()
        await asyncio.to_thread(self.bus.stop_sinks, AnalysisSink)  # its last alerts before the end
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
        report(self.outputs)


def _own_addresses(config: Config) -> tuple[str, ...]:
    """The honeypot's own addresses: never probed, whatever `allow` says."""
    out = []
    for host in [config.sensor.public_address] + [item.host for item in config.listen()]:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            continue  # a name, or empty
        if not ip.is_unspecified:
            out.append(str(ip))
    return tuple(dict.fromkeys(out))


async def run_honeypot(config: Config, web: WebSettings | None = None) -> None:
    honeypot = Honeypot(config, web=web)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, honeypot.stop)
    # What was built is frozen and young collections made far rarer, before any socket
    # opens: the full collection this does must not keep the first requests waiting.
    tune_collector()
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
