"""Reading SIP traffic out of pcap and pcapng captures and raw SIP message files.

`read_capture(path)` walks the capture's records itself (so that a pcapng file with several
interfaces, each with its own link type and timestamp resolution, reads correctly, and so
that damage is counted rather than raised), decodes the link, IP, UDP and TCP layers with
dpkt, reassembles fragmented IP datagrams and TCP byte streams, cuts SIP messages out of
the streams with `siptrap.sip.framing.StreamFramer`, and yields one `Datagram` per UDP
payload or per SIP message framed from TCP.

Damaged input: a file that is not a readable capture raises `CaptureError` when it is
opened; everything after that (a truncated last record, corrupt records, undecodable
packets, holes in TCP streams) is counted in the `CaptureStats` the caller passes in and
never raised. Every table keyed by packet contents (fragments, TCP flows, out-of-order
segments) is bounded.
"""

from __future__ import annotations

import re
import struct
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from os import PathLike
from socket import AF_INET, AF_INET6, inet_ntop
from typing import Any, BinaryIO, Literal, NamedTuple

import dpkt

from siptrap.sip.framing import StreamFramer

Transport = Literal["udp", "tcp"]
Format = Literal["pcap", "pcapng", "sip"]
StrPath = str | PathLike[str]
Packet = Any  # a dpkt packet object (dpkt ships no type hints)

# Capture file magics. pcap: first four bytes -> (struct byte order, timestamp fraction units).
PCAP_MAGICS: dict[bytes, tuple[str, int]] = {
    b"\xd4\xc3\xb2\xa1": ("<", 1_000_000),
    b"\xa1\xb2\xc3\xd4": (">", 1_000_000),
    b"\x4d\x3c\xb2\xa1": ("<", 1_000_000_000),
    b"\xa1\xb2\x3c\x4d": (">", 1_000_000_000),
}
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
_PCAPNG_BOM = 0x1A2B3C4D

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

# Bounds.
MAX_RECORD = 16 * 1024 * 1024  # largest pcap record / pcapng block accepted
MAX_RAW_FILE = 1024 * 1024  # largest raw SIP message file
MAX_MESSAGE = 65535  # largest SIP message framed from a TCP stream
MAX_IP_PAYLOAD = 65535
MAX_FRAGMENTED_DATAGRAMS = 256  # IP datagrams being reassembled at once
MAX_FRAGMENTS = 128  # fragments per IP datagram
FRAGMENT_TIMEOUT = 30.0  # seconds of capture time before an incomplete datagram is dropped
MAX_TCP_FLOWS = 1024  # TCP directions being reassembled at once (least recently used evicted)
MAX_TCP_CLOSED = 4096  # recently closed TCP directions remembered to ignore late segments
MAX_PENDING_BYTES = 128 * 1024  # out-of-order bytes buffered per TCP direction
MAX_PENDING_SEGMENTS = 512  # out-of-order segments buffered per TCP direction
MAX_PENDING_TOTAL = 16 * 1024 * 1024  # out-of-order bytes buffered over all TCP directions

SIP_PORTS = frozenset({5060, 5061})
_SEQ_MOD = 1 << 32
_TCP_FIN, _TCP_SYN, _TCP_RST = dpkt.tcp.TH_FIN, dpkt.tcp.TH_SYN, dpkt.tcp.TH_RST
_DECODE_ERRORS = (dpkt.Error, struct.error, ValueError, IndexError, KeyError, TypeError)
_SIP_FIRST_LINE = re.compile(rb"[\r\n]*(?:SIP/2\.0 |[!-~]+ [^\r\n]* SIP/2\.0[ \t]*\r?\n)", re.I)


class CaptureError(Exception):
    """A file could not be opened as a capture or raw SIP message (raised at open time only)."""


@dataclass(frozen=True, slots=True)
class Datagram:
    """One SIP payload from an input: a UDP payload, or one message cut from a TCP stream.

    `ts` is the capture timestamp (of the packet that completed the payload), `frame` the
    1-based number of that packet in its file, as Wireshark numbers frames (0 for a raw
    SIP message file, which also has zero addresses and ports).
    """

    ts: float
    transport: Transport
    src_ip: str
    src_port: int
    dst_ip: str
    dst_port: int
    payload: bytes
    frame: int


