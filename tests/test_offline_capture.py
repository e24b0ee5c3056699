"""Tests for siptrap.offline.capture: pcap/pcapng reading, link types, IP and TCP reassembly.

Most captures here are built byte by byte with struct (independently of dpkt, which the
reader uses), a few with dpkt's own writers; the loopback tests record real traffic with
tshark and compare what the reader finds with what the test sent.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import dpkt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import DATA, RFC4475, require_tool
from siptrap.offline.capture import (
    DEFAULT_BOUNDS,
    MAX_RAW_FILE,
    CaptureBounds,
    CaptureError,
    CaptureStats,
    Datagram,
    open_inputs,
    read_capture,
    read_sip_file,
    sniff_format,
)
from siptrap.sip import parse

PCAP_DATA = DATA / "pcap"

# ----------------------------------------------------------------------------- builders

A4, B4 = "192.0.2.10", "198.51.100.20"
A6, B6 = "2001:db8::10", "2001:db8::20"
ETH_IP4, ETH_IP6 = 0x0800, 0x86DD


def sip(n: int, body: bytes = b"", method: str = "OPTIONS") -> bytes:
    """A small SIP request, distinct for each n."""
    head = (
        f"{method} sip:{n}@example.invalid SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK-{n}\r\n"
        f"From: <sip:a@example.invalid>;tag={n}\r\n"
        f"To: <sip:{n}@example.invalid>\r\n"
        f"Call-ID: call-{n}@example.invalid\r\n"
        f"CSeq: {n} {method}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ip4(
    proto: int,
    payload: bytes,
    src: str = A4,
    dst: str = B4,
    ident: int = 1,
    offset: int = 0,
    more: bool = False,
) -> bytes:
    flags = (0x2000 if more else 0) | (offset // 8)
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(payload),
        ident,
        flags,
        64,
        proto,
        0,
        socket.inet_pton(socket.AF_INET, src),
        socket.inet_pton(socket.AF_INET, dst),
    )
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return header + payload


def ip6(nxt: int, payload: bytes, src: str = A6, dst: str = B6) -> bytes:
    return (
        struct.pack("!IHBB", 6 << 28, len(payload), nxt, 64)
        + socket.inet_pton(socket.AF_INET6, src)
        + socket.inet_pton(socket.AF_INET6, dst)
        + payload
    )


def udp(payload: bytes, sport: int = 5062, dport: int = 5060) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


SYN, FIN, RST, ACK, PSH = 0x02, 0x01, 0x04, 0x10, 0x08


def tcp(seq: int, flags: int, payload: bytes = b"", sport: int = 40000, dport: int = 5060) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, flags, 65535, 0, 0) + payload


def ether(ip: bytes, ethertype: int = ETH_IP4, vlans: Sequence[int] = ()) -> bytes:
    out = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01"
    for index, vid in enumerate(vlans):
        tpid = 0x88A8 if index == 0 and len(vlans) > 1 else 0x8100
        out += struct.pack("!HH", tpid, vid)
    return out + struct.pack("!H", ethertype) + ip


def sll(ip: bytes, ethertype: int = ETH_IP4) -> bytes:
    return struct.pack("!HHH8sH", 0, 772, 6, b"\0" * 8, ethertype) + ip


def sll2(ip: bytes, ethertype: int = ETH_IP4) -> bytes:
    return struct.pack("!HHIHBB8s", ethertype, 0, 1, 772, 0, 6, b"\0" * 8) + ip


def null(ip: bytes, family: int, order: str) -> bytes:
    return struct.pack(order + "I", family) + ip


def pcap_bytes(
    packets: Sequence[tuple[float, bytes]],
    linktype: int = 1,
    order: str = "<",
    nano: bool = False,
    wire_extra: int = 0,
) -> bytes:
    """A classic pcap file, written by hand."""
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    units = 10**9 if nano else 10**6
    out = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 262144, linktype)
    for ts, frame in packets:
        seconds = int(ts)
        fraction = round((ts - seconds) * units)
        out += struct.pack(order + "IIII", seconds, fraction, len(frame), len(frame) + wire_extra)
        out += frame
    return out


def _block(order: str, block_type: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    length = len(body) + 12
    return struct.pack(order + "II", block_type, length) + body + struct.pack(order + "I", length)


def pcapng_bytes(
    interfaces: Sequence[tuple[int, int | None]],
    packets: Sequence[tuple[int, int, bytes]],
    order: str = "<",
) -> bytes:
    """A pcapng file written by hand: interfaces are (linktype, if_tsresol byte or None),
    packets are (interface, timestamp in that interface's units, frame)."""
    out = _block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1))
    for linktype, tsresol in interfaces:
        options = b""
        if tsresol is not None:
            options = struct.pack(order + "HH", 9, 1) + bytes([tsresol]) + b"\0\0\0"
            options += struct.pack(order + "HH", 0, 0)
        out += _block(order, 1, struct.pack(order + "HHI", linktype, 0, 262144) + options)
    for iface, units, frame in packets:
        head = struct.pack(
            order + "IIIII", iface, units >> 32, units & 0xFFFFFFFF, len(frame), len(frame)
        )
        out += _block(order, 6, head + frame)
    return out


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def read_all(path: Path, **kwargs: object) -> tuple[list[Datagram], CaptureStats]:
    stats = CaptureStats()
    datagrams = list(read_capture(path, stats=stats, **kwargs))  # type: ignore[arg-type]
    return datagrams, stats


