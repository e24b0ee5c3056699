"""Calls: the INVITE side of the endpoint — challenge, ring, answer with SDP, busy,
redirect, hang up, CANCEL, BYE, ACK — with the timing of a real PBX, on deadlines."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Protocol, runtime_checkable

from ..bounded import DeadlineQueue
from ..events.record import Event, Peer
from ..media.codecs import g722_available
from ..media.dtmf import DtmfEvent, parse_info_dtmf
from ..media.negotiation import plan_streams
from ..media.session import CallSetup
from ..sip import Request
from ..sip.dialog import Dialog, DialogTable
from ..sip.errors import StateError
from ..sip.sdp import SessionDescription, build_answer, build_offer, parse_sdp
from ..sip.transaction import TransactionKey
from . import identifiers
from .credentials import AuthCheck
from .extensions import Extension, ExtensionPlan
from .personality import Personality
from .responder import Incoming, Responder

EXTERNAL_RING_TIMEOUT = 30.0  # an authenticated call to a number we do not host
CHALLENGE_WAIT = 32.0  # how long a challenged call waits for the authenticated INVITE


class CallState(StrEnum):
    NEW = "new"  # INVITE received, not answered yet
    CHALLENGED = "challenged"  # 401/407 sent, waiting for the authenticated INVITE
    RINGING = "ringing"  # routed: ringing, or about to be answered, refused or redirected
    ANSWERED = "answered"  # 200 OK sent
    ENDED = "ended"


C = CallState
# Events: "challenge" (401/407 to the INVITE), "route" (authenticated or not needed: the
# extension's behaviour starts), "answer" (200 OK), "end" (any final answer, BYE, CANCEL,
# timeout, eviction, operator, shutdown).
CALL_TABLE: Final[dict[tuple[CallState, str], CallState]] = {
    (C.NEW, "challenge"): C.CHALLENGED,
    (C.NEW, "route"): C.RINGING,
    (C.NEW, "end"): C.ENDED,
    (C.CHALLENGED, "challenge"): C.CHALLENGED,
    (C.CHALLENGED, "route"): C.RINGING,
    (C.CHALLENGED, "end"): C.ENDED,
    (C.RINGING, "answer"): C.ANSWERED,
    (C.RINGING, "end"): C.ENDED,
    (C.ANSWERED, "end"): C.ENDED,
}
OPEN_STATES: Final = frozenset({C.NEW, C.CHALLENGED, C.RINGING})  # a CANCEL still applies


def _move(call: Call, event: str) -> None:
    new = CALL_TABLE.get((call.state, event))
    if new is None:
        raise StateError("call", call.state.value, event)
    call.state = new


class MediaPorts(Protocol):
    """Where answered calls' RTP goes (the media layer implements it)."""

    def open(self, key: str, local_ip: str) -> int | None: ...

    def close(self, key: str) -> dict[str, Any]: ...


@runtime_checkable
class MediaSessions(MediaPorts, Protocol):
    """The whole media layer (`transport.media.MediaEndpoint`): several streams per call,
    recording and playback, DTMF, and calls to hang up because of their media."""

    def open_streams(self, key: str, local_ip: str, count: int) -> list[int]: ...

    def start(self, key: str, setup: CallSetup, now: float | None = None) -> None: ...

    def confirm(self, key: str) -> None: ...

    def dtmf(self, key: str, event: DtmfEvent, now: float) -> None: ...

    def take_ended(self) -> list[tuple[str, str]]: ...


@dataclass(slots=True)
class Call:
    call_id: str
    peer: Peer
    inc: Incoming
    to_tag: str
    called: str | None
    extension: Extension | None
    behaviour: str
    started: float
    state: CallState = C.NEW
    answered_at: float | None = None
    dialog: Dialog | None = None
    media_key: str | None = None
    answer_sdp: bytes = b""
    offer: SessionDescription | None = None  # the SDP of the INVITE being answered
    status: int | None = None
    timers: dict[str, float] = field(default_factory=dict)  # action -> when it is due

    @property
    def ended(self) -> bool:
        return self.state is C.ENDED