@dataclass(slots=True)
class CaptureStats:
    """Counters of what reading saw, so a caller can report damaged or partial input."""

    files: int = 0
    packets: int = 0  # packet records read
    datagrams: int = 0  # Datagrams yielded
    ignored: int = 0  # packets that are not IP carrying UDP or TCP
    filtered: int = 0  # UDP payloads the accept predicate rejected as not SIP
    fragments_reassembled: int = 0
    tcp_retransmissions: int = 0  # segments whose bytes had all been seen already
    # Problems with the input:
    truncated: int = 0  # files that ended in the middle of a record
    corrupt: int = 0  # records or blocks whose structure is impossible
    read_errors: int = 0  # I/O errors while reading
    undecodable: int = 0  # packets whose IP, UDP or TCP headers could not be decoded
    unsupported_link: int = 0  # packets on a link type this reader does not decode
    snapped: int = 0  # packets cut short by the capture's snap length
    fragments_dropped: int = 0  # IP fragments never reassembled (caps, timeout, holes)
    tcp_gaps: int = 0  # holes skipped in TCP streams (missing or over-cap segments)
    tcp_flows_evicted: int = 0  # TCP directions with data in flight evicted by the flow cap
    # Not a problem with the capture (peers send junk too), but worth reporting:
    tcp_unframed_bytes: int = 0  # TCP stream bytes that never formed a complete SIP message

    @property
    def problems(self) -> int:
        """How many problems with the input were counted."""
        return (
            self.truncated
            + self.corrupt
            + self.read_errors
            + self.undecodable
            + self.unsupported_link
            + self.snapped
            + self.fragments_dropped
            + self.tcp_gaps
            + self.tcp_flows_evicted
        )


# --------------------------------------------------------------------------- filters


def looks_like_sip(payload: bytes) -> bool:
    """Whether a payload starts with a SIP request or status line (after any CR/LF)."""
    return _SIP_FIRST_LINE.match(payload, 0, 16384) is not None


def probably_sip(datagram: Datagram) -> bool:
    """Default UDP filter: anything to or from a SIP port, or anything that looks like SIP."""
    if datagram.src_port in SIP_PORTS or datagram.dst_port in SIP_PORTS:
        return True
    return looks_like_sip(datagram.payload)


# --------------------------------------------------------------------------- containers


class _Record(NamedTuple):
    """One packet record of a capture file."""

    frame: int
    ts: float
    linktype: int
    data: bytes
    wire_len: int


def _read(fh: BinaryIO, size: int, stats: CaptureStats) -> bytes:
    """Read up to `size` bytes; an I/O error counts and reads as end of file."""
    try:
        return fh.read(size)
    except OSError:
        stats.read_errors += 1
        return b""


class _PcapReader:
    """Records of a classic pcap file (either byte order, micro- or nanosecond timestamps)."""

    def __init__(self, fh: BinaryIO) -> None:
        header = fh.read(24)
        if len(header) < 24:
            raise CaptureError("pcap file header is truncated")
        magic = PCAP_MAGICS.get(header[:4])
        if magic is None:
            raise CaptureError("not a pcap file")
        order, self._units = magic
        major, _minor, _zone, _sigfigs, _snaplen, network = struct.unpack(
            order + "HHiIII", header[4:]
        )
        if major != 2:
            raise CaptureError(f"unsupported pcap version {major}")
        self._fh = fh
        self._header = struct.Struct(order + "IIII")
        self.linktype = network & 0xFFFF  # the upper bits describe FCS, not the link type

    def records(self, stats: CaptureStats) -> Iterator[_Record]:
        """Yield each record; stop quietly (counting why) at a truncated or absurd record."""
        fh, header_struct, units, frame = self._fh, self._header, self._units, 0
        while True:
            header = _read(fh, 16, stats)
            if len(header) < 16:
                stats.truncated += 1 if header else 0
                return
            seconds, fraction, caplen, wire_len = header_struct.unpack(header)
            if caplen > MAX_RECORD:
                stats.corrupt += 1
                return
            data = _read(fh, caplen, stats)
            if len(data) < caplen:
                stats.truncated += 1
                return
            frame += 1
            stats.packets += 1
            yield _Record(frame, seconds + fraction / units, self.linktype, data, wire_len)


