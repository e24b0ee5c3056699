"""The endpoint: what siptrap answers to every message, as a real PBX or phone would.

`Endpoint.receive(data, peer, now)` takes one datagram or one framed stream message and
does everything that follows: flood guard, parse (lenient), events, the transaction
layer, dispatch by method through a fixed table, responses through the personality.
`handle_timers(now)` fires what is due; `next_deadline()` says when that is. It does no
I/O itself: sending is the injected `send(peer, bytes)`, recording the injected `emit`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

from ..events.record import Event, Peer
from ..sip import ParseError, Request, Response, parse
from ..sip.dialog import DialogTable
from ..sip.headers import SIP_METHODS
from ..sip.transaction import ReceivedKind, ServerTransactionTable, TimerKind
from .calls import CallManager, MediaPorts
from .credentials import AuthCheck, Authenticator, RecoveryJob, RecoveryWorker
from .extensions import ExtensionPlan
from .forwarded import Origin, ProxyCheck, networks, origin_of
from .guard import FloodGuard
from .personality import Personality
from .registrar import Binding, Registrar
from .responder import Emit, Incoming, Responder, Send
from .settings import EndpointSettings

# Defects after which a request gets 400 Bad Request (RFC 4475 expects it for these).
BAD_REQUEST = frozenset(
    {
        "bad_cseq",
        "cseq_out_of_range",
        "cseq_method_mismatch",
        "bad_content_length",
        "content_length_too_large",
        "request_uri_in_brackets",
        "request_uri_headers",
        "extra_whitespace_start_line",
        "whitespace_in_uri",
        "bad_request_uri",
        "unterminated_quote",
        "unbalanced_brackets",
        "bad_display_name",
        "addr_spec_with_params",
        "bad_address",
        "bad_via",
        "bad_max_forwards",
        "bad_expires",
        "duplicate_header",
        "multiple_values",
        "bad_date",
        "bad_method",
        "no_header_end",
    }
)
ESSENTIAL = ("call-id", "cseq", "from", "to", "via")
# The dialog table's next_deadline is a lower bound (the oldest dialog's activity plus the
# shorter timeout), which a long confirmed dialog keeps in the past: once expiry has run,
# it is asked again this many seconds later at most, not at once (dialog timeouts are
# minutes; an expiry is at most this late).
DIALOG_RECHECK = 5.0
SDP_TYPES = ("application/sdp", "multipart/mixed", "multipart/alternative")


class NullMedia:
    """Media ports announced without an RTP socket (for tests of signalling alone)."""

    def __init__(self, first: int = 10000) -> None:
        self._next = first

    def open(self, key: str, local_ip: str) -> int | None:
        self._next += 2
        return self._next

    def close(self, key: str) -> dict[str, Any]:
        return {}


class Endpoint:
    def __init__(
        self,
        settings: EndpointSettings,
        *,
        emit: Emit,
        send: Send,
        media: MediaPorts | None = None,
        secret: bytes | None = None,
        recovery: RecoveryWorker | None = None,
    ) -> None:
        self.settings = settings
        self.p: Personality = settings.personality
        self.plan = ExtensionPlan(list(settings.extensions))
        self.sensor = settings.sensor
        self.emit = emit
        flood = settings.flood
        self.guard = FloodGuard(
            flood.per_source_rate,
            flood.burst,
            flood.amplification,
            flood.max_sources,
            flood.max_delay,
        )
        self.txs = ServerTransactionTable(max_entries=flood.max_transactions)
        self.dialogs = DialogTable(max_entries=flood.max_dialogs)
        self.registrar = Registrar(flood.max_registrations)
        self.auth = Authenticator(self.p, secret or secrets.token_bytes(32))
        self.recovery = recovery
        self.r = Responder(
            self.p, self.sensor, self.txs, self.guard, emit, send, settings.public_address
        )
        self.calls = CallManager(
            self.r,
            self.dialogs,
            self.p,
            self.plan,
            media or NullMedia(),
            self._authenticate,
            self._challenge_value,
            flood.max_dialogs,
        )
        self.requests = 0
        self._dialogs_checked = float("-inf")  # when dialogs.expire last ran
        self.proxies = networks(settings.proxies)
        self.proxy_check = ProxyCheck(self.proxies)
        self.guard.trusted = self.proxy_check
        # Responses to siptrap's own requests at registrars (app.py sets it: upstream/).
        self.response_hook: Callable[[Response, Peer, float], None] | None = None
        self.handlers: dict[str, Callable[[Incoming], None]] = {
            "REGISTER": self.on_register,
            "INVITE": self.calls.invite,
            "BYE": self.calls.bye,
            "OPTIONS": self.on_options,
            "MESSAGE": self.on_message,
            "INFO": self.calls.in_dialog,
            "UPDATE": self.calls.in_dialog,
            "PRACK": self.calls.in_dialog,
            "NOTIFY": self.calls.in_dialog,
            "REFER": self.on_refer,
            "SUBSCRIBE": self.on_subscribe,
            "PUBLISH": self.on_publish,
        }

    def set_personality(self, personality: Personality) -> Personality:
        """Answer as `personality` from the next message on (Server, Allow, challenges,
        behaviours); what was already sent stays as it was. Returns the previous one."""
        previous = self.p
        self.p = personality
        self.auth.use(personality)
        self.r.use(personality)
        self.calls.p = personality
        return previous

    # -- input -------------------------------------------------------------------------
    def receive(self, data: bytes, peer: Peer, now: float) -> None:
        msg: Request | Response | ParseError | None = None
        if self.proxy_check(peer.src_ip):
            # From the domain's proxy: the flood guard counts the source it forwards for
            # (its own header), so one attacker behind it is shed, not everyone.
            msg = self._parse(data, peer)
            source = self.proxy_check.source(msg, peer.src_ip)
            self.guard.verify(peer.src_ip, now)  # the proxy itself is never shed
            if source is not None and not self.guard.admit(source, len(data), now, peer.transport):
                return
        elif not self.guard.admit(peer.src_ip, len(data), now, peer.transport):
            return
        if peer.reliable:
            self.guard.verify(peer.src_ip, now)
        message_id = self.r.message_id()
        if msg is None:
            msg = self._parse(data, peer)
        if isinstance(msg, ParseError):
            exc = msg
            fields = {
                "error": exc.reason,
                "defects": [],
                "size": len(data),
                "message_id": message_id,
            }
            self._emit("sip.message.malformed", peer, now, fields, data)
            return
        if isinstance(msg, Response):
            self._response_in(msg, peer, now, message_id)
            return
        self.requests += 1
        self._request_in(msg, peer, now, message_id)

    @staticmethod
    def _parse(data: bytes, peer: Peer) -> Request | Response | ParseError:
        try:
            return parse(data, stream=peer.reliable)
        except ParseError as exc:
            return exc

    def record_malformed(
        self,
        data: bytes,
        peer: Peer,
        now: float,
        error: str | None = None,
        defects: tuple[str, ...] = (),
    ) -> str:
        """Store input as it arrived without handling it (an unfinished stream message, a
        message cut at the size cap, garbage, what a client sent the TLS port): one
        sip.message.malformed with the defects parsing finds plus `defects`. Returns its
        message_id. The transport has already counted it against its storage caps."""
        message_id = self.r.message_id()
        fields: dict[str, Any] = {"error": error, "defects": [], "size": len(data)}
        try:
            msg = parse(data, stream=peer.reliable)
        except ParseError as exc:
            fields["error"] = f"{error}: {exc.reason}" if error else exc.reason
        else:
            fields["defects"] = list(msg.defect_names)
            if isinstance(msg, Request):
                fields["method"] = msg.method
        fields["defects"] += [d for d in defects if d not in fields["defects"]]
        fields["message_id"] = message_id
        self._emit("sip.message.malformed", peer, now, fields, data)
        return message_id

    def _response_in(self, msg: Response, peer: Peer, now: float, message_id: str) -> None:
        fields = {
            "status": msg.status,
            "reason": msg.reason,
            "method": msg.method,
            "call_id": msg.call_id,
            "user_agent": msg.user_agent or msg.server,
            "size": len(msg.raw),
            "defects": msg.defect_names,
            "message_id": message_id,
        }
        self._emit("sip.response.received", peer, now, fields, msg.raw, msg)
        if self.response_hook is not None:
            self.response_hook(msg, peer, now)

    def _request_in(self, msg: Request, peer: Peer, now: float, message_id: str) -> None:
        origin = origin_of(msg, peer.src_ip, self.proxies)
        if origin is not None and origin.blocked:
            # the proxy's copy of a request it refused: evidence only, never answered
            self._log_request(msg, peer, now, message_id, False, origin)
            return
        verdict = self.txs.receive(msg, peer, peer.reliable, now) if msg.top_via else None
        retrans = verdict is not None and verdict.kind is ReceivedKind.RETRANSMISSION
        self._log_request(msg, peer, now, message_id, retrans, origin)
        if verdict is None:
            return  # no Via: no reply can be addressed; recorded above
        inc = Incoming(msg, peer, now, verdict.key, message_id)
        kind = verdict.kind
        if kind is ReceivedKind.RETRANSMISSION:
            if verdict.data is not None:
                self._retransmit(msg, peer, verdict.data, now)
        elif kind in (ReceivedKind.ACK_ABSORBED, ReceivedKind.ACK_2XX, ReceivedKind.STRAY):
            if self._acks_our_reply(msg, verdict.key):
                self.guard.verify(peer.src_ip, now)
            self.calls.ack(msg, now)
        elif kind is ReceivedKind.CANCEL_TARGET:
            self.calls.cancel(inc, verdict.target)
        elif self._sane(inc):
            self._dispatch(inc)

    def _log_request(
        self,
        msg: Request,
        peer: Peer,
        now: float,
        message_id: str,
        retrans: bool,
        origin: Origin | None = None,
    ) -> None:
        fro, to, via, cseq = msg.from_addr, msg.to_addr, msg.top_via, msg.cseq
        defects = msg.defect_names
        fields = {
            "method": msg.method,
            "request_uri": msg.request_uri,
            "call_id": msg.call_id,
            "cseq": cseq.seq if cseq else None,
            "from_user": fro.user if fro else None,
            "from_tag": fro.tag if fro else None,
            "to_user": to.user if to else None,
            "to_tag": to.tag if to else None,
            "user_agent": msg.user_agent,
            "via_branch": via.branch if via else None,
            "contact": str(msg.contacts[0].uri) if msg.header("contact") and msg.contacts else None,
            "size": len(msg.raw),
            "defects": defects,
            "retransmission": retrans,
            "message_id": message_id,
        }
        if origin is not None:  # forwarded by a configured proxy: whose it really is
            fields.update(
                origin_ip=origin.ip,
                origin_port=origin.port,
                origin_transport=origin.transport,
                blocked_by_proxy=origin.blocked,
            )
        self._emit("sip.request.received", peer, now, fields, msg.raw, msg)
        if defects:
            bad = {
                "error": None,
                "defects": defects,
                "size": len(msg.raw),
                "message_id": message_id,
                "method": msg.method,
            }
            self._emit("sip.message.malformed", peer, now, bad, msg.raw, msg)

    def _acks_our_reply(self, msg: Request, key: tuple[str, ...] | None) -> bool:
        """Does this ACK carry the To tag of a reply we sent? Only then has its source
        shown that it receives our replies (anyone can send an ACK from a forged address)."""
        tag = msg.to_addr.tag if msg.to_addr is not None else None
        if not tag:
            return False
        call = self.calls.calls.get(msg.call_id or "")
        if call is not None and call.to_tag == tag:
            return True
        entry = self.txs.get(key) if key is not None else None
        if entry is None or entry.response is None:
            return False
        try:
            reply = parse(entry.response)
        except ParseError:
            return False
        return reply.to_addr is not None and reply.to_addr.tag == tag

    def _retransmit(self, msg: Request, peer: Peer, data: bytes, now: float) -> None:
        self.r.resend(peer, data, now, msg.method, msg.call_id)

    def _sane(self, inc: Incoming) -> bool:
        """RFC 3261 8.2 checks before the method's own handling; answers and returns
        False when the request is refused."""
        msg = inc.request
        names = set(msg.defect_names)
        missing = [
            d.detail for d in msg.defects if d.name == "missing_header" and d.detail in ESSENTIAL
        ]
        if "bad_version" in names:
            self.r.respond(inc, 505)
        elif missing or names & BAD_REQUEST:
            self.r.respond(inc, 400)
        elif "unknown_uri_scheme" in names:
            self.r.respond(inc, 416)
        elif msg.max_forwards == 0:
            self.r.respond(inc, 483)
        elif unsupported := [o for o in msg.require if o not in self.p.supported]:
            self.r.respond(inc, 420, [("Unsupported", ", ".join(unsupported))])
        elif self._unsupported_body(msg):
            self.r.respond(inc, 415, [("Accept", ", ".join(self.p.accept))])
        else:
            return True
        return False

    def _unsupported_body(self, msg: Request) -> bool:
        if msg.method not in ("INVITE", "UPDATE", "PRACK") or not msg.body:
            return False
        ctype = msg.content_type
        return ctype is not None and ctype.mime not in SDP_TYPES

    def _dispatch(self, inc: Incoming) -> None:
        method = inc.request.method
        handler = self.handlers.get(method)
        if method in SIP_METHODS and method not in self.p.allow and method != "REGISTER":
            # a method this product does not implement: what it answers is 405 with Allow
            self.r.respond(inc, 405, [("Allow", ", ".join(self.p.allow))])
        elif handler is not None:
            handler(inc)
        elif method in SIP_METHODS:
            self.r.respond(inc, 405, [("Allow", ", ".join(self.p.allow))])
        else:
            self.r.respond(inc, 501, [("Allow", ", ".join(self.p.allow))])

    # -- timers --------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        """The earliest time handle_timers has something to do (None: nothing is armed):
        transactions, calls, dialogs and registrations each keep their own deadlines."""
        tables = (self.txs, self.calls, self.registrar)
        deadlines = [d for d in (t.next_deadline() for t in tables) if d is not None]
        dialogs = self.dialogs.next_deadline()  # a bound, not the expiry: see DIALOG_RECHECK
        if dialogs is not None:
            deadlines.append(max(dialogs, self._dialogs_checked + DIALOG_RECHECK))
        return min(deadlines) if deadlines else None

    def handle_timers(self, now: float) -> None:
        for event in self.txs.handle_timers(now):
            if event.kind is TimerKind.RETRANSMIT and event.data is not None:
                if isinstance(event.peer, Peer):
                    self.r.resend(event.peer, event.data, now, event.method, event.call_id)
            elif event.kind is TimerKind.NO_ACK:
                self.calls.no_ack(event.call_id, now)
        self.calls.handle_timers(now)
        for binding in self.registrar.expire(now):
            self._emit_binding("sip.register.removed", binding, now, "expired")
        if self.dialogs.next_deadline() is not None:
            self.dialogs.expire(now)
            self._dialogs_checked = now

    def stop(self, now: float) -> None:
        self.calls.stop(now)

    # -- authentication -------------------------------------------------------------------
    def _client(self, peer: Peer) -> str:
        return peer.src_ip

    def _challenge_value(self, inc: Incoming, stale: bool) -> str:
        return self.auth.challenge(self._client(inc.peer), inc.now, stale=stale)

    def _authenticate(self, inc: Incoming) -> AuthCheck | None:
        """Check the request's credentials (if any), record the attempt, queue recovery."""
        msg = inc.request
        header = "proxy-authorization" if msg.has_header("proxy-authorization") else "authorization"
        value = msg.header(header)
        if value is None:
            return None
        check = self.auth.check(msg, header, value, self._client(inc.peer), inc.now, self.plan.get)
        if check.result not in ("forged_nonce", "not_digest", "malformed"):
            self.guard.verify(inc.peer.src_ip, inc.now)  # it answered our challenge
        attempt_id = self.r.message_id()
        fields = check.fields()
        fields.update(
            method=msg.method,
            call_id=msg.call_id,
            user_agent=msg.user_agent,
            attempt_id=attempt_id,
            password_source=check.password_source,
        )
        self._emit("sip.auth.attempt", inc.peer, inc.now, fields)
        if check.password is None and check.creds.is_digest and self.recovery is not None:
            context = {"peer": inc.peer, "call_id": msg.call_id}
            job = RecoveryJob(
                attempt_id, check.creds, msg.method, msg.body, msg.request_uri, context
            )
            self.recovery.submit(job)
        return check

    def on_recovered(self, job: RecoveryJob, password: str, now: float) -> None:
        fields = {
            "username": job.creds.username,
            "realm": job.creds.realm,
            "password": password,
            "method": job.method,
            "source": "wordlist",
            "attempt_id": job.attempt_id,
        }
        self._emit("sip.auth.recovered", job.context.get("peer"), now, fields)

    # -- methods ----------------------------------------------------------------------------
    def on_register(self, inc: Incoming) -> None:
        msg = inc.request
        user = msg.to_addr.user if msg.to_addr else None
        ext = self.plan.get(user)
        check = self._authenticate(inc)
        if ext is None:
            status = self.p.register_unknown_status
            if status in (401, 407):  # PJSIP style: challenged (again) like a real user
                self._send_challenge(inc, status)
            else:
                self.r.respond(inc, status)
            return
        if ext.password is not None:
            if check is None or check.result in ("stale", "forged_nonce", "not_digest"):
                self._send_challenge(inc, 401, stale=check is not None and check.result == "stale")
                return
            if check.result != "success" or check.creds.username != ext.user:
                self.r.respond(inc, 403)
                return
        self._bind(inc, user or "")

    def _send_challenge(self, inc: Incoming, status: int, stale: bool = False) -> None:
        header = "Proxy-Authenticate" if status == 407 else "WWW-Authenticate"
        self.r.respond(inc, status, [(header, self._challenge_value(inc, stale))])

    def _bind(self, inc: Incoming, user: str) -> None:
        msg = inc.request
        requested = msg.expires if msg.expires is not None else self.p.default_expires
        contacts = [c for c in msg.contacts if not c.wildcard]
        if any(c.wildcard for c in msg.contacts):
            for binding in self.registrar.remove(user, None):
                self._emit_binding("sip.register.removed", binding, inc.now, "unregistered")
            self.r.respond(inc, 200)
            return
        headers: list[tuple[str, str]] = []
        for contact in contacts:
            expires_text = contact.param("expires")
            expires = int(expires_text) if expires_text and expires_text.isdigit() else requested
            if 0 < expires < self.p.min_expires:
                self.r.respond(inc, 423, [("Min-Expires", str(self.p.min_expires))])
                return
            expires = min(expires, self.p.max_expires)
            uri = str(contact.uri)
            if expires == 0:
                for binding in self.registrar.remove(user, uri):
                    self._emit_binding("sip.register.removed", binding, inc.now, "unregistered")
                continue
            binding = Binding(
                user,
                uri,
                inc.now + expires,
                f"{inc.peer.transport}:{inc.peer.src_ip}:{inc.peer.src_port}",
                msg.call_id or "",
            )
            self.registrar.bind(binding)
            fields = {
                "username": user,
                "contact": uri,
                "expires": expires,
                "call_id": msg.call_id,
                "user_agent": msg.user_agent,
            }
            self._emit("sip.register.success", inc.peer, inc.now, fields)
        for binding in self.registrar.of(user, inc.now):
            left = max(0, int(binding.expires_at - inc.now))
            headers.append(("Contact", f"<{binding.contact}>;expires={left}"))
        headers.append(("Date", formatdate(inc.now, usegmt=True)))
        self.r.respond(inc, 200, headers)

    def on_options(self, inc: Incoming) -> None:
        headers = [
            ("Allow", ", ".join(self.p.allow)),
            ("Supported", ", ".join(self.p.supported)),
            ("Accept", ", ".join(self.p.accept)),
        ]
        if self.p.send_contact_in_options:
            user = inc.request.uri.user
            headers.append(("Contact", self.r.contact(user, inc.peer)))
        self.r.respond(inc, 200, headers)

    def on_message(self, inc: Incoming) -> None:
        if self.dialogs.match(inc.request) is not None:
            self.calls.in_dialog(inc)
            return
        ext = self.plan.get(inc.request.uri.user)
        self.r.respond(inc, 202 if ext is not None else self.p.unknown_user_status)

    def on_refer(self, inc: Incoming) -> None:
        self.calls.in_dialog(inc, status=202)

    def on_subscribe(self, inc: Incoming) -> None:
        if self.dialogs.match(inc.request) is not None:
            self.calls.in_dialog(inc, status=489)
            return
        if self.p.challenge_invite and self._authenticate(inc) is None:
            self._send_challenge(inc, 401)
            return
        self.r.respond(inc, 489, [("Allow-Events", "message-summary, dialog, presence")])

    def on_publish(self, inc: Incoming) -> None:
        self.r.respond(inc, 489, [("Allow-Events", "message-summary, dialog, presence")])

    # -- events -------------------------------------------------------------------------------
    def _emit(
        self,
        event_id: str,
        peer: Peer | None,
        now: float,
        fields: dict[str, Any],
        raw: bytes | None = None,
        message: Request | Response | None = None,
    ) -> None:
        """`message` is what was parsed from `raw`: it travels with the event, so that
        in-process sinks (the live analysis) do not parse the bytes again."""
        direction = "in" if raw is not None else None
        self.emit(Event(event_id, now, self.sensor, peer, fields, raw, direction, message))

    def _emit_binding(self, event_id: str, binding: Binding, now: float, reason: str) -> None:
        self._emit(
            event_id,
            None,
            now,
            {"username": binding.username, "contact": binding.contact, "reason": reason},
        )
