"""Detection accuracy (issue 15), case by case on messages built for each case: what the
engine concludes, written by hand. The same cases with real tools, live and offline, are
in tests/test_analysis_accuracy_tools.py."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import subprocess
from pathlib import Path

import pytest

from conftest import require_tool
from siptrap.analysis.alerts import (
    DEFAULT_SEVERITY,
    SEVERITY_ORDER,
    AlertBook,
    MessagePlan,
    Report,
)
from siptrap.analysis.conclusions import summarise
from siptrap.analysis.engine import AnalysisEngine, EngineSettings, is_keepalive
from siptrap.analysis.evaluate import Source
from siptrap.analysis.live import AnalysisSink
from siptrap.analysis.registrations import Registrations
from siptrap.analysis.rules import load_builtin_rules
from siptrap.events.record import Event
from siptrap.offline.analyze import analyze_datagrams, analyze_paths
from siptrap.offline.capture import CaptureError, Datagram, open_inputs
from siptrap.sip import parse
from test_analysis_engine import alerts_of, engine, finals, request, response, src

DATA = Path(__file__).parent / "data"


def final(eng: AnalysisEngine) -> list:
    return list(finals(alerts_of(eng)).values())


def categories(eng: AnalysisEngine) -> set[str]:
    return {a.category for a in final(eng)}


# -- 1. a call answered late is watched to its end -----------------------------------------------
def test_a_call_rung_for_a_minute_then_answered_is_still_watched():
    eng = engine()
    invite = request("INVITE", "555", from_ip="203.0.113.5", sdp_ip="203.0.113.5")
    msg = parse(invite)
    eng.request(msg, src("203.0.113.5"), 0.0)
    eng.response(parse(response(180, invite)), src("203.0.113.5"), 0.1)
    eng.tick(60.0)  # still ringing: no alert yet
    assert eng.take() == []
    eng.response(parse(response(200, invite)), src("203.0.113.5"), 61.0)
    ack = request("ACK", "555", call_id=msg.call_id, to_tag="hp200", from_ip="203.0.113.5")
    eng.request(parse(ack), src("203.0.113.5"), 61.1)
    eng.call_ended(msg.call_id or "", 70.0, 400)
    (call,) = [a for a in final(eng) if a.kind == "message"]
    assert "ACK received" in call.conclusions and "Media received (400 RTP packets)" in (
        call.conclusions
    )
    assert "no ACK is received" not in call.conclusions


# -- 3. what an extension is ---------------------------------------------------------------------
def test_a_ringing_outside_line_is_not_an_extension_without_a_plan():
    """Offline without a plan: the 180 to an authenticated caller teaches nothing; the
    number is an outside line (toll fraud, a direct attack)."""
    eng = engine(extensions=None)
    caller = src("203.0.113.9")
    first = request("INVITE", "0046812345678", from_ip="203.0.113.9", sdp_ip="203.0.113.9")
    msg = parse(first)
    eng.request(msg, caller, 0.0)
    eng.response(parse(response(401, first)), caller, 0.01)
    again = request(
        "INVITE", "0046812345678", from_ip="203.0.113.9", sdp_ip="203.0.113.9",
        call_id=msg.call_id, auth_user="101", cseq=2,
    )  # fmt: skip
    eng.request(parse(again), caller, 0.02)
    eng.response(parse(response(180, again)), caller, 0.1)
    assert eng.directory.status("0046812345678", "192.0.2.1") == "unknown"
    (alert,) = [a for a in final(eng) if a.kind == "message"]
    assert alert.category == "toll_fraud" and "direct_attack" in alert.categories
    assert not [c for c in alert.conclusions if c.startswith("Extension 0046812345678")]


def test_the_plan_decides_and_answers_teach_host_by_host():
    planned = engine()  # extensions 100-109, 200, 201, 400
    ring = request("INVITE", "777", auth_user="101")
    planned.response(parse(response(180, ring)), src(), 1.0)
    assert planned.directory.status("777", "192.0.2.1") == "no"  # the plan, not the 180
    learning = engine(extensions=None)
    probe = request("INVITE", "300")
    learning.response(parse(response(180, probe)), Source("192.0.2.1", 5060), 1.0)
    assert learning.directory.status("300", "192.0.2.1") == "yes"
    assert learning.directory.status("300", "192.0.2.99") == "unknown"  # another host


# -- 5. floods are rates well above a tool's purpose -------------------------------------------
def test_an_invite_its_digest_retry_and_the_next_call_are_not_a_flood():
    eng = engine()
    for n in range(2):
        first = request("INVITE", "100", from_ip="203.0.113.20")
        msg = parse(first)
        eng.request(msg, src("203.0.113.20"), n * 0.3)
        eng.response(parse(response(401, first)), src("203.0.113.20"), n * 0.3 + 0.01)
        again = request(
            "INVITE", "100", from_ip="203.0.113.20", call_id=msg.call_id, auth_user="alice",
            cseq=2,
        )  # fmt: skip
        eng.request(parse(again), src("203.0.113.20"), n * 0.3 + 0.02)
    assert "flood" not in categories(eng)


def test_a_real_invite_flood_from_an_unknown_tool_is_a_flood():
    eng = engine()
    for i in range(40):
        eng.request(parse(request("INVITE", "100", from_ip="203.0.113.21")), src(), i * 0.02)
    assert "flood" in categories(eng)


# -- 6. a retransmission is the same bytes -------------------------------------------------------
def test_mutations_with_the_same_keys_are_each_counted_and_copies_are_not():
    eng = engine()
    base = request("OPTIONS", "100", from_ip="203.0.113.30", call_id="same@x")
    for i in range(6):  # the same Call-ID, branch, CSeq and method, mangled differently
        mutated = base.replace(b"Max-Forwards: 70", b"Max-Forwards: 70\r\n" + b"\x01" * (i + 1))
        for _copy in range(2):  # each sent twice: a retransmission
            eng.request(parse(mutated), src("203.0.113.30"), 1.0 + i)
    (fuzz,) = [a for a in final(eng) if a.category == "fuzzing"]
    assert fuzz.count == 6


# -- 7. an INVITE sweep is host discovery, a gateway probe names other domains ------------------
def test_an_invite_sweep_is_host_discovery_and_domains_are_gateway_probing():
    sweep = engine()
    for n in range(5):
        host = f"192.0.2.{10 + n}"
        data = request("INVITE", "100", host=host, from_ip="203.0.113.40")
        sweep.request(parse(data), Source("203.0.113.40", 5060, "udp", host, 5060), n * 0.5)
    assert categories(sweep) == {"scan"}
    probe = engine()
    for n, domain in enumerate(("gw1.example", "gw2.example", "pstn.example")):
        data = request("INVITE", "0046812345678", host=domain, from_ip="203.0.113.41")
        probe.request(parse(data), src("203.0.113.41"), n * 0.5)
    assert "gateway_probe" in categories(probe) and "scan" not in categories(probe)


# -- 8. conclusions read true -------------------------------------------------------------------
def test_conclusions_of_many_calls_read_as_one_true_summary():
    direct = [
        f"Direct attack: {n} is not one of the honeypot's extensions and the message came "
        "directly, not through the domain's proxy"
        for n in range(1000, 1065)
    ]
    lines = summarise(
        [
            "Not spoofed: the sender acknowledged our answer (a real SIP stack: interactive)",
            "No sign of spoofing in the message's addresses (interactive if it reads replies)",
            *direct,
            "ACK received",
            "no ACK is received",
            "waiting for correlation results",
        ],
        closed=True,
    )
    assert lines == (
        "Not spoofed: the sender acknowledged our answer (a real SIP stack: interactive)",
        "Direct attack: 65 users or numbers that are not the honeypot's extensions, sent "
        "directly, not through the domain's proxy (1000, 1001, 1002, 1003, 1004, ...)",
        "ACK received for some of these calls, not for the others",
    )
    assert summarise(["x", "waiting for correlation results"]) == (
        "x",
        "waiting for correlation results",
    )  # still open: it does wait


# -- 9. severities: a direct attack is at least a dial-plan fault -------------------------------
def test_severity_order():
    rank = {c: SEVERITY_ORDER[s] for c, s in DEFAULT_SEVERITY.items()}
    assert rank["direct_attack"] >= rank["dialplan_fault"]
    assert rank["bruteforce"] > rank["scan"] and rank["toll_fraud"] > rank["spoofing"]


# -- 10. every alert is closed ------------------------------------------------------------------
def test_every_alert_ends_closed_even_unchanged():
    book = AlertBook(idle=60.0, ids=lambda: "t-1")
    key = ("message", "scan", "203.0.113.1", "")
    book.report(Report("message", "scan", "203.0.113.1", 1.0, key, messages=1), 1.0)
    (raised,) = book.take()
    book.finish(2.0)
    (last,) = book.take()
    assert not raised.closed and last == dataclasses.replace(raised, update=1, closed=True)


# -- 11. offline brute force with the passwords --------------------------------------------------
def _digest(user: str, password: str, nonce: str, uri: str) -> str:
    def h(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    return h(f"{h(f'{user}:asterisk:{password}')}:{nonce}:{h(f'REGISTER:{uri}')}")


def test_offline_with_the_passwords_a_cracked_password_is_critical():
    eng = engine(passwords=(("104", "1234"),))
    for i, guess in enumerate([*(f"12{n:02d}" for n in range(12)), "1234"]):
        nonce = "n0001"  # one challenge, many passwords (as svcrack does)
        data = request("REGISTER", "104", from_ip="203.0.113.50", auth_user="104")
        digest = _digest("104", guess, nonce, "sip:192.0.2.1")
        data = data.replace(b'nonce="', f'nonce="{nonce}" , x="'.encode()).replace(
            data[data.index(b'response="') : data.index(b'", algorithm')],
            f'response="{digest}'.encode(),
        )
        eng.request(parse(data), src("203.0.113.50"), 1.0 + i * 0.1)
    (brute,) = [a for a in final(eng) if a.kind == "composed" and a.category == "bruteforce"]
    assert brute.severity == "critical"
    assert "Password cracked: 104:1234" in brute.conclusions


# -- 12. keep-alives ---------------------------------------------------------------------------
def test_keepalives_are_counted_never_alerted():
    stun = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + bytes(12)
    classic = b"\x00\x01\x00\x08" + bytes(16) + b"\x00\x03\x00\x04\x00\x00\x00\x00"
    assert all(is_keepalive(d) for d in (b"\r\n", b"\r\n\r\n", stun, classic))
    assert not is_keepalive(b"\x00\x01GARBAGE \xff\xfe not sip at all")
    eng = engine()
    for i in range(20):
        for data in (b"\r\n", b"\r\n\r\n", stun):
            eng.malformed(data, src("198.51.100.9"), float(i), "not a SIP message")
    assert eng.keepalives == 60 and final(eng) == []


# -- 13. a PBX qualifying its phones ----------------------------------------------------------
PBX = "192.0.2.200"


def _options(eng: AnalysisEngine, to: tuple[str, int], t: float, ua: str | None, uri: str):
    """The PBX sends OPTIONS to the address `to`, for `uri` (user@host:port)."""
    user, _, hostport = uri.partition("@")
    data = request("OPTIONS", user, host=hostport, from_ip=PBX, ua=ua)
    eng.request(parse(data), Source(PBX, 5060, "udp", to[0], to[1]), t)


def _register(eng: AnalysisEngine, public: tuple[str, int], private: str, t: float, user: str):
    """Phone `user` at `private` (behind a NAT showing `public`) registers with the PBX,
    Contact sip:USER@PRIVATE:5062."""
    data = request("REGISTER", user, host=PBX, from_ip=private)
    data = data.replace(b"Contact: <sip:alice@", f"Contact: <sip:{user}@".encode())
    eng.request(parse(data), Source(public[0], public[1], "udp", PBX, 5060), t)


PHONES = [(f"81.2.69.{50 + n}", 40000 + n) for n in range(12)]


def _registered_phones(eng: AnalysisEngine) -> list[str]:
    """Twelve phones registered (the odd ones behind NAT); their Contacts."""
    contacts = []
    for n, public in enumerate(PHONES):
        private = f"192.168.1.{n}" if n % 2 else public[0]
        _register(eng, public, private, n * 0.1, f"2{n:02d}")
        contacts.append(f"2{n:02d}@{private}:5062")
    return contacts


def test_a_pbx_qualifying_its_phones_is_not_host_discovery_or_enumeration():
    eng = engine()
    contacts = _registered_phones(eng)
    for n, (public, contact) in enumerate(zip(PHONES, contacts, strict=True)):
        # to the address each REGISTER came from, for its Contact (nathelper: no User-Agent)
        _options(eng, public, 10 + n * 0.1, None, contact)
        if n % 2 == 0:  # a phone not behind NAT is reached at its Contact too
            _options(eng, (public[0], 5062), 11 + n * 0.1, None, contact)
    assert final(eng) == []
    assert eng.finder.registrations.learnt.evicted == 0


def test_a_pbx_asking_its_phones_for_other_users_enumerates():
    """The addresses registered, but not the Contacts: a request the PBX forwards (or
    makes up) keeps its own Request-URI."""
    eng = engine()
    _registered_phones(eng)
    for n, public in enumerate(PHONES):
        _options(eng, public, 10 + n * 0.1, "Asterisk PBX 18.9.0", f"{500 + n}@{public[0]}")
    assert {"enumeration", "scan"} <= categories(eng)


def test_a_pbx_pinging_hosts_that_never_registered_sweeps():
    eng = engine()
    _register(eng, ("81.2.69.50", 40000), "192.168.1.5", 0.0, "200")
    for n in range(4):  # other hosts, asked for the registered Contact all the same
        to = (f"81.2.69.{60 + n}", 40000)
        _options(eng, to, 1 + n * 0.1, "Asterisk PBX 18.9.0", "200@192.168.1.5:5062")
    assert categories(eng) == {"scan"}


@pytest.mark.parametrize("ua", [None, "Asterisk PBX 18.9.0", "kamailio (5.6.3 (x86_64/linux))"])
def test_a_scanner_claiming_to_be_a_pbx_is_host_discovery(ua: str | None):
    scanner = engine()
    for n in range(6):
        data = request("OPTIONS", "100", host=f"192.0.2.{50 + n}", from_ip="203.0.113.60", ua=ua)
        to = Source("203.0.113.60", 5060, "udp", f"192.0.2.{50 + n}", 5060)
        scanner.request(parse(data), to, n * 0.1)
    assert categories(scanner) == {"scan"}


def test_a_phone_that_unregistered_is_not_qualified_any_more():
    eng = engine()
    phones = [(f"81.2.69.{50 + n}", 40000) for n in range(3)]
    for n, public in enumerate(phones):
        _register(eng, public, public[0], n * 0.1, "200")
    for n, public in enumerate(phones):  # Expires: 0 (a REGISTER with the same Contact)
        data = request("REGISTER", "200", host=PBX, from_ip=public[0])
        data = data.replace(b"Contact: <sip:alice@", b"Contact: <sip:200@")
        data = data.replace(b"Max-Forwards: 70", b"Max-Forwards: 70\r\nExpires: 0")
        eng.request(parse(data), Source(public[0], 40000, "udp", PBX, 5060), 1 + n * 0.1)
    for n, public in enumerate(phones):
        _options(eng, public, 5 + n * 0.1, None, f"200@{public[0]}:5062")
    assert categories(eng) == {"scan"}


def test_live_the_honeypots_own_registration_decides():
    eng = engine()
    eng.finder.registrations.upstream("udp:192.0.2.200:5060", "300")
    eng.finder.registrations.upstream("udp:pbx.example.net:5060", "301")  # no name resolved
    mine = [("192.0.2.1", 5060), ("192.0.2.2", 5060), ("192.0.2.3", 5060)]
    for n, to in enumerate(mine):
        data = request("OPTIONS", "300", host=to[0], from_ip=PBX, ua=None)
        eng.request(parse(data), Source(PBX, 5060, "udp", to[0], to[1]), n * 0.1)
    assert final(eng) == []
    for n, to in enumerate(mine):  # another user at the honeypot's addresses: a sweep
        data = request("OPTIONS", "555", host=to[0], from_ip=PBX, ua=None)
        eng.request(parse(data), Source(PBX, 5060, "udp", to[0], to[1]), 1 + n * 0.1)
    assert categories(eng) == {"scan"}
    gone = engine()
    gone.finder.registrations.upstream("udp:192.0.2.200:5060", "300")
    gone.finder.registrations.upstream("udp:192.0.2.200:5060", "300", registered=False)
    for n, to in enumerate(mine):
        data = request("OPTIONS", "300", host=to[0], from_ip=PBX, ua=None)
        gone.request(parse(data), Source(PBX, 5060, "udp", to[0], to[1]), n * 0.1)
    assert categories(gone) == {"scan"}


# -- 15. NAT is not spoofing -------------------------------------------------------------------
def test_a_phone_behind_nat_is_not_spoofing():
    eng = engine()
    invite = request("INVITE", "100", from_ip="192.168.1.20", sdp_ip="192.168.1.20")
    public = Source("81.2.69.142", 40123, "udp", "192.0.2.1", 5060)
    eng.request(parse(invite), public, 1.0)
    eng.response(parse(response(488, invite)), public, 1.1)
    assert "spoofing" not in categories(eng)


# -- 16. a capture siptrap cannot read says so ---------------------------------------------------
def test_a_netmon_capture_is_refused_with_its_name_and_editcap(tmp_path: Path):
    editcap = require_tool("editcap")
    netmon = tmp_path / "trace.cap"
    subprocess.run(
        [editcap, "-F", "netmon2", str(DATA / "pcap" / "loopback.pcap"), str(netmon)], check=True
    )
    with pytest.raises(CaptureError, match=r"Microsoft Network Monitor 2\.x.*editcap -F pcapng"):
        open_inputs([netmon])
    converted = tmp_path / "trace.pcapng"
    subprocess.run([editcap, "-F", "pcapng", str(netmon), str(converted)], check=True)
    result = analyze_paths([converted], load_builtin_rules())
    assert result.messages > 0  # what the hint says works


def test_a_compressed_capture_is_refused(tmp_path: Path):
    packed = tmp_path / "trace.pcap.gz"
    packed.write_bytes(gzip.compress((DATA / "pcap" / "loopback.pcap").read_bytes()))
    with pytest.raises(CaptureError, match=r"gzip-compressed.*decompress it first"):
        open_inputs([packed])


# -- 14. a phone re-authenticating is not a brute force ------------------------------------------
def _challenged(eng: AnalysisEngine, method: str, t: float, answer: int, ip: str) -> None:
    """One request challenged (401), then sent again with credentials, answered `answer`."""
    first = request(method, "101", from_ip=ip, ua="Yealink SIP-T46S 66.86.0.15")
    msg = parse(first)
    eng.request(msg, src(ip), t)
    eng.response(parse(response(401, first)), src(ip), t + 0.01)
    again = request(
        method, "101", from_ip=ip, ua="Yealink SIP-T46S 66.86.0.15", call_id=msg.call_id,
        auth_user="101", cseq=2,
    )  # fmt: skip
    eng.request(parse(again), src(ip), t + 0.02)
    eng.response(parse(response(answer, again)), src(ip), t + 0.03)


def test_a_phone_answering_each_challenge_is_not_a_brute_force():
    eng = engine()
    for i in range(30):  # REGISTER, SUBSCRIBE and PUBLISH refreshes: 30 digest responses
        _challenged(eng, ("REGISTER", "SUBSCRIBE", "PUBLISH")[i % 3], i * 2.0, 200, "198.51.100.5")
    assert final(eng) == []


def test_digest_responses_refused_again_and_again_are_a_brute_force():
    eng = engine()
    for i in range(12):  # a fresh challenge each time, each guess refused
        _challenged(eng, "REGISTER", i * 0.5, 403, "203.0.113.77")
    (brute,) = [a for a in final(eng) if a.category == "bruteforce"]
    assert brute.rules == ("password_failures",) and brute.severity == "high"
    assert any("digest responses the honeypot refuses" in c for c in brute.conclusions)


# -- 4. offline, a proxy in the capture is not a second honeypot ---------------------------------
PHONE, PROXY, HONEYPOT = "198.51.100.5", "192.0.2.200", "192.0.2.1"


def _via_proxy(data: bytes, n: int) -> bytes:
    """The proxy's copy of a request: its own Via on top, the rest unchanged."""
    line_end = data.index(b"\r\n") + 2
    via = f"Via: SIP/2.0/UDP {PROXY}:5060;branch=z9hG4bKpx{n:06d}\r\n".encode()
    return data[:line_end] + via + data[line_end:]


