"""Audio codecs by RTP payload type: names, clock and sample rates, and decoders.

G.711 (PCMU, PCMA) is decoded here. G.722 is decoded only when the optional `g722`
package from PyPI (module `G722`, bindings to the public-domain libg722) is installed;
without it G.722 audio stays in the pcap only. Other codecs (GSM, G.729, Opus...) are
named so statistics can report them, but are not decoded.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

from .g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode

try:  # optional: pip install g722
    from G722 import G722 as _G722
except ImportError:  # pragma: no cover - depends on the environment
    _G722 = None

Decoder = Callable[[bytes], bytes]


@dataclass(frozen=True, slots=True)
class Codec:
    """An RTP payload format: `clock_rate` is the RTP timestamp rate, `sample_rate` the
    rate of decoded PCM (they differ for G.722: 8000 and 16000), `samples_per_byte`
    how many output samples one payload byte makes (0 when it is not a fixed ratio)."""

    name: str
    clock_rate: int
    sample_rate: int
    samples_per_byte: int = 0

    @property
    def ticks_per_byte(self) -> float:
        """RTP timestamp units per payload byte (0 when not fixed)."""
        return self.samples_per_byte * self.clock_rate / self.sample_rate


PCMU = Codec("PCMU", 8000, 8000, 1)
PCMA = Codec("PCMA", 8000, 8000, 1)
G722 = Codec("G722", 8000, 16000, 2)
CN = Codec("CN", 8000, 8000)
TELEPHONE_EVENT = Codec("telephone-event", 8000, 8000)

# RFC 3551 table 4 (static audio payload types).
STATIC_PAYLOAD_TYPES: dict[int, Codec] = {
    0: PCMU,
    3: Codec("GSM", 8000, 8000),
    4: Codec("G723", 8000, 8000),
    5: Codec("DVI4", 8000, 8000),
    6: Codec("DVI4", 16000, 16000),
    7: Codec("LPC", 8000, 8000),
    8: PCMA,
    9: G722,
    10: Codec("L16", 44100, 44100),
    11: Codec("L16", 44100, 44100),
    12: Codec("QCELP", 8000, 8000),
    13: CN,
    14: Codec("MPA", 90000, 90000),
    15: Codec("G728", 8000, 8000),
    16: Codec("DVI4", 11025, 11025),
    17: Codec("DVI4", 22050, 22050),
    18: Codec("G729", 8000, 8000),
}
DEFAULT_DYNAMIC: dict[int, Codec] = {101: TELEPHONE_EVENT}

_BY_NAME = {c.name.lower(): c for c in (PCMU, PCMA, G722, CN, TELEPHONE_EVENT)}


def codec_from_rtpmap(encoding: str, clock_rate: int) -> Codec:
    """The codec an SDP `a=rtpmap` line names (e.g. "telephone-event", 8000)."""
    known = _BY_NAME.get(encoding.strip().lower())
    if known is not None and known.clock_rate == clock_rate:
        return known
    return Codec(encoding.strip()[:32] or "unknown", clock_rate, clock_rate)


def g722_available() -> bool:
    """Whether G.722 audio can be decoded here (the optional `g722` package)."""
    return _G722 is not None


def make_decoder(codec: Codec) -> Decoder | None:
    """A function from payload bytes to s16le PCM at `codec.sample_rate`, or `None`.

    G.722 decoders keep ADPCM state, so each stream needs its own decoder.
    """
    if codec == PCMU:
        return ulaw_decode
    if codec == PCMA:
        return alaw_decode
    if codec == G722 and _G722 is not None:
        state = _G722(16000, 64000)

        def decode_g722(payload: bytes) -> bytes:
            samples = state.decode(payload)
            if sys.byteorder == "big":
                samples.byteswap()
            return bytes(samples.tobytes())

        return decode_g722
    return None


def make_encoder(codec: Codec) -> Callable[[bytes], bytes] | None:
    """A function from s16le PCM to payload bytes, or `None` when not supported."""
    if codec == PCMU:
        return ulaw_encode
    if codec == PCMA:
        return alaw_encode
    if codec == G722 and _G722 is not None:
        from array import array

        state = _G722(16000, 64000)

        def encode_g722(pcm: bytes) -> bytes:
            samples = array("h")
            samples.frombytes(pcm[: len(pcm) & ~1])
            if sys.byteorder == "big":
                samples.byteswap()
            return bytes(state.encode(samples))

        return encode_g722
    return None
