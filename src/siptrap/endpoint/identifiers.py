"""Fresh identifiers shaped like a personality's: tags, Call-IDs, branches, SDP ids.

Every value comes from the operating system's random source (`os.urandom`, what
`secrets` uses), so none repeats or can be predicted; only the shape (length, alphabet,
prefixes) follows the product being imitated. The bytes are drawn 4 KiB at a time into
a pool per thread (a reply needs a tag and often a branch: one `getrandom` system call
each, a few µs, was a measurable part of answering an OPTIONS); a forked child starts
with an empty pool, so it never repeats its parent's values.
"""

from __future__ import annotations

import os
import threading
import uuid

POOL = 4096  # bytes drawn from os.urandom at a time


class _Pool(threading.local):
    def __init__(self) -> None:
        self.data = b""
        self.pos = 0

    def take(self, n: int) -> bytes:
        pos = self.pos
        if pos + n > len(self.data):
            self.data, pos = os.urandom(max(POOL, n)), 0
        self.pos = pos + n
        return self.data[pos : pos + n]


_pool = _Pool()


def _forget() -> None:
    _pool.data, _pool.pos = b"", 0


os.register_at_fork(after_in_child=_forget)


def token_bytes(n: int) -> bytes:
    return _pool.take(n)


def token_hex(n: int) -> str:
    return _pool.take(n).hex()


def randbelow(bound: int) -> int:
    """A uniform integer in [0, bound), by rejection (no modulo bias)."""
    size = (bound.bit_length() + 7) // 8 + 1
    span = 256**size
    limit = span - span % bound
    while True:
        value = int.from_bytes(_pool.take(size), "little")
        if value < limit:
            return value % bound


def _uuid4() -> str:
    return str(uuid.UUID(bytes=token_bytes(16), version=4))


def tag(style: str) -> str:
    if style == "pjsip-uuid":
        return _uuid4()
    if style == "cisco":
        return f"{token_hex(4).upper()}-{token_hex(2)[:3].upper()}"
    if style == "yealink":
        return str(randbelow(9 * 10**9) + 10**9)
    if style == "polycom":
        return f"{token_hex(4).upper()}-{token_hex(4).upper()}"
    return "as" + token_hex(4)


def branch(style: str) -> str:
    if style == "pjsip-uuid":
        return "z9hG4bKPj" + _uuid4()
    if style == "cisco":
        return "z9hG4bK" + token_hex(5).upper()
    if style == "yealink":
        return "z9hG4bK" + str(randbelow(9 * 10**9) + 10**9)
    return "z9hG4bK" + token_hex(4)


def call_id(style: str, host: str) -> str:
    if style == "pjsip-uuid":
        return _uuid4()
    if style == "cisco":
        parts = [token_hex(4).upper() for _ in range(4)]
        return "-".join(parts) + f"@{host}"
    return f"{token_hex(16)}@{host}"


def sdp_session_id() -> int:
    """An NTP-like session id as Asterisk and most phones write it."""
    return randbelow(2**31 - 10**6) + 10**6
