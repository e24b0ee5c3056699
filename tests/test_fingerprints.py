"""Tool fingerprints, checked on messages the real tools send.

The live tests start a small UDP SIP responder on 127.0.0.1, run SIPVicious (svmap, svwar,
svcrack), sipsak and SIPp against it with bounded runs, parse every datagram received and
check that `identify` names the tool. A test is skipped when its tool is not installed,
unless SIPTRAP_REQUIRE_TOOLS=1 (then it fails). Captures of the same runs are kept in
tests/data/tools/ for the offline tests.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import string
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from siptrap.analysis.fingerprints import (
    CatalogueError,
    best_attack_tool,
    identify,
    load_catalogue,
)
from siptrap.sip import parse

TOOLS = Path(__file__).parent / "data" / "tools"
BIN = Path(sys.executable).parent
RUN_TIMEOUT = 60  # seconds; each tool finishes in about one with the responder answering


# -- a tiny responder ----------------------------------------------------------------------
class Responder:
    """A UDP SIP responder on 127.0.0.1 that records what it receives and answers enough
    for scanners to go on: OPTIONS 200, REGISTER 401 (short user) or 404, with credentials
    403, INVITE 404 (or 200 with SDP when `answer_invite`), BYE and CANCEL 200."""

    def __init__(self, answer_invite: bool = False) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.answer_invite = answer_invite
        self.received: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            self.received.append(data)
            answer = self.answer(data)
            if answer:
                self.sock.sendto(answer, peer)

    def answer(self, data: bytes) -> bytes | None:
        msg = parse(data)
        if msg.kind != "request" or msg.method == "ACK":
            return None
        status, extra, body = "200 OK", [], b""
        if msg.method == "REGISTER":
            user = msg.to_addr.user if msg.to_addr else ""
            if msg.header("authorization"):
                status = "403 Forbidden"
            elif user and len(user) <= 4:
                status = "401 Unauthorized"
                extra.append('WWW-Authenticate: Digest realm="trap", nonce="4f1c", algorithm=MD5')
            else:
                status = "404 Not Found"
        elif msg.method == "INVITE" and not self.answer_invite:
            status = "404 Not Found"
        elif msg.method == "INVITE":
            body = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            body += b"m=audio 40000 RTP/AVP 0\r\n"
            extra += ["Contact: <sip:trap@127.0.0.1>", "Content-Type: application/sdp"]
        lines = [f"SIP/2.0 {status}"]
        lines += [f"{name}: {value}" for name, value in msg.headers if _copied(name)]
        to_index = next(i for i, line in enumerate(lines) if _is_to(line))
        if ";tag=" not in lines[to_index]:
            lines[to_index] += ";tag=trap1"
        lines += [*extra, f"Content-Length: {len(body)}", "", ""]
        return "\r\n".join(lines).encode() + body

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


def _copied(name: str) -> bool:
    return name.lower() in ("via", "v", "from", "f", "to", "t", "call-id", "i", "cseq")


def _is_to(line: str) -> bool:
    return line.lower().startswith(("to:", "t:"))


def find_tool(*names: str) -> str:
    """The path of an installed tool, or skip (fail with SIPTRAP_REQUIRE_TOOLS=1)."""
    for name in names:
        found = shutil.which(name) or (str(BIN / name) if (BIN / name).exists() else None)
        if found:
            return found
    reason = f"{names[0]} is not installed"
    if os.environ.get("SIPTRAP_REQUIRE_TOOLS") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def capture(argv: list[str], cwd: Path, answer_invite: bool = False) -> list[bytes]:
    """Run a tool against a fresh responder ("PORT" in argv is its port); what it sent."""
    responder = Responder(answer_invite)
    try:
        args = [a.replace("PORT", str(responder.port)) for a in argv]
        subprocess.run(
            args, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, timeout=RUN_TIMEOUT
        )
    finally:
        responder.close()
    return responder.received


def assert_all_named(datagrams: list[bytes], tool: str, at_least: int = 1) -> None:
    assert len(datagrams) >= at_least, f"{tool}: only {len(datagrams)} datagrams captured"
    for data in datagrams:
        matches = identify(parse(data))
        assert matches, data[:200]
        assert (matches[0].tool, matches[0].kind) == (tool, "attack_tool"), (matches, data[:300])
        assert matches[0].evidence


# -- live captures -------------------------------------------------------------------------
SVMAP = ("sipvicious_svmap", "svmap", "svmap.py")
SVWAR = ("sipvicious_svwar", "svwar", "svwar.py")
SVCRACK = ("sipvicious_svcrack", "svcrack", "svcrack.py")


@pytest.mark.tools
def test_svmap_options(tmp_path):
    sent = capture([find_tool(*SVMAP), "-p", "PORT", "127.0.0.1"], tmp_path)
    assert_all_named(sent, "SIPVicious svmap")
    assert parse(sent[0]).user_agent == "friendly-scanner"


@pytest.mark.tools
def test_svmap_compact_invite_without_user_agent_by_shape_alone(tmp_path):
    sent = capture([find_tool(*SVMAP), "-c", "-m", "INVITE", "-p", "PORT", "127.0.0.1"], tmp_path)
    assert parse(sent[0]).user_agent is None
    assert_all_named(sent, "SIPVicious svmap")


@pytest.mark.tools
def test_svmap_with_another_from_name_is_still_named_by_its_tag(tmp_path):
    tool = find_tool(*SVMAP)
    sent = capture([tool, "--fromname", "Alice", "-p", "PORT", "127.0.0.1"], tmp_path)
    assert parse(sent[0]).from_addr.display == "Alice"
    assert_all_named(sent, "SIPVicious svmap")


@pytest.mark.tools
def test_svwar_register_scan(tmp_path):
    sent = capture([find_tool(*SVWAR), "-e100-105", "127.0.0.1:PORT"], tmp_path)
    assert_all_named(sent, "SIPVicious svwar", at_least=6)
    users = {parse(d).from_addr.user for d in sent}
    assert {"100", "105"} <= users


@pytest.mark.tools
def test_svwar_invite_scan(tmp_path):
    sent = capture([find_tool(*SVWAR), "-e100-102", "-m", "INVITE", "127.0.0.1:PORT"], tmp_path)
    methods = {parse(d).method for d in sent}
    assert {"INVITE", "ACK"} <= methods
    assert_all_named(sent, "SIPVicious svwar", at_least=4)


@pytest.mark.tools
def test_svcrack_guesses(tmp_path):
    sent = capture([find_tool(*SVCRACK), "-u", "100", "-r", "1-3", "127.0.0.1:PORT"], tmp_path)
    assert_all_named(sent, "SIPVicious svcrack", at_least=4)
    evidence = " ".join(e for d in sent for m in identify(parse(d)) for e in m.evidence)
    assert "user:password" in evidence


@pytest.mark.tools
def test_sipsak_options(tmp_path):
    sent = capture([find_tool("sipsak"), "-s", "sip:100@127.0.0.1:PORT"], tmp_path)
    assert_all_named(sent, "sipsak")


@pytest.mark.tools
def test_sipp_uac_call(tmp_path):
    sipp = find_tool("sipp")
    argv = [sipp, "-sn", "uac", "127.0.0.1:PORT", "-m", "1", "-i", "127.0.0.1"]
    argv += ["-p", str(free_udp_port()), "-timeout", "20s", "-nostdin"]
    sent = capture(argv, tmp_path, answer_invite=True)
    assert [parse(d).method for d in sent][:3] == ["INVITE", "ACK", "BYE"]
    assert_all_named(sent, "SIPp", at_least=3)


# -- offline: the saved captures -------------------------------------------------------------
SAVED = {
    "svmap_": "SIPVicious svmap",
    "svwar_": "SIPVicious svwar",
    "svcrack_": "SIPVicious svcrack",
    "sipsak_": "sipsak",
    "sipp_": "SIPp",
}


@pytest.mark.parametrize("path", sorted(TOOLS.glob("*.sip")), ids=lambda p: p.name)
def test_saved_captures(path):
    tool = next(t for prefix, t in SAVED.items() if path.name.startswith(prefix))
    assert_all_named([path.read_bytes()], tool)


def test_family_evidence_is_merged_into_the_member():
    (match,) = identify(parse((TOOLS / "svmap_options.sip").read_bytes()))
    assert match.family == "SIPVicious"
    assert any("friendly-scanner" in e for e in match.evidence)  # from the family entry
    assert any("svmap" in e for e in match.evidence)
    assert 0.9 < match.confidence < 1.0


# -- tools not installable here: messages built from their documented formats -----------------
def test_inviteflood_from_its_documented_output():
    """inviteflood needs root and libnet; this is the INVITE its README shows (inviteflood
    by Collier and O'Brien), whose lines match the format strings of inviteflood.c."""
    data = (
        b"INVITE sip:5000@proxy1.enterprise1.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 10.1.101.11:9;branch=33ae0f10-ec74-4416-87bb-390000000001\r\n"
        b"Max-Forwards: 70\r\nContent-Length: 0\r\n"
        b"To: 5000 <sip:5000@proxy1.enterprise1.com:5060>\r\n"
        b"From: <sip:10.1.101.11:9>;tag=33ae1e85-ec74-4416-9701-db0000000001\r\n"
        b"Call-ID: 33ae2a25-ec74-4416-b627-130000000001\r\n"
        b"CSeq: 0000000001 INVITE\r\nSupported: timer\r\nAllow: NOTIFY\r\nAllow: REFER\r\n"
        b"Allow: OPTIONS\r\nAllow: INVITE\r\nAllow: ACK\r\nAllow: CANCEL\r\nAllow: BYE\r\n"
        b"Content-Type: application/sdp\r\nContact: <sip:10.1.101.11:9>\r\n"
        b"Supported: replaces\r\n"
        b"User-Agent: Elite 1.0 Brcm Callctrl/1.5.1.0 MxSF/v.3.2.6.26\r\n\r\n"
    )
    body = b"v=0\r\no=MxSIP 0 639859198 IN IP4 10.1.101.11\r\ns=SIP Call\r\n"
    data = data.replace(b"Content-Length: 0", b"Content-Length: %d" % len(body)) + body
    top = identify(parse(data))[0]
    assert top.tool == "inviteflood" and top.confidence > 0.95
    assert len(top.evidence) == 4


def test_inviteflood_shape_without_its_user_agent():
    """The branch/CSeq rewriting is in inviteflood.c whatever User-Agent an edit puts in."""
    data = (
        b"INVITE sip:5000@192.0.2.1 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.66:9;branch=0a1b2c3d-ec74-4416-87bb-390000000042\r\n"
        b"To: <sip:5000@192.0.2.1>\r\nFrom: <sip:192.0.2.66:9>;tag=1\r\nCall-ID: 1\r\n"
        b"CSeq: 0000000042 INVITE\r\nContact: <sip:192.0.2.66:9>\r\nContent-Length: 0\r\n\r\n"
    )
    assert best_attack_tool(parse(data)).tool == "inviteflood"


def test_protos_c07_sip_test_case():
    """PROTOS c07-sip is a Java test-suite jar not available here: this INVITE follows the
    test material's template as resiprocate's test suite copies it (branch and From carry
    the test-case number), with the SDP o= line of the Artemisa paper's Table I."""
    body = b"v=0\r\no=1249 1249 1249 IN IP4 127.0.0.1\r\ns=Session SDP\r\nt=0 0\r\n"
    data = (
        "INVITE sip:100@127.0.0.1 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK00001249z9hG4bK.00004119\r\n"
        "From: 1249 <sip:bob@127.0.0.1>;tag=1249\r\nTo: Receiver <sip:100@127.0.0.1>\r\n"
        "Call-ID: 4166@127.0.0.1\r\nCSeq: 18571 INVITE\r\nExpires: 1200\r\n"
        "Max-Forwards: 70\r\nContent-Type: application/sdp\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    top = identify(parse(data))[0]
    assert (top.tool, len(top.evidence)) == ("PROTOS c07-sip", 3)


def _sippts_options(user_agent: str, rng: random.Random) -> bytes:
    """An OPTIONS as sippts' lib/functions.py create_message() writes it (empty names)."""
    branch = "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(71))
    callid = "".join(rng.choice("0123456789abcdef") for _ in range(32))
    tag = "".join(rng.choice("0123456789abcdef") for _ in range(8))
    allow = (
        "INVITE,REGISTER,ACK,CANCEL,BYE,NOTIFY,REFER,OPTIONS,INFO,SUBSCRIBE,UPDATE,PRACK,MESSAGE"
    )
    return (
        "OPTIONS sip:100@192.0.2.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.66:5070;branch={branch}\r\n"
        f"From:  <sip:100@192.0.2.1>;tag={tag}\r\nTo:  <sip:100@192.0.2.1>\r\n"
        "Contact: <sip:100@192.0.2.66:5070;transport=udp>\r\n"
        f"Call-ID: {callid}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
        f"User-Agent: {user_agent}\r\nAllow: {allow}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def test_sippts_default_and_with_a_borrowed_user_agent():
    """sippts needs Python modules not installed here; messages follow its create_message()."""
    rng = random.Random(7)
    assert identify(parse(_sippts_options("pplsip", rng)))[0].tool == "sippts"
    spoofed = identify(parse(_sippts_options("Zoiper rv2.10.20.0", rng)))
    assert (spoofed[0].tool, spoofed[0].kind) == ("sippts", "attack_tool")
    zoiper = next(m for m in spoofed if m.tool == "Zoiper")
    assert zoiper.confidence < 0.5 and "spoofed" in zoiper.evidence[-1]


def test_nmap_sip_service_probe():
    """Nmap's SIPOptions service probe, as nmap-service-probes defines it (and as honeypots
    log it)."""
    data = (
        b"OPTIONS sip:nm SIP/2.0\r\nVia: SIP/2.0/TCP nm;branch=foo\r\n"
        b"From: <sip:nm@nm>;tag=root\r\nTo: <sip:nm2@nm2>\r\nCall-ID: 50000\r\n"
        b"CSeq: 42 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n"
        b"Contact: <sip:nm@nm>\r\nAccept: application/sdp\r\n\r\n"
    )
    top = identify(parse(data))[0]
    assert top.tool == "Nmap" and len(top.evidence) == 2


def test_smap_names_itself():
    """smap is built on sipsak's code and is not packaged here; its exact header layout is
    not documented, so this message takes sipsak's captured OPTIONS and puts smap's name
    where sipsak puts its own (From user, User-Agent)."""
    data = (TOOLS / "sipsak_options.sip").read_bytes().replace(b"sipsak", b"smap")
    top = identify(parse(data))[0]
    assert top.tool == "smap"


def phone(ua: str, header: str = "User-Agent") -> bytes:
    """A REGISTER shaped as ordinary phones write it, with a given agent string."""
    return (
        "REGISTER sip:pbx.example.net SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.7:5062;rport;branch=z9hG4bKPj7c1d6e0f9a2b4c3d\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:201@pbx.example.net>;tag=f3a9c2d41b8e4f7a\r\n"
        "To: <sip:201@pbx.example.net>\r\n"
        "Call-ID: 5d0b2c4e8f1a4b6c9d3e7f2a1b0c4d5e\r\n"
        "CSeq: 41207 REGISTER\r\n"
        "Contact: <sip:201@192.0.2.7:5062;ob>\r\n"
        "Expires: 300\r\n"
        f"{header}: {ua}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


WILD = [
    ("friendly-request", "SIPVicious"),
    ("sundayddr", "sundayddr"),
    ("sipcli/v1.8", "sipcli"),
    ("VaxSIPUserAgent/3.1", "VaxSIPUserAgent"),
    ("PortSIP VoIP SDK 11.2", "PortSIP VoIP SDK"),
    ("iWar", "iWar"),
    ("sip-scan", "sip-scan"),
    ("pplsip", "sippts"),
    ("Cisco-SIPGateway/IOS-12.x", "Cisco gateway spoofer"),
    ("Elite 1.0 Brcm Callctrl/1.5.1.0 MxSF/v.3.2.6.26", "inviteflood"),
    ("Bad Guy Scripting Host", "Sip Send Fun"),
    ("Nmap NSE", "Nmap"),
    ("siparmyknife", "SIP Army Knife"),
]


@pytest.mark.parametrize(("ua", "tool"), WILD, ids=[w[0] for w in WILD])
def test_user_agents_seen_in_the_wild(ua, tool):
    """Scanner User-Agents reported by honeypots and block lists, in an ordinary REGISTER."""
    top = identify(parse(phone(ua)))[0]
    assert (top.tool, top.kind) == (tool, "attack_tool")


CLIENTS = [
    ("baresip v3.10.1 (x86_64/linux)", "baresip"),
    ("Linphone Desktop/5.2.4 (belle-sip/5.2.0)", "Linphone"),
    ("LinphoneAndroid/5.1.2 (belle-sip/5.2.0)", "Linphone"),
    ("MicroSIP/3.21.3", "MicroSIP"),
    ("Zoiper rv2.10.20.0", "Zoiper"),
    ("Z 5.6.4 v2.10.20.4", "Zoiper"),
    ("Bria 6 release 6.6.2 stamp 109553", "Bria"),
    ("X-Lite release 5.8.3 stamp 102651", "Bria"),
    ("Yealink SIP-T46S 66.85.0.5", "Yealink"),
    ("PolycomVVX-VVX_410-UA/6.4.3.5001", "Polycom"),
    ("Grandstream GXP2170 1.0.11.23", "Grandstream"),
    ("Asterisk PBX 18.20.0", "Asterisk"),
    ("FPBX-16.0.33(18.20.0)", "Asterisk"),
    ("FreeSWITCH-mod_sofia/1.10.11-release~64bit", "FreeSWITCH"),
    ("kamailio (5.7.4 (x86_64/linux))", "Kamailio"),
    ("OpenSIPS (3.4.3 (x86_64/linux))", "OpenSIPS"),
]


@pytest.mark.parametrize(("ua", "client"), CLIENTS, ids=[c[0] for c in CLIENTS])
def test_legitimate_clients_are_not_attack_tools(ua, client):
    """Vendors' usual agent strings (these clients are not installed here)."""
    matches = identify(parse(phone(ua)))
    assert (matches[0].tool, matches[0].kind) == (client, "client")
    assert not [m for m in matches if m.is_attack]


def test_server_header_of_a_response_names_a_pbx():
    data = (
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bKx1\r\n"
        b"From: <sip:201@pbx>;tag=1\r\nTo: <sip:201@pbx>;tag=2\r\nCall-ID: c1\r\n"
        b"CSeq: 1 OPTIONS\r\nServer: FreeSWITCH-mod_sofia/1.10.11-release~64bit\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    assert identify(parse(data))[0].tool == "FreeSWITCH"


def test_spoofed_phone_user_agent_on_svmap_traffic():
    data = (TOOLS / "svmap_options.sip").read_bytes()
    data = data.replace(b"User-Agent: friendly-scanner", b"User-Agent: Yealink SIP-T46S 66.85.0.5")
    matches = identify(parse(data))
    assert matches[0].tool == "SIPVicious svmap"
    yealink = next(m for m in matches if m.tool == "Yealink")
    assert yealink.confidence < 0.5 and "spoofed" in yealink.evidence[-1]


def test_bare_asterisk_is_weak_and_versioned_asterisk_is_a_client():
    bare = identify(parse(phone("Asterisk PBX")))
    assert [(m.tool, m.confidence) for m in bare] == [("Asterisk spoofer", 0.3)]
    assert identify(parse(phone("Asterisk PBX 20.5.0")))[0].kind == "client"


def test_no_match_for_an_unknown_agent_and_evidence_is_escaped():
    assert identify(parse(phone("ACME Phone 1.0"))) == []
    (match,) = identify(parse(phone("sundayddr\x1b[31m")))
    assert "\x1b" not in match.evidence[0] and "\\x1b" in match.evidence[0]


# -- the catalogue file ----------------------------------------------------------------------
def test_catalogue_names_every_tool_the_brief_lists():
    names = load_catalogue().names("attack_tool")
    for tool in ("SIPVicious svmap", "SIPVicious svwar", "SIPVicious svcrack", "sipsak",
                 "SIPp", "PROTOS c07-sip", "inviteflood", "SIPSCAN", "Sip Send Fun", "VoIPER",
                 "sippts", "smap"):  # fmt: skip
        assert tool in names
    assert "Kamailio" in load_catalogue().names("client")


BAD_CATALOGUES = [
    ('[[tool]]\nname = "x"\nkind = "evil"\n', "kind must be"),
    ('[[tool]]\nname = "x"\nkind = "client"\n', "no signature"),
    ('[[tool]]\nkind = "client"\n', "without a name"),
    (
        '[[tool]]\nname = "x"\nkind = "client"\n[[tool.signature]]\nmatch = { From = "(a+)+" }'
        '\nconfidence = 0.5\nevidence = "e"\n',
        "nested repeat",
    ),
    (
        '[[tool]]\nname = "x"\nkind = "client"\n[[tool.signature]]\nmatch = { From = "a" }'
        '\nconfidence = 1.5\nevidence = "e"\n',
        "confidence",
    ),
    (
        '[[tool]]\nname = "x"\nkind = "client"\n[[tool.signature]]\nmatch = { From = "a" }'
        "\nconfidence = 0.5\n",
        "evidence",
    ),
    (
        '[[tool]]\nname = "x"\nkind = "client"\n[[tool.signature]]\nmatch = { "Via.tag" = "a" }'
        '\nconfidence = 0.5\nevidence = "e"\n',
        "unknown part",
    ),
    (
        '[[tool]]\nname = "x"\nfamily = "y"\nkind = "client"\n[[tool.signature]]\n'
        'match = { From = "a" }\nconfidence = 0.5\nevidence = "e"\n',
        "unknown family",
    ),
    ("[[tool]\n", "line 1"),
]


@pytest.mark.parametrize(("text", "reason"), BAD_CATALOGUES, ids=[b[1] for b in BAD_CATALOGUES])
def test_bad_catalogues_are_refused(tmp_path, text, reason):
    path = tmp_path / "fp.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CatalogueError, match=reason.replace("(", r"\(")):
        load_catalogue(path)


def test_identify_never_raises_on_damaged_captures():
    """Flip, cut and repeat bytes of real captures: identify answers, it does not raise."""
    from siptrap.sip import ParseError

    rng = random.Random(1)
    captures = [p.read_bytes() for p in sorted(TOOLS.glob("*.sip"))]
    for _ in range(400):
        data = bytearray(rng.choice(captures))
        for _ in range(rng.randint(1, 8)):
            pos = rng.randrange(len(data))
            data[pos : pos + 1] = bytes([rng.randrange(256)]) * rng.randint(0, 3)
        try:
            msg = parse(bytes(data))
        except ParseError:
            continue
        for match in identify(msg):
            assert 0 < match.confidence < 1 and match.evidence
