"""Decoding capture records into Datagrams: the link and IP layers (with dpkt), IP
fragments and TCP streams handed to their reassemblers, UDP payloads cut to their length.
Problems are counted in `CaptureStats`, never raised."""

from __future__ import annotations

import struct
from socket import AF_INET, AF_INET6, inet_ntop
from typing import Any

import dpkt

from .datagram import DEFAULT_BOUNDS, CaptureBounds, CaptureStats, Datagram
from .fragments import FragmentKey, Fragments
from .pcapfile import Record
from .tcpstreams import TcpStreams

Packet = Any  # a dpkt packet object (dpkt ships no type hints)
DECODE_ERRORS = (dpkt.Error, struct.error, ValueError, IndexError, KeyError, TypeError)

# Link types (https://www.tcpdump.org/linktypes.html). 12 and 14 are DLT_RAW as some BSDs
# wrote it into old pcap files.
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
_RAW_LINKTYPES = frozenset({LINKTYPE_RAW, 12, 14})
_NULL_LINKTYPES = frozenset({LINKTYPE_NULL, LINKTYPE_LOOP})
SUPPORTED_LINKTYPES = frozenset(
    {
        LINKTYPE_ETHERNET,
        LINKTYPE_LINUX_SLL,
        LINKTYPE_LINUX_SLL2,
        LINKTYPE_IPV4,
        LINKTYPE_IPV6,
        *_RAW_LINKTYPES,
        *_NULL_LINKTYPES,
    }
)


class Undecodable(Exception):
    """A packet that claims to be IP but whose headers do not decode."""


def _raw_ip(buf: bytes) -> Packet:
    """Decode a bare IPv4 or IPv6 packet, told apart by its version nibble."""
    version = buf[0] >> 4 if buf else 0
    if version == 4:
        return dpkt.ip.IP(buf)
    if version == 6:
        return dpkt.ip6.IP6(buf)
    raise Undecodable


def ip_layer(linktype: int, frame: bytes) -> Packet | None:
    """The dpkt IP or IP6 packet inside a link-layer frame, or None when it carries no IP."""
    if linktype in _RAW_LINKTYPES:
        return _raw_ip(frame)
    if linktype in _NULL_LINKTYPES:
        # The 4-byte address family is in the writer's byte order and its value for IPv6
        # differs between systems, so the IP version nibble decides instead.
        return _raw_ip(frame[4:])
    if linktype == LINKTYPE_IPV4:
        return dpkt.ip.IP(frame)
    if linktype == LINKTYPE_IPV6:
        return dpkt.ip6.IP6(frame)
    if linktype == LINKTYPE_ETHERNET:
        net = dpkt.ethernet.Ethernet(frame).data  # dpkt strips 802.1Q / 802.1ad tags
    elif linktype == LINKTYPE_LINUX_SLL:
        net = dpkt.sll.SLL(frame).data
    else:
        net = dpkt.sll2.SLL2(frame).data
    if isinstance(net, dpkt.ip.IP | dpkt.ip6.IP6):
        return net
    if isinstance(net, bytes) and net[:1] and net[0] >> 4 in (4, 6):
        raise Undecodable  # dpkt gave up on what looks like an IP header
    return None


def raw_bytes(layer: Packet) -> bytes:
    """The bytes dpkt decoded a layer from (dpkt's UDP and TCP serialise back verbatim)."""
    return layer if isinstance(layer, bytes) else bytes(layer)


def fragment_of(net: Packet) -> tuple[int, bool, int] | None:
    """(offset in bytes, more fragments?, identification) if an IP packet is a fragment."""
    if isinstance(net, dpkt.ip.IP):
        if net.mf or net.offset:
            return net.offset * 8, bool(net.mf), net.id
        return None
    for header in net.all_extension_headers:
        if isinstance(header, dpkt.ip6.IP6FragmentHeader):
            if header.frag_off or header.m_flag:
                return header.frag_off * 8, bool(header.m_flag), header.id
            return None
    return None


class Decoder:
    """Turns capture records into Datagrams: link and IP layers, fragments, TCP streams."""

    def __init__(self, stats: CaptureStats, bounds: CaptureBounds = DEFAULT_BOUNDS) -> None:
        self._stats = stats
        self._fragments = Fragments(stats, bounds)
        self._tcp = TcpStreams(stats, bounds)
        self._last: tuple[float, int] = (0.0, 0)

    def packet(self, record: Record) -> list[Datagram]:
        """Decode one record; problems are counted, never raised."""
        stats = self._stats
        self._last = (record.ts, record.frame)
        if record.linktype not in SUPPORTED_LINKTYPES:
            stats.unsupported_link += 1
            return []
        if record.wire_len > len(record.data):
            stats.snapped += 1
        try:
            net = ip_layer(record.linktype, record.data)
        except (Undecodable, *DECODE_ERRORS):
            stats.undecodable += 1
            return []
        if net is None:
            stats.ignored += 1
            return []
        return self._ip(net, record)

    def finish(self) -> list[Datagram]:
        """End of the capture: flush TCP streams and count unfinished fragments."""
        self._fragments.finish()
        return self._tcp.finish(*self._last)

    def _ip(self, net: Packet, record: Record) -> list[Datagram]:
        """Handle an IPv4 or IPv6 packet: fragments, then UDP or TCP."""
        proto: int = net.p
        if proto not in (dpkt.ip.IP_PROTO_UDP, dpkt.ip.IP_PROTO_TCP):
            self._stats.ignored += 1
            return []
        family = AF_INET if isinstance(net, dpkt.ip.IP) else AF_INET6
        src, dst = inet_ntop(family, net.src), inet_ntop(family, net.dst)
        layer = net.data
        fragment = fragment_of(net)
        if fragment is not None:
            offset, more, ident = fragment
            layer = self._reassemble((family, src, dst, proto, ident), offset, more, layer, record)
            if layer is None:
                return []
        if isinstance(layer, dpkt.udp.UDP):
            return [self._udp(src, dst, layer, record)]
        if isinstance(layer, dpkt.tcp.TCP):
            key = (src, layer.sport, dst, layer.dport)
            return self._tcp.segment(key, layer, record.ts, record.frame)
        self._stats.undecodable += 1
        return []

    def _reassemble(
        self,
        key: FragmentKey,
        offset: int,
        more: bool,
        layer: Packet,
        record: Record,
    ) -> Packet | None:
        """Add a fragment; once complete, decode the whole UDP or TCP segment."""
        try:
            piece = raw_bytes(layer)
        except DECODE_ERRORS:
            self._stats.fragments_dropped += 1
            return None
        payload = self._fragments.add(key, offset, more, piece, record.ts)
        if payload is None:
            return None
        try:
            if key[3] == dpkt.ip.IP_PROTO_UDP:
                return dpkt.udp.UDP(payload)
            return dpkt.tcp.TCP(payload)
        except DECODE_ERRORS:
            self._stats.undecodable += 1
            return None

    def _udp(self, src: str, dst: str, udp: Packet, record: Record) -> Datagram:
        """A Datagram for a UDP packet, its payload cut to the UDP length."""
        payload: bytes = udp.data
        declared: int = udp.ulen - 8
        if 0 <= declared < len(payload):
            payload = payload[:declared]
        elif declared > len(payload) and record.wire_len <= len(record.data):
            self._stats.snapped += 1  # cut short without the capture saying so
        return Datagram(record.ts, "udp", src, udp.sport, dst, udp.dport, payload, record.frame)
