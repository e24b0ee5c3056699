"""Active mode, as the analysis sees it: what to check about an INVITE, the results, and
the decision tree's active branches (the Artemisa paper's Figure 3).

The analysis does no I/O: `ReconBoard.ask` hands a `ReconAsk` (the probes an INVITE calls
for) to a callable the application injects (the recon service, one layer above), which
answers at once whether it took the ask or why not (passive mode, queue full). The
results come back as `recon.result` events, which the live analysis sink records with
`ReconBoard.record`. When the INVITE's dialog has played out, `view` gives the tree what
is known: "Interactive attack" when a SIP stack answers at an address the message gave,
"Spoofed Message" when its names do not resolve or nothing lives at its addresses, whether
the source is up with its SIP ports open, and whether the top Via host is a SIP proxy (a
dial-plan fault rather than a direct attack). Every check that ran is listed.

The mode in force (`siptrap.analysis.modes`) chooses which of the planned probes are
asked for: the board is given a `wants` callable, and the tree says which were left out.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..bounded import BoundedLRU
from ..sip import Request
from ..sip.sdp import parse_sdp
from .fields import Message
from .outcome import Source

MAX_PROBES = 16
MAX_RESULTS = 20_000
MAX_ASKS = 8192
RETRY = 60.0  # seconds before a refused or skipped check is asked for again
ATTACKER_ROLES = ("Contact", "top Via", "SDP connection (c=)", "SDP origin (o=)")


@dataclass(frozen=True, slots=True)
class Probe:
    """One check of one host: `port` 0 for the recon service's own port list."""

    check: str  # dns | rdap | geoip | sip_probe | port | route | os
    target: str  # as the message names it (an address or a name)
    role: str = "source"  # where the message names it
    port: int = 0
    transport: str = ""

    @property
    def key(self) -> tuple[str, str, int, str]:
        return (self.check, self.target.lower(), self.port, self.transport)


@dataclass(frozen=True, slots=True)
class ReconAsk:
    """The probes an INVITE from `source` calls for (source: bound by the transport)."""

    source: str
    probes: tuple[Probe, ...]
    call_id: str = ""


@dataclass(frozen=True, slots=True)
class Finding:
    probe: Probe
    outcome: str  # ok | failed | refused_by_guard | timeout | skipped
    detail: Mapping[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        d = self.detail
        parts = [f"{k}={_short(d[k], 160)}" for k in ("reason", "error") if d.get(k)]
        keys = ("addresses", "names", "status", "user_agent", "server", "ports", "handle")
        for key in (*keys, "country", "asn", "as_org", "city", "os_name", "hops"):
            if d.get(key) not in (None, "", [], {}):
                parts.append(f"{key}={_short(d[key])}")
        return ", ".join(parts)


def _short(value: Any, size: int = 80) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {v}" for k, v in list(value.items())[:6]) + "}"
    if isinstance(value, list):
        return ",".join(str(v) for v in value[:4])
    return str(value)[:size]