def _through_proxy(start: float) -> list[Datagram]:
    """A phone's 20 registrations (challenged, then accepted) and a call to 555, each
    request sent to the proxy and forwarded by it to the honeypot, each answer relayed."""
    out: list[Datagram] = []
    t = start

    def exchange(req: bytes, status: int, n: int) -> None:
        nonlocal t
        copy = _via_proxy(req, n)
        answer = response(status, copy)
        out.extend(
            [
                Datagram(t, "udp", PHONE, 5062, PROXY, 5060, req, 0),
                Datagram(t + 0.001, "udp", PROXY, 5060, HONEYPOT, 5060, copy, 0),
                Datagram(t + 0.002, "udp", HONEYPOT, 5060, PROXY, 5060, answer, 0),
                Datagram(t + 0.003, "udp", PROXY, 5060, PHONE, 5062, response(status, req), 0),
            ]
        )
        t += 0.01

    for i in range(20):
        first = request("REGISTER", "101", host=PROXY, from_ip=PHONE, ua="Yealink SIP-T46S")
        call_id = parse(first).call_id
        exchange(first, 401, 2 * i)
        again = request(
            "REGISTER", "101", host=PROXY, from_ip=PHONE, ua="Yealink SIP-T46S",
            call_id=call_id, auth_user="101", cseq=2,
        )  # fmt: skip
        exchange(again, 200, 2 * i + 1)
        t += 3.0
    exchange(request("INVITE", "555", host=PROXY, from_ip=PHONE, ua="Yealink SIP-T46S"), 404, 99)
    return out


