"""The honeypot against the real tools attackers and operators use, on loopback:
SIPVicious (svmap, svwar, svcrack), sipsak, SIPp, a TLS client, the RFC 4475 messages,
and tshark reading back every response siptrap sent."""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dpkt
import pytest

from conftest import DATA, RFC4475, RFC4475_STATUS, require_tool, rfc4475
from siptrap.sip import Request, Response, parse
from siptrap.sip.transaction import transaction_key
from siptrap_proc import Siptrap, free_port, run_tool

pytestmark = pytest.mark.tools

PBX_CONFIG = """
[sensor]
name = "test-pbx"
personality = "asterisk"

[console]
summary_interval = 1

[[extensions]]
users = "100-109"
password = "1234"
behaviour = "answer"

[[extensions]]
users = "200,201,205"
password = "secret"
behaviour = "ring"

[[extensions]]
users = "300"
behaviour = "busy"
"""

PHONE_CONFIG = """
[sensor]
name = "test-phone"
personality = "yealink"

[[extensions]]
users = "400"
behaviour = "answer"
answer_after = 0.2
call_duration = 20

[[extensions]]
users = "401"
behaviour = "ring"
"""

EXPECTED_EXTENSIONS = {str(n) for n in range(100, 110)} | {"200", "201", "205", "300"}


@pytest.fixture(scope="module")
def pbx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Siptrap]:
    honeypot = Siptrap(tmp_path_factory.mktemp("pbx") / "data", PBX_CONFIG).start()
    yield honeypot
    assert honeypot.stop() == 0


@pytest.fixture(scope="module")
def phone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Siptrap]:
    honeypot = Siptrap(tmp_path_factory.mktemp("phone") / "data", PHONE_CONFIG).start()
    yield honeypot
    assert honeypot.stop() == 0


def svtool(name: str) -> str:
    return require_tool(f"sipvicious_{name}")


def test_svmap_reports_the_personality(pbx: Siptrap) -> None:
    out = run_tool([svtool("svmap"), "-p", str(pbx.port), "127.0.0.1"])
    assert f"127.0.0.1:{pbx.port}" in out
    assert "Asterisk PBX 16.28.0" in out


def test_svwar_finds_exactly_the_configured_extensions(pbx: Siptrap) -> None:
    out = run_tool(
        [svtool("svwar"), "-e100-120,195-210,295-310", "-p", str(pbx.port), "127.0.0.1"],
        timeout=120,
    )
    found = set(re.findall(r"^\|\s*(\d+)\s*\|", out, re.M))
    assert found == EXPECTED_EXTENSIONS, out
    assert re.search(r"\|\s*300\s*\|\s*noauth", out)
    assert re.search(r"\|\s*101\s*\|\s*reqauth", out)


def test_svcrack_finds_the_weak_password_and_every_attempt_is_stored(pbx: Siptrap) -> None:
    out = run_tool(
        [svtool("svcrack"), "-u", "104", "-r", "1200-1240", "-p", str(pbx.port), "127.0.0.1"]
    )
    assert re.search(r"\|\s*104\s*\|\s*1234\s*\|", out), out
    success = pbx.wait_for(
        lambda e: (
            e["event"] == "sip.auth.attempt" and e["username"] == "104" and e["result"] == "success"
        )
    )
    assert success and success[0]["password"] == "1234"
    time.sleep(1.5)  # the SQLite writer batches
    rows = (
        pbx.db()
        .execute("select result, password from credentials where username = '104'")
        .fetchall()
    )
    assert len(rows) >= 35  # 1200..1234 tried before the hit
    assert all(password is not None for _, password in rows), rows
    guesses = {password for result, password in rows if result == "failure"}
    assert {"1200", "1233"} <= guesses
    assert ("success", "1234") in rows


def test_sipsak_options(pbx: Siptrap) -> None:
    sipsak = require_tool("sipsak")
    out = run_tool([sipsak, "-vv", "-s", f"sip:100@127.0.0.1:{pbx.port}"])
    assert "SIP/2.0 200 OK" in out
    assert "Allow: INVITE, ACK, CANCEL, OPTIONS" in out


def test_sipsak_options_over_tls(pbx: Siptrap) -> None:
    sipsak = require_tool("sipsak")
    out = run_tool(
        [
            sipsak,
            "--transport=tls",
            "--tls-ignore-cert-failure",
            "-vv",
            "-s",
            f"sip:100@127.0.0.1:{pbx.port + 1}",
        ]
    )
    assert "SIP/2.0 200 OK" in out, out
    opened = pbx.wait_for(
        lambda e: e["event"] == "transport.connection.opened" and e["transport"] == "tls"
    )
    assert opened and opened[0]["tls_version"] in ("TLSv1.2", "TLSv1.3")