@dataclass
class TcpSender:
    """Builds the segments of one direction of a TCP connection."""

    seq: int
    sport: int = 40000
    dport: int = 5060

    def syn(self) -> bytes:
        segment = tcp(self.seq, SYN, sport=self.sport, dport=self.dport)
        self.seq = (self.seq + 1) % 2**32
        return segment

    def data(self, payload: bytes, flags: int = ACK | PSH) -> bytes:
        segment = tcp(self.seq, flags, payload, sport=self.sport, dport=self.dport)
        self.seq = (self.seq + len(payload)) % 2**32
        return segment

    def fin(self) -> bytes:
        segment = tcp(self.seq, FIN | ACK, sport=self.sport, dport=self.dport)
        self.seq = (self.seq + 1) % 2**32
        return segment


def timed(frames: Sequence[bytes], start: float = 1_700_000_000.0) -> list[tuple[float, bytes]]:
    return [(start + i * 0.25, frame) for i, frame in enumerate(frames)]


# ----------------------------------------------------------------------------- pcap


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("nano", [False, True])
def test_pcap_udp_both_byte_orders_and_resolutions(tmp_path: Path, order: str, nano: bool) -> None:
    messages = [sip(1), sip(2, b"v=0\r\n"), sip(3)]
    stamps = [1_700_000_000.123456, 1_700_000_001.5, 1_700_000_002.000001]
    frames = [ether(ip4(17, udp(m, sport=5070 + i))) for i, m in enumerate(messages)]
    path = write(
        tmp_path,
        "u.pcap",
        pcap_bytes(list(zip(stamps, frames, strict=True)), order=order, nano=nano),
    )

    datagrams, stats = read_all(path)

    assert [d.payload for d in datagrams] == messages
    assert [d.src_port for d in datagrams] == [5070, 5071, 5072]
    assert all(d.dst_port == 5060 and d.transport == "udp" for d in datagrams)
    assert all((d.src_ip, d.dst_ip) == (A4, B4) for d in datagrams)
    assert [d.frame for d in datagrams] == [1, 2, 3]
    assert [d.ts for d in datagrams] == pytest.approx(stamps, abs=1e-6)
    assert stats.packets == 3 and stats.datagrams == 3 and stats.problems == 0


def test_pcap_written_by_dpkt_nanosecond(tmp_path: Path) -> None:
    buf = io.BytesIO()
    writer = dpkt.pcap.Writer(buf, nano=True)
    writer.writepkt(ether(ip4(17, udp(sip(7)))), ts=1_600_000_000.25)
    writer.writepkt(ether(ip4(17, udp(sip(8)))), ts=1_600_000_000.75)
    path = write(tmp_path, "dpkt.pcap", buf.getvalue())

    datagrams, _ = read_all(path)

    assert [d.payload for d in datagrams] == [sip(7), sip(8)]
    assert [d.ts for d in datagrams] == pytest.approx([1_600_000_000.25, 1_600_000_000.75])


def test_ethernet_padding_is_not_part_of_the_payload(tmp_path: Path) -> None:
    short = b"\r\n\r\n"  # a keep-alive: its frame is padded to Ethernet's minimum
    frame = ether(ip4(17, udp(short)))
    frame += b"\0" * (60 - len(frame))
    path = write(tmp_path, "pad.pcap", pcap_bytes(timed([frame])))

    datagrams, _ = read_all(path)

    assert [d.payload for d in datagrams] == [short]


# ----------------------------------------------------------------------------- pcapng


@pytest.mark.parametrize("order", ["<", ">"])
def test_pcapng_interfaces_with_own_link_types_and_clocks(tmp_path: Path, order: str) -> None:
    interfaces = [(1, None), (101, 9), (276, 0x80 | 10), (113, 3)]
    packets = [
        (0, 1_700_000_000_250_000, ether(ip4(17, udp(sip(1))))),  # microseconds (default)
        (1, 1_700_000_000_500_000_000, ip4(17, udp(sip(2)))),  # nanoseconds
        (2, (1_700_000_001 << 10) + 256, sll2(ip4(17, udp(sip(3))))),  # 1/1024 s
        (3, 1_700_000_002_125, sll(ip4(17, udp(sip(4))))),  # milliseconds
    ]
    path = write(tmp_path, "multi.pcapng", pcapng_bytes(interfaces, packets, order=order))

    datagrams, stats = read_all(path)

    assert [d.payload for d in datagrams] == [sip(1), sip(2), sip(3), sip(4)]
    expected = [1_700_000_000.25, 1_700_000_000.5, 1_700_000_001.25, 1_700_000_002.125]
    assert [d.ts for d in datagrams] == pytest.approx(expected, abs=1e-6)
    assert [d.frame for d in datagrams] == [1, 2, 3, 4]
    assert stats.problems == 0


def test_pcapng_written_by_dpkt(tmp_path: Path) -> None:
    buf = io.BytesIO()
    writer = dpkt.pcapng.Writer(buf)
    writer.writepkt(ether(ip4(17, udp(sip(5)))), ts=1_650_000_000.5)
    path = write(tmp_path, "dpkt.pcapng", buf.getvalue())

    datagrams, _ = read_all(path)

    assert [(d.payload, d.ts) for d in datagrams] == [(sip(5), pytest.approx(1_650_000_000.5))]


