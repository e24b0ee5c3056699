"""Call-progress tones, the voice-like prompt, and the RTP packetiser."""

from __future__ import annotations

import cmath
import itertools
import math
import struct

import pytest

from siptrap.media import codecs
from siptrap.media.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from siptrap.media.rtp import parse_rtp
from siptrap.media.stream import StreamAssembler
from siptrap.media.tones import Packetiser, busy, ringback, tone, voice_prompt


def samples(pcm: bytes) -> list[int]:
    return list(struct.unpack(f"<{len(pcm) // 2}h", pcm))


def power_at(values: list[int], freq: float, rate: int = 8000) -> float:
    """Magnitude of one DFT bin (Goertzel-like, computed directly)."""
    w = -2j * math.pi * freq / rate
    return abs(sum(v * cmath.exp(w * i) for i, v in enumerate(values))) / len(values)


def rms(values: list[int]) -> float:
    return math.sqrt(sum(v * v for v in values) / len(values)) if values else 0.0


def on_off(values: list[int], rate: int = 8000) -> list[bool]:
    """Per 100 ms: is the tone on?"""
    step = rate // 10
    return [rms(values[i : i + step]) > 500 for i in range(0, len(values), step)]


def test_eu_ringback_cadence_and_frequency():
    values = samples(ringback(10.0))
    assert len(values) == 80000
    assert on_off(values) == ([True] * 10 + [False] * 40) * 2
    assert power_at(values[:8000], 425) > 20 * power_at(values[:8000], 600)


def test_us_ringback_has_two_frequencies():
    values = samples(ringback(6.0, region="us"))[:16000]
    assert on_off(values) == [True] * 20
    low, high, off = power_at(values, 440), power_at(values, 480), power_at(values, 1000)
    assert low > 20 * off
    assert high > 20 * off


def test_busy_cadence():
    values = samples(busy(3.0))
    assert on_off(values) == ([True] * 5 + [False] * 5) * 3


def test_tone_level_and_limits():
    values = samples(tone((1000.0,), 0.5, level=0.5))
    assert max(abs(v) for v in values) == pytest.approx(0.5 * 32767, rel=0.01)
    assert tone((), 1.0) == b""
    assert len(ringback(10_000.0)) == 2 * 8000 * 600  # capped at ten minutes


def test_voice_prompt_looks_like_speech():
    pcm = voice_prompt(words=4, seed=3)
    values = samples(pcm)
    assert 1.5 < len(values) / 8000 < 6
    assert max(abs(v) for v in values) == pytest.approx(0.5 * 32767, rel=0.01)
    frames = on_off(values)
    # syllables with pauses between: several separate bursts of sound
    bursts = sum(1 for a, b in itertools.pairwise([False, *frames]) if b and not a)
    assert bursts >= 3
    assert 0.3 < sum(frames) / len(frames) < 0.95
    # speech-like spectrum: far more energy below 1 kHz than above 3 kHz
    low = sum(power_at(values, f) ** 2 for f in range(100, 1000, 73))
    high = sum(power_at(values, f) ** 2 for f in range(3000, 3900, 73))
    assert low > 20 * high
    # voiced: a 100 ms stretch of the loudest word repeats with a pitch period of
    # 50-90 samples (90-160 Hz, an adult voice)
    start = max(range(0, len(values) - 800, 400), key=lambda i: rms(values[i : i + 800]))
    window = values[start : start + 800]
    lag = max(
        range(20, 200), key=lambda k: sum(a * b for a, b in zip(window, window[k:], strict=False))
    )
    assert 50 <= lag <= 90
    assert voice_prompt(words=4, seed=3) == pcm  # reproducible
    assert voice_prompt(words=4, seed=4) != pcm


@pytest.mark.parametrize(
    ("codec", "pt", "decode", "encode"),
    [(codecs.PCMU, 0, ulaw_decode, ulaw_encode), (codecs.PCMA, 8, alaw_decode, alaw_encode)],
)
def test_packetiser_sequence_timestamp_and_payload(codec, pt, decode, encode):
    pcm = voice_prompt(words=1)
    packetiser = Packetiser(
        ssrc=0xDEAD, codec=codec, payload_type=pt, ptime_ms=30, sequence=65534, timestamp=10
    )
    packets = [parse_rtp(p) for p in packetiser.packets(pcm)]
    n = len(pcm) // 2
    assert len(packets) == -(-n // 240)
    assert [p.sequence for p in packets[:3]] == [65534, 65535, 0]
    assert all((b.timestamp - a.timestamp) % 2**32 == 240 for a, b in itertools.pairwise(packets))
    assert [p.marker for p in packets] == [True] + [False] * (len(packets) - 1)
    assert {p.payload_type for p in packets} == {pt}
    assert {len(p.payload) for p in packets} == {240}
    payload = b"".join(p.payload for p in packets)
    assert payload[:n] == encode(pcm)
    assert payload[n:] == encode(bytes(2 * (len(payload) - n)))  # padded with silence
    # a second run continues the numbering; skip() leaves a gap in the timestamps
    last = packets[-1]
    packetiser.skip(500)
    more = [parse_rtp(p) for p in packetiser.packets(pcm[:480])]
    assert more[0].sequence == (last.sequence + 1) % 65536
    assert more[0].timestamp == (last.timestamp + 240 + 4000) % 2**32
    assert more[0].marker


def test_packetiser_output_assembles_back():
    pcm = ringback(1.0)
    packetiser = Packetiser(ssrc=1)
    assembler = StreamAssembler()
    frames = []
    for i, data in enumerate(packetiser.packets(pcm)):
        frames += assembler.push(0.02 * i, parse_rtp(data))
    frames += assembler.flush()
    assert b"".join(f.pcm for f in frames) == ulaw_decode(ulaw_encode(pcm))


def test_packetiser_refuses_codecs_it_cannot_encode():
    with pytest.raises(ValueError, match="G729"):
        Packetiser(ssrc=1, codec=codecs.STATIC_PAYLOAD_TYPES[18])
