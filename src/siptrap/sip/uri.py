"""SIP, SIPS and TEL URIs (RFC 3261 section 19.1, RFC 3966); other schemes kept opaque."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote as pct_quote
from urllib.parse import unquote as pct_unquote

from .headers import Params, format_params, get_param, parse_params

# Memo of parsed values: bounded (values are attacker data), short values only.
_CACHE_SIZE = 1024
_CACHE_TEXT = 512

SIP_SCHEMES = frozenset({"sip", "sips"})
KNOWN_SCHEMES = frozenset({"sip", "sips", "tel"})
_USER_SAFE = "-_.!~*'()&=+$,;?/"
_WS = re.compile(r"[ \t\r\n]")


@dataclass(frozen=True, slots=True)
class Uri:
    """A URI. `user` is unescaped; `text` is exactly what was read (or is built)."""

    scheme: str
    user: str | None = None
    password: str | None = None
    host: str | None = None
    port: int | None = None
    params: Params = ()
    headers: tuple[tuple[str, str], ...] = ()
    opaque: str | None = None
    text: str = ""
    defects: tuple[str, ...] = field(default=(), compare=False)

    def param(self, name: str) -> str | None:
        return get_param(self.params, name)

    @property
    def is_sip(self) -> bool:
        return self.scheme in SIP_SCHEMES

    @property
    def hostport(self) -> str:
        host = self.host or ""
        return host if self.port is None else f"{host}:{self.port}"

    def __str__(self) -> str:
        return self.text or self.format()

    def format(self) -> str:
        """Write the URI from its parts (escaping the user part)."""
        if self.opaque is not None:
            return f"{self.scheme}:{self.opaque}"
        if self.scheme == "tel":
            return f"tel:{self.user or ''}{format_params(self.params)}"
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(pct_quote(self.user, safe=_USER_SAFE, errors="surrogateescape"))
            if self.password is not None:
                out.append(":" + pct_quote(self.password, safe=_USER_SAFE))
            out.append("@")
        out.append(self.hostport)
        out.append(format_params(self.params))
        if self.headers:
            out.append("?")
            out.append("&".join(f"{k}={pct_quote(v, safe='')}" for k, v in self.headers))
        return "".join(out)


def make_uri(
    user: str | None,
    host: str,
    port: int | None = None,
    params: Params = (),
    scheme: str = "sip",
) -> Uri:
    """Build a SIP URI whose `text` is its canonical form."""
    uri = Uri(scheme=scheme, user=user, host=host, port=port, params=params)
    return Uri(scheme, user, None, host, port, params, (), None, uri.format())


# The common shape, read in one match: sip:user@host:port;params (no escapes, no headers).
_SIMPLE_SIP = re.compile(
    r"(sips?):(?:([A-Za-z0-9\-_.!~*'()&=+$,/]+)@)?([A-Za-z0-9\-.]+)(?::(\d{1,5}))?((?:;[^;?%\s]+)*)"
)


def parse_uri(text: str) -> Uri:
    """Parse a URI leniently. Never raises; problems are listed in `defects`.

    Results are immutable and a function of the text alone, so the last 1024
    short values are remembered: a message asks for the same value several times (its
    fields, its defect check, its response), and a scan repeats most of them."""
    if len(text) <= _CACHE_TEXT:
        return _parse_uri_cached(text)
    return _parse_uri(text)


def _parse_uri(text: str) -> Uri:
    simple = _SIMPLE_SIP.fullmatch(text)
    if simple is not None:
        port_text = simple.group(4)
        port = int(port_text) if port_text else None
        if port is None or port <= 65535:
            return _simple_uri(text, simple.groups(), port)
    text = text.strip()
    defects: list[str] = []
    if _WS.search(text):
        defects.append("whitespace_in_uri")
    scheme, colon, rest = text.partition(":")
    scheme_l = scheme.lower()
    if not colon or not scheme or not scheme.isascii() or not scheme[0].isalpha():
        return Uri(scheme="", opaque=text, text=text, defects=("bad_request_uri",))
    if scheme_l == "tel":
        number, _, ptext = rest.partition(";")
        params, empty = parse_params(ptext)
        if empty:
            defects.append("empty_param")
        return Uri(scheme="tel", user=number, params=params, text=text, defects=tuple(defects))
    if scheme_l not in SIP_SCHEMES:
        return Uri(scheme=scheme_l, opaque=rest, text=text, defects=tuple(defects))
    return _parse_sip(scheme_l, rest, text, defects)


def _simple_uri(text: str, groups: tuple[str | Any, ...], port: int | None) -> Uri:
    scheme, user, host, _, ptext = groups
    params: Params = ()
    defects: tuple[str, ...] = ()
    if ptext:
        params, empty = parse_params(ptext[1:])
        defects = ("empty_param",) if empty else ()
    return Uri(scheme, user, None, host.lower(), port, params, (), None, text, defects)


def _parse_sip(scheme: str, rest: str, text: str, defects: list[str]) -> Uri:
    user: str | None = None
    password: str | None = None
    at = rest.find("@")
    qmark = rest.find("?")
    if at != -1 and (qmark == -1 or at < qmark or rest.find("?", at) == -1):
        userinfo, hostpart = rest[:at], rest[at + 1 :]
        name, sep, pw = userinfo.partition(":")
        user = pct_unquote(name, errors="surrogateescape")
        password = pct_unquote(pw, errors="surrogateescape") if sep else None
    else:
        hostpart = rest
    headers: tuple[tuple[str, str], ...] = ()
    hostpart, q, htext = hostpart.partition("?")
    if q:
        headers = tuple(_parse_uri_headers(htext))
    hostport, _, ptext = hostpart.partition(";")
    params: Params = ()
    if ptext:
        params, empty = parse_params(ptext)
        if empty:
            defects.append("empty_param")
    host, port = _split_hostport(hostport.strip(), defects)
    return Uri(scheme, user, password, host, port, params, headers, None, text, tuple(defects))


def _parse_uri_headers(text: str) -> list[tuple[str, str]]:
    out = []
    for item in text.split("&"):
        name, _, value = item.partition("=")
        out.append((pct_unquote(name), pct_unquote(value, errors="surrogateescape")))
    return out


def _split_hostport(hostport: str, defects: list[str]) -> tuple[str | None, int | None]:
    if hostport.startswith("["):
        end = hostport.find("]")
        if end == -1:
            defects.append("bad_request_uri")
            return hostport, None
        host, portpart = hostport[: end + 1], hostport[end + 1 :]
        portpart = portpart[1:] if portpart.startswith(":") else portpart
    else:
        host, _, portpart = hostport.partition(":")
    port: int | None = None
    if portpart:
        if portpart.isdigit() and portpart.isascii() and int(portpart) <= 65535:
            port = int(portpart)
        else:
            defects.append("bad_request_uri")
    if not host:
        defects.append("bad_request_uri")
        return None, port
    return host.lower(), port


_parse_uri_cached = functools.lru_cache(maxsize=_CACHE_SIZE)(_parse_uri)
