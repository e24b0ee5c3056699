"""The endpoint (`siptrap run`'s brain) in-process, on a fake clock.

Every test drives `Endpoint.receive(data, peer, now)` and `handle_timers(now)` with
messages written by `siptrap.sip.build.build_request`, collects what the endpoint sends
and emits, and reads the replies back with the SIP parser.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from conftest import RFC4475_STATUS, rfc4475
from siptrap.config import config_from_dict
from siptrap.endpoint.uas import Endpoint
from siptrap.events.catalogue import CATALOGUE
from siptrap.events.record import Event, Peer
from siptrap.sip import Request, Response, parse
from siptrap.sip.auth import answer_challenge, parse_challenge
from siptrap.sip.build import build_request
from siptrap.sip.sdp import parse_sdp

T0 = 1_700_000_000.0
HONEYPOT_IP = "192.0.2.1"
ATTACKER = Peer("udp", "198.51.100.7", 5070, HONEYPOT_IP, 5060)
OTHER = Peer("udp", "198.51.100.99", 5099, HONEYPOT_IP, 5060)
TCP_ATTACKER = Peer("tcp", "198.51.100.8", 40000, HONEYPOT_IP, 5060, connection=7)

EXTENSIONS: list[dict[str, Any]] = [
    {"users": "100-101", "password": "1234", "behaviour": "answer", "answer_after": 2},
    {"users": "200", "password": "secret", "behaviour": "ring", "ring_timeout": 5},
    {"users": "300", "behaviour": "busy"},
    {"users": "301", "behaviour": "redirect", "redirect_to": "sip:999@203.0.113.9"},
    {"users": "302", "behaviour": "hangup"},
    {"users": "400", "behaviour": "answer", "answer_after": 1, "call_duration": 10},
    {"users": "401", "behaviour": "ring", "ring_timeout": 5},
    {"users": "500"},
]
PERSONALITIES = ("asterisk", "freepbx", "cisco", "yealink", "polycom")
PHONES = ("cisco", "yealink", "polycom")  # personalities that do not challenge calls

SDP_OFFER = (
    b"v=0\r\n"
    b"o=attacker 2890844526 2890844526 IN IP4 198.51.100.7\r\n"
    b"s=call\r\n"
    b"c=IN IP4 198.51.100.7\r\n"
    b"t=0 0\r\n"
    b"m=audio 49170 RTP/AVP 0 8 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\n"
)

_branches = itertools.count(1)


def request(
    method: str,
    to_user: str = "100",
    *,
    uri: str | None = None,
    cseq: int = 1,
    cseq_method: str | None = None,
    call_id: str = "call-1@198.51.100.7",
    from_user: str = "attacker",
    from_tag: str | None = "caller-tag-1",
    to_tag: str | None = None,
    branch: str | None = None,
    via: str | None = None,
    transport: str = "UDP",
    contact: str | None = "<sip:attacker@198.51.100.7:5070>",
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    max_forwards: int = 70,
) -> bytes:
    """A request as a client writes it; a fresh branch unless one is given."""
    branch = branch or f"z9hG4bK-test-{next(_branches)}"
    extra = list(headers)
    if body and not any(name.lower() == "content-type" for name, _ in extra):
        extra.append(("Content-Type", "application/sdp"))
    data = build_request(
        method,
        uri or f"sip:{to_user}@{HONEYPOT_IP}",
        via=via or f"SIP/2.0/{transport} 198.51.100.7:5070;branch={branch};rport",
        from_=f"<sip:{from_user}@{HONEYPOT_IP}>" + (f";tag={from_tag}" if from_tag else ""),
        to=f"<sip:{to_user}@{HONEYPOT_IP}>" + (f";tag={to_tag}" if to_tag else ""),
        call_id=call_id,
        cseq=cseq,
        contact=contact,
        max_forwards=max_forwards,
        headers=extra,
        body=body,
    )
    if cseq_method is not None:
        data = data.replace(
            f"CSeq: {cseq} {method}".encode(), f"CSeq: {cseq} {cseq_method}".encode()
        )
    return data


def authorization(
    challenge_response: Response, user: str, password: str, method: str, uri: str
) -> tuple[str, str]:
    """The Authorization (or Proxy-Authorization) header answering a 401/407."""
    name = "Proxy-Authenticate" if challenge_response.status == 407 else "WWW-Authenticate"
    value = challenge_response.header(name)
    assert value is not None, challenge_response.raw
    challenge = parse_challenge(value)
    assert challenge is not None
    creds = answer_challenge(challenge, user, password, method, uri, cnonce="0a4f113b")
    header = "Proxy-Authorization" if challenge_response.status == 407 else "Authorization"
    return header, creds.header_value()


def status_of(messages: Iterable[Request | Response]) -> list[int]:
    return [m.status for m in messages if isinstance(m, Response)]


class Box:
    """An Endpoint with a fake clock, the wire and the events in lists."""

    def __init__(
        self,
        personality: str = "asterisk",
        *,
        extensions: list[dict[str, Any]] | None = None,
        flood: dict[str, Any] | None = None,
        check: Callable[[Event], None] | None = None,
        **sections: Any,
    ) -> None:
        data: dict[str, Any] = {
            "sensor": {"personality": personality, "name": "box"},
            "extensions": extensions if extensions is not None else EXTENSIONS,
            "flood": flood or {},
            **sections,
        }
        self.config = config_from_dict(data)
        self.check = check or CHECK
        self.wire: list[tuple[Peer, bytes]] = []
        self.events: list[Event] = []
        self.now = T0
        self.ep = Endpoint(
            self.config.endpoint_settings(), emit=self._emit, send=self._send, secret=b"fixed"
        )

    def _emit(self, event: Event) -> None:
        if self.check is not None:
            self.check(event)
        self.events.append(event)

    def _send(self, peer: Peer, data: bytes) -> None:
        self.wire.append((peer, data))

    def deliver(self, data: bytes, peer: Peer = ATTACKER) -> list[Request | Response]:
        """Receive one message now; what the endpoint sent back at once."""
        start = len(self.wire)
        self.ep.receive(data, peer, self.now)
        return [parse(d) for _, d in self.wire[start:]]

    def advance(self, seconds: float, step: float = 0.05) -> list[Request | Response]:
        """Let `seconds` pass, firing timers every `step`; what was sent meanwhile."""
        start = len(self.wire)
        end = self.now + seconds
        while self.now < end - 1e-9:
            self.now = min(end, self.now + step)
            self.ep.handle_timers(self.now)
        return [parse(d) for _, d in self.wire[start:]]

    def of(self, event_id: str) -> list[dict[str, Any]]:
        return [e.fields for e in self.events if e.id == event_id]

    def events_of(self, event_id: str) -> list[Event]:
        return [e for e in self.events if e.id == event_id]


# Every event the endpoint emits, in every test here, goes through this check.
def check_event(event: Event) -> None:
    spec = CATALOGUE.get(event.id)
    assert spec is not None, event.id
    extra = set(event.fields) - set(spec.fields)
    assert not extra, (event.id, extra)


CHECK: Callable[[Event], None] | None = check_event


# -- helpers for whole flows ---------------------------------------------------------------


def register(
    box: Box,
    user: str,
    password: str | None,
    *,
    expires: int | None = 300,
    contact: str | None = None,
    peer: Peer = ATTACKER,
    call_id: str = "reg-1@198.51.100.7",
    first_cseq: int = 1,
) -> list[Request | Response]:
    """REGISTER, and if challenged (and a password is given), REGISTER again with it."""
    contact = contact or f"<sip:{user}@198.51.100.7:5070>"
    headers = [("Expires", str(expires))] if expires is not None else []
    first = box.deliver(
        request(
            "REGISTER",
            user,
            uri=f"sip:{HONEYPOT_IP}",
            cseq=first_cseq,
            call_id=call_id,
            from_user=user,
            contact=contact,
            headers=headers,
        ),
        peer,
    )
    last = first[-1]
    if not isinstance(last, Response) or last.status != 401 or password is None:
        return first
    auth = authorization(last, user, password, "REGISTER", f"sip:{HONEYPOT_IP}")
    return first + box.deliver(
        request(
            "REGISTER",
            user,
            uri=f"sip:{HONEYPOT_IP}",
            cseq=first_cseq + 1,
            call_id=call_id,
            from_user=user,
            contact=contact,
            headers=[*headers, auth],
        ),
        peer,
    )


class Call:
    """One call from the attacker's side: INVITE (answering a challenge), ACK, BYE."""

    def __init__(
        self,
        box: Box,
        to_user: str,
        *,
        password: str | None = None,
        peer: Peer = ATTACKER,
        call_id: str = "call-1@198.51.100.7",
        body: bytes = SDP_OFFER,
        transport: str = "UDP",
    ) -> None:
        self.box, self.to_user, self.password, self.peer = box, to_user, password, peer
        self.call_id, self.body, self.transport = call_id, body, transport
        self.cseq = 0
        self.branch = ""
        self.to_tag: str | None = None
        self.auth: list[tuple[str, str]] = []
        self.invite_data = b""

    def invite(self) -> list[Request | Response]:
        """Send the INVITE (again with credentials after a 401/407, ACKing the challenge)."""
        out = self._send_invite()
        final = [m for m in out if isinstance(m, Response) and m.status in (401, 407)]
        if final and self.password is not None:
            self.ack(final[-1])
            self.auth = [authorization(final[-1], self.to_user, self.password, "INVITE", self.uri)]
            out += self._send_invite()
        return out

    @property
    def uri(self) -> str:
        return f"sip:{self.to_user}@{HONEYPOT_IP}"

    def _send_invite(self) -> list[Request | Response]:
        self.cseq += 1
        self.branch = f"z9hG4bK-inv-{next(_branches)}"
        self.invite_data = request(
            "INVITE",
            self.to_user,
            cseq=self.cseq,
            call_id=self.call_id,
            branch=self.branch,
            headers=self.auth,
            body=self.body,
            transport=self.transport,
        )
        return self.box.deliver(self.invite_data, self.peer)

    def ack(self, final: Response) -> list[Request | Response]:
        """ACK a final response: same branch for a non-2xx, a new one for a 2xx."""
        self.to_tag = final.to_addr.tag if final.to_addr else None
        branch = None if final.status == 200 else self.branch
        return self.box.deliver(
            request(
                "ACK",
                self.to_user,
                cseq=self.cseq,
                call_id=self.call_id,
                branch=branch,
                to_tag=self.to_tag,
                transport=self.transport,
            ),
            self.peer,
        )

    def bye(self) -> list[Request | Response]:
        self.cseq += 1
        return self.box.deliver(
            request(
                "BYE",
                self.to_user,
                cseq=self.cseq,
                call_id=self.call_id,
                to_tag=self.to_tag,
                transport=self.transport,
            ),
            self.peer,
        )

    def cancel(self) -> list[Request | Response]:
        return self.box.deliver(
            request(
                "CANCEL",
                self.to_user,
                cseq=self.cseq,
                call_id=self.call_id,
                branch=self.branch,
                transport=self.transport,
            ),
            self.peer,
        )


