"""The analysis keeps its reviewed conclusions (each alert's key, categories, count,
severity and rules, and the engine's counts) on a mixed synthetic capture (attack tools,
floods, toll fraud, fuzzing with RFC 4475's torture messages, spoofing, brute force,
calls with media, a phone's keep-alives, retransmissions, IPv6, input that is not SIP),
with the built-in rules and with extra rules that use every part of the rule language;
and on the captures tests/test_analysis_tools.py made of real tools (SIPVicious, SIPp,
sipsak, baresip) attacking and calling a live honeypot. The optimised paths must not
change them.

The invariants are in tests/data/analysis/expected_*.json (see the README there). To
record them again after a deliberate change of behaviour (and review the difference):

    .venv/bin/python tests/test_analysis_equivalence.py record"""

from __future__ import annotations

import gzip
import itertools
import json
import re
import socket
import struct
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dpkt

from siptrap.analysis.alerts import Alert, final_states
from siptrap.analysis.engine import AnalysisEngine, EngineSettings
from siptrap.analysis.rules import RuleSet, load_builtin_rules, parse_rules
from siptrap.offline.analyze import analyze_datagrams
from siptrap.offline.capture import open_inputs

DATA = Path(__file__).parent / "data"
EXPECTED = DATA / "analysis"
TOOLS = DATA / "tools"
T0 = 1_700_000_000.0
HONEYPOT = "192.0.2.1"
PROXY = "192.0.2.200"
EXTENSIONS = frozenset(
    {str(n) for n in range(100, 110)} | {str(n) for n in range(200, 210)} | {"400"}
)
# The extensions of the honeypot tests/test_analysis_tools.py attacked and called.
TOOL_EXTENSIONS = EXTENSIONS

EXTRA_RULES = r"""
[seen_caller]
type = Classification
context = ANY
condition = %FromUser in CALLERS
action = add "again: %FromUser from %IPSrc" CONCLUSIONS
action-if-false = add %FromUser CALLERS

[from_host_not_source]
type = Classification
context = INVITE, MESSAGE
category = spoofing
severity = low
pre-action = assign %h SipMsg.From.Ip
condition = %h != %IPSrc
action = add "From host %h is not the source %IPSrc (%Context/%Method)" CONCLUSIONS

[block]
type = Classification
context = INVITE
pre-action = assign %t Check_Fingerprint()
condition = %t in FINGERPRINTS
action = system /usr/local/bin/block --ip=%IPSrc --tool %t SipMsg.Contact.Ip

[not_tool]
type = Classification
context = OPTIONS, REGISTER
pre-action = assign %t Check_Fingerprint() ; assign %u "%t/%UserAgent"
condition = %t == ""
action = add "no tool: %u (%RequestUser@%RequestHost, %Transport, %DefectCount defects)" CONCLUSIONS
action-if-false = add %t TOOLS_SEEN ; add "tool %t via %ContactIP:%ContactPort" CONCLUSIONS

[method_word]
type = Classification
context = ANY
condition = %Method == "FOO"
category = fuzzing
action = add "unknown method %Method to %ToUser at %ToHost (%PortSrc->%IPDst:%PortDst)" CONCLUSIONS

[fp_by_order]
type = Fingerprinting
context = OPTIONS
re = '^Via,From,To,Call-ID,CSeq,Contact,Max-Forwards,User-Agent'
where = header-order
action = return "OrderedPhone"

[fp_by_body]
type = Fingerprinting
context = INVITE
re = 's=Talk'
where = body
action = return "Talker"

[fp_message]
type = Fingerprinting
context = MESSAGE
re = 'Content-Type: text/plain'
where = message
action = return "Texter"

[acked]
type = Correlation.EventInWindow
context = INVITE
scope = DIALOG
timer = 4
condition = context == ACK
category = spit
action = add "ACK for %CallID from %IPSrc" CONCLUSIONS
action-if-false = add "no ACK for %CallID" CONCLUSIONS

[net_sweep]
type = Correlation.ThresholdInWindow
context = OPTIONS, REGISTER
scope = IPNet
timer = 30
threshold = 4
distinct = %IPSrc/%Target
category = scan
action = add "network %IPNet sweeps (%Method)" CONCLUSIONS
action-if-false = add "network %IPNet quiet" CONCLUSIONS

[from_user_burst]
type = Correlation.ThresholdInWindow
context = ANY
scope = FromUser
timer = 5
threshold = 20
condition = %Tool != ""
category = flood
action = add "burst from user %FromUser (%ToolFamily)" CONCLUSIONS

[agent_burst]
type = Correlation.ThresholdInWindow
context = REGISTER, INVITE
scope = UserAgent
timer = 10
threshold = 15
category = scan
severity = high
action = add "many requests from agent %UserAgent" CONCLUSIONS

[to_user_calls]
type = Correlation.ThresholdInWindow
context = INVITE, MEDIA
scope = ToUser
timer = 60
threshold = 2
category = ringing
action = add "calls to %ToUser (%Extension, %Route, %Spoofed)" CONCLUSIONS

[media_seen]
type = Correlation.EventInWindow
context = INVITE
scope = IPSrc
timer = 30
condition = context == MEDIA
action = add "media from %IPSrc" CONCLUSIONS
"""