def host_port(host: str, port: int) -> str:
    """`host:port`, with an IPv6 address in brackets (`[2001:db8::1]:5060`)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def plan(msg: Message, source: Source) -> ReconAsk:
    """The probes for an INVITE: the source's DNS, RDAP, GeoIP, ports, route and OS;
    the DNS of each host the message names (Contact, top Via, SDP c= and o=, From,
    Record-Route); a SIP probe of the Contact and the top Via; a port check of the SDP
    media address."""
    src = source.ip
    probes: list[Probe] = [Probe(c, src) for c in ("dns", "rdap", "geoip", "port", "route", "os")]
    transport = (source.transport or "udp").lower()
    transport = "tcp" if transport in ("tcp", "tls") else "udp"
    contact = msg.contacts[0] if msg.contacts else None
    if contact is not None and contact.uri.host and not contact.wildcard:
        host = contact.uri.host.strip("[]")
        probes.append(Probe("dns", host, "Contact"))
        probes.append(Probe("sip_probe", host, "Contact", contact.uri.port or 5060, transport))
    via = msg.top_via
    if via is not None and via.host:
        host = via.host.strip("[]")
        probes.append(Probe("dns", host, "top Via"))
        probes.append(Probe("sip_probe", host, "top Via", via.port or 5060, transport))
    for role, host, port in _sdp_hosts(msg):
        probes.append(Probe("dns", host, role))
        if port:
            probes.append(Probe("port", host, role, port, "udp"))
    sender = msg.from_addr
    if sender is not None and sender.uri.host:
        probes.append(Probe("dns", sender.uri.host.strip("[]"), "From"))
    for rr in msg.record_routes[:2]:
        if rr.uri.host:
            probes.append(Probe("dns", rr.uri.host.strip("[]"), "Record-Route"))
    unique: dict[tuple[str, str, int, str], Probe] = {}
    for probe in probes:  # the first role a host is named in is the one kept
        unique.setdefault(probe.key, probe)
    return ReconAsk(src, tuple(unique.values())[:MAX_PROBES], msg.call_id or "")


def _sdp_hosts(msg: Message) -> list[tuple[str, str, int]]:
    if not isinstance(msg, Request) or not msg.body or b"v=0" not in msg.body[:64]:
        return []
    sdp = parse_sdp(msg.body[:8192])
    out: list[tuple[str, str, int]] = []
    media = next((m for m in sdp.media if m.kind == "audio"), None)
    conn = media.effective_connection if media is not None else sdp.connection
    if conn is not None and conn.address:
        out.append(("SDP connection (c=)", conn.address, media.port if media else 0))
    if sdp.origin is not None and sdp.origin.address:
        out.append(("SDP origin (o=)", sdp.origin.address, 0))
    return out


@dataclass(slots=True)
class _Asked:
    ask: ReconAsk
    at: float
    refused: str | None  # why the recon service did not take it
    left_out: tuple[Probe, ...] = ()  # planned, not run by the mode in force


class ReconBoard:
    """The asks in flight and the results come back, both bounded."""

    def __init__(
        self,
        request: Callable[[ReconAsk], str | None],
        *,
        idle: Callable[[], str | None] | None = None,
        wait: float = 10.0,
        ttl: float = 3600.0,
        wants: Callable[[Probe], bool] | None = None,
    ) -> None:
        self.request = request
        self.idle = idle  # why recon takes nothing now (passive mode), checked first: cheap
        self.wants = wants  # does the mode in force run this probe? (None: every probe)
        self.wait = wait
        self.ttl = ttl
        self.results: BoundedLRU[tuple[str, str, int, str], tuple[float, str, dict[str, Any]]]
        self.results = BoundedLRU(MAX_RESULTS)
        self.asks: BoundedLRU[str, _Asked] = BoundedLRU(MAX_ASKS)

    def ask(self, msg: Message, source: Source, now: float) -> None:
        """Ask for what this INVITE calls for and is not known already."""
        if self.idle is not None and self.idle() is not None:
            return  # no view: the tree says "Not checked (passive mode)", as without recon
        planned = plan(msg, source)
        wants = self.wants
        run = tuple(p for p in planned.probes if wants is None or wants(p))
        left_out = tuple(p for p in planned.probes if p not in run)
        full = ReconAsk(planned.source, run, planned.call_id)
        missing = tuple(p for p in run if not self._fresh(p, now))
        refused = None
        if missing:
            refused = self.request(ReconAsk(full.source, missing, full.call_id))
        self.asks[full.call_id] = _Asked(full, now, refused, left_out)

    def _fresh(self, probe: Probe, now: float) -> bool:
        got = self.results.peek(probe.key)
        if got is None:
            return False
        # a refusal or a skip depends on the source and the moment: asked again soon
        ttl = RETRY if got[1] in ("refused_by_guard", "skipped") else self.ttl
        return now - got[0] < ttl

    def record(self, fields: Mapping[str, Any], ts: float) -> None:
        """A `recon.result` event's fields."""
        detail = fields.get("detail")
        key = (
            str(fields.get("check") or ""),
            str(fields.get("target") or "").lower(),
            int(fields.get("port") or 0),
            str(fields.get("protocol") or ""),
        )
        self.results[key] = (ts, str(fields.get("outcome") or ""), dict(detail or {}))

    def pending(self, call_id: str, now: float) -> bool:
        """Should the tree wait for results still to come (bounded by `wait`)?"""
        asked = self.asks.peek(call_id)
        if asked is None or asked.refused is not None or now - asked.at >= self.wait:
            return False
        return any(p.key not in self.results for p in asked.ask.probes)

    def view(self, call_id: str) -> ReconView | None:
        asked = self.asks.pop(call_id, None)
        if asked is None:
            return None
        found = []
        for probe in asked.ask.probes:
            got = self.results.get(probe.key)
            if got is not None:
                found.append(Finding(probe, got[1], got[2]))
        return ReconView(asked.ask, tuple(found), asked.refused, asked.left_out)