def only(messages: list[Request | Response], status: int) -> Response:
    found = [m for m in messages if isinstance(m, Response) and m.status == status]
    assert len(found) == 1, (status, status_of(messages))
    return found[0]


# -- REGISTER -------------------------------------------------------------------------------


def test_register_challenge_then_success_with_bindings() -> None:
    box = Box()
    out = register(box, "100", "1234", expires=300)
    assert status_of(out) == [401, 200]
    challenge = out[0]
    assert isinstance(challenge, Response)
    assert challenge.header(
        "www-authenticate",
    ).startswith("Digest ")  # type: ignore[union-attr]
    ok = out[1]
    assert isinstance(ok, Response)
    contacts = ok.contacts
    assert [str(c.uri) for c in contacts] == ["sip:100@198.51.100.7:5070"]
    assert contacts[0].param("expires") == "300"
    assert ok.cseq is not None and ok.cseq.seq == 2
    (success,) = box.of("sip.register.success")
    assert success["username"] == "100"
    assert success["contact"] == "sip:100@198.51.100.7:5070"
    assert success["expires"] == 300
    assert success["call_id"] == "reg-1@198.51.100.7"
    (attempt,) = box.of("sip.auth.attempt")
    assert attempt["result"] == "success" and attempt["password"] == "1234"
    assert attempt["password_source"] == "configured"
    assert len(box.ep.registrar) == 1


def test_register_expires_capped_at_personality_maximum() -> None:
    box = Box()
    out = register(box, "100", "1234", expires=999_999)
    ok = only(out, 200)
    assert ok.contacts[0].param("expires") == str(box.ep.p.max_expires)


def test_register_contact_expires_param_wins_over_header() -> None:
    box = Box()
    out = register(
        box, "100", "1234", expires=300, contact="<sip:100@198.51.100.7:5070>;expires=120"
    )
    assert only(out, 200).contacts[0].param("expires") == "120"


def test_register_wrong_password_is_forbidden_and_recorded() -> None:
    box = Box()
    out = register(box, "100", "wrong")
    assert status_of(out) == [401, 403]
    (attempt,) = box.of("sip.auth.attempt")
    assert attempt["result"] == "failure"
    assert attempt["username"] == "100"
    assert attempt["password"] is None  # not revealed by the client
    assert box.of("sip.register.success") == []
    assert len(box.ep.registrar) == 0


def test_register_password_of_another_extension_is_forbidden() -> None:
    box = Box()
    first = box.deliver(request("REGISTER", "100", uri=f"sip:{HONEYPOT_IP}", from_user="100"))
    challenge = first[-1]
    assert isinstance(challenge, Response) and challenge.status == 401
    # Authenticates as 200 (right password for 200) while registering 100.
    auth = authorization(challenge, "200", "secret", "REGISTER", f"sip:{HONEYPOT_IP}")
    out = box.deliver(
        request(
            "REGISTER", "100", uri=f"sip:{HONEYPOT_IP}", cseq=2, from_user="100", headers=[auth]
        )
    )
    assert status_of(out) == [403]
    assert len(box.ep.registrar) == 0


@pytest.mark.parametrize(
    ("personality", "status"),
    [("asterisk", 404), ("freepbx", 401), ("cisco", 404), ("yealink", 404), ("polycom", 404)],
)
def test_register_unknown_user_per_personality(personality: str, status: int) -> None:
    box = Box(personality)
    out = box.deliver(request("REGISTER", "999", uri=f"sip:{HONEYPOT_IP}", from_user="999"))
    assert status_of(out) == [status]
    if status == 401:  # PJSIP style: challenged like a real user, then refused
        auth = authorization(out[0], "999", "guess", "REGISTER", f"sip:{HONEYPOT_IP}")  # type: ignore[arg-type]
        again = box.deliver(
            request(
                "REGISTER", "999", uri=f"sip:{HONEYPOT_IP}", cseq=2, from_user="999", headers=[auth]
            )
        )
        refused = only(again, 401)
        # RFC 3261 22.1: a 401 always carries a challenge.
        assert parse_challenge(refused.header("www-authenticate") or "") is not None
        assert box.of("sip.auth.attempt")[0]["result"] == "unknown_user"
    assert box.of("sip.register.success") == []


@pytest.mark.parametrize("personality", PERSONALITIES)
def test_unknown_user_with_garbage_credentials_is_never_registered(personality: str) -> None:
    box = Box(personality)
    forged = (
        'Digest username="999", realm="asterisk", nonce="forged", '
        'uri="sip:192.0.2.1", response="0123456789abcdef0123456789abcdef"'
    )
    out = box.deliver(
        request(
            "REGISTER",
            "999",
            uri=f"sip:{HONEYPOT_IP}",
            from_user="999",
            headers=[("Authorization", forged)],
        )
    )
    assert 200 not in status_of(out)
    assert box.of("sip.register.success") == []
    assert len(box.ep.registrar) == 0
    assert box.of("sip.auth.attempt")[0]["result"] == "forged_nonce"


def test_register_without_password_is_accepted_at_once() -> None:
    box = Box()
    out = register(box, "500", None)
    assert status_of(out) == [200]
    assert box.of("sip.register.success")[0]["username"] == "500"


def test_stale_nonce_gets_a_new_challenge_with_stale_true() -> None:
    box = Box()
    first = box.deliver(request("REGISTER", "100", uri=f"sip:{HONEYPOT_IP}", from_user="100"))
    challenge = first[-1]
    assert isinstance(challenge, Response)
    auth = authorization(challenge, "100", "1234", "REGISTER", f"sip:{HONEYPOT_IP}")
    box.now += 301  # older than the 5 minutes a nonce lives
    out = box.deliver(
        request(
            "REGISTER", "100", uri=f"sip:{HONEYPOT_IP}", cseq=2, from_user="100", headers=[auth]
        )
    )
    again = only(out, 401)
    value = again.header("www-authenticate") or ""
    assert re.search(r"stale=true", value, re.IGNORECASE), value
    fresh = parse_challenge(value)
    old = parse_challenge(challenge.header("www-authenticate") or "")
    assert fresh is not None and old is not None and fresh.nonce != old.nonce
    assert box.of("sip.auth.attempt")[0]["result"] == "stale"
    # The fresh nonce works.
    auth = authorization(again, "100", "1234", "REGISTER", f"sip:{HONEYPOT_IP}")
    out = box.deliver(
        request(
            "REGISTER", "100", uri=f"sip:{HONEYPOT_IP}", cseq=3, from_user="100", headers=[auth]
        )
    )
    assert status_of(out) == [200]


