"""Audio siptrap plays: WAV prompts read from disk, the built-in default prompt, tones,
each cut into RTP payloads once per codec and packet time and then shared by all calls.

`read_wav` accepts the WAV files people have at hand (8- or 16-bit PCM, mono or more
channels, any sample rate) and returns s16le mono PCM at the rate a codec needs, mixing
channels down and resampling by linear interpolation. Prompts are cut at
`MAX_PROMPT_SECONDS`. `ensure_default_prompt` writes the synthetic voice prompt of
`tones.voice_prompt` into the data directory the first time siptrap starts, so an
operator can listen to it or replace it.
"""

from __future__ import annotations

import os
import sys
import wave
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .codecs import Codec, make_encoder
from .tones import Packetiser, busy, ringback, voice_prompt

MAX_PROMPT_SECONDS = 120.0
DEFAULT_PROMPT = Path("media") / "prompt.wav"
TONE_SECONDS = 10.0  # one loop of a tone clip: two ringback cycles, ten busy cycles
RTP_HEADER = 12  # Packetiser packets carry no CSRC, extension or padding


class PromptError(ValueError):
    """A prompt file cannot be read as audio."""


def _samples(pcm: bytes) -> array[int]:
    samples = array("h")
    samples.frombytes(pcm[: len(pcm) & ~1])
    if sys.byteorder == "big":
        samples.byteswap()
    return samples


def _pcm(samples: array[int]) -> bytes:
    if sys.byteorder == "big":
        samples = array("h", samples)
        samples.byteswap()
    return samples.tobytes()


def resample(pcm: bytes, src_rate: int, dst_rate: int) -> bytes:
    """s16le mono PCM from `src_rate` to `dst_rate` by linear interpolation."""
    if src_rate == dst_rate or not pcm:
        return pcm
    src = _samples(pcm)
    n = len(src)
    out_len = max(1, n * dst_rate // src_rate)
    step = src_rate / dst_rate
    out = array("h", bytes(2 * out_len))
    for i in range(out_len):
        pos = i * step
        j = int(pos)
        frac = pos - j
        a = src[j] if j < n else src[-1]
        b = src[j + 1] if j + 1 < n else a
        out[i] = int(a + (b - a) * frac)
    return _pcm(out)


def read_wav(path: str | os.PathLike[str], rate: int) -> bytes:
    """The audio of a WAV file as s16le mono PCM at `rate` Hz (at most
    MAX_PROMPT_SECONDS). Raises PromptError when the file is not readable PCM WAV."""
    try:
        with wave.open(os.fspath(path), "rb") as wav:
            channels, width, src_rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            frames = min(wav.getnframes(), int(MAX_PROMPT_SECONDS * src_rate))
            data = wav.readframes(frames)
    except (OSError, EOFError, wave.Error) as exc:
        raise PromptError(f"{path}: {exc}") from exc
    if width not in (1, 2) or channels < 1 or src_rate <= 0:
        raise PromptError(f"{path}: only 8- and 16-bit PCM WAV files can be played")
    if width == 1:  # unsigned 8-bit
        samples = array("h", ((b - 128) << 8 for b in data))
    else:
        samples = _samples(data)
    if channels > 1:
        usable = len(samples) - len(samples) % channels
        samples = array(
            "h",
            (sum(samples[i : i + channels]) // channels for i in range(0, usable, channels)),
        )
    return resample(_pcm(samples), src_rate, rate)


def ensure_default_prompt(data_dir: Path) -> Path:
    """The default prompt's path, writing it (once) when it is missing."""
    path = data_dir / DEFAULT_PROMPT
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with wave.open(str(temporary), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(voice_prompt(words=5, seed=7))
    os.replace(temporary, path)
    return path


@dataclass(frozen=True, slots=True)
class Clip:
    """A sound cut into RTP payloads of one codec, one payload per packet time."""

    name: str
    frames: tuple[bytes, ...]


def encode_frames(pcm: bytes, codec: Codec, ptime_ms: int) -> tuple[bytes, ...]:
    """`pcm` (at the codec's sample rate) as payloads of `ptime_ms` each, the last padded
    with silence. Empty when the codec cannot be encoded here."""
    if make_encoder(codec) is None:
        return ()
    packetiser = Packetiser(ssrc=0, codec=codec, ptime_ms=ptime_ms)
    return tuple(packet[RTP_HEADER:] for packet in packetiser.packets(pcm))


class ClipLibrary:
    """Prompts and tones as `Clip`s, made once per (sound, codec, ptime) and shared."""

    def __init__(self, default_prompt: Path, region: str = "eu") -> None:
        self.default_prompt = default_prompt
        self.region = region
        self._pcm: dict[tuple[str, int], bytes] = {}
        self._clips: dict[tuple[str, str, int, int], Clip] = {}

    def prompt_pcm(self, path: str | None, rate: int) -> bytes:
        """A prompt's PCM at `rate`; `None` means the default prompt. Raises PromptError."""
        source = str(path) if path else str(self.default_prompt)
        key = (source, rate)
        if key not in self._pcm:
            self._pcm[key] = read_wav(source, rate)
        return self._pcm[key]

    def _clip(self, name: str, codec: Codec, ptime_ms: int, make: Callable[[], bytes]) -> Clip:
        key = (name, codec.name, codec.sample_rate, ptime_ms)
        clip = self._clips.get(key)
        if clip is None:
            clip = Clip(name, encode_frames(make(), codec, ptime_ms))
            self._clips[key] = clip
        return clip

    def prompt(self, path: str | None, codec: Codec, ptime_ms: int) -> Clip:
        """The prompt at `path` (or the default one) for this codec and ptime."""
        name = f"prompt:{path or self.default_prompt}"
        return self._clip(name, codec, ptime_ms, lambda: self.prompt_pcm(path, codec.sample_rate))

    def silence(self, codec: Codec, ptime_ms: int) -> Clip:
        """One packet of silence."""
        samples = codec.sample_rate * ptime_ms // 1000
        return self._clip("silence", codec, ptime_ms, lambda: bytes(2 * samples))

    def ringback(self, codec: Codec, ptime_ms: int) -> Clip:
        rate = codec.sample_rate
        return self._clip(
            "ringback",
            codec,
            ptime_ms,
            lambda: ringback(TONE_SECONDS, region=self.region, sample_rate=rate),
        )

    def busy(self, codec: Codec, ptime_ms: int) -> Clip:
        rate = codec.sample_rate
        return self._clip(
            "busy",
            codec,
            ptime_ms,
            lambda: busy(TONE_SECONDS, region=self.region, sample_rate=rate),
        )
