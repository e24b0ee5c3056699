"""G.711 µ-law and A-law against known values, the segment rules, and round trips."""

from __future__ import annotations

import itertools
import math
import struct
import warnings
from array import array

import pytest
from hypothesis import given
from hypothesis import strategies as st

from siptrap.media import g711


def pcm_of(values: list[int]) -> bytes:
    return struct.pack(f"<{len(values)}h", *values)


def values_of(pcm: bytes) -> list[int]:
    return list(struct.unpack(f"<{len(pcm) // 2}h", pcm))


ALL_SAMPLES = list(range(-32768, 32768))


def test_ulaw_known_values():
    decoded = values_of(g711.ulaw_decode(bytes([0xFF, 0x00, 0x7F, 0x80])))
    assert decoded == [0, -32124, 0, 32124]


def test_alaw_known_values():
    decoded = values_of(g711.alaw_decode(bytes([0xD5, 0x55, 0xAA, 0x2A])))
    assert decoded == [8, -8, 32256, -32256]


def test_encode_known_values():
    pcm = pcm_of([0, -1, 32767, -32768])
    assert list(g711.ulaw_encode(pcm)) == [0xFF, 0x7F, 0x80, 0x00]
    assert list(g711.alaw_encode(pcm)) == [0xD5, 0x55, 0xAA, 0x2A]


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_decode_table_matches_scalar_expand(law):
    expand = g711.ulaw_expand if law == "ulaw" else g711.alaw_expand
    decode = g711.ulaw_decode if law == "ulaw" else g711.alaw_decode
    codes = bytes(range(256))
    assert values_of(decode(codes)) == [expand(c) for c in codes]


def test_ulaw_levels_follow_the_segment_rule():
    """G.711 table 2a: the reconstruction level of segment e, step m is
    ((2m + 33) * 2**e - 33) in 14-bit units (times 4 in 16-bit)."""
    positive = sorted(g711.ulaw_expand(c) for c in range(128, 256))
    expected = sorted(4 * (((2 * m + 33) << e) - 33) for e in range(8) for m in range(16))
    assert positive == expected


def test_alaw_levels_follow_the_segment_rule():
    """G.711 table 1a: segment 0 has levels 2m+1, segment e>0 has (16+m)*2**e + 2**(e-1),
    in 13-bit units (times 8 in 16-bit)."""
    positive = sorted(g711.alaw_expand(c) for c in range(256) if c & 0x80)
    expected = [8 * (2 * m + 1) for m in range(16)]
    expected += [8 * (((16 + m) << e) + (1 << (e - 1))) for e in range(1, 8) for m in range(16)]
    assert positive == sorted(expected)
    negative = sorted(g711.alaw_expand(c) for c in range(256) if not c & 0x80)
    assert negative == sorted(-v for v in expected)


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_every_sample_encodes_within_half_a_step(law):
    """Each sample decodes back to a level no further than half the gap to the next
    level (plus the bits G.711 ignores: 2 for µ-law, 3 for A-law)."""
    encode = g711.ulaw_encode if law == "ulaw" else g711.alaw_encode
    decode = g711.ulaw_decode if law == "ulaw" else g711.alaw_decode
    expand = g711.ulaw_expand if law == "ulaw" else g711.alaw_expand
    levels = sorted({expand(c) for c in range(256)})
    gap_at = {}
    for i, level in enumerate(levels):
        below = level - levels[i - 1] if i else 0
        above = levels[i + 1] - level if i + 1 < len(levels) else 0
        gap_at[level] = max(below, above)
    truncation = 4 if law == "ulaw" else 8
    pcm = array("h", ALL_SAMPLES).tobytes()
    back = values_of(decode(encode(pcm)))
    for x, y in zip(ALL_SAMPLES, back, strict=True):
        clipped = min(max(x, levels[0]), levels[-1])
        assert abs(clipped - y) <= gap_at[y] // 2 + truncation, (x, y)


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_code_round_trip(law):
    encode = g711.ulaw_encode if law == "ulaw" else g711.alaw_encode
    decode = g711.ulaw_decode if law == "ulaw" else g711.alaw_decode
    codes = bytes(c for c in range(256) if not (law == "ulaw" and c == 0x7F))
    assert encode(decode(codes)) == codes


def test_encode_is_monotonic():
    """Larger samples never get a smaller decoded value (quantiser is monotonic)."""
    pcm = array("h", ALL_SAMPLES).tobytes()
    for encode, decode in (
        (g711.ulaw_encode, g711.ulaw_decode),
        (g711.alaw_encode, g711.alaw_decode),
    ):
        back = values_of(decode(encode(pcm)))
        assert all(a <= b for a, b in itertools.pairwise(back))


def test_against_audioop_when_available():
    """Cross-check with CPython's audioop (3.11/3.12). audioop negates negative samples
    where G.191 takes the one's complement, so µ-law encoding may differ only on negative
    decision boundaries; decoding and A-law must agree everywhere."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")
    codes = bytes(range(256))
    assert g711.ulaw_decode(codes) == audioop.ulaw2lin(codes, 2)
    assert g711.alaw_decode(codes) == audioop.alaw2lin(codes, 2)
    pcm = array("h", ALL_SAMPLES).tobytes()
    assert g711.alaw_encode(pcm) == audioop.lin2alaw(pcm, 2)
    ours, theirs = g711.ulaw_encode(pcm), audioop.lin2ulaw(pcm, 2)
    differing = [ALL_SAMPLES[i] for i in range(len(ours)) if ours[i] != theirs[i]]
    assert all(x < 0 for x in differing)
    assert len(differing) < 1024
    for x in differing:  # each difference is one level apart, at a boundary
        a = g711.ulaw_expand(ours[x + 32768])
        b = g711.ulaw_expand(theirs[x + 32768])
        assert abs(a - b) <= 1024


def test_sine_snr_is_telephone_quality():
    n = 8000
    sine = [round(10000 * math.sin(2 * math.pi * 1000 * i / 8000 + 0.3)) for i in range(n)]
    for encode, decode in (
        (g711.ulaw_encode, g711.ulaw_decode),
        (g711.alaw_encode, g711.alaw_decode),
    ):
        back = values_of(decode(encode(pcm_of(sine))))
        signal = sum(x * x for x in sine)
        noise = sum((x - y) ** 2 for x, y in zip(sine, back, strict=True))
        assert 10 * math.log10(signal / noise) > 35  # G.711 gives about 38 dB


@given(st.binary(max_size=400))
def test_decode_any_bytes(payload):
    for decode in (g711.ulaw_decode, g711.alaw_decode):
        assert len(decode(payload)) == 2 * len(payload)


@given(st.binary(max_size=401))
def test_encode_any_pcm(pcm):
    for encode in (g711.ulaw_encode, g711.alaw_encode):
        assert len(encode(pcm)) == len(pcm) // 2