def test_forged_nonce_is_challenged_not_accepted() -> None:
    box = Box()
    first = box.deliver(request("REGISTER", "100", uri=f"sip:{HONEYPOT_IP}", from_user="100"))
    challenge = first[-1]
    assert isinstance(challenge, Response)
    real = parse_challenge(challenge.header("www-authenticate") or "")
    assert real is not None
    forged = real.__class__(realm=real.realm, nonce="0123456789abcdef", algorithm="MD5", qop=())
    creds = answer_challenge(forged, "100", "1234", "REGISTER", f"sip:{HONEYPOT_IP}")
    out = box.deliver(
        request(
            "REGISTER",
            "100",
            uri=f"sip:{HONEYPOT_IP}",
            cseq=2,
            from_user="100",
            headers=[("Authorization", creds.header_value())],
        )
    )
    again = only(out, 401)
    assert "stale" not in (again.header("www-authenticate") or "").lower()
    assert box.of("sip.auth.attempt")[0]["result"] == "forged_nonce"
    assert box.of("sip.register.success") == []


def test_nonce_from_another_address_is_forged() -> None:
    box = Box()
    first = box.deliver(request("REGISTER", "100", uri=f"sip:{HONEYPOT_IP}", from_user="100"))
    auth = authorization(first[-1], "100", "1234", "REGISTER", f"sip:{HONEYPOT_IP}")  # type: ignore[arg-type]
    out = box.deliver(
        request(
            "REGISTER", "100", uri=f"sip:{HONEYPOT_IP}", cseq=2, from_user="100", headers=[auth]
        ),
        OTHER,
    )
    assert status_of(out) == [401]
    assert box.of("sip.auth.attempt")[0]["result"] == "forged_nonce"


def test_expires_zero_removes_one_binding() -> None:
    box = Box()
    register(box, "100", "1234", contact="<sip:100@198.51.100.7:5070>")
    register(box, "100", "1234", contact="<sip:100@198.51.100.7:5071>", first_cseq=3)
    assert len(box.ep.registrar) == 2
    out = register(
        box, "100", "1234", expires=0, contact="<sip:100@198.51.100.7:5070>", first_cseq=5
    )
    ok = only(out, 200)
    assert [str(c.uri) for c in ok.contacts] == ["sip:100@198.51.100.7:5071"]
    (removed,) = box.of("sip.register.removed")
    assert removed == {
        "username": "100",
        "contact": "sip:100@198.51.100.7:5070",
        "reason": "unregistered",
    }
    assert len(box.ep.registrar) == 1


def test_wildcard_contact_removes_every_binding() -> None:
    box = Box()
    register(box, "100", "1234", contact="<sip:100@198.51.100.7:5070>")
    register(box, "100", "1234", contact="<sip:100@198.51.100.7:5071>", first_cseq=3)
    out = register(box, "100", "1234", expires=0, contact="*", first_cseq=5)
    ok = only(out, 200)
    assert ok.contacts == []
    removed = box.of("sip.register.removed")
    assert sorted(r["contact"] for r in removed) == [
        "sip:100@198.51.100.7:5070",
        "sip:100@198.51.100.7:5071",
    ]
    assert len(box.ep.registrar) == 0


def test_expires_below_minimum_gets_423_with_min_expires() -> None:
    box = Box()
    out = register(box, "100", "1234", expires=10)
    too_brief = only(out, 423)
    assert too_brief.header("min-expires") == str(box.ep.p.min_expires)
    assert len(box.ep.registrar) == 0


def test_registration_expires_through_timers() -> None:
    box = Box()
    register(box, "100", "1234", expires=120)
    box.advance(119, step=1.0)
    assert box.of("sip.register.removed") == []
    box.advance(2, step=1.0)
    (removed,) = box.of("sip.register.removed")
    assert removed["reason"] == "expired" and removed["username"] == "100"
    assert len(box.ep.registrar) == 0


# -- INVITE and calls -------------------------------------------------------------------------


def test_invite_challenged_then_answered_with_sdp_then_bye() -> None:
    box = Box("asterisk")
    call = Call(box, "100", password="1234")
    out = call.invite()
    assert status_of(out) == [100, 401, 100]
    challenge = out[1]
    assert isinstance(challenge, Response)
    assert challenge.to_addr is not None and challenge.to_addr.tag
    ringing = box.advance(0.5)
    assert status_of(ringing) == [180]
    assert box.of("sip.call.answered") == []
    answered = box.advance(2.0)
    ok = only(answered, 200)
    assert ok.cseq is not None and ok.cseq.seq == 2 and ok.cseq.method == "INVITE"
    assert ok.to_addr is not None and ok.to_addr.tag == challenge.to_addr.tag
    assert ok.content_type is not None and ok.content_type.mime == "application/sdp"
    assert ok.contacts and str(ok.contacts[0].uri).startswith(f"sip:100@{HONEYPOT_IP}")
    sdp = parse_sdp(ok.body)
    (audio,) = sdp.media_of("audio")
    assert audio.port > 0
    assert sdp.origin is not None and sdp.origin.address == HONEYPOT_IP
    assert {m.encoding.upper() for m in audio.rtpmaps.values()} <= {
        "PCMU",
        "PCMA",
        "TELEPHONE-EVENT",
    }
    assert audio.payload_types and set(audio.payload_types) <= {0, 8, 101}
    assert not box.ep.guard.is_verified(ATTACKER.src_ip) or box.of("sip.auth.attempt")
    call.ack(ok)
    assert box.ep.guard.is_verified(ATTACKER.src_ip)
    bye = call.bye()
    done = only(bye, 200)
    assert done.cseq is not None and done.cseq.method == "BYE"
    (started,) = box.of("sip.call.started")
    assert started["call_id"] == call.call_id
    assert started["called_number"] == "100" and started["extension"] == "100"
    assert started["behaviour"] == "answer"
    assert started["from_user"] == "attacker" and started["to_user"] == "100"
    assert started["sdp_media"] == ["audio 49170 RTP/AVP 0 8 101"]
    (answered_event,) = box.of("sip.call.answered")
    assert answered_event == {"call_id": call.call_id, "called_number": "100", "extension": "100"}
    (ended,) = box.of("sip.call.ended")
    assert ended["reason"] == "bye" and ended["answered"] is True and ended["status"] == 200
    assert ended["duration"] == pytest.approx(box.now - (T0 + 2.0), abs=0.1)
    # A BYE again: the dialog is gone.
    assert status_of(call.bye()) == [481]


def test_invite_with_wrong_password_is_forbidden() -> None:
    box = Box("asterisk")
    out = Call(box, "100", password="nope").invite()
    assert status_of(out) == [100, 401, 100, 403]
    (ended,) = box.of("sip.call.ended")
    assert ended["reason"] == "auth_failed" and ended["status"] == 403


def test_invite_challenge_per_personality() -> None:
    for personality in PERSONALITIES:
        box = Box(personality)
        out = Call(box, "400").invite()
        challenged = {401, 407} & set(status_of(out))
        assert bool(challenged) == (personality in ("asterisk", "freepbx")), personality


@pytest.mark.parametrize("personality", PHONES)
def test_phone_answers_and_hangs_up_after_call_duration(personality: str) -> None:
    box = Box(personality)
    call = Call(box, "400")
    assert status_of(call.invite()) == [100]
    out = box.advance(1.5)
    ringing = box.ep.p.ringing_status
    assert status_of(out)[:2] == [ringing, 200]
    ok = only(out, 200)
    call.ack(ok)
    before = len(box.wire)
    out = box.advance(10.5, step=0.5)
    requests = [m for m in out if isinstance(m, Request)]
    assert [r.method for r in requests] == ["BYE"]
    bye = requests[0]
    # Request-URI is the caller's Contact; From/To are the dialog's with tags swapped.
    assert bye.request_uri == "sip:attacker@198.51.100.7:5070"
    assert bye.from_addr is not None and bye.from_addr.tag == ok.to_addr.tag  # type: ignore[union-attr]
    assert bye.to_addr is not None and bye.to_addr.tag == "caller-tag-1"
    assert bye.from_addr.user == "400" and bye.to_addr.user == "attacker"
    assert bye.call_id == call.call_id
    assert bye.cseq is not None and bye.cseq.method == "BYE" and bye.cseq.seq >= 1
    assert (
        bye.top_via is not None and bye.top_via.branch and bye.top_via.branch.startswith("z9hG4bK")
    )
    assert bye.user_agent == box.ep.p.user_agent
    assert box.wire[before][0] == ATTACKER
    (sent,) = box.of("sip.request.sent")
    assert sent["method"] == "BYE" and sent["request_uri"] == bye.request_uri
    (ended,) = box.of("sip.call.ended")
    assert ended["reason"] == "hangup" and ended["answered"] is True
    assert ended["duration"] == pytest.approx(10.0, abs=0.6)
    # The caller's 200 to our BYE is recorded as a response.
    box.deliver(
        b"SIP/2.0 200 OK\r\n"
        + f"Via: {bye.header('via')}\r\nFrom: {bye.header('from')}\r\n".encode()
        + f"To: {bye.header('to')}\r\nCall-ID: {bye.call_id}\r\n".encode()
        + f"CSeq: {bye.cseq.seq} BYE\r\nContent-Length: 0\r\n\r\n".encode()
    )
    (got,) = box.of("sip.response.received")
    assert got["status"] == 200 and got["method"] == "BYE"