# -- the mixed capture ----------------------------------------------------------------------------
Packet = tuple[float, str, int, str, int, bytes]  # ts, source, port, destination, port, payload


def _tool(name: str) -> bytes:
    return (TOOLS / name).read_bytes()


def _vary(data: bytes, i: int) -> bytes:
    """A tool's message with its per-message values (branch, Call-ID, hex tag) changed."""
    data = re.sub(rb"branch=z9hG4bK-?\d+", b"branch=z9hG4bK-%d" % (1_000_000 + i), data)
    data = re.sub(rb"Call-ID: \d+", b"Call-ID: %d" % (2_000_000_000 + i), data)

    def retag(m: re.Match[bytes]) -> bytes:
        text = bytes.fromhex(m.group(1).decode())
        label, sep, _ = text.partition(b"\x01")
        return b"tag=" + ((label + sep + b"%d" % (3_000_000 + i)).hex().encode() if sep else m[1])

    return re.sub(rb"tag=([0-9a-f]{8,})", retag, data)


def _retarget(data: bytes, host: str, port: int = 5060) -> bytes:
    return data.replace(b"127.0.0.1:5060", f"{host}:{port}".encode())


def request(
    method: str,
    user: str,
    src: str,
    n: int,
    *,
    host: str = HONEYPOT,
    ua: str | None = "Linphone/5.2.0 (belle-sip/5.2.0)",
    call_id: str | None = None,
    to_tag: str = "",
    auth: str | None = None,
    sdp: str | None = None,
    cseq: int = 1,
    from_user: str = "alice",
    extra: str = "",
) -> bytes:
    """A request as an ordinary soft-phone writes it."""
    body = b""
    if sdp is not None:
        body = (
            f"v=0\r\no=- 3944 3944 IN IP4 {sdp}\r\ns=Talk\r\nc=IN IP4 {sdp}\r\nt=0 0\r\n"
            "m=audio 7078 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n"
        ).encode()
    ruri = f"sip:{host}" if method == "REGISTER" else f"sip:{user}@{host}"
    bracket = f"[{src}]" if ":" in src else src
    lines = [
        f"{method} {ruri} SIP/2.0",
        f"Via: SIP/2.0/UDP {bracket}:5062;branch=z9hG4bK.Ua{n:06d}x;rport",
        f"From: <sip:{from_user}@{host}>;tag=pQx{n:05d}",
        f"To: <sip:{user}@{host}>" + (f";tag={to_tag}" if to_tag else ""),
        f"Call-ID: {call_id or f'k3Jd9{n:05d}xQ@{src}'}",
        f"CSeq: {cseq} {method}",
        f"Contact: <sip:{from_user}@{bracket}:5062>",
        "Max-Forwards: 70",
    ]
    if ua:
        lines.append(f"User-Agent: {ua}")
    if auth is not None:
        lines.append(
            f'Authorization: Digest username="{auth}", realm="asterisk", '
            f'nonce="4f1a{n:04d}", uri="{ruri}", response="{n:032x}", algorithm=MD5'
        )
    if extra:
        lines.append(extra)
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def answer(status: int, req: bytes, sdp_port: int = 0) -> bytes:
    """The honeypot's answer to a request (same Via, From, Call-ID, CSeq; To with a tag)."""
    head = req.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
    lines = [f"SIP/2.0 {status} X"]
    for line in head:
        name = line.split(":", 1)[0].strip().lower()
        if name in ("to", "t"):
            lines.append(line + (f";tag=hp{status}" if ";tag=" not in line else ""))
        elif name in ("via", "v", "from", "f", "call-id", "i", "cseq"):
            lines.append(line)
    body = b""
    if sdp_port:
        body = (
            f"v=0\r\no=hp 1 1 IN IP4 {HONEYPOT}\r\ns=-\r\nc=IN IP4 {HONEYPOT}\r\nt=0 0\r\n"
            f"m=audio {sdp_port} RTP/AVP 0\r\n"
        ).encode()
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _rtp(seq: int) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, seq * 160, 0x1234) + b"\xff" * 160


