"""The pcap writer: read back with dpkt and tshark, checksums, linktypes, cap."""

from __future__ import annotations

import ipaddress
import struct
import subprocess

import dpkt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import require_tool
from siptrap.media.pcap import (
    LINKTYPE_ETHERNET,
    LINKTYPE_RAW,
    PcapWriter,
    build_udp_packet,
    internet_checksum,
)
from siptrap.media.rtp import build_rtp

T0 = 1_700_000_000.25


def slow_checksum(data: bytes) -> int:
    """RFC 1071 done the plain way: add 16-bit words, fold carries, complement."""
    if len(data) % 2:
        data += b"\0"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@given(st.binary(max_size=300))
def test_fast_checksum_equals_the_plain_one(data):
    assert internet_checksum(data) == slow_checksum(data)


def records(path):
    with open(path, "rb") as f:
        reader = dpkt.pcap.Reader(f)
        return reader.datalink(), list(reader)


def rtp_stream(count, seq0=100):
    return [build_rtp(0, seq0 + i, 160 * i, 0xABC, bytes([i]) * 160) for i in range(count)]


def check_udp(ip_packet: bytes, version: int):
    """Verify the IP and UDP checksums of a packet by the pseudo-header rule."""
    if version == 4:
        header = ip_packet[:20]
        assert slow_checksum(header) == 0
        src, dst, udp = ip_packet[12:16], ip_packet[16:20], ip_packet[20:]
        pseudo = src + dst + struct.pack("!BBH", 0, 17, len(udp))
    else:
        src, dst, udp = ip_packet[8:24], ip_packet[24:40], ip_packet[40:]
        pseudo = src + dst + struct.pack("!IxxxB", len(udp), 17)
    assert udp[6:8] != b"\0\0"
    assert slow_checksum(pseudo + udp) == 0


@pytest.mark.parametrize("linktype", [LINKTYPE_ETHERNET, LINKTYPE_RAW])
@pytest.mark.parametrize(
    ("src", "dst"),
    [
        (("127.0.0.1", 40000), ("127.0.0.2", 5060)),
        (("::1", 40001), ("2001:db8::5", 10000)),
    ],
)
def test_datagrams_read_back_with_dpkt(tmp_path, linktype, src, dst):
    path = tmp_path / "capture.pcap"
    payloads = [*rtp_stream(5), b"", b"x" * 1401]  # odd length too
    with PcapWriter(path, linktype=linktype) as writer:
        for i, payload in enumerate(payloads):
            assert writer.write_udp(T0 + 0.02 * i, src, dst, payload)
    assert writer.packets_written == len(payloads)
    datalink, recs = records(path)
    assert datalink == (dpkt.pcap.DLT_EN10MB if linktype == LINKTYPE_ETHERNET else 101)
    assert len(recs) == len(payloads)
    for i, ((ts, buf), payload) in enumerate(zip(recs, payloads, strict=True)):
        assert ts == pytest.approx(T0 + 0.02 * i, abs=1e-6)
        raw = dpkt.ethernet.Ethernet(buf).data if linktype == LINKTYPE_ETHERNET else None
        version = ipaddress.ip_address(src[0]).version
        if raw is None:
            raw = dpkt.ip.IP(buf) if version == 4 else dpkt.ip6.IP6(buf)
        udp = raw.data
        assert ipaddress.ip_address(raw.src) == ipaddress.ip_address(src[0])
        assert ipaddress.ip_address(raw.dst) == ipaddress.ip_address(dst[0])
        assert (udp.sport, udp.dport) == (src[1], dst[1])
        assert bytes(udp.data) == payload
        check_udp(bytes(raw), version)


def test_mapped_ipv6_addresses_become_ipv4():
    packet = build_udp_packet(("::ffff:127.0.0.1", 1), ("::ffff:127.0.0.9", 2), b"hi")
    assert packet[0] >> 4 == 4
    assert packet[12:20] == bytes([127, 0, 0, 1, 127, 0, 0, 9])
    mixed = build_udp_packet(("127.0.0.1", 1), ("::1", 2), b"hi")
    assert mixed[0] >> 4 == 6
    check_udp(mixed, 6)


def test_cap_stops_writing_and_reports(tmp_path):
    path = tmp_path / "capped.pcap"
    writer = PcapWriter(path, max_bytes=24 + 3 * (16 + 14 + 20 + 8 + 172))
    results = [writer.write_udp(T0, ("127.0.0.1", 1), ("127.0.0.1", 2), p) for p in rtp_stream(6)]
    writer.close()
    assert results == [True, True, True, False, False, False]
    assert writer.truncated
    assert (writer.packets_written, writer.packets_dropped) == (3, 3)
    assert path.stat().st_size == writer.bytes_written <= writer.max_bytes
    assert len(records(path)[1]) == 3


def test_snaplen_keeps_original_length(tmp_path):
    path = tmp_path / "snap.pcap"
    with PcapWriter(path, snaplen=60) as writer:
        writer.write_udp(T0, ("127.0.0.1", 1), ("127.0.0.1", 2), b"z" * 500)
    data = path.read_bytes()
    caplen, origlen = struct.unpack_from("<II", data, 24 + 8)
    assert (caplen, origlen) == (60, 14 + 20 + 8 + 500)


def test_never_overwrites(tmp_path):
    path = tmp_path / "old.pcap"
    path.write_bytes(b"evidence")
    with pytest.raises(FileExistsError):
        PcapWriter(path)
    assert path.read_bytes() == b"evidence"


@pytest.mark.tools
@pytest.mark.parametrize("linktype", [LINKTYPE_ETHERNET, LINKTYPE_RAW])
def test_tshark_decodes_rtp_with_good_checksums(tmp_path, linktype):
    tshark = require_tool("tshark")
    path = tmp_path / "rtp.pcap"
    with PcapWriter(path, linktype=linktype) as writer:
        for i, payload in enumerate(rtp_stream(4, seq0=65534)):
            writer.write_udp(T0 + 0.02 * i, ("127.0.0.1", 40000), ("127.0.0.1", 16000), payload)
        for i, payload in enumerate(rtp_stream(2, seq0=7)):
            writer.write_udp(T0 + 1 + 0.02 * i, ("::1", 40002), ("::1", 16000), payload)
    fields = ["rtp.seq", "udp.checksum.status", "ip.checksum.status", "udp.srcport"]
    command = [tshark, "-r", str(path), "-d", "udp.port==16000,rtp", "-T", "fields"]
    command += ["-o", "udp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE"]
    for field in fields:
        command += ["-e", field]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert [r[0] for r in rows] == ["65534", "65535", "0", "1", "7", "8"]
    assert all(r[1] == "1" for r in rows)  # 1 = good checksum
    assert [r[2] for r in rows] == ["1"] * 4 + [""] * 2  # IPv6 has no header checksum
    assert [r[3] for r in rows] == ["40000"] * 4 + ["40002"] * 2
