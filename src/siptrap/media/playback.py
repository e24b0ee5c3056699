"""The outgoing half of a media section: which RTP packet goes out when.

A `Player` plays a queue of clips (a prompt once, a tone for so many seconds), then
silence, one packet every `ptime_ms`, as a phone does. Packet slot k of the stream is due
at `start + k * ptime` and carries RTP timestamp `first + k * ticks`, so the receiver
hears the audio in time whatever the jitter of the caller's timer. When the caller's
timer fell far behind, at most `MAX_BURST` packets go at once and the slots in between
are skipped (a timestamp gap, as after a packet loss, with the sequence number kept
contiguous as RFC 3550 expects of a sender). `echo` sends back what the caller sent,
under siptrap's own SSRC, sequence numbers and timestamps. No clock is read here.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from .codecs import Codec
from .prompts import Clip
from .rtp import RtpPacket, build_rtp

MAX_BURST = 5


@dataclass(slots=True)
class _Playing:
    clip: Clip
    count: int  # packets to send from the clip (looping over its frames)
    index: int = 0


class Player:
    """RTP packets for one outgoing stream (see the module docstring)."""

    def __init__(
        self,
        *,
        payload_type: int,
        codec: Codec,
        ptime_ms: int,
        silence: Clip,
        ssrc: int,
        sequence: int,
        timestamp: int,
    ) -> None:
        self.payload_type = payload_type & 0x7F
        self.codec = codec
        self.ptime = ptime_ms / 1000
        self.ticks = codec.clock_rate * ptime_ms // 1000
        self.silence = silence.frames[0] if silence.frames else b""
        self.ssrc = ssrc & 0xFFFFFFFF
        self.sequence = sequence & 0xFFFF
        self.first_timestamp = timestamp & 0xFFFFFFFF
        self.start: float | None = None
        self.slot = 0  # the next packet slot
        self.sent = 0
        self.skipped = 0
        self._queue: deque[_Playing] = deque()
        self._marker = True
        self._echo_base: int | None = None

    # -- what to play ------------------------------------------------------------------
    def play(self, clip: Clip, seconds: float | None = None) -> None:
        """Queue a clip: once, or looped for `seconds`."""
        if not clip.frames:
            return
        count = len(clip.frames) if seconds is None else max(1, round(seconds / self.ptime))
        self._queue.append(_Playing(clip, count))

    def interrupt(self, clip: Clip, seconds: float | None = None) -> None:
        """Drop what is queued and play `clip` next."""
        self._queue.clear()
        self._marker = True
        self.play(clip, seconds)

    @property
    def playing(self) -> bool:
        """Whether a clip is still queued or playing (silence follows otherwise)."""
        return bool(self._queue)

    @property
    def now_playing(self) -> str | None:
        return self._queue[0].clip.name if self._queue else None

    # -- packets -----------------------------------------------------------------------
    def due(self, now: float) -> list[bytes]:
        """The packets whose time has come since the last call."""
        if self.start is None:
            self.start = now
        wanted = int((now - self.start) / self.ptime) + 1 - self.slot
        if wanted <= 0:
            return []
        if wanted > MAX_BURST:
            skip = wanted - MAX_BURST
            for _ in range(skip):
                self._next_payload()
            self.slot += skip
            self.skipped += skip
            self._marker = True
            wanted = MAX_BURST
        packets = []
        for _ in range(wanted):
            payload = self._next_payload()
            packets.append(self._packet(self.payload_type, self.slot * self.ticks, payload))
            self.slot += 1
        return packets

    def _next_payload(self) -> bytes:
        while self._queue:
            playing = self._queue[0]
            if playing.index < playing.count:
                frames = playing.clip.frames
                payload = frames[playing.index % len(frames)]
                playing.index += 1
                if playing.index >= playing.count:
                    self._queue.popleft()
                return payload
            self._queue.popleft()
        return self.silence

    def _packet(self, payload_type: int, offset: int, payload: bytes) -> bytes:
        data = build_rtp(
            payload_type,
            self.sequence,
            self.first_timestamp + offset,
            self.ssrc,
            payload,
            marker=self._marker,
        )
        self._marker = False
        self.sequence = (self.sequence + 1) & 0xFFFF
        self.sent += 1
        return data

    def echo(self, packet: RtpPacket) -> bytes:
        """The caller's packet sent back: their payload type, payload, marker and timing,
        under this stream's SSRC, sequence numbers and timestamp origin."""
        if self._echo_base is None:
            self._echo_base = packet.timestamp
        offset = (packet.timestamp - self._echo_base) & 0xFFFFFFFF
        self._marker = packet.marker
        return self._packet(packet.payload_type, offset, packet.payload)