def tool_scans() -> Iterator[Packet]:
    """svwar, svcrack and svmap, each from its own address, answered by the honeypot."""
    svwar, crack, svmap = (
        _tool(n) for n in ("svwar_register.sip", "svcrack_register_guess.sip", "svmap_options.sip")
    )
    for burst, start in enumerate((0.0, 420.0)):  # a second run after the first went idle
        for i in range(70):
            ts = T0 + start + i * 0.05
            ext = b"%d" % (100 + i)
            data = _vary(svwar, i + 1000 * burst).replace(b"sip:100@", b"sip:" + ext + b"@")
            data = _retarget(data.replace(b'"100"', b'"' + ext + b'"'), HONEYPOT)
            yield ts, "203.0.113.10", 5061, HONEYPOT, 5060, data
            status = 200 if i < 5 else 401 if i < 10 else 404
            yield ts + 0.001, HONEYPOT, 5060, "203.0.113.10", 5061, answer(status, data)
    for i in range(60):
        ts = T0 + 3.0 + i * 0.07
        data = _retarget(_vary(crack, i), HONEYPOT)
        yield ts, "203.0.113.11", 5062, HONEYPOT, 5060, data
        yield ts + 0.002, HONEYPOT, 5060, "203.0.113.11", 5062, answer(401, data)
    for i in range(30):
        target = f"192.0.2.{1 + i % 6}"
        data = _retarget(_vary(svmap, i), target)
        yield T0 + 1.0 + i * 0.11, "203.0.113.12", 5063, target, 5060, data
    compact = _retarget(_tool("svmap_compact_options.sip"), HONEYPOT)
    yield T0 + 9.0, "203.0.113.13", 5060, HONEYPOT, 5060, compact
    for n, name in enumerate(("svmap_invite.sip", "svwar_invite.sip", "sipsak_options.sip")):
        data = _retarget(_tool(name), HONEYPOT)
        yield T0 + 12.0 + n, f"203.0.113.{14 + n}", 5060, HONEYPOT, 5060, data


