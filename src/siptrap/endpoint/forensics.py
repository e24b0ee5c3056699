"""Traces attack tools leave in digest exchanges: the text SIPVicious hides in its From
tags, and the hashcat mode 11400 line of a captured MD5 digest response.
"""

from __future__ import annotations

from ..sip.auth import DigestCredentials, canonical_algorithm

_HEX = frozenset("0123456789abcdefABCDEF")


def decode_sipvicious_tag(tag: str) -> str | None:
    """The text SIPVicious hid in a From tag, or None if the tag is not of its making.

    svcrack, svwar and svmap build tags as hex(text + b"\\x01" + decimal random number):
    svcrack's text is `user:password`, svwar's the extension tried, svmap's the target
    address in hex.
    """
    text = tag.strip()
    if not text or len(text) % 2 or len(text) > 1024 or any(ch not in _HEX for ch in text):
        return None
    raw = bytes.fromhex(text)
    data, sep, rnd = raw.rpartition(b"\x01")
    if not sep or not data or not rnd or len(rnd) > 10 or not rnd.isdigit():
        return None
    if int(rnd) >= 2**32:
        return None
    return data.decode("utf-8", "replace")


# hashcat 11400 field limits (module_11400.c), over which it refuses the line.
# Caps for server, client, user, realm, method, in that order.
_HASHCAT_MAX = (512, 512, 116, 116, 246)


def hashcat_line(
    creds: DigestCredentials, method: str, client_ip: str, server_ip: str
) -> str | None:
    """The hashcat mode 11400 (SIP digest, MD5) line for these credentials.

    `$sip$*SERVER*CLIENT*USER*REALM*METHOD*URI_PREFIX*URI_RESOURCE*URI_SUFFIX*NONCE*
    CNONCE*NC*QOP*MD5*RESPONSE`, where hashcat rebuilds the uri as
    prefix:resource:suffix. When qop is sent without cnonce/nc the fields are left
    empty, matching how such clients compute. None when hashcat cannot take it: not
    Digest, not plain MD5, qop auth-int, a missing field, a `*` in a field, or a field
    over hashcat's limits.
    """
    if not creds.is_digest or canonical_algorithm(creds.algorithm) != "MD5":
        return None
    fields = (creds.username, creds.realm, creds.nonce, creds.uri, creds.response)
    if any(f is None for f in fields) or not creds.uri or not creds.nonce:
        return None
    response = (creds.response or "").lower()
    if len(response) != 32 or not set(response) <= _HEX:
        return None
    qop = (creds.qop or "").strip().lower()
    if qop == "auth-int":
        return None
    if qop == "auth" and creds.cnonce is not None and creds.nc is not None:
        cnonce, nc = creds.cnonce, creds.nc
    else:
        qop, cnonce, nc = "", "", ""
    prefix, resource, suffix = split_uri_for_hashcat(creds.uri)
    parts = [
        server_ip,
        client_ip,
        creds.username or "",
        creds.realm or "",
        method,
        prefix,
        resource,
        suffix,
        creds.nonce,
        cnonce,
        nc,
        qop,
        "MD5",
        response,
    ]
    if any("*" in part for part in parts):
        return None
    if any(len(part) > cap for part, cap in zip(parts, _HASHCAT_MAX, strict=False)):
        return None
    if len(parts[2]) + len(parts[3]) + 2 > 119 or len(creds.nonce) > 1024:
        return None
    return "$sip$*" + "*".join(parts)


def split_uri_for_hashcat(uri: str) -> tuple[str, str, str]:
    """Split so that prefix:resource:suffix (empty parts and their colons left out) == uri."""
    prefix, sep, rest = uri.partition(":")
    if not sep or not prefix or not rest:
        return "", uri, ""
    resource, sep, suffix = rest.rpartition(":")
    if not sep or not resource or not suffix:
        return prefix, rest, ""
    return prefix, resource, suffix
