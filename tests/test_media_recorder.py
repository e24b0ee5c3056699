"""The per-direction recorder: RTP and RTCP datagrams to a WAV file and a summary."""

from __future__ import annotations

import struct
import wave

from hypothesis import given, settings
from hypothesis import strategies as st

from siptrap.media import codecs
from siptrap.media.dtmf import build_telephone_event
from siptrap.media.g711 import alaw_decode, alaw_encode
from siptrap.media.recorder import StreamRecorder
from siptrap.media.rtp import RTCP_BYE, RTCP_SDES, build_rtp
from siptrap.media.tones import Packetiser, voice_prompt


def rtcp_sdes_bye(ssrc: int, cname: bytes) -> bytes:
    chunk = struct.pack("!I", ssrc) + bytes([1, len(cname)]) + cname + b"\0"
    chunk += b"\0" * (-len(chunk) % 4)
    sdes = struct.pack("!BBH", 0x81, RTCP_SDES, len(chunk) // 4) + chunk
    return sdes + struct.pack("!BBHI", 0x81, RTCP_BYE, 1, ssrc)


def test_records_audio_dtmf_and_rtcp(tmp_path):
    pcm = voice_prompt(words=2)
    packetiser = Packetiser(ssrc=3, codec=codecs.PCMA, payload_type=8)
    datagrams = list(packetiser.packets(pcm))
    ts = packetiser.timestamp
    for i, end in enumerate([False, False, True, True, True]):
        payload = build_telephone_event(9, end=end, volume=8, duration=320 + 160 * min(i, 2))
        datagrams.append(build_rtp(101, packetiser.sequence + min(i, 2), ts, 3, payload))
    datagrams.insert(10, rtcp_sdes_bye(3, b"scanner@lab"))
    datagrams.insert(20, b"\x00\x01\x00\x00junk-stun-like")
    path = tmp_path / "in.wav"
    recorder = StreamRecorder(path)
    for i, data in enumerate(datagrams):
        recorder.push_datagram(0.02 * i, data)
    summary = recorder.close()
    assert recorder.close() == summary  # closing twice changes nothing
    assert [e.digit for e in recorder.drain_dtmf()] == ["9"]
    assert summary.wav_path == str(path)
    assert (summary.rtcp_packets, summary.rtcp_bye, summary.cnames) == (1, True, ("scanner@lab",))
    assert summary.not_rtp == 1
    assert summary.stats.lost == 0
    with wave.open(str(path), "rb") as wav:
        audio = wav.readframes(wav.getnframes())
    n = len(pcm) // 2
    assert audio[: 2 * n] == alaw_decode(alaw_encode(pcm))
    assert summary.wav_seconds == len(audio) / 16000


def test_no_audio_makes_no_file(tmp_path):
    path = tmp_path / "none.wav"
    recorder = StreamRecorder(path)
    recorder.push_datagram(0.0, b"not rtp at all")
    summary = recorder.close()
    assert summary.wav_path is None
    assert not path.exists()


def test_wav_cap_is_reported(tmp_path):
    packetiser = Packetiser(ssrc=1)
    recorder = StreamRecorder(tmp_path / "cap.wav", max_wav_bytes=3200, window=4)
    for i, data in enumerate(packetiser.packets(voice_prompt(words=1))):
        recorder.push_datagram(0.02 * i, data)
    summary = recorder.close()
    assert summary.wav_truncated
    assert summary.wav_seconds == 0.2
    assert summary.stats.samples_out > 1600


@settings(max_examples=40, deadline=None)
@given(st.lists(st.binary(min_size=12, max_size=120).map(lambda b: b"\x80" + b[1:]), max_size=40))
def test_any_datagrams_never_raise(tmp_path_factory, datagrams):
    path = tmp_path_factory.mktemp("fuzz") / "x.wav"
    recorder = StreamRecorder(path, window=4)
    for i, data in enumerate(datagrams):
        recorder.push_datagram(0.02 * i, data)
    summary = recorder.close()
    assert summary.stats.packets + summary.rtcp_packets + summary.not_rtp == len(datagrams)
