"""From an SDP offer and siptrap's answer to the media streams of a call.

`plan_streams` pairs each offered m= line with its answer and describes every accepted
audio section: the local port it was given, where the caller said it wants media (the
offer's c= address and port), the payload types the caller may send (for decoding),
the codec and payload type siptrap sends with, the packet time (the offer's `a=ptime`
when it is sensible, else siptrap's default), and whether siptrap sends at all (the
answer's direction).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..sip.sdp import Media, SessionDescription
from .codecs import Codec, codec_from_rtpmap, make_encoder

AUXILIARY = frozenset({"telephone-event", "cn"})
PTIMES = range(10, 121, 10)
DEFAULT_PTIME = 20


@dataclass(frozen=True, slots=True)
class StreamPlan:
    """One accepted audio section of a call, as negotiated."""

    index: int  # position of the m= line in the offer
    local_port: int
    remote: tuple[str, int] | None  # the offer's c= address and m= port
    payload_types: Mapping[int, Codec] = field(default_factory=dict)
    send_payload_type: int | None = None
    send_codec: Codec | None = None
    ptime: int = DEFAULT_PTIME
    sends: bool = True  # the answer lets siptrap send (sendrecv or sendonly)
    rtcp_mux: bool = False

    @property
    def remote_text(self) -> str | None:
        return _endpoint_text(self.remote)


def _endpoint_text(addr: tuple[str, int] | None) -> str | None:
    if addr is None:
        return None
    host, port = addr
    host = host.strip("[]")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _codecs_of(media: Media) -> dict[int, Codec]:
    return {
        pt: codec_from_rtpmap(rtpmap.encoding, rtpmap.clock_rate)
        for pt, rtpmap in media.rtpmaps.items()
    }


def _send_format(answered: Media) -> tuple[int, Codec] | None:
    """The first codec of the answer that is real audio and that siptrap can encode."""
    for pt, rtpmap in answered.rtpmaps.items():
        if rtpmap.encoding.lower() in AUXILIARY:
            continue
        codec = codec_from_rtpmap(rtpmap.encoding, rtpmap.clock_rate)
        if make_encoder(codec) is not None:
            return pt, codec
    return None


def _remote(offered: Media) -> tuple[str, int] | None:
    """The offer's c= address (brackets some agents put around IPv6 removed) and port."""
    address = (offered.address or "").strip().strip("[]")
    if not address or offered.port <= 0 or address in ("0.0.0.0", "::"):
        return None
    return address, offered.port


def plan_streams(
    offer: SessionDescription | None,
    answer: SessionDescription,
    default_ptime: int | None = DEFAULT_PTIME,
) -> list[StreamPlan]:
    """The accepted audio sections of `answer` (an answer to `offer`, or siptrap's own
    offer when the INVITE had none), in order."""
    offered_media: Sequence[Media | None] = (
        offer.media if offer is not None else [None] * len(answer.media)
    )
    plans = []
    for index, (offered, answered) in enumerate(zip(offered_media, answer.media, strict=False)):
        if answered.port == 0 or answered.kind.lower() != "audio":
            continue
        chosen = _send_format(answered)
        ptime = offered.ptime if offered is not None else None
        if ptime not in PTIMES:
            ptime = default_ptime if default_ptime in PTIMES else DEFAULT_PTIME
        types = _codecs_of(answered)
        if offered is not None:
            types = {**types, **_codecs_of(offered)}
        plans.append(
            StreamPlan(
                index=index,
                local_port=answered.port,
                remote=_remote(offered) if offered is not None else None,
                payload_types=types,
                send_payload_type=chosen[0] if chosen else None,
                send_codec=chosen[1] if chosen else None,
                ptime=int(ptime or DEFAULT_PTIME),
                sends=answered.direction in ("sendrecv", "sendonly"),
                rtcp_mux=offered is not None and offered.has_attribute("rtcp-mux"),
            )
        )
    return plans