def test_pcapng_second_section_resets_interfaces(tmp_path: Path) -> None:
    first = pcapng_bytes([(1, None)], [(0, 1_000_000, ether(ip4(17, udp(sip(1)))))], order="<")
    second = pcapng_bytes([(101, None)], [(0, 2_000_000, ip4(17, udp(sip(2))))], order=">")
    path = write(tmp_path, "two.pcapng", first + second)

    datagrams, stats = read_all(path)

    assert [d.payload for d in datagrams] == [sip(1), sip(2)]
    assert [d.frame for d in datagrams] == [1, 2]
    assert stats.problems == 0


def test_pcapng_packet_on_unknown_interface_is_counted(tmp_path: Path) -> None:
    packets = [(3, 1, ether(ip4(17, udp(sip(1))))), (0, 2, ether(ip4(17, udp(sip(2)))))]
    path = write(tmp_path, "badif.pcapng", pcapng_bytes([(1, None)], packets))

    datagrams, stats = read_all(path)

    assert [(d.payload, d.frame) for d in datagrams] == [(sip(2), 2)]
    assert stats.corrupt == 1


# ----------------------------------------------------------------------------- link types

IP4_PACKET = ip4(17, udp(sip(11)))
IP6_PACKET = ip6(17, udp(sip(11)))


@pytest.mark.parametrize(
    ("linktype", "frame", "src"),
    [
        (1, ether(IP4_PACKET, vlans=[100]), A4),
        (1, ether(IP4_PACKET, vlans=[10, 20]), A4),
        (1, ether(IP6_PACKET, ETH_IP6, vlans=[7]), A6),
        (113, sll(IP4_PACKET), A4),
        (113, sll(IP6_PACKET, ETH_IP6), A6),
        (276, sll2(IP4_PACKET), A4),
        (276, sll2(IP6_PACKET, ETH_IP6), A6),
        (101, IP4_PACKET, A4),
        (101, IP6_PACKET, A6),
        (228, IP4_PACKET, A4),
        (229, IP6_PACKET, A6),
        (0, null(IP4_PACKET, 2, "<"), A4),
        (0, null(IP4_PACKET, 2, ">"), A4),
        (0, null(IP6_PACKET, 30, "<"), A6),
        (0, null(IP6_PACKET, 10, "<"), A6),
        (108, null(IP4_PACKET, 2, ">"), A4),
        (108, null(IP6_PACKET, 24, ">"), A6),
    ],
)
def test_link_types(tmp_path: Path, linktype: int, frame: bytes, src: str) -> None:
    path = write(tmp_path, "l.pcap", pcap_bytes(timed([frame]), linktype=linktype))

    datagrams, stats = read_all(path)

    assert len(datagrams) == 1, stats
    assert datagrams[0].payload == sip(11)
    assert datagrams[0].src_ip == src
    assert (datagrams[0].src_port, datagrams[0].dst_port) == (5062, 5060)


def test_unsupported_link_type_and_non_ip_are_counted(tmp_path: Path) -> None:
    path = write(tmp_path, "wifi.pcap", pcap_bytes(timed([IP4_PACKET]), linktype=105))
    datagrams, stats = read_all(path)
    assert datagrams == [] and stats.unsupported_link == 1

    arp = ether(b"\x00\x01\x08\x00\x06\x04\x00\x01" + b"\0" * 20, ethertype=0x0806)
    icmp = ether(ip4(1, b"\x08\x00\xf7\xff\x00\x00\x00\x00"))
    path = write(tmp_path, "other.pcap", pcap_bytes(timed([arp, icmp])))
    datagrams, stats = read_all(path)
    assert datagrams == [] and stats.ignored == 2 and stats.problems == 0


def test_broken_ip_header_is_counted_not_raised(tmp_path: Path) -> None:
    broken = ether(b"\x45\x00\x00")  # an IPv4 header cut off after three bytes
    path = write(tmp_path, "b.pcap", pcap_bytes(timed([broken, ether(IP4_PACKET)])))

    datagrams, stats = read_all(path)

    assert [d.payload for d in datagrams] == [sip(11)]
    assert stats.undecodable == 1


# ----------------------------------------------------------------------------- IPv6


def test_ipv6_extension_headers_are_skipped(tmp_path: Path) -> None:
    hop_by_hop = bytes([60, 0]) + b"\x01\x04\0\0\0\0"  # next: destination options; PadN
    dest_opts = bytes([17, 0]) + b"\x01\x04\0\0\0\0"  # next: UDP
    packet = ip6(0, hop_by_hop + dest_opts + udp(sip(21), sport=5999, dport=5060))
    path = write(tmp_path, "v6.pcap", pcap_bytes(timed([ether(packet, ETH_IP6)])))

    datagrams, _ = read_all(path)

    assert [(d.payload, d.src_ip, d.dst_ip, d.src_port) for d in datagrams] == [
        (sip(21), A6, B6, 5999)
    ]


