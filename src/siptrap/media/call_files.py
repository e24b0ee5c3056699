"""The WAV files of one call's media, made so that a disk error never stops the call:
`SafeRecorder` (the caller's side, reassembled and decoded, able to count and find DTMF
without writing) and `PlayedWav` (what siptrap played, from its own packets).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from .codecs import Codec, make_decoder
from .recorder import RecordingSummary, StreamRecorder
from .stream import PcmFrame
from .wav import WavWriter

RTP_HEADER = 12
MAX_PLAYED_GAP = 2  # seconds: a longer timestamp gap in what siptrap sent is not filled


class SafeRecorder(StreamRecorder):
    """A StreamRecorder that can decode, count and find DTMF without writing a WAV file:
    when the call is not recorded (`writing` False), or once writing failed (a full
    disk: `failed`), so that a disk error never stops the call or its statistics."""

    def __init__(self, *args: Any, writing: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.writing = writing
        self.failed = False

    def _write(self, frames: list[PcmFrame]) -> None:
        if not self.writing:
            return
        try:
            super()._write(frames)
        except OSError:
            self.writing = False
            self.failed = True

    @property
    def truncated(self) -> bool:
        """Whether the WAV cap has cut the file."""
        return self._wav is not None and self._wav.truncated

    def close(self) -> RecordingSummary:
        try:
            return super().close()
        except OSError:  # the WAV header could not be finished
            self.failed = True
            return super().close()


@dataclass(frozen=True, slots=True)
class PlayedSummary:
    """What `PlayedWav.close` reports, as a RecordingSummary does for the caller's side."""

    wav_path: str | None
    wav_truncated: bool


class PlayedWav:
    """The "out" WAV of a stream: what siptrap played, written straight from its own
    packets. They come in order with siptrap's own timestamps, so unlike the caller's
    they need no reassembly: a timestamp gap (packet slots skipped when the ticker fell
    behind) becomes silence. Like `SafeRecorder`, it stops writing on a disk error."""

    def __init__(self, path: str | os.PathLike[str], codec: Codec, max_wav_bytes: int) -> None:
        self.path = os.fspath(path)
        self.codec = codec
        self.decode = make_decoder(codec)
        self.ratio = max(1, codec.sample_rate // codec.clock_rate)
        self.max_wav_bytes = max_wav_bytes
        self.failed = False
        self._wav: WavWriter | None = None
        self._next: int | None = None  # the RTP timestamp that follows what was written

    @property
    def truncated(self) -> bool:
        return self._wav is not None and self._wav.truncated

    def push_datagram(self, now: float, data: bytes) -> None:
        """Take one packet siptrap sent (12-byte header: it adds no CSRC or extension)."""
        if self.failed or self.decode is None or len(data) <= RTP_HEADER:
            return
        timestamp = int.from_bytes(data[4:8], "big")
        pcm = self.decode(data[RTP_HEADER:])
        try:
            if self._wav is None:
                self._wav = WavWriter(
                    self.path, sample_rate=self.codec.sample_rate, max_bytes=self.max_wav_bytes
                )
            if self._next is not None:
                gap = (timestamp - self._next) & 0xFFFFFFFF
                if 0 < gap <= MAX_PLAYED_GAP * self.codec.clock_rate:
                    self._wav.write(bytes(2 * self.ratio * gap))
            self._wav.write(pcm)
        except OSError:
            self.failed = True
            return
        self._next = (timestamp + len(pcm) // 2 // self.ratio) & 0xFFFFFFFF

    def close(self) -> PlayedSummary:
        if self._wav is None:
            return PlayedSummary(None, False)
        try:
            self._wav.close()
        except OSError:
            self.failed = True
        return PlayedSummary(self._wav.path, self._wav.truncated)
