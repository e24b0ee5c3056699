"""The registrar client: one registration per (registrar, extension), as a UAC keeps it.

Sans-I/O: `start(now)`, `receive(response, now)`, `handle_timers(now)` and `stop(now)`
return the messages to send as `Outgoing`; events go to the injected `emit(id, fields)`.
Each registration: REGISTER, answer one digest challenge per nonce, refresh at half the
granted expiry (so a registrar that restarted and forgot it has it back within that),
retransmit on UDP (T1 doubling to T2; over TCP and TLS never), fail after TIMEOUT, retry
with bounded backoff, and send Expires 0 on a clean stop.

A registrar is reached through a link the app opens: for UDP with an IP address, the
app's UDP socket (`local`) at once; otherwise after a DNS lookup and, for TCP and TLS, a
connection whose local address is the Contact. A registration with no link is
"connecting": `take_wanted()` tells the app which links to open, and it answers with
`link_up`, `link_failed` or, when an open one ends, `link_down`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..sip import Response
from ..sip.auth import answer_challenge, parse_challenge
from ..sip.build import build_request
from .settings import UpstreamConfig

T1, T2 = 0.5, 4.0  # UDP retransmission (RFC 3261 timers, shortened for a registrar)
TIMEOUT = 16.0  # seconds without a final response: failed
BACKOFF_FIRST, BACKOFF_MAX = 2.0, 300.0
USER_AGENT = "siptrap"
Emit = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class Outgoing:
    host: str
    port: int
    data: bytes
    transport: str = "udp"
    registrar: str = ""  # the link it goes on (UpstreamConfig.registrar)


@dataclass(frozen=True, slots=True)
class Link:
    """How a registrar is reached: our address on it (Via, Contact) and its address."""

    local: tuple[str, int]
    target: tuple[str, int]


@dataclass
class Registration:
    upstream: UpstreamConfig
    user: str
    call_id: str
    from_tag: str
    cseq: int = 0
    # idle, connecting, registering, registered, failed, unregistering, removed
    state: str = "idle"
    branch: str = ""
    sent: bytes = b""
    sent_at: float = 0.0
    retransmit_at: float | None = None
    interval: float = T1
    next_at: float | None = None  # the next REGISTER (refresh or retry)
    expires_at: float | None = None
    granted: int = 0
    failures: int = 0
    last_error: str = ""
    answered_nonce: str = ""
    auth: tuple[str, str] | None = None  # header name, value for the next request
    want_expires: int = field(default=0)

    @property
    def key(self) -> tuple[str, str]:
        return (self.upstream.registrar, self.user)


class RegistrarClient:
    def __init__(self, upstreams: tuple[UpstreamConfig, ...], emit: Emit) -> None:
        self.emit = emit
        self.local: tuple[str, int] = ("127.0.0.1", 5060)  # set by the app once bound
        self.regs: list[Registration] = [
            Registration(up, user, f"{secrets.token_hex(12)}@siptrap", secrets.token_hex(6))
            for up in upstreams
            for user in up.users
        ]
        self.by_call = {reg.call_id: reg for reg in self.regs}
        self.links: dict[str, Link] = {}  # registrar -> its link, once the app opened it
        self._wanted: dict[str, UpstreamConfig] = {}

    # -- links ---------------------------------------------------------------------------
    def link(self, up: UpstreamConfig) -> Link | None:
        """The link to `up`; UDP to an IP address needs none opened (the app's socket)."""
        found = self.links.get(up.registrar)
        if found is None and not up.reliable and up.resolved:
            return Link(self.local, up.target)
        return found

    def take_wanted(self) -> list[UpstreamConfig]:
        """The registrars whose link the app should open now (each told once)."""
        wanted = list(self._wanted.values())
        self._wanted.clear()
        return wanted

    def link_up(self, registrar: str, link: Link, now: float) -> list[Outgoing]:
        """The app opened the link: every registration waiting for it registers."""
        self.links[registrar] = link
        return [
            self._register(reg, reg.upstream.expires, now)
            for reg in self.regs
            if reg.upstream.registrar == registrar and reg.state == "connecting"
        ]

    def link_failed(self, registrar: str, reason: str, now: float) -> None:
        """No link could be opened: the registrations waiting for it fail (and retry)."""
        for reg in self.regs:
            if reg.upstream.registrar == registrar and reg.state == "connecting":
                self._failed(reg, now, 503, reason)

    def link_down(self, registrar: str, reason: str, now: float) -> None:
        """An open link ended (the registrar restarted, a reset): its registrations are
        gone with it; each fails and registers again after the backoff."""
        if self.links.pop(registrar, None) is None:
            return
        for reg in self.regs:
            if reg.upstream.registrar != registrar or reg.state in ("removed", "failed"):
                continue
            reg.retransmit_at = None
            self._failed(reg, now, 503, f"connection lost: {reason}")

    def _send(self, reg: Registration, expires: int, now: float) -> list[Outgoing]:
        """REGISTER now if the registrar's link is open, else wait for it (connecting)."""
        if self.link(reg.upstream) is None:
            reg.state, reg.next_at, reg.retransmit_at = "connecting", None, None
            self._wanted[reg.upstream.registrar] = reg.upstream
            return []
        return [self._register(reg, expires, now)]

    # -- driving -------------------------------------------------------------------------
    def start(self, now: float) -> list[Outgoing]:
        out: list[Outgoing] = []
        for reg in self.regs:
            out += self._send(reg, reg.upstream.expires, now)
        return out

    def stop(self, now: float) -> list[Outgoing]:
        """Expires 0 for every registration in force (a clean stop)."""
        out = []
        for reg in self.regs:
            usable = self.link(reg.upstream) is not None
            if reg.state in ("registered", "registering") and reg.granted and usable:
                out.append(self._register(reg, 0, now))
                reg.state = "unregistering"
            reg.next_at = None
        return out

    def handle_timers(self, now: float) -> list[Outgoing]:
        out = []
        for reg in self.regs:
            if reg.retransmit_at is not None and now >= reg.retransmit_at:
                if now - reg.sent_at >= TIMEOUT:
                    reg.retransmit_at = None
                    self._failed(reg, now, 408, "no answer from the registrar")
                else:
                    reg.interval = min(reg.interval * 2, T2)
                    reg.retransmit_at = min(now + reg.interval, reg.sent_at + TIMEOUT)
                    out.append(self._outgoing(reg, reg.sent))
            if reg.next_at is not None and now >= reg.next_at and reg.retransmit_at is None:
                out += self._send(reg, reg.upstream.expires, now)
            if reg.state == "registered" and reg.expires_at is not None and now >= reg.expires_at:
                reg.state = "failed"
                reg.last_error = "expired before it could be refreshed"
        return out

    def next_deadline(self) -> float | None:
        times = [t for r in self.regs for t in (r.retransmit_at, r.next_at) if t is not None]
        return min(times) if times else None

    def owns(self, call_id: str | None) -> bool:
        return call_id is not None and call_id in self.by_call

    def receive(self, msg: Response, now: float) -> list[Outgoing]:
        reg = self.by_call.get(msg.call_id or "")
        cseq = msg.cseq
        if reg is None or cseq is None or cseq.seq != reg.cseq or cseq.method != "REGISTER":
            return []
        status = msg.status or 0
        if status < 200:
            if reg.retransmit_at is not None and not reg.upstream.reliable:
                reg.retransmit_at = now + T2
            return []
        reg.retransmit_at = None
        if status in (401, 407):
            return self._challenged(reg, msg, now)
        if status == 423:
            minimum = msg.header("min-expires") or ""
            if minimum.strip().isdigit() and int(minimum) > reg.want_expires:
                return [self._register(reg, int(minimum), now)]
        if 200 <= status < 300:
            self._registered(reg, msg, now)
            return []
        self._failed(reg, now, status, msg.reason or "")
        return []

    # -- states --------------------------------------------------------------------------
    def _challenged(self, reg: Registration, msg: Response, now: float) -> list[Outgoing]:
        header = "proxy-authenticate" if msg.status == 407 else "www-authenticate"
        challenge = parse_challenge(msg.header(header) or "")
        if challenge is None:
            self._failed(reg, now, msg.status or 0, "a challenge that is not Digest")
            return []
        stale = challenge.stale
        if challenge.nonce == reg.answered_nonce and not stale:
            self._failed(reg, now, msg.status or 0, "credentials refused")
            return []
        up = reg.upstream
        creds = answer_challenge(
            challenge,
            up.username or reg.user,
            up.password,
            "REGISTER",
            self._registrar_uri(up),
            cnonce=secrets.token_hex(8),
        )
        reg.answered_nonce = challenge.nonce
        name = "Proxy-Authorization" if msg.status == 407 else "Authorization"
        reg.auth = (name, creds.header_value())
        return [self._register(reg, reg.want_expires, now, keep_auth=True)]

    def _registered(self, reg: Registration, msg: Response, now: float) -> None:
        if reg.want_expires == 0:
            reg.state, reg.granted, reg.expires_at, reg.next_at = "removed", 0, None, None
            self.emit("sip.upstream.removed", self._fields(reg, reason="stopped"))
            return
        granted = self._granted(reg, msg)
        if granted <= 0:
            self._failed(reg, now, msg.status or 200, "the registrar kept no binding")
            return
        reg.state, reg.granted, reg.failures, reg.last_error = "registered", granted, 0, ""
        reg.expires_at = now + granted
        reg.next_at = now + max(1.0, granted / 2)
        self.emit("sip.upstream.registered", self._fields(reg, expires=granted))

    def _granted(self, reg: Registration, msg: Response) -> int:
        mine = self._contact_uri(reg)
        for contact in msg.contacts:
            if str(contact.uri) == mine or contact.user == reg.user:
                value = contact.param("expires")
                if value is not None and value.isdigit():
                    return int(value)
        return msg.expires if msg.expires is not None else reg.want_expires

    def _failed(self, reg: Registration, now: float, status: int, reason: str) -> None:
        if reg.state == "unregistering":  # stopping: no retry
            reg.state, reg.last_error = "failed", f"{status} {reason}".strip()
            self.emit("sip.upstream.failed", self._fields(reg, status=status, error=reason))
            return
        reg.failures += 1
        delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (reg.failures - 1))
        reg.state, reg.last_error, reg.next_at = "failed", f"{status} {reason}".strip(), now + delay
        reg.auth, reg.answered_nonce = None, ""
        fields = self._fields(reg, status=status, error=reason, retry_in=delay)
        self.emit("sip.upstream.failed", fields)

    # -- messages ------------------------------------------------------------------------
    def _register(
        self, reg: Registration, expires: int, now: float, keep_auth: bool = False
    ) -> Outgoing:
        up = reg.upstream
        if not keep_auth:  # a new request: a challenge to it is answered afresh
            reg.auth, reg.answered_nonce = None, ""
        reg.cseq += 1
        reg.want_expires = expires
        reg.branch = f"z9hG4bK{secrets.token_hex(10)}"
        if reg.state not in ("registered", "unregistering"):
            reg.state = "registering"
        link = self.link(up)
        assert link is not None  # _send waited for it
        host, port = link.local
        local = f"[{host}]" if ":" in host else host
        aor = f"<sip:{reg.user}@{up.domain or up.host}>"
        headers = [("Expires", str(expires)), ("User-Agent", USER_AGENT)]
        if reg.auth is not None:
            headers.append(reg.auth)
        reg.sent = build_request(
            "REGISTER",
            self._registrar_uri(up),
            via=f"SIP/2.0/{up.transport.upper()} {local}:{port};branch={reg.branch};rport",
            from_=f"{aor};tag={reg.from_tag}",
            to=aor,
            call_id=reg.call_id,
            cseq=reg.cseq,
            contact=f"<{self._contact_uri(reg)}>",
            headers=headers,
        )
        # Over TCP and TLS nothing is retransmitted: only the timeout runs.
        first = now + TIMEOUT if up.reliable else now + T1
        reg.sent_at, reg.interval, reg.retransmit_at = now, T1, first
        reg.next_at = None
        return self._outgoing(reg, reg.sent)

    def _outgoing(self, reg: Registration, data: bytes) -> Outgoing:
        up = reg.upstream
        link = self.link(up)
        host, port = link.target if link is not None else up.target
        return Outgoing(host, port, data, up.transport, up.registrar)

    def _registrar_uri(self, up: UpstreamConfig) -> str:
        host = f"[{up.host}]" if ":" in up.host else up.host
        uri = f"sip:{up.domain or host}" + ("" if up.domain or up.srv else f":{up.port}")
        return uri + (f";transport={up.transport}" if up.reliable else "")

    def _contact_uri(self, reg: Registration) -> str:
        up = reg.upstream
        link = self.link(up)
        host, port = link.local if link is not None else self.local
        local = f"[{host}]" if ":" in host else host
        return f"sip:{reg.user}@{local}:{port}" + (
            f";transport={up.transport}" if up.reliable else ""
        )

    def _fields(self, reg: Registration, **more: Any) -> dict[str, Any]:
        return {"registrar": reg.upstream.registrar, "user": reg.user, **more}

    # -- status --------------------------------------------------------------------------
    def status(self, now: float) -> list[dict[str, Any]]:
        return [
            {
                "registrar": reg.upstream.registrar,
                "user": reg.user,
                "state": reg.state,
                "registered": reg.state == "registered",
                "expires_at": reg.expires_at,
                "expires_in": round(reg.expires_at - now) if reg.expires_at else None,
                "last_error": reg.last_error,
            }
            for reg in self.regs
        ]
