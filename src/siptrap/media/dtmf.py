"""DTMF: RFC 4733 telephone-event packets and SIP INFO bodies, turned into digit events.

An RFC 4733 key press arrives as several RTP packets sharing one RTP timestamp (the
event's start): usually three copies of the first (marker set), continuation packets
with growing durations, and three copies of the final packet with the end bit set.
`Rfc4733Decoder` reports each key press once, when its end arrives (or, if the end
packets were lost, when the next event starts or the stream is flushed), and ignores
the retransmissions. SIP INFO carries DTMF as `application/dtmf-relay`
(`Signal=5` / `Duration=160`) or `application/dtmf` (the digit alone).
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

from .rtp import RtpPacket

# RFC 4733 section 3.2: events 0-9, *, #, A-D, then flash (16).
EVENT_NAMES = "0123456789*#ABCD"
FLASH = 16
_EVENT = struct.Struct("!BBH")
_MAX_REMEMBERED = 64  # recent (ssrc, timestamp) keys kept to drop late retransmissions
_SIGNAL_ALIASES = {"10": "*", "11": "#", "12": "A", "13": "B", "14": "C", "15": "D"}
MAX_INFO_BODY = 4096


def event_name(event: int) -> str:
    """The key an event code stands for: "0"-"9", "*", "#", "A"-"D", "flash" or "event-N"."""
    if 0 <= event < len(EVENT_NAMES):
        return EVENT_NAMES[event]
    if event == FLASH:
        return "flash"
    return f"event-{event}"


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """One RFC 4733 payload: event code, end bit, volume (0 to -63 dBm0, as 0-63) and
    duration in RTP timestamp units since the event's start."""

    event: int
    end: bool
    volume: int
    duration: int
    defects: tuple[str, ...] = ()


def parse_telephone_event(payload: bytes) -> TelephoneEvent | None:
    """Read a telephone-event payload; `None` if it is shorter than four bytes."""
    if len(payload) < _EVENT.size:
        return None
    event, flags, duration = _EVENT.unpack_from(payload)
    defects = []
    if len(payload) > _EVENT.size:
        defects.append("dtmf_extra_payload")
    if event > FLASH:
        defects.append("dtmf_unknown_event")
    return TelephoneEvent(event, bool(flags & 0x80), flags & 0x3F, duration, tuple(defects))


def build_telephone_event(event: int, *, end: bool, volume: int, duration: int) -> bytes:
    """The four-byte RFC 4733 payload for one event report."""
    flags = (0x80 if end else 0) | (volume & 0x3F)
    return _EVENT.pack(event & 0xFF, flags, duration & 0xFFFF)


@dataclass(frozen=True, slots=True)
class DtmfEvent:
    """One key press, however it arrived.

    `source` is "rfc4733", "dtmf-relay" or "dtmf". `arrival` is when its first packet or
    the INFO request arrived. `rtp_timestamp` is the event's RTP start timestamp and
    `ssrc` its stream (RFC 4733 only). `duration_ms` may be `None` if not told. `ended`
    is False when the end packets never came (the event was closed by a later one).
    """

    digit: str
    event: int
    source: str
    arrival: float
    duration_ms: float | None = None
    volume: int | None = None
    rtp_timestamp: int | None = None
    ssrc: int | None = None
    ended: bool = True


@dataclass(slots=True)
class _Pending:
    key: tuple[int, int]
    event: int
    arrival: float
    offset: int  # RTP units from the event's first timestamp to the current segment's
    duration: int
    volume: int


