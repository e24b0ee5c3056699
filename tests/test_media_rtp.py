"""RTP parse/build round trips, lenient parsing of broken packets, and RTCP."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from siptrap.media.defects import MEDIA_DEFECTS
from siptrap.media.rtp import (
    RTCP_BYE,
    RTCP_RR,
    RTCP_SDES,
    RTCP_SR,
    build_rtp,
    looks_like_rtcp,
    pack_rtp,
    parse_rtcp,
    parse_rtp,
)

u32 = st.integers(0, 2**32 - 1)
rtp_fields = st.fixed_dictionaries(
    {
        "payload_type": st.integers(0, 127).filter(lambda pt: not 64 <= pt <= 95),
        "sequence": st.integers(0, 0xFFFF),
        "timestamp": u32,
        "ssrc": u32,
        "payload": st.binary(min_size=1, max_size=300),
        "marker": st.booleans(),
        "csrcs": st.lists(u32, max_size=15).map(tuple),
        "extension": st.none() | st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=40)),
        "padding": st.integers(0, 255),
    }
)


@given(rtp_fields)
def test_build_then_parse_round_trip(fields):
    data = build_rtp(
        fields["payload_type"],
        fields["sequence"],
        fields["timestamp"],
        fields["ssrc"],
        fields["payload"],
        marker=fields["marker"],
        csrcs=fields["csrcs"],
        extension=fields["extension"],
        padding=fields["padding"],
    )
    packet = parse_rtp(data)
    assert packet is not None
    assert packet.defects == ()
    assert packet.payload == fields["payload"]
    assert packet.payload_type == fields["payload_type"]
    assert packet.sequence == fields["sequence"]
    assert packet.timestamp == fields["timestamp"]
    assert packet.ssrc == fields["ssrc"]
    assert packet.marker == fields["marker"]
    assert packet.csrcs == fields["csrcs"]
    assert packet.padding == bool(fields["padding"])
    if fields["extension"] is None:
        assert not packet.extension
    else:
        profile, ext = fields["extension"]
        assert packet.extension_profile == profile
        assert packet.extension_data == ext + b"\0" * (-len(ext) % 4)
    assert pack_rtp(packet) == data


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(data):
    packet = parse_rtp(data)
    if packet is not None:
        assert packet.version == 2
        assert set(packet.defects) <= set(MEDIA_DEFECTS)
        assert len(packet.payload) <= len(data) - 12
    compound = parse_rtcp(data)
    if compound is not None:
        assert set(compound.defects) <= set(MEDIA_DEFECTS)


def test_hand_made_packet_fields():
    # V=2, P=0, X=1, CC=1; M=1, PT=8; seq 0x1234; ts 0x01020304; SSRC 0xCAFEBABE
    data = bytes.fromhex("9188 1234 01020304 cafebabe 11111111 bede0001 10ab0000") + b"audio"
    packet = parse_rtp(data)
    assert packet is not None
    assert (packet.marker, packet.payload_type, packet.sequence) == (True, 8, 0x1234)
    assert (packet.timestamp, packet.ssrc) == (0x01020304, 0xCAFEBABE)
    assert packet.csrcs == (0x11111111,)
    assert packet.extension_profile == 0xBEDE  # RFC 8285 one-byte elements
    assert packet.extension_data == bytes.fromhex("10ab0000")
    assert packet.payload == b"audio"


def test_not_rtp():
    assert parse_rtp(b"") is None
    assert parse_rtp(b"\x80" * 11) is None  # shorter than the fixed header
    assert parse_rtp(b"INVITE sip:x SIP/2.0\r\n") is None  # version 1
    assert parse_rtp(b"\x00\x01\x00\x08" + b"\x21\x12\xa4\x42" + b"x" * 12) is None  # STUN
    rtcp = struct.pack("!BBHI", 0x80, RTCP_RR, 1, 0x1234)
    assert parse_rtp(rtcp) is None
    assert looks_like_rtcp(rtcp)


def test_truncated_csrc_and_extension_are_defects():
    header = bytes.fromhex("8f00 0001 00000001 00000002")  # CC=15, nothing follows
    packet = parse_rtp(header + b"\x00" * 8)
    assert packet is not None
    assert "rtp_truncated_csrc" in packet.defects
    assert len(packet.csrcs) == 2
    ext = bytes.fromhex("9000 0001 00000001 00000002 abcd0010") + b"xx"  # 16 words claimed
    packet = parse_rtp(ext)
    assert packet is not None
    assert "rtp_truncated_extension" in packet.defects
    assert packet.payload == b""


def test_bad_padding_keeps_payload():
    data = build_rtp(0, 1, 160, 7, b"\xff" * 10) + b"\x40"  # count 64 > payload
    data = bytes([data[0] | 0x20]) + data[1:]
    packet = parse_rtp(data)
    assert packet is not None
    assert "rtp_bad_padding" in packet.defects
    assert packet.payload == b"\xff" * 10 + b"\x40"


def sender_report(ssrc: int, reports: int = 1) -> bytes:
    body = struct.pack("!IQIII", ssrc, 0xE0000000_80000000, 16000, 100, 16000)
    for i in range(reports):
        body += struct.pack("!IIIIII", 0x1000 + i, (5 << 24) | 3, 70000, 12, 0, 0)
    return struct.pack("!BBH", 0x80 | reports, RTCP_SR, len(body) // 4) + body


def sdes(ssrc: int, cname: bytes) -> bytes:
    chunk = struct.pack("!I", ssrc) + bytes([1, len(cname)]) + cname + b"\0"
    chunk += b"\0" * (-len(chunk) % 4)
    return struct.pack("!BBH", 0x81, RTCP_SDES, len(chunk) // 4) + chunk


def bye(ssrc: int, reason: bytes) -> bytes:
    body = struct.pack("!I", ssrc) + bytes([len(reason)]) + reason
    body += b"\0" * (-len(body) % 4)
    return struct.pack("!BBH", 0x81, RTCP_BYE, len(body) // 4) + body


def test_rtcp_compound_sr_sdes_bye():
    data = sender_report(0xAABBCCDD) + sdes(0xAABBCCDD, b"bot@10.0.0.1") + bye(0xAABBCCDD, b"gone")
    compound = parse_rtcp(data)
    assert compound is not None
    assert compound.defects == ()
    assert compound.packet_types == (RTCP_SR, RTCP_SDES, RTCP_BYE)
    assert compound.sender_ssrc == 0xAABBCCDD
    sr = compound.packets[0]
    assert (sr.sender_packets, sr.sender_octets, sr.rtp_timestamp) == (100, 16000, 16000)
    assert sr.reports[0].ssrc == 0x1000
    assert (sr.reports[0].fraction_lost, sr.reports[0].cumulative_lost) == (5, 3)
    assert compound.packets[1].cnames == ((0xAABBCCDD, "bot@10.0.0.1"),)
    assert compound.packets[2].bye_ssrcs == (0xAABBCCDD,)
    assert compound.packets[2].bye_reason == "gone"


def test_rtcp_receiver_report_and_truncation():
    rr = struct.pack("!BBHI", 0x80, RTCP_RR, 1, 42)
    compound = parse_rtcp(rr)
    assert compound is not None
    assert compound.packet_types == (RTCP_RR,)
    assert compound.sender_ssrc == 42
    cut = parse_rtcp(sender_report(9, reports=2)[:-10])
    assert cut is not None
    assert "rtcp_truncated" in cut.defects
    assert cut.sender_ssrc == 9
    assert len(cut.packets[0].reports) == 1


def test_rtcp_not_rtcp():
    assert parse_rtcp(build_rtp(0, 1, 2, 3, b"x")) is None
    assert parse_rtcp(b"\x80\xc8") is None
