"""One answered call's media: what arrives on its ports, what is recorded, what is played,
and when the call should end. No sockets and no clock: the transport adapter passes each
datagram with its source address and arrival time, calls `tick(now)` every few
milliseconds, and sends what these return.

Per stream (one accepted audio m= line) the session

- latches onto the address media actually comes from (symmetric RTP, `latching.Latch`);
  `source_differs` says when that is not what the SDP announced; datagrams from any
  other address (`foreign_packets`) and above `max_packet_rate` a second (`shed`) are
  counted and dropped;
- records every accepted datagram, and every packet siptrap sends, into the call's pcap
  with the real addresses and ports, and the audio of each direction into a WAV file
  (`StreamRecorder`: "in" is what the caller sent, "out" what siptrap played);
- turns RFC 4733 telephone-events into `rtp.dtmf.received` events;
- plays by the extension's mode: `play` (the prompt once, then silence), `silence`,
  `echo` (what the caller sends, sent back), or `ivr` (the prompt, then the digits the
  caller keys are taken as the number dialled, then ringback or busy tone, then the
  call ends).

Sending never makes siptrap a reflector (`latching.SendPolicy`): media goes to the
latched source, or before anything arrived to the SDP address only when it is the host
the SIP came from, and only once the call is confirmed; to any other host no more
packets than it has received from it, plus a second's worth.

The call should end (the call layer sends BYE) when no datagram came for
`rtp_timeout` seconds, after `max_duration` seconds, or when the IVR is done: `ending`
then names the reason.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .call_files import PlayedSummary, PlayedWav, SafeRecorder
from .codecs import Codec
from .dtmf import DtmfEvent
from .ivr import DigitCollector
from .latching import Address, Latch, SendPolicy, Verdict, endpoint_text, same_address
from .negotiation import StreamPlan
from .pcap import PcapWriter
from .playback import Player
from .prompts import Clip, ClipLibrary, PromptError
from .recorder import RecordingSummary
from .rtp import RtpPacket, parse_rtp
from .storage import RecordingFiles

MODES = ("play", "silence", "echo", "ivr")
MAX_DIGITS_KEPT = 256
CHECK_INTERVAL = 1.0  # seconds between checks of the WAV caps
WAV_HEADER = 44
RTP_HEADER = 12


@dataclass(frozen=True, slots=True)
class Flow:
    """The addresses an rtp.* event reports: the remote party as src, siptrap as dst."""

    src_ip: str
    src_port: int
    dst_ip: str
    dst_port: int


Emit = Callable[[str, float, Flow | None, dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class CallSetup:
    """What the call layer tells the media layer when it answers a call."""

    call_id: str
    peer_ip: str  # the address the SIP signalling came from
    local_ip: str  # the address the RTP sockets are bound to
    streams: tuple[StreamPlan, ...]
    mode: str = "play"
    media_file: str | None = None


@dataclass(frozen=True, slots=True)
class MediaLimits:
    """The [media] settings a session needs."""

    rtp_timeout: float = 30.0  # 0: never
    max_duration: float = 600.0
    max_packet_rate: int = 500
    ivr_digit_timeout: float = 4.0
    ivr_max_digits: int = 24
    ivr_outcome: str = "ring"  # "ring" or "busy"
    ivr_outcome_seconds: float = 20.0


@dataclass(frozen=True, slots=True)
class RecordingPlan:
    """Where and how much a session records: `files` None means nothing is written.
    `grant` is the bytes the disk budget granted; `scope` says which cap set it
    ("call" when the per-call cap, "total" when the total budget was the smaller)."""

    files: RecordingFiles | None
    grant: int = 0
    scope: str = "call"


class _Stream:
    """The state of one stream (one accepted m= line)."""

    def __init__(self, plan: StreamPlan, incoming: SafeRecorder) -> None:
        self.plan = plan
        self.incoming = incoming
        self.outgoing: SafeRecorder | PlayedWav | None = None
        self.player: Player | None = None
        self.latch = Latch()
        self.source_differs = False
        self.digits = ""
        self.started = False
        self.wav_cut: set[str] = set()


class MediaSession:
    """The media of one answered call (see the module docstring)."""

    def __init__(
        self,
        setup: CallSetup,
        *,
        limits: MediaLimits,
        clips: ClipLibrary,
        recording: RecordingPlan,
        emit: Emit,
        now: float,
    ) -> None:
        self.setup = setup
        self.call_id = setup.call_id
        self.limits = limits
        self.clips = clips
        self.recording = recording
        self.emit = emit
        self.started = now
        self.last_rx = now
        self.mode = setup.mode if setup.mode in MODES else "play"
        self.ending: str | None = None
        self.digits = ""
        self.ivr = DigitCollector(limits.ivr_digit_timeout, max(1, limits.ivr_max_digits))
        self.ivr_number: str | None = None
        self.ivr_until: float | None = None
        self.closed = False
        self.sending = SendPolicy(setup.peer_ip)
        self._next_check = now + CHECK_INTERVAL
        self._pcap: PcapWriter | None = None
        self._pcap_failed = False
        self._pcap_cut = False
        self._summary: dict[str, Any] | None = None
        self.bytes_written = 0  # on disk once closed
        files = recording.files
        n = max(1, len(setup.streams))
        self._pcap_cap = recording.grant // 2
        self._wav_cap = (recording.grant - self._pcap_cap) // (2 * n) if files else 0
        self.streams = [self._make_stream(plan) for plan in setup.streams]

    # -- setting up ----------------------------------------------------------------------
    def _recorder(self, plan: StreamPlan, direction: str) -> SafeRecorder:
        files = self.recording.files
        if files is None:
            return SafeRecorder(os.devnull, payload_types=plan.payload_types, writing=False)
        return SafeRecorder(
            files.wav(plan.index, direction),
            payload_types=plan.payload_types,
            max_wav_bytes=self._wav_cap,
        )

    def _make_stream(self, plan: StreamPlan) -> _Stream:
        stream = _Stream(plan, self._recorder(plan, "in"))
        codec, pt = plan.send_codec, plan.send_payload_type
        if codec is None or pt is None or not plan.sends:
            return stream
        silence = self.clips.silence(codec, plan.ptime)
        if not silence.frames:
            return stream
        stream.player = Player(
            payload_type=pt,
            codec=codec,
            ptime_ms=plan.ptime,
            silence=silence,
            ssrc=secrets.randbits(32),
            sequence=secrets.randbits(16),
            timestamp=secrets.randbits(32),
        )
        files = self.recording.files
        if self.mode == "echo" or files is None:  # echo plays the caller's payload types
            stream.outgoing = self._recorder(plan, "out")
        else:
            stream.outgoing = PlayedWav(files.wav(plan.index, "out"), codec, self._wav_cap)
        if self.mode in ("play", "ivr"):
            stream.player.play(self._prompt(codec, plan.ptime))
        return stream

    def _prompt(self, codec: Codec, ptime: int) -> Clip:
        """The extension's prompt; the default one if that cannot be read."""
        try:
            return self.clips.prompt(self.setup.media_file, codec, ptime)
        except PromptError:
            try:
                return self.clips.prompt(None, codec, ptime)
            except PromptError:
                return Clip("none", ())

    # -- input ---------------------------------------------------------------------------
    def confirm(self) -> None:
        """The call is confirmed (its ACK came): media may go to the signalling host."""
        self.sending.confirmed = True

    def receive(
        self, index: int, rtcp_port: bool, data: bytes, src: Address, now: float
    ) -> list[tuple[int, bytes, Address]]:
        """One datagram on the RTP port (or RTCP port) of stream `index` (its position in
        `setup.streams`); returns what to send at once (echo mode) as (stream position,
        datagram, destination)."""
        if self.closed or not 0 <= index < len(self.streams):
            return []
        stream = self.streams[index]
        verdict, packet = stream.latch.admit(rtcp_port, data, src, now, self.limits.max_packet_rate)
        if verdict in (Verdict.SHED, Verdict.FOREIGN):
            return []
        if verdict is Verdict.LATCHED:
            self._stream_started(stream, src, packet, now)
        self.last_rx = now
        local = (self.setup.local_ip, stream.plan.local_port + (1 if rtcp_port else 0))
        self._write_pcap(now, src, local, data)
        stream.incoming.push_datagram(now, data)
        for event in stream.incoming.drain_dtmf():
            self._rtp_dtmf(stream, event, now)
        if self.mode == "echo" and not rtcp_port:
            return self._echo(index, stream, data, src, now)
        return []

    def _stream_started(
        self, stream: _Stream, src: Address, packet: RtpPacket | None, now: float
    ) -> None:
        plan = stream.plan
        stream.source_differs = plan.remote is None or not same_address(src, plan.remote)
        stream.started = True
        codec = plan.payload_types.get(packet.payload_type) if packet else None
        self.emit(
            "rtp.stream.started",
            now,
            self._flow(stream),
            {
                "call_id": self.call_id,
                "stream": plan.index,
                "local_port": plan.local_port,
                "source": endpoint_text(src),
                "sdp_address": plan.remote_text,
                "source_differs": stream.source_differs,
                "payload_type": packet.payload_type if packet else None,
                "codec": codec.name if codec else None,
                "ssrc": packet.ssrc if packet else None,
            },
        )

    def _rtp_dtmf(self, stream: _Stream, event: DtmfEvent, now: float) -> None:
        stream.digits = (stream.digits + event.digit)[-MAX_DIGITS_KEPT:]
        self.emit(
            "rtp.dtmf.received",
            now,
            self._flow(stream),
            {
                "call_id": self.call_id,
                "digits": event.digit,
                "source": event.source,
                "duration_ms": event.duration_ms,
                "stream": stream.plan.index,
                "ended": event.ended,
            },
        )
        self.key_pressed(event.digit, now)

    def key_pressed(self, digit: str, now: float) -> None:
        """A DTMF key, from RTP or SIP INFO: kept for the summary, fed to the IVR."""
        self.digits = (self.digits + digit)[-MAX_DIGITS_KEPT:]
        if self.mode == "ivr" and self.ivr_number is None:
            number = self.ivr.push(digit, now)
            if number is not None:
                self._ivr_done(number, now)

    def _echo(
        self, index: int, stream: _Stream, data: bytes, src: Address, now: float
    ) -> list[tuple[int, bytes, Address]]:
        player = stream.player
        packet = parse_rtp(data)
        if player is None or packet is None or not self._may_send(stream, src):
            return []
        out = player.echo(packet)
        self._sent(stream, out, src, now)
        return [(index, out, src)]

    # -- the IVR -------------------------------------------------------------------------
    def _ivr_done(self, number: str, now: float) -> None:
        self.ivr_number = number
        outcome = "busy" if self.limits.ivr_outcome == "busy" else "ring"
        seconds = max(0.0, self.limits.ivr_outcome_seconds)
        self.ivr_until = now + seconds
        self.emit(
            "rtp.ivr.number",
            now,
            self._flow(self.streams[0]) if self.streams else None,
            {"call_id": self.call_id, "number": number, "outcome": outcome},
        )
        for stream in self.streams:
            player = stream.player
            if player is None or stream.plan.send_codec is None:
                continue
            codec, ptime = stream.plan.send_codec, stream.plan.ptime
            clip = (
                self.clips.busy(codec, ptime)
                if outcome == "busy"
                else self.clips.ringback(codec, ptime)
            )
            player.interrupt(clip, seconds)

    # -- time ----------------------------------------------------------------------------
    def tick(self, now: float) -> list[tuple[int, bytes, Address]]:
        """Packets due now, as (stream position, datagram, destination); notes when the
        call should end (`ending`)."""
        if self.closed:
            return []
        if self.ending is None:
            self.ending = self._expired(now)
        if self.mode == "ivr" and self.ivr_number is None:
            number = self.ivr.poll(now)
            if number is not None:
                self._ivr_done(number, now)
        if now >= self._next_check:
            self._next_check = now + CHECK_INTERVAL
            self._check_wav_caps(now)
        out: list[tuple[int, bytes, Address]] = []
        if self.mode == "echo":
            return out
        for index, stream in enumerate(self.streams):
            player = stream.player
            if player is None:
                continue
            target = self.sending.target(stream.latch, stream.plan.remote)
            if target is None or not self._may_send(stream, target):
                continue
            for packet in player.due(now):
                self._sent(stream, packet, target, now)
                out.append((index, packet, target))
        return out

    def _expired(self, now: float) -> str | None:
        limits = self.limits
        if limits.max_duration > 0 and now - self.started >= limits.max_duration:
            return "max_duration"
        if limits.rtp_timeout > 0 and now - self.last_rx >= limits.rtp_timeout:
            return "rtp_timeout"
        if self.ivr_until is not None and now >= self.ivr_until:
            return "ivr_done"
        return None

    def _may_send(self, stream: _Stream, target: Address) -> bool:
        return self.sending.may_send(stream.latch, target, stream.plan.ptime)

    def _sent(self, stream: _Stream, data: bytes, target: Address, now: float) -> None:
        self.sending.sent(stream.latch, target)
        local = (self.setup.local_ip, stream.plan.local_port)
        self._write_pcap(now, local, target, data)
        if stream.outgoing is not None:
            stream.outgoing.push_datagram(now, data)

    # -- recording -----------------------------------------------------------------------
    def _write_pcap(self, now: float, src: Address, dst: Address, data: bytes) -> None:
        files = self.recording.files
        if files is None or self._pcap_failed:
            return
        if self._pcap is None:
            try:
                self._pcap = PcapWriter(files.pcap, max_bytes=self._pcap_cap)
            except OSError:
                self._pcap_failed = True
                return
        try:
            self._pcap.write_udp(now, src, dst, data)
        except ValueError:  # not an IP address (cannot happen for socket addresses)
            return
        except OSError:  # a full disk: the call goes on unrecorded
            self._pcap_failed = True
            return
        if self._pcap.truncated and not self._pcap_cut:
            self._pcap_cut = True
            self._truncated(now, "pcap", files.relative(files.pcap), self._pcap_cap)

    def _truncated(self, now: float, kind: str, path: str | None, cap: int) -> None:
        self.emit(
            "rtp.recording.truncated",
            now,
            None,
            {
                "call_id": self.call_id,
                "kind": kind,
                "path": path,
                "cap": cap,
                "scope": self.recording.scope,
            },
        )

    def _check_wav_caps(self, now: float) -> None:
        files = self.recording.files
        if files is None:
            return
        for stream in self.streams:
            for direction, recorder in (("in", stream.incoming), ("out", stream.outgoing)):
                if recorder is None or direction in stream.wav_cut:
                    continue
                if recorder.truncated:
                    stream.wav_cut.add(direction)
                    path = files.relative(files.wav(stream.plan.index, direction))
                    self._truncated(now, "wav", path, recorder.max_wav_bytes)

    # -- the end -------------------------------------------------------------------------
    def _flow(self, stream: _Stream) -> Flow:
        remote = stream.latch.rtp_source or stream.plan.remote or (self.setup.peer_ip, 0)
        return Flow(remote[0], remote[1], self.setup.local_ip, stream.plan.local_port)

    def close(self, now: float) -> dict[str, Any]:
        """Finish every file, emit `rtp.stream.ended` per stream, return the call's media
        summary (for `sip.call.ended`). Safe to call twice."""
        if self._summary is not None:
            return self._summary
        self.closed = True
        self._check_wav_caps(now)
        streams = []
        written = 0
        for stream in self.streams:
            incoming = stream.incoming.close()
            outgoing = stream.outgoing.close() if stream.outgoing is not None else None
            for direction, done in (("in", incoming), ("out", outgoing)):
                if done is not None and done.wav_path and direction not in stream.wav_cut:
                    if done.wav_truncated:
                        stream.wav_cut.add(direction)
                        files = self.recording.files
                        path = files.relative(done.wav_path) if files else None
                        self._truncated(now, "wav", path, stream.incoming.max_wav_bytes)
                written += self._wav_size(done)
            fields = self._stream_fields(stream, incoming, outgoing)
            self.emit(
                "rtp.stream.ended", now, self._flow(stream), {"call_id": self.call_id, **fields}
            )
            streams.append(fields)
        if self._pcap is not None:
            with contextlib.suppress(OSError):
                self._pcap.close()
            written += self._pcap.bytes_written
        self.bytes_written = written
        files = self.recording.files
        summary: dict[str, Any] = {
            "mode": self.mode,
            "streams": streams,
            "rtp_port": self.streams[0].plan.local_port if self.streams else None,
            "rtp_packets": sum(s["packets"] for s in streams),
            "rtp_bytes": sum(s["bytes"] for s in streams),
            "rtp_sources": [s["source"] for s in streams if s["source"]],
            "dtmf": self.digits,
            "ivr_number": self.ivr_number,
            "recorded": files is not None,
            "pcap": files.relative(files.pcap) if files and self._pcap is not None else None,
            "end": self.ending,
        }
        self._summary = summary
        return summary

    @staticmethod
    def _wav_size(summary: RecordingSummary | PlayedSummary | None) -> int:
        if summary is None or summary.wav_path is None:
            return 0
        try:
            return os.path.getsize(summary.wav_path)
        except OSError:
            return WAV_HEADER

    def _stream_fields(
        self,
        stream: _Stream,
        incoming: RecordingSummary,
        outgoing: RecordingSummary | PlayedSummary | None,
    ) -> dict[str, Any]:
        st = incoming.stats
        plan = stream.plan
        files = self.recording.files
        span = (
            st.last_arrival - st.first_arrival
            if st.first_arrival is not None and st.last_arrival is not None
            else 0.0
        )
        decoded = st.audio_packets > 0
        expected = st.packets + st.lost
        codec = plan.send_codec.name if plan.send_codec else None
        received_codecs = [c for c in st.codecs if c not in ("telephone-event", "CN")]
        return {
            "stream": plan.index,
            "local_port": plan.local_port,
            "codec": received_codecs[0] if received_codecs else codec,
            "codecs": list(st.codecs),
            "send_codec": codec,
            "sdp_address": plan.remote_text,
            "source": endpoint_text(stream.latch.rtp_source),
            "source_differs": stream.source_differs,
            "packets": st.packets,
            "bytes": st.bytes,
            "lost": st.lost,
            "loss": round(st.lost / expected, 4) if expected else 0.0,
            "late": st.late,
            "duplicates": st.duplicates,
            "out_of_order": st.out_of_order,
            "duration": round(st.duration if decoded else span, 3),
            "decoded": decoded,
            "undecodable": st.undecodable,
            "comfort_noise": st.comfort_noise,
            "ssrcs": list(st.ssrcs),
            "rtcp_packets": incoming.rtcp_packets,
            "rtcp_bye": incoming.rtcp_bye,
            "cnames": list(incoming.cnames),
            "not_rtp": incoming.not_rtp,
            "dtmf": stream.digits,
            "foreign_packets": stream.latch.foreign,
            "foreign_sources": list(stream.latch.foreign_sources),
            "shed": stream.latch.shed,
            "sent_packets": stream.player.sent if stream.player else 0,
            "pcap": files.relative(files.pcap) if files and self._pcap is not None else None,
            "wav_in": files.relative(incoming.wav_path) if files else None,
            "wav_out": files.relative(outgoing.wav_path) if files and outgoing else None,
            "truncated": self._pcap_cut
            or self._pcap_failed
            or bool(stream.wav_cut)
            or stream.incoming.failed
            or (stream.outgoing is not None and stream.outgoing.failed),
        }