def test_busy_extension_gets_486() -> None:
    box = Box("yealink")
    out = Call(box, "300").invite()
    assert status_of(out) == [100, 486]
    assert out[1].reason == "Busy Here"  # type: ignore[union-attr]
    (ended,) = box.of("sip.call.ended")
    assert ended["reason"] == "busy" and ended["status"] == 486 and ended["answered"] is False


def test_redirect_extension_gets_302_with_contact() -> None:
    box = Box("polycom")
    out = Call(box, "301").invite()
    moved = only(out, 302)
    assert [str(c.uri) for c in moved.contacts] == ["sip:999@203.0.113.9"]
    assert box.of("sip.call.ended")[0]["reason"] == "redirected"


def test_ringing_extension_gives_480_at_ring_timeout() -> None:
    box = Box("yealink")
    call = Call(box, "401")
    call.invite()
    out = box.advance(4.9)
    assert status_of(out) == [180]
    out = box.advance(0.2)
    final = only(out, 480)
    assert final.to_addr is not None and final.to_addr.tag
    (ended,) = box.of("sip.call.ended")
    assert ended["reason"] == "no_answer" and ended["status"] == 480


def test_hangup_extension_declines_with_603() -> None:
    box = Box("cisco")
    Call(box, "302").invite()
    out = box.advance(1.2)
    assert status_of(out) == [183, 603]
    assert box.of("sip.call.ended")[0]["reason"] == "declined"


def test_unknown_number_at_a_phone_is_404_and_at_a_pbx_rings_as_outside_line() -> None:
    phone = Box("yealink")
    assert status_of(Call(phone, "0044123456789").invite()) == [100, 404]
    assert phone.of("sip.call.started")[0]["called_number"] == "0044123456789"
    pbx = Box("asterisk")
    call = Call(pbx, "0044123456789")
    call.to_user = "0044123456789"
    out = call.invite()
    challenge = only(out, 401)
    call.ack(challenge)
    call.auth = [authorization(challenge, "100", "1234", "INVITE", call.uri)]
    out = call._send_invite()
    assert status_of(out) == [100]
    assert status_of(pbx.advance(1.0)) == [180]
    started = pbx.of("sip.call.started")
    assert started[0]["called_number"] == "0044123456789"
    assert started[0]["behaviour"] == "external"


def test_cancel_while_ringing_gets_200_and_487() -> None:
    box = Box("yealink")
    call = Call(box, "401")
    call.invite()
    box.advance(0.5)
    out = call.cancel()
    assert status_of(out) == [200, 487]
    ok, terminated = out
    assert isinstance(ok, Response) and isinstance(terminated, Response)
    assert ok.cseq is not None and ok.cseq.method == "CANCEL"
    assert terminated.cseq is not None and terminated.cseq.method == "INVITE"
    (ended,) = box.of("sip.call.ended")
    assert ended["reason"] == "cancelled" and ended["status"] == 487
    call.ack(terminated)
    assert status_of(box.advance(40, step=0.5)) == []  # the ACK stopped the 487


def test_stray_cancel_gets_481() -> None:
    box = Box("yealink")
    out = box.deliver(request("CANCEL", "401", call_id="no-such-call"))
    assert status_of(out) == [481]


def test_cancel_after_the_call_was_answered_gets_481() -> None:
    box = Box("yealink")
    call = Call(box, "400")
    call.invite()
    call.ack(only(box.advance(1.5), 200))
    assert status_of(call.cancel()) == [481]
    assert box.of("sip.call.ended") == []


def test_bye_outside_a_dialog_gets_481() -> None:
    box = Box("asterisk")
    out = box.deliver(request("BYE", "100", to_tag="as12345678", call_id="nothing-here"))
    assert status_of(out) == [481]


def test_bye_with_wrong_tag_gets_481_and_the_call_goes_on() -> None:
    box = Box("yealink")
    call = Call(box, "400")
    call.invite()
    call.ack(only(box.advance(1.5), 200))
    call.to_tag = "not-our-tag"
    assert status_of(call.bye()) == [481]
    assert box.of("sip.call.ended") == []


def test_retransmitted_invite_gets_the_last_response_again() -> None:
    box = Box("yealink")
    call = Call(box, "401")
    call.invite()
    first = box.deliver(call.invite_data)
    assert status_of(first) == [100]
    box.advance(0.5)
    again = box.deliver(call.invite_data)
    assert status_of(again) == [180]
    assert box.wire[-1][1] == box.wire[-2][1]  # byte for byte the 180 sent before
    received = box.of("sip.request.received")
    assert [r["retransmission"] for r in received] == [False, True, True]
    assert len(box.of("sip.call.started")) == 1
    resent = [r for r in box.of("sip.response.sent") if r["retransmission"]]
    assert [r["status"] for r in resent] == [100, 180]


def _verify(box: Box, peer: Peer = ATTACKER) -> None:
    """Make `peer` a source that has shown it receives our replies (a call ACKed)."""
    call = Call(box, "300", peer=peer, call_id="verify@198.51.100.7")
    out = call.invite()
    call.ack(out[-1])  # type: ignore[arg-type]
    assert box.ep.guard.is_verified(peer.src_ip)
    box.advance(40, step=1.0)  # let that transaction end


def test_final_response_retransmitted_over_udp_until_ack() -> None:
    box = Box("yealink")
    _verify(box)
    call = Call(box, "300", call_id="busy-2@198.51.100.7")
    out = call.invite()
    busy = only(out, 486)
    resent = box.advance(4.0)
    # Timer G: 0.5, 1.0, 2.0 s after the first send.
    assert status_of(resent) == [486, 486, 486]
    assert all(m.raw == busy.raw for m in resent)
    call.ack(busy)
    assert status_of(box.advance(30, step=0.5)) == []


def test_final_response_not_retransmitted_over_tcp() -> None:
    box = Box("yealink")
    call = Call(box, "300", peer=TCP_ATTACKER, transport="TCP")
    out = call.invite()
    assert status_of(out) == [100, 486]
    assert status_of(box.advance(40, step=0.5)) == []
    assert box.ep.guard.is_verified(TCP_ATTACKER.src_ip)


def test_2xx_retransmitted_until_ack() -> None:
    box = Box("yealink")
    _verify(box)
    call = Call(box, "400", call_id="answer-2@198.51.100.7")
    call.invite()
    out = box.advance(1.5)
    ok = only(out, 200)
    resent = box.advance(3.6)
    assert status_of(resent) == [200, 200, 200]
    call.ack(ok)
    after = box.advance(5.0)
    assert 200 not in status_of(after)


def test_unacknowledged_2xx_ends_the_call_with_no_ack() -> None:
    box = Box("yealink", extensions=[{"users": "400", "behaviour": "answer", "call_duration": 120}])
    call = Call(box, "400")
    call.invite()
    box.advance(1.0)
    box.advance(31.0, step=0.5)
    assert box.of("sip.call.ended") == []
    box.advance(2.0, step=0.5)  # Timer L: 64*T1 after the 200
    (ended,) = box.of("sip.call.ended")
    assert ended["reason"] == "no_ack" and ended["answered"] is True


def test_reinvite_in_dialog_gets_the_same_sdp() -> None:
    box = Box("yealink")
    call = Call(box, "400")
    call.invite()
    ok = only(box.advance(1.5), 200)
    call.ack(ok)
    call.cseq += 1
    out = box.deliver(
        request(
            "INVITE",
            "400",
            cseq=call.cseq,
            call_id=call.call_id,
            to_tag=call.to_tag,
            body=SDP_OFFER,
        )
    )
    again = only(out, 200)
    assert again.body == ok.body
    assert len(box.of("sip.call.started")) == 1


# -- OPTIONS, MESSAGE and the rest ---------------------------------------------------------

SERVERS = {
    "asterisk": "Asterisk PBX 16.28.0",
    "freepbx": "FPBX-16.0.40.7(18.20.2)",
    "cisco": "Cisco-SIPGateway/IOS-15.5.3.M9",
    "yealink": "Yealink SIP-T46S 66.86.0.15",
    "polycom": "PolycomVVX-VVX_411-UA/6.4.3.3034",
}


