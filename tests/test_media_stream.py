"""The stream assembler against a known source: reordering, duplicates, loss, gaps,
SSRC changes, restarts, comfort noise, DTMF, and bounded memory."""

from __future__ import annotations

import math
import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siptrap.media import codecs
from siptrap.media.dtmf import build_telephone_event
from siptrap.media.g711 import ulaw_decode, ulaw_encode
from siptrap.media.rtp import RtpPacket, build_rtp, parse_rtp
from siptrap.media.stream import PcmFrame, StreamAssembler
from siptrap.media.tones import Packetiser

RATE = 8000
PTIME = 160  # samples per 20 ms packet


def source_pcm(packets: int, seed: float = 0.0) -> bytes:
    """A gliding tone whose every 20 ms differs, so misplaced audio shows."""
    n = packets * PTIME
    values = [
        round(8000 * math.sin(2 * math.pi * (300 + 900 * i / n) * i / RATE + seed))
        for i in range(n)
    ]
    return struct.pack(f"<{n}h", *values)


def make_packets(pcm: bytes, *, ssrc=0x1234, seq=1000, ts=5000, t0=0.0, pt=0):
    """(arrival, packet) pairs for `pcm` as 20 ms µ-law packets."""
    packetiser = Packetiser(ssrc=ssrc, sequence=seq, timestamp=ts, payload_type=pt)
    out = []
    for i, data in enumerate(packetiser.packets(pcm)):
        packet = parse_rtp(data)
        assert packet is not None
        out.append((t0 + 0.02 * i, packet))
    return out


def assemble(pairs, **kwargs) -> tuple[StreamAssembler, list[PcmFrame]]:
    assembler = StreamAssembler(**kwargs)
    frames: list[PcmFrame] = []
    for arrival, packet in pairs:
        frames.extend(assembler.push(arrival, packet))
    frames.extend(assembler.flush())
    position = 0
    for frame in frames:  # frames are contiguous and in order
        assert frame.position == position
        position += frame.samples
    return assembler, frames


def joined(frames: list[PcmFrame]) -> bytes:
    return b"".join(f.pcm for f in frames)


def expected_with_losses(pcm: bytes, lost: set[int]) -> bytes:
    decoded = ulaw_decode(ulaw_encode(pcm))
    chunk = 2 * PTIME
    return b"".join(
        bytes(chunk) if i in lost else decoded[i * chunk : (i + 1) * chunk]
        for i in range(len(pcm) // chunk)
    )


def local_shuffle(items: list, rng: random.Random, reach: int) -> list:
    """Reorder so that no item moves more than `reach` places from where it was."""
    keyed = [(i + rng.uniform(0, reach), item) for i, item in enumerate(items)]
    return [item for _, item in sorted(keyed, key=lambda k: k[0])]


def test_in_order_stream_is_exact():
    pcm = source_pcm(50)
    assembler, frames = assemble(make_packets(pcm))
    assert joined(frames) == ulaw_decode(ulaw_encode(pcm))
    stats = assembler.stats()
    assert (stats.packets, stats.audio_packets, stats.lost, stats.duplicates) == (50, 50, 0, 0)
    assert stats.codecs == ("PCMU",)
    assert stats.sample_rate == RATE
    assert stats.duration == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(5))
def test_shuffled_duplicated_and_lost_packets(seed):
    rng = random.Random(seed)
    count = 200
    pcm = source_pcm(count, seed)
    pairs = make_packets(pcm)
    lost = set(rng.sample(range(1, count - 1), 12))
    kept = [p for i, p in enumerate(pairs) if i not in lost]
    duplicated = set(rng.sample(range(len(kept)), 15))
    with_copies = [c for i, p in enumerate(kept) for c in ([p, p] if i in duplicated else [p])]
    arrivals = local_shuffle(with_copies, rng, reach=10)
    # arrival times follow the new order, as a network would deliver them
    arrivals = [(0.02 * i, packet) for i, (_, packet) in enumerate(arrivals)]
    assembler, frames = assemble(arrivals, window=32)
    assert joined(frames) == expected_with_losses(pcm, lost)
    stats = assembler.stats()
    assert stats.lost == len(lost)
    assert stats.duplicates == len(duplicated)
    assert stats.out_of_order > 0
    assert stats.late == 0
    assert stats.samples_out == count * PTIME