class Rfc4733Decoder:
    """Turns telephone-event RTP packets into `DtmfEvent`s, each key press once.

    Packets are keyed by (SSRC, RTP timestamp). Memory is bounded: one pending event
    and the keys of the last few finished ones.
    """

    def __init__(self, clock_rate: int = 8000) -> None:
        self.clock_rate = clock_rate
        self.packets = 0
        self.malformed = 0
        self.retransmissions = 0
        self._pending: _Pending | None = None
        self._done: deque[tuple[int, int]] = deque(maxlen=_MAX_REMEMBERED)
        self._done_set: set[tuple[int, int]] = set()

    def push(self, arrival: float, packet: RtpPacket) -> list[DtmfEvent]:
        """Take one telephone-event packet; return the key presses it completes."""
        self.packets += 1
        te = parse_telephone_event(packet.payload)
        if te is None:
            self.malformed += 1
            return []
        key = (packet.ssrc, packet.timestamp)
        if key in self._done_set:
            self.retransmissions += 1
            return []
        out: list[DtmfEvent] = []
        pending = self._pending
        if pending is not None and pending.key != key:
            if self._continues(pending, packet, te):
                # RFC 4733 2.5.1.3: a long event goes on under a new timestamp.
                pending.offset += (packet.timestamp - pending.key[1]) & 0xFFFFFFFF
                self._remember(pending.key)
                pending.key = key
            else:
                out.append(self._finish(pending, ended=False))
                pending = None
        if pending is None:
            pending = _Pending(key, te.event, arrival, 0, 0, te.volume)
            self._pending = pending
        elif pending.offset + te.duration <= pending.duration and not te.end:
            self.retransmissions += 1
        pending.duration = max(pending.duration, pending.offset + te.duration)
        pending.volume = te.volume
        if te.end:
            out.append(self._finish(pending, ended=True))
        return out

    def flush(self) -> list[DtmfEvent]:
        """Report an event whose end packets never came (call this at stream end)."""
        if self._pending is None:
            return []
        return [self._finish(self._pending, ended=False)]

    def _continues(self, pending: _Pending, packet: RtpPacket, te: TelephoneEvent) -> bool:
        ssrc, segment_start = pending.key
        if packet.ssrc != ssrc or packet.marker or te.event != pending.event:
            return False
        step = (packet.timestamp - segment_start) & 0xFFFFFFFF
        segment_length = pending.duration - pending.offset
        return 0 < step <= segment_length + self.clock_rate // 10

    def _finish(self, pending: _Pending, *, ended: bool) -> DtmfEvent:
        self._pending = None
        self._remember(pending.key)
        return DtmfEvent(
            digit=event_name(pending.event),
            event=pending.event,
            source="rfc4733",
            arrival=pending.arrival,
            duration_ms=pending.duration * 1000 / self.clock_rate,
            volume=pending.volume,
            rtp_timestamp=(pending.key[1] - pending.offset) & 0xFFFFFFFF,
            ssrc=pending.key[0],
            ended=ended,
        )

    def _remember(self, key: tuple[int, int]) -> None:
        if key in self._done_set:
            return
        if len(self._done) == self._done.maxlen:
            self._done_set.discard(self._done[0])
        self._done.append(key)
        self._done_set.add(key)


@dataclass(frozen=True, slots=True)
class InfoDtmf:
    """The result of reading a SIP INFO DTMF body: the event (if any) and problems."""

    event: DtmfEvent | None
    defects: tuple[str, ...] = ()


def _key_from_signal(text: str) -> str | None:
    signal = text.strip().strip('"').upper()
    signal = _SIGNAL_ALIASES.get(signal, signal)
    if len(signal) == 1 and signal in EVENT_NAMES:
        return signal
    if signal in ("!", "16", "FLASH", "HOOKFLASH", "HF"):
        return "flash"
    return None


def parse_info_dtmf(content_type: str, body: bytes, arrival: float) -> InfoDtmf | None:
    """Read a SIP INFO body of type application/dtmf-relay or application/dtmf.

    Returns `None` for other content types; an `InfoDtmf` with `event=None` and a defect
    when the body names no DTMF key.
    """
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime not in ("application/dtmf-relay", "application/dtmf"):
        return None
    text = body[:MAX_INFO_BODY].decode("utf-8", "replace")
    if mime == "application/dtmf":
        signal: str | None = text.strip().splitlines()[0] if text.strip() else None
        duration_text = None
    else:
        fields: dict[str, str] = {}
        for line in text.splitlines():
            name, sep, value = line.partition("=")
            if sep:
                fields.setdefault(name.strip().lower(), value.strip())
        signal = fields.get("signal")
        duration_text = fields.get("duration")
    defects: list[str] = []
    key = _key_from_signal(signal) if signal is not None else None
    if key is None:
        return InfoDtmf(None, ("dtmf_bad_signal",))
    duration: float | None = None
    if duration_text is not None:
        if duration_text.isdigit() and len(duration_text) <= 9:
            duration = float(duration_text)
        else:
            defects.append("dtmf_bad_duration")
    code = FLASH if key == "flash" else EVENT_NAMES.index(key)
    source = "dtmf" if mime == "application/dtmf" else "dtmf-relay"
    event = DtmfEvent(key, code, source, arrival, duration_ms=duration)
    return InfoDtmf(event, tuple(defects))
