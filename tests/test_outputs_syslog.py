"""The syslog output: RFC 5424 messages received over UDP, TCP, TLS (RFC 5425, to a TLS
server on loopback) and a unix socket, parsed;
attacker text escaped; the shipped fail2ban filter bans on the lines (fail2ban-regex)."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import require_tool
from outputs_helpers import (
    ATTACKER,
    TcpReceiver,
    UdpReceiver,
    alert_event,
    auth_event,
    request_event,
    response_event,
)
from siptrap.outputs.settings import SyslogOutput
from siptrap.outputs.syslog import SyslogSink, escape

ROOT = Path(__file__).resolve().parents[1]
FILTER = ROOT / "examples" / "fail2ban" / "filter.d" / "siptrap.conf"
JAIL = ROOT / "examples" / "fail2ban" / "jail.d" / "siptrap.conf"

# RFC 5424: <PRI>VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG
RFC5424 = re.compile(
    r"<(?P<pri>\d{1,3})>1 (?P<ts>\S+) (?P<host>\S+) (?P<app>\S+) (?P<pid>\S+) (?P<msgid>\S+) "
    r"(?P<sd>-|(?:\[[^ \]]+(?: [^ =\]]+=\"(?:[^\"\\\]]|\\.)*\")*\])+) (?P<msg>.*)"
)


def parse(line: bytes) -> dict[str, str]:
    text = line.decode("ascii")  # every message is plain ASCII
    assert "\n" not in text and "\r" not in text
    match = RFC5424.fullmatch(text)
    assert match is not None, text
    return match.groupdict()


def sink(address: str, **kw: object) -> SyslogSink:
    s = SyslogSink(SyslogOutput(address=address, hostname="trap1", **kw))  # type: ignore[arg-type]
    s.open()
    return s


def test_udp_messages_parse_as_rfc5424() -> None:
    receiver = UdpReceiver()
    out = sink(f"udp:127.0.0.1:{receiver.port}", facility="local3")
    try:
        out.write([request_event(), auth_event(), alert_event("critical")])
        got = [parse(d) for d in receiver.receive(3)]
    finally:
        out.close()
        receiver.close()
    request, auth, alert = got
    assert int(request["pri"]) == 19 * 8 + 5  # local3, notice
    assert int(auth["pri"]) == 19 * 8 + 4  # warning
    assert int(alert["pri"]) == 19 * 8 + 2  # critical alert: crit
    assert request["ts"] == "2025-12-01T23:50:00.250000Z"
    assert request["host"] == "trap1" and request["app"] == "siptrap"
    assert request["msgid"] == "sip.request.received"
    assert request["sd"] == '[siptrap@32473 event="sip.request.received" sensor="s1"]'
    assert request["msg"].startswith(
        f"siptrap event=sip.request.received src={ATTACKER} sport=5062 proto=udp "
        "dst=127.0.0.1 dport=5060 "
    )
    assert (
        'method="REGISTER"' in request["msg"] and 'user_agent="friendly-scanner"' in request["msg"]
    )
    assert alert["msg"].startswith(f"siptrap event=analysis.alert.raised src={ATTACKER} ")
    assert out.sent == 3 and out.dropped == 0


def test_attacker_text_is_escaped_and_cannot_forge_the_source() -> None:
    receiver = UdpReceiver()
    out = sink(f"udp:127.0.0.1:{receiver.port}")
    evil = 'x" src=6.6.6.6 \r\n<13>1 fake\x1b[31m\u202e"'
    try:
        out.write([request_event(agent=evil)])
        (line,) = receiver.receive(1)
    finally:
        out.close()
        receiver.close()
    msg = parse(line)["msg"]
    assert msg.startswith(f"siptrap event=sip.request.received src={ATTACKER} ")
    assert f'user_agent="{escape(evil)}"' in msg
    assert escape(evil) == 'x\\" src=6.6.6.6 \\x0d\\x0a<13>1 fake\\x1b[31m\\u202e\\"'


def test_tcp_octet_counting_and_lf_framing() -> None:
    for framing in ("octet", "lf"):
        receiver = TcpReceiver()
        out = sink(f"tcp:127.0.0.1:{receiver.port}", framing=framing)
        try:
            out.write([request_event(), response_event()])
            out.write([auth_event()])
            deadline = time.monotonic() + 10
            while receiver.data.count(b"siptrap event=") < 3 and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            out.close()
        data = bytes(receiver.data)
        receiver.close()
        frames = []
        if framing == "octet":
            while data:
                length, _, rest = data.partition(b" ")
                frames.append(rest[: int(length)])
                data = rest[int(length) :]
        else:
            frames = data.split(b"\n")[:-1]
        assert [parse(f)["msgid"] for f in frames] == [
            "sip.request.received",
            "sip.response.sent",
            "sip.auth.attempt",
        ]
        assert receiver.connections == 1


def test_unix_datagram_socket(tmp_path: Path) -> None:
    path = tmp_path / "log"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(5)
    out = sink(f"unix:{path}")
    try:
        out.write([auth_event("alice")])
        got = parse(server.recv(65536))
    finally:
        out.close()
        server.close()
    assert got["msgid"] == "sip.auth.attempt" and 'username="alice"' in got["msg"]


def test_events_selection_and_receiver_down() -> None:
    receiver = UdpReceiver()
    out = sink(f"udp:127.0.0.1:{receiver.port}", events=("sip.auth",))
    try:
        out.write([request_event(), auth_event(), response_event()])
        (only,) = receiver.receive(1)
        assert parse(only)["msgid"] == "sip.auth.attempt"
    finally:
        receiver.close()
    # Nobody listens any more: the sends fail (refused: UDP learns it from the ICMP the
    # first send after the close brings back), are counted, never raised.
    for _ in range(3):
        out.write([auth_event()])
    out.close()
    assert out.dropped >= 2 and out.sent + out.dropped == 4


def test_tcp_receiver_down_is_counted() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = sink(f"tcp:127.0.0.1:{port}")
    out.write([auth_event(), auth_event()])
    out.write([auth_event()])  # within the retry pause: dropped without a connect
    out.close()
    assert out.sent == 0 and out.dropped == 3


@pytest.mark.tools
def test_fail2ban_filter_bans_on_the_received_lines(tmp_path: Path) -> None:
    """The shipped filter, run by fail2ban-regex over what a syslog receiver got (written
    one message a line, as an RFC 5424 file format writes them), and over the same
    messages in the traditional file format: it finds the sources siptrap bound, and not
    the address an attacker wrote into a User-Agent."""
    tool = require_tool("fail2ban-regex")
    receiver = UdpReceiver()
    out = sink(f"udp:127.0.0.1:{receiver.port}")
    events = [
        auth_event(src="203.0.113.5"),
        auth_event(src="203.0.113.5"),
        request_event(src="2001:db8::9", agent="x src=6.6.6.6 y"),
        response_event(),  # not a failure
        alert_event(),
    ]
    try:
        out.write(events)
        lines = [d.decode() for d in receiver.receive(len(events))]
    finally:
        out.close()
        receiver.close()
    log5424 = tmp_path / "siptrap-5424.log"
    log5424.write_text("\n".join(lines) + "\n")
    traditional = []
    for line in lines:
        m = parse(line.encode())
        traditional.append(f"Dec  1 23:50:00 {m['host']} {m['app']}[{m['pid']}]: {m['msg']}")
    logtrad = tmp_path / "siptrap-traditional.log"
    logtrad.write_text("\n".join(traditional) + "\n")
    for logfile in (log5424, logtrad):
        result = subprocess.run(
            [tool, "-v", str(logfile), str(FILTER)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert re.search(r"Lines: 5 lines, 0 ignored, 4 matched, 1 missed", result.stdout), (
            result.stdout
        )
        hosts = re.findall(r"^\|\s+(\S+)\s+\w{3} \w{3} \d\d \d\d:\d\d", result.stdout, re.M)
        assert sorted(hosts) == sorted(["203.0.113.5", "203.0.113.5", "2001:db8::9", ATTACKER])
        assert "6.6.6.6" not in hosts


@pytest.mark.tools
def test_fail2ban_accepts_the_jail(tmp_path: Path) -> None:
    """fail2ban-client's configuration test over the system's fail2ban configuration with
    only the shipped filter and jail in it (logpath pointed at a file of the test's)."""
    tool = require_tool("fail2ban-client")
    system = Path("/etc/fail2ban")
    if not (system / "jail.conf").exists():
        pytest.fail("fail2ban is installed without /etc/fail2ban/jail.conf")
    conf = tmp_path / "fail2ban"
    shutil.copytree(system, conf)
    for old in (conf / "jail.d").iterdir():
        old.unlink()
    log = tmp_path / "siptrap.log"
    log.touch()
    shutil.copy(FILTER, conf / "filter.d" / "siptrap.conf")
    jail = JAIL.read_text().replace("/var/log/siptrap.log", str(log))
    (conf / "jail.d" / "siptrap.conf").write_text(jail)
    test = subprocess.run([tool, "-c", str(conf), "-t"], capture_output=True, text=True, timeout=60)
    assert test.returncode == 0 and "configuration test is successful" in test.stdout, (
        test.stdout + test.stderr
    )
    dump = subprocess.run([tool, "-c", str(conf), "-d"], capture_output=True, text=True, timeout=60)
    assert "['add', 'siptrap', 'auto']" in dump.stdout
    assert "['set', 'siptrap', 'addaction', 'nftables-allports']" in dump.stdout
    assert "l4proto \\\\{ tcp, udp \\\\}" in dump.stdout  # UDP sources are banned too


def octet_frames(data: bytes) -> list[bytes]:
    """RFC 5425 / 6587 octet-counted frames (`LEN SP MSG`), every byte accounted for."""
    frames = []
    while data:
        length, space, rest = data.partition(b" ")
        assert space and length.isdigit(), data[:40]
        frames.append(rest[: int(length)])
        data = rest[int(length) :]
        assert len(frames[-1]) == int(length)
    return frames


class TlsListener:
    """A TLS server on loopback (the ssl module: OpenSSL) with a certificate of a test CA
    for 127.0.0.1, keeping the decrypted bytes of the connection it accepts."""

    def __init__(self, directory: Path) -> None:
        import ssl
        import threading

        from recon_pki import LabCA

        self.ca = LabCA(directory)
        cert, key = self.ca.issue(["127.0.0.1"])
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(10)
        self.port = self.sock.getsockname()[1]
        self.data = bytearray()
        self.handshakes = 0
        self._context = context
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        import ssl

        try:
            raw, _ = self.sock.accept()
        except OSError:
            return
        raw.settimeout(10)
        try:
            with self._context.wrap_socket(raw, server_side=True) as conn:
                self.handshakes += 1
                while chunk := conn.recv(65536):
                    self.data += chunk
        except (OSError, ssl.SSLError):
            return

    def received(self, count: int, timeout: float = 10.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if bytes(self.data).count(b"siptrap event=") >= count:
                return octet_frames(bytes(self.data))
            time.sleep(0.05)
        raise AssertionError(f"received only {bytes(self.data)!r}")

    def close(self) -> None:
        self.sock.close()


def test_tls_rfc5425_to_a_real_tls_listener(tmp_path: Path) -> None:
    listener = TlsListener(tmp_path)
    out = sink(f"tls:127.0.0.1:{listener.port}", ca_file=str(listener.ca.pem))
    try:
        out.write([request_event(), response_event()])
        out.write([auth_event()])
        frames = listener.received(3)
    finally:
        out.close()
        listener.close()
    assert [parse(f)["msgid"] for f in frames] == [
        "sip.request.received",
        "sip.response.sent",
        "sip.auth.attempt",
    ]
    assert out.sent == 3 and out.dropped == 0


def test_tls_receiver_with_a_certificate_not_trusted_is_counted_as_dropped(
    tmp_path: Path,
) -> None:
    from recon_pki import LabCA

    listener = TlsListener(tmp_path)
    other = LabCA(tmp_path, "another CA")  # the receiver's certificate is not from it
    out = sink(f"tls:127.0.0.1:{listener.port}", ca_file=str(other.pem))
    try:
        out.write([request_event()])
    finally:
        out.close()
        listener.close()
    assert out.sent == 0 and out.dropped == 1
    assert listener.handshakes == 0 and not listener.data  # nothing sent, not even in clear


def test_tls_settings_are_checked() -> None:
    from siptrap.outputs.settings import check_output

    assert check_output(SyslogOutput(address="tls:127.0.0.1:6514")) is None
    assert "ca_file" in str(check_output(SyslogOutput(address="tcp:h:1", ca_file="/etc/hosts")))
    assert "ca_file" in str(check_output(SyslogOutput(address="tls:h:1", ca_file="/nonexistent")))