@pytest.mark.parametrize("personality", PERSONALITIES)
def test_options_headers_per_personality(personality: str) -> None:
    box = Box(personality)
    p = box.ep.p
    (ok,) = box.deliver(request("OPTIONS", "100"))
    assert isinstance(ok, Response) and ok.status == 200
    assert ok.server == SERVERS[personality]
    assert ok.allow == list(p.allow)
    assert "INVITE" in ok.allow and "OPTIONS" in ok.allow
    assert ok.supported == list(p.supported)
    assert ok.header_values("accept") == list(p.accept)
    assert "application/sdp" in ok.header_values("accept")
    assert [str(c.uri) for c in ok.contacts] == [f"sip:100@{HONEYPOT_IP}:5060"]
    assert ok.to_addr is not None and ok.to_addr.tag
    # Header order follows the personality's.
    names = [name.lower() for name, _ in ok.headers]
    order = [h.lower() for h in p.header_order]
    ranks = [order.index(n) for n in names if n in order]
    assert ranks == sorted(ranks), names


def test_options_over_tls_offers_a_sips_contact() -> None:
    box = Box("asterisk")
    tls = Peer("tls", "198.51.100.8", 40001, HONEYPOT_IP, 5061, connection=9)
    (ok,) = box.deliver(request("OPTIONS", "100", transport="TLS"), tls)
    assert str(ok.contacts[0].uri) == f"sips:100@{HONEYPOT_IP}:5061;transport=tls"  # type: ignore[union-attr]


def test_public_address_goes_into_contact_and_sdp() -> None:
    box = Box("yealink", sensor={"personality": "yealink", "public_address": "203.0.113.50"})
    (ok,) = box.deliver(request("OPTIONS", "400"))
    assert str(ok.contacts[0].uri) == "sip:400@203.0.113.50:5060"  # type: ignore[union-attr]
    Call(box, "400").invite()
    answer = only(box.advance(1.5), 200)
    sdp = parse_sdp(answer.body)
    assert sdp.connection is not None and sdp.connection.address == "203.0.113.50"


def test_message_to_an_extension_is_accepted_and_to_nobody_404() -> None:
    box = Box("asterisk")
    assert status_of(
        box.deliver(request("MESSAGE", "100", body=b"hi", headers=[("Content-Type", "text/plain")]))
    ) == [202]
    assert status_of(
        box.deliver(request("MESSAGE", "999", body=b"hi", headers=[("Content-Type", "text/plain")]))
    ) == [404]


@pytest.mark.parametrize("method", ["INFO", "UPDATE", "PRACK", "NOTIFY", "REFER"])
def test_in_dialog_methods_outside_a_dialog_get_481(method: str) -> None:
    box = Box("yealink")
    assert status_of(box.deliver(request(method, "400"))) == [481]


@pytest.mark.parametrize(("method", "status"), [("INFO", 200), ("REFER", 202), ("MESSAGE", 200)])
def test_in_dialog_methods_inside_a_call(method: str, status: int) -> None:
    box = Box("yealink")
    call = Call(box, "400")
    call.invite()
    call.ack(only(box.advance(1.5), 200))
    call.cseq += 1
    out = box.deliver(
        request(method, "400", cseq=call.cseq, call_id=call.call_id, to_tag=call.to_tag)
    )
    assert status_of(out) == [status]


def test_subscribe_is_challenged_at_a_pbx_then_489() -> None:
    box = Box("asterisk")
    out = box.deliver(request("SUBSCRIBE", "100", headers=[("Event", "presence")]))
    challenge = only(out, 401)
    auth = authorization(challenge, "100", "1234", "SUBSCRIBE", f"sip:100@{HONEYPOT_IP}")
    out = box.deliver(request("SUBSCRIBE", "100", cseq=2, headers=[("Event", "presence"), auth]))
    assert status_of(out) == [489]
    assert status_of(box.deliver(request("PUBLISH", "100"))) == [489]


@pytest.mark.parametrize("method", ["FOO", "invite", "PING"])
def test_unknown_method_gets_501_with_allow(method: str) -> None:
    box = Box("asterisk")
    (reply,) = box.deliver(request(method, "100"))
    assert isinstance(reply, Response) and reply.status == 501
    assert reply.allow == list(box.ep.p.allow)
    assert reply.cseq is not None and reply.cseq.method == method


def test_every_known_method_gets_a_method_specific_answer() -> None:
    """No known SIP method falls through to 501; ACK and CANCEL get no 405 either."""
    for method in (
        "REGISTER",
        "INVITE",
        "BYE",
        "OPTIONS",
        "MESSAGE",
        "INFO",
        "UPDATE",
        "PRACK",
        "NOTIFY",
        "REFER",
        "SUBSCRIBE",
        "PUBLISH",
        "CANCEL",
    ):
        box = Box("yealink")
        body = SDP_OFFER if method == "INVITE" else b""  # see the no-SDP reflection test
        statuses = status_of(box.deliver(request(method, "400", body=body)))
        assert statuses and not {405, 501} & set(statuses), (method, statuses)
    box = Box("yealink")
    assert box.deliver(request("ACK", "400")) == []


def test_max_forwards_zero_gets_483() -> None:
    box = Box()
    assert status_of(box.deliver(request("OPTIONS", "100", max_forwards=0))) == [483]
    assert status_of(box.deliver(request("INVITE", "100", max_forwards=0))) == [483]
    assert box.of("sip.call.started") == []


def test_unknown_sip_version_gets_505() -> None:
    box = Box()
    data = request("OPTIONS", "100").replace(b" SIP/2.0\r\n", b" SIP/7.0\r\n", 1)
    assert status_of(box.deliver(data)) == [505]


def test_unknown_uri_scheme_gets_416() -> None:
    box = Box()
    assert status_of(box.deliver(request("OPTIONS", uri="xmpp:100@192.0.2.1"))) == [416]


def test_unknown_require_gets_420_with_unsupported() -> None:
    box = Box()
    data = request(
        "INVITE", "100", body=SDP_OFFER, headers=[("Require", "timer, nonsenseextension, foo")]
    )
    out = box.deliver(data)
    bad = only(out, 420)
    assert bad.header_values("unsupported") == ["nonsenseextension", "foo"]
    # A supported option is fine.
    box2 = Box("yealink")
    out = box2.deliver(request("INVITE", "400", body=SDP_OFFER, headers=[("Require", "timer")]))
    assert status_of(out) == [100]


def test_unknown_body_type_gets_415_with_accept() -> None:
    box = Box()
    data = request(
        "INVITE", "100", body=b"<xml/>", headers=[("Content-Type", "application/unknownformat")]
    )
    bad = only(box.deliver(data), 415)
    assert bad.header_values("accept") == list(box.ep.p.accept)


def test_invite_without_content_type_or_with_broken_sdp_is_still_a_call() -> None:
    box = Box("yealink")
    data = request("INVITE", "400", body=SDP_OFFER).replace(
        b"Content-Type: application/sdp\r\n", b""
    )
    assert status_of(box.deliver(data)) == [100]
    box2 = Box("yealink")
    broken = request("INVITE", "400", body=b"v=0\r\nm=garbage\r\n", transport="TCP")
    assert status_of(box2.deliver(broken, TCP_ATTACKER)) == [100]
    assert only(box2.advance(1.5), 200).body  # an SDP offer of our own


@pytest.mark.parametrize("name", sorted(RFC4475_STATUS))
def test_rfc4475_requests_get_the_right_refusal(name: str) -> None:
    box = Box("asterisk")
    out = box.deliver(rfc4475(name))
    assert status_of(out) == [RFC4475_STATUS[name]]
    assert box.of("sip.call.started") == [] and box.of("sip.register.success") == []
    (received,) = box.events_of("sip.request.received")
    assert received.raw == rfc4475(name)


@pytest.mark.parametrize(
    "name",
    [
        "wsinv",
        "esc01",
        "escnull",
        "esc02",
        "lwsdisp",
        "longreq",
        "dblreq",
        "semiuri",
        "transports",
        "mpart01",
        "badbranch",
        "unksm2",
        "regaut01",
        "cparam01",
        "cparam02",
        "intmeth",
    ],
)
def test_rfc4475_valid_requests_are_not_refused_as_bad(name: str) -> None:
    box = Box("asterisk")
    out = box.deliver(rfc4475(name))
    assert out, name
    assert not {400, 505, 416} & set(status_of(out)), (name, status_of(out))


@pytest.mark.parametrize("name", ["bcast", "bigcode", "noreason", "unreason", "scalarlg"])
def test_responses_get_no_reply(name: str) -> None:
    box = Box()
    assert box.deliver(rfc4475(name)) == []
    assert box.events_of("sip.response.received") or box.events_of("sip.message.malformed")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\x01\x02garbage",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40),
    ],
)
def test_non_sip_input_gets_no_reply_and_is_stored(data: bytes) -> None:
    box = Box()
    assert box.deliver(data) == []
    (bad,) = box.events_of("sip.message.malformed")
    assert bad.raw == data and bad.fields["size"] == len(data) and bad.fields["error"]


