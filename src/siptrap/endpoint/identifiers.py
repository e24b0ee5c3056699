"""Fresh identifiers shaped like a personality's: tags, Call-IDs, branches, SDP ids.

Every value comes from `secrets`, so none repeats or can be predicted; only the shape
(length, alphabet, prefixes) follows the product being imitated.
"""

from __future__ import annotations

import secrets
import uuid


def tag(style: str) -> str:
    if style == "pjsip-uuid":
        return str(uuid.UUID(bytes=secrets.token_bytes(16), version=4))
    if style == "cisco":
        return f"{secrets.token_hex(4).upper()}-{secrets.token_hex(2)[:3].upper()}"
    if style == "yealink":
        return str(secrets.randbelow(9 * 10**9) + 10**9)
    if style == "polycom":
        return f"{secrets.token_hex(4).upper()}-{secrets.token_hex(4).upper()}"
    return "as" + secrets.token_hex(4)


def branch(style: str) -> str:
    if style == "pjsip-uuid":
        return "z9hG4bKPj" + str(uuid.UUID(bytes=secrets.token_bytes(16), version=4))
    if style == "cisco":
        return "z9hG4bK" + secrets.token_hex(5).upper()
    if style == "yealink":
        return "z9hG4bK" + str(secrets.randbelow(9 * 10**9) + 10**9)
    return "z9hG4bK" + secrets.token_hex(4)


def call_id(style: str, host: str) -> str:
    if style == "pjsip-uuid":
        return str(uuid.UUID(bytes=secrets.token_bytes(16), version=4))
    if style == "cisco":
        parts = [secrets.token_hex(4).upper() for _ in range(4)]
        return "-".join(parts) + f"@{host}"
    if style in ("yealink", "polycom"):
        return f"{secrets.token_hex(16)}@{host}"
    return f"{secrets.token_hex(16)}@{host}"


def sdp_session_id() -> int:
    """An NTP-like session id as Asterisk and most phones write it."""
    return secrets.randbelow(2**31 - 10**6) + 10**6
