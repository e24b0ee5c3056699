"""Building the descriptions a user agent sends: an audio offer, or an RFC 3264 answer
with one m= line per offered m= line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from .model import (
    _MIRROR,
    DIRECTIONS,
    Attribute,
    Connection,
    Media,
    Origin,
    RtpMap,
    SessionDescription,
    Timing,
    _to_int,
)

_SAFE_TOKEN = re.compile(r"[!-~]{1,64}")
_SAFE_FMTP = re.compile(r"[A-Za-z0-9=;,.:/+\- ]{1,128}")


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
