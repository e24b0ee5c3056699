"""A pcap writer for received and sent UDP datagrams (RTP, RTCP, SIP), with a size cap.

Writes the classic libpcap format (microsecond timestamps) with either Ethernet framing
(LINKTYPE_ETHERNET, made-up locally administered MAC addresses) or bare IP packets
(LINKTYPE_RAW). Each datagram gets a real IPv4 or IPv6 header and UDP header with the
true addresses, ports and arrival time, and correct checksums, so Wireshark and tshark
decode the file as if it had been captured. IPv4-mapped IPv6 addresses (::ffff:a.b.c.d,
as a dual-stack socket reports them) are written as IPv4 when both ends allow it.

The file is created new (an existing file is never overwritten). Once writing the next
record would pass `max_bytes`, nothing more is written and `truncated` says so.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import struct
from types import TracebackType
from typing import BinaryIO

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
PCAP_MAGIC = 0xA1B2C3D4
DEFAULT_SNAPLEN = 65535
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
MAX_UDP_PAYLOAD = 65535 - 8 - 20  # what fits an IPv4 total-length field

_GLOBAL_HEADER = struct.Struct("<IHHiIII")
_RECORD_HEADER = struct.Struct("<IIII")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_IPV6 = struct.Struct("!IHBB16s16s")
_UDP = struct.Struct("!HHHH")
_MAC_SRC = bytes.fromhex("020000000001")
_MAC_DST = bytes.fromhex("020000000002")
_ETH_IPV4 = _MAC_DST + _MAC_SRC + b"\x08\x00"
_ETH_IPV6 = _MAC_DST + _MAC_SRC + b"\x86\xdd"
_PROTO_UDP = 17

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def internet_checksum(data: bytes) -> int:
    """The RFC 1071 one's-complement checksum of `data` (zero-padded to even length).

    Uses the identity that summing 16-bit words with end-around carry equals the whole
    big-endian number modulo 0xFFFF (since 2**16 is 1 modulo 0xFFFF).
    """
    if len(data) & 1:
        data += b"\0"
    number = int.from_bytes(data, "big")
    total = number % 0xFFFF
    if total == 0 and number:
        total = 0xFFFF
    return ~total & 0xFFFF


@functools.lru_cache(maxsize=4096)  # a call's packets repeat a few address pairs
def _addresses(src: str, dst: str) -> tuple[IPAddress, IPAddress]:
    """Parse both ends; make them the same IP version (unmapping ::ffff:a.b.c.d)."""
    a = ipaddress.ip_address(src.split("%", 1)[0].strip("[]"))
    b = ipaddress.ip_address(dst.split("%", 1)[0].strip("[]"))
    if a.version == b.version == 6:
        ma, mb = a.ipv4_mapped, b.ipv4_mapped
        if ma is not None and mb is not None:
            return ma, mb
    if a.version != b.version:
        a = _as_v6(a)
        b = _as_v6(b)
    return a, b


def _as_v6(addr: IPAddress) -> ipaddress.IPv6Address:
    if isinstance(addr, ipaddress.IPv6Address):
        return addr
    return ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + addr.packed)


def build_udp_packet(
    src: tuple[str, int], dst: tuple[str, int], payload: bytes, *, ident: int = 0
) -> bytes:
    """An IPv4 or IPv6 packet carrying one UDP datagram, checksums filled in."""
    saddr, daddr = _addresses(src[0], dst[0])
    sport, dport = src[1] & 0xFFFF, dst[1] & 0xFFFF
    payload = payload[:MAX_UDP_PAYLOAD]
    udp_len = 8 + len(payload)
    if saddr.version == 4:
        pseudo = saddr.packed + daddr.packed + struct.pack("!BBH", 0, _PROTO_UDP, udp_len)
    else:
        pseudo = saddr.packed + daddr.packed + struct.pack("!IxxxB", udp_len, _PROTO_UDP)
    csum = internet_checksum(pseudo + _UDP.pack(sport, dport, udp_len, 0) + payload)
    udp = _UDP.pack(sport, dport, udp_len, csum or 0xFFFF) + payload
    if saddr.version == 4:
        header = _IPV4.pack(
            0x45,
            0,
            20 + udp_len,
            ident & 0xFFFF,
            0x4000,
            64,
            _PROTO_UDP,
            0,
            saddr.packed,
            daddr.packed,
        )
        checksum = internet_checksum(header)
        return header[:10] + checksum.to_bytes(2, "big") + header[12:] + udp
    header = _IPV6.pack(6 << 28, udp_len, _PROTO_UDP, 64, saddr.packed, daddr.packed)
    return header + udp


class PcapWriter:
    """Appends UDP datagrams to a new pcap file at `path`, up to `max_bytes`."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        linktype: int = LINKTYPE_ETHERNET,
        max_bytes: int = DEFAULT_MAX_BYTES,
        snaplen: int = DEFAULT_SNAPLEN,
    ) -> None:
        if linktype not in (LINKTYPE_ETHERNET, LINKTYPE_RAW):
            raise ValueError(f"unsupported linktype {linktype}")
        self.path = os.fspath(path)
        self.linktype = linktype
        self.max_bytes = max_bytes
        self.snaplen = snaplen
        self.packets_written = 0
        self.packets_dropped = 0
        self.truncated = False
        self._ident = 0
        self._file: BinaryIO = open(self.path, "xb")  # closed in close()
        header = _GLOBAL_HEADER.pack(PCAP_MAGIC, 2, 4, 0, 0, snaplen, linktype)
        self._file.write(header)
        self.bytes_written = len(header)

    def write_udp(
        self, timestamp: float, src: tuple[str, int], dst: tuple[str, int], payload: bytes
    ) -> bool:
        """Record one datagram from `src` to `dst` (host, port) that arrived (or was sent)
        at `timestamp` (seconds since the epoch). Returns False once the cap is reached.
        Raises ValueError only if an address is not an IP address."""
        if self.truncated:
            self.packets_dropped += 1
            return False
        self._ident = (self._ident + 1) & 0xFFFF
        packet = build_udp_packet(src, dst, payload, ident=self._ident)
        if self.linktype == LINKTYPE_ETHERNET:
            packet = (_ETH_IPV4 if packet[0] >> 4 == 4 else _ETH_IPV6) + packet
        return self._write_record(timestamp, packet)

    def _write_record(self, timestamp: float, packet: bytes) -> bool:
        captured = packet[: self.snaplen]
        size = _RECORD_HEADER.size + len(captured)
        if self.bytes_written + size > self.max_bytes:
            self.truncated = True
            self.packets_dropped += 1
            return False
        usec_total = max(0, round(timestamp * 1_000_000))
        seconds, usec = divmod(usec_total, 1_000_000)
        record = _RECORD_HEADER.pack(seconds & 0xFFFFFFFF, usec, len(captured), len(packet))
        self._file.write(record + captured)
        self.bytes_written += size
        self.packets_written += 1
        return True

    def flush(self) -> None:
        """Push buffered records to the operating system."""
        self._file.flush()

    def close(self) -> None:
        """Close the file. Safe to call twice."""
        self._file.close()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
