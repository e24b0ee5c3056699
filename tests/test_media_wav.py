"""The streaming WAV writer: read back with the stdlib `wave`, size cap, no overwrite."""

from __future__ import annotations

import struct
import wave

import pytest

from siptrap.media.stream import PcmFrame
from siptrap.media.tones import voice_prompt
from siptrap.media.wav import WavWriter


def test_written_file_reads_back(tmp_path):
    pcm = voice_prompt(words=2)
    path = tmp_path / "call.wav"
    with WavWriter(path) as writer:
        for start in range(0, len(pcm), 320):  # streamed in 20 ms pieces
            writer.write(pcm[start : start + 320])
    assert writer.bytes_written == len(pcm)
    assert not writer.truncated
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 8000)
        assert wav.getnframes() == len(pcm) // 2
        assert wav.readframes(wav.getnframes()) == pcm


def test_frames_and_16_khz(tmp_path):
    frames = [PcmFrame(i * 3, struct.pack("<3h", i, -i, 7), "audio", 1) for i in range(10)]
    path = tmp_path / "wide.wav"
    with WavWriter(path, sample_rate=16000) as writer:
        assert writer.write_frames(frames) == 60
    with wave.open(str(path), "rb") as wav:
        assert wav.getframerate() == 16000
        assert wav.readframes(100) == b"".join(f.pcm for f in frames)


def test_cap_cuts_and_reports(tmp_path):
    path = tmp_path / "capped.wav"
    writer = WavWriter(path, max_bytes=1001)  # rounded down to whole samples
    assert writer.write(b"\x01\x02" * 400) == 800
    assert writer.write(b"\x03\x04" * 400) == 200
    assert writer.write(b"\x05\x06" * 10) == 0
    writer.close()
    writer.close()  # closing twice is harmless
    assert writer.truncated
    assert writer.bytes_written == 1000
    assert writer.bytes_dropped == 800 - 200 + 20
    with wave.open(str(path), "rb") as wav:
        data = wav.readframes(10_000)
    assert data == b"\x01\x02" * 400 + b"\x03\x04" * 100
    assert path.stat().st_size == 44 + 1000


def test_never_overwrites(tmp_path):
    path = tmp_path / "evidence.wav"
    path.write_bytes(b"keep me")
    with pytest.raises(FileExistsError):
        WavWriter(path)
    assert path.read_bytes() == b"keep me"


def test_write_after_close_is_an_error(tmp_path):
    writer = WavWriter(tmp_path / "x.wav")
    writer.close()
    with pytest.raises(ValueError, match="closed"):
        writer.write(b"\0\0")
