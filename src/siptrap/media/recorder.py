"""Recording one direction of a call: datagrams in, a WAV file, DTMF and statistics out.

`StreamRecorder` joins the pieces the call layer needs per direction: it reads each
datagram as RTP or RTCP, feeds RTP to a `StreamAssembler`, and writes the PCM to a WAV
file that it opens on the first audio (so the file gets the codec's sample rate, 8 kHz
for G.711 or 16 kHz for G.722, and no file is made for a stream with no audio). The
path is the caller's choice and must not come from attacker data. The raw datagrams
belong in a pcap, which the call layer writes with `pcap.PcapWriter` for both
directions together.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from .codecs import Codec
from .dtmf import DtmfEvent
from .rtp import RTCP_BYE, looks_like_rtcp, parse_rtcp, parse_rtp
from .stream import PcmFrame, StreamAssembler, StreamStats
from .wav import DEFAULT_MAX_BYTES, WavWriter

MAX_CNAMES = 8


@dataclass(frozen=True, slots=True)
class RecordingSummary:
    """What a finished recording holds: the stream statistics, the WAV file (`None` if
    no audio came), whether the WAV was cut at its cap, RTCP seen, and datagrams that
    were neither RTP nor RTCP."""

    stats: StreamStats
    wav_path: str | None
    wav_seconds: float
    wav_truncated: bool
    rtcp_packets: int
    rtcp_bye: bool
    cnames: tuple[str, ...]
    not_rtp: int


class StreamRecorder:
    """Records one direction of an RTP session to a WAV file at `wav_path`."""

    def __init__(
        self,
        wav_path: str | os.PathLike[str],
        *,
        payload_types: Mapping[int, Codec] | None = None,
        window: int = 32,
        max_wav_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.wav_path = os.fspath(wav_path)
        self.max_wav_bytes = max_wav_bytes
        self.assembler = StreamAssembler(payload_types=payload_types, window=window)
        self._wav: WavWriter | None = None
        self._dtmf: list[DtmfEvent] = []
        self.rtcp_packets = 0
        self.rtcp_bye = False
        self.not_rtp = 0
        self._cnames: list[str] = []
        self._closed = False

    def push_datagram(self, arrival: float, data: bytes) -> None:
        """Take one datagram received on the stream's port (RTP or RTCP, muxed or not)."""
        if self._closed:
            return
        packet = parse_rtp(data)
        if packet is not None:
            self._write(self.assembler.push(arrival, packet))
            return
        compound = parse_rtcp(data) if looks_like_rtcp(data) else None
        if compound is None:
            self.not_rtp += 1
            return
        self.rtcp_packets += 1
        for rtcp in compound.packets:
            self.rtcp_bye = self.rtcp_bye or rtcp.packet_type == RTCP_BYE
            for _, cname in rtcp.cnames:
                if cname not in self._cnames and len(self._cnames) < MAX_CNAMES:
                    self._cnames.append(cname[:256])

    def drain_dtmf(self) -> list[DtmfEvent]:
        """Key presses completed since the last call."""
        return self.assembler.drain_dtmf()

    def close(self) -> RecordingSummary:
        """Flush the assembler, finish the WAV file, and summarise. Safe to call twice."""
        if not self._closed:
            self._closed = True
            self._write(self.assembler.flush())
            if self._wav is not None:
                self._wav.close()
        wav = self._wav
        return RecordingSummary(
            stats=self.assembler.stats(),
            wav_path=wav.path if wav is not None else None,
            wav_seconds=wav.seconds_written if wav is not None else 0.0,
            wav_truncated=wav.truncated if wav is not None else False,
            rtcp_packets=self.rtcp_packets,
            rtcp_bye=self.rtcp_bye,
            cnames=tuple(self._cnames),
            not_rtp=self.not_rtp,
        )

    def _write(self, frames: list[PcmFrame]) -> None:
        if not frames:
            return
        if self._wav is None:
            rate = self.assembler.sample_rate or 8000
            self._wav = WavWriter(self.wav_path, sample_rate=rate, max_bytes=self.max_wav_bytes)
        self._wav.write_frames(frames)