@dataclass(slots=True)
class _Interface:
    """What a pcapng Interface Description Block says about its packets."""

    linktype: int
    units: int = 1_000_000  # timestamp units per second (if_tsresol)
    offset: int = 0  # seconds added to every timestamp (if_tsoffset)


def _tsresol(value: int) -> int:
    """Timestamp units per second for an if_tsresol option byte."""
    exponent = value & 0x7F
    return 1 << exponent if value & 0x80 else 10**exponent


def _parse_interface(body: bytes, order: str) -> _Interface:
    """Decode an IDB body (without block type, lengths); a broken one gets link type -1."""
    if len(body) < 8:
        return _Interface(-1)
    interface = _Interface(struct.unpack(order + "H", body[:2])[0])
    pos = 8
    while pos + 4 <= len(body):
        code, size = struct.unpack(order + "HH", body[pos : pos + 4])
        value = body[pos + 4 : pos + 4 + size]
        pos += 4 + ((size + 3) & ~3)
        if code == 0:
            break
        if code == 9 and len(value) >= 1:
            interface.units = _tsresol(value[0])
        elif code == 14 and len(value) >= 8:
            interface.offset = struct.unpack(order + "q", value[:8])[0]
    return interface


def _bom_order(bom: bytes) -> str | None:
    """Struct byte order named by a pcapng section's byte-order magic."""
    if len(bom) == 4:
        if struct.unpack("<I", bom)[0] == _PCAPNG_BOM:
            return "<"
        if struct.unpack(">I", bom)[0] == _PCAPNG_BOM:
            return ">"
    return None


class _PcapngReader:
    """Records of a pcapng file: sections, interfaces with their own link types and clocks."""

    def __init__(self, fh: BinaryIO) -> None:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != PCAPNG_MAGIC:
            raise CaptureError("pcapng section header is truncated or missing")
        order = _bom_order(head[8:12])
        if order is None:
            raise CaptureError("pcapng byte-order magic is wrong")
        length = struct.unpack(order + "I", head[4:8])[0]
        if length < 28 or length > MAX_RECORD:
            raise CaptureError("pcapng section header length is impossible")
        rest = fh.read(length - 12)
        if len(rest) < length - 12:
            raise CaptureError("pcapng section header is truncated")
        major = struct.unpack(order + "H", rest[:2])[0]
        if major != 1:
            raise CaptureError(f"unsupported pcapng version {major}")
        self._fh = fh
        self._order = order
        self._interfaces: list[_Interface] = []
        self._frame = 0
        self._last_ts = 0.0

    def records(self, stats: CaptureStats) -> Iterator[_Record]:
        """Yield each packet record; stop quietly (counting why) at damaged block framing."""
        while True:
            block = self._next_block(stats)
            if block is None:
                return
            block_type, body = block
            if block_type == 1:
                self._interfaces.append(_parse_interface(body, self._order))
            elif block_type in (2, 3, 6):
                self._frame += 1
                stats.packets += 1
                record = self._packet(block_type, body)
                if record is None:
                    stats.corrupt += 1
                else:
                    self._last_ts = record.ts
                    yield record

    def _next_block(self, stats: CaptureStats) -> tuple[int, bytes] | None:
        """Read one block as (type, body without lengths); None at the end or on damage."""
        head = _read(self._fh, 8, stats)
        if len(head) < 8:
            stats.truncated += 1 if head else 0
            return None
        if head[:4] == PCAPNG_MAGIC:  # a new section: new byte order, no interfaces yet
            bom = _read(self._fh, 4, stats)
            order = _bom_order(bom)
            if order is None:
                stats.corrupt += 1
                return None
            self._order, self._interfaces = order, []
            block_type, length = 0x0A0D0D0A, struct.unpack(order + "I", head[4:8])[0]
            prefix = bom
        else:
            block_type, length = struct.unpack(self._order + "II", head)
            prefix = b""
        if length < 12 + len(prefix) or length > MAX_RECORD:
            stats.corrupt += 1
            return None
        rest = _read(self._fh, length - 8 - len(prefix), stats)
        if len(rest) < length - 8 - len(prefix):
            stats.truncated += 1
            return None
        return block_type, (prefix + rest)[:-4]

    def _packet(self, block_type: int, body: bytes) -> _Record | None:
        """Decode an enhanced (6), simple (3) or obsolete (2) packet block; None if broken."""
        order = self._order
        if block_type == 3:
            if len(body) < 4 or not self._interfaces:
                return None
            wire_len = struct.unpack(order + "I", body[:4])[0]
            data = body[4 : 4 + wire_len]
            return _Record(self._frame, self._last_ts, self._interfaces[0].linktype, data, wire_len)
        if len(body) < 20:
            return None
        if block_type == 6:
            iface, high, low, caplen, wire_len = struct.unpack(order + "IIIII", body[:20])
        else:
            iface, _drops, high, low, caplen, wire_len = struct.unpack(order + "HHIIII", body[:20])
        if iface >= len(self._interfaces) or caplen > len(body) - 20:
            return None
        interface = self._interfaces[iface]
        ts = interface.offset + ((high << 32) | low) / interface.units
        return _Record(self._frame, ts, interface.linktype, body[20 : 20 + caplen], wire_len)


