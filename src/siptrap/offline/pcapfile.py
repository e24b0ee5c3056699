"""The records of pcap and pcapng files, read by hand so that a pcapng file with several
interfaces (each with its own link type and timestamp resolution) reads correctly and so
that damage is counted in `CaptureStats`, never raised, once the file is open."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, NamedTuple

from .datagram import MAX_RECORD, CaptureError, CaptureStats

# Capture file magics. pcap: first four bytes -> (struct byte order, timestamp fraction units).
PCAP_MAGICS: dict[bytes, tuple[str, int]] = {
    b"\xd4\xc3\xb2\xa1": ("<", 1_000_000),
    b"\xa1\xb2\xc3\xd4": (">", 1_000_000),
    b"\x4d\x3c\xb2\xa1": ("<", 1_000_000_000),
    b"\xa1\xb2\x3c\x4d": (">", 1_000_000_000),
}
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
_PCAPNG_BOM = 0x1A2B3C4D


class Record(NamedTuple):
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


class PcapReader:
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

    def records(self, stats: CaptureStats) -> Iterator[Record]:
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
            yield Record(frame, seconds + fraction / units, self.linktype, data, wire_len)


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


class PcapngReader:
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

    def records(self, stats: CaptureStats) -> Iterator[Record]:
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

    def _packet(self, block_type: int, body: bytes) -> Record | None:
        """Decode an enhanced (6), simple (3) or obsolete (2) packet block; None if broken."""
        order = self._order
        if block_type == 3:
            if len(body) < 4 or not self._interfaces:
                return None
            wire_len = struct.unpack(order + "I", body[:4])[0]
            data = body[4 : 4 + wire_len]
            return Record(self._frame, self._last_ts, self._interfaces[0].linktype, data, wire_len)
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
        return Record(self._frame, ts, interface.linktype, body[20 : 20 + caplen], wire_len)