def sipp_flood() -> Iterator[Packet]:
    """SIPp's uac scenario at 200 calls a second; some calls answered with media."""
    invite, ack, bye = (_tool(f"sipp_{n}.sip") for n in ("invite", "ack", "bye"))
    src = "198.51.100.20"
    for i in range(240):
        call = b"%d-5722@127.0.0.1" % (i + 1)
        ts = T0 + 20.0 + i * 0.005
        steps = [
            s.replace(b"1-5722@127.0.0.1", call).replace(b"127.0.0.1", src.encode())
            for s in (invite, ack, bye)
        ]
        steps = [
            s.replace(b"sip:service@" + src.encode(), b"sip:service@" + HONEYPOT.encode())
            for s in steps
        ]
        yield ts, src, 5070, HONEYPOT, 5060, steps[0]
        answered = i % 60 == 0
        yield (
            ts + 0.001,
            HONEYPOT,
            5060,
            src,
            5070,
            answer(200 if answered else 486, steps[0], 20000 + 2 * i if answered else 0),
        )
        yield ts + 0.002, src, 5070, HONEYPOT, 5060, steps[1]
        if answered:
            for k in range(5):
                yield ts + 0.003 + k * 0.02, src, 6000, HONEYPOT, 20000 + 2 * i, _rtp(k)
        yield ts + 0.2, src, 5070, HONEYPOT, 5060, steps[2]
        if i % 50 == 7:  # a retransmission of the INVITE
            yield ts + 0.5, src, 5070, HONEYPOT, 5060, steps[0]


