"""HEP v3 output: every SIP message in and out, sent to HOMER or sngrep.

HEP (the Homer Encapsulation Protocol, version 3) wraps one captured message in a
header of typed chunks: the IP family and protocol, both addresses and ports, the
capture time, the capture agent id, an optional authentication key, the payload and a
correlation id (the Call-ID). siptrap sends the exact bytes it received or sent, with
the addresses the socket reported: a received message goes from the attacker to the
honeypot, a sent one the other way. TLS messages are sent as TCP (decrypted).

Over UDP each message is one datagram; over TCP the packets follow one another on one
connection (HEP carries its own length). A failed send drops the batch (counted) and
the next batch, a few seconds later, tries again.
"""

from __future__ import annotations

import ipaddress
import logging
import struct

from ..events.record import Event, Peer
from .link import Link
from .plugin import selection
from .settings import HepOutput, split_address

log = logging.getLogger(__name__)
PROTO_SIP = 1
_CHUNK = struct.Struct("!HHH")  # vendor, type, length (with these 6 bytes)


def chunk(kind: int, value: bytes) -> bytes:
    return _CHUNK.pack(0, kind, _CHUNK.size + len(value)) + value


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    addr = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def endpoints(event: Event) -> tuple[tuple[str, int], tuple[str, int]]:
    """(source, destination) of the message an event carries."""
    peer = event.peer
    assert peer is not None
    remote, local = (peer.src_ip, peer.src_port), (peer.dst_ip, peer.dst_port)
    return (local, remote) if event.direction == "out" else (remote, local)


def encode(event: Event, capture_id: int, password: str = "") -> bytes | None:
    """The HEP v3 packet of one message event, or None if it carries no message."""
    peer: Peer | None = event.peer
    if event.raw is None or peer is None or event.direction not in ("in", "out"):
        return None
    (sip, sport), (dip, dport) = endpoints(event)
    try:
        src, dst = _address(sip), _address(dip)
    except ValueError:
        return None
    if src.version != dst.version:  # one end mapped, the other not: write both as IPv6
        src = ipaddress.IPv6Address(f"::ffff:{src}") if src.version == 4 else src
        dst = ipaddress.IPv6Address(f"::ffff:{dst}") if dst.version == 4 else dst
    v4 = src.version == 4
    seconds = int(event.ts)
    micros = round((event.ts - seconds) * 1e6) % 1_000_000
    chunks = [
        chunk(1, bytes([2 if v4 else 10])),
        chunk(2, bytes([17 if peer.transport == "udp" else 6])),
        chunk(3 if v4 else 5, src.packed),
        chunk(4 if v4 else 6, dst.packed),
        chunk(7, struct.pack("!H", sport & 0xFFFF)),
        chunk(8, struct.pack("!H", dport & 0xFFFF)),
        chunk(9, struct.pack("!I", seconds & 0xFFFFFFFF)),
        chunk(10, struct.pack("!I", micros)),
        chunk(11, bytes([PROTO_SIP])),
        chunk(12, struct.pack("!I", capture_id)),
    ]
    if password:
        chunks.append(chunk(14, password.encode()))
    call_id = event.fields.get("call_id")
    if call_id:
        chunks.append(chunk(17, str(call_id).encode("utf-8", "backslashreplace")[:255]))
    chunks.append(chunk(15, event.raw[:65000]))
    body = b"".join(chunks)
    if len(body) + 6 > 0xFFFF:
        return None
    return b"HEP3" + struct.pack("!H", len(body) + 6) + body


class HepSink:
    def __init__(self, settings: HepOutput) -> None:
        self.settings = settings
        self.name = settings.label
        self.queue_size = settings.queue_size
        self.select = selection(settings)
        self.scheme, self.host, self.port = split_address(settings.address, ("udp", "tcp"))
        self.sent = 0
        self.dropped = 0
        self.link = Link("hep", self.name, self.scheme, self.host, self.port)

    def open(self) -> None:
        pass

    def write(self, events: list[Event]) -> None:
        s = self.settings
        packets = [
            p
            for e in events
            if e.raw is not None and self.select(e.id)
            for p in (encode(e, s.capture_id, s.password),)
            if p is not None
        ]
        if not packets:
            return
        if not self.link.send(packets, s.address):
            self.dropped += len(packets)
            return
        self.sent += len(packets)

    def close(self) -> None:
        self.link.close()
