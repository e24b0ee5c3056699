"""Header names, compact forms, and the small lexical helpers every header shares."""

from __future__ import annotations

import re

COMPACT_FORMS: dict[str, str] = {
    "i": "call-id",
    "m": "contact",
    "e": "content-encoding",
    "l": "content-length",
    "f": "from",
    "t": "to",
    "v": "via",
    "s": "subject",
    "k": "supported",
    "c": "content-type",
    "o": "event",
    "u": "allow-events",
    "r": "refer-to",
    "b": "referred-by",
    "x": "session-expires",
    "y": "identity",
    "a": "accept-contact",
}

# Canonical spelling used when siptrap writes a header.
CANONICAL: dict[str, str] = {
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "www-authenticate": "WWW-Authenticate",
    "mime-version": "MIME-Version",
}

# Headers whose value is one item: a comma in them is part of the value or a defect.
SINGLE_VALUE: frozenset[str] = frozenset(
    {
        "call-id",
        "content-length",
        "content-type",
        "cseq",
        "from",
        "to",
        "max-forwards",
        "expires",
        "min-expires",
        "date",
        "user-agent",
        "server",
        "subject",
        "organization",
        "priority",
        "reply-to",
        "timestamp",
        "mime-version",
        "retry-after",
    }
)

# Headers whose values may be spread over several comma-separated items.
LIST_HEADERS: frozenset[str] = frozenset(
    {
        "via",
        "contact",
        "route",
        "record-route",
        "allow",
        "supported",
        "require",
        "proxy-require",
        "unsupported",
        "accept",
        "accept-encoding",
        "accept-language",
        "allow-events",
        "content-encoding",
        "in-reply-to",
        "path",
        "service-route",
    }
)

# The methods of RFC 3261 and its extensions (PRACK, SUBSCRIBE/NOTIFY, PUBLISH, INFO,
# REFER, MESSAGE, UPDATE).
SIP_METHODS: frozenset[str] = frozenset(
    {
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "OPTIONS",
        "REGISTER",
        "PRACK",
        "SUBSCRIBE",
        "NOTIFY",
        "PUBLISH",
        "INFO",
        "REFER",
        "MESSAGE",
        "UPDATE",
    }
)

TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")


_TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_NAME_CACHE: dict[str, str] = {}
_NAME_CACHE_MAX = 4096  # names are attacker data: the cache stops growing here


def normalise_name(name: str) -> str:
    """Lower-case a header name and expand a compact form: `v` -> `via`."""
    cached = _NAME_CACHE.get(name)
    if cached is not None:
        return cached
    low = name.strip().lower()
    low = COMPACT_FORMS.get(low, low)
    if len(_NAME_CACHE) < _NAME_CACHE_MAX:
        _NAME_CACHE[name] = low
    return low


def canonical_name(name: str) -> str:
    """The spelling siptrap uses when writing a header: `call-id` -> `Call-ID`."""
    low = normalise_name(name)
    return CANONICAL.get(low) or "-".join(part.capitalize() for part in low.split("-"))


def is_token(text: str) -> bool:
    return _TOKEN.fullmatch(text) is not None


def split_commas(value: str) -> list[str]:
    """Split a header value on commas outside quotes and angle brackets."""
    if "," not in value:
        return [value.strip()]
    return [item.strip() for item in _split_outside(value, ",", angle_brackets=True)]


def unquote(text: str) -> str:
    """Remove surrounding quotes and backslash escapes from a quoted-string."""
    text = text.strip()
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return unescape(text[1:-1])
    return text


def unescape(inner: str) -> str:
    """Resolve the backslash escapes (quoted-pairs) inside a quoted-string."""
    if "\\" not in inner:
        return inner
    out: list[str] = []
    escaped = False
    for ch in inner:
        if escaped:
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        else:
            out.append(ch)
    return "".join(out)


def quote(text: str) -> str:
    """Write text as a quoted-string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


Params = tuple[tuple[str, str | None], ...]


def parse_params(text: str) -> tuple[Params, bool]:
    """Parse `;name=value;flag` parameters. Returns them and whether one was empty (`;;`).

    Names are lower-cased (they are case-insensitive); values keep their case and lose the
    quotes of a quoted-string.
    """
    params: list[tuple[str, str | None]] = []
    empty = False
    for part in split_semicolons(text):
        part = part.strip()
        if not part:
            empty = True
            continue
        name, eq, value = part.partition("=")
        name = name.strip().lower()
        if not name:
            empty = True
            continue
        params.append((name, unquote(value) if eq else None))
    return tuple(params), empty


def split_semicolons(text: str) -> list[str]:
    """Split on semicolons outside quoted strings."""
    if '"' not in text:
        return text.split(";")
    return _split_outside(text, ";", angle_brackets=False)


def _split_outside(text: str, sep: str, *, angle_brackets: bool) -> list[str]:
    """Split `text` on `sep` where it stands outside quoted strings (and, if asked,
    outside <...>); backslash escapes inside quotes are honoured."""
    parts: list[str] = []
    start = 0
    quoted = False
    angle = 0
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif angle_brackets and ch == "<":
            angle += 1
        elif angle_brackets and ch == ">":
            angle = max(0, angle - 1)
        elif ch == sep and angle == 0:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def get_param(params: Params, name: str) -> str | None:
    for key, value in params:
        if key == name:
            return value
    return None


def has_param(params: Params, name: str) -> bool:
    return any(key == name for key, _ in params)


def format_params(params: Params) -> str:
    out = []
    for key, value in params:
        if value is None:
            out.append(";" + key)
        elif value == "" or is_token(value) or _is_host_like(value):
            out.append(f";{key}={value}")
        else:
            out.append(f";{key}={quote(value)}")
    return "".join(out)


def _is_host_like(value: str) -> bool:
    return all(ch in TOKEN_CHARS or ch in "[]:" for ch in value)
