"""A streaming WAV writer for recorded calls: 16-bit mono PCM, with a size cap.

Audio is written as it comes (nothing is buffered for the whole call); the header's
lengths are filled in when the writer is closed. Once `max_bytes` of audio have been
written, the rest is dropped and `truncated` says so. The file is created new: an
existing file is never overwritten (evidence is never rewritten).
"""

from __future__ import annotations

import os
import wave
from collections.abc import Iterable
from types import TracebackType
from typing import BinaryIO, Protocol

DEFAULT_MAX_BYTES = 64 * 1024 * 1024  # about 70 minutes at 8 kHz


class HasPcm(Protocol):
    """Anything with s16le PCM, such as `stream.PcmFrame`."""

    @property
    def pcm(self) -> bytes: ...


class WavWriter:
    """Writes s16le mono PCM to a new WAV file at `path` (8000 Hz for G.711, 16000 Hz
    for G.722), up to `max_bytes` of audio data."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        sample_rate: int = 8000,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.path = os.fspath(path)
        self.sample_rate = sample_rate
        self.max_bytes = max(0, max_bytes) & ~1
        self.bytes_written = 0
        self.bytes_dropped = 0
        self.truncated = False
        self._file: BinaryIO = open(self.path, "xb")  # closed in close()
        self._wave = wave.open(self._file, "wb")
        self._wave.setnchannels(1)
        self._wave.setsampwidth(2)
        self._wave.setframerate(sample_rate)
        self._closed = False

    @property
    def samples_written(self) -> int:
        return self.bytes_written // 2

    @property
    def seconds_written(self) -> float:
        return self.samples_written / self.sample_rate

    def write(self, pcm: bytes) -> int:
        """Append PCM; return the bytes actually written (less once the cap is hit)."""
        if self._closed:
            raise ValueError("write to a closed WavWriter")
        pcm = pcm[: len(pcm) & ~1]
        room = self.max_bytes - self.bytes_written
        if len(pcm) > room:
            self.truncated = True
            self.bytes_dropped += len(pcm) - room
            pcm = pcm[:room]
        if pcm:
            self._wave.writeframesraw(pcm)
            self.bytes_written += len(pcm)
        return len(pcm)

    def write_frames(self, frames: Iterable[HasPcm]) -> int:
        """Append the PCM of each frame in order; return the bytes written."""
        return sum(self.write(frame.pcm) for frame in frames)

    def close(self) -> None:
        """Fix up the header lengths and close the file. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            self._wave.close()
        finally:
            self._file.close()

    def __enter__(self) -> WavWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