def calls() -> Iterator[Packet]:
    """A phone's keep-alives and a real call; ringing, SPIT, toll fraud, gateways, proxies."""
    n = itertools.count(1)
    phone = "192.0.2.50"
    for i in range(60):
        data = request(
            "OPTIONS", "100", phone, next(n), from_user="101", ua="Yealink SIP-T46S 66.86.0.15"
        )
        yield T0 + i * 10.0, phone, 5062, HONEYPOT, 5060, data
        yield T0 + i * 10.0 + 0.001, HONEYPOT, 5060, phone, 5062, answer(200, data)
    # a real call with media: no alert
    inv = request("INVITE", "400", phone, next(n), from_user="101", sdp=phone, call_id="realcall@x")
    yield T0 + 30.0, phone, 5062, HONEYPOT, 5060, inv
    yield T0 + 30.1, HONEYPOT, 5060, phone, 5062, answer(200, inv, 31000)
    ack = request(
        "ACK", "400", phone, next(n), from_user="101", call_id="realcall@x", to_tag="hp200"
    )
    yield T0 + 30.2, phone, 5062, HONEYPOT, 5060, ack
    for k in range(40):
        yield T0 + 30.3 + k * 0.02, phone, 7078, HONEYPOT, 31000, _rtp(k)
    bye = request(
        "BYE", "400", phone, next(n), from_user="101", call_id="realcall@x", to_tag="hp200", cseq=2
    )
    yield T0 + 33.0, phone, 5062, HONEYPOT, 5060, bye
    # ringing the extensions, with SPIT (answered calls with audio) from one source
    src = "198.51.100.80"
    for i, user in enumerate(("100", "101", "102", "103", "104", "105", "106")):
        ts = T0 + 40.0 + i * 2.0
        cid = f"ring{i}@{src}"
        inv = request("INVITE", user, src, next(n), call_id=cid, sdp=src, ua="Zoiper rv2.10")
        yield ts, src, 5062, HONEYPOT, 5060, inv
        if i < 4:
            yield ts + 0.1, HONEYPOT, 5060, src, 5062, answer(200, inv, 32000 + 2 * i)
            ack = request(
                "ACK", user, src, next(n), call_id=cid, to_tag="hp200", ua="Zoiper rv2.10"
            )
            yield ts + 0.2, src, 5062, HONEYPOT, 5060, ack
            for k in range(10):
                yield ts + 0.3 + k * 0.02, src, 7078, HONEYPOT, 32000 + 2 * i, _rtp(k)
        else:
            yield ts + 0.1, HONEYPOT, 5060, src, 5062, answer(180, inv)
    # toll fraud and dial-prefix probing
    src = "198.51.100.30"
    numbers = (
        "00442075005000",
        "011442075005000",
        "9011442075005000",
        "+19005551234",
        "0088161234567",
        "09098790000",
        "+447700900123",
        "0870",
    )
    for i, number in enumerate(numbers):
        inv = request("INVITE", number, src, next(n), sdp="1.1.1.1" if i % 3 == 0 else src, ua=None)
        yield T0 + 60.0 + i * 0.5, src, 5062, HONEYPOT, 5060, inv
        yield T0 + 60.1 + i * 0.5, HONEYPOT, 5060, src, 5062, answer(403, inv)
    # a gateway probe: the same number through several domains
    src = "198.51.100.90"
    for i, host in enumerate(("gw1.example.com", "gw2.example.net", "10.0.0.1", "gw4.example.org")):
        inv = request("INVITE", "0044123456789", src, next(n), host=host, ua="pplsip")
        yield T0 + 70.0 + i, src, 5062, HONEYPOT, 5060, inv
    # through the domain's proxy to a missing extension, and directly
    for i, (src, user) in enumerate(((PROXY, "555"), ("198.51.100.91", "556"), (PROXY, "101"))):
        inv = request("INVITE", user, src, next(n), ua="Asterisk PBX 18.1.0")
        yield T0 + 80.0 + i, src, 5060, HONEYPOT, 5060, inv
    # messages, subscriptions, references, unknown methods, an IPv6 source
    src = "198.51.100.60"
    for i, method in enumerate(("MESSAGE", "SUBSCRIBE", "REFER", "FOO", "PUBLISH", "INFO", "FOO")):
        data = request(
            method,
            "+447700900123" if method == "MESSAGE" else "200",
            src,
            next(n),
            extra="Event: presence" if method == "SUBSCRIBE" else "",
        )
        yield T0 + 90.0 + i * 0.3, src, 5062, HONEYPOT, 5060, data
    for i in range(12):
        data = request(
            "OPTIONS", f"{100 + i}", "2001:db8::5", next(n), host="[2001:db8::1]", ua="sundayddr"
        )
        yield T0 + 95.0 + i * 0.2, "2001:db8::5", 5062, "2001:db8::1", 5060, data
    # spoofed: a placeholder Contact, a dead port, a Via from elsewhere
    for i, src in enumerate(("198.51.100.100", "198.51.100.101")):
        data = request("OPTIONS", "100", "1.2.3.4", next(n), ua=None)
        yield T0 + 100.0 + i, src, 5062, HONEYPOT, 5060, data
    yield (
        T0 + 102.0,
        "203.0.113.45",
        5060,
        HONEYPOT,
        5060,
        (DATA / "analysis" / "figure6_invite.sip").read_bytes(),
    )


def bruteforce() -> Iterator[Packet]:
    """Digest responses from one source, many users and guesses, answered 401 then 200."""
    n = itertools.count(5000)
    src = "198.51.100.70"
    for i in range(36):
        user = ("alice", "100", "admin")[i % 3]
        data = request(
            "REGISTER", user, src, next(n), auth=user, ua="PolycomSoundPointIP-SPIP_335-UA/3.3.0"
        )
        yield T0 + 110.0 + i * 0.1, src, 5064, HONEYPOT, 5060, data
        yield (
            T0 + 110.05 + i * 0.1,
            HONEYPOT,
            5060,
            src,
            5064,
            answer(200 if i == 35 else 401, data),
        )
        if i % 10 == 4:  # retransmitted
            yield T0 + 110.08 + i * 0.1, src, 5064, HONEYPOT, 5060, data
    for i in range(30):  # a burst from one source: the per-source flood
        data = request("INVITE", "101", "198.51.100.71", next(n), ua="sipcli/v1.8")
        yield T0 + 130.0 + i * 0.004, "198.51.100.71", 5065, HONEYPOT, 5060, data
    for i in range(120):
        data = request("OPTIONS", "101", "198.51.100.72", next(n), ua="VaxSIPUserAgent/3.1")
        yield T0 + 131.0 + i * 0.005, "198.51.100.72", 5066, HONEYPOT, 5060, data