def test_ipv6_fragments_are_reassembled(tmp_path: Path) -> None:
    datagram = udp(sip(22, b"x" * 1500))
    pieces = [datagram[:800], datagram[800:1600], datagram[1600:]]
    frames = []
    for index, piece in enumerate(pieces):
        offset = index * 800
        more = index < len(pieces) - 1
        fragment_header = struct.pack("!BBHI", 17, 0, (offset // 8) << 3 | int(more), 0xBEEF)
        frames.append(ether(ip6(44, fragment_header + piece), ETH_IP6))
    path = write(tmp_path, "f6.pcap", pcap_bytes(timed([frames[2], frames[0], frames[1]])))

    datagrams, stats = read_all(path)

    assert [d.payload for d in datagrams] == [sip(22, b"x" * 1500)]
    assert datagrams[0].frame == 3
    assert stats.fragments_reassembled == 1


# ----------------------------------------------------------------------------- IPv4 fragments


def fragments4(payload: bytes, size: int, ident: int = 7) -> list[bytes]:
    """An IPv4 UDP datagram cut into fragments of `size` bytes (a multiple of 8)."""
    datagram = udp(payload)
    return [
        ether(ip4(17, datagram[o : o + size], ident=ident, offset=o, more=o + size < len(datagram)))
        for o in range(0, len(datagram), size)
    ]


def test_ipv4_fragments_in_any_order_are_reassembled(tmp_path: Path) -> None:
    message = sip(31, b"a=" + b"y" * 3000)
    pieces = fragments4(message, 1000)
    assert len(pieces) == 4
    frames = [pieces[1], pieces[3], ether(ip4(17, udp(sip(32)))), pieces[0], pieces[2]]
    path = write(tmp_path, "f4.pcap", pcap_bytes(timed(frames)))

    datagrams, stats = read_all(path)

    assert [d.payload for d in datagrams] == [sip(32), message]
    assert datagrams[1].frame == 5 and datagrams[1].src_port == 5062
    assert stats.fragments_reassembled == 1 and stats.fragments_dropped == 0


def test_ipv4_overlapping_and_duplicate_fragments(tmp_path: Path) -> None:
    message = sip(33, b"z" * 500)
    datagram = udp(message)
    first = ether(ip4(17, datagram[:400], ident=9, more=True))
    overlap = ether(ip4(17, datagram[200:600], ident=9, offset=200, more=True))
    last = ether(ip4(17, datagram[600:], ident=9, offset=600))
    path = write(tmp_path, "ov.pcap", pcap_bytes(timed([first, first, overlap, last])))

    datagrams, _ = read_all(path)

    assert [d.payload for d in datagrams] == [message]


def test_incomplete_and_stale_fragments_are_dropped(tmp_path: Path) -> None:
    pieces = fragments4(sip(34, b"q" * 2000), 800, ident=1)
    late = fragments4(sip(35, b"r" * 2000), 800, ident=2)
    frames = [
        (1000.0, pieces[0]),
        (1000.1, pieces[1]),  # pieces[2] never comes
        (2000.0, late[0]),
        (2000.1, late[1]),
        (2000.2 + DEFAULT_BOUNDS.fragment_timeout + 1, late[2]),  # arrives too late
    ]
    path = write(tmp_path, "inc.pcap", pcap_bytes(frames))

    datagrams, stats = read_all(path)

    assert datagrams == []
    assert stats.fragments_dropped == 5
    assert stats.fragments_reassembled == 0


def test_fragment_table_is_bounded(tmp_path: Path) -> None:
    firsts = [fragments4(sip(40 + i, b"p" * 100), 64, ident=100 + i)[0] for i in range(10)]
    whole = fragments4(sip(60, b"p" * 100), 64, ident=999)
    path = write(tmp_path, "many.pcap", pcap_bytes(timed([*firsts, *whole])))

    datagrams, stats = read_all(path, bounds=CaptureBounds(max_fragmented_datagrams=4))

    assert [d.payload for d in datagrams] == [sip(60, b"p" * 100)]
    assert stats.fragments_dropped == 10  # ten datagrams, each lost its only fragment


# ----------------------------------------------------------------------------- TCP


def tcp_frames(segments: Sequence[bytes], v6: bool = False) -> list[bytes]:
    if v6:
        return [ether(ip6(6, s), ETH_IP6) for s in segments]
    return [ether(ip4(6, s)) for s in segments]


def test_tcp_split_and_pipelined_messages(tmp_path: Path) -> None:
    one, two, three = sip(51, b"body-one"), sip(52), sip(53, b"body-three")
    client = TcpSender(seq=1000)
    segments = [
        client.syn(),
        client.data(one[:30]),
        client.data(one[30:]),
        client.data(two + three),
        client.fin(),
    ]
    path = write(tmp_path, "t.pcap", pcap_bytes(timed(tcp_frames(segments))))

    datagrams, stats = read_all(path)

    assert [d.payload for d in datagrams] == [one, two, three]
    assert [d.frame for d in datagrams] == [3, 4, 4]
    assert all(d.transport == "tcp" for d in datagrams)
    assert (datagrams[0].src_ip, datagrams[0].src_port, datagrams[0].dst_port) == (A4, 40000, 5060)
    assert stats.problems == 0


def test_tcp_out_of_order_retransmitted_and_overlapping(tmp_path: Path) -> None:
    messages = [sip(61), sip(62, b"b" * 300), sip(63)]
    stream = b"".join(messages)
    client = TcpSender(seq=5)
    syn = client.syn()
    cuts = [0, 100, 250, 400, 600, len(stream)]
    parts = [client.data(stream[a:b]) for a, b in itertools.pairwise(cuts)]
    overlap = tcp(6 + 200, ACK, stream[200:450])  # overlaps parts 1-3
    order = [syn, parts[0], parts[2], parts[1], parts[1], overlap, parts[4], parts[3], parts[0]]
    path = write(tmp_path, "ooo.pcap", pcap_bytes(timed(tcp_frames(order))))

    datagrams, stats = read_all(path)

    assert [d.payload for d in datagrams] == messages
    assert stats.tcp_retransmissions >= 2
    assert stats.tcp_gaps == 0


def test_tcp_sequence_wraparound_over_ipv6(tmp_path: Path) -> None:
    messages = [sip(71, b"w" * 100), sip(72)]
    stream = b"".join(messages)
    client = TcpSender(seq=2**32 - 50)
    segments = [client.syn(), client.data(stream[:120]), client.data(stream[120:])]
    path = write(tmp_path, "wrap.pcap", pcap_bytes(timed(tcp_frames(segments, v6=True))))

    datagrams, _ = read_all(path)

    assert [(d.payload, d.src_ip) for d in datagrams] == [(m, A6) for m in messages]


def test_tcp_capture_started_mid_stream(tmp_path: Path) -> None:
    client = TcpSender(seq=123456)
    segments = [client.data(sip(81)), client.data(sip(82))]
    path = write(tmp_path, "mid.pcap", pcap_bytes(timed(tcp_frames(segments))))

    datagrams, _ = read_all(path)

    assert [d.payload for d in datagrams] == [sip(81), sip(82)]


def test_tcp_hole_is_skipped_at_the_end_of_the_capture(tmp_path: Path) -> None:
    messages = [sip(91), sip(92), sip(93)]
    client = TcpSender(seq=0)
    segments = [client.syn(), *[client.data(m) for m in messages]]
    path = write(tmp_path, "hole.pcap", pcap_bytes(timed(tcp_frames(segments[:2] + segments[3:]))))

    datagrams, stats = read_all(path)

    assert [d.payload for d in datagrams] == [sip(91), sip(93)]
    assert stats.tcp_gaps == 1


def test_tcp_out_of_order_buffer_is_capped(tmp_path: Path) -> None:
    messages = [sip(100 + i) for i in range(8)]
    client = TcpSender(seq=0)
    segments = [client.syn(), *[client.data(m) for m in messages]]
    # message 0 is lost; the rest wait in the buffer until the cap forces the hole closed
    path = write(tmp_path, "cap.pcap", pcap_bytes(timed(tcp_frames([segments[0], *segments[2:]]))))

    datagrams, stats = read_all(path, bounds=CaptureBounds(max_pending_segments=3))

    assert [d.payload for d in datagrams] == messages[1:]
    assert stats.tcp_gaps == 1
    assert datagrams[0].frame == 5  # released when the fourth segment overflowed the buffer


def test_tcp_flow_table_is_capped(tmp_path: Path) -> None:
    frames = []
    for port in (40001, 40002, 40003):
        frames.append(ether(ip4(6, tcp(0, ACK, sip(port)[:40], sport=port))))
    for port in (40001, 40002, 40003):
        frames.append(ether(ip4(6, tcp(40, ACK, sip(port)[40:], sport=port))))
    path = write(tmp_path, "flows.pcap", pcap_bytes(timed(frames)))

    datagrams, stats = read_all(path, bounds=CaptureBounds(max_tcp_flows=2))

    assert stats.tcp_flows_evicted >= 1
    assert len(datagrams) < 3  # an evicted flow lost its first half
    assert all(d.payload == sip(d.src_port) for d in datagrams)


def test_tcp_buffered_bytes_are_capped_over_all_flows(tmp_path: Path) -> None:
    frames = []
    for port in (41001, 41002):
        client = TcpSender(seq=0, sport=port)
        frames.append(client.syn())
        client.data(sip(port))  # lost
        frames.append(client.data(sip(port + 10)))
    path = write(tmp_path, "total.pcap", pcap_bytes(timed(tcp_frames(frames))))

    datagrams, stats = read_all(path, bounds=CaptureBounds(max_pending_total=len(sip(41011)) + 10))

    assert [d.payload for d in datagrams] == [sip(41012), sip(41011)]
    assert datagrams[0].frame == 4  # the second flow overflowed the shared buffer at once
    assert stats.tcp_gaps == 2


def test_idle_flows_evicted_by_the_cap_are_not_problems(tmp_path: Path) -> None:
    frames = [tcp(0, SYN, sport=port) for port in range(42000, 42010)]  # a SYN scan
    client = TcpSender(seq=5, sport=42999)
    frames += [client.syn(), client.data(sip(181))]
    path = write(tmp_path, "scan.pcap", pcap_bytes(timed(tcp_frames(frames))))

    datagrams, stats = read_all(path, bounds=CaptureBounds(max_tcp_flows=2))

    assert [d.payload for d in datagrams] == [sip(181)]
    assert stats.problems == 0


def test_tcp_rst_and_late_retransmission(tmp_path: Path) -> None:
    client = TcpSender(seq=77)
    syn, data = client.syn(), client.data(sip(111))
    rst = tcp(client.seq, RST)
    frames = tcp_frames([syn, data, rst, data])  # the data segment again after the reset
    path = write(tmp_path, "rst.pcap", pcap_bytes(timed(frames)))

    datagrams, _ = read_all(path)

    assert [d.payload for d in datagrams] == [sip(111)]


def test_tcp_port_reuse_after_fin_starts_a_new_stream(tmp_path: Path) -> None:
    first, second = TcpSender(seq=10), TcpSender(seq=900_000)
    segments = [first.syn(), first.data(sip(121)), first.fin()]
    segments += [second.syn(), second.data(sip(122)), second.fin()]
    path = write(tmp_path, "reuse.pcap", pcap_bytes(timed(tcp_frames(segments))))

    datagrams, _ = read_all(path)

    assert [d.payload for d in datagrams] == [sip(121), sip(122)]


def test_tcp_incomplete_message_is_counted(tmp_path: Path) -> None:
    client = TcpSender(seq=0)
    message = sip(131, b"0123456789")
    segments = [client.syn(), client.data(message[:-4])]
    path = write(tmp_path, "part.pcap", pcap_bytes(timed(tcp_frames(segments))))

    datagrams, stats = read_all(path)

    assert datagrams == []
    assert stats.tcp_unframed_bytes == len(message) - 4


def test_ip_fragmented_tcp_segment(tmp_path: Path) -> None:
    segment = tcp(0, ACK, sip(141, b"f" * 600))
    frames = [
        ether(ip4(6, segment[:400], ident=3, more=True)),
        ether(ip4(6, segment[400:], ident=3, offset=400)),
    ]
    path = write(tmp_path, "ftcp.pcap", pcap_bytes(timed(frames)))

    datagrams, _ = read_all(path)

    assert [(d.payload, d.transport) for d in datagrams] == [(sip(141, b"f" * 600), "tcp")]


# ----------------------------------------------------------------------------- filter


def test_non_sip_udp_is_filtered_unless_on_a_sip_port(tmp_path: Path) -> None:
    rtp = b"\x80\x00\x00\x01" + b"\xff" * 160
    frames = [
        ether(ip4(17, udp(rtp, sport=16384, dport=16386))),
        ether(ip4(17, udp(b"\r\n\r\n", sport=40000, dport=5060))),
        ether(ip4(17, udp(sip(151), sport=7000, dport=7001))),
    ]
    path = write(tmp_path, "mix.pcap", pcap_bytes(timed(frames)))

    datagrams, stats = read_all(path)
    assert [d.payload for d in datagrams] == [b"\r\n\r\n", sip(151)]
    assert stats.filtered == 1

    everything, _ = read_all(path, accept=None)
    assert [d.payload for d in everything] == [rtp, b"\r\n\r\n", sip(151)]


# ----------------------------------------------------------------------------- damage


def test_truncated_last_packet_ends_quietly(tmp_path: Path) -> None:
    frames = [ether(ip4(17, udp(sip(i)))) for i in range(3)]
    data = pcap_bytes(timed(frames))
    last_record = 16 + len(frames[2])
    for keep in (7, 16 + 10):  # part of the last record's header; all of it and some data
        path = write(tmp_path, "cut.pcap", data[: len(data) - last_record + keep])

        datagrams, stats = read_all(path)

        assert [d.payload for d in datagrams] == [sip(0), sip(1)]
        assert stats.truncated == 1 and stats.problems == 1


def test_truncated_pcapng_block_ends_quietly(tmp_path: Path) -> None:
    packets = [(0, i, ether(ip4(17, udp(sip(i))))) for i in range(3)]
    data = pcapng_bytes([(1, None)], packets)
    path = write(tmp_path, "cut.pcapng", data[:-10])

    datagrams, stats = read_all(path)

    assert [d.payload for d in datagrams] == [sip(0), sip(1)]
    assert stats.truncated == 1


def test_absurd_record_length_stops_reading(tmp_path: Path) -> None:
    good = pcap_bytes(timed([ether(ip4(17, udp(sip(1))))]))
    bad = good + struct.pack("<IIII", 1, 0, 0x7FFFFFFF, 0x7FFFFFFF) + b"junk"
    path = write(tmp_path, "absurd.pcap", bad)

    datagrams, stats = read_all(path)

    assert [d.payload for d in datagrams] == [sip(1)]
    assert stats.corrupt == 1


def test_snapped_packets_are_counted(tmp_path: Path) -> None:
    frame = ether(ip4(17, udp(sip(161))))
    path = write(tmp_path, "snap.pcap", pcap_bytes(timed([frame]), wire_extra=100))

    _, stats = read_all(path)

    assert stats.snapped == 1


@pytest.mark.parametrize(
    "content",
    [
        b"\xd4\xc3\xb2\xa1\x02\x00",  # pcap header cut short
        b"\xd4\xc3\xb2\xa1" + struct.pack("<HHiIII", 9, 0, 0, 0, 65535, 1),  # version 9
        b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00",  # pcapng section header cut short
        b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00\xde\xad\xbe\xef" + b"\0" * 16,  # bad byte-order magic
        b"\x0a\x0d\x0d\x0a\x08\x00\x00\x00\x4d\x3c\x2b\x1a" + b"\0" * 16,  # impossible length
        b"OPTIONS sip:x SIP/2.0\r\n\r\n",  # not a capture at all
    ],
)
def test_unreadable_capture_raises_capture_error_at_open(tmp_path: Path, content: bytes) -> None:
    path = write(tmp_path, "bad.cap", content)
    with pytest.raises(CaptureError):
        read_capture(path)


def test_missing_file_raises_capture_error(tmp_path: Path) -> None:
    with pytest.raises(CaptureError):
        read_capture(tmp_path / "absent.pcap")
    with pytest.raises(CaptureError):
        open_inputs([tmp_path / "absent.pcap"])


def _base_captures() -> list[bytes]:
    client = TcpSender(seq=2**32 - 30)
    stream = sip(171, b"t" * 200) + sip(172)
    segments = [client.syn(), client.data(stream[:150]), client.data(stream[150:]), client.fin()]
    frames = [
        ether(ip4(17, udp(sip(170))), vlans=[5]),
        *fragments4(sip(173, b"g" * 300), 160),
        *tcp_frames(segments),
        ether(ip6(17, udp(sip(174))), ETH_IP6),
    ]
    interfaces = [(1, None), (113, 9), (101, 0x80 | 20)]
    packets = [(0, 1_000_000 + i, f) for i, f in enumerate(frames)]
    packets += [(1, 5_000_000_000, sll(ip4(17, udp(sip(175))))), (2, 1 << 40, IP6_PACKET)]
    return [
        pcap_bytes(timed(frames)),
        pcap_bytes(timed(frames), order=">", nano=True),
        pcapng_bytes(interfaces, packets),
        pcapng_bytes(interfaces, packets, order=">"),
    ]


BASE_CAPTURES = _base_captures()


def test_base_captures_read_completely() -> None:
    """The fuzzing seeds below really exercise UDP, fragments, TCP and IPv6."""
    with tempfile.TemporaryDirectory() as tmp:
        for data in BASE_CAPTURES:
            path = write(Path(tmp), "seed.cap", data)
            datagrams, stats = read_all(path)
            payloads = {d.payload for d in datagrams}
            assert {sip(170), sip(171, b"t" * 200), sip(172), sip(173, b"g" * 300)} <= payloads
            assert stats.problems == 0


def _read_damaged(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp), "fuzz.cap", data)
        stats = CaptureStats()
        try:
            datagrams = list(read_capture(path, stats=stats, accept=None))
        except CaptureError:
            return
        assert stats.datagrams == len(datagrams)
        for datagram in datagrams:
            assert isinstance(datagram.payload, bytes)
            assert datagram.transport in ("udp", "tcp")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(range(len(BASE_CAPTURES))), st.data())
