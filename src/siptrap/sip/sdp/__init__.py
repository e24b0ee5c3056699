"""SDP session descriptions (RFC 8866, formerly RFC 4566) and RFC 3264 offer/answer.

`parse_sdp(body)` reads an SDP body leniently: it never raises, keeps the original bytes in
`raw`, and records every deviation from the grammar as a defect name (see `SDP_DEFECTS`)
instead of failing. Sizes are capped so a hostile body cannot make it use unbounded memory.
`SessionDescription.to_bytes()` writes a description back as CRLF lines in RFC order, so a
well-formed body survives parse -> to_bytes unchanged.

`build_offer` and `build_answer` make the descriptions a user agent sends: an audio offer,
or an RFC 3264 answer with one m= line per offered m= line.

Modules: `model` (the typed description and its bytes), `parse` (lenient parsing, caps,
defects), `offer_answer` (building offers and answers).
"""

from .model import (
    DIRECTIONS,
    STATIC_PAYLOAD_TYPES,
    Attribute,
    Bandwidth,
    Connection,
    Media,
    Origin,
    RtpMap,
    SessionDescription,
    Timing,
    parse_rtpmap,
)
from .offer_answer import DEFAULT_CODECS, KNOWN_CODECS, build_answer, build_offer
from .parse import (
    MAX_ATTRIBUTES,
    MAX_FORMATS,
    MAX_LINE_LENGTH,
    MAX_LINES,
    MAX_MEDIA,
    MAX_REPEATED,
    MAX_SDP_SIZE,
    SDP_DEFECTS,
    parse_sdp,
)

__all__ = [
    "DEFAULT_CODECS",
    "DIRECTIONS",
    "KNOWN_CODECS",
    "MAX_ATTRIBUTES",
    "MAX_FORMATS",
    "MAX_LINES",
    "MAX_LINE_LENGTH",
    "MAX_MEDIA",
    "MAX_REPEATED",
    "MAX_SDP_SIZE",
    "SDP_DEFECTS",
    "STATIC_PAYLOAD_TYPES",
    "Attribute",
    "Bandwidth",
    "Connection",
    "Media",
    "Origin",
    "RtpMap",
    "SessionDescription",
    "Timing",
    "build_answer",
    "build_offer",
    "parse_rtpmap",
    "parse_sdp",
]