# --------------------------------------------------------------------------- IP layers


class _Undecodable(Exception):
    """A packet that claims to be IP but whose headers do not decode."""


def _raw_ip(buf: bytes) -> Packet:
    """Decode a bare IPv4 or IPv6 packet, told apart by its version nibble."""
    version = buf[0] >> 4 if buf else 0
    if version == 4:
        return dpkt.ip.IP(buf)
    if version == 6:
        return dpkt.ip6.IP6(buf)
    raise _Undecodable


def _ip_layer(linktype: int, frame: bytes) -> Packet | None:
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
        raise _Undecodable  # dpkt gave up on what looks like an IP header
    return None


def _raw_bytes(layer: Packet) -> bytes:
    """The bytes dpkt decoded a layer from (dpkt's UDP and TCP serialise back verbatim)."""
    return layer if isinstance(layer, bytes) else bytes(layer)


def _fragment_of(net: Packet) -> tuple[int, bool, int] | None:
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


@dataclass(slots=True)
class _Partial:
    """An IP datagram whose fragments are still arriving."""

    first_ts: float
    pieces: dict[int, bytes] = field(default_factory=dict)
    total: int | None = None


def _assemble(pieces: dict[int, bytes], total: int) -> bytes | None:
    """Join fragments into `total` bytes, earliest data winning overlaps; None if holes."""
    out = bytearray()
    for offset in sorted(pieces):
        if offset > len(out):
            return None
        chunk = pieces[offset]
        if offset + len(chunk) > len(out):
            out += chunk[len(out) - offset :]
        if len(out) >= total:
            return bytes(out[:total])
    return None


class _Fragments:
    """Bounded reassembly of fragmented IPv4 and IPv6 datagrams."""

    def __init__(self, stats: CaptureStats) -> None:
        self._stats = stats
        self._partials: OrderedDict[tuple[object, ...], _Partial] = OrderedDict()

    def add(
        self, key: tuple[object, ...], offset: int, more: bool, data: bytes, ts: float
    ) -> bytes | None:
        """Add one fragment; return the whole IP payload once every piece has arrived."""
        self._expire(ts)
        partial = self._partials.get(key)
        if partial is None:
            if len(self._partials) >= MAX_FRAGMENTED_DATAGRAMS:
                self._drop(next(iter(self._partials)))
            partial = self._partials[key] = _Partial(ts)
        end = offset + len(data)
        if (
            end > MAX_IP_PAYLOAD
            or len(partial.pieces) >= MAX_FRAGMENTS
            or (not more and partial.total not in (None, end))
        ):
            self._stats.fragments_dropped += 1
            self._drop(key)
            return None
        if len(partial.pieces.get(offset, b"")) <= len(data):
            partial.pieces[offset] = data
        if not more:
            partial.total = end
        if partial.total is None:
            return None
        payload = _assemble(partial.pieces, partial.total)
        if payload is not None:
            del self._partials[key]
            self._stats.fragments_reassembled += 1
        return payload

    def finish(self) -> None:
        """Count whatever never completed."""
        for key in list(self._partials):
            self._drop(key)

    def _drop(self, key: tuple[object, ...]) -> None:
        self._stats.fragments_dropped += len(self._partials.pop(key).pieces)

    def _expire(self, now: float) -> None:
        while self._partials:
            key, oldest = next(iter(self._partials.items()))
            if now - oldest.first_ts <= FRAGMENT_TIMEOUT:
                return
            self._drop(key)


