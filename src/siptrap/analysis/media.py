"""Media tracking: where the honeypot asked for a call's media (the audio address in its
200 OK's SDP), so that RTP packets in a capture can be put to their call. Bounded: the
least recently learned addresses are forgotten first."""

from __future__ import annotations

from collections import OrderedDict

from ..sip import Response
from ..sip.sdp import parse_sdp

MAX_MEDIA_ADDRESSES = 8192
MAX_SDP = 8192  # bytes of a body read for its media addresses


class MediaTracker:
    """(address, port) -> the Call-ID of the call the honeypot answered with it."""

    def __init__(self, limit: int = MAX_MEDIA_ADDRESSES) -> None:
        self.limit = limit
        self._calls: OrderedDict[tuple[str, int], str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._calls)

    def answered(self, msg: Response, call_id: str) -> None:
        """Remember where the honeypot asked for media (its 200 OK SDP)."""
        if not msg.body:
            return
        sdp = parse_sdp(msg.body[:MAX_SDP])
        for media in sdp.media:
            address = media.address
            if media.kind == "audio" and address and media.port:
                self._calls[(address, media.port)] = call_id
                if len(self._calls) > self.limit:
                    self._calls.popitem(last=False)

    def call_of(self, dst_ip: str, dst_port: int) -> str | None:
        """The call an RTP packet to this address belongs to, if any."""
        return self._calls.get((dst_ip, dst_port))