@pytest.mark.parametrize("proxies", [(), (PROXY,)])
def test_offline_a_proxy_in_the_capture_is_not_a_second_honeypot(proxies: tuple[str, ...]):
    eng = AnalysisEngine(
        load_builtin_rules(), EngineSettings(extensions=frozenset({"101"}), proxies=proxies)
    )
    emitted, _datagrams, _media, messages = analyze_datagrams(_through_proxy(1000.0), eng)
    assert messages == 41  # each request once, not once per hop
    (alert,) = finals([a for a in emitted]).values()
    assert alert.count == 1 and alert.targets == ("555",)
    # with the proxy configured, as live: the honeypot's side, the call forwarded by the
    # proxy (a dial-plan fault); without, the phone's side: sent to the proxy, directly
    assert alert.category == ("dialplan_fault" if proxies else "direct_attack")


# -- 7. one attack, one alert: the message alert folded into the correlated one -------------------
def test_a_tools_scan_message_alert_is_folded_into_its_correlated_attack():
    ids = iter(f"t-{n}" for n in range(1, 10))
    book = AlertBook(ids=lambda: next(ids))
    plan = MessagePlan(
        "scan", ("scan",), "sippts", "", ("Tool identified as: sippts",), ("tool_identified",), ()
    )
    book.report_message(plan, "203.0.113.90", 1.0, 1.0, targets=("100",), call_id="c1")
    composed = Report(
        "composed", "enumeration", "203.0.113.90", 2.0,
        ("composed", "enumeration", "IPSrc", "203.0.113.90"), tool="sippts",
        conclusions=("Extension enumeration: 203.0.113.90 probes many users (REGISTER)",),
        rules=("extension_enumeration",), window=1, window_count=8,
    )  # fmt: skip
    book.report(composed, 2.0)
    book.report_message(plan, "203.0.113.90", 3.0, 3.0, targets=("101",), call_id="c2")
    book.finish(4.0)
    last = {a.alert_id: a for a in book.take()}
    message, correlated = last["t-1"], last["t-2"]
    assert message.closed and message.folded_into == "t-2"
    assert "Folded into alert t-2 (enumeration): one attack" in message.conclusions
    assert correlated.category == "enumeration" and correlated.folded_into is None
    assert "Tool identified as: sippts" in correlated.conclusions
    assert set(correlated.targets) == {"100", "101"} and set(correlated.call_ids) == {"c1", "c2"}


