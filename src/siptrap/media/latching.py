"""Where one call's media comes from and where it may go, apart from what is recorded.

`Latch` (one per stream) is symmetric RTP: the first datagram on the RTP port that reads
as RTP or RTCP fixes the source (likewise on the RTCP port); datagrams from any other
address are counted (`foreign`, the first few sources kept) and dropped, as are datagrams
above the rate cap a second (`shed`).

`SendPolicy` (one per call) keeps siptrap from being a reflector: media goes to the
latched source, or before anything arrived to the SDP address only when it is the host
the SIP came from. To that host siptrap sends only once the call is confirmed (the ACK
came); to any other host no more packets than it has received from it, plus a second's
worth.
"""

from __future__ import annotations

import ipaddress
from enum import Enum

from .rtp import RtpPacket, looks_like_rtcp, parse_rtp

Address = tuple[str, int]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_FOREIGN_SOURCES = 8
FOREIGN_ALLOWANCE_SECONDS = 1.0  # what may go to another host beyond what came from it


def endpoint_text(addr: Address | None) -> str | None:
    """ "host:port" (IPv6 in brackets) for events and summaries."""
    if addr is None:
        return None
    host, port = addr
    host = host.strip("[]")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def ip_of(text: str) -> IPAddress | None:
    """The IP address a host text names (an IPv4-mapped IPv6 address as its IPv4)."""
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0].strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def same_address(a: Address, b: Address) -> bool:
    """The same port and the same IP address, however each is written."""
    if a[1] != b[1]:
        return False
    ip_a, ip_b = ip_of(a[0]), ip_of(b[0])
    return ip_a is not None and ip_a == ip_b


class Verdict(Enum):
    SHED = "shed"  # over the rate cap: dropped
    FOREIGN = "foreign"  # not from the latched source (or not media at all): dropped
    LATCHED = "latched"  # the first media on the RTP port: taken, and the source fixed
    ACCEPTED = "accepted"  # from the latched source (or the RTCP port's first): taken


class Latch:
    """The sources one stream latched onto, and what it dropped."""

    __slots__ = (
        "accepted",
        "foreign",
        "foreign_sources",
        "rtcp_source",
        "rtp_source",
        "sent_elsewhere",
        "shed",
        "window_count",
        "window_start",
    )

    def __init__(self) -> None:
        self.rtp_source: Address | None = None
        self.rtcp_source: Address | None = None
        self.accepted = 0
        self.foreign = 0
        self.foreign_sources: list[str] = []
        self.shed = 0
        self.sent_elsewhere = 0  # packets sent to a host other than the signalling one
        self.window_start = 0.0
        self.window_count = 0

    def admit(
        self, rtcp_port: bool, data: bytes, src: Address, now: float, max_rate: int
    ) -> tuple[Verdict, RtpPacket | None]:
        """Whether to take a datagram; with LATCHED, the RTP packet it read as (None when
        the first datagram was RTCP on the RTP port)."""
        if now - self.window_start >= 1.0:
            self.window_start, self.window_count = now, 0
        self.window_count += 1
        if self.window_count > max_rate:
            self.shed += 1
            return Verdict.SHED, None
        latched = self.rtcp_source if rtcp_port else self.rtp_source
        verdict, packet = Verdict.ACCEPTED, None
        if latched is None:
            packet = None if rtcp_port else parse_rtp(data)
            if packet is None and not looks_like_rtcp(data):
                self._foreign(src)
                return Verdict.FOREIGN, None
            if rtcp_port:
                self.rtcp_source = src
            else:
                self.rtp_source = src
                verdict = Verdict.LATCHED
        elif src != latched:
            self._foreign(src)
            return Verdict.FOREIGN, None
        self.accepted += 1
        return verdict, packet

    def _foreign(self, src: Address) -> None:
        self.foreign += 1
        text = endpoint_text(src)
        if (
            text is not None
            and text not in self.foreign_sources
            and len(self.foreign_sources) < MAX_FOREIGN_SOURCES
        ):
            self.foreign_sources.append(text)


class SendPolicy:
    """Where a call's media may go (see the module docstring)."""

    def __init__(self, peer_ip: str) -> None:
        self.confirmed = False  # the call's ACK came
        self._peer = ip_of(peer_ip)
        self._peer_hosts: dict[str, bool] = {}  # host text -> is it the signalling host

    def target(self, latch: Latch, remote: Address | None) -> Address | None:
        """Where a stream's media goes: the latched source, else the SDP address when it
        is the signalling host."""
        if latch.rtp_source is not None:
            return latch.rtp_source
        if remote is not None and self.is_peer(remote[0]):
            return remote
        return None

    def is_peer(self, host: str) -> bool:
        known = self._peer_hosts.get(host)
        if known is None:
            ip = ip_of(host)
            known = ip is not None and ip == self._peer
            if len(self._peer_hosts) < MAX_FOREIGN_SOURCES:
                self._peer_hosts[host] = known
        return known

    def may_send(self, latch: Latch, target: Address, ptime_ms: int) -> bool:
        if self.is_peer(target[0]):
            return self.confirmed
        ptime = ptime_ms / 1000
        allowance = int(FOREIGN_ALLOWANCE_SECONDS / ptime) if ptime > 0 else 50
        return latch.sent_elsewhere < latch.accepted + allowance

    def sent(self, latch: Latch, target: Address) -> None:
        """Count one packet sent to `target`."""
        if not self.is_peer(target[0]):
            latch.sent_elsewhere += 1