def fuzzing() -> Iterator[Packet]:
    """RFC 4475's torture messages from one source, and input that is not SIP."""
    for i, path in enumerate(sorted((DATA / "rfc4475").glob("*.dat"))):
        yield T0 + 140.0 + i * 0.2, "203.0.113.40", 5060, HONEYPOT, 5060, path.read_bytes()
    for i, junk in enumerate(
        (
            b"\x00\x01\x02garbage that is not SIP",
            b"\r\n\r\n",
            b"HELLO\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
        )
    ):
        yield T0 + 160.0 + i, "203.0.113.41", 5060, HONEYPOT, 5060, junk


def mixed_packets() -> list[Packet]:
    packets = [*tool_scans(), *sipp_flood(), *calls(), *bruteforce(), *fuzzing()]
    return sorted(packets, key=lambda p: p[0])  # stable: equal times keep their order


def write_capture(path: Path) -> None:
    """The mixed capture as a pcap of raw IPv4/IPv6 UDP packets."""
    with path.open("wb") as fh:
        writer = dpkt.pcap.Writer(fh, linktype=dpkt.pcap.DLT_RAW)
        for ts, src, sport, dst, dport, payload in mixed_packets():
            udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
            if ":" in src:
                ip = struct.pack(
                    "!IHBB16s16s",
                    0x60000000,
                    len(udp),
                    17,
                    64,
                    socket.inet_pton(socket.AF_INET6, src),
                    socket.inet_pton(socket.AF_INET6, dst),
                )
            else:
                ip = struct.pack(
                    "!BBHHHBBH4s4s",
                    0x45,
                    0,
                    20 + len(udp),
                    0,
                    0x4000,
                    64,
                    17,
                    0,
                    socket.inet_aton(src),
                    socket.inet_aton(dst),
                )
            writer.writepkt(ip + udp, ts=ts)


# -- running the engine ------------------------------------------------------------------------
def run(paths: list[Path], rules: RuleSet, settings: EngineSettings) -> dict[str, Any]:
    """What the analysis concluded, as reviewed invariants: each alert's final state by its
    key (kind, category, tool, source) with its categories, count, severity and rules,
    and the engine's counts; not every emission's text."""
    counter = itertools.count(1)
    engine = AnalysisEngine(rules, settings, ids=lambda: f"a{next(counter):05d}")
    emitted, datagrams, media, messages = analyze_datagrams(
        open_inputs([str(p) for p in paths], accept=None), engine
    )
    return {
        "datagrams": datagrams,
        "media_packets": media,
        "messages": messages,
        "commands_not_run": engine.commands_not_run,
        "dropped_firings": engine.dropped_firings,
        "emissions": len(emitted),
        "alerts": sorted(
            (_invariant(a) for a in final_states(emitted) if a.folded_into is None), key=_order
        ),
        "folded": sum(1 for a in final_states(emitted) if a.folded_into is not None),
    }


def _invariant(alert: Alert) -> dict[str, Any]:
    return {
        "kind": alert.kind,
        "category": alert.category,
        "tool": alert.tool,
        "src_ip": alert.src_ip,
        "categories": sorted(alert.categories),
        "count": alert.count,
        "severity": alert.severity,
        "rules": sorted(alert.rules),
        "closed": alert.closed,
    }


def _order(alert: dict[str, Any]) -> tuple[str, ...]:
    return (alert["kind"], alert["category"], alert["tool"] or "", alert["src_ip"])


def _extra_rules() -> RuleSet:
    return RuleSet.of([*load_builtin_rules(), *parse_rules(EXTRA_RULES, "extra.rules")])