# --------------------------------------------------------------------------- TCP

_FlowKey = tuple[str, int, str, int]


def _seq_diff(a: int, b: int) -> int:
    """a - b in 32-bit sequence space, as a signed number."""
    diff = (a - b) % _SEQ_MOD
    return diff - _SEQ_MOD if diff >= _SEQ_MOD // 2 else diff


@dataclass(slots=True)
class _Flow:
    """One direction of a TCP connection being reassembled."""

    next_seq: int
    isn: int | None = None
    framer: StreamFramer = field(default_factory=lambda: StreamFramer(max_message=MAX_MESSAGE))
    pending: dict[int, bytes] = field(default_factory=dict)
    pending_bytes: int = 0
    fin_seq: int | None = None


class _TcpStreams:
    """Per-direction TCP reassembly into SIP messages, bounded in flows and buffered bytes.

    Bytes are taken in sequence order; bytes already delivered (retransmissions, overlaps)
    are ignored; segments ahead of a hole wait in a capped buffer, and once the cap is hit
    (or the flow ends) the hole is skipped and the framer restarted.
    """

    def __init__(self, stats: CaptureStats) -> None:
        self._stats = stats
        self._flows: OrderedDict[_FlowKey, _Flow] = OrderedDict()
        self._closed: OrderedDict[_FlowKey, None] = OrderedDict()
        self._pending_total = 0

    def segment(self, key: _FlowKey, tcp: Packet, ts: float, frame: int) -> list[Datagram]:
        """Take one TCP segment; return the SIP messages it completed."""
        flags: int = tcp.flags
        seq: int = tcp.seq
        data: bytes = tcp.data
        out: list[Datagram] = []
        flow = self._flows.get(key)
        if flags & _TCP_SYN:
            if flow is None or flow.isn != seq:
                if flow is not None:
                    out += self._close(key, ts, frame)
                flow = self._open(key, (seq + 1) % _SEQ_MOD, out, ts, frame)
                flow.isn = seq
            seq = (seq + 1) % _SEQ_MOD
        elif flow is None:
            if not data:
                return out
            if key in self._closed:
                self._stats.tcp_retransmissions += 1
                return out
            flow = self._open(key, seq, out, ts, frame)
        self._flows.move_to_end(key)
        if data:
            out += self._data(key, flow, seq, data, ts, frame)
        if flags & _TCP_FIN:
            flow.fin_seq = (seq + len(data)) % _SEQ_MOD
        if flags & _TCP_RST or (flow.fin_seq is not None and flow.next_seq == flow.fin_seq):
            out += self._close(key, ts, frame)
        return out

    def finish(self, ts: float, frame: int) -> list[Datagram]:
        """End of capture: deliver what is buffered (skipping holes) in every flow."""
        out: list[Datagram] = []
        for key in list(self._flows):
            out += self._close(key, ts, frame)
        return out

    def _open(
        self, key: _FlowKey, next_seq: int, out: list[Datagram], ts: float, frame: int
    ) -> _Flow:
        if len(self._flows) >= MAX_TCP_FLOWS:
            oldest_key, oldest = next(iter(self._flows.items()))
            if oldest.pending or oldest.framer.buffered:
                self._stats.tcp_flows_evicted += 1
            out += self._close(oldest_key, ts, frame)
        self._closed.pop(key, None)
        flow = self._flows[key] = _Flow(next_seq)
        return flow

    def _close(self, key: _FlowKey, ts: float, frame: int) -> list[Datagram]:
        flow = self._flows.pop(key)
        out: list[Datagram] = []
        while flow.pending:
            out += self._skip_gap(key, flow, ts, frame)
        self._stats.tcp_unframed_bytes += flow.framer.buffered + flow.framer.discarded_bytes
        self._closed[key] = None
        if len(self._closed) > MAX_TCP_CLOSED:
            self._closed.popitem(last=False)
        return out

    def _data(
        self, key: _FlowKey, flow: _Flow, seq: int, data: bytes, ts: float, frame: int
    ) -> list[Datagram]:
        ahead = _seq_diff(seq, flow.next_seq)
        if ahead <= 0:
            if -ahead >= len(data):
                self._stats.tcp_retransmissions += 1
                return []
            out = self._deliver(key, flow, data[-ahead:], ts, frame)
            return out + self._drain(key, flow, ts, frame)
        held = len(flow.pending.get(seq, b""))
        if held < len(data):
            flow.pending[seq] = data
            flow.pending_bytes += len(data) - held
            self._pending_total += len(data) - held
        else:
            self._stats.tcp_retransmissions += 1
        out = []
        while flow.pending and (
            flow.pending_bytes > MAX_PENDING_BYTES
            or len(flow.pending) > MAX_PENDING_SEGMENTS
            or self._pending_total > MAX_PENDING_TOTAL
        ):
            out += self._skip_gap(key, flow, ts, frame)
        return out

    def _deliver(
        self, key: _FlowKey, flow: _Flow, data: bytes, ts: float, frame: int
    ) -> list[Datagram]:
        flow.next_seq = (flow.next_seq + len(data)) % _SEQ_MOD
        src_ip, src_port, dst_ip, dst_port = key
        return [
            Datagram(ts, "tcp", src_ip, src_port, dst_ip, dst_port, message, frame)
            for message in flow.framer.feed(data)
        ]

    def _drain(self, key: _FlowKey, flow: _Flow, ts: float, frame: int) -> list[Datagram]:
        """Deliver buffered segments that the stream has now reached."""
        out: list[Datagram] = []
        progressed = True
        while progressed and flow.pending:
            progressed = False
            for seq in list(flow.pending):
                behind = -_seq_diff(seq, flow.next_seq)
                if behind < 0:
                    continue
                chunk = flow.pending.pop(seq)
                flow.pending_bytes -= len(chunk)
                self._pending_total -= len(chunk)
                if behind < len(chunk):
                    out += self._deliver(key, flow, chunk[behind:], ts, frame)
                    progressed = True
                else:
                    self._stats.tcp_retransmissions += 1
        return out

    def _skip_gap(self, key: _FlowKey, flow: _Flow, ts: float, frame: int) -> list[Datagram]:
        """Give up on the hole before the nearest buffered segment and restart framing."""
        self._stats.tcp_gaps += 1
        self._stats.tcp_unframed_bytes += flow.framer.buffered + flow.framer.discarded_bytes
        flow.framer = StreamFramer(max_message=MAX_MESSAGE)
        flow.next_seq = min(flow.pending, key=lambda seq: _seq_diff(seq, flow.next_seq))
        return self._drain(key, flow, ts, frame)


