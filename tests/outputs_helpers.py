"""Events and SIP messages for the output tests (a REGISTER in, its 401 out, over UDP
and over TCP), and a few loopback receivers."""

from __future__ import annotations

import socket
import threading
from typing import Any

from siptrap.events.record import Event, Peer

TS = 1_764_633_000.25  # 2025-12-01T23:50:00.25Z
ATTACKER = "198.51.100.7"
HONEYPOT = "127.0.0.1"


def register(user: str = "100", call_id: str = "abc@x", agent: str = "friendly-scanner") -> bytes:
    return (
        f"REGISTER sip:{HONEYPOT} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {ATTACKER}:5062;branch=z9hG4bK-1\r\n"
        f"From: <sip:{user}@{HONEYPOT}>;tag=1\r\n"
        f"To: <sip:{user}@{HONEYPOT}>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 REGISTER\r\n"
        f"User-Agent: {agent}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def unauthorized(call_id: str = "abc@x") -> bytes:
    return (
        "SIP/2.0 401 Unauthorized\r\n"
        f"Via: SIP/2.0/UDP {ATTACKER}:5062;branch=z9hG4bK-1\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 REGISTER\r\n"
        'WWW-Authenticate: Digest realm="asterisk", nonce="1"\r\n'
        "Content-Length: 0\r\n\r\n"
    ).encode()


def peer(transport: str = "udp", src: str = ATTACKER, connection: int = 0) -> Peer:
    return Peer(transport, src, 5062, HONEYPOT, 5060, connection)


def request_event(
    transport: str = "udp",
    src: str = ATTACKER,
    *,
    ts: float = TS,
    agent: str = "friendly-scanner",
    call_id: str = "abc@x",
    connection: int = 0,
) -> Event:
    raw = register(call_id=call_id, agent=agent)
    fields: dict[str, Any] = {
        "method": "REGISTER",
        "request_uri": f"sip:{HONEYPOT}",
        "call_id": call_id,
        "cseq": 1,
        "from_user": "100",
        "user_agent": agent,
        "size": len(raw),
    }
    return Event(
        "sip.request.received", ts, "s1", peer(transport, src, connection), fields, raw, "in"
    )


def response_event(transport: str = "udp", *, ts: float = TS + 0.001, connection: int = 0) -> Event:
    raw = unauthorized()
    fields = {"status": 401, "reason": "Unauthorized", "method": "REGISTER", "call_id": "abc@x"}
    return Event(
        "sip.response.sent", ts, "s1", peer(transport, connection=connection), fields, raw, "out"
    )


def auth_event(username: str = "100", src: str = ATTACKER) -> Event:
    fields = {"method": "REGISTER", "username": username, "realm": "asterisk", "result": "bad"}
    return Event("sip.auth.attempt", TS, "s1", peer(src=src), fields)


def alert_event(severity: str = "high", tool: str = "friendly-scanner") -> Event:
    fields = {
        "alert_id": "a1",
        "kind": "message",
        "category": "scanning",
        "severity": severity,
        "tool": tool,
        "src_ip": ATTACKER,
        "count": 3,
        "targets": ["100"],
        "conclusions": ["a scan"],
        "update": 0,
        "first_seen": "2025-12-02T00:50:00Z",
    }
    return Event("analysis.alert.raised", TS, "s1", None, fields)


class UdpReceiver:
    """A UDP socket on loopback collecting datagrams."""

    def __init__(self, family: int = socket.AF_INET, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(5.0)
        self.port = self.sock.getsockname()[1]

    def receive(self, count: int) -> list[bytes]:
        return [self.sock.recv(65536) for _ in range(count)]

    def close(self) -> None:
        self.sock.close()


class TcpReceiver:
    """A TCP listener on loopback collecting the bytes of every connection."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(5.0)
        self.port = self.sock.getsockname()[1]
        self.data = bytearray()
        self.connections = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        self.connections += 1
        with conn:
            conn.settimeout(5.0)
            while True:
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                self.data += chunk

    def wait_for(self, size: int, timeout: float = 10.0) -> bytes:
        import time

        deadline = time.monotonic() + timeout
        while len(self.data) < size and time.monotonic() < deadline:
            time.sleep(0.02)
        return bytes(self.data)

    def close(self) -> None:
        self.sock.close()
