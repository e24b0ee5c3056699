"""G.711 µ-law and A-law: decode to 16-bit linear PCM and encode from it.

Bit-exact with the ITU-T G.191 reference implementation of G.711 (the `ulaw_expand`,
`ulaw_compress`, `alaw_expand` and `alaw_compress` routines), worked out here from the
standard's segment rules rather than from the stdlib `audioop` (gone in Python 3.13).

PCM is little-endian signed 16-bit ("s16le"), as WAV files hold it. Decoding runs two
`bytes.translate` passes (low and high byte of each sample) and interleaves them, so it
costs no Python-level loop per sample. Encoding looks each sample up in a 65536-entry
table that is built on first use.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Callable
from functools import cache

ULAW_SILENCE = 0xFF  # the code that decodes to 0
ALAW_SILENCE = 0xD5  # the code that decodes to +8, A-law's smallest positive level


def ulaw_expand(code: int) -> int:
    """Decode one µ-law code (0-255) to a linear sample (-32124..32124)."""
    inverted = ~code & 0xFF
    exponent = (inverted >> 4) & 0x07
    mantissa = inverted & 0x0F
    step = 4 << (exponent + 1)
    magnitude = (0x80 << exponent) + step * mantissa + step // 2 - 4 * 33
    return magnitude if code & 0x80 else -magnitude


def ulaw_compress(sample: int) -> int:
    """Encode one linear sample (-32768..32767) to a µ-law code.

    Only the 14 most significant bits count; negative values use the one's complement,
    as G.191 does, so -1..-4 encode as negative zero (0x7F).
    """
    absno = ((~sample if sample < 0 else sample) >> 2) + 33
    absno = min(absno, 0x1FFF)
    segment = (absno >> 6).bit_length() + 1
    low = 0x0F - ((absno >> segment) & 0x0F)
    code = ((8 - segment) << 4) | low
    return code | 0x80 if sample >= 0 else code


def alaw_expand(code: int) -> int:
    """Decode one A-law code (0-255) to a linear sample (-32256..32256)."""
    ix = (code ^ 0x55) & 0x7F
    exponent = ix >> 4
    mantissa = ix & 0x0F
    if exponent > 0:
        mantissa += 16
    mantissa = (mantissa << 4) + 8
    if exponent > 1:
        mantissa <<= exponent - 1
    return mantissa if code & 0x80 else -mantissa


def alaw_compress(sample: int) -> int:
    """Encode one linear sample (-32768..32767) to an A-law code (13 MSBs count)."""
    ix = (~sample if sample < 0 else sample) >> 4
    if ix > 15:
        exponent = 1
        while ix > 16 + 15:
            ix >>= 1
            exponent += 1
        ix = ix - 16 + (exponent << 4)
    if sample >= 0:
        ix |= 0x80
    return ix ^ 0x55


def _split_table(expand: Callable[[int], int]) -> tuple[bytes, bytes]:
    """Two 256-byte translate tables: low and high byte of each code's s16le sample."""
    samples = [expand(code) & 0xFFFF for code in range(256)]
    return bytes(s & 0xFF for s in samples), bytes(s >> 8 for s in samples)


_ULAW_LO, _ULAW_HI = _split_table(ulaw_expand)
_ALAW_LO, _ALAW_HI = _split_table(alaw_expand)
_BIG_ENDIAN = sys.byteorder == "big"


def _decode(payload: bytes, lo: bytes, hi: bytes) -> bytes:
    out = bytearray(2 * len(payload))
    out[0::2] = payload.translate(lo)
    out[1::2] = payload.translate(hi)
    return bytes(out)


def ulaw_decode(payload: bytes) -> bytes:
    """Decode µ-law bytes to s16le PCM (two bytes per input byte)."""
    return _decode(payload, _ULAW_LO, _ULAW_HI)


def alaw_decode(payload: bytes) -> bytes:
    """Decode A-law bytes to s16le PCM (two bytes per input byte)."""
    return _decode(payload, _ALAW_LO, _ALAW_HI)


@cache
def _encode_table(law: str) -> bytes:
    """Code for every 16-bit sample, indexed by the sample's unsigned bit pattern."""
    compress = ulaw_compress if law == "ulaw" else alaw_compress
    return bytes(compress(u - 0x10000 if u & 0x8000 else u) for u in range(0x10000))


def _encode(pcm: bytes, table: bytes) -> bytes:
    samples = array("H")
    samples.frombytes(pcm[: len(pcm) & ~1])
    if _BIG_ENDIAN:
        samples.byteswap()
    return bytes(map(table.__getitem__, samples))


def ulaw_encode(pcm: bytes) -> bytes:
    """Encode s16le PCM to µ-law (one byte per sample; a trailing odd byte is ignored)."""
    return _encode(pcm, _encode_table("ulaw"))


def alaw_encode(pcm: bytes) -> bytes:
    """Encode s16le PCM to A-law (one byte per sample; a trailing odd byte is ignored)."""
    return _encode(pcm, _encode_table("alaw"))