def test_request_without_via_is_recorded_but_not_answered() -> None:
    box = Box()
    data = request("OPTIONS", "100")
    data = b"\r\n".join(line for line in data.split(b"\r\n") if not line.startswith(b"Via:"))
    assert box.deliver(data) == []
    assert box.of("sip.request.received")[0]["method"] == "OPTIONS"


def test_timer_retransmissions_are_recorded_like_every_message_sent() -> None:
    box = Box("yealink")
    _verify(box)
    start = len(box.events)
    call = Call(box, "300", call_id="busy-3@198.51.100.7")
    busy = only(call.invite(), 486)
    box.advance(1.6)
    sent = [e for e in box.events[start:] if e.id == "sip.response.sent"]
    assert [(e.fields["status"], e.fields["retransmission"]) for e in sent] == [
        (100, False),
        (486, False),
        (486, True),
        (486, True),
    ]
    assert all(e.raw == busy.raw for e in sent[1:])
    assert all(e.fields["reason"] == "Busy Here" for e in sent[1:])
    assert all(e.fields["call_id"] == call.call_id and e.fields["method"] == "INVITE" for e in sent)
    assert all(e.direction == "out" for e in sent)
    # A retransmitted request's answer carries the real reason phrase, too.
    box.deliver(call.invite_data)
    last = box.events_of("sip.response.sent")[-1]
    assert last.fields["retransmission"] is True and last.fields["reason"] == "Busy Here"


# -- flood guard and reflection guard ---------------------------------------------------------


def test_rate_limit_sheds_requests_above_the_bucket() -> None:
    box = Box("asterisk", flood={"per_source_rate": 10, "burst": 10})
    answered = 0
    for i in range(30):
        answered += len(box.deliver(request("OPTIONS", "100", call_id=f"o{i}")))
    assert answered == 10
    assert box.ep.guard.shed_rate == 20
    assert len(box.of("sip.request.received")) == 10  # shed ones are counted, not handled
    assert box.ep.requests == 10
    # Another source has its own bucket.
    assert status_of(box.deliver(request("OPTIONS", "100", call_id="other"), OTHER)) == [200]
    (shed,) = box.ep.guard.take_shed()
    assert (shed.ip, shed.rate, shed.reflection, shed.reason) == (ATTACKER.src_ip, 20, 0, "rate")
    assert shed.bytes == sum(len(request("OPTIONS", "100", call_id=f"o{i}")) for i in range(10, 30))
    assert box.ep.guard.take_shed() == []  # taken
    # The bucket refills at the rate.
    box.now += 0.5
    answered = sum(len(box.deliver(request("OPTIONS", "100", call_id=f"p{i}"))) for i in range(10))
    assert answered == 5


def test_rate_zero_means_no_limit() -> None:
    box = Box("asterisk", flood={"per_source_rate": 0})
    answered = sum(
        len(box.deliver(request("OPTIONS", "100", call_id=f"o{i}"))) for i in range(1000)
    )
    assert answered == 1000
    assert box.ep.guard.shed_rate == 0


def _bytes_to(box: Box, ip: str) -> int:
    return sum(len(data) for peer, data in box.wire if peer.src_ip == ip)


def test_unverified_udp_source_never_gets_more_than_amplification_times_its_bytes() -> None:
    box = Box("yealink", flood={"amplification": 3.0})
    received = 0
    for i in range(20):
        # Small INVITEs without SDP: 100 + 180 + 200 with an SDP offer would be ~5x.
        data = request("INVITE", "400", call_id=f"spoof-{i}", body=b"")
        received += len(data)
        box.deliver(data)
        assert _bytes_to(box, ATTACKER.src_ip) <= 3.0 * received
        box.advance(0.7, step=0.1)
        assert _bytes_to(box, ATTACKER.src_ip) <= 3.0 * received
    box.advance(60, step=0.5)
    assert _bytes_to(box, ATTACKER.src_ip) <= 3.0 * received
    assert box.ep.guard.shed_reflect > 0
    assert not box.ep.guard.is_verified(ATTACKER.src_ip)


def test_first_call_from_an_unverified_source_completes_then_ack_verifies_it() -> None:
    box = Box("yealink", flood={"amplification": 3.0})
    call = Call(box, "400")
    assert status_of(call.invite()) == [100]
    out = box.advance(1.1)
    assert status_of(out) == [180, 200]
    assert not box.ep.guard.is_verified(ATTACKER.src_ip)
    call.ack(only(out, 200))
    assert box.ep.guard.is_verified(ATTACKER.src_ip)


@pytest.mark.parametrize("to_tag", [None, "guessed-tag"])
def test_an_ack_without_our_tag_does_not_verify_a_source(to_tag: str | None) -> None:
    """A spoofed source can send an ACK, but cannot know the tag of a reply it never saw."""
    box = Box("yealink")
    call = Call(box, "300")
    busy = only(call.invite(), 486)
    box.deliver(request("ACK", "300", call_id="made-up", to_tag=to_tag))
    assert not box.ep.guard.is_verified(ATTACKER.src_ip)
    # Nor the ACK of the spoofed INVITE's branch with a guessed tag.
    box.deliver(
        request(
            "ACK", "300", cseq=call.cseq, call_id=call.call_id, branch=call.branch, to_tag=to_tag
        )
    )
    assert not box.ep.guard.is_verified(ATTACKER.src_ip)
    call.ack(busy)  # with the tag of our 486: it saw the reply
    assert box.ep.guard.is_verified(ATTACKER.src_ip)


def test_answering_our_challenge_verifies_a_source_and_a_forged_nonce_does_not() -> None:
    box = Box("asterisk")
    box.deliver(
        request(
            "REGISTER",
            "100",
            uri=f"sip:{HONEYPOT_IP}",
            from_user="100",
            headers=[
                (
                    "Authorization",
                    'Digest username="100", realm="asterisk", nonce="x", '
                    'uri="sip:192.0.2.1", response="00"',
                )
            ],
        )
    )
    assert not box.ep.guard.is_verified(ATTACKER.src_ip)
    register(box, "100", "wrong", first_cseq=3)
    assert box.ep.guard.is_verified(ATTACKER.src_ip)


def test_tcp_source_is_verified_at_once() -> None:
    box = Box("yealink")
    box.deliver(request("OPTIONS", "400", transport="TCP"), TCP_ATTACKER)
    assert box.ep.guard.is_verified(TCP_ATTACKER.src_ip)
    assert box.ep.guard.retransmit_cap(TCP_ATTACKER.src_ip, True) is None


def test_retransmissions_to_an_unverified_source_are_capped() -> None:
    box = Box("yealink", flood={"amplification": 100.0})
    call = Call(box, "300")
    busy = only(call.invite(), 486)
    resent = box.advance(40, step=0.25)
    assert [m.raw for m in resent] == [busy.raw]  # one retransmission, not until Timer H


def test_amplification_counts_every_byte_received_from_the_source() -> None:
    box = Box("asterisk", flood={"amplification": 1.0})
    (ok,) = box.deliver(request("OPTIONS", "100", call_id="big", headers=[("X-Pad", "x" * 600)]))
    assert ok.status == 200  # type: ignore[union-attr]
    # Small requests ride on the budget the first one left until it runs out.
    answered = sum(len(box.deliver(request("OPTIONS", "100", call_id=f"s{i}"))) for i in range(10))
    assert 0 < answered < 10
    assert _bytes_to(box, ATTACKER.src_ip) <= sum(
        len(request("OPTIONS", "100", call_id=f"s{i}")) for i in range(10)
    ) + len(request("OPTIONS", "100", call_id="big", headers=[("X-Pad", "x" * 600)]))


def test_ack_of_a_refusal_with_our_tag_verifies_the_source() -> None:
    box = Box("yealink")
    branch = "z9hG4bK-refused-1"
    out = box.deliver(
        request("INVITE", "400", branch=branch, body=SDP_OFFER, headers=[("Require", "nonsense")])
    )
    refused = only(out, 420)
    assert refused.to_addr is not None and refused.to_addr.tag
    box.deliver(request("ACK", "400", branch=branch, to_tag="wrong"))
    assert not box.ep.guard.is_verified(ATTACKER.src_ip)
    box.deliver(request("ACK", "400", branch=branch, to_tag=refused.to_addr.tag))
    assert box.ep.guard.is_verified(ATTACKER.src_ip)


# -- bounded tables -------------------------------------------------------------------------

BOUNDS = {
    "max_sources": 40,
    "max_transactions": 64,
    "max_dialogs": 24,
    "max_registrations": 16,
}


def _sizes(box: Box) -> dict[str, int]:
    ep = box.ep
    return {
        "max_sources": len(ep.guard),
        "max_transactions": len(ep.txs),
        "max_dialogs": max(len(ep.dialogs), len(ep.calls.calls)),
        "max_registrations": len(ep.registrar),
    }