# --------------------------------------------------------------------------- decoding


class _Decoder:
    """Turns capture records into Datagrams: link and IP layers, fragments, TCP streams."""

    def __init__(self, stats: CaptureStats) -> None:
        self._stats = stats
        self._fragments = _Fragments(stats)
        self._tcp = _TcpStreams(stats)
        self._last: tuple[float, int] = (0.0, 0)

    def packet(self, record: _Record) -> list[Datagram]:
        """Decode one record; problems are counted, never raised."""
        stats = self._stats
        self._last = (record.ts, record.frame)
        if record.linktype not in SUPPORTED_LINKTYPES:
            stats.unsupported_link += 1
            return []
        if record.wire_len > len(record.data):
            stats.snapped += 1
        try:
            net = _ip_layer(record.linktype, record.data)
        except (_Undecodable, *_DECODE_ERRORS):
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

    def _ip(self, net: Packet, record: _Record) -> list[Datagram]:
        """Handle an IPv4 or IPv6 packet: fragments, then UDP or TCP."""
        proto: int = net.p
        if proto not in (dpkt.ip.IP_PROTO_UDP, dpkt.ip.IP_PROTO_TCP):
            self._stats.ignored += 1
            return []
        family = AF_INET if isinstance(net, dpkt.ip.IP) else AF_INET6
        src, dst = inet_ntop(family, net.src), inet_ntop(family, net.dst)
        layer = net.data
        fragment = _fragment_of(net)
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
        key: tuple[object, ...],
        offset: int,
        more: bool,
        layer: Packet,
        record: _Record,
    ) -> Packet | None:
        """Add a fragment; once complete, decode the whole UDP or TCP segment."""
        try:
            piece = _raw_bytes(layer)
        except _DECODE_ERRORS:
            self._stats.fragments_dropped += 1
            return None
        payload = self._fragments.add(key, offset, more, piece, record.ts)
        if payload is None:
            return None
        try:
            if key[3] == dpkt.ip.IP_PROTO_UDP:
                return dpkt.udp.UDP(payload)
            return dpkt.tcp.TCP(payload)
        except _DECODE_ERRORS:
            self._stats.undecodable += 1
            return None

    def _udp(self, src: str, dst: str, udp: Packet, record: _Record) -> Datagram:
        """A Datagram for a UDP packet, its payload cut to the UDP length."""
        payload: bytes = udp.data
        declared: int = udp.ulen - 8
        if 0 <= declared < len(payload):
            payload = payload[:declared]
        elif declared > len(payload) and record.wire_len <= len(record.data):
            self._stats.snapped += 1  # cut short without the capture saying so
        return Datagram(record.ts, "udp", src, udp.sport, dst, udp.dport, payload, record.frame)


