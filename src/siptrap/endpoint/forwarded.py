"""Traffic forwarded by the domain's proxy: whose it is, and whether the proxy blocked it.

Behind a proxy, the socket address is the proxy's. The address the proxy itself saw is
taken only from a request that arrived from one of the configured proxies
(`[analysis] proxies`), and only from the header the shipped Kamailio configuration adds
(`X-Siptrap-Source: ADDR:PORT;transport=udp`) after stripping it from outside traffic.
From anyone else the same header is attacker data and is ignored. A copy the proxy sends
of a request it refused (`X-Siptrap-Blocked`) is recorded and never answered.

The flood guard counts forwarded requests by that origin too (`ProxyCheck.source`), so
one attacker behind the proxy is shed without shedding everyone the proxy forwards for;
the proxy itself is never shed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from ..bounded import BoundedLRU
from ..sip import ParseError, Request, Response

SOURCE_HEADER = "x-siptrap-source"
BLOCKED_HEADER = "x-siptrap-blocked"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a forwarded request really came from, as the proxy saw it."""

    ip: str
    port: int
    transport: str
    blocked: int  # the proxy's block step (1 or 2) for a mirrored copy, else 0


def networks(items: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in items)


def is_proxy(address: str, proxies: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return False
    return any(ip in net for net in proxies)


class ProxyCheck:
    """Is a socket address one of the configured proxies? Asked for every message, so the
    answers are kept (a bounded table keyed by the address text)."""

    MEMO = 4096

    def __init__(self, proxies: tuple[Network, ...]) -> None:
        self.proxies = proxies
        self._memo: BoundedLRU[str, bool] = BoundedLRU(self.MEMO)

    def __call__(self, address: str) -> bool:
        if not self.proxies:
            return False
        known = self._memo.get(address)
        if known is None:
            known = is_proxy(address, self.proxies)
            self._memo.put(address, known)
        return known

    def source(self, msg: Request | Response | ParseError, src_ip: str) -> str | None:
        """The address the flood guard counts a message from the proxy under: the origin
        the proxy wrote into a request, else None (the proxy's own traffic)."""
        if not isinstance(msg, Request):
            return None
        origin = origin_of(msg, src_ip, self.proxies)
        return origin.ip if origin is not None else None


def origin_of(msg: Request, src_ip: str, proxies: tuple[Network, ...]) -> Origin | None:
    """The origin a configured proxy wrote into the request, or None (not from a proxy,
    no header, or a header that does not parse as an address)."""
    if not proxies or not is_proxy(src_ip, proxies):
        return None
    value = msg.header(SOURCE_HEADER)
    if value is None:
        return None
    parsed = parse_source(value)
    if parsed is None:
        return None
    ip, port, transport = parsed
    return Origin(ip, port, transport, _blocked(msg.header(BLOCKED_HEADER)))


def parse_source(value: str) -> tuple[str, int, str] | None:
    """`ADDR:PORT;transport=T` (IPv6 bracketed or not) -> (ip, port, transport)."""
    hostport, _, params = value.strip().partition(";")
    transport = "udp"
    for param in params.split(";"):
        name, _, val = param.strip().partition("=")
        if name.lower() == "transport" and val.lower() in ("udp", "tcp", "tls"):
            transport = val.lower()
    host, sep, port_text = hostport.rpartition(":")
    if not sep or not port_text.isascii() or not port_text.isdigit():
        return None
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    port = int(port_text)
    return (str(ip), port, transport) if 0 < port < 65536 else None


def _blocked(value: str | None) -> int:
    text = (value or "").strip()
    return int(text) if text in ("1", "2") else (1 if text else 0)