def test_flood_of_distinct_calls_and_sources_never_grows_tables_beyond_bounds() -> None:
    box = Box("yealink", flood={"per_source_rate": 0, "amplification": 0, **BOUNDS})
    peak = dict.fromkeys(BOUNDS, 0)
    for i in range(600):
        peer = Peer("udp", f"10.{i // 250}.{i % 250}.1", 5060 + i % 7, HONEYPOT_IP, 5060)
        to_user = ("400", "401", "500", "302")[i % 4]
        box.deliver(request("INVITE", to_user, call_id=f"flood-{i}", body=SDP_OFFER), peer)
        box.deliver(
            request(
                "REGISTER",
                "500",
                uri=f"sip:{HONEYPOT_IP}",
                call_id=f"r-{i}",
                contact=f"<sip:500@10.0.{i % 250}.{i // 250}:5060>",
            ),
            peer,
        )
        if i % 10 == 0:
            box.advance(0.3, step=0.1)
        for name, size in _sizes(box).items():
            peak[name] = max(peak[name], size)
    for name, bound in BOUNDS.items():
        assert 0 < peak[name] <= bound, (name, peak[name])
    # The call timers stay proportional to the call table, too.
    calls = box.ep.calls.stats()
    assert calls["calls"] <= BOUNDS["max_dialogs"]
    assert calls["queued"] <= 2 * calls["armed"] + 16 and calls["armed"] <= 3 * calls["calls"]
    assert box.ep.txs.evictions > 0 and box.ep.registrar.evictions > 0
    assert box.ep.guard.forgotten > 0
    ended = box.of("sip.call.ended")
    assert any(e["reason"] == "evicted" for e in ended)


def test_tables_drain_when_the_flood_stops() -> None:
    box = Box("yealink", flood={"per_source_rate": 0, **BOUNDS})
    for i in range(100):
        box.deliver(request("OPTIONS", "400", call_id=f"o-{i}"))
        box.deliver(request("INVITE", "300", call_id=f"b-{i}", body=SDP_OFFER))
    box.advance(70, step=1.0)
    assert len(box.ep.txs) == 0
    assert box.ep.txs.next_deadline() is None


def test_call_timers_of_evicted_calls_do_not_pile_up() -> None:
    box = Box(
        "yealink",
        flood={"per_source_rate": 0, "amplification": 0, "max_dialogs": 16},
        extensions=[{"users": "401", "behaviour": "ring", "ring_timeout": 60}],
    )
    for i in range(1000):  # 2000 timers scheduled, for at most 16 calls
        box.deliver(request("INVITE", "401", call_id=f"ring-{i}", body=SDP_OFFER))
    calls = box.ep.calls.stats()
    assert calls["calls"] <= 16 and calls["evicted"] == 1000 - calls["calls"]
    assert calls["armed"] <= 2 * 16  # ringing and ring timeout, of the calls kept only
    assert calls["queued"] <= 2 * calls["armed"] + 16


def test_a_challenge_repeated_later_restarts_the_wait_for_credentials() -> None:
    box = Box("asterisk")
    call = Call(box, "100")
    call.invite()  # challenged at T0
    box.advance(20, step=1.0)
    call.invite()  # challenged again at T0+20: waits 32 s from now
    box.advance(14, step=1.0)  # T0+34: past the first wait, not the second
    assert box.of("sip.call.ended") == []
    box.advance(20, step=1.0)
    (ended,) = box.of("sip.call.ended")
    assert ended["reason"] == "unauthenticated" and ended["status"] == 401


def test_a_call_id_reused_after_its_call_ended_keeps_its_own_timers() -> None:
    box = Box("yealink", extensions=[{"users": "401", "behaviour": "ring", "ring_timeout": 10}])
    first = Call(box, "401", call_id="same@198.51.100.7")
    first.invite()
    box.advance(1.0)
    first.cancel()  # ended at T0+1; its ring_timeout (T0+10) is moot
    box.advance(4.0)
    second = Call(box, "401", call_id="same@198.51.100.7")
    second.cseq = 5
    second.invite()  # at T0+5: rings until T0+15
    out = box.advance(6.0)  # T0+11
    assert 480 not in status_of(out)
    out = box.advance(5.0)  # T0+16
    assert 480 in status_of(out)


# -- identifiers ------------------------------------------------------------------------------

UUID4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
TAG_SHAPES = {
    "asterisk": r"as[0-9a-f]{8}",
    "freepbx": UUID4,
    "cisco": r"[0-9A-F]{8}-[0-9A-F]{3}",
    "yealink": r"[1-9][0-9]{9}",
    "polycom": r"[0-9A-F]{8}-[0-9A-F]{8}",
}
NONCE_SHAPES = {
    "asterisk": r"[0-9a-f]{16}",
    "freepbx": r"[0-9]{10}/[0-9a-f]{32}",
    "cisco": r"[0-9A-F]{32}",
    "yealink": r"[A-Za-z0-9+/]{27}=",
    "polycom": r"[0-9a-f]{16}",
}
BRANCH_SHAPES = {
    "asterisk": r"z9hG4bK[0-9a-f]{8}",
    "freepbx": rf"z9hG4bKPj{UUID4}",
    "cisco": r"z9hG4bK[0-9A-F]{10}",
    "yealink": r"z9hG4bK[1-9][0-9]{9}",
    "polycom": r"z9hG4bK[0-9a-f]{8}",
}


@pytest.mark.parametrize("personality", PERSONALITIES)
def test_tags_and_nonces_are_fresh_and_shaped_like_the_personality(personality: str) -> None:
    box = Box(personality, flood={"per_source_rate": 0, "amplification": 0})
    tags, nonces = [], []
    for i in range(200):
        box.now += 1.0  # nonces are stateless HMACs over the time: one per second
        (ok,) = box.deliver(request("OPTIONS", "100", call_id=f"o-{i}"))
        assert ok.to_addr is not None and ok.to_addr.tag is not None
        tags.append(ok.to_addr.tag)
        (challenge,) = box.deliver(
            request("REGISTER", "100", uri=f"sip:{HONEYPOT_IP}", from_user="100", call_id=f"r-{i}")
        )
        assert isinstance(challenge, Response) and challenge.status == 401
        parsed = parse_challenge(challenge.header("www-authenticate") or "")
        assert parsed is not None
        nonces.append(parsed.nonce)
        assert parsed.realm == box.ep.p.realm
    assert all(re.fullmatch(TAG_SHAPES[personality], t) for t in tags), tags[:3]
    assert all(re.fullmatch(NONCE_SHAPES[personality], n) for n in nonces), nonces[:3]
    assert len(set(tags)) == len(tags)
    assert len(set(nonces)) == len(nonces)


@pytest.mark.parametrize("personality", PHONES)
def test_our_bye_branch_and_sdp_ids_are_fresh_and_shaped(personality: str) -> None:
    box = Box(
        personality,
        flood={"per_source_rate": 0, "amplification": 0},
        extensions=[{"users": "400", "behaviour": "answer", "call_duration": 1}],
    )
    branches, sessions, local_tags = [], [], []
    for i in range(30):
        call = Call(box, "400", call_id=f"c-{i}")
        call.invite()
        ok = only(box.advance(0.2), 200)
        call.ack(ok)
        sdp = parse_sdp(ok.body)
        assert sdp.origin is not None
        sessions.append(sdp.origin.session_id)
        local_tags.append(ok.to_addr.tag)  # type: ignore[union-attr]
        (bye,) = [m for m in box.advance(1.0) if isinstance(m, Request)]
        assert bye.top_via is not None
        branches.append(bye.top_via.branch)
    assert all(re.fullmatch(BRANCH_SHAPES[personality], b or "") for b in branches), branches[:3]
    assert len(set(branches)) == len(branches)
    assert len(set(sessions)) == len(sessions)
    assert len(set(local_tags)) == len(local_tags)


@pytest.mark.parametrize(
    ("style", "shape"),
    [
        ("as-hex8", r"[0-9a-f]{32}@192\.0\.2\.1"),
        ("pjsip-uuid", UUID4),
        ("cisco", r"[0-9A-F]{8}-[0-9A-F]{8}-[0-9A-F]{8}-[0-9A-F]{8}@192\.0\.2\.1"),
        ("yealink", r"[0-9a-f]{32}@192\.0\.2\.1"),
        ("polycom", r"[0-9a-f]{32}@192\.0\.2\.1"),
    ],
)
def test_call_ids_are_fresh_and_shaped(style: str, shape: str) -> None:
    from siptrap.endpoint import identifiers

    ids = [identifiers.call_id(style, HONEYPOT_IP) for _ in range(500)]
    assert all(re.fullmatch(shape, i) for i in ids), ids[:3]
    assert len(set(ids)) == len(ids)


# -- events: ids and addresses ---------------------------------------------------------------