def test_truncated_captures_raise_nothing_but_capture_error(
    index: int, data: st.DataObject
) -> None:
    seed = BASE_CAPTURES[index]
    cut = data.draw(st.integers(0, len(seed)))
    _read_damaged(seed[:cut])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(range(len(BASE_CAPTURES))),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=12),
)
def test_mutated_captures_raise_nothing_but_capture_error(
    index: int, mutations: list[tuple[int, int]]
) -> None:
    damaged = bytearray(BASE_CAPTURES[index])
    for position, value in mutations:
        damaged[position % len(damaged)] = value
    _read_damaged(bytes(damaged))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([0, 1, 101, 108, 113, 228, 229, 276]), st.binary(max_size=120)),
        max_size=8,
    )
)
def test_random_frames_on_every_link_type(frames: list[tuple[int, bytes]]) -> None:
    interfaces = [(linktype, None) for linktype, _ in frames]
    packets = [(index, index, frame) for index, (_, frame) in enumerate(frames)]
    _read_damaged(pcapng_bytes(interfaces, packets))


# ----------------------------------------------------------------------------- raw SIP, inputs


def test_read_sip_file_rfc4475() -> None:
    path = RFC4475 / "inv2543.dat"
    datagram = read_sip_file(path)
    assert datagram.payload == path.read_bytes()
    assert (datagram.src_ip, datagram.src_port, datagram.dst_ip, datagram.dst_port) == (
        "0.0.0.0",
        0,
        "0.0.0.0",
        0,
    )
    assert parse(datagram.payload).method == "INVITE"


