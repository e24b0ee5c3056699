"""Audio the honeypot can play: call-progress tones, a voice-like prompt, and a
packetiser that cuts PCM into RTP packets.

Tones follow ITU-T E.180 cadences: Europe (425 Hz; ringback 1 s on, 4 s off; busy
0.5 s on, 0.5 s off) and North America (ringback 440+480 Hz, 2 s on, 4 s off; busy
480+620 Hz, 0.5 s on, 0.5 s off). The prompt is synthetic speech-like sound: voiced
syllables made of a glottal pulse train through vowel formant resonators, with noise
bursts for consonants and pauses between words, so that voice-activity detectors of
robocallers and scanners hear "someone answering". All PCM is s16le mono.
"""

from __future__ import annotations

import math
import random
from array import array
from collections.abc import Iterator
from dataclasses import dataclass

from .codecs import PCMU, Codec, make_encoder
from .rtp import build_rtp

MAX_SECONDS = 600.0
_FULL_SCALE = 32767


@dataclass(frozen=True, slots=True)
class Cadence:
    """A call-progress tone: frequencies summed while on, then on/off times in s."""

    frequencies: tuple[float, ...]
    on: float
    off: float
    level: float = 0.25  # peak amplitude as a fraction of full scale


RINGBACK = {
    "eu": Cadence((425.0,), 1.0, 4.0),
    "us": Cadence((440.0, 480.0), 2.0, 4.0),
}
BUSY = {
    "eu": Cadence((425.0,), 0.5, 0.5),
    "us": Cadence((480.0, 620.0), 0.5, 0.5),
}


def _to_pcm(samples: list[float]) -> bytes:
    clipped = array("h", (max(-32768, min(_FULL_SCALE, round(s))) for s in samples))
    if array("h", [1]).tobytes()[0] == 0:  # big-endian host
        clipped.byteswap()
    return clipped.tobytes()


def tone(
    frequencies: tuple[float, ...], seconds: float, *, sample_rate: int = 8000, level: float = 0.25
) -> bytes:
    """A steady sum of sines, `level` of full scale at its peak."""
    n = int(min(max(seconds, 0.0), MAX_SECONDS) * sample_rate)
    if not frequencies or n == 0:
        return b""
    amp = level * _FULL_SCALE / len(frequencies)
    steps = [2 * math.pi * f / sample_rate for f in frequencies]
    return _to_pcm([amp * sum(math.sin(w * i) for w in steps) for i in range(n)])


