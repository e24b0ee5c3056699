"""RTP and RTCP packets (RFC 3550): lenient parsing, building, and telling them apart.

`parse_rtp` reads any datagram that can be RTP and returns `None` for one that cannot
(too short, not version 2, or an RTCP packet type). Problems that still leave a usable
packet (a bad padding count, a truncated extension) are recorded in `defects`; nothing
here raises on attacker input. `parse_rtcp` reads a compound RTCP datagram minimally:
the packet types, the sender SSRC, sender-report counters, CNAMEs and BYE reasons.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

RTP_VERSION = 2
RTP_HEADER_LEN = 12
RTCP_SR, RTCP_RR, RTCP_SDES, RTCP_BYE, RTCP_APP = 200, 201, 202, 203, 204
RTCP_TYPES = frozenset(range(200, 208))  # 205 RTPFB, 206 PSFB, 207 XR
# RFC 5761 section 4: second bytes 192-223 are RTCP when RTP and RTCP share a port.
_RTCP_SECOND_BYTE = range(192, 224)
MAX_RTCP_PACKETS = 32
MAX_SDES_ITEMS = 32

_HEADER = struct.Struct("!BBHII")
_EXT_HEADER = struct.Struct("!HH")
_RTCP_HEADER = struct.Struct("!BBH")
_SR_INFO = struct.Struct("!IQIII")  # SSRC, NTP timestamp, RTP timestamp, packets, octets
_REPORT_BLOCK = struct.Struct("!IIIIII")


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet as read from (or built for) the wire.

    `payload` excludes the header, CSRC list, header extension and padding.
    `extension_data` is the raw extension body (RFC 8285 elements are not split).
    """

    version: int
    padding: bool
    extension: bool
    marker: bool
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    csrcs: tuple[int, ...]
    extension_profile: int | None
    extension_data: bytes
    payload: bytes
    padding_len: int = 0
    defects: tuple[str, ...] = ()


def looks_like_rtcp(data: bytes) -> bool:
    """Whether a datagram is RTCP by RFC 5761 demultiplexing (version 2, PT 192-223)."""
    return len(data) >= 8 and data[0] >> 6 == RTP_VERSION and data[1] in _RTCP_SECOND_BYTE


