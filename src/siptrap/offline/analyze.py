"""`siptrap analyze`: the live honeypot's analysis engine, run over captures and raw SIP
message files with the capture's own timestamps.

Which side is the honeypot? A capture shows both directions. The addresses that receive
requests opening a dialog or transaction (no To tag) are servers; their responses are the
honeypot's answers (which users exist, which calls were answered and where media goes),
their in-dialog requests (a BYE ending a call) are the honeypot's own. Every other request
is analysed. RTP packets to a port a server answered a call with are that call's media.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..analysis.alerts import Alert, final_states
from ..analysis.alerts import alert_event as live_alert_event
from ..analysis.engine import AnalysisEngine, EngineSettings
from ..analysis.evaluate import Source
from ..analysis.rules import RuleSet
from ..bounded import BoundedLRU
from ..events.record import Event
from ..sip import ParseError, Request, parse
from .capture import CaptureStats, Datagram, looks_like_sip, open_inputs, probably_sip

MAX_ENDPOINTS = 65536


@dataclass(slots=True)
class AnalyzeResult:
    """The alerts (their final state) and what was read."""

    alerts: list[Alert]
    emissions: int
    messages: int
    datagrams: int
    media_packets: int
    stats: CaptureStats
    commands_not_run: int = 0
    keepalives: int = 0
    seconds: float = 0.0
    extra: dict[str, int] = field(default_factory=dict)


class _Sides:
    """Which (address, port) pairs are servers (the honeypot) and which are clients."""

    def __init__(self) -> None:
        self.servers: BoundedLRU[tuple[str, int], None] = BoundedLRU(MAX_ENDPOINTS)
        self.clients: BoundedLRU[tuple[str, int], None] = BoundedLRU(MAX_ENDPOINTS)

    def request(self, msg: Request, d: Datagram) -> None:
        if not (msg.to_addr and msg.to_addr.tag):
            self.servers.put((d.dst_ip, d.dst_port), None)
            self.clients.put((d.src_ip, d.src_port), None)

    def receives(self, d: Datagram) -> bool:
        """Sent to a server (keep-alives and junk go to the SIP port of the honeypot)."""
        return (d.dst_ip, d.dst_port) in self.servers

    def is_server(self, d: Datagram) -> bool:
        return (d.src_ip, d.src_port) in self.servers

    def is_client(self, d: Datagram) -> bool:
        """Only a client: a server that also sends requests of its own (a honeypot
        registering at the domain's registrar from its SIP socket, a PBX qualifying its
        phones) still answers as a server."""
        key = (d.src_ip, d.src_port)
        return key in self.clients and key not in self.servers


class _Proxies:
    """The domain's proxies in a capture. A proxy receives a request and sends it on to the
    honeypot (a new top Via, the same Call-ID, CSeq and method): one request, not two.
    With the proxies configured (`--config`, `--proxy`) the honeypot's side is analysed, as
    live: what a proxy receives or answers is its own business, its forwarded copy comes
    "through the domain's proxy". Without, the first copy is analysed (the client's) and
    the forwarded one is recognised and skipped; its sender is a proxy from then on."""

    def __init__(self, engine: AnalysisEngine) -> None:
        self.configured = engine.finder.proxies
        self.found: BoundedLRU[str, None] = BoundedLRU(MAX_ENDPOINTS)
        self.first: BoundedLRU[tuple[str, int | None, str], tuple[str, int]] = BoundedLRU(
            MAX_ENDPOINTS
        )

    def is_proxy(self, ip: str) -> bool:
        if ip in self.found:
            return True
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in net for net in self.configured)

    def skip_request(self, msg: Request, d: Datagram) -> bool:
        """Whether a request is the proxy's part (to a configured proxy) or a copy a
        proxy forwarded of a request already analysed."""
        if self.configured and self.is_proxy(d.dst_ip):
            return True
        cseq = msg.cseq
        key = (msg.call_id or "", cseq.seq if cseq else None, msg.method or "")
        first = self.first.peek(key)
        if first is None:
            self.first.put(key, (d.dst_ip, d.dst_port))
            return False
        if first[0] == d.src_ip and first != (d.dst_ip, d.dst_port):
            self.found.put(d.src_ip, None)  # it received the request and sends it on
            return True
        return False

    def skip_response(self, d: Datagram) -> bool:
        """A configured proxy's answers to its clients (the honeypot's are analysed)."""
        return bool(self.configured) and self.is_proxy(d.src_ip)


def analyze_datagrams(
    datagrams: Iterable[Datagram], engine: AnalysisEngine
) -> tuple[list[Alert], int, int, int]:
    """Feed datagrams to the engine in order; return every alert emission and counts."""
    sides = _Sides()
    sources = _Sources()
    proxies = _Proxies(engine)
    emitted: list[Alert] = []
    count = media = 0
    last_ts = 0.0
    for d in datagrams:
        count += 1
        last_ts = d.ts
        payload = d.payload
        if d.transport == "udp" and not looks_like_sip(payload):
            if engine.media_packet(d.dst_ip, d.dst_port, d.ts):
                media += 1
            elif payload and (probably_sip(d) or sides.receives(d)):
                engine.malformed(payload, sources.of(d), d.ts, "not a SIP message")
            continue
        try:
            msg = parse(payload, stream=d.transport != "udp")
        except ParseError as exc:
            engine.malformed(payload, sources.of(d), d.ts, exc.reason)
            continue
        if isinstance(msg, Request):
            if sides.is_server(d) and msg.to_addr is not None and msg.to_addr.tag:
                engine.own_request(msg, d.ts)
            elif proxies.skip_request(msg, d):
                sides.request(msg, d)
                if msg.method.upper() == "REGISTER":  # the proxy's part, but whom it reaches
                    engine.finder.registrations.register(msg, sources.of(d))
            else:
                sides.request(msg, d)
                engine.request(msg, sources.of(d), d.ts)
        elif not sides.is_client(d) and not proxies.skip_response(d):
            engine.response(msg, sources.of(d), d.ts)
        emitted += engine.take()
    engine.finish(last_ts)
    emitted += engine.take()
    return emitted, count, media, engine.messages


class _Sources:
    """The `Source` of a datagram: one object per address pair, the latest kept."""

    def __init__(self) -> None:
        self.known: dict[tuple[str, int, str, str, int], Source] = {}

    def of(self, d: Datagram) -> Source:
        key = (d.src_ip, d.src_port, d.transport, d.dst_ip, d.dst_port)
        found = self.known.get(key)
        if found is None:
            found = Source(*key)
            if len(self.known) >= MAX_ENDPOINTS:
                self.known.clear()
            self.known[key] = found
        return found


def analyze_paths(
    paths: Sequence[str | Path], rules: RuleSet, settings: EngineSettings | None = None
) -> AnalyzeResult:
    """Run the engine over capture and message files (raises CaptureError on bad input)."""
    stats = CaptureStats()
    datagrams = open_inputs(list(paths), stats=stats, accept=None)
    engine = AnalysisEngine(rules, settings)
    emitted, count, media, messages = analyze_datagrams(datagrams, engine)
    # a message alert folded into its correlated alert is part of it: one attack, one alert
    finals = [replace(a, closed=True) for a in final_states(emitted) if a.folded_into is None]
    return AnalyzeResult(
        alerts=finals,
        emissions=len(emitted),
        messages=messages,
        datagrams=count,
        media_packets=media,
        stats=stats,
        commands_not_run=engine.commands_not_run,
        keepalives=engine.keepalives,
    )


def alert_event(alert: Alert, sensor: str) -> Event:
    """An alert as the event the live honeypot emits, stamped with the capture's time."""
    return live_alert_event(alert, sensor, alert.last_seen)


# -- the command ---------------------------------------------------------------------------------