def cadence(pattern: Cadence, seconds: float, *, sample_rate: int = 8000) -> bytes:
    """`seconds` of a cadenced tone, starting with the tone on."""
    seconds = min(max(seconds, 0.0), MAX_SECONDS)
    on = tone(pattern.frequencies, pattern.on, sample_rate=sample_rate, level=pattern.level)
    off = bytes(2 * int(pattern.off * sample_rate))
    cycle = on + off
    total = 2 * int(seconds * sample_rate)
    if not cycle:
        return bytes(total)
    return (cycle * (total // len(cycle) + 1))[:total]


def ringback(seconds: float, *, region: str = "eu", sample_rate: int = 8000) -> bytes:
    """Ringing tone as a caller hears it while the phone rings."""
    return cadence(RINGBACK.get(region, RINGBACK["eu"]), seconds, sample_rate=sample_rate)


def busy(seconds: float, *, region: str = "eu", sample_rate: int = 8000) -> bytes:
    """Busy tone."""
    return cadence(BUSY.get(region, BUSY["eu"]), seconds, sample_rate=sample_rate)


# Formants (F1, F2, F3 in Hz) of a few vowels of an adult male voice.
VOWELS: dict[str, tuple[float, float, float]] = {
    "a": (730.0, 1090.0, 2440.0),
    "e": (530.0, 1840.0, 2480.0),
    "i": (270.0, 2290.0, 3010.0),
    "o": (570.0, 840.0, 2410.0),
    "u": (300.0, 870.0, 2240.0),
}
_BANDWIDTHS = (60.0, 90.0, 150.0)


class _Resonator:
    """A two-pole resonator (Klatt 1980) at one formant frequency and bandwidth."""

    __slots__ = ("a", "b", "c", "y1", "y2")

    def __init__(self, freq: float, bandwidth: float, sample_rate: int) -> None:
        t = 1.0 / sample_rate
        self.c = -math.exp(-2 * math.pi * bandwidth * t)
        self.b = 2 * math.exp(-math.pi * bandwidth * t) * math.cos(2 * math.pi * freq * t)
        self.a = 1.0 - self.b - self.c
        self.y1 = 0.0
        self.y2 = 0.0

    def __call__(self, x: float) -> float:
        y = self.a * x + self.b * self.y1 + self.c * self.y2
        self.y2, self.y1 = self.y1, y
        return y


def _syllable(
    vowel: str, seconds: float, f0: float, rng: random.Random, sample_rate: int
) -> list[float]:
    """One consonant-vowel syllable: a short noise burst, then a voiced vowel whose
    pitch falls slightly, with a smooth attack and decay."""
    out: list[float] = []
    burst = int(rng.uniform(0.015, 0.04) * sample_rate)
    hiss = _Resonator(rng.uniform(2500, 3500), 800, sample_rate)
    for i in range(burst):
        out.append(0.15 * hiss(rng.uniform(-1, 1)) * (1 - i / burst))
    n = int(seconds * sample_rate)
    filters = [
        _Resonator(f, bw, sample_rate) for f, bw in zip(VOWELS[vowel], _BANDWIDTHS, strict=True)
    ]
    attack, release = int(0.03 * sample_rate), int(0.08 * sample_rate)
    phase = glottis = 0.0
    for i in range(n):
        pitch = f0 * (1.0 - 0.12 * i / n)
        phase += pitch / sample_rate
        pulse = 1.0 if phase >= 1.0 else 0.0  # one glottal pulse per period
        phase -= pulse
        glottis = pulse + 0.94 * glottis  # decaying glottal flow: about -6 dB/octave
        x = glottis + 0.02 * rng.uniform(-1, 1)  # breath noise
        for f in filters:
            x = f(x)
        envelope = min(1.0, i / attack if attack else 1.0, (n - i) / release if release else 1.0)
        out.append(x * envelope)
    return out


def voice_prompt(
    *, words: int = 4, seed: int = 1, sample_rate: int = 8000, level: float = 0.5
) -> bytes:
    """A short (about 2-4 s) voice-like utterance of `words` words of 1-3 syllables,
    reproducible for a given `seed`, normalised to `level` of full scale at its peak."""
    rng = random.Random(seed)
    samples: list[float] = [0.0] * int(0.1 * sample_rate)
    f0 = rng.uniform(105, 130)
    for word in range(max(1, min(words, 20))):
        for _ in range(rng.randint(1, 3)):
            vowel = rng.choice(sorted(VOWELS))
            pitch = f0 * (1.0 - 0.04 * word)  # the phrase's pitch declines
            samples.extend(_syllable(vowel, rng.uniform(0.12, 0.25), pitch, rng, sample_rate))
            samples.extend([0.0] * int(rng.uniform(0.02, 0.06) * sample_rate))
        samples.extend([0.0] * int(rng.uniform(0.12, 0.25) * sample_rate))
    peak = max(abs(s) for s in samples) or 1.0
    scale = level * _FULL_SCALE / peak
    return _to_pcm([s * scale for s in samples])


class Packetiser:
    """Cuts PCM into RTP packets of `ptime_ms` for one outgoing stream.

    Keeps the sequence number and timestamp running across calls to `packets`, so
    prompts, tones and pauses (`skip`) follow each other in one stream. The caller
    sends one packet every `ptime_ms`; the last packet of a run is padded with silence.
    """

    def __init__(
        self,
        *,
        ssrc: int,
        codec: Codec = PCMU,
        payload_type: int = 0,
        ptime_ms: int = 20,
        sequence: int = 0,
        timestamp: int = 0,
    ) -> None:
        encoder = make_encoder(codec)
        if encoder is None:
            raise ValueError(f"cannot encode {codec.name}")
        self._encode = encoder
        self.codec = codec
        self.payload_type = payload_type
        self.ssrc = ssrc & 0xFFFFFFFF
        self.ptime_ms = ptime_ms
        self.sequence = sequence & 0xFFFF
        self.timestamp = timestamp & 0xFFFFFFFF
        self.samples_per_packet = codec.sample_rate * ptime_ms // 1000
        self.ticks_per_packet = codec.clock_rate * ptime_ms // 1000

    def packets(self, pcm: bytes, *, marker: bool = True) -> Iterator[bytes]:
        """RTP packets for `pcm`; the first carries the marker bit (a talkspurt starts)."""
        frame_bytes = 2 * self.samples_per_packet
        for start in range(0, len(pcm) - (len(pcm) & 1), frame_bytes):
            chunk = pcm[start : start + frame_bytes]
            if len(chunk) < frame_bytes:
                chunk += bytes(frame_bytes - len(chunk))
            yield build_rtp(
                self.payload_type,
                self.sequence,
                self.timestamp,
                self.ssrc,
                self._encode(chunk),
                marker=marker,
            )
            marker = False
            self.sequence = (self.sequence + 1) & 0xFFFF
            self.timestamp = (self.timestamp + self.ticks_per_packet) & 0xFFFFFFFF

    def skip(self, milliseconds: float) -> None:
        """Advance the timestamp over a pause in which nothing is sent."""
        ticks = int(self.codec.clock_rate * max(milliseconds, 0.0) / 1000)
        self.timestamp = (self.timestamp + ticks) & 0xFFFFFFFF