# --------------------------------------------------------------------------- public API


def _open_file(path: StrPath) -> BinaryIO:
    try:
        return open(path, "rb")  # closed by whoever iterates or by the caller
    except OSError as exc:
        raise CaptureError(f"cannot open {path}: {exc.strerror or exc}") from exc


def _format_of(head: bytes) -> Format:
    if head[:4] in PCAP_MAGICS:
        return "pcap"
    if head[:4] == PCAPNG_MAGIC:
        return "pcapng"
    return "sip"


def sniff_format(path: StrPath) -> Format:
    """Say whether a file is a pcap capture, a pcapng capture or (anything else) raw SIP."""
    with _open_file(path) as fh:
        try:
            head = fh.read(4)
        except OSError as exc:
            raise CaptureError(f"cannot read {path}: {exc}") from exc
    if not head:
        raise CaptureError(f"{path} is empty")
    return _format_of(head)


def _open_reader(path: StrPath) -> tuple[BinaryIO, _PcapReader | _PcapngReader]:
    """Open a capture file and check its header; CaptureError if it is not one."""
    fh = _open_file(path)
    try:
        head = fh.read(4)
        fh.seek(0)
        kind = _format_of(head)
        if kind == "pcap":
            return fh, _PcapReader(fh)
        if kind == "pcapng":
            return fh, _PcapngReader(fh)
        raise CaptureError(f"{path} is not a pcap or pcapng capture")
    except OSError as exc:
        fh.close()
        raise CaptureError(f"cannot read {path}: {exc}") from exc
    except CaptureError:
        fh.close()
        raise


def read_capture(
    path: StrPath,
    *,
    stats: CaptureStats | None = None,
    accept: Callable[[Datagram], bool] | None = probably_sip,
) -> Iterator[Datagram]:
    """Open a pcap or pcapng capture and iterate over the SIP payloads in it.

    Raises CaptureError now if the file cannot be read as a capture; once iterating, damage
    only ends the iteration or skips packets, counted in `stats`. `accept` filters UDP
    payloads (default: SIP ports or SIP-looking; None keeps every UDP payload); messages
    cut from TCP streams are SIP-framed already and always kept.
    """
    stats = stats if stats is not None else CaptureStats()
    fh, reader = _open_reader(path)
    stats.files += 1
    return _iterate(fh, reader, stats, accept)


def _iterate(
    fh: BinaryIO,
    reader: _PcapReader | _PcapngReader,
    stats: CaptureStats,
    accept: Callable[[Datagram], bool] | None,
) -> Iterator[Datagram]:
    with fh:
        decoder = _Decoder(stats)
        for record in reader.records(stats):
            yield from _accepted(decoder.packet(record), stats, accept)
        yield from _accepted(decoder.finish(), stats, accept)


def _accepted(
    datagrams: list[Datagram], stats: CaptureStats, accept: Callable[[Datagram], bool] | None
) -> Iterator[Datagram]:
    """The datagrams that pass the UDP filter, counted."""
    for datagram in datagrams:
        if datagram.transport == "udp" and accept is not None and not accept(datagram):
            stats.filtered += 1
            continue
        stats.datagrams += 1
        yield datagram