def test_fully_shuffled_stream_with_a_large_window():
    rng = random.Random(7)
    pcm = source_pcm(120)
    pairs = make_packets(pcm)
    rng.shuffle(pairs)
    pairs = [(0.02 * i, packet) for i, (_, packet) in enumerate(pairs)]
    _, frames = assemble(pairs, window=len(pairs))
    assert joined(frames) == ulaw_decode(ulaw_encode(pcm))


def test_sequence_and_timestamp_wrap_around():
    pcm = source_pcm(60)
    pairs = make_packets(pcm, seq=65530, ts=2**32 - 3 * PTIME)
    assert pairs[10][1].sequence < 100  # the sequence really wrapped
    rng = random.Random(3)
    shuffled = local_shuffle(pairs, rng, reach=5)
    assembler, frames = assemble([(0.02 * i, p) for i, (_, p) in enumerate(shuffled)])
    assert joined(frames) == ulaw_decode(ulaw_encode(pcm))
    assert assembler.stats().lost == 0


def test_late_packet_after_being_given_up():
    pcm = source_pcm(60)
    pairs = make_packets(pcm)
    late = pairs.pop(5)
    pairs.insert(50, (pairs[49][0] + 0.001, late[1]))
    assembler, frames = assemble(pairs, window=8)
    stats = assembler.stats()
    assert (stats.lost, stats.late) == (1, 1)
    assert joined(frames) == expected_with_losses(pcm, {5})


def test_timestamp_gap_is_filled_with_silence():
    """Silence suppression: 1.5 s with no packets, then a talkspurt with the marker."""
    first, second = source_pcm(25, 1.0), source_pcm(25, 2.0)
    pairs = make_packets(first)
    gap_ticks = 12000
    last = pairs[-1][1]
    pairs += make_packets(
        second, seq=last.sequence + 1, ts=last.timestamp + PTIME + gap_ticks, t0=2.0
    )
    assembler, frames = assemble(pairs)
    expected = ulaw_decode(ulaw_encode(first)) + bytes(2 * gap_ticks)
    expected += ulaw_decode(ulaw_encode(second))
    assert joined(frames) == expected
    stats = assembler.stats()
    assert stats.markers == 2
    assert stats.silence_samples == gap_ticks
    assert stats.ts_jumps == 0


def test_absurd_timestamp_jump_is_bounded_by_the_arrival_clock():
    pcm = source_pcm(20)
    pairs = make_packets(pcm)
    last = pairs[-1][1]
    pairs += make_packets(pcm, seq=last.sequence + 1, ts=last.timestamp + 2**30, t0=0.4)
    assembler, _frames = assemble(pairs)
    stats = assembler.stats()
    assert stats.ts_jumps == 1
    assert stats.samples_out == 40 * PTIME  # arrival times are contiguous: no silence
    assert stats.silence_samples == 0


