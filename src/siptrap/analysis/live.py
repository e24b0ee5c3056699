"""Live analysis in the honeypot: a sink on the event bus that runs the analysis engine.

`AnalysisSink` receives every event through its own bounded queue and thread (the bus's
`SinkRunner`), off the network path. It takes each received request
(`sip.request.received`) as the network path parsed it (`Event.message`: the bytes are
parsed once), parses each response the honeypot sent (`sip.response.sent`, built as bytes),
takes digest attempts, recovered passwords, ended calls (with their RTP counts) and its own
registrations at the domain's registrars from the honeypot's own events, and puts the
engine's alerts back on the bus as `analysis.alert.raised` events, which it then ignores
when they come back to it. A small ticker thread advances the engine's clock when no
traffic does, so windows expire and ongoing alerts are updated on time; a lock keeps the
engine to one thread at a time.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from ..events.record import Event, Peer
from ..sip import ParseError, Request, Response, parse
from .actions import CommandRunner
from .alerts import alert_event
from .engine import LEARNING, REFUSALS, AnalysisEngine
from .evaluate import Source
from .rules import RuleSet, load_builtin_rules, load_rules

log = logging.getLogger(__name__)
TICK = 0.25


def rules_in_force(paths: tuple[str, ...] | list[str]) -> RuleSet:
    """The configured rule files, or the built-in ones; raises RuleError (file, line)."""
    return load_rules(paths) if paths else load_builtin_rules()


class AnalysisSink:
    name = "analysis"

    def __init__(
        self,
        engine: AnalysisEngine,
        emit: Callable[[Event], None],
        sensor: str,
        runner: CommandRunner | None = None,
        tick: float = TICK,
    ) -> None:
        self.engine = engine
        self.emit = emit
        self.sensor = sensor
        self.runner = runner
        self.tick_seconds = tick
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick_loop, name="analysis-tick", daemon=True)
        self.alerts = 0
        self.errors = 0

    def open(self) -> None:
        self._ticker.start()

    def close(self) -> None:
        self._stop.set()
        if self._ticker.is_alive():
            self._ticker.join()
        with self.lock:
            self.engine.finish(time.time())
            self._flush()
        if self.runner is not None:
            self.runner.close(wait=False)

    def write(self, events: list[Event]) -> None:
        with self.lock:
            for event in events:
                if event.id.startswith("analysis."):
                    continue  # our own alerts, back from the bus
                try:
                    self._handle(event)
                except Exception:  # a bad event must not stop the analysis
                    self.errors += 1
                    log.exception("analysis failed on a %s event", event.id)
            self._flush()

    def _tick_loop(self) -> None:
        while not self._stop.wait(self.tick_seconds):
            with self.lock:
                self.engine.tick(time.time())
                self._flush()

    def _flush(self) -> None:
        for alert in self.engine.take():
            self.alerts += 1
            self.emit(alert_event(alert, self.sensor, max(self.engine.now, alert.last_seen)))

    def _handle(self, event: Event) -> None:
        peer = event.peer
        f = event.fields
        eid = event.id
        if eid == "sip.request.received" and event.raw is not None and peer is not None:
            msg = _message(event, peer)
            if isinstance(msg, Request):
                retrans = bool(f.get("retransmission"))
                source = _origin(f, peer) or _source(peer)
                self.engine.request(msg, source, event.ts, retransmission=retrans)
        elif eid == "sip.response.sent" and event.raw is not None and peer is not None:
            if not _may_teach(event.raw, f.get("status")):
                self.engine.tick(event.ts)  # all the engine would do with it
                return
            msg = _parse(event.raw, peer)
            if isinstance(msg, Response) and not f.get("retransmission"):
                self.engine.response(msg, _source(peer), event.ts)
        elif eid == "sip.request.sent" and event.raw is not None and peer is not None:
            msg = _parse(event.raw, peer)
            if isinstance(msg, Request):
                self.engine.own_request(msg, event.ts)
        elif eid == "sip.message.malformed" and f.get("error") and peer is not None:
            self.engine.malformed(event.raw or b"", _source(peer), event.ts, str(f["error"]))
        elif eid == "sip.auth.attempt" and peer is not None:
            password = f.get("password")
            self.engine.auth_attempt(
                peer.src_ip,
                str(f.get("username") or ""),
                str(f.get("result") or ""),
                str(password) if password is not None else None,
                event.ts,
            )
        elif eid == "sip.auth.recovered" and peer is not None and f.get("password") is not None:
            self.engine.auth_recovered(
                peer.src_ip, str(f.get("username") or ""), str(f["password"]), event.ts
            )
        elif eid in ("sip.upstream.registered", "sip.upstream.removed"):
            # the registrar's pings (qualify) and deliveries to this contact are no sweep
            self.engine.finder.registrations.upstream(
                str(f.get("registrar") or ""),
                str(f.get("user") or ""),
                eid == "sip.upstream.registered",
            )
            self.engine.tick(event.ts)
        elif eid == "recon.result":
            self.engine.recon_result(f, event.ts)
        elif eid == "sip.call.ended":
            media: Any = f.get("media") or {}
            packets = media.get("rtp_packets", 0) if isinstance(media, dict) else 0
            self.engine.call_ended(str(f.get("call_id") or ""), event.ts, int(packets or 0))
        else:
            self.engine.tick(event.ts)


# a CSeq line as the honeypot writes it: number, method
_CSEQ = re.compile(rb"^cseq[ \t]*:[ \t]*[0-9]+[ \t]+([A-Za-z]+)[ \t]*\r?$", re.I | re.M)


def _may_teach(raw: bytes, status: object) -> bool:
    """Whether a response the honeypot sent can do more than advance the engine's clock
    (see `AnalysisEngine.response`): a refusal, or an answer whose one CSeq line names
    INVITE or REGISTER, or anything not plainly otherwise. Then it is parsed."""
    if not isinstance(status, int) or status in REFUSALS:
        return True
    found = _CSEQ.findall(raw)
    return len(found) != 1 or found[0].decode("ascii").upper() in LEARNING


def _message(event: Event, peer: Peer) -> Request | Response | None:
    """The event's message as the network path parsed it; parsed here only when the
    emitter did not attach it (events from elsewhere: tests, replays)."""
    if event.message is not None:
        return event.message
    return _parse(event.raw or b"", peer)


def _parse(raw: bytes, peer: Peer) -> Request | Response | None:
    try:
        return parse(raw, stream=peer.reliable)
    except ParseError:
        return None


def _source(peer: Peer) -> Source:
    return Source(peer.src_ip, peer.src_port, peer.transport, peer.dst_ip, peer.dst_port)


def _origin(f: dict[str, Any], peer: Peer) -> Source | None:
    """The source a configured proxy named for a request it forwarded (the endpoint sets
    origin_ip only for requests from `[analysis] proxies`), or None."""
    ip = f.get("origin_ip")
    if not ip:
        return None
    port = int(f.get("origin_port") or 0)
    transport = str(f.get("origin_transport") or peer.transport)
    return Source(str(ip), port, transport, peer.dst_ip, peer.dst_port)
