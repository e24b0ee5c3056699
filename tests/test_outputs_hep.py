"""The HEP v3 output: sngrep's HEP listener receives the messages and writes them to a
pcap that tshark decodes (addresses, ports, times, SIP); HEP over TCP decoded chunk by
chunk; IPv6 and the message-less events."""

from __future__ import annotations

import ipaddress
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

from conftest import require_tool
from outputs_helpers import (
    ATTACKER,
    HONEYPOT,
    TcpReceiver,
    alert_event,
    request_event,
    response_event,
)
from siptrap.events.record import Event, Peer
from siptrap.outputs.hep import HepSink, encode
from siptrap.outputs.settings import HepOutput


def chunks(packet: bytes) -> dict[int, bytes]:
    """A HEP v3 packet's chunks by type (the test's own decoder)."""
    assert packet[:4] == b"HEP3"
    (total,) = struct.unpack("!H", packet[4:6])
    assert total == len(packet)
    out: dict[int, bytes] = {}
    pos = 6
    while pos < total:
        vendor, kind, length = struct.unpack("!HHH", packet[pos : pos + 6])
        assert vendor == 0 and length >= 6
        out[kind] = packet[pos + 6 : pos + length]
        pos += length
    assert pos == total
    return out


def split_stream(data: bytes) -> list[bytes]:
    packets = []
    while data:
        (total,) = struct.unpack("!H", data[4:6])
        packets.append(data[:total])
        data = data[total:]
    return packets


def test_encode_fields() -> None:
    event = request_event()
    c = chunks(encode(event, 2001, "secret") or b"")
    assert c[1] == b"\x02" and c[2] == b"\x11"  # IPv4, UDP
    assert c[3] == ipaddress.IPv4Address(ATTACKER).packed
    assert c[4] == ipaddress.IPv4Address(HONEYPOT).packed
    assert struct.unpack("!H", c[7])[0] == 5062 and struct.unpack("!H", c[8])[0] == 5060
    assert struct.unpack("!I", c[9])[0] == int(event.ts)
    assert struct.unpack("!I", c[10])[0] == 250000
    assert c[11] == b"\x01" and struct.unpack("!I", c[12])[0] == 2001
    assert c[14] == b"secret" and c[17] == b"abc@x" and c[15] == event.raw
    out = chunks(encode(response_event("tcp", connection=4), 7) or b"")
    assert out[2] == b"\x06" and 14 not in out  # TCP; no key configured
    assert out[3] == ipaddress.IPv4Address(HONEYPOT).packed  # sent: from the honeypot
    assert struct.unpack("!H", out[8])[0] == 5062
    v6 = Event(
        "sip.request.received",
        1.5,
        "s1",
        Peer("udp", "2001:db8::7", 5, "::1", 5060),
        {},
        b"X",
        "in",
    )
    c6 = chunks(encode(v6, 1) or b"")
    assert c6[1] == b"\x0a" and c6[5] == ipaddress.IPv6Address("2001:db8::7").packed
    assert c6[6] == ipaddress.IPv6Address("::1").packed
    assert encode(alert_event(), 1) is None


def test_hep_over_tcp() -> None:
    receiver = TcpReceiver()
    sink = HepSink(HepOutput(address=f"tcp:127.0.0.1:{receiver.port}"))
    sink.open()
    events = [request_event("tcp", connection=2), response_event("tcp", connection=2)]
    try:
        sink.write([*events, alert_event()])
        expected = sum(len(encode(e, 2001) or b"") for e in events)
        deadline = time.monotonic() + 10
        while len(receiver.data) < expected and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        sink.close()
    packets = split_stream(bytes(receiver.data))
    receiver.close()
    assert [chunks(p)[15] for p in packets] == [e.raw for e in events]
    assert sink.sent == 2


def _held(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


@pytest.mark.tools
def test_sngrep_hep_listener_receives_the_messages(tmp_path: Path) -> None:
    sngrep = require_tool("sngrep")
    tshark = require_tool("tshark")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    capture = tmp_path / "hep.pcap"
    proc = subprocess.Popen(
        [sngrep, "-N", "-q", "-F", "-L", f"udp:127.0.0.1:{port}", "-O", str(capture)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while not _held(port) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert _held(port), "sngrep did not open its HEP listener"
        sink = HepSink(HepOutput(address=f"udp:127.0.0.1:{port}", password="pw"))
        sink.open()
        events = [request_event(), response_event(), request_event(call_id="2@x", ts=2e9)]
        sink.write(events)
        sink.close()
        time.sleep(1.0)  # let sngrep write what it got
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    result = subprocess.run(
        [
            tshark, "-n", "-r", str(capture), "-T", "fields", "-E", "separator=|",
            "-e", "ip.src", "-e", "udp.srcport", "-e", "ip.dst", "-e", "udp.dstport",
            "-e", "sip.Method", "-e", "sip.Status-Code", "-e", "sip.Call-ID",
            "-e", "frame.time_epoch",
        ],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = [line.split("|") for line in result.stdout.splitlines()]
    assert rows == [
        [ATTACKER, "5062", HONEYPOT, "5060", "REGISTER", "", "abc@x", "1764633000.250000000"],
        [HONEYPOT, "5060", ATTACKER, "5062", "", "401", "abc@x", "1764633000.251000000"],
        [ATTACKER, "5062", HONEYPOT, "5060", "REGISTER", "", "2@x", "2000000000.000000000"],
    ]