def test_ssrc_change_continues_after_a_wall_clock_gap():
    a, b = source_pcm(25, 1.0), source_pcm(25, 2.0)
    pairs = make_packets(a, ssrc=1) + make_packets(b, ssrc=2, seq=7, ts=99, t0=1.0)
    assembler, frames = assemble(pairs)
    expected = ulaw_decode(ulaw_encode(a)) + bytes(2 * RATE // 2)
    expected += ulaw_decode(ulaw_encode(b))
    assert joined(frames) == expected
    stats = assembler.stats()
    assert stats.ssrc_changes == 1
    assert stats.ssrcs == (1, 2)
    assert {f.ssrc for f in frames if f.kind == "audio"} == {1, 2}


def test_sequence_restart_is_followed():
    a, b = source_pcm(20, 1.0), source_pcm(20, 2.0)
    pairs = make_packets(a, seq=100, ts=0)
    pairs += make_packets(b, seq=40000, ts=20 * PTIME, t0=0.4)
    assembler, frames = assemble(pairs)
    assert joined(frames) == ulaw_decode(ulaw_encode(a + b))
    stats = assembler.stats()
    assert (stats.seq_restarts, stats.lost) == (1, 0)


def test_stray_packet_with_a_wild_sequence_number_is_dropped():
    pcm = source_pcm(30)
    pairs = make_packets(pcm)
    stray = parse_rtp(build_rtp(0, 30000, 123, 0x1234, b"\x00" * PTIME))
    pairs.insert(15, (pairs[15][0], stray))
    assembler, frames = assemble(pairs)
    assert joined(frames) == ulaw_decode(ulaw_encode(pcm))
    stats = assembler.stats()
    assert (stats.bad_seq, stats.lost, stats.seq_restarts) == (1, 0, 0)


def test_comfort_noise_renders_as_silence():
    pcm = source_pcm(10)
    pairs = make_packets(pcm)
    last = pairs[-1][1]
    cn = parse_rtp(build_rtp(13, last.sequence + 1, last.timestamp + PTIME, 0x1234, b"\x40"))
    pairs.append((0.2, cn))
    pairs += make_packets(pcm, seq=last.sequence + 2, ts=last.timestamp + 5 * PTIME, t0=0.3)
    assembler, frames = assemble(pairs)
    decoded = ulaw_decode(ulaw_encode(pcm))
    assert joined(frames) == decoded + bytes(2 * 4 * PTIME) + decoded
    stats = assembler.stats()
    assert (stats.comfort_noise, stats.lost) == (1, 0)


def event_packets(digit_code, seq, ts, t0, *, ssrc=0x1234, pt=101):
    """RFC 4733 as phones send it: 3 starts, continuations, 3 ends (one sequence number)."""
    reports = [(0, False, True)] * 3 + [(d, False, False) for d in (320, 480, 640, 800)]
    reports += [(960, True, False)] * 3
    out, s = [], seq
    for i, (duration, end, marker) in enumerate(reports):
        payload = build_telephone_event(digit_code, end=end, volume=10, duration=duration)
        data = build_rtp(pt, s, ts, ssrc, payload, marker=marker and i == 0)
        out.append((t0 + 0.02 * min(i, 7), parse_rtp(data)))
        if not end:
            s += 1
    return out, s + 1


def test_dtmf_in_the_audio_stream():
    pcm = source_pcm(10)
    pairs = make_packets(pcm)
    last = pairs[-1][1]
    events, next_seq = event_packets(5, last.sequence + 1, last.timestamp + PTIME, 0.2)
    pairs += events
    resume_ts = last.timestamp + PTIME + 960
    pairs += make_packets(pcm, seq=next_seq, ts=resume_ts, t0=0.4)
    assembler, frames = assemble(pairs)
    digits = assembler.drain_dtmf()
    assert [d.digit for d in digits] == ["5"]
    assert digits[0].duration_ms == pytest.approx(120)
    assert assembler.drain_dtmf() == []
    decoded = ulaw_decode(ulaw_encode(pcm))
    assert joined(frames) == decoded + bytes(2 * 960) + decoded
    stats = assembler.stats()
    assert (stats.lost, stats.duplicates, stats.dtmf_packets) == (0, 0, len(events))


def test_undecodable_codec_is_counted_not_rendered():
    pairs = [(0.02 * i, parse_rtp(build_rtp(18, i, 80 * i, 9, b"\x01" * 20))) for i in range(40)]
    assembler, frames = assemble(pairs)
    assert frames == []
    stats = assembler.stats()
    assert (stats.undecodable, stats.audio_packets) == (40, 0)
    assert stats.codecs == ("G729",)


def test_dynamic_payload_type_from_sdp():
    pcm = source_pcm(10)
    pairs = make_packets(pcm, pt=96)
    _assembler, frames = assemble(pairs, payload_types={96: codecs.PCMU})
    assert joined(frames) == ulaw_decode(ulaw_encode(pcm))
    assert assemble(pairs)[1] == []  # without the mapping PT 96 is unknown


@pytest.mark.skipif(not codecs.g722_available(), reason="g722 package not installed")
def test_g722_stream_decodes_at_16_khz():
    n = 16000
    values = [round(6000 * math.sin(2 * math.pi * 500 * i / 16000)) for i in range(n)]
    pcm = struct.pack(f"<{n}h", *values)
    packetiser = Packetiser(ssrc=5, codec=codecs.G722, payload_type=9)
    pairs = [(0.02 * i, parse_rtp(d)) for i, d in enumerate(packetiser.packets(pcm))]
    assert packetiser.timestamp == 8000  # the RTP clock of G.722 runs at 8 kHz
    assembler, frames = assemble(pairs)
    out = struct.unpack(f"<{n}h", joined(frames))
    assert assembler.stats().sample_rate == 16000
    # the codec delays the signal a little; find the best lag and check the likeness
    best = max(
        sum(a * b for a, b in zip(values[2000:6000], out[2000 + lag : 6000 + lag], strict=True))
        for lag in range(0, 40)
    )
    energy = sum(a * a for a in values[2000:6000])
    assert best > 0.8 * energy


def test_memory_stays_bounded_under_random_sequences():
    rng = random.Random(11)
    assembler = StreamAssembler(window=16)
    for i in range(5000):
        data = build_rtp(0, rng.randrange(65536), rng.randrange(2**32), 1, b"\xff" * 160)
        assembler.push(0.02 * i, parse_rtp(data))
        assert assembler.buffered() <= 16  # the reorder buffer's size
    stats = assembler.stats()
    assert stats.samples_out <= (5000 * 0.02 + assembler.slack + 1) * RATE


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 65535),
            st.integers(0, 2**32 - 1),
            st.sampled_from([0, 8, 9, 13, 18, 101, 127]),
            st.sampled_from([1, 2]),
            st.binary(max_size=200),
            st.booleans(),
        ),
        max_size=80,
    )
)
def test_any_packet_sequence_gives_contiguous_frames(items):
    packets: list[tuple[float, RtpPacket]] = []
    for i, (seq, ts, pt, ssrc, payload, marker) in enumerate(items):
        packet = parse_rtp(build_rtp(pt, seq, ts, ssrc, payload, marker=marker))
        assert packet is not None
        packets.append((0.02 * i, packet))
    assembler, frames = assemble(packets, window=8)
    stats = assembler.stats()
    assert stats.packets == len(items)
    assert stats.samples_out == sum(f.samples for f in frames)
    assert stats.samples_out <= (0.02 * len(items) + assembler.slack + 1) * 16000


def test_overlapping_timestamps_are_trimmed_or_dropped():
    pcm = source_pcm(3)
    decoded = ulaw_decode(ulaw_encode(pcm))
    first = parse_rtp(build_rtp(0, 1, 0, 5, ulaw_encode(pcm[:320])))
    half = parse_rtp(build_rtp(0, 2, 80, 5, ulaw_encode(pcm[160:480])))  # starts mid-way
    inside = parse_rtp(build_rtp(0, 3, 100, 5, ulaw_encode(pcm[200:300])))  # wholly played
    assembler, frames = assemble([(0.0, first), (0.02, half), (0.04, inside)])
    assert joined(frames) == decoded[:320] + decoded[320:480]
    assert assembler.stats().overlapping == 1