# -- offline, a honeypot that registers upstream is still the honeypot ----------------------------
def _spit_capture(register_first: bool) -> list[Datagram]:
    """A capture at a honeypot (192.0.2.1:5060): it may first register at the domain's
    registrar (192.0.2.250) from its SIP socket, as `[[upstream]]` does; then an unknown
    caller's INVITE to extension 100 is answered with audio."""
    hp, registrar, caller = ("192.0.2.1", 5060), ("192.0.2.250", 5060), ("203.0.113.9", 5062)
    out: list[Datagram] = []

    def add(src: tuple[str, int], dst: tuple[str, int], data: bytes) -> None:
        out.append(Datagram(len(out) * 0.1, "udp", *src, *dst, data, len(out) + 1))

    if register_first:
        reg = request("REGISTER", "300", host=registrar[0], from_ip=hp[0], ua="siptrap")
        add(hp, registrar, reg)
        add(registrar, hp, response(200, reg))
    invite = request("INVITE", "100", host=hp[0], from_ip=caller[0], sdp_ip=caller[0])
    add(caller, hp, invite)
    sdp = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
    add(hp, caller, response(200, invite, sdp + b"m=audio 40000 RTP/AVP 0\r\n"))
    ack = request("ACK", "100", host=hp[0], from_ip=caller[0], call_id=parse(invite).call_id)
    add(caller, hp, ack.replace(b"CSeq: 1 ACK", b"CSeq: 1 ACK"))
    for n in range(50):  # RTP, PCMU
        add(caller, (hp[0], 40000), b"\x80\x00" + n.to_bytes(2, "big") + bytes(168))
    return out