def parse_rtp(data: bytes) -> RtpPacket | None:
    """Read an RTP packet; `None` when the datagram cannot be RTP. Never raises."""
    if len(data) < RTP_HEADER_LEN:
        return None
    b0, b1, seq, ts, ssrc = _HEADER.unpack_from(data)
    if b0 >> 6 != RTP_VERSION or b1 in _RTCP_SECOND_BYTE:
        return None
    defects: list[str] = []
    end = len(data)
    pos = RTP_HEADER_LEN
    cc = b0 & 0x0F
    csrcs: tuple[int, ...] = ()
    if cc:
        available = min(cc, (end - pos) // 4)
        if available < cc:
            defects.append("rtp_truncated_csrc")
        csrcs = struct.unpack_from(f"!{available}I", data, pos)
        pos += 4 * available
    has_ext = bool(b0 & 0x10)
    ext_profile: int | None = None
    ext_data = b""
    if has_ext:
        if end - pos < 4:
            defects.append("rtp_truncated_extension")
            pos = end
        else:
            ext_profile, words = _EXT_HEADER.unpack_from(data, pos)
            pos += 4
            ext_end = pos + 4 * words
            if ext_end > end:
                defects.append("rtp_truncated_extension")
                ext_end = end
            ext_data = bytes(data[pos:ext_end])
            pos = ext_end
    has_padding = bool(b0 & 0x20)
    pad = 0
    if has_padding:
        count = data[-1] if end > pos else 0
        if count == 0 or count > end - pos:
            defects.append("rtp_bad_padding")
        else:
            pad = count
    payload = bytes(data[pos : end - pad])
    if not payload:
        defects.append("rtp_empty_payload")
    return RtpPacket(
        version=RTP_VERSION,
        padding=has_padding,
        extension=has_ext,
        marker=bool(b1 & 0x80),
        payload_type=b1 & 0x7F,
        sequence=seq,
        timestamp=ts,
        ssrc=ssrc,
        csrcs=csrcs,
        extension_profile=ext_profile,
        extension_data=ext_data,
        payload=payload,
        padding_len=pad,
        defects=tuple(defects),
    )


def build_rtp(
    payload_type: int,
    sequence: int,
    timestamp: int,
    ssrc: int,
    payload: bytes,
    *,
    marker: bool = False,
    csrcs: tuple[int, ...] = (),
    extension: tuple[int, bytes] | None = None,
    padding: int = 0,
) -> bytes:
    """Build an RTP packet. Values are masked to their field widths.

    `extension` is (profile, data); data is zero-padded to a 32-bit boundary. `padding`
    is the number of padding octets to add (0-255; 1 means just the count octet).
    """
    csrcs = csrcs[:15]
    b0 = (RTP_VERSION << 6) | len(csrcs)
    if padding:
        b0 |= 0x20
    if extension is not None:
        b0 |= 0x10
    b1 = (0x80 if marker else 0) | (payload_type & 0x7F)
    parts = [_HEADER.pack(b0, b1, sequence & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc & 0xFFFFFFFF)]
    if csrcs:
        parts.append(struct.pack(f"!{len(csrcs)}I", *(c & 0xFFFFFFFF for c in csrcs)))
    if extension is not None:
        profile, ext = extension
        ext = ext + b"\0" * (-len(ext) % 4)
        parts.append(_EXT_HEADER.pack(profile & 0xFFFF, min(len(ext) // 4, 0xFFFF)))
        parts.append(ext[: 4 * 0xFFFF])
    parts.append(payload)
    if padding:
        padding = min(padding, 255)
        parts.append(b"\0" * (padding - 1) + bytes((padding,)))
    return b"".join(parts)


def pack_rtp(packet: RtpPacket) -> bytes:
    """Build the wire form of a parsed or constructed `RtpPacket`."""
    ext = None
    if packet.extension:
        ext = (packet.extension_profile or 0, packet.extension_data)
    return build_rtp(
        packet.payload_type,
        packet.sequence,
        packet.timestamp,
        packet.ssrc,
        packet.payload,
        marker=packet.marker,
        csrcs=packet.csrcs,
        extension=ext,
        padding=packet.padding_len if packet.padding else 0,
    )


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """One reception report block of an SR or RR (RFC 3550 section 6.4.1)."""

    ssrc: int
    fraction_lost: int
    cumulative_lost: int
    highest_sequence: int
    jitter: int
    last_sr: int
    delay_since_last_sr: int


@dataclass(frozen=True, slots=True)
class RtcpPacket:
    """One packet of a compound RTCP datagram, read minimally.

    `ssrc` is the sender SSRC (SR, RR, APP, feedback), the first chunk's SSRC (SDES),
    or the first SSRC leaving (BYE). SR-only counters are `None` for other types.
    """

    packet_type: int
    count: int
    length: int
    ssrc: int | None = None
    ntp_timestamp: int | None = None
    rtp_timestamp: int | None = None
    sender_packets: int | None = None
    sender_octets: int | None = None
    reports: tuple[ReportBlock, ...] = ()
    cnames: tuple[tuple[int, str], ...] = ()
    bye_ssrcs: tuple[int, ...] = ()
    bye_reason: str | None = None
    app_name: str | None = None


@dataclass(frozen=True, slots=True)
class RtcpCompound:
    """A whole RTCP datagram: its packets in order and the problems found."""

    packets: tuple[RtcpPacket, ...]
    defects: tuple[str, ...] = ()

    @property
    def packet_types(self) -> tuple[int, ...]:
        return tuple(p.packet_type for p in self.packets)

    @property
    def sender_ssrc(self) -> int | None:
        """The SSRC of the first packet that names one (normally the SR or RR)."""
        for p in self.packets:
            if p.ssrc is not None:
                return p.ssrc
        return None


def parse_rtcp(data: bytes) -> RtcpCompound | None:
    """Read a compound RTCP datagram; `None` if its first packet is not RTCP."""
    if not looks_like_rtcp(data):
        return None
    packets: list[RtcpPacket] = []
    defects: list[str] = []
    pos = 0
    end = len(data)
    while end - pos >= 4:
        if len(packets) >= MAX_RTCP_PACKETS:
            defects.append("rtcp_too_many_packets")
            break
        b0, pt, words = _RTCP_HEADER.unpack_from(data, pos)
        if b0 >> 6 != RTP_VERSION:
            defects.append("rtcp_bad_version")
            break
        body_start = pos + 4
        pkt_end = body_start + 4 * words
        if pkt_end > end:
            defects.append("rtcp_truncated")
            pkt_end = end
        body = data[body_start:pkt_end]
        if b0 & 0x20 and body and 0 < body[-1] <= len(body):
            body = body[: -body[-1]]
        packets.append(_parse_rtcp_one(pt, b0 & 0x1F, words, body, defects))
        pos = pkt_end
    return RtcpCompound(tuple(packets), tuple(dict.fromkeys(defects)))


def _parse_rtcp_one(pt: int, count: int, words: int, body: bytes, defects: list[str]) -> RtcpPacket:
    if pt not in RTCP_TYPES:
        defects.append("rtcp_unknown_type")
        return RtcpPacket(pt, count, words)
    if pt == RTCP_SR:
        if len(body) < _SR_INFO.size:
            defects.append("rtcp_short_packet")
            return RtcpPacket(pt, count, words, _first_word(body))
        ssrc, ntp, rtp_ts, npk, noct = _SR_INFO.unpack_from(body)
        reports = _report_blocks(body, _SR_INFO.size, count)
        return RtcpPacket(pt, count, words, ssrc, ntp, rtp_ts, npk, noct, reports)
    if pt == RTCP_RR:
        if len(body) < 4:
            defects.append("rtcp_short_packet")
        return RtcpPacket(
            pt, count, words, _first_word(body), reports=_report_blocks(body, 4, count)
        )
    if pt == RTCP_SDES:
        cnames = _sdes_cnames(body, count)
        return RtcpPacket(pt, count, words, _first_word(body), cnames=cnames)
    if pt == RTCP_BYE:
        n = min(count, len(body) // 4)
        if n < count:
            defects.append("rtcp_short_packet")
        ssrcs = struct.unpack_from(f"!{n}I", body) if n else ()
        reason = None
        rpos = 4 * n
        if rpos < len(body):
            rlen = body[rpos]
            reason = body[rpos + 1 : rpos + 1 + rlen].decode("utf-8", "replace")
        first = ssrcs[0] if ssrcs else None
        return RtcpPacket(pt, count, words, first, bye_ssrcs=ssrcs, bye_reason=reason)
    if len(body) < 4:
        defects.append("rtcp_short_packet")
    name = body[4:8].decode("latin-1") if pt == RTCP_APP and len(body) >= 8 else None
    return RtcpPacket(pt, count, words, _first_word(body), app_name=name)


def _first_word(body: bytes) -> int | None:
    return int.from_bytes(body[:4], "big") if len(body) >= 4 else None


def _report_blocks(body: bytes, pos: int, count: int) -> tuple[ReportBlock, ...]:
    blocks = []
    for _ in range(count):
        if len(body) - pos < _REPORT_BLOCK.size:
            break
        ssrc, lost_word, high, jitter, lsr, dlsr = _REPORT_BLOCK.unpack_from(body, pos)
        cumulative = lost_word & 0xFFFFFF
        if cumulative & 0x800000:
            cumulative -= 0x1000000
        blocks.append(ReportBlock(ssrc, lost_word >> 24, cumulative, high, jitter, lsr, dlsr))
        pos += _REPORT_BLOCK.size
    return tuple(blocks)


def _sdes_cnames(body: bytes, count: int) -> tuple[tuple[int, str], ...]:
    """The CNAME item of each SDES chunk (RFC 3550 section 6.5), as (ssrc, text)."""
    cnames: list[tuple[int, str]] = []
    pos = 0
    for _ in range(count):
        if len(body) - pos < 4:
            break
        ssrc = int.from_bytes(body[pos : pos + 4], "big")
        pos += 4
        for _item in range(MAX_SDES_ITEMS):
            if pos >= len(body) or body[pos] == 0:
                break
            if pos + 1 >= len(body):
                pos = len(body)
                break
            kind, size = body[pos], body[pos + 1]
            if kind == 1:
                cnames.append((ssrc, body[pos + 2 : pos + 2 + size].decode("utf-8", "replace")))
            pos += 2 + size
        pos = (pos // 4 + 1) * 4  # the null item, then padding to a 32-bit boundary
    return tuple(cnames)
