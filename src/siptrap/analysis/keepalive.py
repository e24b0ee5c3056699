"""NAT keep-alives: input that is not SIP and is no attack either (counted, never alerted
on)."""

from __future__ import annotations

STUN_COOKIE = b"\x21\x12\xa4\x42"


def is_keepalive(data: bytes) -> bool:
    """A NAT keep-alive: CRLFs only (RFC 5626), or a STUN message (RFC 5389: two zero bits,
    a length that is the rest of the datagram, the magic cookie; RFC 3489's classic STUN
    has no cookie, and is recognised by its binding request type and length)."""
    if not data.strip(b"\r\n"):
        return True
    if len(data) < 20 or data[0] & 0xC0:
        return False
    length = int.from_bytes(data[2:4], "big")
    if length != len(data) - 20 or length % 4:
        return False
    return data[4:8] == STUN_COOKIE or data[:2] == b"\x00\x01"