def test_sipsak_register_right_and_wrong_password(pbx: Siptrap) -> None:
    sipsak = require_tool("sipsak")
    uri = f"sip:201@127.0.0.1:{pbx.port}"
    base = [
        sipsak,
        "-U",
        "-C",
        "sip:201@127.0.0.1:5999",
        "-x",
        "60",
        "-u",
        "201",
        "-vvv",
        "-s",
        uri,
    ]
    good = run_tool([*base, "-a", "secret"])
    assert re.search(r"^SIP/2.0 200 OK", good, re.M), good
    assert "error" not in good
    bad = run_tool([*base, "-a", "wrong"])
    assert re.search(r"^SIP/2.0 403 Forbidden", bad, re.M), bad
    found = pbx.wait_for(lambda e: e["event"] == "sip.register.success" and e["username"] == "201")
    assert found
    for result in ("success", "failure"):
        assert pbx.wait_for(
            lambda e, r=result: (
                e["event"] == "sip.auth.attempt" and e["username"] == "201" and e["result"] == r
            )
        ), result


def sipp(target: Siptrap, *args: str, timeout: float = 60) -> str:
    """SIPp against the honeypot, run in the honeypot's temporary directory (SIPp writes
    its trace files into the working directory)."""
    binary = require_tool("sipp")
    local = free_port()
    return run_tool(
        [
            binary,
            f"127.0.0.1:{target.port}",
            "-p",
            str(local),
            "-nostdin",
            "-timeout",
            "30s",
            "-timeout_error",
            "-max_recv_loops",
            "100",
            *args,
        ],
        timeout=timeout,
        cwd=target.data_dir.parent,
    )


@pytest.mark.parametrize("transport", ["u1", "t1"])
def test_sipp_uac_calls_complete(phone: Siptrap, transport: str) -> None:
    out = sipp(
        phone, "-sn", "uac", "-s", "400", "-t", transport, "-m", "3", "-r", "3", "-trace_screen"
    )
    assert re.search(r"Successful call\s*\|\s*\d+\s*\|\s*3", out), out
    assert re.search(r"Failed call\s*\|\s*\d+\s*\|\s*0", out), out
    ended = phone.wait_for(lambda e: e["event"] == "sip.call.ended" and e["reason"] == "bye")
    assert ended and all(e["answered"] for e in ended)


def test_sipp_cancel_gets_200_and_487(phone: Siptrap) -> None:
    out = sipp(
        phone, "-sf", str(DATA / "sipp" / "uac_cancel.xml"), "-s", "401", "-m", "2", "-trace_screen"
    )
    assert re.search(r"Successful call\s*\|\s*\d+\s*\|\s*2", out), out
    assert phone.wait_for(lambda e: e["event"] == "sip.call.ended" and e["reason"] == "cancelled")


def test_sipp_stray_cancel_gets_481(phone: Siptrap) -> None:
    out = sipp(
        phone,
        "-sf",
        str(DATA / "sipp" / "stray_cancel.xml"),
        "-s",
        "401",
        "-m",
        "2",
        "-trace_screen",
    )
    assert re.search(r"Successful call\s*\|\s*\d+\s*\|\s*2", out), out


def _tls_request(sock: ssl.SSLSocket, data: bytes, want: set[int]) -> Response:
    sock.sendall(data)
    buffer = b""
    while True:
        chunk = sock.recv(65536)
        assert chunk, "connection closed"
        buffer += chunk
        while b"\r\n\r\n" in buffer:
            head, _, rest = buffer.partition(b"\r\n\r\n")
            length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
            if len(rest) < length:
                break
            message, buffer = head + b"\r\n\r\n" + rest[:length], rest[length:]
            response = parse(message)
            assert isinstance(response, Response)
            if response.status in want:
                return response


def test_tls_call_invite_ack_bye(phone: Siptrap) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    from siptrap.sip.build import build_request

    with socket.create_connection(("127.0.0.1", phone.port + 1), timeout=10) as raw:
        with context.wrap_socket(raw) as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
            local = f"127.0.0.1:{tls.getsockname()[1]}"
            common = {
                "from_": f"<sip:caller@{local}>;tag=tlscall1",
                "to": f"<sip:400@127.0.0.1:{phone.port + 1}>",
                "call_id": "tls-call-1@127.0.0.1",
                "contact": f"<sip:caller@{local};transport=tls>",
            }
            sdp = (
                b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                b"m=audio 40000 RTP/AVP 0\r\n"
            )
            invite = build_request(
                "INVITE",
                f"sips:400@127.0.0.1:{phone.port + 1}",
                cseq=1,
                via=f"SIP/2.0/TLS {local};branch=z9hG4bKtls1",
                body=sdp,
                headers=[("Content-Type", "application/sdp")],
                **common,
            )
            ok = _tls_request(tls, invite, {200})
            assert b"m=audio" in ok.body
            to_value = ok.header("to") or ""
            ack = build_request(
                "ACK",
                f"sips:400@127.0.0.1:{phone.port + 1}",
                cseq=1,
                via=f"SIP/2.0/TLS {local};branch=z9hG4bKtls2",
                **{**common, "to": to_value},
            )
            tls.sendall(ack)
            bye = build_request(
                "BYE",
                f"sips:400@127.0.0.1:{phone.port + 1}",
                cseq=2,
                via=f"SIP/2.0/TLS {local};branch=z9hG4bKtls3",
                **{**common, "to": to_value},
            )
            assert _tls_request(tls, bye, {200}).cseq.method == "BYE"  # type: ignore[union-attr]
    ended = phone.wait_for(
        lambda e: e["event"] == "sip.call.ended" and e.get("call_id") == "tls-call-1@127.0.0.1"
    )
    assert ended and ended[0]["reason"] == "bye" and ended[0]["transport"] == "tls"