def test_read_sip_file_rejects_empty_and_huge(tmp_path: Path) -> None:
    with pytest.raises(CaptureError):
        read_sip_file(write(tmp_path, "empty.sip", b""))
    with pytest.raises(CaptureError):
        read_sip_file(write(tmp_path, "huge.sip", b"x" * (MAX_RAW_FILE + 1)))


def test_sniff_format(tmp_path: Path) -> None:
    assert sniff_format(write(tmp_path, "a", pcap_bytes([], order=">"))) == "pcap"
    assert sniff_format(write(tmp_path, "b", pcap_bytes([], nano=True))) == "pcap"
    assert sniff_format(write(tmp_path, "c", pcapng_bytes([(1, None)], []))) == "pcapng"
    assert sniff_format(RFC4475 / "esc01.dat") == "sip"


def test_open_inputs_orders_files_by_first_timestamp(tmp_path: Path) -> None:
    late = write(tmp_path, "late.pcap", pcap_bytes([(2000.0, ether(ip4(17, udp(sip(2)))))]))
    early = write(
        tmp_path,
        "early.pcapng",
        pcapng_bytes([(101, None)], [(0, 1000 * 10**6, ip4(17, udp(sip(1))))]),
    )
    raw = RFC4475 / "esc01.dat"
    stats = CaptureStats()

    datagrams = list(open_inputs([late, raw, early], stats=stats))

    assert [d.payload for d in datagrams] == [raw.read_bytes(), sip(1), sip(2)]
    assert stats.files == 3 and stats.datagrams == 3