@dataclass(frozen=True, slots=True)
class ReconView:
    """What recon found for one INVITE, for the decision tree."""

    ask: ReconAsk
    findings: tuple[Finding, ...]
    refused: str | None = None  # why nothing was checked (passive mode, queue full ...)
    left_out: tuple[Probe, ...] = ()  # what the mode in force does not run

    def of(self, check: str, role: str | None = None) -> list[Finding]:
        return [
            f
            for f in self.findings
            if f.probe.check == check and (role is None or f.probe.role == role)
        ]

    def missing(self) -> list[Probe]:
        got = {f.probe.key for f in self.findings}
        return [p for p in self.ask.probes if p.key not in got]


def interactive(view: ReconView) -> Finding | None:
    """A SIP stack answered our OPTIONS at the Contact, the top Via or the source."""
    for finding in view.of("sip_probe"):
        if finding.outcome == "ok" and finding.detail.get("answered"):
            return finding
    return None


def spoof_evidence(view: ReconView) -> list[str]:
    """Why the message's addresses cannot be the sender's, from the checks that ran."""
    out = []
    for finding in view.of("dns"):
        p = finding.probe
        if p.role in ATTACKER_ROLES and not _is_ip(p.target) and finding.outcome == "failed":
            out.append(f"the {p.role} name {p.target!r} does not resolve")
    probes = [f for f in view.of("sip_probe", "Contact") if f.outcome in ("timeout", "failed")]
    media = [
        f
        for f in view.findings
        if f.probe.check == "port"
        and f.probe.role.startswith("SDP")
        and (f.outcome in ("failed", "timeout") or _all_states(f, {"closed", "unreachable"}))
    ]
    if probes and media and interactive(view) is None:
        out.append(
            f"nothing answers at the Contact {probes[0].probe.target} "
            f"nor at the media address {media[0].probe.target}"
        )
    return out


def _all_states(finding: Finding, states: set[str]) -> bool:
    ports = finding.detail.get("ports")
    return isinstance(ports, dict) and bool(ports) and set(ports.values()) <= states


def host_lines(view: ReconView) -> list[str]:
    """The paper's "Check if host is up and if SIP, media, or both ports are open"."""
    out = []
    for finding in view.of("port", "source"):
        ports = finding.detail.get("ports")
        if finding.outcome != "ok" or not isinstance(ports, dict):
            continue
        host = finding.probe.target
        open_ = [p for p, s in ports.items() if s == "open"]
        closed = [p for p, s in ports.items() if s == "closed"]
        if open_:
            out.append(f"Host {host} is up and its SIP port {', '.join(open_)} is open")
        elif closed:
            out.append(f"Host {host} is up; its SIP ports {', '.join(closed)} are closed")
        else:
            out.append(f"Host {host} does not answer on its SIP ports")
    for finding in view.findings:
        p = finding.probe
        if p.check == "port" and p.role.startswith("SDP"):
            ports = finding.detail.get("ports") or {}
            state = ", ".join(f"{k} {v}" for k, v in dict(ports).items()) or finding.outcome
            out.append(f"Media port of {p.target}: {state}")
    return out


def via_proxy(view: ReconView | None) -> Finding | None:
    """The top Via host, not the source, answering as a SIP server: a proxy routed it."""
    if view is None:
        return None
    for finding in view.of("sip_probe", "top Via"):
        if finding.probe.target != view.ask.source and finding.outcome == "ok":
            if finding.detail.get("answered"):
                return finding
    return None


def check_lines(view: ReconView) -> list[str]:
    out = []
    for finding in view.findings:
        p = finding.probe
        host = host_port(p.target, p.port) if p.port else p.target
        where = host if p.role == "source" else f"{p.role} {host}"
        port = f"/{p.transport}" if p.port else ""
        summary = finding.summary()
        out.append(
            f"Checked {p.check} of {where}{port}: {finding.outcome}"
            + (f" ({summary})" if summary else "")
        )
    for probe in view.missing():
        out.append(f"Not checked: {probe.check} of {probe.target} (no result in time)")
    if view.left_out:
        names = sorted({f"{p.check} of {p.role}" for p in view.left_out})
        out.append(f"Not checked (not in the mode in force): {', '.join(names[:8])}")
    return out
