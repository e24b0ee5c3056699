"""The per-direction stream assembler: RTP packets in, contiguous PCM frames out.

One `StreamAssembler` takes the packets of one direction of a call (arrival time and
parsed RTP packet, in arrival order) and hands back PCM frames in playing order, ready
for a WAV writer. It

- reorders packets by sequence number within a window of `window` packets, and gives
  up on a missing packet once a packet `window` places later has arrived (lost);
- drops duplicates, and packets arriving after their place was given up (late);
- places audio by RTP timestamp: gaps in timestamps (loss, silence suppression,
  comfort noise, DTMF, undecodable packets) are filled with silence, overlaps trimmed;
- follows SSRC changes and sequence restarts (RFC 3550 A.1 style probation);
- routes telephone-event packets to an RFC 4733 decoder (`drain_dtmf`), accepts
  comfort noise (PT 13) as silence, and counts what it cannot decode.

Memory is bounded: at most `window` packets are held, plus small fixed-size histories.
Silence is bounded by the arrival clock: the output never runs more than `slack`
seconds ahead of the wall-clock time the packets span, whatever their timestamps say.
Nothing here reads a clock; the caller passes arrival times.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from .codecs import CN, DEFAULT_DYNAMIC, STATIC_PAYLOAD_TYPES, Codec, Decoder, make_decoder
from .dtmf import DtmfEvent, Rfc4733Decoder
from .rtp import RtpPacket

MAX_DROPOUT = 3000  # RFC 3550 A.1: a forward jump larger than this is a restart
MIN_MISORDER = 100  # RFC 3550 A.1: a backward jump larger than this is a restart
MAX_SSRCS_KEPT = 16
SILENCE_CHUNK_SECONDS = 1


@dataclass(frozen=True, slots=True)
class PcmFrame:
    """A run of s16le mono PCM at the stream's sample rate.

    Frames come out contiguous and in order: `position` (in samples from the first
    audio) of each equals the previous frame's position plus its sample count.
    `kind` is "audio" or "silence" (a gap, loss, comfort noise, jitter fill).
    """

    position: int
    pcm: bytes
    kind: str
    ssrc: int

    @property
    def samples(self) -> int:
        return len(self.pcm) // 2


@dataclass(frozen=True, slots=True)
class StreamStats:
    """What the assembler saw. `lost` counts sequence numbers given up on; `late`
    those that arrived afterwards; `ts_jumps` timestamp gaps too large for the arrival
    clock (placed by arrival time instead)."""

    packets: int
    bytes: int
    audio_packets: int
    lost: int
    duplicates: int
    out_of_order: int
    late: int
    overlapping: int
    comfort_noise: int
    dtmf_packets: int
    undecodable: int
    markers: int
    ssrc_changes: int
    seq_restarts: int
    bad_seq: int
    ts_jumps: int
    first_arrival: float | None
    last_arrival: float | None
    ssrcs: tuple[int, ...]
    codecs: tuple[str, ...]
    sample_rate: int | None
    samples_out: int
    silence_samples: int

    @property
    def duration(self) -> float:
        """Seconds of PCM produced."""
        return self.samples_out / self.sample_rate if self.sample_rate else 0.0


@dataclass(slots=True)
class _Counters:
    packets: int = 0
    bytes: int = 0
    audio_packets: int = 0
    lost: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    late: int = 0
    overlapping: int = 0
    comfort_noise: int = 0
    dtmf_packets: int = 0
    undecodable: int = 0
    markers: int = 0
    ssrc_changes: int = 0
    seq_restarts: int = 0
    bad_seq: int = 0
    ts_jumps: int = 0


class StreamAssembler:
    """Reassembles one direction of an RTP session into PCM (see the module docstring).

    `payload_types` maps dynamic payload types to codecs (from SDP); PT 101 is taken as
    telephone-event unless mapped otherwise. Call `push` for each packet, write the
    frames it returns, call `flush` at the end, and read `stats()` and `drain_dtmf()`.
    """

    def __init__(
        self,
        *,
        payload_types: Mapping[int, Codec] | None = None,
        window: int = 32,
        slack: float = 2.0,
    ) -> None:
        self._types: dict[int, Codec] = {**STATIC_PAYLOAD_TYPES, **DEFAULT_DYNAMIC}
        self._types.update(payload_types or {})
        self.window = max(1, window)
        self.slack = slack
        self._misorder = max(MIN_MISORDER, 2 * self.window)
        event_clock = next(
            (c.clock_rate for c in self._types.values() if c.name == "telephone-event"), 8000
        )
        self.dtmf = Rfc4733Decoder(event_clock)
        self._events: list[DtmfEvent] = []
        self._out: list[PcmFrame] = []
        self.sample_rate: int | None = None
        self._position = 0
        self._origin: float | None = None  # arrival time of position 0
        self._max_arrival: float | None = None
        self._decoders: dict[Codec, Decoder | None] = {}
        self._ssrcs: list[int] = []
        self._codecs: list[str] = []
        self._count = _Counters()
        self._first_arrival: float | None = None
        self._silence = 0
        self._ssrc: int | None = None
        self._reset_source()

    # -- public ------------------------------------------------------------------------

    def push(self, arrival: float, packet: RtpPacket) -> list[PcmFrame]:
        """Take one packet; return the frames that are now final, in order."""
        count = self._count
        count.packets += 1
        count.bytes += len(packet.payload)
        if self._first_arrival is None:
            self._first_arrival = arrival
        if self._max_arrival is None or arrival > self._max_arrival:
            self._max_arrival = arrival
        if packet.marker:
            count.markers += 1
        self._note_codec(packet.payload_type)
        is_event = self._is_event(packet)
        if is_event:
            count.dtmf_packets += 1
            self._events.extend(self.dtmf.push(arrival, packet))
        if self._ssrc != packet.ssrc:
            if self._ssrc is not None:
                count.ssrc_changes += 1
                self._release_all()
                self._reset_source()
            self._ssrc = packet.ssrc
            if packet.ssrc not in self._ssrcs and len(self._ssrcs) < MAX_SSRCS_KEPT:
                self._ssrcs.append(packet.ssrc)
        self._accept(arrival, packet, is_event)
        return self._take_frames()

    def flush(self) -> list[PcmFrame]:
        """Release everything still held (call at the end of the stream)."""
        self._release_all()
        self._events.extend(self.dtmf.flush())
        return self._take_frames()

    def drain_dtmf(self) -> list[DtmfEvent]:
        """The DTMF key presses completed since the last call."""
        events, self._events = self._events, []
        return events

    def buffered(self) -> int:
        """Packets waiting in the reorder buffer (at most `window`)."""
        return len(self._buffer)

    def stats(self) -> StreamStats:
        """A snapshot of the counters."""
        return StreamStats(
            **asdict(self._count),
            first_arrival=self._first_arrival,
            last_arrival=self._max_arrival,
            ssrcs=tuple(self._ssrcs),
            codecs=tuple(self._codecs),
            sample_rate=self.sample_rate,
            samples_out=self._position,
            silence_samples=self._silence,
        )

    # -- sequence numbers --------------------------------------------------------------

    def _reset_source(self) -> None:
        """Forget the sequence and timestamp state of the current source."""
        self._buffer: dict[int, tuple[float, RtpPacket]] = {}
        self._max_ext: int | None = None
        self._next_ext: int | None = None  # None until the start-up window has filled
        self._lost_recent: deque[int] = deque(maxlen=self._misorder)
        self._start_ext: int | None = None  # where releasing began
        self._probe: tuple[float, RtpPacket] | None = None
        self._play_ts: int | None = None  # extended RTP time the output has reached
        self._decoders.clear()

    def _accept(self, arrival: float, packet: RtpPacket, is_event: bool) -> None:
        count = self._count
        if self._max_ext is None:
            ext = packet.sequence
            self._max_ext = ext
        else:
            delta = (packet.sequence - self._max_ext) & 0xFFFF
            ext = self._max_ext + (delta if delta < 0x8000 else delta - 0x10000)
            if ext - self._max_ext > MAX_DROPOUT or self._max_ext - ext > self._misorder:
                self._restart_or_probe(arrival, packet)
                return
        self._probe = None
        if ext in self._buffer or (self._next_ext is not None and ext < self._next_ext):
            if self._next_ext is not None and ext < self._next_ext and self._was_lost(ext):
                count.late += 1
            elif not is_event:  # RFC 4733 repeats end packets under one sequence number
                count.duplicates += 1
            return
        if ext < self._max_ext:
            count.out_of_order += 1
        else:
            self._max_ext = ext
        self._buffer[ext] = (arrival, packet)
        self._release_ready()

    def _restart_or_probe(self, arrival: float, packet: RtpPacket) -> None:
        """A large sequence jump: a restart if the next packet follows it, else noise."""
        probe = self._probe
        if probe is not None and packet.sequence == (probe[1].sequence + 1) & 0xFFFF:
            self._count.seq_restarts += 1
            self._release_all()
            self._buffer = {}
            self._max_ext = None
            self._next_ext = self._start_ext = None
            self._lost_recent.clear()
            self._probe = None
            for a, p in (probe, (arrival, packet)):
                self._accept(a, p, self._is_event(p))
            return
        self._count.bad_seq += 1
        self._probe = (arrival, packet)

    def _was_lost(self, ext: int) -> bool:
        """Whether a sequence number behind the release point was given up on."""
        assert self._next_ext is not None and self._start_ext is not None
        return (
            ext < self._start_ext
            or ext < self._next_ext - self._misorder
            or ext in self._lost_recent
        )

    def _release_ready(self) -> None:
        buffer = self._buffer
        if self._next_ext is None:
            if len(buffer) < self.window:
                return
            self._next_ext = self._start_ext = min(buffer)
        assert self._max_ext is not None
        while buffer:
            item = buffer.pop(self._next_ext, None)
            if item is None:
                if self._max_ext - self._next_ext < self.window:
                    return
                self._skip_to(min(buffer))
                continue
            self._next_ext += 1
            self._release(*item)

    def _release_all(self) -> None:
        if not self._buffer:
            return
        if self._next_ext is None:
            self._next_ext = self._start_ext = min(self._buffer)
        while self._buffer:
            item = self._buffer.pop(self._next_ext, None)
            if item is None:
                self._skip_to(min(self._buffer))
                continue
            self._next_ext += 1
            self._release(*item)

    def _skip_to(self, ext: int) -> None:
        assert self._next_ext is not None
        self._count.lost += ext - self._next_ext
        self._lost_recent.extend(range(max(self._next_ext, ext - self._misorder), ext))
        self._next_ext = ext

    # -- placing audio -----------------------------------------------------------------

    def _release(self, arrival: float, packet: RtpPacket) -> None:
        codec = self._types.get(packet.payload_type)
        if codec is None:
            self._count.undecodable += 1
            return
        if codec.name == "telephone-event":
            return
        if codec == CN:
            self._count.comfort_noise += 1
            return
        decoder = self._decoder(codec)
        if decoder is None or codec.sample_rate % codec.clock_rate:
            self._count.undecodable += 1
            return
        if self.sample_rate is None:
            self.sample_rate = codec.sample_rate
            self._origin = arrival
        elif codec.sample_rate != self.sample_rate:
            self._count.undecodable += 1
            return
        self._count.audio_packets += 1
        self._place(arrival, packet, decoder(packet.payload), codec)

    def _decoder(self, codec: Codec) -> Decoder | None:
        if codec not in self._decoders:
            self._decoders[codec] = make_decoder(codec)
        return self._decoders[codec]

    def _place(self, arrival: float, packet: RtpPacket, pcm: bytes, codec: Codec) -> None:
        ratio = codec.sample_rate // codec.clock_rate
        ticks = len(pcm) // 2 // ratio
        play = self._play_ts
        if play is None:  # first audio of this source: start it where the clock says
            start = packet.timestamp
            self._emit_silence(self._wall_fill(arrival))
        else:
            delta = (packet.timestamp - play) & 0xFFFFFFFF
            start = play + (delta if delta < 0x80000000 else delta - 0x100000000)
            gap = start - play
            if gap > 0:
                budget = self._silence_budget()
                if gap * ratio <= budget:
                    self._emit_silence(gap * ratio)
                else:
                    self._count.ts_jumps += 1
                    self._emit_silence(self._wall_fill(arrival))
            elif gap < 0:
                if -gap > codec.clock_rate:  # a timestamp reset, not an overlap
                    self._count.ts_jumps += 1
                    self._emit_silence(self._wall_fill(arrival))
                elif -gap >= ticks:
                    self._count.overlapping += 1
                    return
                else:
                    pcm = pcm[-gap * ratio * 2 :]
                    ticks += gap
                    start = play
        self._emit(pcm, "audio")
        self._play_ts = start + ticks

    def _silence_budget(self) -> int:
        """Samples of silence allowed before the output outruns the arrival clock."""
        assert self.sample_rate is not None
        if self._origin is None or self._max_arrival is None:
            return 0
        ahead = (self._max_arrival - self._origin + self.slack) * self.sample_rate
        return max(0, int(ahead) - self._position)

    def _wall_fill(self, arrival: float) -> int:
        """Silence that brings the output up to the packet's arrival time."""
        assert self.sample_rate is not None
        if self._origin is None:
            return 0
        behind = int((arrival - self._origin) * self.sample_rate) - self._position
        return max(0, min(behind, self._silence_budget()))

    def _emit_silence(self, samples: int) -> None:
        assert self.sample_rate is not None
        chunk = SILENCE_CHUNK_SECONDS * self.sample_rate
        self._silence += samples
        while samples > 0:
            n = min(samples, chunk)
            self._emit(bytes(2 * n), "silence")
            samples -= n

    def _emit(self, pcm: bytes, kind: str) -> None:
        if not pcm:
            return
        self._out.append(PcmFrame(self._position, pcm, kind, self._ssrc or 0))
        self._position += len(pcm) // 2

    def _take_frames(self) -> list[PcmFrame]:
        frames, self._out = self._out, []
        return frames

    def _is_event(self, packet: RtpPacket) -> bool:
        codec = self._types.get(packet.payload_type)
        return codec is not None and codec.name == "telephone-event"

    def _note_codec(self, payload_type: int) -> None:
        codec = self._types.get(payload_type)
        name = codec.name if codec is not None else f"PT{payload_type}"
        if name not in self._codecs and len(self._codecs) < MAX_SSRCS_KEPT:
            self._codecs.append(name)
