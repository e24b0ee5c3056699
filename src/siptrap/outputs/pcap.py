"""pcap output: every SIP message in and out, into rolling, size-capped capture files.

The honeypot holds the exact bytes of each message and the addresses the socket
reported, so it writes the capture itself (no tcpdump): one packet per message, with
real IPv4/IPv6 and UDP or TCP headers and checksums, Ethernet framing (made-up local
MAC addresses), and the time the message arrived or was sent. TCP and TLS messages go
into TCP segments whose sequence numbers continue per connection and direction, so
Wireshark, tshark and `siptrap analyze` reassemble the streams; TLS is written
decrypted, as TCP.

Files are `sip-<UTC start>-<n>.pcap` in the output's directory (names siptrap makes,
never from a message). A file is closed when the next packet would take it past
`file_bytes`, and the oldest such files are deleted so that at most `max_files` remain:
the capture never takes more than about file_bytes x max_files.
"""

from __future__ import annotations

import ipaddress
import re
import struct
import time
from pathlib import Path
from typing import BinaryIO

import dpkt

from ..bounded import BoundedLRU
from ..events.record import Event
from ..media.pcap import build_udp_packet
from .plugin import selection
from .settings import PcapOutput

FILE_NAME = re.compile(r"sip-\d{8}T\d{6}Z-\d{4,}\.pcap")
_GLOBAL_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)  # Ethernet
_RECORD = struct.Struct("<IIII")
_MAC = bytes.fromhex("020000000002") + bytes.fromhex("020000000001")
_ETH_IPV4 = _MAC + b"\x08\x00"
_ETH_IPV6 = _MAC + b"\x86\xdd"
MAX_FLOWS = 4096  # TCP directions whose sequence numbers are remembered
MAX_PAYLOAD = 65000

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
FlowKey = tuple[str, int, str, int, int]


def _pair(src: str, dst: str) -> tuple[IPAddress, IPAddress]:
    a = ipaddress.ip_address(src.split("%", 1)[0])
    b = ipaddress.ip_address(dst.split("%", 1)[0])
    if a.version == b.version == 6:
        ma, mb = a.ipv4_mapped, b.ipv4_mapped
        if ma is not None and mb is not None:
            return ma, mb
    if a.version != b.version:
        a, b = (ipaddress.IPv6Address(f"::ffff:{x}") if x.version == 4 else x for x in (a, b))
    return a, b


def tcp_packet(
    src: tuple[str, int], dst: tuple[str, int], seq: int, ack: int, payload: bytes
) -> bytes:
    """An IPv4 or IPv6 packet with one TCP segment (PSH, ACK), checksums filled in."""
    saddr, daddr = _pair(src[0], dst[0])
    tcp = dpkt.tcp.TCP(
        sport=src[1] & 0xFFFF,
        dport=dst[1] & 0xFFFF,
        seq=seq,
        ack=ack,
        flags=dpkt.tcp.TH_PUSH | dpkt.tcp.TH_ACK,
        win=65535,
        data=payload,
    )
    if saddr.version == 4:
        ip = dpkt.ip.IP(src=saddr.packed, dst=daddr.packed, p=dpkt.ip.IP_PROTO_TCP, ttl=64)
        ip.data = tcp
        ip.len = 20 + len(bytes(tcp))
        return bytes(ip)
    ip6 = dpkt.ip6.IP6(src=saddr.packed, dst=daddr.packed, nxt=dpkt.ip.IP_PROTO_TCP, hlim=64)
    ip6.data = tcp
    ip6.plen = len(bytes(tcp))
    return bytes(ip6)


class RollingPcap:
    """Capture files in `directory`, rolled at `file_bytes`, at most `max_files` kept."""

    def __init__(self, directory: Path, file_bytes: int, max_files: int) -> None:
        self.directory = directory
        self.file_bytes = file_bytes
        self.max_files = max_files
        self.current: Path | None = None
        self._file: BinaryIO | None = None
        self._size = 0
        self._index = 0

    def files(self) -> list[Path]:
        """This output's capture files, oldest first."""
        names = [p for p in self.directory.iterdir() if FILE_NAME.fullmatch(p.name)]
        return sorted(names, key=lambda p: (p.name.split("-")[1], int(p.stem.split("-")[2])))

    def _next(self, ts: float) -> None:
        self.close()
        self.directory.mkdir(parents=True, exist_ok=True)
        kept = self.files()
        for old in kept[: max(0, len(kept) - self.max_files + 1)]:
            old.unlink(missing_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(ts))
        while True:
            self._index += 1
            path = self.directory / f"sip-{stamp}-{self._index:04d}.pcap"
            try:
                self._file = path.open("xb")
                break
            except FileExistsError:
                continue
        self._file.write(_GLOBAL_HEADER)
        self._size = len(_GLOBAL_HEADER)
        self.current = path

    def write(self, ts: float, packet: bytes) -> None:
        frame = (_ETH_IPV4 if packet[0] >> 4 == 4 else _ETH_IPV6) + packet
        micros = max(0, round(ts * 1_000_000))
        record = _RECORD.pack(micros // 1_000_000, micros % 1_000_000, len(frame), len(frame))
        size = len(record) + len(frame)
        if self._file is None or self._size + size > self.file_bytes:
            self._next(ts)
        assert self._file is not None
        self._file.write(record + frame)
        self._size += size

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class PcapSink:
    def __init__(self, settings: PcapOutput, directory: Path) -> None:
        self.settings = settings
        self.name = settings.label
        self.queue_size = settings.queue_size
        self.select = selection(settings)
        self.files = RollingPcap(directory, settings.file_bytes, settings.max_files)
        self.sent = 0
        self.dropped = 0
        self._seq: BoundedLRU[FlowKey, int] = BoundedLRU(MAX_FLOWS)  # the next sequence

    def open(self) -> None:
        self.files.directory.mkdir(parents=True, exist_ok=True)

    def _next_seq(self, key: FlowKey, size: int) -> int:
        """The sequence number of the next `size` bytes of one TCP direction."""
        seq = self._seq.peek(key)
        seq = 1 if seq is None else seq
        self._seq.put(key, (seq + size) & 0xFFFFFFFF)  # least recently written forgotten
        return seq

    def packet(self, event: Event) -> bytes | None:
        peer = event.peer
        if event.raw is None or peer is None or event.direction not in ("in", "out"):
            return None
        remote, local = (peer.src_ip, peer.src_port), (peer.dst_ip, peer.dst_port)
        src, dst = (local, remote) if event.direction == "out" else (remote, local)
        payload = event.raw[:MAX_PAYLOAD]
        try:
            if peer.transport == "udp":
                return build_udp_packet(src, dst, payload)
            seq = self._next_seq((*src, *dst, peer.connection), len(payload))
            ack = self._seq.peek((*dst, *src, peer.connection))
            ack = 1 if ack is None else ack
            return tcp_packet(src, dst, seq, ack, payload)
        except ValueError:  # an address that is not an IP address
            return None

    def write(self, events: list[Event]) -> None:
        for event in events:
            if event.raw is None or not self.select(event.id):
                continue
            packet = self.packet(event)
            if packet is None:
                self.dropped += 1
                continue
            self.files.write(event.ts, packet)
            self.sent += 1
        self.files.flush()

    def close(self) -> None:
        self.files.close()