@pytest.mark.parametrize("register_first", [False, True])
def test_offline_a_honeypot_registered_upstream_still_answers_as_the_honeypot(register_first):
    eng = engine(extensions=frozenset({"100"}))
    emitted, *_ = analyze_datagrams(_spit_capture(register_first), eng)
    assert {a.category for a in finals(emitted).values()} == {"spit"}


def test_the_registrations_learnt_from_requests_are_bounded():
    table = Registrations(size=4)
    for n in range(10):  # REGISTERs are attacker data: each adds its source and its Contact
        data = request("REGISTER", "100", host=PBX, from_ip=f"198.51.100.{n}")
        table.register(parse(data), Source(f"198.51.100.{n}", 40000, "udp", PBX, 5060))
    assert len(table.learnt) == 4 and table.learnt.evicted == 16
    newest = Source(PBX, 5060, "udp", "198.51.100.9", 5062)
    oldest = Source(PBX, 5060, "udp", "198.51.100.0", 5062)
    options = parse(request("OPTIONS", "alice", host="198.51.100.9:5062", from_ip=PBX))
    assert table.delivers(options, newest) and not table.delivers(options, oldest)


def test_live_the_sink_learns_the_honeypots_registrations_from_its_events():
    eng = engine()
    sink = AnalysisSink(eng, lambda event: None, "test")
    fields = {"registrar": "udp:192.0.2.200:5060", "user": "300", "expires": 60}
    sink.write([Event("sip.upstream.registered", 1.0, "test", None, fields)])
    assert list(eng.finder.registrations.own) == [("192.0.2.200", "300")]
    gone = {"registrar": "udp:192.0.2.200:5060", "user": "300", "reason": "stopped"}
    sink.write([Event("sip.upstream.removed", 2.0, "test", None, gone)])
    assert list(eng.finder.registrations.own) == []
