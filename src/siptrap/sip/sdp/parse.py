"""Lenient SDP parsing: `parse_sdp(body)` never raises, keeps the original bytes in `raw`,
records every deviation from the grammar as a defect name (`SDP_DEFECTS`), and caps sizes
so a hostile body cannot make it use unbounded memory.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TypeVar

from .model import (
    STATIC_PAYLOAD_TYPES,
    Attribute,
    Bandwidth,
    Connection,
    Media,
    Origin,
    SessionDescription,
    Timing,
    _direction_of,
    _parse_ptime,
    _to_int,
    parse_rtpmap,
)

_T = TypeVar("_T")

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Line types in the order RFC 8866 section 5 lists them; r= ranks with t= (t r t r...).
_SESSION_RANK = {k: i for i, k in enumerate("vosiuepcbtzka")} | {"r": 9}
_MEDIA_RANK = {k: i for i, k in enumerate("icbka")}
_KNOWN_TYPES = frozenset("vosiuepcbtrzkam")


# -- caps: a hostile body cannot make the parser hold more than this --------------------------
MAX_SDP_SIZE = 65535  # bytes parsed; the rest is ignored (raw keeps everything)
MAX_LINES = 1024
MAX_LINE_LENGTH = 4096
MAX_MEDIA = 32
MAX_ATTRIBUTES = 128  # per section: the session level, or one media section
MAX_FORMATS = 64  # per m= line
MAX_REPEATED = 16  # e=, p=, b=, t= lines per section and r= lines per t=

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
