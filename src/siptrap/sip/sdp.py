"""SDP session descriptions (RFC 8866, formerly RFC 4566) and RFC 3264 offer/answer.

`parse_sdp(body)` reads an SDP body leniently: it never raises, keeps the original bytes in
`raw`, and records every deviation from the grammar as a defect name (see `SDP_DEFECTS`)
instead of failing. Sizes are capped so a hostile body cannot make it use unbounded memory.
`SessionDescription.to_bytes()` writes a description back as CRLF lines in RFC order, so a
well-formed body survives parse -> to_bytes unchanged.

`build_offer` and `build_answer` make the descriptions a user agent sends: an audio offer,
or an RFC 3264 answer with one m= line per offered m= line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

_T = TypeVar("_T")

# -- caps: a hostile body cannot make the parser hold more than this --------------------------
MAX_SDP_SIZE = 65535  # bytes parsed; the rest is ignored (raw keeps everything)
MAX_LINES = 1024
MAX_LINE_LENGTH = 4096
MAX_MEDIA = 32
MAX_ATTRIBUTES = 128  # per section: the session level, or one media section
MAX_FORMATS = 64  # per m= line
MAX_REPEATED = 16  # e=, p=, b=, t= lines per section and r= lines per t=
_MAX_DIGITS = 20  # longest number read as an int

SDP_DEFECTS: dict[str, str] = {
    "body_too_large": "body larger than the cap; the rest is not parsed",
    "non_utf8": "bytes that are not UTF-8",
    "control_chars": "control characters (NUL and others) inside lines",
    "bare_lf": "lines end with LF instead of CRLF",
    "bare_cr": "lines end with CR alone",
    "blank_line": "an empty line between other lines",
    "line_too_long": "a line longer than the cap; it is ignored",
    "too_many_lines": "more lines than the cap; the rest are ignored",
    "bad_line": "a line that is not <letter>=<value>",
    "unknown_type": "a line of a type SDP does not define; it is ignored",
    "bad_order": "a line out of the order the grammar requires, or at the wrong level",
    "duplicate_line": "a line that may appear once appears again; the first is kept",
    "missing_version": "no v= line",
    "bad_version": "v= is not 0",
    "missing_origin": "no o= line",
    "bad_origin": "o= does not have six fields",
    "missing_session_name": "no s= line",
    "missing_timing": "no t= line",
    "bad_time": "t= is not two numbers",
    "bad_connection": "c= cannot be read as network type, address type and address",
    "no_connection": "a media section with a port has no c= line, nor does the session",
    "bad_bandwidth": "b= is not <type>:<number>",
    "bad_attribute": "a= with an empty name or a name containing spaces",
    "too_many_attributes": "more a= lines in a section than the cap; the rest are ignored",
    "too_many_repeated": "more e=, p=, b=, t= or r= lines than the cap; the rest are ignored",
    "bad_media": "m= without media, port, protocol and at least one format",
    "bad_port": "m= port is not a number from 0 to 65535, or a bad port count",
    "too_many_media": "more m= lines than the cap; the rest are ignored",
    "too_many_formats": "more formats on an m= line than the cap; the rest are ignored",
    "bad_format": "an RTP format that is not a payload type number from 0 to 127",
    "missing_rtpmap": "a dynamic RTP payload type without an a=rtpmap",
    "bad_rtpmap": "a=rtpmap is not <pt> <encoding>/<clock rate>[/<channels>]",
    "bad_ptime": "a=ptime is not a number",
}

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
_MIRROR = {
    "sendrecv": "sendrecv",
    "sendonly": "recvonly",
    "recvonly": "sendonly",
    "inactive": "inactive",
}

Attribute = tuple[str, str | None]

_RTPMAP = re.compile(r"\s*(\d{1,3})\s+([^\s/]+)/(\d{1,9})(?:/(\d{1,3}))?\s*")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SAFE_TOKEN = re.compile(r"[!-~]{1,64}")
_SAFE_FMTP = re.compile(r"[A-Za-z0-9=;,.:/+\- ]{1,128}")
# Line types in the order RFC 8866 section 5 lists them; r= ranks with t= (t r t r...).
_SESSION_RANK = {k: i for i, k in enumerate("vosiuepcbtzka")} | {"r": 9}
_MEDIA_RANK = {k: i for i, k in enumerate("icbka")}
_KNOWN_TYPES = frozenset("vosiuepcbtrzkam")


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


class _Section:
    """The lines of one section (session level or one media section) while parsing."""

    __slots__ = (
        "attributes",
        "bandwidths",
        "connection",
        "emails",
        "information",
        "key",
        "phones",
        "rank",
        "rtpmap_types",
        "seen",
    )

    def __init__(self) -> None:
        self.information: str | None = None
        self.connection: Connection | None = None
        self.bandwidths: list[Bandwidth] = []
        self.key: str | None = None
        self.attributes: list[Attribute] = []
        self.emails: list[str] = []
        self.phones: list[str] = []
        self.seen: set[str] = set()
        self.rank = -1
        self.rtpmap_types: set[int] = set()  # payload types with a readable a=rtpmap


class _Parser:
    """Reads SDP lines one at a time into sections, recording defects as it goes."""

    def __init__(self) -> None:
        self.defects: dict[str, None] = {}  # ordered set
        self.version: int | None = None
        self.origin: Origin | None = None
        self.session_name: str | None = None
        self.uri: str | None = None
        self.times: list[Timing] = []
        self.saw_time = False
        self.timezones: str | None = None
        self.session = _Section()
        self.media_lines: list[tuple[str, int, int | None, str, tuple[str, ...]]] = []
        self.media_sections: list[_Section] = []
        self.ignoring_media = False

    def defect(self, name: str) -> None:
        self.defects[name] = None

    # -- dispatch -------------------------------------------------------------------------
    def line(self, kind: str, value: str) -> None:
        if kind == "m":
            self.media_line(value)
        elif self.ignoring_media:
            return
        elif self.media_sections:
            self.media_level(self.media_sections[-1], kind, value)
        else:
            self.session_level(kind, value)

    def check_order(self, section: _Section, rank: int) -> None:
        if rank < section.rank:
            self.defect("bad_order")
        section.rank = max(section.rank, rank)

    def once(self, section: _Section, kind: str) -> bool:
        """True the first time a single-occurrence line type is seen in a section."""
        if kind in section.seen:
            self.defect("duplicate_line")
            return False
        section.seen.add(kind)
        return True

    def session_level(self, kind: str, value: str) -> None:
        section = self.session
        self.check_order(section, _SESSION_RANK[kind])
        if kind in "vosiuczk" and not self.once(section, kind):
            return
        if kind == "v":
            self.version = self.read_version(value)
        elif kind == "o":
            self.origin = self.read_origin(value)
        elif kind == "s":
            self.session_name = value
        elif kind == "u":
            self.uri = value
        elif kind == "e":
            self.bounded_append(section.emails, value)
        elif kind == "p":
            self.bounded_append(section.phones, value)
        elif kind == "t":
            self.read_time(value)
        elif kind == "r":
            self.read_repeat(value)
        elif kind == "z":
            self.timezones = value
        else:
            self.common(section, kind, value)

    def media_level(self, section: _Section, kind: str, value: str) -> None:
        rank = _MEDIA_RANK.get(kind)
        if rank is None:  # a session-level line inside a media section
            self.defect("bad_order")
            return
        self.check_order(section, rank)
        if kind in "ick" and not self.once(section, kind):
            return
        self.common(section, kind, value)

    def common(self, section: _Section, kind: str, value: str) -> None:
        """The line types both levels share: i= c= b= k= a=."""
        if kind == "a":
            self.read_attribute(section, value)
        elif kind == "c":
            section.connection = self.read_connection(value)
        elif kind == "b":
            bandwidth = self.read_bandwidth(value)
            if bandwidth is not None:
                self.bounded_append(section.bandwidths, bandwidth)
        elif kind == "i":
            section.information = value
        else:
            section.key = value

    def bounded_append(self, items: list[_T], item: _T) -> None:
        if len(items) >= MAX_REPEATED:
            self.defect("too_many_repeated")
        else:
            items.append(item)

    # -- line readers ---------------------------------------------------------------------
    def read_version(self, value: str) -> int:
        version = _to_int(value, 6)
        if version != 0:
            self.defect("bad_version")
        return 0 if version is None else version

    def read_origin(self, value: str) -> Origin | None:
        fields = value.split()
        if len(fields) < 6:
            self.defect("bad_origin")
            return None
        if len(fields) > 6:  # a username with spaces: keep it whole
            self.defect("bad_origin")
        username = " ".join(fields[:-5])
        return Origin(username, *fields[-5:])

    def read_connection(self, value: str) -> Connection | None:
        fields = value.split()
        if len(fields) < 3:
            self.defect("bad_connection")
            return None
        if len(fields) > 3:
            self.defect("bad_connection")
        nettype, addrtype, address = fields[:3]
        address, *extra = address.split("/")
        ip6 = addrtype.upper() == "IP6"
        numbers = [_to_int(x, 10) for x in extra]
        ttl = count = None
        if None in numbers or len(numbers) > (1 if ip6 else 2):
            self.defect("bad_connection")
        elif ip6 and numbers:
            count = numbers[0]
        elif numbers:
            ttl = numbers[0]
            count = numbers[1] if len(numbers) > 1 else None
        if nettype != "IN" or addrtype not in ("IP4", "IP6") or (":" in address) != ip6:
            self.defect("bad_connection")
        return Connection(nettype, addrtype, address, ttl, count)

    def read_bandwidth(self, value: str) -> Bandwidth | None:
        bwtype, sep, number = value.partition(":")
        amount = _to_int(number)
        if not sep or amount is None or not bwtype or " " in bwtype:
            self.defect("bad_bandwidth")
            return None
        return Bandwidth(bwtype, amount)

    def read_time(self, value: str) -> None:
        self.saw_time = True
        numbers = [_to_int(x) for x in value.split()]
        if len(numbers) != 2:
            self.defect("bad_time")
            return
        start, stop = numbers
        if start is None or stop is None:
            self.defect("bad_time")
            return
        self.bounded_append(self.times, Timing(start, stop))

    def read_repeat(self, value: str) -> None:
        if not self.times:
            self.defect("bad_order")
            return
        last = self.times[-1]
        if len(last.repeats) >= MAX_REPEATED:
            self.defect("too_many_repeated")
            return
        self.times[-1] = replace(last, repeats=(*last.repeats, value))

    def read_attribute(self, section: _Section, value: str) -> None:
        if len(section.attributes) >= MAX_ATTRIBUTES:
            self.defect("too_many_attributes")
            return
        name, sep, rest = value.partition(":")
        if not name or " " in name:
            self.defect("bad_attribute")
        section.attributes.append((name, rest if sep else None))
        lowered = name.lower()
        if lowered == "rtpmap":
            rtpmap = parse_rtpmap(rest)
            if rtpmap is None:
                self.defect("bad_rtpmap")
            else:
                section.rtpmap_types.add(rtpmap.payload_type)
        elif lowered == "ptime" and _parse_ptime(rest) is None:
            self.defect("bad_ptime")

    def media_line(self, value: str) -> None:
        if len(self.media_sections) >= MAX_MEDIA:
            self.defect("too_many_media")
            self.ignoring_media = True
            return
        fields = value.split()
        if len(fields) < 4:
            self.defect("bad_media")
        kind = fields[0] if fields else ""
        port, port_count = self.read_port(fields[1] if len(fields) > 1 else "")
        proto = fields[2] if len(fields) > 2 else ""
        formats = fields[3:]
        if len(formats) > MAX_FORMATS:
            self.defect("too_many_formats")
            formats = formats[:MAX_FORMATS]
        self.media_lines.append((kind, port, port_count, proto, tuple(formats)))
        self.media_sections.append(_Section())

    def read_port(self, text: str) -> tuple[int, int | None]:
        port_text, sep, count_text = text.partition("/")
        port = _to_int(port_text, 5)
        count = _to_int(count_text, 5) if sep else None
        if port is None or port > 65535 or (sep and not count):
            self.defect("bad_port")
        return (0 if port is None else port), count

    # -- result ---------------------------------------------------------------------------
    def media(self, session_connection: Connection | None, direction: str | None) -> list[Media]:
        result = []
        for (kind, port, count, proto, formats), section in zip(
            self.media_lines, self.media_sections, strict=True
        ):
            media = Media(
                kind=kind,
                port=port,
                port_count=count,
                proto=proto,
                formats=formats,
                information=section.information,
                connection=section.connection,
                bandwidths=tuple(section.bandwidths),
                key=section.key,
                attributes=tuple(section.attributes),
                session_connection=session_connection,
                session_direction=direction,
            )
            self.check_media(media, section.rtpmap_types)
            result.append(media)
        return result

    def check_media(self, media: Media, declared: set[int]) -> None:
        if media.port != 0 and media.effective_connection is None:
            self.defect("no_connection")
        if not media.is_rtp or media.port == 0:  # a rejected stream's formats mean nothing
            return
        for fmt in media.formats:
            pt = _to_int(fmt, 3)
            if pt is None or pt > 127:
                self.defect("bad_format")
            elif pt not in declared and pt not in STATIC_PAYLOAD_TYPES:
                self.defect("missing_rtpmap")

    def result(self, raw: bytes) -> SessionDescription:
        session = self.session
        if self.version is None:
            self.defect("missing_version")
        if self.origin is None and "o" not in session.seen:
            self.defect("missing_origin")
        if self.session_name is None:
            self.defect("missing_session_name")
        if not self.saw_time:
            self.defect("missing_timing")
        attributes = tuple(session.attributes)
        media = self.media(session.connection, _direction_of(attributes))
        return SessionDescription(
            version=0 if self.version is None else self.version,
            origin=self.origin,
            session_name=self.session_name,
            information=session.information,
            uri=self.uri,
            emails=tuple(session.emails),
            phones=tuple(session.phones),
            connection=session.connection,
            bandwidths=tuple(session.bandwidths),
            times=tuple(self.times),
            timezones=self.timezones,
            key=session.key,
            attributes=attributes,
            media=tuple(media),
            defects=tuple(self.defects),
            raw=raw,
        )


def _split_lines(body: bytes, parser: _Parser) -> list[str]:
    """Decode the body (never strictly) and split it into lines, noting framing defects."""
    data = body
    if len(data) > MAX_SDP_SIZE:
        parser.defect("body_too_large")
        data = data[:MAX_SDP_SIZE]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        parser.defect("non_utf8")
        text = data.decode("utf-8", "surrogateescape")
    crlf = text.count("\r\n")
    if text.count("\n") > crlf:
        parser.defect("bare_lf")
    if "\r\n" in text:
        text = text.replace("\r\n", "\n")
    if "\r" in text:
        parser.defect("bare_cr")
        text = text.replace("\r", "\n")
    if _CONTROL.search(text):
        parser.defect("control_chars")
    lines = text.split("\n", MAX_LINES)
    if len(lines) > MAX_LINES:
        if lines[MAX_LINES].strip():
            parser.defect("too_many_lines")
        lines = lines[:MAX_LINES]
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def parse_sdp(body: bytes) -> SessionDescription:
    """Read an SDP body leniently. Never raises; problems become names in `defects`."""
    parser = _Parser()
    for line in _split_lines(body, parser):
        if len(line) > MAX_LINE_LENGTH:
            parser.defect("line_too_long")
        elif len(line) < 2 or line[1] != "=" or not ("a" <= line[0] <= "z"):
            parser.defect("blank_line" if not line.strip() else "bad_line")
        elif line[0] not in _KNOWN_TYPES:
            parser.defect("unknown_type")
        else:
            parser.line(line[0], line[2:])
    return parser.result(body)


# -- building: offers and answers -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Codec:
    """A codec siptrap can name in SDP: how to write it and whether it is a helper stream."""

    name: str
    clock_rate: int
    channels: int | None = None
    static_pt: int | None = None
    fmtp: str | None = None


# Codecs build_offer knows by name alone; any other must be given as "name/rate[/channels]".
KNOWN_CODECS: dict[str, _Codec] = {
    c.name.lower(): c
    for c in (
        _Codec("PCMU", 8000, static_pt=0),
        _Codec("GSM", 8000, static_pt=3),
        _Codec("G723", 8000, static_pt=4),
        _Codec("PCMA", 8000, static_pt=8),
        _Codec("G722", 8000, static_pt=9),
        _Codec("CN", 8000, static_pt=13),
        _Codec("G728", 8000, static_pt=15),
        _Codec("G729", 8000, static_pt=18),
        _Codec("telephone-event", 8000, fmtp="0-16"),
        _Codec("opus", 48000, channels=2),
        _Codec("speex", 8000),
        _Codec("iLBC", 8000, fmtp="mode=30"),
        _Codec("AMR", 8000),
        _Codec("AMR-WB", 16000),
        _Codec("G726-32", 8000),
    )
}
# Streams that only make sense beside a real codec at the same clock rate (RFC 4733, 3389).
_AUXILIARY = frozenset({"telephone-event", "cn"})
_ACCEPTED_PROTOS = frozenset({"RTP/AVP", "RTP/AVPF"})  # no SRTP or DTLS in a honeypot
DEFAULT_CODECS = ("PCMU", "PCMA", "G722", "telephone-event")


def _codec_spec(spec: str) -> tuple[str, int | None, int | None]:
    """Split "name[/rate[/channels]]" into a lower-case name, rate and channels."""
    name, *rest = spec.strip().split("/")
    numbers = [_to_int(x, 9) for x in rest]
    if not name or len(numbers) > 2 or None in numbers:
        raise ValueError(f"bad codec {spec!r}: use name[/rate[/channels]]")
    rate = numbers[0] if numbers else None
    channels = numbers[1] if len(numbers) > 1 else None
    return name.lower(), rate, channels


def _address_type(address: str) -> str:
    return "IP6" if ":" in address else "IP4"


def _check_port(port: int) -> int:
    if not 0 < port <= 65535:
        raise ValueError(f"port {port} is not from 1 to 65535")
    return port


def _skeleton(
    *,
    address: str,
    origin_username: str,
    session_id: int,
    session_version: int,
    session_name: str,
    media: Sequence[Media],
) -> SessionDescription:
    """The session-level lines siptrap writes around its media sections."""
    addrtype = _address_type(address)
    return SessionDescription(
        version=0,
        origin=Origin(
            origin_username, str(session_id), str(session_version), "IN", addrtype, address
        ),
        session_name=session_name,
        connection=Connection("IN", addrtype, address),
        times=(Timing(0, 0),),
        media=tuple(media),
    )


def build_offer(
    *,
    address: str,
    port: int,
    origin_username: str,
    session_id: int,
    session_version: int,
    session_name: str = "-",
    codecs: Sequence[str] = DEFAULT_CODECS,
    ptime: int | None = None,
    direction: str = "sendrecv",
) -> SessionDescription:
    """An offer with one RTP/AVP audio section, for a user agent client.

    Codecs are names ("PCMU", "telephone-event") or "name/rate[/channels]"; static ones get
    their RFC 3551 payload type, others dynamic types from 101 up. Raises ValueError on an
    unknown codec named without a rate, a bad port or a bad direction.
    """
    if direction not in _MIRROR:
        raise ValueError(f"direction must be one of {DIRECTIONS}")
    dynamic = iter([*range(101, 128), *range(96, 101)])
    formats: list[str] = []
    attributes: list[Attribute] = []
    fmtps: list[Attribute] = []
    for spec in codecs:
        name, rate, channels = _codec_spec(spec)
        known = KNOWN_CODECS.get(name)
        if known is not None and rate in (None, known.clock_rate):
            codec = known if channels is None else replace(known, channels=channels)
        elif rate is not None:
            codec = _Codec(spec.split("/")[0].strip(), rate, channels)
        else:
            raise ValueError(f"unknown codec {spec!r}: give it as name/rate")
        pt = codec.static_pt if codec.static_pt is not None else next(dynamic, None)
        if pt is None:
            raise ValueError("too many dynamic codecs")
        formats.append(str(pt))
        attributes.append(
            ("rtpmap", RtpMap(pt, codec.name, codec.clock_rate, codec.channels).format())
        )
        if codec.fmtp is not None:
            fmtps.append(("fmtp", f"{pt} {codec.fmtp}"))
    attributes.extend(fmtps)
    if ptime is not None:
        attributes.append(("ptime", str(ptime)))
    attributes.append((direction, None))
    media = Media(
        kind="audio",
        port=_check_port(port),
        proto="RTP/AVP",
        formats=tuple(formats),
        attributes=tuple(attributes),
    )
    return _skeleton(
        address=address,
        origin_username=origin_username,
        session_id=session_id,
        session_version=session_version,
        session_name=session_name,
        media=[media],
    )


def _matches(rtpmap: RtpMap, wanted: Sequence[tuple[str, int | None, int | None]]) -> bool:
    name = rtpmap.encoding.lower()
    return any(
        name == w_name
        and (w_rate is None or w_rate == rtpmap.clock_rate)
        and (w_channels is None or w_channels == (rtpmap.channels or 1))
        for w_name, w_rate, w_channels in wanted
    )


def _common_formats(
    offered: Media, wanted: Sequence[tuple[str, int | None, int | None]]
) -> list[tuple[str, RtpMap]]:
    """The offered formats siptrap can take, in the offer's order (RFC 3264 section 6.1).

    Helper streams (telephone-event, CN) count only beside a real codec with the same
    clock rate; with no real codec in common the result is empty.
    """
    rtpmaps = offered.rtpmaps
    chosen: list[tuple[str, RtpMap]] = []
    seen: set[int] = set()
    for fmt in offered.formats:
        pt = _to_int(fmt, 3)
        rtpmap = rtpmaps.get(pt) if pt is not None else None
        if pt is None or rtpmap is None or pt in seen or not _matches(rtpmap, wanted):
            continue
        seen.add(pt)
        chosen.append((fmt.strip(), rtpmap))
    rates = {r.clock_rate for _, r in chosen if r.encoding.lower() not in _AUXILIARY}
    return [(f, r) for f, r in chosen if r.clock_rate in rates]


def _rejected(offered: Media) -> Media:
    """The answer to a section siptrap declines: same kind and protocol, port 0."""
    kind = offered.kind if _SAFE_TOKEN.fullmatch(offered.kind) else "audio"
    proto = offered.proto if _SAFE_TOKEN.fullmatch(offered.proto) else "RTP/AVP"
    safe = [f for f in offered.formats if _SAFE_TOKEN.fullmatch(f)]
    return Media(kind=kind, port=0, proto=proto, formats=(safe[0] if safe else "0",))


def _accepted(
    offered: Media, port: int, chosen: list[tuple[str, RtpMap]], ptime: int | None
) -> Media:
    """The answer to a section siptrap takes: the common formats, mirrored direction."""
    offered_fmtp = offered.fmtp
    attributes: list[Attribute] = [("rtpmap", rtpmap.format()) for _, rtpmap in chosen]
    for _, rtpmap in chosen:
        params = offered_fmtp.get(rtpmap.payload_type)
        if params and _SAFE_FMTP.fullmatch(params):
            attributes.append(("fmtp", f"{rtpmap.payload_type} {params}"))
    if ptime is not None:
        attributes.append(("ptime", str(ptime)))
    attributes.append((_MIRROR[offered.direction], None))
    return Media(
        kind="audio",
        port=port,
        proto=offered.proto,
        formats=tuple(fmt for fmt, _ in chosen),
        attributes=tuple(attributes),
    )


def build_answer(
    offer: SessionDescription,
    *,
    address: str,
    ports: Sequence[int],
    origin_username: str,
    session_id: int,
    session_version: int,
    session_name: str = "-",
    codecs: Sequence[str] = DEFAULT_CODECS,
    ptime: int | None = None,
) -> SessionDescription:
    """An RFC 3264 answer to `offer`: one m= line per offered m= line, in the same order.

    An RTP/AVP(F) audio section with a codec in common is accepted on the next port from
    `ports`, keeping the offer's payload type numbers and order; any other section (other
    media, SRTP, port 0 offered, no common codec, or no port left) is answered with port 0.
    The direction is mirrored; an IPv6 `address` gives "IN IP6". Deterministic.
    """
    wanted = [_codec_spec(c) for c in codecs]
    free_ports = iter([_check_port(p) for p in ports])
    media: list[Media] = []
    for offered in offer.media:
        chosen: list[tuple[str, RtpMap]] = []
        if (
            offered.kind.lower() == "audio"
            and 0 < offered.port <= 65535
            and offered.proto.upper() in _ACCEPTED_PROTOS
        ):
            chosen = _common_formats(offered, wanted)
        port = next(free_ports, None) if chosen else None
        if port is None:
            media.append(_rejected(offered))
        else:
            media.append(_accepted(offered, port, chosen, ptime))
    return _skeleton(
        address=address,
        origin_username=origin_username,
        session_id=session_id,
        session_version=session_version,
        session_name=session_name,
        media=media,
    )
