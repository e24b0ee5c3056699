"""The Via header (RFC 3261 section 20.42, RFC 3581 rport)."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from .headers import Params, format_params, get_param, has_param, parse_params

# Memo of parsed values: bounded (values are attacker data), short values only.
_CACHE_SIZE = 1024
_CACHE_TEXT = 512

MAGIC_COOKIE = "z9hG4bK"
_SENT_PROTOCOL = re.compile(r"\s*([^/\s]+)\s*/\s*([^/\s]+)\s*/\s*([^\s/]+)\s*(.*)", re.S)


@dataclass(frozen=True, slots=True)
class Via:
    protocol: str  # "SIP/2.0"
    transport: str  # "UDP", "TCP", "TLS", "SCTP", "WS"... upper case
    host: str
    port: int | None = None
    params: Params = ()
    text: str = ""
    defects: tuple[str, ...] = field(default=(), compare=False)

    @property
    def branch(self) -> str | None:
        return get_param(self.params, "branch")

    @property
    def received(self) -> str | None:
        return get_param(self.params, "received")

    @property
    def has_rport(self) -> bool:
        return has_param(self.params, "rport")

    @property
    def rport(self) -> int | None:
        value = get_param(self.params, "rport")
        return int(value) if value and value.isdigit() else None

    def param(self, name: str) -> str | None:
        return get_param(self.params, name)

    @property
    def sent_by(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return self.text or self.format()

    def format(self) -> str:
        return f"{self.protocol}/{self.transport} {self.sent_by}{format_params(self.params)}"


def make_via(transport: str, host: str, port: int | None, branch: str, rport: bool = True) -> Via:
    params: Params = (("branch", branch),) + ((("rport", None),) if rport else ())
    via = Via("SIP/2.0", transport.upper(), host, port, params)
    return Via(via.protocol, via.transport, host, port, params, via.format())


def parse_via(text: str) -> Via:
    """Parse one Via value. Never raises; problems are listed in `defects`.

    Results are immutable and a function of the text alone, so the last 1024
    short values are remembered: a message asks for the same value several times (its
    fields, its defect check, its response), and a scan repeats most of them."""
    if len(text) <= _CACHE_TEXT:
        return _parse_via_cached(text)
    return _parse_via(text)


def _parse_via(text: str) -> Via:
    defects: list[str] = []
    head, _, ptext = text.partition(";")
    match = _SENT_PROTOCOL.fullmatch(head)
    if not match:
        return Via("", "", "", None, (), text, ("bad_via",))
    name, version, transport, sent_by = match.groups()
    sent_by = sent_by.strip()
    host, port = _split_sent_by(sent_by)
    if not host or port == -1 or " " in sent_by:
        defects.append("bad_via")
        port = None if port == -1 else port
    params: Params = ()
    if ptext:
        params, empty = parse_params(ptext)
        if empty:
            defects.append("empty_param")
    protocol = f"{name.upper()}/{version}"
    return Via(protocol, transport.upper(), host.lower(), port, params, text, tuple(defects))


def _split_sent_by(sent_by: str) -> tuple[str, int | None]:
    if sent_by.startswith("["):
        end = sent_by.find("]")
        if end == -1:
            return "", None
        host, rest = sent_by[: end + 1], sent_by[end + 1 :]
        portpart = rest[1:] if rest.startswith(":") else rest
    else:
        host, _, portpart = sent_by.partition(":")
    portpart = portpart.strip()
    if not portpart:
        return host.strip(), None
    if portpart.isascii() and portpart.isdigit() and int(portpart) <= 65535:
        return host.strip(), int(portpart)
    return host.strip(), -1


_parse_via_cached = functools.lru_cache(maxsize=_CACHE_SIZE)(_parse_via)