class CallManager:
    def __init__(
        self,
        responder: Responder,
        dialogs: DialogTable,
        personality: Personality,
        plan: ExtensionPlan,
        media: MediaPorts,
        authenticate: Callable[[Incoming], AuthCheck | None],
        challenge: Callable[[Incoming, bool], str],
        max_calls: int,
    ) -> None:
        self.r = responder
        self.dialogs = dialogs
        self.p = personality
        self.plan = plan
        self.media = media
        self.sessions = media if isinstance(media, MediaSessions) else None
        self.authenticate = authenticate
        self.challenge = challenge
        self.max_calls = max(1, max_calls)
        self.calls: dict[str, Call] = {}  # oldest first: the first evicted when full
        self._timers: DeadlineQueue[tuple[str, str]] = DeadlineQueue()  # (call id, action)
        self.evicted = 0

    def stats(self) -> dict[str, int]:
        """Calls held, timers armed and queued (the queue stays proportional to them)."""
        timers = self._timers.stats()
        return {"calls": len(self.calls), "evicted": self.evicted, **timers}

    # -- timers ----------------------------------------------------------------------
    def _at(self, call: Call, when: float, action: str) -> None:
        call.timers[action] = when
        self._timers.set((call.call_id, action), when)

    def _cancel(self, call: Call, action: str) -> None:
        if call.timers.pop(action, None) is not None:
            self._timers.cancel((call.call_id, action))

    def next_deadline(self) -> float | None:
        return self._timers.next_deadline()

    def handle_timers(self, now: float) -> None:
        self._media_ended(now)
        while (when := self._timers.next_deadline()) is not None and when <= now:
            for call_id, action in self._timers.pop_due(when):
                call = self.calls.get(call_id)
                # an earlier timer of this round may have ended the call or moved this one
                if call is None or call.ended or call.timers.get(action) != when:
                    continue
                del call.timers[action]
                call.inc.now = now
                self._fire(call, action, now)

    def _fire(self, call: Call, action: str, now: float) -> None:
        if action == "ringing":
            self._provisional(call, self.p.ringing_status)
        elif action == "answer":
            self._answer(call, now)
        elif action == "ring_timeout":
            self._final(call, 480, "no_answer")
        elif action == "decline":
            self._final(call, 603, "declined")
        elif action == "hangup":
            self._hangup(call, now)
        elif action == "challenge_timeout":
            self._end(call, now, "unauthenticated", call.status)

    # -- INVITE ----------------------------------------------------------------------
    def invite(self, inc: Incoming) -> None:
        request = inc.request
        if request.to_addr is not None and request.to_addr.tag is not None:
            self._reinvite(inc)
            return
        call_id = request.call_id or ""
        call = self.calls.get(call_id)
        if call is not None and call.state not in (C.CHALLENGED, C.ENDED):
            self._second_invite(call, inc)
            return
        called = request.uri.user
        if call is None or call.ended:
            call = self._new_call(inc, called)
        else:
            call.inc, call.peer = inc, inc.peer
            call.offer = _offer(inc)
        self.r.respond(inc, 100)
        if self.p.challenge_invite:
            check = self.authenticate(inc)
            if check is None or check.result in ("stale", "forged_nonce", "not_digest"):
                self._challenge(call, inc, stale=check is not None and check.result == "stale")
                return
            if check.result != "success":
                self._final(call, 403, "auth_failed")
                return
        self._route(call, inc.now)

    def _second_invite(self, call: Call, inc: Incoming) -> None:
        """A new INVITE transaction (another branch) for a call already going on: the
        same request by another path is merged (RFC 3261 8.2.2.2: 482), a later one
        waits for the first (14.2: 500 with Retry-After 0-10 s)."""
        first, cseq = call.inc.request.cseq, inc.request.cseq
        if first is not None and cseq is not None and first.seq == cseq.seq:
            self.r.respond(inc, 482)
        else:
            self.r.respond(inc, 500, [("Retry-After", str(secrets.randbelow(11)))])

    def _new_call(self, inc: Incoming, called: str | None) -> Call:
        self.calls.pop(inc.request.call_id or "", None)  # an ended call of the same Call-ID
        if len(self.calls) >= self.max_calls:
            oldest = self.calls.pop(next(iter(self.calls)))
            self.evicted += 1
            if not oldest.ended:
                self._end(oldest, inc.now, "evicted", oldest.status)
        ext = self.plan.get(called)
        call = Call(
            call_id=inc.request.call_id or "",
            peer=inc.peer,
            inc=inc,
            to_tag=self.r.new_tag(),
            called=called,
            extension=ext,
            behaviour=self._behaviour(ext),
            started=inc.now,
        )
        call.offer = offer = _offer(inc)
        self.calls[call.call_id] = call
        media = (
            [f"{m.kind} {m.port} {m.proto} {' '.join(m.formats)}" for m in offer.media]
            if offer
            else []
        )
        self._event(
            call,
            "sip.call.started",
            inc.now,
            from_user=inc.request.from_addr.user if inc.request.from_addr else None,
            to_user=inc.request.to_addr.user if inc.request.to_addr else None,
            called_number=called,
            extension=ext.user if ext else None,
            behaviour=call.behaviour,
            user_agent=inc.request.user_agent,
            sdp_media=media[:8],
        )
        return call

    def _behaviour(self, ext: Extension | None) -> str:
        if ext is not None:
            return ext.behaviour
        return "external" if self.p.challenge_invite else "unknown"

    def _challenge(self, call: Call, inc: Incoming, stale: bool) -> None:
        status = self.p.invite_challenge_status
        header = "Proxy-Authenticate" if status == 407 else "WWW-Authenticate"
        _move(call, "challenge")
        call.status = status
        self.r.respond(inc, status, [(header, self.challenge(inc, stale))], to_tag=call.to_tag)
        self._at(call, inc.now + CHALLENGE_WAIT, "challenge_timeout")

    def _route(self, call: Call, now: float) -> None:
        self._cancel(call, "challenge_timeout")
        ext = call.extension
        if ext is None and not self.p.challenge_invite:
            self._final(call, self.p.unknown_user_status, "unknown_extension")
            return
        behaviour = ext.behaviour if ext is not None else "ring"
        _move(call, "route")
        if behaviour == "busy":
            self._final(call, 486, "busy")
        elif behaviour == "redirect":
            target = ext.redirect_to if ext is not None and ext.redirect_to else ""
            self._final(call, 302, "redirected", [("Contact", f"<{target}>")])
        else:
            self._at(call, now + self.p.ringing_delay, "ringing")
            if behaviour == "answer" and ext is not None:
                self._at(call, now + max(ext.answer_after, self.p.ringing_delay + 0.01), "answer")
            elif behaviour == "hangup":
                self._at(call, now + self.p.ringing_delay + 1.0, "decline")
            else:
                timeout = ext.ring_timeout if ext is not None else EXTERNAL_RING_TIMEOUT
                self._at(call, now + timeout, "ring_timeout")

    def _provisional(self, call: Call, status: int) -> None:
        self.r.respond(call.inc, status, self._allow_contact(call), to_tag=call.to_tag)
        if call.dialog is None and call.inc.request.from_addr is not None:
            call.dialog = self.dialogs.create(call.inc.request, call.to_tag, status, call.inc.now)

    def _allow_contact(self, call: Call) -> list[tuple[str, str]]:
        return [
            ("Allow", ", ".join(self.p.allow)),
            ("Supported", ", ".join(self.p.supported)),
            ("Contact", self.r.contact(call.called, call.peer)),
        ]

    def _answer(self, call: Call, now: float) -> None:
        body = self._sdp_answer(call, now)
        if body is None:  # no media port or line free: busy, as a full PBX is
            self._final(call, 486, "media_busy")
            return
        headers = self._allow_contact(call)
        if body:
            headers.append(("Content-Type", "application/sdp"))
        call.answer_sdp = body
        if self.r.respond(call.inc, 200, headers, body=body, to_tag=call.to_tag) is None:
            return
        _move(call, "answer")
        call.status = 200
        call.answered_at = now
        if call.inc.request.from_addr is not None:
            call.dialog = self.dialogs.create(call.inc.request, call.to_tag, 200, now)
        self._event(
            call,
            "sip.call.answered",
            now,
            called_number=call.called,
            extension=call.extension.user if call.extension else None,
        )
        duration = call.extension.call_duration if call.extension else 30.0
        self._at(call, now + duration, "hangup")

    def _sdp_answer(self, call: Call, now: float) -> bytes | None:
        """The SDP of the 200 OK, with RTP ports opened for it; None when there is none."""
        local_ip = self.r.public_address or call.peer.dst_ip
        offer = call.offer
        call.media_key = call.call_id
        codecs = self.p.codecs
        if self.sessions is not None:
            audio = [m for m in offer.media if m.kind.lower() == "audio"] if offer else []
            ports = self.sessions.open_streams(call.call_id, call.peer.dst_ip, len(audio) or 1)
            codecs = tuple(c for c in codecs if c.lower() != "g722" or g722_available())
        else:
            port = self.media.open(call.call_id, local_ip)
            ports = [port] if port is not None else []
        if not ports:
            return None
        common = {
            "address": local_ip,
            "origin_username": self.p.sdp_username,
            "session_id": identifiers.sdp_session_id(),
            "session_version": 1,
            "session_name": self.p.sdp_session_name,
            "codecs": codecs,
            "ptime": self.p.ptime,
        }
        answer: SessionDescription
        if offer is not None and any(m.kind == "audio" for m in offer.media):
            answer = build_answer(offer, ports=ports, **common)  # type: ignore[arg-type]
        else:
            offer = None
            answer = build_offer(port=ports[0], **common)  # type: ignore[arg-type]
        if self.sessions is not None:
            self._start_media(call, offer, answer, now)
        return answer.to_bytes()

    def _start_media(
        self, call: Call, offer: SessionDescription | None, answer: SessionDescription, now: float
    ) -> None:
        assert self.sessions is not None
        ext = call.extension
        setup = CallSetup(
            call_id=call.call_id,
            peer_ip=call.peer.src_ip,
            local_ip=call.peer.dst_ip,
            streams=tuple(plan_streams(offer, answer, self.p.ptime)),
            mode=ext.media if ext is not None else "play",
            media_file=ext.media_file if ext is not None else None,
        )
        self.sessions.start(call.call_id, setup, now)

    def _media_ended(self, now: float) -> None:
        """Hang up (BYE) the calls whose media says so: no RTP for too long, the
        longest call allowed, or the IVR done."""
        if self.sessions is None:
            return
        for key, reason in self.sessions.take_ended():
            call = self.calls.get(key)
            if call is not None and call.state is C.ANSWERED and call.media_key == key:
                call.inc.now = now
                self._hangup(call, now, reason)

    def _final(
        self, call: Call, status: int, reason: str, headers: list[tuple[str, str]] | None = None
    ) -> None:
        self.r.respond(call.inc, status, headers or [], to_tag=call.to_tag)
        call.status = status
        if call.dialog is not None:
            self.dialogs.update(call.dialog, status, call.inc.now)
        self._end(call, call.inc.now, reason, status)

    def _hangup(self, call: Call, now: float, reason: str = "hangup") -> None:
        dialog = call.dialog
        if dialog is not None:
            data = dialog.build_request(
                "BYE", via=self.r.via(call.peer), headers=[("User-Agent", self.p.user_agent)]
            )
            self.r.send_request(call.peer, data, now, "BYE", dialog.remote_target, call.call_id)
            self.dialogs.terminate(dialog, "hangup")
        self._end(call, now, reason, 200)

    def _reinvite(self, inc: Incoming) -> None:
        dialog = self.dialogs.match(inc.request)
        call = self.calls.get(inc.request.call_id or "")
        if dialog is None or call is None or call.state is not C.ANSWERED:
            self.r.respond(inc, 481)
            return
        self.dialogs.request_received(dialog, inc.request, inc.now)
        headers = self._allow_contact(call)
        if call.answer_sdp:
            headers.append(("Content-Type", "application/sdp"))
        self.r.respond(inc, 200, headers, body=call.answer_sdp, to_tag=call.to_tag)

    # -- the rest of a call ------------------------------------------------------------
    def cancel(self, inc: Incoming, target: TransactionKey | None) -> None:
        call = self.calls.get(inc.request.call_id or "")
        if target is None or call is None or call.state not in OPEN_STATES:
            self.r.respond(inc, 481)
            return
        self.r.respond(inc, 200, to_tag=call.to_tag)
        self._final(call, 487, "cancelled")

    def bye(self, inc: Incoming) -> None:
        dialog = self.dialogs.match(inc.request)
        call = self.calls.get(inc.request.call_id or "")
        if dialog is None:
            self.r.respond(inc, 481)
            return
        self.dialogs.request_received(dialog, inc.request, inc.now)
        self.r.respond(inc, 200, to_tag=dialog.local_tag)
        if call is not None and not call.ended:
            self._end(call, inc.now, "bye", call.status)

    def ack(self, request: Request, now: float) -> None:
        dialog = self.dialogs.match(request)
        if dialog is not None:
            self.dialogs.request_received(dialog, request, now)
            call = self.calls.get(request.call_id or "")
            if self.sessions is not None and call is not None and call.media_key:
                self.sessions.confirm(call.media_key)  # the caller receives what we send

    def in_dialog(self, inc: Incoming, status: int = 200) -> None:
        """INFO, UPDATE, PRACK, REFER, NOTIFY, MESSAGE inside a call: 200 (202 for REFER)."""
        dialog = self.dialogs.match(inc.request)
        if dialog is None:
            self.r.respond(inc, 481)
            return
        self.dialogs.request_received(dialog, inc.request, inc.now)
        self.r.respond(inc, status, to_tag=dialog.local_tag)
        if inc.request.method == "INFO" and inc.request.body:
            self._info_dtmf(inc)

    def _info_dtmf(self, inc: Incoming) -> None:
        """DTMF in a SIP INFO (application/dtmf-relay, application/dtmf): an
        `rtp.dtmf.received` event, and the key for the call's media (IVR, summary)."""
        request = inc.request
        found = parse_info_dtmf(request.header("content-type") or "", request.body, inc.now)
        if found is None or found.event is None:
            return
        event = found.event
        fields: dict[str, Any] = {
            "call_id": request.call_id,
            "digits": event.digit,
            "source": event.source,
            "duration_ms": event.duration_ms,
            "stream": None,
            "ended": True,
        }
        if found.defects:
            fields["defects"] = list(found.defects)
        self.r.emit(Event("rtp.dtmf.received", inc.now, self.r.sensor, inc.peer, fields))
        call = self.calls.get(request.call_id or "")
        if self.sessions is not None and call is not None and call.media_key:
            self.sessions.dtmf(call.media_key, event, inc.now)

    def no_ack(self, call_id: str, now: float) -> None:
        call = self.calls.get(call_id)
        if call is not None and call.state is C.ANSWERED and call.dialog and not call.dialog.acked:
            self.dialogs.terminate(call.dialog, "no_ack")
            self._end(call, now, "no_ack", call.status)

    def _end(self, call: Call, now: float, reason: str, status: int | None) -> None:
        if call.ended:
            return
        answered = call.answered_at is not None
        _move(call, "end")
        for action in list(call.timers):
            self._cancel(call, action)
        media = self.media.close(call.media_key) if call.media_key else {}
        duration = round(now - call.answered_at, 3) if call.answered_at is not None else 0.0
        self._event(
            call,
            "sip.call.ended",
            now,
            called_number=call.called,
            reason=reason,
            status=status,
            answered=answered,
            duration=duration,
            media=media,
        )

    def hang_up(self, call_id: str, now: float) -> bool:
        """End a call now (runtime control): BYE if answered, 480 if still ringing."""
        call = self.calls.get(call_id)
        if call is None or call.ended:
            return False
        if call.state is C.ANSWERED:
            self._hangup(call, now, "operator")
        else:
            call.inc.now = now
            self._final(call, 480, "operator")
        return True

    def stop(self, now: float) -> None:
        for call in list(self.calls.values()):
            if not call.ended:
                self._end(call, now, "shutdown", call.status)

    def _event(self, call: Call, event_id: str, now: float, **fields: Any) -> None:
        self.r.emit(
            Event(event_id, now, self.r.sensor, call.peer, {"call_id": call.call_id, **fields})
        )


def _offer(inc: Incoming) -> SessionDescription | None:
    """The SDP offer an INVITE carries (parsed once per INVITE), or None."""
    return parse_sdp(inc.request.body) if inc.request.body else None