def cases(tmp: Path) -> dict[str, tuple[list[Path], RuleSet, EngineSettings]]:
    mixed = tmp / "mixed.pcap"
    write_capture(mixed)
    tools = []
    for name in ("tools_attacks", "tools_legitimate"):
        path = tmp / f"{name}.pcapng"
        path.write_bytes(gzip.decompress((EXPECTED / f"{name}.pcapng.gz").read_bytes()))
        tools.append(path)
    configured = EngineSettings(extensions=EXTENSIONS, proxies=(PROXY,), home_region="GB")
    return {
        "mixed_builtin": ([mixed], load_builtin_rules(), configured),
        "mixed_extra": ([mixed], _extra_rules(), EngineSettings()),
        "tools_attacks": ([tools[0]], load_builtin_rules(), EngineSettings(TOOL_EXTENSIONS)),
        "tools_legitimate": ([tools[1]], load_builtin_rules(), EngineSettings(TOOL_EXTENSIONS)),
    }


def _expected(name: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads((EXPECTED / f"expected_{name}.json").read_text())
    return out


# -- the tests ----------------------------------------------------------------------------------
def test_same_conclusions_as_the_reviewed_invariants(tmp_path: Path) -> None:
    for name, (paths, rules, settings) in cases(tmp_path).items():
        got, want = run(paths, rules, settings), _expected(name)
        counts = (
            "datagrams",
            "media_packets",
            "messages",
            "commands_not_run",
            "dropped_firings",
            "folded",
        )
        assert {k: got[k] for k in counts} == {k: want[k] for k in counts}, name
        assert got["alerts"] == want["alerts"], name
        # one attack updates one alert: a few emissions each, never one per message
        assert len(want["alerts"]) <= got["emissions"] <= 8 * len(want["alerts"]) + 40, name
        assert all(a["closed"] for a in got["alerts"]), name  # every alert is closed at the end


def test_the_mixed_capture_exercises_every_kind_of_alert(tmp_path: Path) -> None:
    """The recorded runs cover what the optimised paths must get right."""
    mixed = _expected("mixed_builtin")["alerts"]
    categories = {c for a in mixed for c in a["categories"]}
    assert {
        "scan",
        "enumeration",
        "bruteforce",
        "flood",
        "ringing",
        "spit",
        "toll_fraud",
        "gateway_probe",
        "fuzzing",
        "spoofing",
        "dialplan_fault",
        "direct_attack",
    } <= categories
    extra = _expected("mixed_extra")
    rules = {r for a in extra["alerts"] for r in a["rules"]}
    assert {
        "seen_caller",
        "from_host_not_source",
        "not_tool",
        "method_word",
        "acked",
        "net_sweep",
        "from_user_burst",
        "agent_burst",
        "to_user_calls",
        "media_seen",
    } <= rules
    assert extra["commands_not_run"] > 0
    assert _expected("mixed_builtin")["emissions"] > len(mixed)  # some alerts were updated
    tools = {a["tool"] for a in _expected("tools_attacks")["alerts"]}
    assert {"SIPVicious svmap", "SIPVicious svwar", "SIPVicious svcrack", "SIPp"} <= tools


def record(tmp: Path) -> None:
    """Write the expected emissions of the engine as it is now."""
    for name, (paths, rules, settings) in cases(tmp).items():
        result = run(paths, rules, settings)
        text = json.dumps(result, indent=1, sort_keys=True, ensure_ascii=False)
        (EXPECTED / f"expected_{name}.json").write_text(text + "\n", encoding="utf-8")
        print(name, len(result["alerts"]), "alerts", result["messages"], "messages")


if __name__ == "__main__":
    import tempfile

    if sys.argv[1:] == ["record"]:
        with tempfile.TemporaryDirectory() as tmp:
            record(Path(tmp))
    else:
        print(__doc__)