def test_open_inputs_checks_every_file_before_reading(tmp_path: Path) -> None:
    good = write(tmp_path, "good.pcap", pcap_bytes(timed([ether(IP4_PACKET)])))
    bad = write(tmp_path, "bad.pcap", b"\xd4\xc3\xb2\xa1\x02")
    with pytest.raises(CaptureError):
        open_inputs([good, bad])


def test_datagram_is_frozen() -> None:
    datagram = Datagram(1.0, "udp", A4, 1, B4, 2, b"x", 1)
    with pytest.raises(AttributeError):
        datagram.payload = b"y"  # type: ignore[misc]


# ----------------------------------------------------------------------------- committed captures


@pytest.mark.parametrize("name", ["loopback.pcapng", "loopback.pcap"])
def test_committed_loopback_captures(name: str) -> None:
    """Captures tshark made of the traffic in `loopback_traffic` (see the manifest)."""
    manifest = json.loads((PCAP_DATA / "loopback.json").read_text())
    sent = manifest[name]
    datagrams, stats = read_all(PCAP_DATA / name)
    check_against_sent(datagrams, sent)
    assert stats.problems == 0


# ----------------------------------------------------------------------------- real captures


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def loopback_traffic(port: int) -> list[dict[str, object]]:
    """Send SIP over UDP and TCP on 127.0.0.1 and ::1 to `port`; return what was sent."""
    sent: list[dict[str, object]] = []

    def note(transport: str, src: tuple, dst: tuple, payload: bytes) -> None:
        sent.append(
            {
                "transport": transport,
                "src": [src[0], src[1]],
                "dst": [dst[0], dst[1]],
                "payload": payload.decode("latin-1"),
            }
        )

    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        with (
            socket.socket(family, socket.SOCK_DGRAM) as server,
            socket.socket(family, socket.SOCK_DGRAM) as client,
        ):
            server.bind((host, port))
            server.settimeout(5)
            client.bind((host, 0))
            for n, body in ((1, b""), (2, b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n")):
                payload = sip(n + (10 if family == socket.AF_INET6 else 0), body)
                client.sendto(payload, (host, port))
                assert server.recvfrom(65535)[0] == payload
                note("udp", client.getsockname(), (host, port), payload)
        tcp_exchange(family, host, port, note)
    return sent


def tcp_exchange(family: int, host: str, port: int, note: Callable[..., None]) -> None:
    """One TCP connection: a message split over two sends, then two pipelined in one."""
    base = 20 if family == socket.AF_INET else 30
    split, first, second = sip(base + 1, b"split body"), sip(base + 2), sip(base + 3, b"x")
    received = bytearray()
    with socket.socket(family, socket.SOCK_STREAM) as listener:
        listener.bind((host, port))
        listener.listen(1)

        def serve() -> None:
            connection, _ = listener.accept()
            with connection:
                while chunk := connection.recv(65535):
                    received.extend(chunk)

        thread = threading.Thread(target=serve)
        thread.start()
        with socket.socket(family, socket.SOCK_STREAM) as client:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client.connect((host, port))
            client.sendall(split[:25])
            time.sleep(0.1)
            client.sendall(split[25:])
            time.sleep(0.1)
            client.sendall(first + second)
            time.sleep(0.1)
            source = client.getsockname()
        thread.join(10)
    assert bytes(received) == split + first + second
    for payload in (split, first, second):
        note("tcp", source, (host, port), payload)


def check_against_sent(datagrams: list[Datagram], sent: list[dict]) -> None:
    def key(d: Datagram) -> tuple:
        return (d.transport, d.src_ip, d.src_port, d.dst_ip, d.dst_port, d.payload)

    expected = [
        (s["transport"], *s["src"], *s["dst"], s["payload"].encode("latin-1")) for s in sent
    ]
    assert [key(d) for d in datagrams] == expected
    assert [d.ts for d in datagrams] == sorted(d.ts for d in datagrams)
    assert [d.frame for d in datagrams] == sorted(d.frame for d in datagrams)
    assert all(d.ts > 1_000_000_000 for d in datagrams)
    for datagram in datagrams:
        assert parse(datagram.payload).cseq is not None


def capture_loopback(path: Path, port: int, pcap: bool) -> list[dict[str, object]]:
    """Run tshark on lo while sending `loopback_traffic`; return what was sent."""
    tshark = require_tool("tshark")
    command = [tshark, "-i", "lo", "-f", f"udp port {port} or tcp port {port}"]
    command += ["-w", str(path), "-a", "duration:60", "-q"]
    if pcap:
        command += ["-F", "pcap"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        wait_for_output(process, b"Capturing on", timeout=30)
        sent = loopback_traffic(port)
        time.sleep(0.5)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return sent


def wait_for_output(process: subprocess.Popen[bytes], marker: bytes, timeout: float) -> None:
    assert process.stderr is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stderr, selectors.EVENT_READ)
    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or process.poll() is not None:
            pytest.fail(f"capture did not start: {seen!r}")
        if selector.select(remaining):
            seen += os.read(process.stderr.fileno(), 4096)
    time.sleep(0.3)  # the capture is ready shortly after it says so


@pytest.mark.tools
@pytest.mark.parametrize("pcap", [False, True], ids=["pcapng", "pcap"])
def test_tshark_loopback_capture(tmp_path: Path, pcap: bool) -> None:
    path = tmp_path / ("lo.pcap" if pcap else "lo.pcapng")
    sent = capture_loopback(path, free_port(), pcap)
    assert sniff_format(path) == ("pcap" if pcap else "pcapng")

    datagrams, stats = read_all(path)

    check_against_sent(datagrams, sent)
    assert stats.problems == 0


if __name__ == "__main__":
    # Regenerate the committed loopback captures and their manifest (needs tshark and root
    # or capture rights): python tests/test_offline_capture.py
    manifest = {}
    for name, as_pcap in (("loopback.pcapng", False), ("loopback.pcap", True)):
        manifest[name] = capture_loopback(PCAP_DATA / name, free_port(), as_pcap)
    (PCAP_DATA / "loopback.json").write_text(json.dumps(manifest, indent=1) + "\n")