def test_peer_fields_come_from_the_socket_not_from_headers() -> None:
    box = Box("asterisk")
    liar = request(
        "INVITE",
        "100",
        body=SDP_OFFER,
        via="SIP/2.0/UDP 203.0.113.66:5099;branch=z9hG4bK-liar;received=203.0.113.67",
        contact="<sip:100@203.0.113.68:5077>",
    ).replace(b"From: <sip:attacker@192.0.2.1>", b"From: <sip:attacker@203.0.113.69>")
    out = box.deliver(liar)
    assert status_of(out) == [100, 401]
    for peer, _ in box.wire:
        assert peer == ATTACKER  # replies go to the socket address
    for event in box.events:
        assert event.peer == ATTACKER, event.id
        record = event.to_dict()
        assert (record["src_ip"], record["src_port"]) == (ATTACKER.src_ip, ATTACKER.src_port)
        assert (record["dst_ip"], record["dst_port"]) == (HONEYPOT_IP, 5060)
        assert record["transport"] == "udp"
    top = out[0].top_via
    assert top is not None and top.received == ATTACKER.src_ip  # the lie is overwritten


# The scenarios test_events_catalogue.py replays with its own check of every event.
def test_a_copy_the_domain_proxy_blocked_is_recorded_and_never_answered() -> None:
    """Issue 11: the shipped Kamailio configuration mirrors each request it refused to the
    honeypot, marked; from a configured proxy it is evidence only, from anyone else the
    marker is attacker data and means nothing."""
    box = Box(analysis={"proxies": ["192.0.2.50"]})
    proxy = Peer("udp", "192.0.2.50", 5060, HONEYPOT_IP, 5060)
    headers = [
        ("X-Siptrap-Source", "203.0.113.9:5099;transport=udp"),
        ("X-Siptrap-Blocked", "2"),
    ]
    assert box.deliver(request("INVITE", headers=headers), proxy) == []
    (got,) = box.of("sip.request.received")
    assert got["blocked_by_proxy"] == 2 and got["origin_ip"] == "203.0.113.9"
    assert (got["origin_port"], got["origin_transport"]) == (5099, "udp")
    assert status_of(box.deliver(request("OPTIONS", headers=headers))) == [200]
    assert "origin_ip" not in box.of("sip.request.received")[-1]


SCENARIOS: tuple[Callable[[], None], ...] = (
    test_a_copy_the_domain_proxy_blocked_is_recorded_and_never_answered,
    test_register_challenge_then_success_with_bindings,
    test_register_wrong_password_is_forbidden_and_recorded,
    test_stale_nonce_gets_a_new_challenge_with_stale_true,
    test_forged_nonce_is_challenged_not_accepted,
    test_expires_zero_removes_one_binding,
    test_wildcard_contact_removes_every_binding,
    test_registration_expires_through_timers,
    test_invite_challenged_then_answered_with_sdp_then_bye,
    test_invite_with_wrong_password_is_forbidden,
    test_busy_extension_gets_486,
    test_redirect_extension_gets_302_with_contact,
    test_ringing_extension_gives_480_at_ring_timeout,
    test_hangup_extension_declines_with_603,
    test_cancel_while_ringing_gets_200_and_487,
    test_stray_cancel_gets_481,
    test_retransmitted_invite_gets_the_last_response_again,
    test_timer_retransmissions_are_recorded_like_every_message_sent,
    test_unacknowledged_2xx_ends_the_call_with_no_ack,
    test_a_challenge_repeated_later_restarts_the_wait_for_credentials,
    test_unknown_number_at_a_phone_is_404_and_at_a_pbx_rings_as_outside_line,
    test_max_forwards_zero_gets_483,
    test_request_without_via_is_recorded_but_not_answered,
    test_flood_of_distinct_calls_and_sources_never_grows_tables_beyond_bounds,
    lambda: test_phone_answers_and_hangs_up_after_call_duration("yealink"),
    lambda: test_rfc4475_requests_get_the_right_refusal("badvers"),
    lambda: test_non_sip_input_gets_no_reply_and_is_stored(b"\x00garbage"),
    lambda: test_responses_get_no_reply("bcast"),
    lambda: test_subscribe_is_challenged_at_a_pbx_then_489(),
)


def test_a_new_invite_transaction_for_a_ringing_call_is_answered() -> None:
    """Same Call-ID, new branch, no To tag: never left without a response."""
    box = Box("yealink")
    call = Call(box, "401")
    call.invite()
    box.advance(0.5)
    # The same request again through another path (new branch): a merged request.
    merged = box.deliver(
        request("INVITE", "401", cseq=call.cseq, call_id=call.call_id, body=SDP_OFFER)
    )
    assert status_of(merged) == [482]
    # A later INVITE while the first is still pending.
    later = box.deliver(
        request("INVITE", "401", cseq=call.cseq + 1, call_id=call.call_id, body=SDP_OFFER)
    )
    busy = only(later, 500)
    assert (busy.header("retry-after") or "").isdigit()
    assert 0 <= int(busy.header("retry-after") or "-1") <= 10
    assert len(box.of("sip.call.started")) == 1
    assert box.of("sip.call.ended") == []  # the first call rings on
    assert 480 in status_of(box.advance(5.0))


def _svcrack_register(box: Box, guess: str, cseq: int) -> list[Request | Response]:
    """What svcrack sends: its guess hidden in the From tag, hex(user:password \\x01 digits)."""
    first = box.deliver(request("REGISTER", "100", uri=f"sip:{HONEYPOT_IP}", from_user="100"))
    tag = (f"100:{guess}".encode() + b"\x01" + b"2718281828").hex()
    auth = authorization(first[-1], "100", guess, "REGISTER", f"sip:{HONEYPOT_IP}")  # type: ignore[arg-type]
    return box.deliver(
        request("REGISTER", "100", uri=f"sip:{HONEYPOT_IP}", cseq=cseq, from_user="100",
                from_tag=tag, headers=[auth])
    )  # fmt: skip


def test_the_password_svcrack_hides_in_its_from_tag_is_recorded() -> None:
    box = Box("asterisk")
    assert status_of(_svcrack_register(box, "letmein", 2)) == [403]
    attempt = box.of("sip.auth.attempt")[-1]
    assert attempt["result"] == "failure"
    assert attempt["password"] == "letmein" and attempt["password_source"] == "sipvicious-tag"
    assert status_of(_svcrack_register(box, "1234", 3)) == [200]
    attempt = box.of("sip.auth.attempt")[-1]
    assert attempt["result"] == "success" and attempt["password"] == "1234"


def test_a_tag_that_lies_about_the_password_is_not_believed() -> None:
    box = Box("asterisk")
    first = box.deliver(request("REGISTER", "100", uri=f"sip:{HONEYPOT_IP}", from_user="100"))
    tag = (b"100:notit" + b"\x01" + b"12345").hex()
    auth = authorization(first[-1], "100", "other", "REGISTER", f"sip:{HONEYPOT_IP}")  # type: ignore[arg-type]
    box.deliver(
        request("REGISTER", "100", uri=f"sip:{HONEYPOT_IP}", cseq=2, from_user="100",
                from_tag=tag, headers=[auth])
    )  # fmt: skip
    attempt = box.of("sip.auth.attempt")[-1]
    assert attempt["password"] is None and attempt["password_source"] is None


def test_basic_or_broken_credentials_are_recorded_and_challenged() -> None:
    box = Box("asterisk")
    for cseq, value, result in (
        (1, "Basic MTAwOjEyMzQ=", "not_digest"),
        (2, 'Digest username="100", realm="asterisk"', "malformed"),
    ):
        out = box.deliver(
            request("REGISTER", "100", uri=f"sip:{HONEYPOT_IP}", cseq=cseq, from_user="100",
                    headers=[("Authorization", value)])
        )  # fmt: skip
        assert 200 not in status_of(out)
        assert box.of("sip.auth.attempt")[-1]["result"] == result
    assert box.of("sip.register.success") == []


def test_first_call_without_sdp_from_an_unverified_source_still_gets_its_200() -> None:
    """An INVITE with no SDP is small: provisional replies to it keep room in the source's
    byte budget for the 200 OK (which carries our offer), so the call still completes."""
    box = Box("yealink", flood={"amplification": 3.0})
    call = Call(box, "400", body=b"")
    out = call.invite() + box.advance(1.5)
    assert 200 in status_of(out)
    state = box.ep.guard.source(ATTACKER.src_ip)
    assert state is not None
    assert state.bytes_out <= 3.0 * state.bytes_in


@pytest.mark.parametrize(("personality", "method"), [("asterisk", "UPDATE"), ("cisco", "PUBLISH")])
def test_a_method_the_personality_does_not_list_gets_405_with_allow(
    personality: str, method: str
) -> None:
    box = Box(personality)
    assert method not in box.ep.p.allow
    (reply,) = box.deliver(request(method, "100"))
    assert isinstance(reply, Response) and reply.status == 405
    assert reply.allow == list(box.ep.p.allow)
