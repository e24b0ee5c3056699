"""Writing responses and requests the way the personality does, and sending them through
the reflection guard, with a `sip.response.sent` / `sip.request.sent` event for each."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..events.record import Event, Peer
from ..sip import Request, StateError
from ..sip.build import build_response, reason_for
from ..sip.transaction import ServerTransactionTable, TransactionKey
from . import identifiers
from .guard import FloodGuard
from .personality import Personality

Emit = Callable[[Event], None]
Send = Callable[[Peer, bytes], None]


@dataclass(slots=True)
class Incoming:
    """One request being handled: what arrived, from where, when, in which transaction."""

    request: Request
    peer: Peer
    now: float
    tx: TransactionKey | None
    message_id: str


class Responder:
    def __init__(
        self,
        personality: Personality,
        sensor: str,
        txs: ServerTransactionTable,
        guard: FloodGuard,
        emit: Emit,
        send: Send,
        public_address: str = "",
    ) -> None:
        self.p = personality
        self.sensor = sensor
        self.txs = txs
        self.guard = guard
        self.emit = emit
        self.send = send
        self.public_address = public_address
        self._order: dict[str, int] = {}
        self._ranks: dict[bytes, int] = {}  # header name as written -> its place (bounded)
        self.use(personality)
        self._prefix = secrets.token_hex(4)
        self._count = 0

    def use(self, personality: Personality) -> None:
        """Write as `personality` from now on (its Server header, reasons, order)."""
        self.p = personality
        self._order = {name.lower(): i for i, name in enumerate(personality.header_order)}
        self._ranks.clear()

    def message_id(self) -> str:
        self._count += 1
        return f"{self._prefix}-{self._count}"

    def local_host(self, peer: Peer) -> str:
        host = self.public_address or peer.dst_ip
        return f"[{host}]" if ":" in host and not host.startswith("[") else host

    def contact(self, user: str | None, peer: Peer) -> str:
        transport = "" if peer.transport == "udp" else f";transport={peer.transport}"
        scheme = "sips" if peer.transport == "tls" else "sip"
        userpart = f"{user}@" if user else ""
        return f"<{scheme}:{userpart}{self.local_host(peer)}:{peer.dst_port}{transport}>"

    def new_tag(self) -> str:
        return identifiers.tag(self.p.tag_style)

    def respond(
        self,
        inc: Incoming,
        status: int,
        headers: Sequence[tuple[str, str]] = (),
        *,
        body: bytes = b"",
        to_tag: str | None = None,
        reason: str | None = None,
    ) -> bytes | None:
        """Build, record in the transaction, send (if the guard allows) and log a response."""
        reason = reason or self.p.reason(status) or reason_for(status)
        data = build_response(
            inc.request,
            status,
            reason,
            to_tag=to_tag or self.new_tag(),
            headers=[("Server", self.p.server), *headers],
            body=body,
            source=(inc.peer.src_ip, inc.peer.src_port),
        )
        data = self._in_order(data)
        if inc.tx is not None:
            cap = self.guard.retransmit_cap(inc.peer.src_ip, inc.peer.reliable)
            try:
                self.txs.respond(inc.tx, status, data, inc.now, max_retransmits=cap)
            except StateError:
                return None  # the transaction moved on (e.g. CANCEL raced a final response)
        # To a small request with no body (an INVITE without SDP), a provisional response
        # keeps room in the reflection budget for the final one, which carries our offer.
        reserve = len(data) + 600 if status < 200 and not inc.request.body else 0
        msg = inc.request
        self._out(inc.peer, data, inc.now, status, reason, msg.method, msg.call_id, False, reserve)
        return data

    def _in_order(self, data: bytes) -> bytes:
        """The response with its header lines in the personality's order (all of them,
        Via, From, To, Call-ID and CSeq included; unlisted ones before Content-Type)."""
        head, sep, body = data.partition(b"\r\n\r\n")
        start, *lines = head.split(b"\r\n")
        other = len(self._order) - 2
        ranks = self._ranks

        def rank(line: bytes) -> int:
            sent = line.partition(b":")[0]
            place = ranks.get(sent)
            if place is None:
                name = sent.strip().decode("latin-1").lower()
                place = self._order.get(name, other)
                if len(ranks) < 256:  # the names we write are few; never grow without bound
                    ranks[sent] = place
            return place

        lines.sort(key=rank)  # stable: Via lines keep their order
        return b"\r\n".join([start, *lines]) + sep + body

    def resend(
        self, peer: Peer, data: bytes, now: float, method: str | None, call_id: str | None
    ) -> bool:
        """Send a response again (a retransmitted request, or a retransmission timer),
        through the guard, recorded like the first with `retransmission` set."""
        line = data.partition(b"\r\n")[0].decode("utf-8", "replace")
        _, _, rest = line.partition(" ")
        code, _, reason = rest.partition(" ")
        status = int(code) if code.isdigit() else 0
        return self._out(peer, data, now, status, reason, method, call_id, True)

    def _out(
        self,
        peer: Peer,
        data: bytes,
        now: float,
        status: int,
        reason: str,
        method: str | None,
        call_id: str | None,
        retransmission: bool,
        reserve: int = 0,
    ) -> bool:
        if not self.guard.may_send(peer.src_ip, len(data), peer.reliable, now, reserve):
            return False
        self.send(peer, data)
        fields = {
            "status": status,
            "reason": reason,
            "method": method,
            "call_id": call_id,
            "size": len(data),
            "message_id": self.message_id(),
            "retransmission": retransmission,
        }
        self.emit(Event("sip.response.sent", now, self.sensor, peer, fields, data, "out"))
        return True

    def send_request(
        self, peer: Peer, data: bytes, now: float, method: str, uri: str, call_id: str
    ) -> None:
        if not self.guard.may_send(peer.src_ip, len(data), peer.reliable, now):
            return
        self.send(peer, data)
        fields = {
            "method": method,
            "request_uri": uri,
            "call_id": call_id,
            "size": len(data),
            "message_id": self.message_id(),
        }
        self.emit(Event("sip.request.sent", now, self.sensor, peer, fields, data, "out"))

    def via(self, peer: Peer) -> str:
        transport = peer.transport.upper()
        branch = identifiers.branch(self.p.tag_style)
        return f"SIP/2.0/{transport} {self.local_host(peer)}:{peer.dst_port};branch={branch};rport"
