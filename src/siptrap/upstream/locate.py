"""Where a registrar is: RFC 3263's lookups with dnspython's asyncio resolver.

A target that is an IP address is used as it is. A host name with a port is looked up as
A, then AAAA. A host name without a port is looked up as SRV first (`_sip._udp`,
`_sip._tcp` or `_sips._tcp`, by the transport), its targets in priority order (among
equals in the weighted random order of RFC 2782), each then by A and AAAA; no SRV record: the name's
own addresses at the transport's default port. The name server is the entry's `dns`, or
the system's; when the system's has no answer for the name, the system's own lookup
(getaddrinfo, which reads /etc/hosts, where `localhost` is) is asked too.

This is the one part of upstream/ that does I/O (client.py does none); the app calls it
before it opens the registrar's connection.
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from .settings import UpstreamConfig, is_address, split_hostport

TIMEOUT = 3.0  # seconds for each DNS lookup
MAX_TARGETS = 8
SRV_PREFIX = {"udp": "_sip._udp.", "tcp": "_sip._tcp.", "tls": "_sips._tcp."}


class Srv(Protocol):
    priority: int
    weight: int


R = TypeVar("R", bound=Srv)


def srv_order(records: Sequence[R], pick: Callable[[], float] = random.random) -> list[R]:
    """RFC 2782: lowest priority first; within one, a weighted random order (an entry's
    chance of coming next is its weight over the weights left; zero weights last)."""
    out: list[R] = []
    for priority in sorted({r.priority for r in records}):
        group = sorted((r for r in records if r.priority == priority), key=lambda r: r.weight)
        while group:
            total = sum(r.weight for r in group)
            if total <= 0:
                out += group
                break
            point, running = pick() * total, 0
            for i, record in enumerate(group):
                running += record.weight
                if running >= point and record.weight > 0:
                    out.append(group.pop(i))
                    break
    return out


class LocateFailed(Exception):
    """The registrar's name gave no address; the message says why."""


def _resolver(up: UpstreamConfig) -> Any:
    import dns.asyncresolver

    resolver = dns.asyncresolver.Resolver(configure=not up.dns)
    if up.dns:
        host, port = split_hostport(up.dns, "dns")
        resolver.nameservers = [host]
        resolver.port = port or 53
    resolver.timeout = resolver.lifetime = TIMEOUT
    return resolver


async def locate(up: UpstreamConfig) -> list[tuple[str, int]]:
    """The (ip, port) pairs to try, in order (at least one); raises LocateFailed."""
    host, port = up.target
    if is_address(host):
        return [(host, port)]
    resolver = _resolver(up)
    if up.srv and up.outbound_proxy is None:
        found = await _srv(resolver, up.transport, host)
        if found:
            return found[:MAX_TARGETS]
    addresses = await _addresses(resolver, host, fallback=not up.dns)
    if not addresses:
        raise LocateFailed(f"{host}: no address (A or AAAA) found")
    return [(ip, port) for ip in addresses][:MAX_TARGETS]


async def _srv(resolver: Any, transport: str, host: str) -> list[tuple[str, int]]:
    import dns.exception
    import dns.resolver

    try:
        answer = await resolver.resolve(SRV_PREFIX[transport] + host, "SRV", search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers):
        return []
    except dns.exception.Timeout:
        return []
    records = srv_order(list(answer))
    out: list[tuple[str, int]] = []
    for rr in records[:MAX_TARGETS]:
        target = rr.target.to_text().rstrip(".")
        if target in ("", "."):
            continue  # "." : the service is decidedly not offered here
        for ip in await _addresses(resolver, target, fallback=False):
            out.append((ip, int(rr.port)))
    return out


async def _addresses(resolver: Any, name: str, fallback: bool) -> list[str]:
    import dns.exception
    import dns.resolver

    found: list[str] = []
    for rdtype in ("A", "AAAA"):
        try:
            answer = await resolver.resolve(name, rdtype, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers):
            continue
        except dns.exception.Timeout:
            continue
        found += [rr.to_text() for rr in answer if rr.to_text() not in found]
    if found or not fallback:
        return found
    return await _system(name)


async def _system(name: str) -> list[str]:
    """The system's own lookup (/etc/hosts first, as the C library does)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(name, None, type=socket.SOCK_STREAM), TIMEOUT
        )
    except (OSError, TimeoutError):
        return []
    out: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        ip = str(sockaddr[0])
        if ip not in out:
            out.append(ip)
    return out
