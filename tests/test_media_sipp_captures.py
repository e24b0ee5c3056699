"""Real captures shipped with SIPp, read with dpkt and fed to the stream assembler."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import dpkt
import pytest

from siptrap.media.rtp import parse_rtp
from siptrap.media.stream import StreamAssembler

DATA = Path(__file__).parent / "data" / "media"
SIPP_DIR = Path("/usr/share/sip-tester")


def udp_payloads(path: Path):
    """(timestamp, payload) of each UDP datagram of an Ethernet capture."""
    with path.open("rb") as f:
        for ts, buf in dpkt.pcap.Reader(f):
            ip = dpkt.ethernet.Ethernet(buf).data
            assert isinstance(ip.data, dpkt.udp.UDP)
            yield ts, bytes(ip.data.data)


def assemble(path: Path):
    assembler = StreamAssembler()
    frames = []
    for ts, payload in udp_payloads(path):
        packet = parse_rtp(payload)
        assert packet is not None
        assert packet.defects == ()
        frames += assembler.push(ts, packet)
    frames += assembler.flush()
    return assembler, b"".join(f.pcm for f in frames)


def test_g711a_capture_decodes_to_audio_of_the_right_length():
    assembler, pcm = assemble(DATA / "g711a.pcap")
    stats = assembler.stats()
    assert stats.codecs == ("PCMA",)
    assert (stats.packets, stats.lost, stats.duplicates, stats.out_of_order) == (236, 0, 0, 0)
    assert stats.sample_rate == 8000
    # 236 packets of 240 samples, timestamps contiguous: 7.08 s
    assert len(pcm) // 2 == 236 * 240
    assert stats.duration == pytest.approx(7.08)
    # the capture's own arrival times span about the same (plus one packet)
    assert stats.last_arrival - stats.first_arrival == pytest.approx(7.08 - 0.03, abs=0.05)
    values = struct.unpack(f"<{len(pcm) // 2}h", pcm)
    per_second = [
        math.sqrt(sum(v * v for v in values[i : i + 8000]) / 8000)
        for i in range(0, len(values) - 7999, 8000)
    ]
    assert sum(1 for r in per_second if r > 100) >= 4  # mostly sound, not silence
    assert max(abs(v) for v in values) > 3000


def test_dtmf_capture_gives_the_digit_once():
    assembler, pcm = assemble(DATA / "dtmf_2833_1.pcap")
    digits = assembler.drain_dtmf()
    assert [(d.digit, d.ended) for d in digits] == [("1", True)]
    assert digits[0].duration_ms == pytest.approx(2240 / 8)
    assert digits[0].volume == 10
    assert pcm == b""
    assert assembler.stats().dtmf_packets == 10


@pytest.mark.parametrize("name", ["g711a.pcap", "dtmf_2833_1.pcap"])
def test_copies_match_the_installed_package(name):
    installed = SIPP_DIR / name
    if not installed.exists():
        pytest.skip("SIPp (sip-tester) not installed")
    assert (DATA / name).read_bytes() == installed.read_bytes()


@pytest.mark.parametrize(
    ("name", "digit"),
    [(f"dtmf_2833_{k}.pcap", k) for k in "0123456789"]
    + [("dtmf_2833_pound.pcap", "#"), ("dtmf_2833_star.pcap", "*")],
)
def test_every_installed_sipp_dtmf_capture(name, digit):
    path = SIPP_DIR / name
    if not path.exists():
        pytest.skip("SIPp (sip-tester) not installed")
    assembler, _ = assemble(path)
    assert [d.digit for d in assembler.drain_dtmf()] == [digit]