def _reply_key(data: bytes) -> tuple[str, str]:
    msg = parse(data)
    via = msg.top_via
    return (msg.call_id or "", via.branch or "" if via else "")


def test_rfc4475_over_udp(pbx: Siptrap) -> None:
    files = sorted(RFC4475.glob("*.dat"))
    replies: dict[tuple[str, str], set[int]] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        for path in files:
            sock.sendto(path.read_bytes(), ("127.0.0.1", pbx.port))
            time.sleep(0.02)
        deadline = time.time() + 3
        while time.time() < deadline:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            replies.setdefault(_reply_key(data), set()).add(int(data[8:11]))
    # Some files share branch, sent-by and method: RFC 3261 17.2.3 makes the later ones
    # retransmissions of the first, answered with the first one's response.
    first_of_key: dict[object, str] = {}
    for path in files:
        msg = parse(path.read_bytes())
        if isinstance(msg, Request) and msg.top_via is not None:
            first_of_key.setdefault(transaction_key(msg), path.stem)
    checked = 0
    for name, status in RFC4475_STATUS.items():
        msg = parse(rfc4475(name))
        assert isinstance(msg, Request)
        if first_of_key[transaction_key(msg)] != name:
            continue
        got = replies.get(_reply_key(rfc4475(name)), set())
        assert status in got, (name, got)
        checked += 1
    assert checked >= 20
    for name in ("bcast", "bigcode", "noreason", "unreason", "scalarlg"):
        assert _reply_key(rfc4475(name)) not in replies, name  # responses get no answer
    assert pbx.proc is not None and pbx.proc.poll() is None  # still running
    time.sleep(1.5)
    stored = {raw for (raw,) in pbx.db().execute("select raw from messages where direction='in'")}
    for path in files:
        assert path.read_bytes() in stored, path.name


def test_tshark_finds_no_malformed_response(pbx: Siptrap, phone: Siptrap, tmp_path: Path) -> None:
    """Every response and request siptrap sent in this module, dissected by tshark."""
    tshark = require_tool("tshark")
    time.sleep(1.5)
    rows = []
    for honeypot in (pbx, phone):
        rows += (
            honeypot.db()
            .execute(
                "select raw, src_ip, src_port, dst_ip, dst_port, transport from messages "
                "where direction='out' and transport='udp'"
            )
            .fetchall()
        )
    assert len(rows) > 100
    pcap = tmp_path / "sent.pcap"
    with pcap.open("wb") as handle:
        writer = dpkt.pcap.Writer(handle, linktype=dpkt.pcap.DLT_RAW)
        for i, (raw, src_ip, src_port, dst_ip, dst_port, _) in enumerate(rows):
            udp = dpkt.udp.UDP(sport=dst_port, dport=src_port, data=raw)
            udp.ulen = len(udp)
            ip = dpkt.ip.IP(
                src=socket.inet_aton(dst_ip),
                dst=socket.inet_aton(src_ip),
                p=dpkt.ip.IP_PROTO_UDP,
                data=udp,
            )
            ip.len = len(ip)
            writer.writepkt(bytes(ip), ts=1_700_000_000 + i)
    decode = [arg for h in (pbx, phone) for arg in ("-d", f"udp.port=={h.port},sip")]
    bad = subprocess.run(
        [
            tshark,
            "-n",
            "-r",
            str(pcap),
            *decode,
            "-Y",
            "_ws.malformed || _ws.expert.severity == error",
            "-T",
            "fields",
            "-e",
            "frame.number",
            "-e",
            "sip.Status-Line",
            "-e",
            "_ws.expert.message",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert bad.stdout.strip() == "", bad.stdout
    sip = subprocess.run(
        [tshark, "-n", "-r", str(pcap), *decode, "-Y", "sip", "-T", "fields", "-e", "frame.number"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert len(sip.stdout.split()) == len(rows)