# Capture formats siptrap does not read (tshark does), by their first bytes: a file in one
# of them is refused with its name and how to convert it, never read as one SIP message.
FOREIGN_FORMATS: tuple[tuple[bytes, str], ...] = (
    (b"GMBU", "Microsoft Network Monitor 2.x"),
    (b"RTSS", "Microsoft Network Monitor 1.x"),
    (b"snoop\0\0\0", "Solaris snoop"),
    (b"XCP\0", "NetXRay / Windows Sniffer"),
    (b"TRSNIFF data", "Network General Sniffer"),
    (b"\x34\xcd\xb2\xa1", "modified (Kuznetzov) pcap"),
    (b"\xa1\xb2\xcd\x34", "modified (Kuznetzov) pcap"),
    (b"\x1f\x8b", "gzip-compressed"),
    (b"BZh", "bzip2-compressed"),
    (b"\xfd7zXZ\0", "xz-compressed"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed"),
)


def foreign_format(head: bytes) -> str | None:
    """The name of a capture or compression format siptrap does not read, or None."""
    return next((name for magic, name in FOREIGN_FORMATS if head.startswith(magic)), None)


def _refuse_foreign(path: StrPath, head: bytes) -> None:
    name = foreign_format(head)
    if name is None:
        return
    if name.endswith("-compressed"):
        hint = "decompress it first (siptrap reads pcap, pcapng and raw SIP files)"
    else:
        hint = f"convert it with: editcap -F pcapng {path} {path}.pcapng"
    raise CaptureError(f"{path} is a {name} file, which siptrap does not read; {hint}")


def read_sip_file(path: StrPath) -> Datagram:
    """Read a file holding one raw SIP message as a Datagram with zero addresses and time.
    A capture in a format siptrap does not read is refused (CaptureError), not read as
    one message."""
    with _open_file(path) as fh:
        try:
            data = fh.read(MAX_RAW_FILE + 1)
        except OSError as exc:
            raise CaptureError(f"cannot read {path}: {exc}") from exc
    if not data:
        raise CaptureError(f"{path} is empty")
    _refuse_foreign(path, data[:16])
    if len(data) > MAX_RAW_FILE:
        raise CaptureError(f"{path} is larger than {MAX_RAW_FILE} bytes: not one SIP message")
    return Datagram(0.0, "udp", "0.0.0.0", 0, "0.0.0.0", 0, data, 0)


def _first_timestamp(path: StrPath) -> float:
    """Timestamp of a capture's first record (infinity if it has none)."""
    fh, reader = _open_reader(path)
    with fh:
        for record in reader.records(CaptureStats()):
            return record.ts
    return float("inf")


def open_inputs(
    paths: Sequence[StrPath],
    *,
    stats: CaptureStats | None = None,
    accept: Callable[[Datagram], bool] | None = probably_sip,
) -> Iterator[Datagram]:
    """Sniff and check every input now, then iterate over them one file after another.

    Captures are ordered by their first packet's timestamp (raw SIP files, timestamped 0,
    come first; ties keep the order given), and each file's Datagrams come in capture
    order. Raises CaptureError now for any input that cannot be read.
    """
    stats = stats if stats is not None else CaptureStats()
    order: list[tuple[float, int, Format]] = []
    for index, path in enumerate(paths):
        kind = sniff_format(path)
        if kind == "sip":
            read_sip_file(path)  # checked now, read again when its turn comes
            order.append((0.0, index, kind))
        else:
            order.append((_first_timestamp(path), index, kind))
    order.sort(key=lambda item: (item[0], item[1]))
    return _chain_inputs(paths, order, stats, accept)


def _chain_inputs(
    paths: Sequence[StrPath],
    order: Iterable[tuple[float, int, Format]],
    stats: CaptureStats,
    accept: Callable[[Datagram], bool] | None,
) -> Iterator[Datagram]:
    for _ts, index, kind in order:
        if kind == "sip":
            datagram = read_sip_file(paths[index])
            stats.files += 1
            stats.datagrams += 1
            yield datagram
        else:
            yield from read_capture(paths[index], stats=stats, accept=accept)
