"""Is a request spoofed? What its addresses say, checked without sending anything.

The Artemisa paper decides whether a message is spoofed by looking up its domains and
probing its hosts and ports; siptrap runs in passive mode and sends nothing that could
unveil it, so `check_spoofing` works from the message alone, and says what it could not
check. A message is *spoofed* when an address it gives for replies or media cannot be the
sender's:

- broadcast, multicast, or a placeholder attack tools write (1.1.1.1, 1.2.3.4) as the
  Contact, the top Via or the SDP connection/origin address, or the unspecified address
  0.0.0.0 as the Contact or top Via;
- a Contact or top Via port of 0 or 9 (discard: nothing answers there, inviteflood's
  default);
- a loopback address in a message that did not come from loopback.

Addresses that can be real are not spoofing, however they disagree with the source: a
phone behind NAT announces its private address (192.168...) in Via, Contact and SDP while
its packets come from the public one (the most common SIP deployment); a NAT with an
address pool may send from another public address than the one the phone learnt; an SDP
address that is neither the source nor the Via host is a media relay; an SDP c=0.0.0.0 is
a call on hold (RFC 3264) or an offer without an address yet. Those are remarks.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass

from ..sip.sdp import parse_sdp
from .fields import Message

PLACEHOLDERS = frozenset({"1.1.1.1", "1.2.3.4", "2.2.2.2", "0.0.0.0"})
DEAD_PORTS = {0: "0", 9: "9 (discard)"}
MAX_SDP = 8192
MAX_CACHED = 512  # characters of addresses whose verdict is remembered
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class SpoofCheck:
    """The verdict, the evidence for it, weaker remarks, and what was not checked."""

    spoofed: bool
    evidence: tuple[str, ...] = ()
    remarks: tuple[str, ...] = ()
    unchecked: tuple[str, ...] = ()

    @property
    def fact(self) -> str:
        return "yes" if self.spoofed else "no"


def _ip(text: str | None) -> Address | None:
    return _parse_ip(text) if text else None


@functools.lru_cache(maxsize=4096)
def _parse_ip(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


def _unusable(ip: Address, source: Address | None) -> str | None:
    """Why an address cannot be the sender's, or None."""
    text = str(ip)
    if ip.is_unspecified:
        return f"{text} is the unspecified address"
    if text in PLACEHOLDERS:
        return f"{text} is a placeholder address attack tools write"
    if ip.is_multicast or text == "255.255.255.255":
        return f"{text} is a broadcast or multicast address"
    if ip.is_loopback and source is not None and not source.is_loopback:
        return f"{text} is a loopback address, but the message came from {source}"
    return None


def _sdp_addresses(msg: Message) -> tuple[tuple[str, str, int | None], ...]:
    """(line, address, media port) for the SDP's o= and c= lines, and the first audio m=."""
    if not msg.body or b"v=0" not in msg.body[:64]:
        return ()
    return _sdp_of(msg.body[:MAX_SDP])


@functools.lru_cache(maxsize=512)  # bounded; a flood sends one body again and again
def _sdp_of(body: bytes) -> tuple[tuple[str, str, int | None], ...]:
    sdp = parse_sdp(body)
    out: list[tuple[str, str, int | None]] = []
    origin = sdp.origin
    if origin is not None and origin.address:
        out.append(("SDP origin (o=)", origin.address, None))
    media = next(iter(sdp.media), None)
    port = media.port if media is not None else None
    conn = media.effective_connection if media is not None else sdp.connection
    if conn is None:
        conn = sdp.connection
    if conn is not None and conn.address:
        out.append(("SDP connection (c=)", conn.address, port))
    return tuple(out)


def check_spoofing(msg: Message, source_ip: str) -> SpoofCheck:
    """Check a request's reply and media addresses against each other and the source.

    `source_ip` is where the packet came from ("" or 0.0.0.0 when unknown, as for a
    message read from a file)."""
    signalling: list[tuple[str, str, int | None]] = []
    via = msg.top_via
    if via is not None and via.host:
        signalling.append(("top Via", via.host, via.port))
    contact = msg.contacts[0] if msg.contacts else None
    if contact is not None and contact.uri.host and not contact.wildcard:
        signalling.append(("Contact", contact.uri.host, contact.uri.port))
    media = _sdp_addresses(msg)
    via_host = via.host if via is not None else None
    received = via is not None and via.received is not None
    size = len(source_ip) + sum(len(host) for _w, host, _p in (*signalling, *media))
    if size > MAX_CACHED:  # only short addresses are remembered: the cache stays small
        return _verdict(source_ip, tuple(signalling), media, via_host, received)
    return _cached_verdict(source_ip, tuple(signalling), media, via_host, received)


def _verdict(
    source_ip: str,
    signalling: tuple[tuple[str, str, int | None], ...],
    media: tuple[tuple[str, str, int | None], ...],
    via_host: str | None,
    via_received: bool,
) -> SpoofCheck:
    source = _ip(source_ip)
    if source is not None and source.is_unspecified:
        source = None
    evidence: list[str] = []
    remarks: list[str] = []
    unchecked: list[str] = []
    names: list[str] = []
    for what, host, port in signalling + media:
        ip = _ip(host)
        if ip is None:
            names.append(host)
            continue
        reason = _unusable(ip, source)
        if reason is not None and ip.is_unspecified and what.startswith("SDP"):
            remarks.append(f"the {what} address is 0.0.0.0 (a call on hold, or no address yet)")
        elif reason is not None:
            evidence.append(f"the {what} address {reason}")
        if port in DEAD_PORTS and what in ("top Via", "Contact"):
            evidence.append(f"the {what} port is {DEAD_PORTS[port]}: nothing answers there")
    via_ip = _ip(via_host)
    if (
        source is not None
        and via_ip is not None
        and via_ip != source
        and via_ip.is_global
        and source.is_global
        and not via_received
    ):
        remarks.append(
            f"the top Via says {via_ip}, but the packet came from {source} "
            "(a NAT with an address pool, or a Via that is not the sender's)"
        )
    known = {ip for _w, h, _p in signalling if (ip := _ip(h)) is not None}
    if source is not None:
        known.add(source)
    for what, host, _port in media:
        ip = _ip(host)
        if ip is None or any(str(ip) in e for e in evidence):
            continue
        if known and ip not in known and ip.is_global:
            remarks.append(f"the {what} address {ip} is neither the source nor a Via/Contact host")
    for name in dict.fromkeys(names):
        unchecked.append(f"DNS of {name!r}")
    hosts = sorted({str(ip) for _w, h, _p in signalling + media if (ip := _ip(h)) is not None})
    if len(hosts) == 1:
        unchecked.append(f"whether {hosts[0]} is up and its SIP and media ports are open")
    elif hosts:
        unchecked.append(
            f"whether {', '.join(hosts[:4])} are up and their SIP and media ports are open"
        )
    return SpoofCheck(
        bool(evidence), tuple(dict.fromkeys(evidence)), tuple(remarks), tuple(unchecked)
    )


# The verdict is a function of the addresses alone; a scan or flood repeats them.
_cached_verdict = functools.lru_cache(maxsize=4096)(_verdict)


def bounds() -> dict[str, tuple[int, int]]:
    """(entries, limit) of the remembered verdicts, addresses and SDP bodies."""
    out = {}
    for name, cached in (("verdicts", _cached_verdict), ("ips", _parse_ip), ("sdp", _sdp_of)):
        info = cached.cache_info()
        out[name] = (info.currsize, info.maxsize or 0)
    return out
