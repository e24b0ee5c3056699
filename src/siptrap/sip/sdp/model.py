"""The SDP description as typed, frozen objects (RFC 8866): origin, connection,
bandwidth, timing, rtpmap, media sections and the session, and writing them back as bytes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

_MAX_DIGITS = 20  # longest number read as an int


DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
_MIRROR = {
    "sendrecv": "sendrecv",
    "sendonly": "recvonly",
    "recvonly": "sendonly",
    "inactive": "inactive",
}

Attribute = tuple[str, str | None]

_RTPMAP = re.compile(r"\s*(\d{1,3})\s+([^\s/]+)/(\d{1,9})(?:/(\d{1,3}))?\s*")


# -- the description ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Origin:
    """The o= line: who made the session and which version of it this is.

    The session id and version are kept as the text sent (they are meant to be numbers,
    but an attacker may send anything and evidence is kept as is).
    """

    username: str
    session_id: str
    session_version: str
    nettype: str
    addrtype: str
    address: str

    def format(self) -> str:
        return (
            f"{self.username} {self.session_id} {self.session_version} "
            f"{self.nettype} {self.addrtype} {self.address}"
        )


@dataclass(frozen=True, slots=True)
class Connection:
    """A c= line: where media goes. `ttl` only for IPv4 multicast, `count` for a range."""

    nettype: str
    addrtype: str
    address: str
    ttl: int | None = None
    count: int | None = None

    def format(self) -> str:
        text = f"{self.nettype} {self.addrtype} {self.address}"
        if self.addrtype.upper() == "IP6":
            return text if self.count is None else f"{text}/{self.count}"
        if self.ttl is not None:
            text = f"{text}/{self.ttl}"
            if self.count is not None:
                text = f"{text}/{self.count}"
        return text


@dataclass(frozen=True, slots=True)
class Bandwidth:
    """A b= line: a bandwidth type ("AS", "CT", "TIAS"...) and its value."""

    bwtype: str
    value: int

    def format(self) -> str:
        return f"{self.bwtype}:{self.value}"


@dataclass(frozen=True, slots=True)
class Timing:
    """A t= line (NTP start and stop, 0 for unbounded) and the r= lines that follow it."""

    start: int = 0
    stop: int = 0
    repeats: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RtpMap:
    """What an RTP payload type carries: from a=rtpmap or the RFC 3551 static table."""

    payload_type: int
    encoding: str
    clock_rate: int
    channels: int | None = None

    def format(self) -> str:
        text = f"{self.payload_type} {self.encoding}/{self.clock_rate}"
        return text if self.channels is None else f"{text}/{self.channels}"


# RFC 3551 static payload types, known even when an offer has no a=rtpmap for them.
STATIC_PAYLOAD_TYPES: dict[int, RtpMap] = {
    pt: RtpMap(pt, name, rate, channels)
    for pt, name, rate, channels in (
        (0, "PCMU", 8000, None),
        (3, "GSM", 8000, None),
        (4, "G723", 8000, None),
        (5, "DVI4", 8000, None),
        (6, "DVI4", 16000, None),
        (7, "LPC", 8000, None),
        (8, "PCMA", 8000, None),
        (9, "G722", 8000, None),
        (10, "L16", 44100, 2),
        (11, "L16", 44100, None),
        (12, "QCELP", 8000, None),
        (13, "CN", 8000, None),
        (14, "MPA", 90000, None),
        (15, "G728", 8000, None),
        (16, "DVI4", 11025, None),
        (17, "DVI4", 22050, None),
        (18, "G729", 8000, None),
        (25, "CelB", 90000, None),
        (26, "JPEG", 90000, None),
        (28, "nv", 90000, None),
        (31, "H261", 90000, None),
        (32, "MPV", 90000, None),
        (33, "MP2T", 90000, None),
        (34, "H263", 90000, None),
    )
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Media:
    """One media section: the m= line and the i=, c=, b=, k= and a= lines under it.

    `session_connection` and `session_direction` are what the session level says, filled
    in by `SessionDescription`; they make `address` and `direction` answer for the section
    without a reference back to the session, and are not part of equality.
    """

    kind: str = "audio"  # "audio", "video", "image", "application"...
    port: int = 0
    port_count: int | None = None
    proto: str = "RTP/AVP"
    formats: tuple[str, ...] = ()
    information: str | None = None
    connection: Connection | None = None
    bandwidths: tuple[Bandwidth, ...] = ()
    key: str | None = None
    attributes: tuple[Attribute, ...] = ()
    session_connection: Connection | None = field(default=None, compare=False, repr=False)
    session_direction: str | None = field(default=None, compare=False, repr=False)

    # -- attribute access ----------------------------------------------------------------
    def attribute(self, name: str) -> str | None:
        """The value of the first a= line with this name (case-insensitive), or None."""
        return _first_attribute(self.attributes, name)

    def attribute_values(self, name: str) -> list[str]:
        """The values of every a= line with this name (case-insensitive)."""
        wanted = name.lower()
        return [v for n, v in self.attributes if v is not None and n.lower() == wanted]

    def has_attribute(self, name: str) -> bool:
        wanted = name.lower()
        return any(n.lower() == wanted for n, _ in self.attributes)

    # -- derived views -------------------------------------------------------------------
    @property
    def is_rtp(self) -> bool:
        """Whether the protocol is an RTP profile (RTP/AVP, RTP/SAVPF, UDP/TLS/RTP/SAVP...)."""
        return _is_rtp(self.proto)

    @property
    def payload_types(self) -> list[int]:
        """The formats that read as RTP payload type numbers, in order."""
        result = []
        for fmt in self.formats:
            pt = _to_int(fmt, 3)
            if pt is not None and pt <= 127:
                result.append(pt)
        return result

    @property
    def rtpmaps(self) -> dict[int, RtpMap]:
        """Payload type -> RtpMap for the listed formats, from a=rtpmap or the static table."""
        declared: dict[int, RtpMap] = {}
        for value in self.attribute_values("rtpmap"):
            rtpmap = parse_rtpmap(value)
            if rtpmap is not None and rtpmap.payload_type not in declared:
                declared[rtpmap.payload_type] = rtpmap
        static = STATIC_PAYLOAD_TYPES if self.is_rtp else {}
        result: dict[int, RtpMap] = {}
        for pt in self.payload_types:
            found = declared.get(pt) or static.get(pt)
            if found is not None:
                result[pt] = found
        return result

    @property
    def fmtp(self) -> dict[int, str]:
        """Payload type -> format parameters from a=fmtp (the first line for each type)."""
        result: dict[int, str] = {}
        for value in self.attribute_values("fmtp"):
            pt_text, _, params = value.strip().partition(" ")
            pt = _to_int(pt_text, 3)
            if pt is not None and pt not in result:
                result[pt] = params.strip()
        return result

    @property
    def ptime(self) -> int | None:
        """Packet time in milliseconds from a=ptime, or None if absent or unreadable."""
        return _parse_ptime(self.attribute("ptime"))

    @property
    def direction(self) -> str:
        """sendrecv, sendonly, recvonly or inactive: this section's, else the session's."""
        return _direction_of(self.attributes) or self.session_direction or "sendrecv"

    @property
    def effective_connection(self) -> Connection | None:
        """The c= that applies: the section's own, else the session's."""
        return self.connection or self.session_connection

    @property
    def address(self) -> str | None:
        """The address media goes to: from the section's c=, else the session's c=."""
        connection = self.effective_connection
        return None if connection is None else connection.address

    @property
    def is_rejected(self) -> bool:
        """A port of 0 marks a rejected (or disabled) stream, RFC 3264 section 6."""
        return self.port == 0

    def lines(self) -> list[str]:
        """The section as SDP lines, without line ends, in RFC order (m i c b k a)."""
        port = str(self.port) if self.port_count is None else f"{self.port}/{self.port_count}"
        out = [" ".join(("m=" + self.kind, port, self.proto, *self.formats))]
        if self.information is not None:
            out.append(f"i={self.information}")
        if self.connection is not None:
            out.append(f"c={self.connection.format()}")
        out.extend(f"b={b.format()}" for b in self.bandwidths)
        if self.key is not None:
            out.append(f"k={self.key}")
        out.extend(_attribute_lines(self.attributes))
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionDescription:
    """A whole SDP body: session-level lines and the media sections.

    Fields that a body lacked are None or empty; `defects` names what was wrong with the
    body it was parsed from, `raw` keeps those bytes as received (not part of equality).
    """

    version: int = 0
    origin: Origin | None = None
    session_name: str | None = None
    information: str | None = None
    uri: str | None = None
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    connection: Connection | None = None
    bandwidths: tuple[Bandwidth, ...] = ()
    times: tuple[Timing, ...] = ()
    timezones: str | None = None
    key: str | None = None
    attributes: tuple[Attribute, ...] = ()
    media: tuple[Media, ...] = ()
    defects: tuple[str, ...] = ()
    raw: bytes = field(default=b"", compare=False, repr=False)

    def __post_init__(self) -> None:
        # Give each media section what the session level says, so it can answer alone.
        direction = _direction_of(self.attributes)
        if any(
            m.session_connection is not self.connection or m.session_direction != direction
            for m in self.media
        ):
            media = tuple(
                replace(m, session_connection=self.connection, session_direction=direction)
                for m in self.media
            )
            object.__setattr__(self, "media", media)

    def attribute(self, name: str) -> str | None:
        """The value of the first session-level a= line with this name, or None."""
        return _first_attribute(self.attributes, name)

    def media_of(self, kind: str) -> list[Media]:
        """The media sections of one kind ("audio", "video"...), case-insensitive."""
        wanted = kind.lower()
        return [m for m in self.media if m.kind.lower() == wanted]

    @property
    def direction(self) -> str | None:
        """The session-level direction attribute, or None when there is none."""
        return _direction_of(self.attributes)

    def lines(self) -> list[str]:
        """The description as SDP lines, without line ends, in the order RFC 8866 gives."""
        out = [f"v={self.version}"]
        if self.origin is not None:
            out.append(f"o={self.origin.format()}")
        if self.session_name is not None:
            out.append(f"s={self.session_name}")
        if self.information is not None:
            out.append(f"i={self.information}")
        if self.uri is not None:
            out.append(f"u={self.uri}")
        out.extend(f"e={e}" for e in self.emails)
        out.extend(f"p={p}" for p in self.phones)
        if self.connection is not None:
            out.append(f"c={self.connection.format()}")
        out.extend(f"b={b.format()}" for b in self.bandwidths)
        for timing in self.times:
            out.append(f"t={timing.start} {timing.stop}")
            out.extend(f"r={r}" for r in timing.repeats)
        if self.timezones is not None:
            out.append(f"z={self.timezones}")
        if self.key is not None:
            out.append(f"k={self.key}")
        out.extend(_attribute_lines(self.attributes))
        for media in self.media:
            out.extend(media.lines())
        return out

    def to_bytes(self) -> bytes:
        """The description as an SDP body: CRLF-terminated lines.

        Raises ValueError if a field holds a CR or LF (which parsing never produces), since
        writing it would inject lines.
        """
        lines = self.lines()
        text = "\r\n".join(lines) + "\r\n"
        if text.count("\n") != len(lines) or text.count("\r") != len(lines):
            raise ValueError("an SDP field contains a line break")
        try:
            return text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            return text.encode("utf-8", "backslashreplace")


# -- small readers ---------------------------------------------------------------------------


def _to_int(text: str, max_digits: int = _MAX_DIGITS) -> int | None:
    """An ASCII decimal number of at most `max_digits` digits (spaces around allowed)."""
    text = text.strip()
    if 0 < len(text) <= max_digits and text.isascii() and text.isdigit():
        return int(text)
    return None


def _is_rtp(proto: str) -> bool:
    return "RTP/" in proto.upper()


def _first_attribute(attributes: tuple[Attribute, ...], name: str) -> str | None:
    wanted = name.lower()
    for n, v in attributes:
        if n.lower() == wanted:
            return v
    return None


def _direction_of(attributes: tuple[Attribute, ...]) -> str | None:
    """The last direction attribute in a section, or None."""
    found = None
    for name, _ in attributes:
        lowered = name.lower()
        if lowered in _MIRROR:
            found = lowered
    return found


def _attribute_lines(attributes: tuple[Attribute, ...]) -> Iterator[str]:
    for name, value in attributes:
        yield f"a={name}" if value is None else f"a={name}:{value}"


def _parse_ptime(value: str | None) -> int | None:
    if value is None:
        return None
    whole = value.strip().split(".", 1)[0]  # some agents send "20.0"
    return _to_int(whole, 6)


def parse_rtpmap(value: str) -> RtpMap | None:
    """Read an a=rtpmap value ("101 telephone-event/8000"), or None if it does not fit."""
    match = _RTPMAP.fullmatch(value)
    if match is None:
        return None
    pt = int(match[1])
    if pt > 127:
        return None
    channels = int(match[4]) if match[4] else None
    return RtpMap(pt, match[2], int(match[3]), channels)


# -- parsing ---------------------------------------------------------------------------------
